use lock_core::locked;

#[locked(name = "db")]
async fn count() -> Result<u64, String> {
    Ok(1)
}

fn main() {}
