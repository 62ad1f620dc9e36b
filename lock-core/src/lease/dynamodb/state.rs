//! The state of one name as the DynamoDB store keeps it, and the decisions of `acquire`
//! on it, without any I/O (so that they can be tested on their own).
//!
//! One item per name: `fence` (the last fence issued; only ever incremented), `kind`
//! (0 for a reader/writer name, `N` for a counted one), `ticket` (the next waiter's
//! ticket), `ver` (a counter of changes, for people reading the table; no write depends
//! on it: grants are conditioned on `fence`),
//! `holders` (a map owner -> `{fence, mode, expires}`) and `waiters` (a map owner ->
//! `{ticket, mode, since, expires}`). Expiries are milliseconds since the Unix epoch by
//! the writer's clock. Mode letters: `x` exclusive, `s` shared, `p` a permit. The turn
//! rule is the PostgreSQL and Redis stores' one: a waiter passed over twice is *due*, and
//! nobody behind it is granted the name first. A waiter's `since` is the fence counter
//! when it was refused: every grant takes a fence, so the grants that passed it over are
//! `fence - since`, counted from its refusal even if its place was written a little later
//! (its read and its write are two requests).

use crate::mode::Mode;

/// One live (or expired, not yet pruned) holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Holder {
    pub(super) owner: String,
    pub(super) fence: u64,
    pub(super) mode: char,
    pub(super) expires: i64,
}

/// One waiter in the queue of a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Waiter {
    pub(super) owner: String,
    pub(super) ticket: u64,
    pub(super) mode: char,
    /// The name's fence counter when this waiter was refused.
    pub(super) since: u64,
    pub(super) expires: i64,
}

/// The item of one name. `ver == None`: there is no item yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct State {
    pub(super) ver: Option<u64>,
    pub(super) fence: u64,
    pub(super) kind: u32,
    pub(super) ticket: u64,
    pub(super) holders: Vec<Holder>,
    pub(super) waiters: Vec<Waiter>,
}

/// What `acquire` must write for its decision to hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Write {
    /// Nothing.
    Nothing,
    /// The whole (changed) state, if the item is still at the version read.
    Item,
    /// Only this new entry in the queue (whatever else changed meanwhile).
    Join(Waiter),
    /// Only the expiry of the owner's entry in the queue.
    Renew(i64),
}

/// What `acquire` decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Granted (or granted before: a repeated request) with this fence.
    Acquired(u64),
    /// Refused for now: a holder (or the due waiter) and the ms until the earliest live
    /// holder's lease runs out (when no holder blocks, only the turn rule: none).
    Held {
        holder: Option<String>,
        retry_ms: Option<i64>,
    },
    /// The name is in use as another kind (0 reader/writer, `N` counted).
    Mismatch(u32),
}

pub(super) fn mode_letter(mode: Mode) -> (char, u32) {
    match mode {
        Mode::Shared => ('s', 0),
        Mode::Permits(n) => ('p', n),
        _ => ('x', 0),
    }
}

pub(super) fn mode_of(letter: char, kind: u32) -> Mode {
    match letter {
        's' => Mode::Shared,
        'p' => Mode::Permits(kind),
        _ => Mode::Exclusive,
    }
}

impl State {
    /// The live holders at `now`.
    pub(super) fn live(&self, now: i64) -> impl Iterator<Item = &Holder> {
        self.holders.iter().filter(move |h| h.expires > now)
    }

    /// The holder to name in errors: an exclusive one first, else the oldest.
    pub(super) fn main_holder(&self, now: i64) -> Option<&Holder> {
        self.live(now).min_by_key(|h| (h.mode != 'x', h.fence))
    }

    /// Decides a request of `owner` for `ttl_ms` in `mode`, changing the state as the
    /// store must write it. Returns the decision and what must be written for it.
    ///
    /// A grant rewrites the whole item on the condition that nothing changed since it
    /// was read. A place in the queue is written on its own, whatever changed meanwhile:
    /// a waiter must not lose its place to a holder that releases and takes the name
    /// again between the waiter's read and write (it would never get its turn).
    pub(super) fn acquire(
        &mut self,
        owner: &str,
        ttl_ms: i64,
        mode: Mode,
        queue: bool,
        now: i64,
    ) -> (Decision, Write) {
        let (letter, permits) = mode_letter(mode);
        let want = if letter == 'p' { permits } else { 0 };
        let before = (self.holders.len(), self.waiters.len());
        self.holders.retain(|h| h.expires > now);
        self.waiters.retain(|w| w.expires > now);
        self.waiters
            .sort_by(|a, b| (a.ticket, &a.owner).cmp(&(b.ticket, &b.owner)));
        let _pruned = before != (self.holders.len(), self.waiters.len());

        // A repeat of a request that was granted (its answer lost): the same lease again.
        if let Some(mine) = self.holders.iter_mut().find(|h| h.owner == owner) {
            mine.expires = now + ttl_ms;
            return (Decision::Acquired(mine.fence), Write::Item);
        }
        // Places in the queue are ordered by (ticket, owner): two waiters that joined at
        // once may share a ticket.
        let my_place = self
            .waiters
            .iter()
            .find(|w| w.owner == owner)
            .map(|w| (w.ticket, w.owner.clone()));
        let others = self.waiters.iter().filter(|w| w.owner != owner).count();
        if self.holders.is_empty() && others == 0 {
            self.kind = want;
        } else if self.kind != want {
            return (Decision::Mismatch(self.kind), Write::Nothing);
        }
        let fits = match letter {
            'x' => self.holders.is_empty(),
            's' => self.holders.iter().all(|h| h.mode != 'x'),
            _ => self.holders.len() < permits as usize,
        };
        // The turn rule: a due waiter ahead of us goes first (shared beside shared is fine).
        let due = self
            .waiters
            .iter()
            .find(|w| {
                w.owner != owner
                    && self.fence.saturating_sub(w.since) >= 2
                    && my_place
                        .as_ref()
                        .is_none_or(|(t, o)| (w.ticket, &w.owner) < (*t, o))
                    && !(w.mode == 's' && letter == 's')
            })
            .map(|w| w.owner.clone());
        if fits && due.is_none() {
            self.fence += 1;
            self.holders.push(Holder {
                owner: owner.to_owned(),
                fence: self.fence,
                mode: letter,
                expires: now + ttl_ms,
            });
            self.waiters.retain(|w| w.owner != owner);
            return (Decision::Acquired(self.fence), Write::Item);
        }
        // Pruning alone is not worth a write: the next grant prunes too.
        let mut write = Write::Nothing;
        if queue {
            match self.waiters.iter_mut().find(|w| w.owner == owner) {
                None => {
                    let w = Waiter {
                        owner: owner.to_owned(),
                        ticket: self.ticket,
                        mode: letter,
                        since: self.fence,
                        expires: now + ttl_ms,
                    };
                    self.waiters.push(w.clone());
                    self.ticket += 1;
                    write = Write::Join(w);
                }
                // Waiters poll at least every TTL/2: renewing the place once less than
                // 3/4 of the TTL is left keeps it without a write per poll.
                Some(w) if w.expires - now < ttl_ms * 3 / 4 => {
                    w.expires = now + ttl_ms;
                    write = Write::Renew(w.expires);
                }
                Some(_) => {}
            }
        }
        let decision = if fits {
            Decision::Held {
                holder: due,
                retry_ms: None,
            }
        } else {
            Decision::Held {
                holder: self.main_holder(now).map(|h| h.owner.clone()),
                retry_ms: self.holders.iter().map(|h| h.expires - now).min(),
            }
        };
        (decision, write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: i64 = 1000;

    fn acq(s: &mut State, owner: &str, mode: Mode, now: i64) -> Decision {
        s.acquire(owner, TTL, mode, true, now).0
    }

    #[test]
    fn exclusive_then_expiry_then_higher_fence() {
        let mut s = State::default();
        assert_eq!(acq(&mut s, "a", Mode::Exclusive, 0), Decision::Acquired(1));
        assert!(matches!(
            acq(&mut s, "b", Mode::Exclusive, 10),
            Decision::Held { holder: Some(ref h), retry_ms: Some(990) } if h == "a"
        ));
        // A repeated request of the holder: the same lease.
        assert_eq!(acq(&mut s, "a", Mode::Exclusive, 20), Decision::Acquired(1));
        assert_eq!(
            acq(&mut s, "b", Mode::Exclusive, 2000),
            Decision::Acquired(2)
        );
        assert!(s.waiters.is_empty(), "the winner left the queue");
    }

    #[test]
    fn shared_and_permits_and_mismatch() {
        let mut s = State::default();
        assert_eq!(acq(&mut s, "a", Mode::Shared, 0), Decision::Acquired(1));
        assert_eq!(acq(&mut s, "b", Mode::Shared, 0), Decision::Acquired(2));
        assert!(matches!(
            acq(&mut s, "c", Mode::Exclusive, 0),
            Decision::Held { .. }
        ));
        assert_eq!(acq(&mut s, "d", Mode::Permits(2), 0), Decision::Mismatch(0));
        let mut p = State::default();
        assert_eq!(acq(&mut p, "a", Mode::Permits(2), 0), Decision::Acquired(1));
        assert_eq!(acq(&mut p, "b", Mode::Permits(2), 0), Decision::Acquired(2));
        assert!(matches!(
            acq(&mut p, "c", Mode::Permits(2), 0),
            Decision::Held { .. }
        ));
        assert_eq!(acq(&mut p, "d", Mode::Permits(3), 0), Decision::Mismatch(2));
    }

    #[test]
    fn a_waiter_passed_over_twice_is_due() {
        let mut s = State::default();
        assert_eq!(acq(&mut s, "a1", Mode::Exclusive, 0), Decision::Acquired(1));
        assert!(matches!(
            acq(&mut s, "w", Mode::Exclusive, 1),
            Decision::Held { .. }
        ));
        // `a` takes turns while `w` waits (but `w` never happens to ask at the right time).
        s.holders.clear();
        assert_eq!(acq(&mut s, "a2", Mode::Exclusive, 2), Decision::Acquired(2));
        s.holders.clear();
        assert_eq!(acq(&mut s, "a3", Mode::Exclusive, 3), Decision::Acquired(3));
        s.holders.clear();
        // `w` was passed over twice: `a` is refused although the name is free...
        assert_eq!(
            acq(&mut s, "a4", Mode::Exclusive, 4),
            Decision::Held {
                holder: Some("w".into()),
                retry_ms: None
            }
        );
        // ...and `w` gets it.
        assert_eq!(acq(&mut s, "w", Mode::Exclusive, 5), Decision::Acquired(4));
    }

    #[test]
    fn queue_places_are_renewed_sparingly_and_expire() {
        let mut s = State::default();
        assert_eq!(acq(&mut s, "a", Mode::Exclusive, 0), Decision::Acquired(1));
        assert!(
            matches!(
                s.acquire("w", TTL, Mode::Exclusive, true, 1).1,
                Write::Join(_)
            ),
            "joins the queue"
        );
        assert_eq!(
            s.acquire("w", TTL, Mode::Exclusive, true, 100).1,
            Write::Nothing
        );
        assert_eq!(
            s.acquire("w", TTL, Mode::Exclusive, true, 400).1,
            Write::Renew(1400)
        );
        assert_eq!(
            s.acquire("x", TTL, Mode::Exclusive, false, 500).1,
            Write::Nothing
        );
        // `a` renews (as refresh does); the dead waiter drops out of the queue.
        s.holders[0].expires = 10_000;
        assert!(matches!(
            s.acquire("y", TTL, Mode::Exclusive, true, 2000).1,
            Write::Join(_)
        ));
        assert_eq!(s.waiters.len(), 1);
        assert_eq!(s.waiters[0].owner, "y");
    }

    #[test]
    fn fences_never_go_back() {
        let mut s = State::default();
        let mut last = 0;
        for i in 0..10 {
            let m = [Mode::Exclusive, Mode::Shared, Mode::Exclusive][i % 3];
            s.holders.clear();
            s.waiters.clear();
            match acq(&mut s, &format!("o{i}"), m, i as i64) {
                Decision::Acquired(f) => {
                    assert!(f > last);
                    last = f;
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
