//! Wake-ups from a store to the waiters of one process: one listening task per store
//! (a PostgreSQL `LISTEN` connection, a Redis subscription) feeds a hub that wakes the
//! waiters of the name a message is about.
//!
//! The hub keeps an entry per name only while someone waits for it, and the listening
//! task runs only once someone has waited; it is restarted on the caller's runtime if
//! the runtime it ran on is gone (a static store used by many `#[tokio::test]`s).

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Each waited-for name's wake-up and how many wait for it.
type Names = HashMap<Box<str>, (Arc<Notify>, usize)>;

/// The waiters of one process, by name.
#[derive(Default)]
pub(crate) struct Hub {
    names: Mutex<Names>,
    /// Whether the listening connection is up (so wake-ups can be expected).
    connected: AtomicBool,
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl Hub {
    fn names(&self) -> MutexGuard<'_, Names> {
        // Never held across an await.
        crate::sync::lock_std(&self.names)
    }

    /// Wakes the waiters of `name`.
    pub(crate) fn wake(&self, name: &str) {
        let notify = self.names().get(name).map(|(n, _)| n.clone());
        if let Some(n) = notify {
            n.notify_waiters();
        }
    }

    /// Wakes every waiter (after a reconnection: messages may have been missed).
    pub(crate) fn wake_all(&self) {
        let all: Vec<Arc<Notify>> = self.names().values().map(|(n, _)| n.clone()).collect();
        for n in all {
            n.notify_waiters();
        }
    }

    pub(crate) fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Release);
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// How many names have waiters right now (for tests: no entry is left behind).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn waiting_names(&self) -> usize {
        self.names().len()
    }

    fn subscribe(self: &Arc<Self>, name: &str) -> Subscription {
        let mut names = self.names();
        let notify = match names.get_mut(name) {
            Some((n, users)) => {
                *users += 1;
                n.clone()
            }
            None => {
                let n = Arc::new(Notify::new());
                names.insert(name.into(), (n.clone(), 1));
                n
            }
        };
        Subscription {
            hub: self.clone(),
            name: name.into(),
            notify,
        }
    }

    /// Starts the listening task if it is not running (`start` makes it; it gets a weak
    /// reference to the hub and should end once the hub is gone).
    pub(crate) fn ensure_listener<F, Fut>(self: &Arc<Self>, start: F)
    where
        F: FnOnce(Weak<Hub>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut slot = crate::sync::lock_std(&self.listener);
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        self.set_connected(false);
        *slot = Some(runtime.spawn(start(Arc::downgrade(self))));
    }

    /// Waits until `name` is woken or `until`, whichever is first. Registers on the
    /// first poll (see [`LeaseStore::wait_for_change`](super::LeaseStore::wait_for_change)).
    pub(crate) async fn wait(self: &Arc<Self>, name: &str, until: Instant) {
        let sub = self.subscribe(name);
        let notify = sub.notify.clone();
        let mut notified = pin!(notify.notified());
        notified.as_mut().enable();
        let mut sleep = pin!(tokio::time::sleep_until(until.into()));
        std::future::poll_fn(|cx| {
            if notified.as_mut().poll(cx).is_ready() || sleep.as_mut().poll(cx).is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        drop(sub);
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(h) = self
            .listener
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            h.abort();
        }
    }
}

/// One waiter's interest in a name; the hub forgets the name when the last one goes.
struct Subscription {
    hub: Arc<Hub>,
    name: Box<str>,
    notify: Arc<Notify>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut names = self.hub.names();
        if let Some((_, users)) = names.get_mut(&*self.name) {
            *users -= 1;
            if *users == 0 {
                names.remove(&*self.name);
            }
        }
    }
}

/// Pauses between reconnection attempts of a listening task: 50 ms doubling to 2 s.
pub(crate) struct Reconnect(Duration);

impl Reconnect {
    pub(crate) fn new() -> Self {
        Reconnect(Duration::from_millis(50))
    }

    pub(crate) fn reset(&mut self) {
        self.0 = Duration::from_millis(50);
    }

    pub(crate) async fn pause(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_reaches_the_waiters_of_that_name_only_and_entries_go() {
        let hub = Arc::new(Hub::default());
        let far = Instant::now() + Duration::from_secs(30);
        let h = hub.clone();
        let a = tokio::spawn(async move { h.wait("a", far).await });
        let h = hub.clone();
        let b = tokio::spawn(async move { h.wait("b", far).await });
        while hub.waiting_names() < 2 {
            tokio::task::yield_now().await;
        }
        hub.wake("a");
        tokio::time::timeout(Duration::from_secs(5), a)
            .await
            .expect("woken")
            .unwrap();
        assert!(!b.is_finished());
        hub.wake_all();
        tokio::time::timeout(Duration::from_secs(5), b)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(hub.waiting_names(), 0);
    }

    #[tokio::test]
    async fn a_wake_between_first_poll_and_await_is_kept() {
        let hub = Arc::new(Hub::default());
        let mut w = Box::pin(hub.wait("n", Instant::now() + Duration::from_secs(30)));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(w.as_mut().poll(&mut cx).is_pending());
        hub.wake("n");
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .expect("the early wake counts");
    }
}
