//! The command line's grammar (clap derive) and the human duration parser.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::help;

/// `lock-core`: run commands under the named locks of lock-core, and see who holds them.
#[derive(Debug, Parser)]
#[command(
    name = "lock-core",
    version,
    about = "Run a command under a named lock (a file lock, or a lease on PostgreSQL, Redis or etcd) \
             and see who holds what.",
    after_help = help::MAIN,
    propagate_version = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take a lock, run CMD while holding it, release it, exit with CMD's status.
    #[command(after_help = help::RUN)]
    Run(RunArgs),
    /// List the locks held in a lock directory or the leases of a store.
    #[command(after_help = help::STATUS)]
    Status(StatusArgs),
    /// Rewrite another tool's test-locking attributes to `#[lock_core::locked(...)]`.
    #[command(subcommand)]
    Migrate(MigrateFrom),
}

/// `lock-core migrate`: the tools it migrates from.
#[derive(Debug, Subcommand)]
pub enum MigrateFrom {
    /// serial_test's attributes become `#[lock_core::locked(...)]`, in place.
    #[command(
        name = "serial-test",
        about = "serial_test's #[serial], #[parallel], #[file_serial] and #[file_parallel] \
                 become #[lock_core::locked(...)], in place; Cargo.toml depends on lock-core \
                 instead.",
        after_help = help::MIGRATE_SERIAL_TEST
    )]
    SerialTest(SerialTestArgs),
}

/// `lock-core migrate serial-test`.
#[derive(Debug, Args)]
pub struct SerialTestArgs {
    /// The crate's directory (with its Cargo.toml; a workspace member's directory works).
    #[arg(value_name = "PATH", default_value = ".")]
    pub path: PathBuf,

    /// Write nothing; exit 1 if anything would change, 0 if nothing would (for CI).
    #[arg(long)]
    pub check: bool,

    /// The lock-core dependency to write into Cargo.toml, as a TOML value
    /// (e.g. '{ path = "../lock-core" }') [default: this command's version].
    #[arg(long, value_name = "TOML VALUE")]
    pub lock_core_dep: Option<String>,
}

/// `lock-core run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The lock's name: the same name as in `#[locked(name = "...")]` or `Lock::new("...")`.
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Hold the lock shared: beside other shared holders, never beside an exclusive one.
    #[arg(long, conflicts_with = "permits")]
    pub shared: bool,

    /// Hold one of N permits of a counted lock (at most N holders at once).
    #[arg(long, value_name = "N")]
    pub permits: Option<u32>,

    /// Give up after this long (e.g. 0, 200ms, 5s, 2m, 1h, 1m30s); 0 tries once.
    /// Without it, wait for ever.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// Lock directory [default: $LOCK_CORE_DIR, else the per-user default directory].
    #[arg(long, value_name = "DIR", conflicts_with_all = ["path", "store"])]
    pub dir: Option<PathBuf>,

    /// Lock exactly this file (OS lock only; the file is never written).
    #[arg(long, value_name = "FILE", conflicts_with = "store")]
    pub path: Option<PathBuf>,

    /// Hold a lease in this store instead of a file lock: postgres://…, redis://…, etcd://…
    /// or dynamodb://TABLE (with the `dynamodb` feature)
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,

    /// The lease's time to live, renewed every third of it while CMD runs [default: 30s].
    /// Only with --store.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "store")]
    pub lease: Option<Duration>,

    /// When the lease is lost: how long CMD has between SIGTERM and SIGKILL [default: 5s].
    /// Only with --store.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "store")]
    pub grace: Option<Duration>,

    /// Exit status when the lock is busy or the wait timed out.
    #[arg(long, value_name = "N", default_value_t = crate::exit::CONFLICT)]
    pub conflict_exit_code: u8,

    /// The command to run, and its arguments (after `--`).
    #[arg(value_name = "CMD", last = true, required = true, num_args = 1..)]
    pub command: Vec<OsString>,
}

/// `lock-core status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Lock directory to list [default: $LOCK_CORE_DIR, else the per-user default directory].
    #[arg(long, value_name = "DIR", conflicts_with = "store")]
    pub dir: Option<PathBuf>,

    /// List the live leases of this store instead: postgres://…, redis://…, etcd://… or
    /// dynamodb://TABLE
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,

    /// Print JSON (schema 1, see below) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Parses a human duration: a number and a unit (`ms`, `s`, `m`, `h`), several of them
/// in a row (`1m30s`), or a bare `0`. Decimals are allowed (`1.5s`).
///
/// ```text
/// 0  200ms  5s  2m  1h  1m30s  0.5s
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration: write e.g. 5s, 200ms, 2m or 0".to_owned());
    }
    if s.bytes().all(|b| b == b'0') {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() {
            return Err(format!(
                "invalid duration `{s}`: expected a number at `{rest}` (e.g. 5s, 200ms, 2m)"
            ));
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let nanos_per_unit: u128 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" | "min" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => {
                return Err(format!(
                    "duration `{s}` needs a unit: ms, s, m or h (e.g. {num}s or {num}ms)"
                ))
            }
            other => {
                return Err(format!(
                    "unknown unit `{other}` in duration `{s}`: use ms, s, m or h"
                ))
            }
        };
        let part = scaled(num, nanos_per_unit).map_err(|e| match e {
            NumError::NotANumber => bad_number(s, num),
            NumError::TooLarge => too_long(s),
        })?;
        total = total.checked_add(part).ok_or_else(|| too_long(s))?;
        rest = next;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| too_long(s))?;
    // Under 1e9, so it fits.
    let sub = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, sub))
}

/// `num` (digits, at most one `.`) times `unit` nanoseconds, truncated to whole
/// nanoseconds.
fn scaled(num: &str, unit: u128) -> Result<u128, NumError> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(NumError::NotANumber);
    }
    let overflow = NumError::TooLarge;
    let mut value: u128 = 0;
    for b in int.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(b - b'0')))
            .ok_or(overflow)?;
    }
    let mut value = value.checked_mul(unit).ok_or(overflow)?;
    let mut scale = unit;
    for b in frac.bytes().take(18) {
        scale /= 10;
        value = value
            .checked_add(u128::from(b - b'0') * scale)
            .ok_or(overflow)?;
    }
    Ok(value)
}

#[derive(Clone, Copy)]
enum NumError {
    NotANumber,
    TooLarge,
}

fn bad_number(s: &str, num: &str) -> String {
    format!("invalid number `{num}` in duration `{s}`")
}

fn too_long(s: &str) -> String {
    format!("duration `{s}` is too long")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn ok(s: &str) -> Duration {
        parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn durations_parse() {
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("000"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("200ms"), Duration::from_millis(200));
        assert_eq!(ok("5s"), Duration::from_secs(5));
        assert_eq!(ok(" 5s "), Duration::from_secs(5));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("2min"), Duration::from_secs(120));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1h2m3s4ms"), Duration::from_millis(3_723_004));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0.25h"), Duration::from_secs(900));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("2.s"), Duration::from_secs(2));
        assert_eq!(ok("1.0000000001s"), Duration::from_secs(1));
    }

    #[test]
    fn bad_durations_say_why() {
        let err = |s: &str| parse_duration(s).expect_err(s);
        assert!(err("").contains("empty"));
        assert!(err("   ").contains("empty"));
        assert!(err("5").contains("needs a unit"), "{}", err("5"));
        assert!(err("5x").contains("unknown unit `x`"));
        assert!(err("5 s").contains("unknown unit"));
        assert!(err("s").contains("expected a number"));
        assert!(err("-1s").contains("expected a number"));
        assert!(err("1.2.3s").contains("invalid number"));
        assert!(err(".s").contains("invalid number"));
        assert!(err("1s5").contains("needs a unit"));
        assert!(err("99999999999999999999999999999999999999h").contains("too long"));
        assert!(err("9999999999999999999h").contains("too long"));
    }

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }
}
