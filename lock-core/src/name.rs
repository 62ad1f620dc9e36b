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
