//! Expansion snapshots: each case expands a representative input and compares the
//! pretty-printed result with `tests/snapshots/<case>.expanded.rs`.
//!
//! Run with `UPDATE_SNAPSHOTS=1` to rewrite the files, then review the diff.

use std::path::PathBuf;

use proc_macro2::TokenStream;

fn render(args: &str, item: &str) -> String {
    let args: TokenStream = args.parse().expect("test args tokenize");
    let item: TokenStream = item.parse().expect("test item tokenizes");
    let out = crate::locked2(args, item);
    let file: syn::File = match syn::parse2(out.clone()) {
        Ok(f) => f,
        Err(e) => panic!("expansion does not parse as a file: {e}\n{out}"),
    };
    prettyplease::unparse(&file)
}

fn check(case: &str, args: &str, item: &str) {
    let mut actual = if args.is_empty() {
        "// #[locked]\n".to_owned()
    } else {
        format!("// #[locked({args})]\n")
    };
    let lines: Vec<&str> = item.trim_end().trim_start_matches('\n').lines().collect();
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    for line in lines {
        let line = line.get(indent..).unwrap_or("").trim_end();
        actual.push_str(if line.is_empty() { "//" } else { "// " });
        actual.push_str(line);
        actual.push('\n');
    }
    actual.push('\n');
    actual.push_str(&render(args, item));
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "snapshots"]
        .iter()
        .collect::<PathBuf>()
        .join(format!("{case}.expanded.rs"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create snapshot dir");
        std::fs::write(&path, &actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; run with UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "expansion of `{case}` changed; review and rerun with UPDATE_SNAPSHOTS=1\n\
             --- expected ({})\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}

#[test]
fn async_fixed_name_with_timeout() {
    check(
        "async_fixed",
        r#"name = "db", timeout_ms = 5_000"#,
        r#"
        /// Docs stay.
        #[must_use = "check it"]
        pub async fn post(&self, entry: u64) -> Result<u64, lock_core::LockError> {
            Ok(entry * 2)
        }
        "#,
    );
}

#[test]
fn bare_attribute_on_sync_fn() {
    check(
        "sync_bare",
        "",
        r#"
        fn tick(counter: &std::sync::atomic::AtomicUsize) {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        "#,
    );
}

#[test]
fn dynamic_name_with_guard() {
    check(
        "dynamic_guard",
        r#"name = "account-{id}", guard = g, on_error = "panic""#,
        r#"
        async fn credit(id: u32, amount: i64) -> i64 {
            let _ = g.name();
            amount
        }
        "#,
    );
}

#[test]
fn several_fixed_names_sorted_at_compile_time() {
    check(
        "multi_fixed",
        r#"name = ["cache", "db", "cache"], file"#,
        r#"
        fn both() -> std::io::Result<()> {
            Ok(())
        }
        "#,
    );
}

#[test]
fn mixed_fixed_and_dynamic_names() {
    check(
        "multi_dynamic",
        r#"name = ["user-{from}", "user-{to}"], timeout_ms = 0"#,
        r#"
        async fn transfer<T: std::fmt::Display + Send>(from: T, to: T) -> anyhow::Result<()> where T: Sync {
            Ok(())
        }
        "#,
    );
}

#[test]
fn sync_fn_with_guard_set() {
    check(
        "sync_guard_set",
        r#"name = ["b-{x}", "a"], timeout_ms = 250, guard = set"#,
        r"
        fn both(x: &str) -> anyhow::Result<usize> {
            Ok(set.guards().len())
        }
        ",
    );
}

#[test]
fn async_trait_method() {
    check(
        "async_trait_boxed",
        r#"name = "svc""#,
        r#"
        fn call<'life0, 'async_trait>(&'life0 self, n: u32) -> ::core::pin::Pin<Box<dyn ::core::future::Future<Output = Result<u32, std::io::Error>> + ::core::marker::Send + 'async_trait>>
        where 'life0: 'async_trait, Self: 'async_trait
        {
            Box::pin(async move {
                let __self = self;
                let n = n;
                let __ret: Result<u32, std::io::Error> = { Ok(n) };
                #[allow(unreachable_code)]
                __ret
            })
        }
        "#,
    );
}

#[test]
fn sync_fn_returning_impl_future() {
    check(
        "impl_future_tail",
        r#"name = "job-{id}", file = "target/locks""#,
        r#"
        fn job(id: u64) -> impl std::future::Future<Output = Result<u64, std::io::Error>> + Send {
            let doubled = id * 2;
            async move { Ok(doubled) }
        }
        "#,
    );
}

#[test]
fn lease_store_with_guard() {
    check(
        "store_guard",
        r#"name = "report", store = crate::LOCKS, lease_ms = 30000, guard = lease"#,
        r#"
        async fn report() -> Result<(), lock_core::LockError> {
            Ok(())
        }
        "#,
    );
}

#[test]
fn renamed_crate_and_handler() {
    check(
        "crate_and_handler",
        r#"name = "db", crate = "my_locks", on_error = crate::to_status"#,
        r#"
        fn status() -> Status {
            #![allow(clippy::let_unit_value)]
            Status::Ok
        }
        "#,
    );
}

#[test]
fn misuse_keeps_the_item() {
    check(
        "error_unknown_key",
        r#"nmae = "db""#,
        r#"
        async fn f() {}
        "#,
    );
}

#[test]
fn module_form_locks_its_tests_only() {
    check(
        "module_form",
        r#"name = "fixture-db", file"#,
        r#"
        mod tests {
            fn helper() -> u32 { 1 }

            #[test]
            fn sync_test() { assert_eq!(helper(), 1); }

            #[tokio::test]
            async fn async_test() {}

            #[test]
            #[locked(name = "own")]
            fn has_its_own() {}

            mod nested {
                #[test]
                fn deeper() {}
            }
        }
        "#,
    );
}

#[test]
fn bare_module_form_locks_the_module_path() {
    check(
        "module_form_bare",
        "",
        r#"
        mod serial {
            #[test]
            fn one() {}
        }
        "#,
    );
}

#[test]
fn impl_form_gives_every_method_its_type_scoped_default() {
    check(
        "impl_form",
        "",
        r#"
        impl Account {
            async fn close(&self) -> Result<(), lock_core::LockError> { Ok(()) }
            fn open() -> std::io::Result<()> { Ok(()) }
            #[locked(name = "audit")]
            fn audited(&self) {}
        }
        "#,
    );
}

#[test]
fn shapes_and_per_call_options() {
    check(
        "shapes_and_expressions",
        r#"name = "acct-{self.id}/{key:?}", permits = cfg.slots, timeout_ms = LIMIT_MS, path = cfg.lock_file()"#,
        r#"
        async fn run(&self, key: &str, cfg: &Config) -> anyhow::Result<()> {
            Ok(())
        }
        "#,
    );
}

#[test]
fn shared_hold_of_a_sync_fn() {
    check(
        "shared_sync",
        r#"name = "db", shared, file = DIR"#,
        r#"
        fn read() {}
        "#,
    );
}
