//! The listening connection: `LISTEN <table>_wake`, one per store and process, feeding
//! the store's hub; remade (with back-off) whenever it dies.

use std::future::Future;
use std::pin::pin;
use std::sync::Weak;
use std::task::Poll;
use std::time::Duration;

use tokio_postgres::AsyncMessage;

use super::super::notify::{Hub, Reconnect};

/// How often the listener checks that its connection still answers (a connection that
/// died without a word would otherwise look alive while messages are lost).
const PING_EVERY: Duration = Duration::from_secs(5);

/// The listening connection's settings: the store's, with its own application name
/// (the store's, plus `-listen`) and keep-alives.
pub(super) fn config(cfg: &tokio_postgres::Config) -> tokio_postgres::Config {
    let mut cfg = cfg.clone();
    let app = format!(
        "{}-listen",
        cfg.get_application_name().unwrap_or("lock-core")
    );
    cfg.application_name(&app);
    cfg.keepalives(true);
    cfg.keepalives_idle(Duration::from_secs(10));
    cfg
}

/// Listens until the hub is gone.
pub(super) async fn run(hub: Weak<Hub>, cfg: tokio_postgres::Config, channel: String) {
    let mut pause = Reconnect::new();
    loop {
        if hub.strong_count() == 0 {
            return;
        }
        if let Ok((client, mut conn)) = cfg.connect(tokio_postgres::NoTls).await {
            // Drive the connection while LISTEN is sent; messages before it are none.
            let listen = format!("LISTEN \"{channel}\"");
            let mut sent = pin!(client.batch_execute(&listen));
            let listening = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = sent.as_mut().poll(cx) {
                    return Poll::Ready(r.is_ok());
                }
                match conn.poll_message(cx) {
                    Poll::Ready(None) | Poll::Ready(Some(Err(_))) => Poll::Ready(false),
                    _ => Poll::Pending,
                }
            })
            .await;
            if listening {
                pause.reset();
                if let Some(h) = hub.upgrade() {
                    h.set_connected(true);
                    // Releases while no connection listened were not heard.
                    h.wake_all();
                }
                serve(&hub, &client, &mut conn).await;
            }
        }
        if let Some(h) = hub.upgrade() {
            h.set_connected(false);
            h.wake_all();
        }
        pause.pause().await;
    }
}

/// Passes notifications on until the connection fails.
async fn serve(
    hub: &Weak<Hub>,
    client: &tokio_postgres::Client,
    conn: &mut tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
) {
    let mut ticker = tokio::time::interval(PING_EVERY);
    ticker.tick().await;
    let mut ping: Option<std::pin::Pin<Box<dyn Future<Output = bool> + Send + '_>>> = None;
    std::future::poll_fn(|cx| loop {
        match conn.poll_message(cx) {
            Poll::Ready(Some(Ok(AsyncMessage::Notification(n)))) => {
                match hub.upgrade() {
                    Some(h) => h.wake(n.payload()),
                    None => return Poll::Ready(()),
                }
                continue;
            }
            Poll::Ready(Some(Ok(_))) => continue,
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => return Poll::Ready(()),
            Poll::Pending => {}
        }
        if ping.is_none() && ticker.poll_tick(cx).is_ready() {
            let q = client.simple_query("");
            ping = Some(Box::pin(async move {
                tokio::time::timeout(PING_EVERY, q)
                    .await
                    .is_ok_and(|r| r.is_ok())
            }));
        }
        if let Some(p) = ping.as_mut() {
            if let Poll::Ready(ok) = p.as_mut().poll(cx) {
                ping = None;
                if !ok {
                    return Poll::Ready(());
                }
                // The answer went through the connection: poll it again.
                continue;
            }
        }
        return Poll::Pending;
    })
    .await
}
