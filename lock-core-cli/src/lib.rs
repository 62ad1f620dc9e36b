//! `lock-core`: the command line of [lock-core](lock_core), for shell scripts, cron jobs
//! and CI steps that must exclude the same resources as Rust code using the library.
//!
//! ```text
//! lock-core run NAME [--shared | --permits N] [--timeout 5s] [--dir D | --path F | --store URL]
//!                    [--lease 30s] [--grace 5s] [--conflict-exit-code N] -- CMD [ARGS..]
//! lock-core status [--dir D | --store URL] [--json]
//! lock-core migrate serial-test [PATH] [--check] [--lock-core-dep VALUE]
//! ```
//!
//! # `run`
//!
//! Takes the lock the library takes for the same name and place — without `--dir`,
//! `--path` or `--store` the file lock in [the default
//! directory](lock_core::file::default_dir) (`$LOCK_CORE_DIR` is honoured), exactly as
//! `#[locked(name = NAME, file)]` or `Lock::new(NAME).file()` — then runs CMD with
//! inherited standard streams and `LOCK_CORE_LOCK=NAME`, and exits with CMD's status.
//!
//! * `--timeout D` (`0`, `200ms`, `5s`, `2m`, `1h`, `1m30s`): give up after D; `0` tries
//!   once. Without it, `run` waits for ever, showing on a terminal a live line such as
//!   "waiting for `db` — held by pid 4242 on build-3 for 12 s" (nothing when standard
//!   error is not a terminal).
//! * `--shared`, `--permits N`: the lock's shape, as in the library.
//! * `--store postgres://…|redis://…|etcd://…|dynamodb://TABLE`: a lease instead of a
//!   file lock (etcd and DynamoDB with the CLI's `etcd` / `dynamodb` features), with TTL
//!   `--lease` (default 30 s), renewed every third of it while the job runs. CMD also
//!   gets `LOCK_CORE_FENCE`, the lease's fencing token (decimal). `--lease` and `--grace`
//!   without `--store` are refused (exit 2). A lease that cannot be given back after the
//!   job ended (the store is down) is reported as a warning; the exit status stays CMD's
//!   (the lease then expires after its TTL). For file locks `LOCK_CORE_FENCE` is removed
//!   from CMD's environment (it would belong to another lock).
//!
//! # The job: CMD and everything it starts
//!
//! As with `timeout(1)` and `flock(1)`, CMD and what it starts are one unit:
//!
//! * **One process group.** CMD runs in a process group of its own. Every signal
//!   `lock-core` receives (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2) is passed
//!   on to that whole group, not to CMD alone. Processes that leave the group on purpose
//!   (`setsid`, daemons) are no longer part of the job.
//! * **On a terminal** that `lock-core` has in the foreground, CMD's group gets the
//!   terminal while CMD runs: Ctrl-C and Ctrl-\ reach CMD's processes directly, once,
//!   and full-screen programs and prompts work. `lock-core` takes the terminal back when
//!   CMD ends. Ctrl-Z stops CMD's group, and `lock-core` then stops too, with the
//!   terminal given back, so the shell sees the job stopped; `fg` (or `bg`) continues
//!   both, and CMD gets the terminal again.
//! * **File locks** are inherited: CMD gets the locked descriptor (as with `flock(1)`),
//!   so the lock stays held while any process of CMD's tree still has it — after CMD
//!   exits, and even if `lock-core` itself is SIGKILLed. `run` exits with CMD's status as
//!   soon as CMD exits; whatever CMD left running keeps the lock until it ends. The lock
//!   file names CMD's group as the holder once `lock-core` is gone, so `status` and a
//!   busy `run` still name a live process.
//! * **Leases** are held for the whole group: `run` exits only once no process of the
//!   group is left (saying so on standard error if CMD exits first), and gives the lease
//!   back then. If the lease is lost, the whole group gets SIGTERM (and SIGCONT), then
//!   SIGKILL after `--grace` (default 5 s), and `run` exits 76 once none of it is left.
//!   If `lock-core` itself dies (SIGKILL, the OOM killer), a small guardian process it
//!   started beside the job (in a process group of its own, deaf to the job's signals)
//!   sends the group SIGTERM, then SIGKILL after the grace or a third of the lease's TTL,
//!   whichever is shorter — so no process of the job outlives the last renewal.
//! * On Linux `lock-core` is a child subreaper, so that the group's orphans are reaped
//!   and counted even where pid 1 does not reap.
//!
//! # Exit statuses
//!
//! | status | meaning |
//! |---|---|
//! | CMD's own | CMD ran and exited; 128 + N if signal N killed it |
//! | 75 | busy (`--timeout 0`) or timed out; `--conflict-exit-code N` changes it |
//! | 76 | the lease was lost while CMD ran; CMD was stopped |
//! | 64 | bad input: invalid lock name, `--permits 0`, unknown or invalid store URL |
//! | 69 | the store could not be reached or failed |
//! | 70 | any other lock error (I/O, `Mismatch`, ...) |
//! | 71 | signals or CMD could not be set up for a system reason |
//! | 126, 127 | CMD is not executable, not found |
//! | 128 + N | `lock-core` got signal N while waiting for the lock |
//! | 2 | invalid command line (clap) |
//!
//! Every failure of `lock-core` itself is one line on standard error starting with
//! `lock-core: `; a busy lock's line names the holder (pid, host, how long).
//!
//! # `status`
//!
//! Lists the live holders of the file locks of a directory (default: the default
//! directory; `--dir D`), or the live leases of a store (`--store URL`), as a table or,
//! with `--json`, as JSON.
//!
//! # `migrate serial-test`
//!
//! Rewrites, in place, serial_test's attributes in every `.rs` file of the crate in
//! PATH (default `.`; a workspace member's directory works; `target/`, hidden
//! directories and nested packages are skipped). Only each attribute's text is
//! replaced (by its source span): comments and formatting elsewhere stay byte for byte.
//! `use serial_test::..` imports of the attributes are removed (the other names of an
//! import are kept), and `#[serial_test::serial]`-style paths are migrated too.
//!
//! | serial_test | lock-core |
//! |---|---|
//! | `#[serial]` | `#[lock_core::locked(name = "serial")]` |
//! | `#[serial(k)]`, `#[serial("k")]` | `#[lock_core::locked(name = "k")]` |
//! | `#[serial(k1, k2)]` | `#[lock_core::locked(name = ["k1", "k2"])]` |
//! | `#[parallel]` | `#[lock_core::locked(name = "serial", shared, readers_first)]` |
//! | `#[parallel(k..)]` | `#[lock_core::locked(name = .., shared, readers_first)]` |
//! | `#[file_serial(k..)]` | `#[lock_core::locked(name = .., file)]` |
//! | `#[file_parallel(k..)]` | `#[lock_core::locked(name = .., file, shared, readers_first)]` |
//! | `#[file_serial(k, path => "p")]` | `#[lock_core::locked(name = "k", path = "p")]` |
//! | `#[file_parallel(k, path => "p")]` | `#[lock_core::locked(name = "k", path = "p", shared, readers_first)]` |
//! | `crate = serial_test` | dropped: lock-core's `crate = ".."` names lock_core's own path |
//! | `inner_attrs = [..]` | not migrated: left as it is and reported |
//! | `#[serial] mod m { .. }` | `#[lock_core::locked(name = "serial")] mod m { .. }` |
//!
//! `readers_first`: serial_test lets `#[parallel]` tests in ahead of a waiting
//! `#[serial]` one, whereas lock-core's shared holds are FIFO unless asked otherwise.
//! `inner_attrs` has no equivalent: serial_test puts them on an inner fn that holds only
//! the body, so they do not cover the wait for the lock; on a `#[locked]` fn they would.
//!
//! In Cargo.toml (edited with its formatting and comments kept), `serial_test` in
//! `[dependencies]`, `[dev-dependencies]` and their `[target.*]` forms becomes
//! `lock-core = "<this command's version>"` (`--lock-core-dep VALUE`: any TOML value,
//! e.g. `'{ path = "../lock-core" }'`). Features serial_test 3 enabled on crates the
//! package also depends on directly (`once_cell/std`; `futures-util/std` and
//! `futures-executor/std` with serial_test's `async`; `fslock/std` with `file_locks`)
//! are added to the package's own entries. While any attribute is left unmigrated,
//! serial_test stays and lock-core is added beside it.
//!
//! It prints one line per change (`file:line: old → new`) and per item left as it was,
//! with the reason. Running it again changes nothing. Exit statuses: 0 done; with
//! `--check` nothing is written and the status is 1 if anything would change, else 0;
//! 64 no Cargo.toml in PATH or a bad `--lock-core-dep`; 65 a file that cannot be parsed
//! (nothing is written then); 74 a file that cannot be read or written.
//!
//! # JSON schema
//!
//! Schema 1. Within it, fields may be added but are never removed or changed.
//!
//! ```json
//! {"schema": 1, "backend": "file", "location": "/run/user/1000/lock-core",
//!  "locks": [{"name": "fixtures/db", "mode": "exclusive", "permits": null,
//!             "holder": {"pid": 4242, "host": "build-3", "since_unix_ms": 1767225600000},
//!             "waiting": 1, "file": "/run/user/1000/lock-core/fixtures_2fdb.lock"}]}
//! ```
//!
//! ```json
//! {"schema": 1, "backend": "postgres",
//!  "location": "postgres 127.0.0.1:5432/app table public.lock_core_locks",
//!  "leases": [{"name": "nightly", "mode": "permits", "permits": 2,
//!              "owner": "build-3/4242/9f3a5c0e1b2d4f60/1", "pid": 4242, "host": "build-3",
//!              "fence": 17, "expires_in_ms": 24500}]}
//! ```
//!
//! `backend` is `file`, `postgres`, `redis` or `etcd`; `mode` is `exclusive`, `shared` or
//! `permits` (then `permits` is the count, else `null`). A lock held by several
//! processes (shared, counted) has one entry per holder. `pid`, `host` and
//! `since_unix_ms` are `null` when unknown (a lease owner that is not lock-core's, a
//! file record made on another machine).

#[cfg(unix)]
pub mod args;
#[cfg(unix)]
mod child;
#[cfg(unix)]
pub mod exit;
#[cfg(unix)]
mod group;
#[cfg(unix)]
mod guardian;
#[cfg(unix)]
mod help;
#[cfg(unix)]
pub mod migrate;
#[cfg(unix)]
mod run;
#[cfg(unix)]
mod signals;
#[cfg(unix)]
pub mod status;
#[cfg(unix)]
mod store;
#[cfg(unix)]
mod waitline;

use std::process::ExitCode;

/// The `lock-core` command: parses the command line, runs the subcommand, and returns
/// the exit status (after printing the output, or the failure as one line on standard
/// error).
#[cfg(unix)]
pub fn main() -> ExitCode {
    use clap::Parser;
    use std::io::Write;

    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lock-core: cannot start the async runtime: {e}");
            return ExitCode::from(exit::OSERR);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            args::Command::Run(a) => run::run(a).await.map(|code| (code, String::new())),
            args::Command::Status(a) => status::status(a).await.map(|out| (0, out)),
            args::Command::Migrate(args::MigrateFrom::SerialTest(a)) => migrate::serial_test(a),
        }
    });
    // Nothing is left to wait for: the lock or lease was released above.
    rt.shutdown_background();
    match result {
        Ok((code, out)) => {
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush())
            {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    eprintln!("lock-core: cannot write the output: {e}");
                    return ExitCode::from(exit::SOFTWARE);
                }
            }
            ExitCode::from(code)
        }
        Err(f) => {
            eprintln!("lock-core: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// The `lock-core` command (Unix only).
#[cfg(not(unix))]
pub fn main() -> ExitCode {
    eprintln!("lock-core: this command needs a Unix system");
    ExitCode::from(70)
}

/// Prints one line on standard error without blocking the runtime.
#[cfg(unix)]
async fn say(line: String) {
    let _ = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    })
    .await;
}
