// #[locked]
// impl Account {
//     async fn close(&self) -> Result<(), lock_core::LockError> { Ok(()) }
//     fn open() -> std::io::Result<()> { Ok(()) }
//     #[locked(name = "audit")]
//     fn audited(&self) {}
// }

impl Account {
    async fn close(&self) -> Result<(), lock_core::LockError> {
        let lock_core_site: &'static ::lock_core::__private::FnSite = {
            static LOCK_CORE_FN: ::lock_core::__private::FnSite = ::lock_core::__private::FnSite {
                func: ::core::concat!(::core::module_path!(), "::", "Account::close"),
                ty: ::lock_core::__private::OnceLock::new(),
                file: ::core::file!(),
                line: ::core::line!(),
                classes: &[],
            };
            &LOCK_CORE_FN
        };
        let lock_core_held = match ::lock_core::__private::try_acquire(
            ::lock_core::__private::Keys::Method(
                {
                    static SITE: ::lock_core::__private::MethodSite = ::lock_core::__private::MethodSite::new(
                        ::core::module_path!(),
                        "close",
                    );
                    &SITE
                },
                ::core::any::type_name::<Self>(),
            ),
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
            ::core::result::Result::Err(lock_core_slow) => {
                match lock_core_slow.wait().await {
                    ::core::result::Result::Ok(lock_core_ok) => lock_core_ok,
                    ::core::result::Result::Err(lock_core_err) => {
                        return {
                            #[allow(unused_imports)]
                            use ::lock_core::__private::{Carry as _, Fallback as _};
                            (&&::lock_core::__private::Wrap::<
                                Result<(), lock_core::LockError>,
                            >::NEW)
                                .lock_failure(lock_core_err, lock_core_site)
                        };
                    }
                }
            }
        };
        ::lock_core::__private::scope(
                &lock_core_held,
                lock_core_site,
                async move {
                    #[allow(
                        unknown_lints,
                        unreachable_code,
                        clippy::diverging_sub_expression,
                        clippy::empty_loop,
                        clippy::let_unit_value,
                        clippy::let_with_type_underscore,
                        clippy::needless_return,
                        clippy::unreachable
                    )]
                    if false {
                        let lock_core_fake_return: Result<(), lock_core::LockError> = loop {};
                        return lock_core_fake_return;
                    }
                    Ok(())
                },
            )
            .await
    }
    fn open() -> std::io::Result<()> {
        let lock_core_site: &'static ::lock_core::__private::FnSite = {
            static LOCK_CORE_FN: ::lock_core::__private::FnSite = ::lock_core::__private::FnSite {
                func: ::core::concat!(::core::module_path!(), "::", "Account::open"),
                ty: ::lock_core::__private::OnceLock::new(),
                file: ::core::file!(),
                line: ::core::line!(),
                classes: &[],
            };
            &LOCK_CORE_FN
        };
        let lock_core_held = match ::lock_core::__private::blocking_acquire(
            ::lock_core::__private::Keys::Method(
                {
                    static SITE: ::lock_core::__private::MethodSite = ::lock_core::__private::MethodSite::new(
                        ::core::module_path!(),
                        "open",
                    );
                    &SITE
                },
                ::core::any::type_name::<Self>(),
            ),
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
                    use ::lock_core::__private::{Carry as _, Fallback as _};
                    (&&::lock_core::__private::Wrap::<std::io::Result<()>>::NEW)
                        .lock_failure(lock_core_err, lock_core_site)
                };
            }
        };
        let lock_core_frame = ::lock_core::__private::frame(
            &lock_core_held,
            lock_core_site,
        );
        let _lock_core_entered = ::lock_core::__private::enter(&lock_core_frame);
        Ok(())
    }
    #[locked(name = "audit")]
    fn audited(&self) {}
}
