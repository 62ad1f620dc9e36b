// #[locked(name = "db", crate = "my_locks", on_error = crate::to_status)]
// fn status() -> Status {
//     #![allow(clippy::let_unit_value)]
//     Status::Ok
// }

fn status() -> Status {
    #![allow(clippy::let_unit_value)]
    let lock_core_site: &'static my_locks::__private::FnSite = {
        static LOCK_CORE_FN: my_locks::__private::FnSite = my_locks::__private::FnSite {
            func: ::core::concat!(::core::module_path!(), "::", "status"),
            ty: my_locks::__private::OnceLock::new(),
            file: ::core::file!(),
            line: ::core::line!(),
            classes: &[],
        };
        &LOCK_CORE_FN
    };
    let lock_core_held = match my_locks::__private::blocking_acquire(
        my_locks::__private::Keys::Site({
            static SITE: my_locks::__private::Site = my_locks::__private::Site::new(
                "db",
            );
            &SITE
        }),
        my_locks::__private::Options {
            timeout_ms: ::core::option::Option::None,
            file: my_locks::__private::FileMode::Off,
            mode: my_locks::__private::EXCLUSIVE,
            site: lock_core_site,
            reentrant: false,
            readers_first: false,
        },
    ) {
        ::core::result::Result::Ok(lock_core_ok) => lock_core_ok,
        ::core::result::Result::Err(lock_core_err) => {
            return crate::to_status(lock_core_err);
        }
    };
    let lock_core_frame = my_locks::__private::frame(&lock_core_held, lock_core_site);
    let _lock_core_entered = my_locks::__private::enter(&lock_core_frame);
    Status::Ok
}
