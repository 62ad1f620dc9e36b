//! The watch: one per store and process, on the store's whole key prefix, deletions
//! only (a holder released or expired, a waiter left); feeds the store's hub with the
//! names whose keys went. Remade (with back-off) whenever it dies; every waiter is woken
//! after a reconnection, since deletions meanwhile were not seen.

use std::sync::Weak;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, WatchFilterType, WatchOptions};

use super::super::notify::{Hub, Reconnect};
use super::keys::name_of_key;

/// How long making the watch may take before it is tried again.
const SETUP: Duration = Duration::from_secs(5);

/// Watches until the hub is gone.
pub(super) async fn run(
    hub: Weak<Hub>,
    endpoints: Vec<String>,
    options: ConnectOptions,
    prefix: String,
) {
    let mut pause = Reconnect::new();
    loop {
        if hub.strong_count() == 0 {
            return;
        }
        if let Some(stream) = open(&endpoints, &options, &prefix).await {
            pause.reset();
            if let Some(h) = hub.upgrade() {
                h.set_connected(true);
                // Deletions while nobody watched were not seen.
                h.wake_all();
            }
            serve(&hub, stream, &prefix).await;
        }
        if let Some(h) = hub.upgrade() {
            h.set_connected(false);
            h.wake_all();
        }
        pause.pause().await;
    }
}

/// A watch of the prefix that the server confirmed.
async fn open(
    endpoints: &[String],
    options: &ConnectOptions,
    prefix: &str,
) -> Option<etcd_client::WatchStream> {
    let made = tokio::time::timeout(SETUP, async {
        let client = Client::connect(endpoints, Some(options.clone()))
            .await
            .ok()?;
        let opts = WatchOptions::new()
            .with_prefix()
            .with_filters([WatchFilterType::NoPut]);
        let mut stream = client
            .watch_client()
            .watch(prefix.as_bytes().to_vec(), Some(opts))
            .await
            .ok()?;
        match stream.message().await {
            Ok(Some(r)) if r.created() && !r.canceled() => Some(stream),
            _ => None,
        }
    })
    .await;
    made.ok().flatten()
}

/// Passes deletions on until the stream fails or is cancelled.
async fn serve(hub: &Weak<Hub>, mut stream: etcd_client::WatchStream, prefix: &str) {
    loop {
        let Ok(Some(resp)) = stream.message().await else {
            return;
        };
        if resp.canceled() {
            return;
        }
        let Some(h) = hub.upgrade() else {
            return;
        };
        for ev in resp.events() {
            if ev.event_type() != EventType::Delete {
                continue;
            }
            if let Some(name) = ev.kv().and_then(|kv| name_of_key(prefix, kv.key())) {
                h.wake(&name);
            }
        }
    }
}
