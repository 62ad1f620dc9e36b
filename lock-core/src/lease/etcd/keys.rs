//! Keys and values: names and owners percent-encoded into key segments, modes into
//! values.

use crate::mode::{Kind, Mode};

/// Percent-encodes `/` and `%` (so that names and owners are one key segment each, and
/// the mapping stays injective).
pub(super) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn decode(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        out.push(match rest.get(i + 1..i + 3)? {
            "25" => '%',
            "2F" => '/',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// The name a key `{prefix}/{name}/…` belongs to. `prefix` ends with `/`.
pub(super) fn name_of_key(prefix: &str, key: &[u8]) -> Option<String> {
    let key = std::str::from_utf8(key).ok()?;
    let rest = key.strip_prefix(prefix)?;
    let (enc, _) = rest.split_once('/')?;
    decode(enc)
}

pub(super) fn mode_text(mode: Mode) -> String {
    match mode {
        Mode::Shared => "s".to_owned(),
        Mode::Permits(n) => format!("p{n}"),
        _ => "x".to_owned(),
    }
}

pub(super) fn mode_parse(s: &str) -> Mode {
    match s {
        "s" => Mode::Shared,
        p if p.starts_with('p') => Mode::Permits(p[1..].parse().unwrap_or(1)),
        _ => Mode::Exclusive,
    }
}

pub(super) fn kind_of(mode: Mode) -> Kind {
    match mode {
        Mode::Permits(n) => Kind::Counted(n),
        _ => Kind::ReadWrite,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for name in ["plain", "a/b", "100%", "%2F", ""] {
            let key = format!("lock-core/{}/h/x", encode(name));
            assert_eq!(
                name_of_key("lock-core/", key.as_bytes()).as_deref(),
                Some(name)
            );
        }
        assert_ne!(encode("/"), encode("%2F"));
    }
}
