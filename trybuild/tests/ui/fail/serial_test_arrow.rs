use lock_core::locked;

#[locked(name = "db", path => "target/db.lock")]
fn f() {}

fn main() {}
