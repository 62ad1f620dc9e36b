// #[locked(name = "svc")]
// fn call<'life0, 'async_trait>(&'life0 self, n: u32) -> ::core::pin::Pin<Box<dyn ::core::future::Future<Output = Result<u32, std::io::Error>> + ::core::marker::Send + 'async_trait>>
// where 'life0: 'async_trait, Self: 'async_trait
// {
//     Box::pin(async move {
//         let __self = self;
//         let n = n;
//         let __ret: Result<u32, std::io::Error> = { Ok(n) };
//         #[allow(unreachable_code)]
//         __ret
//     })
// }

fn call<'life0, 'async_trait>(
    &'life0 self,
    n: u32,
) -> ::core::pin::Pin<
    Box<
        dyn ::core::future::Future<
            Output = Result<u32, std::io::Error>,
        > + ::core::marker::Send + 'async_trait,
    >,
>
where
    'life0: 'async_trait,
    Self: 'async_trait,
{
    Box::pin(async move {
        let lock_core_site: &'static ::lock_core::__private::FnSite = {
            static LOCK_CORE_FN: ::lock_core::__private::FnSite = ::lock_core::__private::FnSite {
                func: ::core::concat!(::core::module_path!(), "::", "call"),
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
                    "svc",
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
            ::core::result::Result::Err(lock_core_slow) => {
                match lock_core_slow.wait().await {
                    ::core::result::Result::Ok(lock_core_ok) => lock_core_ok,
                    ::core::result::Result::Err(lock_core_err) => {
                        return {
                            #[allow(unused_imports)]
                            use ::lock_core::__private::{Carry as _, Fallback as _};
                            (&&::lock_core::__private::Wrap::<
                                Result<u32, std::io::Error>,
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
                    let __self = self;
                    let n = n;
                    let __ret: Result<u32, std::io::Error> = { Ok(n) };
                    #[allow(unreachable_code)] __ret
                },
            )
            .await
    })
}
