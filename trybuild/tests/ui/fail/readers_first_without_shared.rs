use lock_core::locked;

#[locked(name = "db", readers_first)]
async fn write() {}

fn main() {}
