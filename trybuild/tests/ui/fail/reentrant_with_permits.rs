use lock_core::locked;

#[locked(name = "gpu", permits = 2, reentrant)]
async fn render() {}

fn main() {}
