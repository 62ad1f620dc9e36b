//! Generated code only uses absolute paths and hygienic locals: user items named like
//! std's, the prelude's, or the macro's own locals change nothing, and no lint fires.
#![deny(warnings, unused_qualifications, unused_braces, unused_results)]
#![deny(clippy::all)]
#![allow(dead_code)]

mod core {}
mod std {}
struct Option;
struct Some;
struct None;
struct Ok;
struct Err;
struct Box;
struct Vec;
struct String;

type Result<T> = ::std::result::Result<T, lock_core::LockError>;

#[lock_core::locked(name = "shadow")]
async fn fixed() -> Result<u8> {
    let lock_core_held = 1u8;
    ::std::result::Result::Ok(lock_core_held)
}

#[lock_core::locked(name = "shadow-{id}", timeout_ms = 1, guard = guard)]
async fn dynamic(id: u32) -> Result<u32> {
    let _ = guard.name();
    ::std::result::Result::Ok(id)
}

#[lock_core::locked(name = ["shadow-a", "shadow-{id}"])]
fn sync(id: u32) -> Result<u32> {
    ::std::result::Result::Ok(id)
}

#[lock_core::locked(name = "SITE")]
async fn site() {
    static SITE: u8 = 0;
    let _ = SITE;
}

#[lock_core::locked]
fn tail_future() -> impl ::core::future::Future<Output = Result<()>> {
    async { ::std::result::Result::Ok(()) }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert_eq!(rt.block_on(fixed()).unwrap(), 1);
    assert_eq!(rt.block_on(dynamic(2)).unwrap(), 2);
    assert_eq!(sync(3).unwrap(), 3);
    rt.block_on(site());
    rt.block_on(tail_future()).unwrap();
}
