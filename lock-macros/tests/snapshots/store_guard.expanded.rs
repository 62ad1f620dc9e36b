// #[locked(name = "report", store = crate::LOCKS, lease_ms = 30000, guard = lease)]
// async fn report() -> Result<(), lock_core::LockError> {
//     Ok(())
// }

async fn report() -> Result<(), lock_core::LockError> {
    let lock_core_site: &'static ::lock_core::__private::FnSite = {
        static LOCK_CORE_FN: ::lock_core::__private::FnSite = ::lock_core::__private::FnSite {
            func: ::core::concat!(::core::module_path!(), "::", "report"),
            ty: ::lock_core::__private::OnceLock::new(),
            file: ::core::file!(),
            line: ::core::line!(),
            classes: &[],
        };
        &LOCK_CORE_FN
    };
    let lock_core_held = match ::lock_core::__private::acquire_store(
            {
                use ::lock_core::__private::StoreArg as _;
                (crate::LOCKS).lock_core_store()
            },
            ::lock_core::__private::Keys::Site({
                static SITE: ::lock_core::__private::Site = ::lock_core::__private::Site::new(
                    "report",
                );
                &SITE
            }),
            ::lock_core::__private::StoreOptions {
                timeout_ms: ::core::option::Option::None,
                lease_ms: ::core::option::Option::Some(30000u64),
                mode: ::lock_core::__private::EXCLUSIVE,
                several: false,
                site: lock_core_site,
            },
        )
        .await
    {
        ::core::result::Result::Ok(lock_core_ok) => lock_core_ok,
        ::core::result::Result::Err(lock_core_err) => {
            return {
                #[allow(unused_imports)]
                use ::lock_core::__private::{Carry as _, Fallback as _};
                (&&::lock_core::__private::Wrap::<Result<(), lock_core::LockError>>::NEW)
                    .lock_failure(lock_core_err, lock_core_site)
            };
        }
    };
    ::lock_core::__private::scope_with(
            ::lock_core::__private::frame(&lock_core_held, lock_core_site),
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
                let lease = lock_core_held.into_lease();
                Ok(())
            },
        )
        .await
}
