//! Compile-time behaviour of `#[locked]`: what must compile (and run), and what must be
//! rejected with a good, well-placed message.
//!
//! Regenerate the expected messages with `TRYBUILD=overwrite cargo test -p
//! lock-core-trybuild`, then read every changed `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
