//! The holders and waiters of one name, as read from its keys.

use etcd_client::KeyValue;

use super::keys::{decode, mode_parse};
use crate::mode::Mode;

/// One holder or waiter key of a name.
pub(super) struct Entry {
    pub(super) key: Vec<u8>,
    pub(super) owner: String,
    pub(super) mode: Mode,
    /// Waiters: how often others were granted the name before them.
    pub(super) passes: u32,
    /// Holders: the fence; waiters: the ticket (both the key's create revision).
    pub(super) revision: i64,
    /// The key's mod revision (a waiter's passes are rewritten only if unchanged).
    pub(super) modified: i64,
    pub(super) lease: i64,
}

/// The holders and waiters of one name, as read.
#[derive(Default)]
pub(super) struct State {
    pub(super) holders: Vec<Entry>,
    pub(super) waiters: Vec<Entry>,
}

impl State {
    pub(super) fn parse(name_prefix: &str, kvs: &[KeyValue]) -> State {
        let mut st = State::default();
        for kv in kvs {
            let Ok(key) = std::str::from_utf8(kv.key()) else {
                continue;
            };
            let Some(rest) = key.strip_prefix(name_prefix) else {
                continue;
            };
            let (is_holder, enc) = if let Some(o) = rest.strip_prefix("h/") {
                (true, o)
            } else if let Some(o) = rest.strip_prefix("w/") {
                (false, o)
            } else {
                continue;
            };
            let Some(owner) = decode(enc) else {
                continue;
            };
            let value = std::str::from_utf8(kv.value()).unwrap_or("");
            let mut parts = value.split(' ');
            let mode = mode_parse(parts.next().unwrap_or(""));
            let passes = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            let e = Entry {
                key: kv.key().to_vec(),
                owner,
                mode,
                passes,
                revision: kv.create_revision(),
                modified: kv.mod_revision(),
                lease: kv.lease(),
            };
            if is_holder {
                st.holders.push(e);
            } else {
                st.waiters.push(e);
            }
        }
        st.holders.sort_by_key(|e| e.revision);
        st.waiters.sort_by_key(|e| e.revision);
        st
    }

    /// The holder to name in a refusal: an exclusive one, else the oldest.
    pub(super) fn holder(&self) -> Option<&Entry> {
        self.holders
            .iter()
            .find(|h| h.mode == Mode::Exclusive)
            .or(self.holders.first())
    }
}
