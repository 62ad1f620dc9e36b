//! loom model of the deadlock check: two waiters that close one cycle at the same moment,
//! in every interleaving — exactly one of them is refused, the other is registered.
//!
//! Run with the rest of the model: `RUSTFLAGS="--cfg loom" cargo test -p lock-core --lib
//! --release loom_model`.

use loom::sync::Arc;
use loom::thread;

use super::{Detector, Node};
use crate::mode::Mode;
use crate::owner::{Facts, Me};
use crate::raw::Record;
use crate::site::Site;

/// A lock whose holder is fixed for the model.
#[derive(Clone)]
struct Fixed {
    addr: usize,
    name: &'static str,
    holder: u64,
}

impl Node for Fixed {
    fn addr(&self) -> usize {
        self.addr
    }
    fn name(&self) -> &str {
        self.name
    }
    fn records(&self) -> Vec<Record> {
        vec![Record {
            id: self.addr as u64,
            facts: Facts {
                key: self.holder,
                task: 0,
                thread: 0,
                site: Site::Unknown,
            },
            since: 0,
        }]
    }
}

fn chain(key: u64) -> Me {
    Me {
        key,
        task: 0,
        sync: true,
        root: 0,
    }
}

#[test]
fn loom_model_two_waiters_closing_one_cycle_exactly_one_fails() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        // `x` is held by chain 1, `y` by chain 2; chain 1 waits for `y` while chain 2
        // waits for `x`.
        let x = Fixed {
            addr: 1,
            name: "x",
            holder: 1,
        };
        let y = Fixed {
            addr: 2,
            name: "y",
            holder: 2,
        };
        let d = Arc::new(Detector::<Fixed>::new());
        let other = {
            let (d, x) = (d.clone(), x.clone());
            thread::spawn(move || {
                d.enter(
                    &x,
                    &chain(2),
                    Vec::new(),
                    Mode::Exclusive,
                    true,
                    String::new,
                )
            })
        };
        let mine = d.enter(
            &y,
            &chain(1),
            Vec::new(),
            Mode::Exclusive,
            true,
            String::new,
        );
        let theirs = other.join().unwrap();
        match (&mine, &theirs) {
            (Ok(_), Err(e)) | (Err(e), Ok(_)) => assert_eq!(e.code(), 8410),
            other => panic!("expected exactly one Deadlock, got {other:?}"),
        }
        assert_eq!(d.len(), 1, "the other wait stays registered");
    });
}
