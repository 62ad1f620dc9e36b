//! `#[locked]` adds no warnings and removes none: a fixture crate
//! (tests/fixtures/warnings) is checked with rustc and clippy with and without the
//! attribute (`--features locked` puts it on every fn), and the warnings must be the same.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The warnings of `cargo <tool> --all-targets [--features locked]` on the fixture, as
/// `file:line:col: warning: message` lines.
fn warnings(tool: &str, locked: bool) -> BTreeSet<String> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args([
        tool,
        "--offline",
        "--all-targets",
        "--message-format",
        "short",
    ])
    .current_dir(here.join("fixtures/warnings"))
    // Shared with the other fixture builds, kept between runs.
    .env("CARGO_TARGET_DIR", here.join("../target/fixtures"))
    .env_remove("RUSTFLAGS");
    if locked {
        cmd.args(["--features", "locked"]);
    }
    let out = cmd.output().expect("run cargo on the fixture");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "cargo {tool} failed:\n{text}");
    text.lines()
        .filter(|l| l.starts_with("src/") && l.contains(": warning: "))
        // The part of a message that is not about the code (`cargo fix` hints) aside.
        .map(|l| l.split(": help:").next().unwrap_or(l).to_owned())
        .collect()
}

#[test]
fn the_attribute_adds_and_removes_no_rustc_or_clippy_warning() {
    for tool in ["check", "clippy"] {
        let plain = warnings(tool, false);
        let locked = warnings(tool, true);
        assert!(!plain.is_empty(), "the fixture has warnings to compare");
        assert_eq!(
            plain, locked,
            "cargo {tool}: warnings differ with #[locked] (left: without, right: with)"
        );
    }
}
