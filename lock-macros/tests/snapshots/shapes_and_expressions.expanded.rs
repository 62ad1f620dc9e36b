// #[locked(name = "acct-{self.id}/{key:?}", permits = cfg.slots, timeout_ms = LIMIT_MS, path = cfg.lock_file())]
// async fn run(&self, key: &str, cfg: &Config) -> anyhow::Result<()> {
//     Ok(())
// }

async fn run(&self, key: &str, cfg: &Config) -> anyhow::Result<()> {
    let lock_core_site: &'static ::lock_core::__private::FnSite = {
        static LOCK_CORE_FN: ::lock_core::__private::FnSite = ::lock_core::__private::FnSite {
            func: ::core::concat!(::core::module_path!(), "::", "run"),
            ty: ::lock_core::__private::OnceLock::new(),
            file: ::core::file!(),
            line: ::core::line!(),
            classes: &["acct-{}/{}"],
        };
        &LOCK_CORE_FN
    };
    lock_core_site.method_of(::core::any::type_name::<Self>());
    let lock_core_timeout: ::core::option::Option<u64> = ::lock_core::__private::IntoMillis::into_millis(
        LIMIT_MS,
    );
    let lock_core_permits: u32 = ::lock_core::__private::IntoPermits::into_permits(
        cfg.slots,
    );
    let lock_core_place = cfg.lock_file();
    let lock_core_held = match ::lock_core::__private::try_acquire(
        ::lock_core::__private::Keys::Names(
            ::std::vec![::std::format!("acct-{}/{:?}", self.id, key)],
        ),
        ::lock_core::__private::Options {
            timeout_ms: lock_core_timeout,
            file: ::lock_core::__private::FileMode::path(&lock_core_place),
            mode: ::lock_core::__private::permits(lock_core_permits),
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
