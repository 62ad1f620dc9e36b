use lock_core::locked;

#[locked(name = "gpu", permits = "2")]
fn f() {}

fn main() {}
