use lock_core::locked;

#[locked(name = "gpu", permits = 0)]
fn f() {}

fn main() {}
