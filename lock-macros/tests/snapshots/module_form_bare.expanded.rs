// #[locked]
// mod serial {
//     #[test]
//     fn one() {}
// }

mod serial {
    #[test]
    fn one() {
        let lock_core_site: &'static ::lock_core::__private::FnSite = {
            static LOCK_CORE_FN: ::lock_core::__private::FnSite = ::lock_core::__private::FnSite {
                func: ::core::concat!(::core::module_path!(), "::", "one"),
                ty: ::lock_core::__private::OnceLock::new(),
                file: ::core::file!(),
                line: ::core::line!(),
                classes: &[],
            };
            &LOCK_CORE_FN
        };
        let lock_core_held = match ::lock_core::__private::blocking_acquire(
            ::lock_core::__private::Keys::Site({
                static SITE: ::lock_core::__private::Site = ::lock_core::__private::Site::new(
                    ::core::module_path!(),
                );
                &SITE
            }),
            ::lock_core::__private::Options {
                timeout_ms: ::core::option::Option::None,
                file: ::lock_core::__private::FileMode::Off,
                mode: ::lock_core::__private::EXCLUSIVE,
                site: lock_core_site,
                reentrant: false,
                readers_first: false,
            },
        ) {
            ::core::result::Result::Ok(lock_core_ok) => lock_core_ok,
            ::core::result::Result::Err(lock_core_err) => {
                return {
                    #[allow(unused_imports)]
                    use ::lock_core::__private::{Carry as _, PanicFallback as _};
                    (&&::lock_core::__private::Wrap::<()>::NEW)
                        .lock_failure(lock_core_err, lock_core_site)
                };
            }
        };
        let lock_core_frame = ::lock_core::__private::frame(
            &lock_core_held,
            lock_core_site,
        );
        let _lock_core_entered = ::lock_core::__private::enter(&lock_core_frame);
    }
}
