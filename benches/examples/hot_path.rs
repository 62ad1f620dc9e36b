//! A fixed workload for instruction-count profiling of the hot paths:
//! `valgrind --tool=callgrind target/release/examples/hot_path <case> <n>`.
//! Cases: `try` (try_acquire+drop of one name), `acquire` (async), `tokio` (tokio Mutex
//! floor), `attr` / `attr-sync` (`#[locked]` fns), `file`
//! (`LockDir::try_acquire`), `fresh` (a new name each time).

#[lock_core::locked(name = "hot-attr")]
async fn attr() {}

#[lock_core::locked(name = "hot-attr-sync")]
fn attr_sync() {}

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| "try".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    match case.as_str() {
        "try" => {
            for _ in 0..n {
                drop(lock_core::try_acquire("hot"));
            }
        }
        "acquire" => rt.block_on(async {
            for _ in 0..n {
                drop(lock_core::acquire("hot").await);
            }
        }),
        "attr" => rt.block_on(async {
            for _ in 0..n {
                attr().await;
            }
        }),
        "attr-sync" => {
            for _ in 0..n {
                attr_sync();
            }
        }
        "file" => {
            let dir =
                lock_core::file::LockDir::new(std::env::temp_dir().join("lock-core-hot-path"));
            for _ in 0..n {
                drop(dir.try_acquire("hot-file"));
            }
        }
        "tokio" => rt.block_on(async {
            let m = tokio::sync::Mutex::new(());
            for _ in 0..n {
                drop(m.lock().await);
            }
        }),
        "fresh" => {
            let names: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
            for name in &names {
                drop(lock_core::try_acquire(name));
            }
        }
        other => eprintln!("unknown case {other}"),
    }
}
