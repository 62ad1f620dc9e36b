use lock_core::locked;

#[locked(name = "gpu", shared, permits = 2)]
fn f() {}

fn main() {}
