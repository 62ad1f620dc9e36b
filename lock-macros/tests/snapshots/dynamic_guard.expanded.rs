// #[locked(name = "account-{id}", guard = g, on_error = "panic")]
// async fn credit(id: u32, amount: i64) -> i64 {
//     let _ = g.name();
//     amount
// }

async fn credit(id: u32, amount: i64) -> i64 {
    let lock_core_site: &'static ::lock_core::__private::FnSite = {
        static LOCK_CORE_FN: ::lock_core::__private::FnSite = ::lock_core::__private::FnSite {
            func: ::core::concat!(::core::module_path!(), "::", "credit"),
            ty: ::lock_core::__private::OnceLock::new(),
            file: ::core::file!(),
            line: ::core::line!(),
            classes: &["account-{}"],
        };
        &LOCK_CORE_FN
    };
    let lock_core_held = match ::lock_core::__private::try_acquire(
        ::lock_core::__private::Keys::Names(
            ::std::vec![::std::format!("account-{}", id)],
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
                    ::lock_core::__private::lock_panic(lock_core_err, lock_core_site)
                }
            }
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
                    let lock_core_fake_return: i64 = loop {};
                    return lock_core_fake_return;
                }
                let g = lock_core_held.into_guard();
                let _ = g.name();
                amount
            },
        )
        .await
}
