// `store = ...` accepts a store, a reference to one, or a field; it compiles against
// any `LeaseStore`.
use lock_core::lease::LeaseStore;
use lock_core::{locked, LockError};

#[locked(name = "report", store = store, lease_ms = 30_000, timeout_ms = 5_000)]
async fn by_reference<S: LeaseStore>(store: &S) -> Result<(), LockError> {
    Ok(())
}

#[locked(name = "report-{id}", store = store, guard = lease)]
async fn by_value<S: LeaseStore>(store: S, id: u32) -> Result<u64, LockError> {
    Ok(lease.fence() + u64::from(id))
}

struct Jobs<S> {
    store: S,
}

impl<S: LeaseStore> Jobs<S> {
    #[locked(name = "job", store = &self.store)]
    async fn run(&self) -> anyhow::Result<()> {
        Ok(())
    }

    #[locked(name = "job-arc", store = ::std::sync::Arc::new(self.store.clone()))]
    async fn run_arc(&self) -> anyhow::Result<()> {
        Ok(())
    }
}



// Several names, shared and counted leases (the guard of a name list is a `LeaseSet`).
#[locked(name = ["jobs", "reports"], store = store, guard = set)]
async fn several<S: LeaseStore>(store: &S) -> Result<usize, LockError> {
    Ok(set.len() + set.guards().iter().map(|g| g.fence() as usize).sum::<usize>())
}

#[locked(name = ["job-{id}"], store = store, guard = set)]
async fn one_in_a_list<S: LeaseStore>(store: &S, id: u32) -> Result<usize, LockError> {
    Ok(set.len() + id as usize)
}

#[locked(name = "catalog", store = store, shared, guard = lease)]
async fn reader<S: LeaseStore>(store: &S) -> Result<bool, LockError> {
    Ok(lease.mode() == lock_core::Mode::Shared)
}

#[locked(name = "workers", store = store, permits = 4)]
async fn worker<S: LeaseStore>(store: &S) -> Result<(), LockError> {
    Ok(())
}
fn main() {}
