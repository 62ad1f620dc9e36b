// #[locked(name = "job-{id}", file = "target/locks")]
// fn job(id: u64) -> impl std::future::Future<Output = Result<u64, std::io::Error>> + Send {
//     let doubled = id * 2;
//     async move { Ok(doubled) }
// }

fn job(
    id: u64,
) -> impl std::future::Future<Output = Result<u64, std::io::Error>> + Send {
    let doubled = id * 2;
    async move {
        let lock_core_site: &'static ::lock_core::__private::FnSite = {
            static LOCK_CORE_FN: ::lock_core::__private::FnSite = ::lock_core::__private::FnSite {
                func: ::core::concat!(::core::module_path!(), "::", "job"),
                ty: ::lock_core::__private::OnceLock::new(),
                file: ::core::file!(),
                line: ::core::line!(),
                classes: &["job-{}"],
            };
            &LOCK_CORE_FN
        };
        let lock_core_held = match ::lock_core::__private::try_acquire(
            ::lock_core::__private::Keys::Names(
                ::std::vec![::std::format!("job-{}", id)],
            ),
            ::lock_core::__private::Options {
                timeout_ms: ::core::option::Option::None,
                file: ::lock_core::__private::FileMode::dir("target/locks"),
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
                                Result<u64, std::io::Error>,
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
                async move { Ok(doubled) },
            )
            .await
    }
}
