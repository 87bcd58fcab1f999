//! Account checks off the async runtime: a small pool of threads, each with
//! its own database handle (and its own argon2 working memory, reused),
//! hashing and verifying passwords (argon2 is deliberately slow) without
//! stalling the manager.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use tessera::storage::{Account, Database, StorageError};
use tokio::sync::mpsc;

use crate::cluster::LoginId;

use crate::cluster::AccountCheck;

/// The pool.
pub struct Accounts {
    tx: std_mpsc::Sender<(AccountCheck, Arc<AtomicBool>)>,
}

impl Accounts {
    /// Opens `threads` handles on the database and starts the threads.
    pub fn open(
        db: &Database,
        threads: usize,
        done: mpsc::UnboundedSender<(LoginId, Option<Result<Account, StorageError>>)>,
    ) -> Result<Accounts, StorageError> {
        let (tx, rx) = std_mpsc::channel::<(AccountCheck, Arc<AtomicBool>)>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let mut db = db.handle()?;
            let rx = rx.clone();
            let done = done.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tessera-accounts-{i}"))
                .spawn(move || loop {
                    let next = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok((c, left)) = next else { return };
                    // Its client left while it waited: nobody would read
                    // the answer, so no hash is spent on it.
                    let result = if left.load(Ordering::Relaxed) {
                        None
                    } else {
                        Some(db.login(&c.name, &c.password, c.create))
                    };
                    if done.send((c.login, result)).is_err() {
                        return;
                    }
                });
            if let Err(e) = spawned {
                return Err(StorageError::Hash(format!(
                    "cannot start an account thread: {e}"
                )));
            }
        }
        Ok(Accounts { tx })
    }

    /// Queues a check, skipped if `left` is set by the time a thread
    /// takes it (answered with `None`). The manager core bounds how many
    /// are queued ([`crate::cluster::throttle`]).
    pub fn check(&self, c: AccountCheck, left: Arc<AtomicBool>) {
        let _ = self.tx.send((c, left));
    }
}
