//! Name rules: invalid names are refused by every verb, boundary names work.

use std::time::Duration;

use lock_core::LockError;

fn invalid_names() -> Vec<(String, &'static str)> {
    vec![
        (String::new(), "empty"),
        ("x".repeat(257), "bytes"),
        ("line\nbreak".into(), "control"),
        ("nul\0".into(), "control"),
        ("c1\u{85}control".into(), "control"),
    ]
}

fn assert_invalid(r: Result<impl std::fmt::Debug, LockError>, why: &str) {
    match r {
        Err(e @ LockError::InvalidName { .. }) => {
            assert_eq!(e.code(), 8405);
            assert!(e.to_string().contains(why), "{e} should mention {why}");
        }
        other => panic!("expected InvalidName ({why}), got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn every_verb_refuses_invalid_names_without_panicking() {
    for (name, why) in invalid_names() {
        assert_invalid(lock_core::acquire(&name).await, why);
        assert_invalid(
            lock_core::acquire_timeout(&name, Duration::from_millis(1)).await,
            why,
        );
        assert_invalid(lock_core::try_acquire(&name), why);
        assert_invalid(lock_core::blocking_acquire(&name, None), why);
        assert_invalid(lock_core::with_lock(&name, async {}).await, why);
        assert!(!lock_core::is_locked(&name));
        assert_invalid(lock_core::validate_name(&name), why);
    }
}

#[test]
fn boundary_names_are_valid() {
    let max = "y".repeat(256);
    let unicode = "ключ-🔒-名前";
    for name in [
        max.as_str(),
        unicode,
        " spaced name ",
        "../../etc/passwd",
        "a/b",
    ] {
        let g = lock_core::try_acquire(name).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(g.name(), name);
    }
    // 256 bytes of multi-byte characters is still fine; one more byte is not.
    let four_byte = "🔒".repeat(64);
    assert_eq!(four_byte.len(), 256);
    assert!(lock_core::validate_name(&four_byte).is_ok());
    assert!(lock_core::validate_name(&format!("{four_byte}x")).is_err());
}

#[test]
fn errors_convert_to_io_errors_and_keep_their_code() {
    let name = lock_core_tests::unique("io-conv");
    let _g = lock_core::try_acquire(&name).unwrap();
    let e = std::thread::spawn(move || lock_core::try_acquire(&name).unwrap_err())
        .join()
        .unwrap();
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), std::io::ErrorKind::WouldBlock);
    let inner = io
        .get_ref()
        .and_then(|e| e.downcast_ref::<LockError>())
        .unwrap();
    assert_eq!(inner.code(), 8406);
}
