use lock_core::locked;

#[locked(name = "db")]
async fn count() -> u32 {
    1
}

fn main() {}
