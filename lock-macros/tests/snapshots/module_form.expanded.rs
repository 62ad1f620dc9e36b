// #[locked(name = "fixture-db", file)]
// mod tests {
//     fn helper() -> u32 { 1 }
//
//     #[test]
//     fn sync_test() { assert_eq!(helper(), 1); }
//
//     #[tokio::test]
//     async fn async_test() {}
//
//     #[test]
//     #[locked(name = "own")]
//     fn has_its_own() {}
//
//     mod nested {
//         #[test]
//         fn deeper() {}
//     }
// }

mod tests {
    fn helper() -> u32 {
        1
    }
    #[test]
    fn sync_test() {
        let lock_core_site: &'static ::lock_core::__private::FnSite = {
            static LOCK_CORE_FN: ::lock_core::__private::FnSite = ::lock_core::__private::FnSite {
                func: ::core::concat!(::core::module_path!(), "::", "sync_test"),
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
                    "fixture-db",
                );
                &SITE
            }),
            ::lock_core::__private::Options {
                timeout_ms: ::core::option::Option::None,
                file: ::lock_core::__private::FileMode::DefaultDir,
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
        assert_eq!(helper(), 1);
    }
    #[tokio::test]
    async fn async_test() {
        let lock_core_site: &'static ::lock_core::__private::FnSite = {
            static LOCK_CORE_FN: ::lock_core::__private::FnSite = ::lock_core::__private::FnSite {
                func: ::core::concat!(::core::module_path!(), "::", "async_test"),
                ty: ::lock_core::__private::OnceLock::new(),
                file: ::core::file!(),
                line: ::core::line!(),
                classes: &[],
            };
            &LOCK_CORE_FN
        };
        let lock_core_held = match ::lock_core::__private::try_acquire(
            ::lock_core::__private::Keys::Site({
                static SITE: ::lock_core::__private::Site = ::lock_core::__private::Site::new(
                    "fixture-db",
                );
                &SITE
            }),
            ::lock_core::__private::Options {
                timeout_ms: ::core::option::Option::None,
                file: ::lock_core::__private::FileMode::DefaultDir,
                mode: ::lock_core::__private::EXCLUSIVE,
                site: lock_core_site,
                reentrant: false,
                readers_first: false,
            },
        ) {
            ::core::result::Result::Ok(lock_core_ok) => lock_core_ok,
            ::core::result::Result::Err(lock_core_slow) => {
                match lock_core_slow.wait().await {
                    ::core::result::Result::Ok(lock_core_ok) => lock_core_ok,
                    ::core::result::Result::Err(lock_core_err) => {
                        return {
                            #[allow(unused_imports)]
                            use ::lock_core::__private::{Carry as _, PanicFallback as _};
                            (&&::lock_core::__private::Wrap::<()>::NEW)
                                .lock_failure(lock_core_err, lock_core_site)
                        };
                    }
                }
            }
        };
        ::lock_core::__private::scope(&lock_core_held, lock_core_site, async move {})
            .await
    }
    #[test]
    #[locked(name = "own")]
    fn has_its_own() {}
    mod nested {
        #[test]
        fn deeper() {
            let lock_core_site: &'static ::lock_core::__private::FnSite = {
                static LOCK_CORE_FN: ::lock_core::__private::FnSite = ::lock_core::__private::FnSite {
                    func: ::core::concat!(::core::module_path!(), "::", "deeper"),
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
                        "fixture-db",
                    );
                    &SITE
                }),
                ::lock_core::__private::Options {
                    timeout_ms: ::core::option::Option::None,
                    file: ::lock_core::__private::FileMode::DefaultDir,
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
}
