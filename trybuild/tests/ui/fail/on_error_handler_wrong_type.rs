use lock_core::{locked, LockError};

fn handler(_: LockError) -> String {
    String::new()
}

#[locked(name = "db", on_error = handler)]
async fn f() -> u32 {
    1
}

fn main() {}
