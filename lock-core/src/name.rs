//! The name rules, shared by every mode (and mirrored at compile time by the macro).

use crate::LockError;

/// The longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

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

/// Byte scan for control characters: C0 and DEL are single bytes, and C1 (U+0080 to
/// U+009F) is exactly the two-byte sequences `C2 80` to `C2 9F` in UTF-8.
fn has_control(name: &str) -> bool {
    let b = name.as_bytes();
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
