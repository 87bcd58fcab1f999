//! The SQLite backend of [`Storage`].
//!
//! One database file is shared by several local processes (the manager for
//! accounts, each baseapp for entities), each with its own
//! [`SqliteStorage`]. The file runs in WAL mode so readers do not block the
//! writer, with `synchronous=FULL` so that a write acknowledged to the caller
//! survives the process being killed (or the machine losing power), and a busy
//! timeout so processes wait for each other's write lock instead of failing.
//! Write transactions take the lock up front (`BEGIN IMMEDIATE`), which lets
//! the busy timeout apply rather than failing when a read lock cannot be
//! upgraded.

use std::ffi::c_int;
use std::path::Path;
use std::time::Duration;

use rusqlite::{ffi, params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use super::password::{self, AccountRows, HashCost, PasswordHashing};
use super::{schema, unix_time, Account, AccountId, DbId, Storage, StorageError, StoredEntity};

/// How long to wait for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// [`Storage`] in one SQLite file, shareable between processes.
#[derive(Debug)]
pub struct SqliteStorage {
    conn: Connection,
    hashing: PasswordHashing,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database at `path` and brings its schema
    /// up to date.
    ///
    /// Creates missing parent directories. New passwords are hashed at `cost`.
    /// Fails with [`StorageError::Schema`] if the database was written by a
    /// newer build, and with [`StorageError::Hash`] if `cost` is invalid.
    pub fn open(path: &Path, cost: HashCost) -> Result<Self, StorageError> {
        let hashing = PasswordHashing::new(cost)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "SQLite refused WAL journal mode");
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        schema::migrate(&mut conn)?;
        Ok(Self { conn, hashing })
    }
}

/// The accounts table, for the shared login.
struct Rows<'a>(&'a Connection);

impl AccountRows for Rows<'_> {
    fn find(&mut self, name: &str) -> Result<Option<(Account, String)>, StorageError> {
        let mut stmt = self.0.prepare_cached(
            "SELECT id, name, entity_id, password_hash FROM accounts WHERE name = ?1",
        )?;
        let found = stmt
            .query_row([name], |row| {
                let account = Account {
                    id: AccountId(row.get(0)?),
                    name: row.get(1)?,
                    entity: row.get::<_, Option<i64>>(2)?.map(DbId),
                };
                Ok((account, row.get(3)?))
            })
            .optional()?;
        Ok(found)
    }

    fn insert(&mut self, name: &str, hash: &str) -> Result<Option<AccountId>, StorageError> {
        let inserted = self
            .0
            .prepare_cached(
                "INSERT INTO accounts (name, password_hash, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![name, hash, unix_time()]);
        match inserted {
            Ok(_) => Ok(Some(AccountId(self.0.last_insert_rowid()))),
            Err(e) if constraint(&e) == Some(ffi::SQLITE_CONSTRAINT_UNIQUE) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl Storage for SqliteStorage {
    fn login(&mut self, name: &str, password: &str, create: bool) -> Result<Account, StorageError> {
        password::login(
            &mut self.hashing,
            &mut Rows(&self.conn),
            name,
            password,
            create,
        )
    }

    fn account(&mut self, id: AccountId) -> Result<Account, StorageError> {
        self.conn
            .prepare_cached("SELECT name, entity_id FROM accounts WHERE id = ?1")?
            .query_row([id.0], |row| {
                Ok(Account {
                    id,
                    name: row.get(0)?,
                    entity: row.get::<_, Option<i64>>(1)?.map(DbId),
                })
            })
            .optional()?
            .ok_or(StorageError::NoSuchAccountId(id))
    }

    fn set_account_entity(&mut self, account: AccountId, entity: DbId) -> Result<(), StorageError> {
        let updated = self
            .conn
            .prepare_cached("UPDATE accounts SET entity_id = ?1 WHERE id = ?2")?
            .execute(params![entity.0, account.0]);
        match updated {
            Ok(0) => Err(StorageError::NoSuchAccountId(account)),
            Ok(_) => Ok(()),
            Err(e) if constraint(&e) == Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => {
                Err(StorageError::NoSuchEntity(entity))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn create_entity(
        &mut self,
        type_name: &str,
        format_version: u32,
        data: &[u8],
    ) -> Result<DbId, StorageError> {
        self.conn
            .prepare_cached(
                "INSERT INTO entities (type_name, format_version, data, updated_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![type_name, format_version, data, unix_time()])?;
        Ok(DbId(self.conn.last_insert_rowid()))
    }

    fn find_named(&mut self, type_name: &str, name: &str) -> Result<Option<DbId>, StorageError> {
        let id = self
            .conn
            .prepare_cached(
                "SELECT entity_id FROM named_entities WHERE type_name = ?1 AND name = ?2",
            )?
            .query_row(params![type_name, name], |row| row.get::<_, i64>(0))
            .optional()?;
        Ok(id.map(DbId))
    }

    fn set_named(&mut self, type_name: &str, name: &str, entity: DbId) -> Result<(), StorageError> {
        let done = self
            .conn
            .prepare_cached(
                "INSERT INTO named_entities (type_name, name, entity_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT (type_name, name) DO UPDATE SET entity_id = excluded.entity_id",
            )?
            .execute(params![type_name, name, entity.0]);
        match done {
            Ok(_) => Ok(()),
            Err(e) if constraint(&e) == Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => {
                Err(StorageError::NoSuchEntity(entity))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn load_entity(&mut self, id: DbId) -> Result<Option<StoredEntity>, StorageError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT type_name, format_version, data, fence FROM entities WHERE id = ?1",
        )?;
        let entity = stmt
            .query_row([id.0], |row| {
                Ok(StoredEntity {
                    db_id: id,
                    type_name: row.get(0)?,
                    format_version: row.get(1)?,
                    data: row.get(2)?,
                    fence: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                })
            })
            .optional()?;
        Ok(entity)
    }

    fn save_entities(&mut self, batch: &[StoredEntity]) -> Result<usize, StorageError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let now = unix_time();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut fenced = 0;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE entities SET type_name = ?1, format_version = ?2, data = ?3,
                 updated_at = ?4, fence = ?6 WHERE id = ?5 AND fence <= ?6",
            )?;
            let mut exists = tx.prepare_cached("SELECT 1 FROM entities WHERE id = ?1")?;
            for entity in batch {
                // SQLite integers are signed; fences stay far below 2^63.
                let fence = i64::try_from(entity.fence).unwrap_or(i64::MAX);
                let changed = stmt.execute(params![
                    entity.type_name,
                    entity.format_version,
                    entity.data,
                    now,
                    entity.db_id.0,
                    fence
                ])?;
                if changed == 0 {
                    if exists.exists([entity.db_id.0])? {
                        fenced += 1;
                        continue;
                    }
                    // Dropping `tx` rolls the whole batch back.
                    return Err(StorageError::NoSuchEntity(entity.db_id));
                }
            }
        }
        tx.commit()?;
        Ok(fenced)
    }

    fn delete_entity(&mut self, id: DbId) -> Result<(), StorageError> {
        let deleted = self
            .conn
            .prepare_cached("DELETE FROM entities WHERE id = ?1")?
            .execute([id.0]);
        match deleted {
            Ok(0) => Err(StorageError::NoSuchEntity(id)),
            Ok(_) => Ok(()),
            Err(e) if constraint(&e) == Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => {
                Err(StorageError::EntityInUse(id))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The extended result code of a constraint violation, if `e` is one.
fn constraint(e: &rusqlite::Error) -> Option<c_int> {
    e.sqlite_error()
        .filter(|f| f.code == ErrorCode::ConstraintViolation)
        .map(|f| f.extended_code)
}

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod tests;
