use lock_core::locked;

#[locked(name = "db")]
async fn render(n: u32) -> impl std::fmt::Display {
    n
}

fn main() {}
