//! The PostgreSQL backend of [`Storage`], for worlds on more than one
//! machine: every manager and baseapp of the cluster shares one database.
//!
//! A process connects once ([`PgPool::connect`]): a pool of tokio-postgres
//! connections (deadpool), driven by a small runtime of the pool's own so
//! that the blocking [`Storage`] API can be served from the plain threads
//! the manager and the baseapp keep for storage. Each such thread takes a
//! [`PgStorage`] handle, which borrows a pooled connection per call and
//! keeps its own password-hashing memory. Hashing runs on the calling
//! thread, never on the pool's runtime.
//!
//! Account names are unique whatever their case (a unique index on
//! `lower(name)`); a save batch is one transaction; the fence is checked in
//! the `UPDATE` itself, as on SQLite.

mod schema;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;

use super::database::redact;
use super::password::{self, AccountRows, HashCost, PasswordHashing};
use super::{unix_time, Account, AccountId, DbId, Storage, StorageError, StoredEntity};

/// Connections one process may hold: its account threads and its store.
const MAX_CONNECTIONS: usize = 8;
/// How long to wait for a connection, new or pooled, before failing.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A runtime that shuts down without blocking, so that whoever drops the
/// last handle (an async task, say) may.
struct Driver(Option<tokio::runtime::Runtime>);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// One process's pool of connections to a PostgreSQL database.
#[derive(Clone)]
pub struct PgPool {
    pool: Pool,
    driver: Arc<Driver>,
    cost: HashCost,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("status", &self.pool.status())
            .finish()
    }
}

/// A tokio-postgres error as a [`StorageError`], with the server's message
/// when it sent one.
fn pg(e: tokio_postgres::Error) -> StorageError {
    match e.as_db_error() {
        Some(db) => StorageError::Postgres(format!("{} ({})", db.message(), db.code().code())),
        None => StorageError::Postgres(e.to_string()),
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StorageError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg(e),
        other => StorageError::Postgres(other.to_string()),
    }
}

/// The SQLSTATE of `e`, if the server sent one.
fn state(e: &tokio_postgres::Error) -> Option<&SqlState> {
    e.code()
}

impl PgPool {
    /// Connects to the database at `url`, checks that it answers, and
    /// brings its schema up to date. New passwords are hashed at `cost`.
    pub fn connect(url: &str, cost: HashCost) -> Result<PgPool, StorageError> {
        let unreachable = |why: String| StorageError::Unreachable {
            location: redact(url),
            why,
        };
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| {
                StorageError::BadLocation(format!("{}: {e}", redact(url)))
            })?;
        config.connect_timeout(CONNECT_TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("tessera");
        }
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tessera-postgres")
            .enable_all()
            .build()
            .map_err(|e| unreachable(format!("cannot start its runtime: {e}")))?;
        let pool = {
            // The pool's timers belong to the runtime that drives it.
            let _entered = rt.enter();
            Pool::builder(manager)
                .max_size(MAX_CONNECTIONS)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(CONNECT_TIMEOUT))
                .create_timeout(Some(CONNECT_TIMEOUT))
                .recycle_timeout(Some(CONNECT_TIMEOUT))
                .build()
                .map_err(|e| unreachable(e.to_string()))?
        };
        let db = PgPool {
            pool,
            driver: Arc::new(Driver(Some(rt))),
            cost,
        };
        db.block_on(async {
            let mut client = db
                .pool
                .get()
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            schema::migrate(&mut client).await
        })?;
        Ok(db)
    }

    /// A handle for one thread.
    pub fn storage(&self) -> Result<PgStorage, StorageError> {
        Ok(PgStorage {
            db: self.clone(),
            hashing: PasswordHashing::new(self.cost)?,
        })
    }

    /// Runs `f` to completion on the pool's runtime from a plain thread.
    fn block_on<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        match &self.driver.0 {
            Some(rt) => rt.block_on(f),
            // Only `Drop` takes the runtime, when no handle is left.
            None => Err(StorageError::Postgres("the pool is closed".into())),
        }
    }

    /// Runs `f` with a pooled connection.
    fn with<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        F: AsyncFnOnce(&mut deadpool_postgres::Client) -> Result<T, StorageError>,
    {
        self.block_on(async {
            let mut client = self.pool.get().await.map_err(pool_error)?;
            f(&mut client).await
        })
    }
}

/// One thread's handle on a [`PgPool`].
pub struct PgStorage {
    db: PgPool,
    hashing: PasswordHashing,
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStorage").field("db", &self.db).finish()
    }
}

/// The accounts table, for the shared login.
struct Rows<'a>(&'a PgPool);

impl AccountRows for Rows<'_> {
    fn find(&mut self, name: &str) -> Result<Option<(Account, String)>, StorageError> {
        self.0.with(async |c| {
            let stmt = c
                .prepare_cached(
                    "SELECT id, name, entity_id, password_hash FROM accounts
                     WHERE lower(name) = lower($1)",
                )
                .await
                .map_err(pg)?;
            let row = c.query_opt(&stmt, &[&name]).await.map_err(pg)?;
            Ok(row.map(|r| {
                let account = Account {
                    id: AccountId(r.get(0)),
                    name: r.get(1),
                    entity: r.get::<_, Option<i64>>(2).map(DbId),
                };
                (account, r.get(3))
            }))
        })
    }

    fn insert(&mut self, name: &str, hash: &str) -> Result<Option<AccountId>, StorageError> {
        self.0.with(async |c| {
            let stmt = c
                .prepare_cached(
                    "INSERT INTO accounts (name, password_hash, created_at)
                     VALUES ($1, $2, $3) RETURNING id",
                )
                .await
                .map_err(pg)?;
            match c.query_one(&stmt, &[&name, &hash, &unix_time()]).await {
                Ok(row) => Ok(Some(AccountId(row.get(0)))),
                Err(e) if state(&e) == Some(&SqlState::UNIQUE_VIOLATION) => Ok(None),
                Err(e) => Err(pg(e)),
            }
        })
    }
}

impl Storage for PgStorage {
    fn login(&mut self, name: &str, password: &str, create: bool) -> Result<Account, StorageError> {
        password::login(
            &mut self.hashing,
            &mut Rows(&self.db),
            name,
            password,
            create,
        )
    }

    fn account(&mut self, id: AccountId) -> Result<Account, StorageError> {
        self.db.with(async |c| {
            let stmt = c
                .prepare_cached("SELECT name, entity_id FROM accounts WHERE id = $1")
                .await
                .map_err(pg)?;
            let row = c.query_opt(&stmt, &[&id.0]).await.map_err(pg)?;
            row.map(|r| Account {
                id,
                name: r.get(0),
                entity: r.get::<_, Option<i64>>(1).map(DbId),
            })
            .ok_or(StorageError::NoSuchAccountId(id))
        })
    }

    fn set_account_entity(&mut self, account: AccountId, entity: DbId) -> Result<(), StorageError> {
        self.db.with(async |c| {
            let stmt = c
                .prepare_cached("UPDATE accounts SET entity_id = $1 WHERE id = $2")
                .await
                .map_err(pg)?;
            match c.execute(&stmt, &[&entity.0, &account.0]).await {
                Ok(0) => Err(StorageError::NoSuchAccountId(account)),
                Ok(_) => Ok(()),
                Err(e) if state(&e) == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                    Err(StorageError::NoSuchEntity(entity))
                }
                Err(e) => Err(pg(e)),
            }
        })
    }

    fn create_entity(
        &mut self,
        type_name: &str,
        format_version: u32,
        data: &[u8],
    ) -> Result<DbId, StorageError> {
        self.db.with(async |c| {
            let stmt = c
                .prepare_cached(
                    "INSERT INTO entities (type_name, format_version, data, updated_at)
                     VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .await
                .map_err(pg)?;
            let row = c
                .query_one(
                    &stmt,
                    &[&type_name, &i64::from(format_version), &data, &unix_time()],
                )
                .await
                .map_err(pg)?;
            Ok(DbId(row.get(0)))
        })
    }

    fn load_entity(&mut self, id: DbId) -> Result<Option<StoredEntity>, StorageError> {
        self.db.with(async |c| {
            let stmt = c
                .prepare_cached(
                    "SELECT type_name, format_version, data, fence FROM entities WHERE id = $1",
                )
                .await
                .map_err(pg)?;
            let row = c.query_opt(&stmt, &[&id.0]).await.map_err(pg)?;
            Ok(row.map(|r| StoredEntity {
                db_id: id,
                type_name: r.get(0),
                format_version: u32::try_from(r.get::<_, i64>(1)).unwrap_or(0),
                data: r.get(2),
                fence: u64::try_from(r.get::<_, i64>(3)).unwrap_or(0),
            }))
        })
    }

    fn save_entities(&mut self, batch: &[StoredEntity]) -> Result<usize, StorageError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let now = unix_time();
        self.db.with(async |c| {
            let tx = c.transaction().await.map_err(pg)?;
            let update = tx
                .prepare_cached(
                    "UPDATE entities SET type_name = $1, format_version = $2, data = $3,
                     updated_at = $4, fence = $6 WHERE id = $5 AND fence <= $6",
                )
                .await
                .map_err(pg)?;
            let exists = tx
                .prepare_cached("SELECT 1 FROM entities WHERE id = $1")
                .await
                .map_err(pg)?;
            let mut fenced = 0;
            for e in batch {
                // Fences stay far below 2^63.
                let fence = i64::try_from(e.fence).unwrap_or(i64::MAX);
                let version = i64::from(e.format_version);
                let changed = tx
                    .execute(
                        &update,
                        &[&e.type_name, &version, &e.data, &now, &e.db_id.0, &fence],
                    )
                    .await
                    .map_err(pg)?;
                if changed == 0 {
                    if tx
                        .query_opt(&exists, &[&e.db_id.0])
                        .await
                        .map_err(pg)?
                        .is_some()
                    {
                        fenced += 1;
                        continue;
                    }
                    // Dropping `tx` rolls the whole batch back.
                    return Err(StorageError::NoSuchEntity(e.db_id));
                }
            }
            tx.commit().await.map_err(pg)?;
            Ok(fenced)
        })
    }

    fn delete_entity(&mut self, id: DbId) -> Result<(), StorageError> {
        self.db.with(async |c| {
            let stmt = c
                .prepare_cached("DELETE FROM entities WHERE id = $1")
                .await
                .map_err(pg)?;
            match c.execute(&stmt, &[&id.0]).await {
                Ok(0) => Err(StorageError::NoSuchEntity(id)),
                Ok(_) => Ok(()),
                Err(e) if state(&e) == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                    Err(StorageError::EntityInUse(id))
                }
                Err(e) => Err(pg(e)),
            }
        })
    }

    fn find_named(&mut self, type_name: &str, name: &str) -> Result<Option<DbId>, StorageError> {
        self.db.with(async |c| {
            let stmt = c
                .prepare_cached(
                    "SELECT entity_id FROM named_entities WHERE type_name = $1 AND name = $2",
                )
                .await
                .map_err(pg)?;
            let row = c.query_opt(&stmt, &[&type_name, &name]).await.map_err(pg)?;
            Ok(row.map(|r| DbId(r.get(0))))
        })
    }

    fn set_named(&mut self, type_name: &str, name: &str, entity: DbId) -> Result<(), StorageError> {
        self.db.with(async |c| {
            let stmt = c
                .prepare_cached(
                    "INSERT INTO named_entities (type_name, name, entity_id) VALUES ($1, $2, $3)
                     ON CONFLICT (type_name, name) DO UPDATE SET entity_id = EXCLUDED.entity_id",
                )
                .await
                .map_err(pg)?;
            match c.execute(&stmt, &[&type_name, &name, &entity.0]).await {
                Ok(_) => Ok(()),
                Err(e) if state(&e) == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                    Err(StorageError::NoSuchEntity(entity))
                }
                Err(e) => Err(pg(e)),
            }
        })
    }
}
