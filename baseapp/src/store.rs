//! The storage thread: owns the database handle, runs the core's
//! [`StoreOp`]s in order and reports back. Saves queued together are written
//! in one transaction. Dropping the handle lets the thread finish what is
//! queued; [`Store::close`] waits for that, so nothing acknowledged is lost on
//! a clean stop. [`Store::abandon`] is for a baseapp declared dead: its
//! bases live on elsewhere, so what it still had queued must not be
//! written over theirs.

#[cfg(feature = "driver")]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(feature = "driver")]
use std::sync::mpsc as std_mpsc;
#[cfg(feature = "driver")]
use std::sync::Arc;
#[cfg(feature = "driver")]
use std::thread::JoinHandle;
#[cfg(feature = "driver")]
use tessera::storage::Database;
use tessera::storage::{AccountId, Storage, StorageError, StoredEntity};
#[cfg(feature = "driver")]
use tokio::sync::mpsc;

use crate::bases::{StoreDone, StoreOp};
#[cfg(feature = "driver")]
use crate::metrics::Metrics;
use crate::persist::FORMAT_VERSION;

/// A handle to the storage thread.
#[cfg(feature = "driver")]
pub struct Store {
    tx: Option<std_mpsc::Sender<StoreOp>>,
    thread: Option<JoinHandle<()>>,
    abandoned: Arc<AtomicBool>,
}

#[cfg(feature = "driver")]
impl Store {
    /// Opens the database and starts the thread; writes are counted and
    /// timed on `metrics`.
    pub fn open(
        db: &Database,
        done: mpsc::UnboundedSender<StoreDone>,
        metrics: Metrics,
    ) -> Result<Store, StorageError> {
        let storage = db.handle()?;
        let (tx, rx) = std_mpsc::channel();
        let abandoned = Arc::new(AtomicBool::new(false));
        let stop = abandoned.clone();
        let thread = std::thread::Builder::new()
            .name("tessera-store".into())
            .spawn(move || run(storage, rx, done, metrics, &stop))
            .map_err(|e| StorageError::Hash(format!("cannot start the storage thread: {e}")))?;
        Ok(Store {
            tx: Some(tx),
            thread: Some(thread),
            abandoned,
        })
    }

    /// Queues an operation.
    pub fn submit(&self, op: StoreOp) {
        if let Some(tx) = &self.tx {
            if tx.send(op).is_err() {
                tracing::error!("storage thread is gone; operation dropped");
            }
        }
    }

    /// Lets the thread finish everything queued, then waits for it.
    pub fn close(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Drops everything still queued: the thread finishes the write under
    /// way (a transaction, so whole or not at all) and writes nothing more.
    pub fn abandon(&mut self) {
        self.abandoned.store(true, Ordering::SeqCst);
        self.tx = None;
        self.thread = None;
    }
}

#[cfg(feature = "driver")]
fn run(
    mut db: Box<dyn Storage>,
    rx: std_mpsc::Receiver<StoreOp>,
    done: mpsc::UnboundedSender<StoreDone>,
    metrics: Metrics,
    abandoned: &AtomicBool,
) {
    let mut pending = std::collections::VecDeque::new();
    loop {
        if abandoned.load(Ordering::SeqCst) {
            return;
        }
        let mut op = match pending.pop_front() {
            Some(op) => op,
            None => match rx.recv() {
                Ok(op) => op,
                Err(_) => return,
            },
        };
        if let StoreOp::Save(batch) = &mut op {
            // Coalesce saves already queued into the same transaction.
            while let Ok(next) = rx.try_recv() {
                match next {
                    StoreOp::Save(more) => batch.extend(more),
                    other => {
                        pending.push_back(other);
                        break;
                    }
                }
            }
        }
        if abandoned.load(Ordering::SeqCst) {
            return;
        }
        let started = std::time::Instant::now();
        let result = execute(&mut *db, op);
        if let StoreDone::Saved { count, result } = &result {
            metrics.db.record(started.elapsed(), result.is_ok());
            if result.is_ok() {
                metrics.entities_saved.add(*count as u64);
            }
        }
        if done.send(result).is_err() {
            return;
        }
    }
}

/// Runs one storage operation against any [`Storage`] (the storage thread
/// uses SQLite; the simulator uses memory).
pub fn execute(db: &mut dyn Storage, op: StoreOp) -> StoreDone {
    match op {
        StoreOp::LoadPlayer {
            client,
            account,
            type_name,
            fresh,
        } => StoreDone::Player {
            client,
            result: load_player(db, account, &type_name, &fresh).map_err(|e| e.to_string()),
        },
        StoreOp::LoadNamed {
            type_name,
            name,
            fresh,
        } => StoreDone::Named {
            result: db
                .named_entity(&type_name, &name, crate::persist::FORMAT_VERSION, &fresh)
                .map_err(|e| e.to_string()),
            type_name,
            name,
        },
        StoreOp::Save(batch) => StoreDone::Saved {
            count: batch.len(),
            result: db
                .save_entities(&batch)
                .map(|fenced| {
                    if fenced > 0 {
                        // Written by a newer owner: this baseapp was
                        // declared dead and its bases live on elsewhere.
                        tracing::warn!(
                            fenced,
                            "saves refused: a newer owner has saved these entities"
                        );
                    }
                })
                .map_err(|e| e.to_string()),
        },
    }
}

fn load_player(
    db: &mut dyn Storage,
    account: i64,
    type_name: &str,
    fresh: &[u8],
) -> Result<StoredEntity, StorageError> {
    let acc = db.account(AccountId(account))?;
    if let Some(id) = acc.entity {
        if let Some(row) = db.load_entity(id)? {
            return Ok(row);
        }
    }
    let id = db.create_entity(type_name, FORMAT_VERSION, fresh)?;
    db.set_account_entity(acc.id, id)?;
    Ok(StoredEntity {
        db_id: id,
        type_name: type_name.to_string(),
        format_version: FORMAT_VERSION,
        data: fresh.to_vec(),
        fence: 0,
    })
}
