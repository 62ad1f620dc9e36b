use lock_core::locked;

#[locked(name = "job-{id}")]
mod tests {
    #[test]
    fn first() {}

    fn helper_is_not_locked(id: u32) -> u32 {
        id
    }
}

fn main() {}
