// #[locked(name = "db", timeout_ms = 5_000)]
// /// Docs stay.
// #[must_use = "check it"]
// pub async fn post(&self, entry: u64) -> Result<u64, lock_core::LockError> {
//     Ok(entry * 2)
// }

/// Docs stay.
#[must_use = "check it"]
pub async fn post(&self, entry: u64) -> Result<u64, lock_core::LockError> {
    let lock_core_site: &'static ::lock_core::__private::FnSite = {
        static LOCK_CORE_FN: ::lock_core::__private::FnSite = ::lock_core::__private::FnSite {
            func: ::core::concat!(::core::module_path!(), "::", "post"),
            ty: ::lock_core::__private::OnceLock::new(),
            file: ::core::file!(),
            line: ::core::line!(),
            classes: &[],
        };
        &LOCK_CORE_FN
    };
    lock_core_site.method_of(::core::any::type_name::<Self>());
    let lock_core_held = match ::lock_core::__private::try_acquire(
        ::lock_core::__private::Keys::Site({
            static SITE: ::lock_core::__private::Site = ::lock_core::__private::Site::new(
                "db",
            );
            &SITE
        }),
        ::lock_core::__private::Options {
            timeout_ms: ::core::option::Option::Some(5000u64),
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
                            Result<u64, lock_core::LockError>,
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
                    let lock_core_fake_return: Result<u64, lock_core::LockError> = loop {};
                    return lock_core_fake_return;
                }
                Ok(entry * 2)
            },
        )
        .await
}
