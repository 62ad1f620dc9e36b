//! Shapes of in-process locks (issue #13): shared holders overlap, exclusive and shared
//! exclude each other both ways, permits bound the holders, FIFO fairness across modes,
//! and kind mismatches. The bodies are in `shapes_support` (shared with `shapes_file`).

mod shapes_support;

use shapes_support as s;

#[test]
fn shared_holders_on_threads_are_all_inside_at_once() {
    s::shared_holders_on_threads_are_all_inside_at_once(None);
}

#[test]
fn shared_holders_on_tasks_are_all_inside_at_once() {
    s::shared_holders_on_tasks_are_all_inside_at_once(None);
}

#[test]
fn exclusive_never_overlaps_shared_either_way() {
    s::exclusive_never_overlaps_shared_either_way(None);
}

#[test]
fn three_permits_admit_three_and_never_more() {
    s::three_permits_admit_three_and_never_more(None);
}

#[test]
fn late_readers_queue_behind_a_waiting_writer() {
    s::fair::late_readers_queue_behind_a_waiting_writer(None);
}

#[test]
fn a_stream_of_writers_does_not_starve_a_reader() {
    s::fair::a_stream_of_writers_does_not_starve_a_reader(None);
}

#[test]
fn mismatched_kinds_are_refused_at_once() {
    s::fair::mismatched_kinds_are_refused_at_once(None);
}
