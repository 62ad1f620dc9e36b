use lock_core::locked;

#[locked(name = "db")]
const fn answer() -> u32 {
    42
}

fn main() {
    let _ = answer();
}
