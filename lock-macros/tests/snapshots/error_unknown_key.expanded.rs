// #[locked(nmae = "db")]
// async fn f() {}

::core::compile_error! {
    "unknown argument `nmae` (did you mean `name`?); valid arguments are `name`, `timeout_ms`, `shared`, `permits`, `file`, `path`, `store`, `lease_ms`, `guard`, `on_error`, `crate`, `reentrant`, `readers_first`"
}
#[allow(unused_variables)]
async fn f() {}
