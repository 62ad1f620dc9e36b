//! Elsewhere: timers only, a condition variable with a timed wait.

use std::io;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

pub(super) struct Poller {
    notified: Mutex<bool>,
    cv: Condvar,
}

impl Poller {
    pub(super) fn new() -> io::Result<Poller> {
        Ok(Poller {
            notified: Mutex::new(false),
            cv: Condvar::new(),
        })
    }

    pub(super) fn notify(&self) {
        *super::lock(&self.notified) = true;
        self.cv.notify_one();
    }

    pub(super) fn wait(&self, timeout: Option<Duration>, _ready: &mut Vec<u64>) -> io::Result<()> {
        let mut n = super::lock(&self.notified);
        if !*n {
            n = match timeout {
                None => self.cv.wait(n).unwrap_or_else(|e| e.into_inner()),
                Some(t) => {
                    self.cv
                        .wait_timeout(n, t)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        *n = false;
        Ok(())
    }
}
