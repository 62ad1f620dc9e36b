// #[locked]
// fn tick(counter: &std::sync::atomic::AtomicUsize) {
//     counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
// }

fn tick(counter: &std::sync::atomic::AtomicUsize) {
    let lock_core_held = match ::lock_core::__private::blocking_acquire(
        ::lock_core::__private::Keys::Site({
            static SITE: ::lock_core::__private::Site = ::lock_core::__private::Site::new(
                ::core::concat!(::core::module_path!(), "::", "tick"),
            );
            &SITE
        }),
        ::lock_core::__private::Options {
            timeout_ms: ::core::option::Option::None,
            file: ::lock_core::__private::FileMode::Off,
        },
    ) {
        ::core::result::Result::Ok(lock_core_ok) => lock_core_ok,
        ::core::result::Result::Err(lock_core_err) => {
            return <() as ::lock_core::__private::LockFailure>::lock_failure(
                lock_core_err,
            );
        }
    };
    let lock_core_frame = ::lock_core::__private::frame(&lock_core_held);
    let _lock_core_entered = ::lock_core::__private::enter(&lock_core_frame);
    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}
