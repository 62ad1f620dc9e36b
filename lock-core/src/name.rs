//! The name rules, shared by every mode (and mirrored at compile time by the macro).

use crate::LockError;

/// The longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Starts the registry key of a lock file's own in-process lock (see `file::cache`).
/// A control character, so no valid name can ever be such a key.
const FILE_KEY: &str = "\u{1}file ";

/// The registry key of the in-process lock of the file with this identity (device and
/// inode), first reached at `path` (kept for messages).
pub(crate) fn file_key(dev: u64, ino: u64, path: &std::path::Path) -> String {
    format!("{FILE_KEY}{dev}:{ino} {}", path.display())
}

/// True for the key of a lock file's own in-process lock.
pub(crate) fn is_file_key(name: &str) -> bool {
    name.starts_with(FILE_KEY)
}

/// A registry key as messages show it: a lock file's key as "lock file PATH".
pub(crate) fn shown(name: &str) -> std::borrow::Cow<'_, str> {
    match name.strip_prefix(FILE_KEY) {
        Some(rest) => {
            let path = rest.split_once(' ').map_or(rest, |(_, p)| p);
            std::borrow::Cow::Owned(format!("lock file {path}"))
        }
        None => std::borrow::Cow::Borrowed(name),
    }
}

/// Checks `name` against the name rules: non-empty, at most [`MAX_NAME_LEN`] bytes of
/// UTF-8, and no control characters.
///
/// ```
/// assert!(lock_core::validate_name("account-42").is_ok());
/// assert!(lock_core::validate_name("").is_err());
/// assert!(lock_core::validate_name("tab\there").is_err());
/// assert_eq!(lock_core::validate_name(&"x".repeat(257)).unwrap_err().code(), 8405);
/// ```
pub fn validate_name(name: &str) -> Result<(), LockError> {
    if !name.is_empty() && name.len() <= MAX_NAME_LEN && !has_control(name) {
        return Ok(());
    }
    invalid(name)
}

#[cold]
#[inline(never)]
fn invalid(name: &str) -> Result<(), LockError> {
    match name_problem(name) {
        None => Ok(()),
        Some(reason) => Err(LockError::InvalidName {
            name: shorten(name),
            reason,
        }),
    }
}

fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a lock name must not be empty".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!(
            "a lock name must be at most {MAX_NAME_LEN} bytes, this one has {}",
            name.len()
        ));
    }
    if let Some((i, c)) = name.char_indices().find(|(_, c)| c.is_control()) {
        return Some(format!(
            "a lock name must not contain control characters, found {c:?} at byte {i}"
        ));
    }
    None
}

/// Scan for control characters: C0 and DEL are single bytes, and C1 (U+0080 to U+009F)
/// is exactly the two-byte sequences `C2 80` to `C2 9F` in UTF-8. Eight bytes at a time
/// first (every name is checked on every by-name call): a word with no byte below 0x20,
/// no 0x7f and no 0xc2 cannot contain one; only suspicious names get the exact scan.
#[inline]
fn has_control(name: &str) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    /// Some byte of `x` is below `n` (exact for `n <= 0x80`).
    fn below(x: u64, n: u8) -> bool {
        x.wrapping_sub(ONES * n as u64) & !x & HIGH != 0
    }
    /// Some byte of `x` equals `b`.
    fn has(x: u64, b: u8) -> bool {
        below(x ^ (ONES * b as u64), 1)
    }
    let b = name.as_bytes();
    let mut i = 0;
    while let Some(word) = b.get(i..i + 8) {
        let x = u64::from_ne_bytes(word.try_into().unwrap_or([0; 8]));
        if below(x, 0x20) | has(x, 0x7f) | has(x, 0xc2) {
            return has_control_exact(b);
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c < 0x20 || c == 0x7f || c == 0xc2 {
            return has_control_exact(b);
        }
        i += 1;
    }
    false
}

fn has_control_exact(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c < 0x20
            || c == 0x7f
            || (c == 0xc2 && i + 1 < b.len() && (0x80..=0x9f).contains(&b[i + 1]))
        {
            return true;
        }
        i += 1;
    }
    false
}

/// Keeps error messages readable for absurdly long names.
fn shorten(name: &str) -> String {
    const KEEP: usize = 64;
    if name.len() <= MAX_NAME_LEN {
        return name.to_owned();
    }
    let mut end = KEEP;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &name[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_scan_agrees_with_the_exact_scan() {
        // Every special byte at every position of names 1..=20 bytes long, plus
        // pseudo-random UTF-8 strings of mixed scripts.
        let specials = [
            '\0', '\t', '\u{1f}', ' ', '\u{7f}', '\u{80}', '\u{9f}', '\u{a0}', 'é', 'x',
        ];
        for len in 1..=20 {
            for pos in 0..len {
                for &c in &specials {
                    let mut s: String = "a".repeat(pos);
                    s.push(c);
                    s.push_str(&"b".repeat(len - pos - 1));
                    assert_eq!(has_control(&s), has_control_exact(s.as_bytes()), "{s:?}");
                    assert_eq!(has_control(&s), c.is_control(), "{s:?}");
                }
            }
        }
        let alphabet: Vec<char> = "aZ9-_/.é€😀\u{85}\u{a0}\u{7f}\n ".chars().collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let s: String = (0..len)
                .map(|i| alphabet[((seed >> (i % 8 * 8)) as usize + i) % alphabet.len()])
                .collect();
            let expected = s.chars().any(char::is_control);
            assert_eq!(has_control(&s), expected, "{s:?}");
        }
    }
}
