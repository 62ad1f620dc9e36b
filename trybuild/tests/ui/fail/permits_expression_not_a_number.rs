use lock_core::locked;

const SLOTS: &str = "two";

#[locked(name = "gpu", permits = SLOTS)]
fn f() {}

fn main() {}
