use lock_core::locked;

#[locked(name = "db")]
fn count() -> Option<u32> {
    Some(1)
}

fn main() {}
