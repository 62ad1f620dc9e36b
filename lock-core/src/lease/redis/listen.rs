//! The subscribed connection: one per store and process, feeding the store's hub with
//! the names published on `lock:wake`; remade (with back-off) whenever it dies.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Weak;
use std::task::Poll;
use std::time::Duration;

use ::redis::Client;
use futures_core::Stream;

use super::super::notify::{Hub, Reconnect};

/// How often the subscriber checks that its connection still answers.
const PING_EVERY: Duration = Duration::from_secs(5);

/// Listens until the hub is gone.
pub(super) async fn run(hub: Weak<Hub>, client: Client, channel: String) {
    let mut pause = Reconnect::new();
    loop {
        if hub.strong_count() == 0 {
            return;
        }
        if let Ok(mut pubsub) = client.get_async_pubsub().await {
            if pubsub.subscribe(&channel).await.is_ok() {
                pause.reset();
                if let Some(h) = hub.upgrade() {
                    h.set_connected(true);
                    // Releases while nobody was subscribed were not heard.
                    h.wake_all();
                }
                let (mut sink, mut stream) = pubsub.split();
                serve(&hub, &mut sink, &mut stream).await;
            }
        }
        if let Some(h) = hub.upgrade() {
            h.set_connected(false);
            h.wake_all();
        }
        pause.pause().await;
    }
}

/// Passes messages on until the connection fails.
async fn serve(
    hub: &Weak<Hub>,
    sink: &mut ::redis::aio::PubSubSink,
    stream: &mut ::redis::aio::PubSubStream,
) {
    let mut ticker = tokio::time::interval(PING_EVERY);
    ticker.tick().await;
    loop {
        let mut tick = pin!(ticker.tick());
        let next = std::future::poll_fn(|cx| {
            if let Poll::Ready(m) = Pin::new(&mut *stream).poll_next(cx) {
                return Poll::Ready(Some(m));
            }
            tick.as_mut().poll(cx).map(|_| None)
        })
        .await;
        match next {
            Some(Some(msg)) => {
                let Some(h) = hub.upgrade() else {
                    return;
                };
                if let Ok(name) = msg.get_payload::<String>() {
                    h.wake(&name);
                }
            }
            Some(None) => return,
            None => {
                let pong = tokio::time::timeout(PING_EVERY, sink.ping::<String>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}
