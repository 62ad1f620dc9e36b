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
//!
//! Every wait is bounded; a child never outlives a minute.

use std::io::{BufRead, Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lock_core::file::LockDir;
use lock_core::LockError;

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

fn main() {
    // A stuck child must not outlive the test that spawned it.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(60));
        eprintln!("file_child: watchdog expired");
        std::process::exit(3);
    });
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).expect("missing argument");
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
