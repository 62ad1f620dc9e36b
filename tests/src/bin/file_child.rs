//! Child process for the multi-process file-lock tests (`tests/file_*.rs`).
//!
//! Not a test: the tests spawn it (`CARGO_BIN_EXE_file_child`) with one command:
//!
//! * `counter <dir> <name> <counter-file> <steps> <async|blocking>` — `steps` times: take
//!   the lock, read the counter, pause, write it back plus one, release. Prints `done`.
//! * `hold <dir> <name>` — takes the lock, prints `locked <pid>`, then releases it when a
//!   line `release` arrives on stdin (or stdin closes), prints `released`, and exits.
//! * `try <dir> <name>` — one `try_acquire`; prints `ok` or `busy <code> <holder pid>`.
//! * `wait <dir> <name> <timeout-ms> [executor]` — `acquire_timeout`; prints `acquired
//!   <unix-ns>` (the moment it got the lock) or `err <code> <holder pid>`. The executor is
//!   `tokio` (default: a current-thread runtime with all drivers), `bare` (one without
//!   drivers) or `block-on` (`futures::executor::block_on`).
//! * `is-locked <dir> <name>` — prints `true` or `false`.
//! * `stamp <dir> <name>` — waits for a line on stdin, prints `at <unix-ns>` (the
//!   wake-up floor through a pipe, to compare hand-offs with).
//! * `hold-mode <dir> <name> <mode> [timeout-ms]` — like `hold`, in `mode` (`exclusive`,
//!   `shared`, `permits:N`), waiting at most `timeout-ms` (default 30 s); prints `locked
//!   <pid>` or `err <code> <holder pid>`.
//! * `probe <dir> <name> <mode>` / `probe-path <file> <name> <mode>` — one `try_acquire`
//!   in `mode` (in a lock directory / on exactly `file`); prints `ok`, or `err <code>
//!   holder=<none|pid|unknown>` (`unknown`: a holder without a pid).
//! * `turns <dir> <name> <count> <hold-ms> <async|blocking|blocking-timeout>` — prints
//!   `ready`, waits for a line on stdin, then `count` times: prints `w <mono-ns>`, takes
//!   the lock (async `acquire`, `blocking_acquire(None)` or `blocking_acquire(Some(30 s))`),
//!   prints `a <mono-ns>`, holds it `hold-ms`, releases. Prints `done`. The clock is
//!   `CLOCK_MONOTONIC`, shared by the processes of the machine.
//! * `default-try <name>` — `file::try_acquire` in the default directory; prints `ok
//!   <default dir>` or `err <code> <message on one line>`.
//! * `default-hold <name>` — `file::blocking_acquire` in the default directory; prints
//!   `locked <pid> <default dir>`, then like `hold`.
//!
//! Every wait is bounded; a child never outlives a minute.

use std::io::{BufRead, Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lock_core::file::LockDir;
use lock_core::{Lock, LockError, Mode};

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn holder_pid(e: &LockError) -> String {
    e.holder()
        .and_then(|h| h.pid)
        .map_or("-".to_owned(), |p| p.to_string())
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn step(path: &std::path::Path, i: usize) {
    let n: u64 = match std::fs::read_to_string(path) {
        Ok(s) => s.trim().parse().expect("counter file holds a number"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => panic!("read {}: {e}", path.display()),
    };
    // Widen the read-modify-write window so that a broken lock loses updates.
    if i.is_multiple_of(3) {
        std::thread::sleep(Duration::from_micros(200));
    } else {
        std::thread::yield_now();
    }
    std::fs::write(path, format!("{}\n", n + 1)).expect("write counter");
}

fn mono_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; CLOCK_MONOTONIC always exists.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) },
        0
    );
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

fn mode_of(s: &str) -> Mode {
    match s {
        "exclusive" => Mode::Exclusive,
        "shared" => Mode::Shared,
        other => match other.strip_prefix("permits:") {
            Some(n) => Mode::Permits(n.parse().expect("permits:N")),
            None => panic!("unknown mode {other}"),
        },
    }
}

fn outcome(r: Result<lock_core::LockGuard, LockError>) -> String {
    match r {
        Ok(g) => {
            drop(g);
            "ok".to_owned()
        }
        Err(e) => {
            let holder = match e.holder() {
                None => "none".to_owned(),
                Some(h) => h.pid.map_or("unknown".to_owned(), |p| p.to_string()),
            };
            format!("err {} holder={holder}", e.code())
        }
    }
}

fn wait_release(g: lock_core::LockGuard) {
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    g.release().unwrap();
    say("released");
    // Wait for the parent to close stdin, so it can still read our output.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

fn turns(dir: &LockDir, name: &str, args: &[String]) {
    let count: usize = args[3].parse().unwrap();
    let hold = Duration::from_millis(args[4].parse().unwrap());
    let kind = args[5].as_str();
    say("ready");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    let turn = |g: lock_core::LockGuard| {
        say(&format!("a {}", mono_ns()));
        std::thread::sleep(hold);
        g.release().unwrap();
    };
    match kind {
        "async" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for _ in 0..count {
                    say(&format!("w {}", mono_ns()));
                    turn(
                        dir.acquire_timeout(name, Duration::from_secs(30))
                            .await
                            .unwrap(),
                    );
                }
            });
        }
        "blocking" | "blocking-timeout" => {
            let timeout = (kind == "blocking-timeout").then_some(Duration::from_secs(30));
            for _ in 0..count {
                say(&format!("w {}", mono_ns()));
                turn(dir.blocking_acquire(name, timeout).unwrap());
            }
        }
        other => panic!("unknown kind of wait {other}"),
    }
    say("done");
}

fn main() {
    // A stuck child must not outlive the test that spawned it.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(60));
        eprintln!("file_child: watchdog expired");
        std::process::exit(3);
    });
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).expect("missing argument");
    // Commands on the default directory, or on an exact file: no `<dir>` argument.
    match arg(0) {
        "default-try" => {
            match lock_core::file::try_acquire(arg(1)) {
                Ok(g) => {
                    drop(g);
                    say(&format!("ok {}", lock_core::file::default_dir().display()));
                }
                Err(e) => say(&format!(
                    "err {} {}",
                    e.code(),
                    e.to_string().replace('\n', " ")
                )),
            }
            return;
        }
        "default-hold" => {
            let g =
                lock_core::file::blocking_acquire(arg(1), Some(Duration::from_secs(30))).unwrap();
            say(&format!(
                "locked {} {}",
                std::process::id(),
                lock_core::file::default_dir().display()
            ));
            wait_release(g);
            return;
        }
        "probe-path" => {
            let file = std::path::PathBuf::from(arg(1));
            let r = Lock::new(arg(2))
                .path(&file)
                .mode(mode_of(arg(3)))
                .try_acquire();
            say(&outcome(r));
            return;
        }
        _ => {}
    }
    let dir = LockDir::new(arg(1));
    let name = arg(2);
    match arg(0) {
        "counter" => {
            let path = std::path::PathBuf::from(arg(3));
            let steps: usize = arg(4).parse().unwrap();
            match arg(5) {
                "async" => {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        for i in 0..steps {
                            let g = dir
                                .acquire_timeout(name, Duration::from_secs(30))
                                .await
                                .unwrap();
                            step(&path, i);
                            g.release().unwrap();
                        }
                    });
                }
                "blocking" => {
                    for i in 0..steps {
                        let g = dir
                            .blocking_acquire(name, Some(Duration::from_secs(30)))
                            .unwrap();
                        step(&path, i);
                        g.release().unwrap();
                    }
                }
                other => panic!("unknown counter mode {other}"),
            }
            say("done");
        }
        "hold" => {
            let g = dir
                .blocking_acquire(name, Some(Duration::from_secs(30)))
                .unwrap();
            say(&format!("locked {}", std::process::id()));
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            g.release().unwrap();
            say("released");
            // Wait for the parent to close stdin, so it can still read our output.
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        }
        "try" => match dir.try_acquire(name) {
            Ok(g) => {
                drop(g);
                say("ok");
            }
            Err(e) => say(&format!("busy {} {}", e.code(), holder_pid(&e))),
        },
        "wait" => {
            let ms: u64 = arg(3).parse().unwrap();
            let wait = async {
                match dir.acquire_timeout(name, Duration::from_millis(ms)).await {
                    Ok(g) => {
                        let t = now_ns();
                        drop(g);
                        say(&format!("acquired {t}"));
                    }
                    Err(e) => say(&format!("err {} {}", e.code(), holder_pid(&e))),
                }
            };
            match args.get(4).map_or("tokio", String::as_str) {
                "tokio" => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(wait),
                "bare" => tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap()
                    .block_on(wait),
                "block-on" => futures::executor::block_on(wait),
                other => panic!("unknown executor {other}"),
            }
        }
        "hold-mode" => {
            let ms: u64 = args.get(4).map_or(30_000, |s| s.parse().unwrap());
            let r = dir
                .lock(name)
                .mode(mode_of(arg(3)))
                .timeout(Duration::from_millis(ms))
                .blocking_acquire();
            match r {
                Ok(g) => {
                    say(&format!("locked {}", std::process::id()));
                    wait_release(g);
                }
                Err(e) => say(&format!("err {} {}", e.code(), holder_pid(&e))),
            }
        }
        "probe" => say(&outcome(dir.lock(name).mode(mode_of(arg(3))).try_acquire())),
        "turns" => turns(&dir, name, &args),
        "is-locked" => say(&dir.is_locked(name).to_string()),
        "stamp" => {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            say(&format!("at {}", now_ns()));
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        }
        other => panic!("unknown command {other}"),
    }
}
