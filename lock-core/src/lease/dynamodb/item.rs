//! How a lock's state is kept in its item: attribute names, numbers as strings, the
//! state decoded from an item and encoded into one.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::aws_sdk_dynamodb::types::AttributeValue;

use super::state::{Holder, State, Waiter};
use crate::mode::Kind;

/// Attribute names (always through `#` placeholders: `name` is a reserved word).
pub(super) const K_NAME: &str = "name";
pub(super) const K_FENCE: &str = "fence";
pub(super) const K_KIND: &str = "kind";
pub(super) const K_TICKET: &str = "ticket";
pub(super) const K_VER: &str = "ver";
pub(super) const K_HOLDERS: &str = "holders";
pub(super) const K_WAITERS: &str = "waiters";
pub(super) const K_MODE: &str = "mode";
pub(super) const K_EXPIRES: &str = "expires";
pub(super) const K_SINCE: &str = "since";

/// The item key of lock `name`.
pub(super) fn key(name: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([(K_NAME.to_owned(), AttributeValue::S(name.to_owned()))])
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(super) fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis())
        .unwrap_or(i64::MAX / 4)
        .max(1)
}

pub(super) fn num(n: impl fmt::Display) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

pub(super) fn get_num<T: std::str::FromStr + Default>(
    m: &HashMap<String, AttributeValue>,
    k: &str,
) -> T {
    m.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or_default()
}

pub(super) fn get_mode(m: &HashMap<String, AttributeValue>) -> char {
    m.get(K_MODE)
        .and_then(|v| v.as_s().ok())
        .and_then(|s| s.chars().next())
        .unwrap_or('x')
}

pub(super) fn get_map<'m>(
    m: &'m HashMap<String, AttributeValue>,
    k: &str,
) -> impl Iterator<Item = (&'m String, &'m HashMap<String, AttributeValue>)> {
    m.get(k)
        .and_then(|v| v.as_m().ok())
        .into_iter()
        .flatten()
        .filter_map(|(o, v)| v.as_m().ok().map(|e| (o, e)))
}

/// The state in an item.
pub(super) fn decode(item: &HashMap<String, AttributeValue>) -> State {
    let mut st = State {
        ver: Some(get_num(item, K_VER)),
        fence: get_num(item, K_FENCE),
        kind: get_num(item, K_KIND),
        ticket: get_num::<u64>(item, K_TICKET).max(1),
        holders: get_map(item, K_HOLDERS)
            .map(|(o, e)| Holder {
                owner: o.clone(),
                fence: get_num(e, K_FENCE),
                mode: get_mode(e),
                expires: get_num(e, K_EXPIRES),
            })
            .collect(),
        waiters: get_map(item, K_WAITERS)
            .map(|(o, e)| Waiter {
                owner: o.clone(),
                ticket: get_num(e, K_TICKET),
                mode: get_mode(e),
                since: get_num(e, K_SINCE),
                expires: get_num(e, K_EXPIRES),
            })
            .collect(),
    };
    st.holders.sort_by_key(|h| h.fence);
    st.waiters
        .sort_by(|a, b| (a.ticket, &a.owner).cmp(&(b.ticket, &b.owner)));
    st
}

/// The item of a state, with its version bumped.
pub(super) fn encode(name: &str, st: &State) -> HashMap<String, AttributeValue> {
    let holders = st
        .holders
        .iter()
        .map(|h| {
            let e = HashMap::from([
                (K_FENCE.to_owned(), num(h.fence)),
                (K_MODE.to_owned(), AttributeValue::S(h.mode.to_string())),
                (K_EXPIRES.to_owned(), num(h.expires)),
            ]);
            (h.owner.clone(), AttributeValue::M(e))
        })
        .collect();
    let waiters = st
        .waiters
        .iter()
        .map(|w| {
            let e = HashMap::from([
                (K_TICKET.to_owned(), num(w.ticket)),
                (K_MODE.to_owned(), AttributeValue::S(w.mode.to_string())),
                (K_SINCE.to_owned(), num(w.since)),
                (K_EXPIRES.to_owned(), num(w.expires)),
            ]);
            (w.owner.clone(), AttributeValue::M(e))
        })
        .collect();
    HashMap::from([
        (K_NAME.to_owned(), AttributeValue::S(name.to_owned())),
        (K_VER.to_owned(), num(st.ver.map_or(1, |v| v + 1))),
        (K_FENCE.to_owned(), num(st.fence)),
        (K_KIND.to_owned(), num(st.kind)),
        (K_TICKET.to_owned(), num(st.ticket.max(1))),
        (K_HOLDERS.to_owned(), AttributeValue::M(holders)),
        (K_WAITERS.to_owned(), AttributeValue::M(waiters)),
    ])
}

pub(super) fn kind_of(kind: u32) -> Kind {
    if kind > 0 {
        Kind::Counted(kind)
    } else {
        Kind::ReadWrite
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip() {
        let st = State {
            ver: Some(4),
            fence: 9,
            kind: 2,
            ticket: 3,
            holders: vec![Holder {
                owner: "h/1/ab/1".into(),
                fence: 9,
                mode: 'p',
                expires: 1234,
            }],
            waiters: vec![Waiter {
                owner: "h/1/ab/2".into(),
                ticket: 2,
                mode: 'p',
                since: 8,
                expires: 5678,
            }],
        };
        let item = encode("jobs", &st);
        let back = decode(&item);
        assert_eq!(back.ver, Some(5), "the version is bumped");
        assert_eq!(
            State {
                ver: Some(4),
                ..back
            },
            st
        );
    }
}
