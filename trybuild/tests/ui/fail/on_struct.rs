use lock_core::locked;

#[locked(name = "db")]
struct Config {
    path: String,
}

fn main() {
    let _ = Config { path: String::new() }.path;
}
