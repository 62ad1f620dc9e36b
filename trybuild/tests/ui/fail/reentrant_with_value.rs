use lock_core::locked;

#[locked(name = "db", reentrant = true)]
async fn post() {}

fn main() {}
