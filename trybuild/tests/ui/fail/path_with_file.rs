use lock_core::locked;

#[locked(name = "db", file, path = "target/db.lock")]
fn f() {}

fn main() {}
