// #[locked(name = ["b-{x}", "a"], timeout_ms = 250, guard = set)]
// fn both(x: &str) -> anyhow::Result<usize> {
//     Ok(set.guards().len())
// }

fn both(x: &str) -> anyhow::Result<usize> {
    let lock_core_held = match ::lock_core::__private::blocking_acquire(
        ::lock_core::__private::Keys::Names(
            ::std::vec![
                ::std::format!("b-{}", x), < ::std::string::String as
                ::core::convert::From < & str >> ::from("a")
            ],
        ),
        ::lock_core::__private::Options {
            timeout_ms: ::core::option::Option::Some(250u64),
            file: ::lock_core::__private::FileMode::Off,
        },
    ) {
        ::core::result::Result::Ok(lock_core_ok) => lock_core_ok,
        ::core::result::Result::Err(lock_core_err) => {
            return <anyhow::Result<
                usize,
            > as ::lock_core::__private::LockFailure>::lock_failure(lock_core_err);
        }
    };
    let lock_core_frame = ::lock_core::__private::frame(&lock_core_held);
    let _lock_core_entered = ::lock_core::__private::enter(&lock_core_frame);
    let set = lock_core_held.into_set();
    Ok(set.guards().len())
}
