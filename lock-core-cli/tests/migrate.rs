//! `lock-core migrate serial-test`: fixture crates (tests/fixtures/migrate/*/input)
//! copied to a temporary directory, migrated by the binary, and compared byte for byte
//! with the checked-in expected outputs (tests/fixtures/migrate/*/expected); `--check`
//! before and after, idempotence, and the failures.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{bin, TempDir};

/// The `--lock-core-dep` every fixture is migrated with (also in the expected files).
const DEP: &str = "{ path = \"../lock-core\" }";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/migrate")
}

/// Every file under `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read a fixture directory") {
            let p = e.expect("a directory entry").path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).expect("under the root").to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A copy of fixture `name`'s input in a fresh temporary directory.
fn copy(name: &str) -> (TempDir, PathBuf) {
    let t = TempDir::new(&format!("migrate-{name}"));
    let src = fixtures().join(name).join("input");
    let dst = t.join("crate");
    for rel in files(&src) {
        let to = dst.join(&rel);
        std::fs::create_dir_all(to.parent().expect("a parent")).expect("mkdir");
        std::fs::copy(src.join(&rel), to).expect("copy a fixture file");
    }
    (t, dst)
}

/// Runs `lock-core migrate serial-test DIR ARGS..`: (status, stdout, stderr).
fn migrate(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(["migrate", "serial-test"])
        .arg(dir)
        .args(["--lock-core-dep", DEP])
        .args(args)
        .output()
        .expect("run lock-core");
    (
        out.status.code().expect("an exit status"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `dir`'s files equal those of `want`, byte for byte.
fn assert_same_tree(dir: &Path, want: &Path) {
    assert_eq!(files(dir), files(want), "the set of files");
    for rel in files(want) {
        assert_eq!(
            read(&dir.join(&rel)),
            read(&want.join(&rel)),
            "{} differs from {}",
            rel.display(),
            want.join(&rel).display()
        );
    }
}

/// Every line of `before` that is not part of a serial_test attribute or import is
/// still in `after`, byte for byte and in order.
fn assert_rest_untouched(before: &str, after: &str) {
    let touched = |l: &str| {
        l.contains("serial")
            || l.contains("parallel")
            || l.contains("\"cache\"")
            || l.contains("exclusive")
            || l.contains("once_cell")
            || l.contains("futures-util")
    };
    let mut rest = after.lines();
    // Blank lines aside: one after a removed import goes with it.
    for line in before
        .lines()
        .filter(|l| !touched(l) && !l.trim().is_empty())
    {
        assert!(rest.any(|l| l == line), "line lost or changed: {line:?}");
    }
}

/// The full round: --check (1, nothing written), migrate (0, the expected files),
/// --check again (0), migrate again (nothing changes). Returns the first run's stdout.
fn round(name: &str) -> String {
    let (_t, dir) = copy(name);
    let input = fixtures().join(name).join("input");
    let expected = fixtures().join(name).join("expected");

    let (code, out, err) = migrate(&dir, &["--check"]);
    assert_eq!(code, 1, "--check before: {out}{err}");
    assert!(out.contains("--check: nothing written"), "{out}");
    assert_same_tree(&dir, &input);

    let (code, out, err) = migrate(&dir, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.is_empty(), "{err}");
    assert_same_tree(&dir, &expected);
    for rel in files(&input) {
        assert_rest_untouched(&read(&input.join(&rel)), &read(&dir.join(&rel)));
    }

    let (code, again, err) = migrate(&dir, &["--check"]);
    assert_eq!(code, 0, "--check after: {again}{err}");
    let (code, again, err) = migrate(&dir, &[]);
    assert_eq!(code, 0, "{again}{err}");
    assert!(again.contains("nothing to migrate"), "{again}");
    assert_same_tree(&dir, &expected);
    out
}

#[test]
fn every_form_is_migrated_and_nothing_else_changes() {
    let out = round("all_forms");
    for line in [
        "src/lib.rs:13: #[serial] → #[lock_core::locked(name = \"serial\", reentrant)]",
        "src/lib.rs:24: #[serial( db , \"cache\" )] → \
         #[lock_core::locked(name = [\"db\", \"cache\"], reentrant)]",
        "src/lib.rs:10: use serial_test::serial; → (removed)",
        "tests/imports.rs:31: #[file_parallel(db, path => \"/tmp/db.lock\")] → \
         #[lock_core::locked(name = \"db\", path = \"/tmp/db.lock\", shared, readers_first, \
         reentrant)]",
        "tests/imports.rs:35: #[exclusive(renamed)] → \
         #[lock_core::locked(name = \"renamed\", reentrant)]",
        "tests/results.rs:5: #[serial] → \
         #[lock_core::locked(name = \"serial\", reentrant, on_error = \"panic\")]",
        "Cargo.toml:10: [dependencies] once_cell → once_cell with feature(s) std",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert!(out.contains("dropped `crate = serial_test`"), "{out}");
    assert!(out.contains("26 change(s) in 4 file(s)"), "{out}");
}

#[test]
fn inner_attrs_are_left_and_reported_and_serial_test_stays() {
    let out = round("inner_attrs");
    assert!(
        out.contains("tests/t.rs:4: not migrated: #[serial(inner_attrs = [ignore])]"),
        "{out}"
    );
    assert!(out.contains("use serial_test::{parallel, serial}; → use serial_test::serial;"));
    assert!(out.contains("kept as a dependency"), "{out}");
}

#[test]
fn a_directory_without_cargo_toml_is_refused() {
    let t = TempDir::new("migrate-none");
    let (code, out, err) = migrate(t.path(), &[]);
    assert_eq!(code, 64, "{out}{err}");
    assert!(
        err.starts_with("lock-core: ") && err.contains("has no Cargo.toml"),
        "{err}"
    );
}

#[test]
fn an_unparsable_file_stops_everything_before_writing() {
    let (_t, dir) = copy("inner_attrs");
    std::fs::write(dir.join("tests/broken.rs"), "fn broken( {\n").expect("write");
    let (code, out, err) = migrate(&dir, &[]);
    assert_eq!(code, 65, "{out}{err}");
    assert!(
        err.contains("tests/broken.rs:") && err.contains("cannot parse"),
        "{err}"
    );
    let input = fixtures().join("inner_attrs/input");
    assert_eq!(
        read(&dir.join("tests/t.rs")),
        read(&input.join("tests/t.rs"))
    );
    assert_eq!(
        read(&dir.join("Cargo.toml")),
        read(&input.join("Cargo.toml"))
    );
}

#[test]
fn a_bad_dependency_value_is_a_usage_error() {
    let (_t, dir) = copy("inner_attrs");
    let out = Command::new(bin())
        .args(["migrate", "serial-test"])
        .arg(&dir)
        .args(["--lock-core-dep", "{ path = "])
        .output()
        .expect("run lock-core");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--lock-core-dep"));
}

#[test]
fn target_and_nested_packages_are_skipped() {
    let (_t, dir) = copy("inner_attrs");
    let odd = "use serial_test::serial;\n#[serial]\nfn x() {}\n";
    for sub in ["target/debug/build", "nested/src"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        std::fs::write(dir.join(sub).join("x.rs"), odd).expect("write");
    }
    std::fs::write(dir.join("nested/Cargo.toml"), "[package]\nname = \"n\"\n").expect("write");
    let (code, out, err) = migrate(&dir, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(read(&dir.join("target/debug/build/x.rs")), odd);
    assert_eq!(read(&dir.join("nested/src/x.rs")), odd);
}

/// The migrated `all_forms` crate builds against this workspace's lock-core and its
/// tests pass (`readers_first`, `reentrant`, a `Result<(), ()>` test, every form).
#[test]
fn the_migrated_crate_builds_and_its_tests_pass() {
    build_and_test_migrated("all_forms");
}

/// A crate that pins Tokio below 1.41 (serial_test's own suite pins `=1.38.2`) gets
/// lock-core without `task-ids`, says why, resolves, and its tests pass on that Tokio:
/// sync and async serial bodies, one calling another serial fn.
#[test]
fn a_crate_pinned_below_tokio_1_41_gets_lock_core_without_task_ids_and_passes() {
    let out = round("pinned_tokio");
    assert!(
        out.contains("tokio is kept at `=1.38.2`, below the 1.41"),
        "{out}"
    );
    let text = build_and_test_migrated("pinned_tokio");
    assert!(text.contains("test result: ok. 3 passed"), "{text}");
}

/// Migrates fixture `name` against this workspace's lock-core, runs `cargo test` in it
/// and returns its output (the test fails unless it passes). Not `--offline`: a fixture
/// may need versions the workspace's lock file does not have (Tokio 1.38.2), and a
/// registry index refreshed by one build would send an offline one after crates it
/// never downloaded.
fn build_and_test_migrated(name: &str) -> String {
    let (_t, dir) = copy(name);
    let lock_core = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .join("lock-core");
    let dep = format!("{{ path = {:?} }}", lock_core.display().to_string());
    let out = Command::new(bin())
        .args(["migrate", "serial-test"])
        .arg(&dir)
        .args(["--lock-core-dep", &dep])
        .output()
        .expect("run lock-core migrate");
    assert!(out.status.success(), "{out:?}");
    // A target directory of its own inside the workspace's, kept between runs.
    let target = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .join("target/fixtures");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let run = Command::new(cargo)
        .args(["test", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo test in the migrated crate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "the migrated crate failed:\n{text}");
    assert!(text.contains("test result: ok"), "{text}");
    text
}
