//! A crate that keeps Tokio below 1.41 (serial_test's own suite pins `=1.38.2`) cannot
//! have lock-core's default feature `task-ids` (`tokio::task::try_id`): the migration then
//! asks for lock-core without it. A small reading of Cargo's version requirements, enough
//! to tell whether a requirement admits some Tokio 1.41 or later.

/// The Tokio release lock-core's `task-ids` feature needs.
pub const TASK_IDS_FLOOR: (u64, u64, u64) = (1, 41, 0);

/// A version as (major, minor, patch).
type Version = (u64, u64, u64);

/// Whether Cargo requirement `req` (as in `tokio = "..."`) admits a version at or above
/// `floor` within its major release; `None` when the requirement cannot be read.
pub fn admits(req: &str, floor: Version) -> Option<bool> {
    let mut lo: Version = (0, 0, 0);
    let mut hi: Version = (u64::MAX, 0, 0);
    for comparator in req.split(',') {
        let (from, to) = interval(comparator.trim())?;
        lo = lo.max(from);
        hi = hi.min(to);
    }
    let lo = lo.max(floor);
    let hi = hi.min((floor.0 + 1, 0, 0));
    Some(lo < hi)
}

/// The half-open interval of versions one comparator admits.
fn interval(c: &str) -> Option<(Version, Version)> {
    let (op, rest) = match c.find(|ch: char| ch.is_ascii_digit() || ch == '*') {
        Some(i) => c.split_at(i),
        None => return None,
    };
    let parts = parse(rest.trim())?;
    let low = (
        parts[0].unwrap_or(0),
        parts[1].unwrap_or(0),
        parts[2].unwrap_or(0),
    );
    // The first version past the partial one: `1.38` ends before 1.39.0.
    let past = match parts {
        [None, ..] => (u64::MAX, 0, 0),
        [Some(a), None, _] => (a + 1, 0, 0),
        [Some(a), Some(b), None] => (a, b + 1, 0),
        [Some(a), Some(b), Some(p)] => (a, b, p + 1),
    };
    let caret_end = match parts {
        [Some(0), Some(0), Some(_)] => past,
        [Some(0), Some(b), _] => (0, b + 1, 0),
        [Some(a), ..] => (a + 1, 0, 0),
        [None, ..] => (u64::MAX, 0, 0),
    };
    let tilde_end = match parts {
        [Some(a), None, _] => (a + 1, 0, 0),
        [Some(a), Some(b), _] => (a, b + 1, 0),
        [None, ..] => (u64::MAX, 0, 0),
    };
    let wildcard = rest.split('.').any(|p| matches!(p.trim(), "*" | "x" | "X"));
    Some(match op.trim() {
        // `1.38.*` is `=1.38`, not `^1.38`.
        "" if wildcard => (low, past),
        "" | "^" => (low, caret_end),
        "=" => (low, past),
        "~" => (low, tilde_end),
        ">=" => (low, (u64::MAX, 0, 0)),
        ">" => (past, (u64::MAX, 0, 0)),
        "<" => ((0, 0, 0), low),
        "<=" => ((0, 0, 0), past),
        _ => return None,
    })
}

/// `1`, `1.38`, `1.38.2`, `1.38.*`, `*` into up to three numbers (`None`: any). A
/// pre-release or build suffix is not read (it cannot move a requirement past 1.41).
fn parse(v: &str) -> Option<[Option<u64>; 3]> {
    let v = v.split(['-', '+']).next()?;
    let mut out = [None; 3];
    for (i, part) in v.split('.').enumerate() {
        if i >= 3 {
            return None;
        }
        if matches!(part, "*" | "x" | "X") {
            break;
        }
        out[i] = Some(part.parse().ok()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_below_the_floor_are_told_from_those_that_reach_it() {
        let f = TASK_IDS_FLOOR;
        for req in [
            "=1.38.2",
            "~1.38",
            "1.38.*",
            ">=1.30, <1.41",
            "<=1.40",
            "=1.40",
        ] {
            assert_eq!(admits(req, f), Some(false), "{req}");
        }
        for req in [
            "1", "1.38", "^1.38.2", "1.41", "~1.41", ">=1.20", "*", "=1", "1.*",
        ] {
            assert_eq!(admits(req, f), Some(true), "{req}");
        }
        for req in ["", "one", "1.2.3.4", "!1.3"] {
            assert_eq!(admits(req, f), None, "{req}");
        }
    }
}
