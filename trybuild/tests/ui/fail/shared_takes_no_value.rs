use lock_core::locked;

#[locked(name = "db", shared = true)]
fn f() {}

fn main() {}
