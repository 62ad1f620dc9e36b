//! Shapes of file locks in one process (issue #13), each in a fresh lock directory: the
//! same behaviour as in-process (`shapes_local`), through `Lock::dir`. The bodies are in
//! `shapes_support`.

mod file_support;
mod shapes_support;

use file_support::fresh_dir;
use shapes_support as s;

#[test]
fn shared_holders_on_threads_are_all_inside_at_once() {
    let dir = fresh_dir("shape-shared-threads");
    s::shared_holders_on_threads_are_all_inside_at_once(Some(dir.to_path_buf()));
}

#[test]
fn shared_holders_on_tasks_are_all_inside_at_once() {
    let dir = fresh_dir("shape-shared-tasks");
    s::shared_holders_on_tasks_are_all_inside_at_once(Some(dir.to_path_buf()));
}

#[test]
fn exclusive_never_overlaps_shared_either_way() {
    let dir = fresh_dir("shape-rw");
    s::exclusive_never_overlaps_shared_either_way(Some(dir.to_path_buf()));
}

#[test]
fn three_permits_admit_three_and_never_more() {
    let dir = fresh_dir("shape-permits");
    s::three_permits_admit_three_and_never_more(Some(dir.to_path_buf()));
}

#[test]
fn late_readers_queue_behind_a_waiting_writer() {
    let dir = fresh_dir("shape-fair-writer");
    s::fair::late_readers_queue_behind_a_waiting_writer(Some(dir.to_path_buf()));
}

#[test]
fn a_stream_of_writers_does_not_starve_a_reader() {
    let dir = fresh_dir("shape-fair-reader");
    s::fair::a_stream_of_writers_does_not_starve_a_reader(Some(dir.to_path_buf()));
}

#[test]
fn mismatched_kinds_are_refused_at_once() {
    let dir = fresh_dir("shape-mismatch");
    s::fair::mismatched_kinds_are_refused_at_once(Some(dir.to_path_buf()));
}
