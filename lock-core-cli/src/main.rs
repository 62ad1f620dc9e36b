//! The `lock-core` command. Everything is in the `lock_core_cli` library target (whose
//! documentation describes the command, its exit statuses and its JSON output), so that
//! the binary's documentation does not collide with that of the `lock_core` library.

fn main() -> std::process::ExitCode {
    lock_core_cli::main()
}
