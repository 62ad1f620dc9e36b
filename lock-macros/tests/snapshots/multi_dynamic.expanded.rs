// #[locked(name = ["user-{from}", "user-{to}"], timeout_ms = 0)]
// async fn transfer<T: std::fmt::Display + Send>(from: T, to: T) -> anyhow::Result<()> where T: Sync {
//     Ok(())
// }

async fn transfer<T: std::fmt::Display + Send>(from: T, to: T) -> anyhow::Result<()>
where
    T: Sync,
{
    let lock_core_site: &'static ::lock_core::__private::FnSite = {
        static LOCK_CORE_FN: ::lock_core::__private::FnSite = ::lock_core::__private::FnSite {
            func: ::core::concat!(::core::module_path!(), "::", "transfer"),
            ty: ::lock_core::__private::OnceLock::new(),
            file: ::core::file!(),
            line: ::core::line!(),
            classes: &["user-{}", "user-{}"],
        };
        &LOCK_CORE_FN
    };
    let lock_core_held = match ::lock_core::__private::try_acquire(
        ::lock_core::__private::Keys::Names(
            ::std::vec![::std::format!("user-{}", from), ::std::format!("user-{}", to)],
        ),
        ::lock_core::__private::Options {
            timeout_ms: ::core::option::Option::Some(0u64),
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
                        (&&::lock_core::__private::Wrap::<anyhow::Result<()>>::NEW)
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
                    let lock_core_fake_return: anyhow::Result<()> = loop {};
                    return lock_core_fake_return;
                }
                Ok(())
            },
        )
        .await
}
