//! Recording on commit: what a transaction records is published only if it commits.
//!
//! Timers and consumers retry work whose transaction rolled back (a chunk of timers in which
//! one failed is fired again one by one; a consumer batch is applied again after a failure).
//! A counter bumped inside such a transaction would count the retried effect twice. So code
//! running inside a transaction records with [`on_commit`], and whoever owns the transaction
//! collects those records around it ([`Staged::collect`], [`transactional`]) and publishes
//! them once it committed. Outside any collection (an RPC handler that commits itself and
//! does not use [`transactional`]) a record is published at once.

use std::cell::RefCell;
use std::future::Future;

type Record = Box<dyn FnOnce() + Send>;

tokio::task_local! {
    static PENDING: RefCell<Vec<Record>>;
}

/// Records `record` when the enclosing transaction commits (see the module docs); at once
/// when no transaction owner collects records on this task.
pub fn on_commit(record: impl FnOnce() + Send + 'static) {
    let mut record = Some(record);
    let _ = PENDING.try_with(|pending| {
        if let Some(record) = record.take() {
            pending.borrow_mut().push(Box::new(record));
        }
    });
    if let Some(record) = record {
        record();
    }
}

/// Records held back until their transaction committed. Dropping it discards them.
#[must_use = "staged records are discarded unless published"]
#[derive(Default)]
pub struct Staged(Vec<Record>);

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Staged").field(&self.0.len()).finish()
    }
}

impl Staged {
    /// Runs `work`, holding back what it records with [`on_commit`] on this task.
    /// Collections nest: an inner one holds its own records.
    pub async fn collect<F: Future>(work: F) -> (F::Output, Staged) {
        PENDING
            .scope(RefCell::new(Vec::new()), async move {
                let output = work.await;
                let records = PENDING.with(RefCell::take);
                (output, Staged(records))
            })
            .await
    }

    /// Adds `other`'s records to these.
    pub fn append(&mut self, mut other: Staged) {
        self.0.append(&mut other.0);
    }

    /// Records everything held back: call it once the transaction committed.
    pub fn publish(self) {
        for record in self.0 {
            record();
        }
    }
}

/// Runs `work`, a unit that ends with its transaction committed when it returns `Ok`, and
/// publishes what it recorded with [`on_commit`] only then.
pub async fn transactional<T, E>(work: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    let (result, staged) = Staged::collect(work).await;
    if result.is_ok() {
        staged.publish();
    }
    result
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn bump(n: &Arc<AtomicUsize>) -> impl FnOnce() + Send + 'static {
        let n = n.clone();
        move || {
            n.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn records_wait_for_the_commit_and_vanish_with_a_rollback() {
        let n = Arc::new(AtomicUsize::new(0));
        // No transaction owner: at once.
        on_commit(bump(&n));
        assert_eq!(n.load(Ordering::SeqCst), 1);

        let result: Result<(), ()> = transactional(async {
            on_commit(bump(&n));
            tokio::task::yield_now().await;
            on_commit(bump(&n));
            assert_eq!(n.load(Ordering::SeqCst), 1, "published before the commit");
            Ok(())
        })
        .await;
        assert!(result.is_ok());
        assert_eq!(n.load(Ordering::SeqCst), 3);

        let rolled_back: Result<(), ()> = transactional(async {
            on_commit(bump(&n));
            Err(())
        })
        .await;
        assert!(rolled_back.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn nested_collections_keep_their_own_records() {
        let n = Arc::new(AtomicUsize::new(0));
        let ((), mut outer) = Staged::collect(async {
            on_commit(bump(&n));
            let ((), kept) = Staged::collect(async { on_commit(bump(&n)) }).await;
            let ((), dropped) = Staged::collect(async { on_commit(bump(&n)) }).await;
            drop(dropped);
            // The inner records are the caller's to keep or drop.
            kept.publish();
        })
        .await;
        assert_eq!(n.load(Ordering::SeqCst), 1);
        outer.append(Staged::default());
        outer.publish();
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }
}
