use lock_core::locked;

struct Store;

#[locked(name = "db", store = &Store, reentrant)]
async fn post() {}

fn main() {}
