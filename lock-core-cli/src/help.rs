//! The texts after `--help`: examples, exit statuses, the JSON schema.

/// After `lock-core --help`.
pub const MAIN: &str = "\
Examples:
  # A cron job that must run on one host of many: the hosts that lose skip it.
  lock-core run nightly-report --store postgres://app@db.internal/app --timeout 0 \\
      --conflict-exit-code 0 -- ./nightly-report.sh

  # A CI step that resets the fixture database while no test uses it; the tests
  # take the same lock with #[locked(name = \"fixtures/db\", file)].
  lock-core run fixtures/db --timeout 10m -- ./scripts/reset-fixtures.sh

  # Who holds what, as JSON.
  lock-core status --json | jq -r '.locks[] | \"\\(.name) \\(.holder.pid)\"'

Exit statuses of `run`: CMD's own; 75 busy or timed out (--conflict-exit-code);
76 lease lost (CMD stopped); 64 bad input; 69 store unreachable; 70 other lock
errors; 126/127 CMD not executable / not found; 128+N CMD killed by signal N.
See `lock-core run --help` and `lock-core status --help`.";

/// After `lock-core run --help`.
pub const RUN: &str = "\
Takes the lock the library would take for the same name: without --dir, --path or
--store the file lock in the default directory ($LOCK_CORE_DIR, else a per-user
directory), as #[locked(name = NAME, file)] or Lock::new(NAME).file() do.

CMD and everything it starts are one job: CMD runs in a process group of its own,
and on a terminal that group gets the terminal while CMD runs. A file lock is
inherited by CMD (as with flock(1)): it stays held while any process of CMD's tree
has it, even if lock-core is killed; lock-core exits when CMD does. A lease is held
until no process of CMD's group is left.

CMD gets LOCK_CORE_LOCK=NAME and, with --store, LOCK_CORE_FENCE=<fencing token>
(a decimal number that grows with every acquisition of NAME; have the protected
resource refuse writes that carry a token lower than the highest it has seen).

Signals: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to lock-core are
passed on to CMD's whole process group (a Ctrl-C at the terminal reaches it
directly, once). While waiting for the lock they end the wait (exit 128+N).

With --store the lease is renewed every third of --lease while the job runs. If it
is lost (it expired, or was deleted or taken over in the store), lock-core says
why, sends CMD's group SIGTERM, then SIGKILL after --grace, and exits 76 once none
of it is left. If lock-core itself is killed, a guardian process stops the group
within the grace or a third of --lease, before the lease can expire. --lease and
--grace are refused without --store.

While it waits on a terminal, a line shows who holds the lock:
  waiting for `db` — held by pid 4242 on build-3 for 12 s

Exit statuses:
  CMD's own   CMD ran (128+N if signal N killed it)
  75          the lock is busy (--timeout 0) or the wait timed out (--conflict-exit-code N)
  76          the lease was lost while CMD ran; CMD was stopped
  64          bad input: invalid lock name, --permits 0, unknown or invalid --store URL
  69          the store could not be reached or failed
  70          any other lock error (I/O, the lock is another kind: Mismatch, ...)
  71          lock-core could not set up signals or start CMD for a system reason
  126 / 127   CMD is not executable / not found
  128+N       lock-core got signal N while waiting for the lock
  2           invalid command line

Examples:
  lock-core run db --timeout 5s -- pg_dump app -f app.sql
  lock-core run gpu --permits 2 -- ./train.sh
  lock-core run catalog --shared --dir target/locks -- ./read-catalog.sh
  lock-core run nightly --store redis://127.0.0.1:6379 --lease 30s --grace 10s -- ./nightly.sh";

/// After `lock-core status --help`.
pub const STATUS: &str = "\
Without --dir or --store: the default lock directory ($LOCK_CORE_DIR, else a per-user
directory). Holders that died are not listed. Exit status 0; 69 if the store cannot be
reached; 70 for other failures; 64 for an unknown or invalid --store URL.

JSON (schema 1; fields may be added, never removed or changed, within schema 1):

  lock directory:
  {\"schema\": 1, \"backend\": \"file\", \"location\": \"/run/user/1000/lock-core\",
   \"locks\": [{\"name\": \"fixtures/db\", \"mode\": \"exclusive\", \"permits\": null,
              \"holder\": {\"pid\": 4242, \"host\": \"build-3\", \"since_unix_ms\": 1767225600000},
              \"waiting\": 1, \"file\": \"/run/user/1000/lock-core/fixtures_2fdb.lock\"}]}

  store:
  {\"schema\": 1, \"backend\": \"postgres\", \"location\": \"postgres 127.0.0.1:5432/app table public.lock_core_locks\",
   \"leases\": [{\"name\": \"nightly\", \"mode\": \"permits\", \"permits\": 2,
               \"owner\": \"build-3/4242/9f3a5c0e1b2d4f60/1\", \"pid\": 4242, \"host\": \"build-3\",
               \"fence\": 17, \"expires_in_ms\": 24500}]}

  mode is \"exclusive\", \"shared\" or \"permits\" (then permits is the count, else null);
  a lock held by several processes (shared, permits) has one entry per holder; pid,
  host and since_unix_ms may be null when unknown.

Examples:
  lock-core status
  lock-core status --dir target/locks --json | jq '.locks[] | select(.waiting > 0)'
  lock-core status --store postgres://app@127.0.0.1/app --json | jq -r '.leases[].name'";
