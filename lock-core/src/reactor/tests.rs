use super::wait::*;
use super::*;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Wake;
use std::task::{Context, Poll};

/// A private reactor per test, so its table sizes are exactly this test's.
macro_rules! private_reactor {
    () => {{
        static R: OnceLock<Arc<Reactor>> = OnceLock::new();
        fn get() -> io::Result<&'static Reactor> {
            Ok(R.get_or_init(|| Reactor::start("lock-core-reactor-test").unwrap()))
        }
        get
    }};
}

const ZERO: Counts = Counts {
    pending: 0,
    timers: 0,
    live: 0,
};

/// Counts wake-ups and unparks the thread that waits for them.
struct Flag {
    woken: AtomicUsize,
    thread: std::thread::Thread,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.woken.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

fn flag() -> (Arc<Flag>, Waker) {
    let f = Arc::new(Flag {
        woken: AtomicUsize::new(0),
        thread: std::thread::current(),
    });
    (f.clone(), Waker::from(f))
}

/// A minimal executor: polls on this thread, parks in between (bounded).
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let (_, waker) = flag();
    let mut cx = Context::from_waker(&waker);
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        assert!(Instant::now() < give_up, "future never completed");
        std::thread::park_timeout(Duration::from_secs(1));
    }
}

fn until_zero(get: fn() -> io::Result<&'static Reactor>) {
    assert_eq!(get().unwrap().counts(), ZERO);
}

#[test]
fn sleep_fires_at_its_deadline_and_leaves_nothing() {
    let get = private_reactor!();
    let t = Instant::now();
    block_on(sleep_until_on(get, t + Duration::from_millis(30))).unwrap();
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(30), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    until_zero(get);
    // A deadline already passed completes without registering.
    block_on(sleep_until_on(get, Instant::now())).unwrap();
    until_zero(get);
}

#[test]
fn an_earlier_deadline_interrupts_a_longer_sleep() {
    let get = private_reactor!();
    // The thread sleeps towards a far deadline...
    let (_, w) = flag();
    let mut far = Box::pin(sleep_until_on(
        get,
        Instant::now() + Duration::from_secs(60),
    ));
    assert!(far.as_mut().poll(&mut Context::from_waker(&w)).is_pending());
    // ... and a near one (registered later, so it must notify the thread) still fires
    // on time.
    let t = Instant::now();
    block_on(sleep_until_on(get, t + Duration::from_millis(20))).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(
        get().unwrap().counts(),
        Counts {
            pending: 1,
            timers: 1,
            live: 1
        }
    );
    drop(far);
    until_zero(get);
}

#[test]
fn the_latest_waker_is_woken() {
    let get = private_reactor!();
    let (first, w1) = flag();
    let (second, w2) = flag();
    let mut s = Box::pin(sleep_until_on(
        get,
        Instant::now() + Duration::from_millis(20),
    ));
    assert!(s.as_mut().poll(&mut Context::from_waker(&w1)).is_pending());
    assert!(s.as_mut().poll(&mut Context::from_waker(&w2)).is_pending());
    let give_up = Instant::now() + Duration::from_secs(10);
    while second.woken.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < give_up);
        std::thread::park_timeout(Duration::from_millis(100));
    }
    assert_eq!(first.woken.load(Ordering::SeqCst), 0);
    assert!(s.as_mut().poll(&mut Context::from_waker(&w2)).is_ready());
    until_zero(get);
}

#[test]
fn a_thousand_cancelled_waits_leave_the_table_empty() {
    let get = private_reactor!();
    let (_, w) = flag();
    let mut cx = Context::from_waker(&w);
    for i in 0..1000u64 {
        let far = Instant::now() + Duration::from_secs(60 + i);
        let mut s = Box::pin(sleep_until_on(get, far));
        assert!(s.as_mut().poll(&mut cx).is_pending());
        assert_eq!(get().unwrap().counts().live, 1);
    }
    until_zero(get);
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd;
        let (reader, _writer) = std::io::pipe().unwrap();
        for i in 0..1000u64 {
            let far = Instant::now() + Duration::from_secs(60 + i);
            let mut r = Box::pin(readable_until_on(get, reader.as_fd(), far, Duration::ZERO));
            assert!(r.as_mut().poll(&mut cx).is_pending());
            assert_eq!(get().unwrap().counts().live, 1);
            // Dropped registered: the next ADD of the same descriptor succeeds only
            // because this drop took it out of the epoll set.
        }
        until_zero(get);
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_deadline_with_slack_waits_for_the_tick_instead_of_notifying() {
    use std::os::fd::AsFd;
    let get = private_reactor!();
    let (reader, _writer) = std::io::pipe().unwrap();
    // The thread starts out asleep for ever: the first deadline has to notify it.
    let (n0, idle) = get().unwrap().notified_and_idle();
    assert_eq!((n0, idle), (0, true));
    // A caller's own deadline is kept exactly, so while the thread is ticking a precise
    // sleep still notifies it whenever it is due before the next tick; a safety-net
    // deadline never does. A stall longer than the linger between two statements ends
    // the ticking, hence a few tries; a reactor that notifies for every deadline fails
    // them all.
    let mut quiet = false;
    for _ in 0..5 {
        block_on(sleep_until_on(
            get,
            Instant::now() + Duration::from_millis(1),
        ))
        .unwrap();
        let (before, _) = get().unwrap().notified_and_idle();
        let t = Instant::now();
        let net = t + Duration::from_millis(1);
        block_on(readable_until_on(get, reader.as_fd(), net, TICK)).unwrap();
        // Never early, and (bounded) not lost.
        assert!(Instant::now() >= net);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let (after, _) = get().unwrap().notified_and_idle();
        if after == before {
            quiet = true;
            break;
        }
    }
    assert!(quiet, "every safety-net deadline interrupted the thread");
    until_zero(get);
}

#[test]
fn the_thread_stops_ticking_after_the_linger() {
    let get = private_reactor!();
    block_on(sleep_until_on(
        get,
        Instant::now() + Duration::from_millis(1),
    ))
    .unwrap();
    until_zero(get);
    // Ticking now; idle again (no periodic wake-ups) once the linger has passed.
    let give_up = Instant::now() + LINGER + Duration::from_secs(10);
    while !get().unwrap().notified_and_idle().1 {
        assert!(Instant::now() < give_up, "the thread kept ticking");
        std::thread::sleep(TICK);
    }
}

#[cfg(target_os = "linux")]
#[test]
fn readable_fires_on_data_and_on_deadline() {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    let get = private_reactor!();
    let (mut reader, mut writer) = std::io::pipe().unwrap();
    // Deadline first: nothing written.
    let t = Instant::now();
    block_on(readable_until_on(
        get,
        reader.as_fd(),
        t + Duration::from_millis(30),
        Duration::ZERO,
    ))
    .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(30));
    until_zero(get);
    // Data from another thread wakes a far-deadline wait.
    let writer_thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        writer.write_all(b"x").unwrap();
        writer
    });
    let t = Instant::now();
    block_on(readable_until_on(
        get,
        reader.as_fd(),
        t + Duration::from_secs(60),
        Duration::ZERO,
    ))
    .unwrap();
    assert!(t.elapsed() < Duration::from_secs(10));
    let mut writer = writer_thread.join().unwrap();
    until_zero(get);
    // Already readable: the registration fires at once (epoll reports it on ADD).
    writer.write_all(b"y").unwrap();
    block_on(readable_until_on(
        get,
        reader.as_fd(),
        Instant::now() + Duration::from_secs(60),
        Duration::ZERO,
    ))
    .unwrap();
    let mut buf = [0u8; 2];
    reader.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"xy");
    until_zero(get);
}

#[cfg(target_os = "linux")]
#[test]
fn a_descriptor_that_cannot_be_registered_is_an_error_without_a_leak() {
    use std::os::fd::AsFd;
    let get = private_reactor!();
    let (_, w) = flag();
    let mut cx = Context::from_waker(&w);
    let (reader, _writer) = std::io::pipe().unwrap();
    let far = Instant::now() + Duration::from_secs(60);
    let mut first = Box::pin(readable_until_on(get, reader.as_fd(), far, Duration::ZERO));
    assert!(first.as_mut().poll(&mut cx).is_pending());
    // The same descriptor twice: EEXIST.
    let mut second = Box::pin(readable_until_on(get, reader.as_fd(), far, Duration::ZERO));
    match second.as_mut().poll(&mut cx) {
        Poll::Ready(Err(e)) => assert_eq!(e.raw_os_error(), Some(libc::EEXIST)),
        other => panic!("{other:?}"),
    }
    assert_eq!(get().unwrap().counts().live, 1);
    // A regular file cannot be polled with epoll: EPERM.
    let file = std::fs::File::open("/proc/self/stat").unwrap();
    let mut third = Box::pin(readable_until_on(get, file.as_fd(), far, Duration::ZERO));
    assert!(matches!(third.as_mut().poll(&mut cx), Poll::Ready(Err(_))));
    drop((first, second, third));
    until_zero(get);
}

#[test]
fn a_reactor_that_cannot_start_is_an_error_not_a_panic() {
    fn unavailable() -> io::Result<&'static Reactor> {
        Err(io::Error::other("no threads left"))
    }
    let (_, w) = flag();
    let mut cx = Context::from_waker(&w);
    let far = Instant::now() + Duration::from_secs(60);
    let mut s = Box::pin(sleep_until_on(unavailable, far));
    assert!(matches!(s.as_mut().poll(&mut cx), Poll::Ready(Err(_))));
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd;
        let (reader, _writer) = std::io::pipe().unwrap();
        let mut r = Box::pin(readable_until_on(
            unavailable,
            reader.as_fd(),
            far,
            Duration::ZERO,
        ));
        assert!(matches!(r.as_mut().poll(&mut cx), Poll::Ready(Err(_))));
    }
    let e = wait_failed("n", io::Error::other("no threads left"));
    assert_eq!(e.code(), 8401);
    assert!(e.to_string().contains("no threads left"), "{e}");
}

#[test]
fn a_panicking_waker_does_not_stop_the_thread() {
    struct Boom;
    impl Wake for Boom {
        fn wake(self: Arc<Self>) {
            panic!("waker panics");
        }
    }
    let get = private_reactor!();
    let boom = Waker::from(Arc::new(Boom));
    let mut s = Box::pin(sleep_until_on(
        get,
        Instant::now() + Duration::from_millis(5),
    ));
    assert!(s
        .as_mut()
        .poll(&mut Context::from_waker(&boom))
        .is_pending());
    // The thread survives and serves the next timer.
    let t = Instant::now();
    block_on(sleep_until_on(get, t + Duration::from_millis(30))).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    drop(s);
    until_zero(get);
}
