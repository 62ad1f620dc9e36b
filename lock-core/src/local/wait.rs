//! Step 3 for async callers, written out as one future: the checks of a request that
//! found the lock taken, then its place in the queue, its deadline and its slow-wait
//! line, polled side by side.
//!
//! It is one hand-written future, not a stack of `async fn`s, because it runs once per
//! contended acquisition: every layer of a stack is a state machine moved into its
//! parent's, and polled through. The future owns the lock's entry; the queue's state
//! ([`Waiting`]) borrows nothing, so the two live side by side.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{busy, check_contended, failed_with, refused, taken, timed_out};
use crate::deadlock::{self, Registered};
use crate::mode::Mode;
use crate::owner::{Facts, Me};
use crate::raw::Waiting;
use crate::reactor::{self, Sleep};
use crate::registry::EntryRef;
use crate::{report, stall, trace, LockError, LockGuard};

/// Waits for `entry` in FIFO order after a failed fast attempt; `timeout`: `Some(0)`
/// refuses at once, `None` waits for ever. Cancel-safe: dropping it leaves the queue
/// (and gives back a grant handed over but not yet seen).
pub(crate) struct Wait {
    /// `None` once finished.
    entry: Option<EntryRef>,
    mode: Mode,
    facts: Facts,
    timeout: Option<Duration>,
    /// `None` until the first poll, which learns who asks from the waker.
    queued: Option<Queued>,
}

/// A wait past its checks.
struct Queued {
    waiting: Waiting,
    stall: stall::Check,
    /// When the wait started, if anything needs it (a deadline, tracing, the slow-wait
    /// line); the clock is not read otherwise.
    start: Option<Instant>,
    /// Out of line: most waits have neither a deadline nor a slow-wait line.
    timer: Option<Box<Timer>>,
    _registered: Registered,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

/// The deadline and the slow-wait line of one wait, with one timer for the earlier.
struct Timer {
    deadline: Option<Instant>,
    /// Set for the earlier of the deadline and the slow-wait line (until it is said).
    sleep: Sleep,
}

impl Wait {
    pub(crate) fn new(
        entry: EntryRef,
        mode: Mode,
        timeout: Option<Duration>,
        facts: Facts,
    ) -> Wait {
        Wait {
            entry: Some(entry),
            mode,
            facts,
            timeout,
            queued: None,
        }
    }

    /// Ends the wait with `e`: leaves the queue first, so whoever is next is not held up.
    #[cold]
    fn fail(&mut self, e: LockError) -> Poll<Result<LockGuard, LockError>> {
        if let (Some(entry), Some(q)) = (&self.entry, &mut self.queued) {
            q.waiting.cancel(&entry.raw, self.mode);
        }
        self.queued = None;
        self.entry = None;
        Poll::Ready(Err(failed_with(e)))
    }
}

impl Queued {
    /// The checks of step 3 (re-entry by hand, a timeout of zero, a cycle of waits),
    /// then the wait's timer.
    fn start(
        entry: &EntryRef,
        mode: Mode,
        timeout: Option<Duration>,
        cx: &Context<'_>,
    ) -> Result<Queued, LockError> {
        let me = Me::asynchronous(cx.waker());
        let hands = deadlock::any_hand_guards();
        check_contended(entry, &me, false, hands)?;
        if timeout == Some(Duration::ZERO) {
            return Err(busy(entry));
        }
        let registered = deadlock::enter(entry, &me, mode, false, hands, || me.describe())?;
        let slow = trace::slow_waits_wanted();
        let start = (timeout.is_some() || trace::ON || slow).then(Instant::now);
        trace::wait_started(entry.name(), mode, trace::Backend::Memory, || {
            report::holder_of(entry.raw.holder())
        });
        // A time too far away to represent is no time.
        let deadline = timeout.zip(start).and_then(|(t, s)| s.checked_add(t));
        let slow_at = start
            .filter(|_| slow)
            .and_then(|s| s.checked_add(trace::slow_wait_threshold()));
        Ok(Queued {
            waiting: Waiting::new(),
            stall: stall::Check::new(),
            start,
            timer: Timer::first(deadline, slow_at),
            _registered: registered,
            #[cfg(feature = "tracing")]
            span: trace::wait_span(entry.name(), mode, trace::Backend::Memory),
        })
    }

    /// Polls the timer: `Ready` with the error once the deadline has passed (or its
    /// timer cannot be set); says the slow-wait line once, when it is due.
    fn poll_timer(
        &mut self,
        entry: &EntryRef,
        mode: Mode,
        cx: &mut Context<'_>,
    ) -> Poll<LockError> {
        let Some(t) = &mut self.timer else {
            return Poll::Pending;
        };
        let fired = match Pin::new(&mut t.sleep).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        if t.deadline.is_some_and(|d| Instant::now() >= d) {
            return Poll::Ready(timed_out(entry, waited(self.start)));
        }
        match fired {
            // The slow-wait line is due (the deadline, if any, is later).
            Ok(()) => trace::slow_wait(
                entry.name(),
                mode,
                trace::Backend::Memory,
                waited(self.start),
                report::holder_of(entry.raw.holder()).as_deref(),
            ),
            Err(e) if t.deadline.is_some() => {
                return Poll::Ready(reactor::wait_failed(entry.name(), e));
            }
            // Without a deadline, a timer that cannot be set only costs the line.
            Err(_) => {}
        }
        self.timer = Timer::first(t.deadline, None);
        let Some(t) = &mut self.timer else {
            return Poll::Pending;
        };
        // Registers the deadline's timer with this waker.
        match Pin::new(&mut t.sleep).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(timed_out(entry, waited(self.start))),
            Poll::Ready(Err(e)) => Poll::Ready(reactor::wait_failed(entry.name(), e)),
        }
    }
}

impl Timer {
    /// A timer for the earlier of the two, if there is either.
    fn first(deadline: Option<Instant>, slow_at: Option<Instant>) -> Option<Box<Timer>> {
        let next = match (deadline, slow_at) {
            (Some(d), Some(s)) => d.min(s),
            (d, s) => d.or(s)?,
        };
        Some(Box::new(Timer {
            deadline,
            sleep: reactor::sleep_until(next),
        }))
    }
}

fn waited(start: Option<Instant>) -> Duration {
    start.map_or(Duration::ZERO, |s| s.elapsed())
}

impl Future for Wait {
    type Output = Result<LockGuard, LockError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(entry) = &this.entry else {
            panic!("lock-core: a wait was polled after it finished");
        };
        let q = match &mut this.queued {
            Some(q) => q,
            None => match Queued::start(entry, this.mode, this.timeout, cx) {
                Ok(q) => this.queued.insert(q),
                Err(e) => return this.fail(e),
            },
        };
        let polled = {
            #[cfg(feature = "tracing")]
            let _in = q.span.enter();
            q.waiting.poll(&entry.raw, this.mode, &this.facts, cx)
        };
        match polled {
            Poll::Ready(Ok(grant)) => {
                if trace::ON {
                    trace::acquired_after_wait(
                        entry.name(),
                        this.mode,
                        trace::Backend::Memory,
                        waited(q.start),
                    );
                }
                this.queued = None;
                let Some(entry) = this.entry.take() else {
                    unreachable!("checked above")
                };
                let g = LockGuard::with_facts(entry, grant, &this.facts);
                // Who asked, for the lock-order checker (when it runs): the same chain
                // as at the first poll, since the chain key is the task's.
                taken(&g, &this.facts, || Me::asynchronous(cx.waker()));
                Poll::Ready(Ok(g))
            }
            Poll::Ready(Err(r)) => {
                let e = refused(entry, r, this.mode);
                this.fail(e)
            }
            Poll::Pending => {
                if let Poll::Ready(e) = q.stall.poll(entry, cx) {
                    return this.fail(e);
                }
                if let Poll::Ready(e) = q.poll_timer(entry, this.mode, cx) {
                    return this.fail(e);
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let (Some(entry), Some(q)) = (&self.entry, &mut self.queued) {
            q.waiting.cancel(&entry.raw, self.mode);
        }
    }
}
