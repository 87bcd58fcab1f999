//! Persistent storage of accounts and entities.
//!
//! This module owns everything the server keeps across restarts: player
//! accounts (name, password hash, linked player entity) and the saved state of
//! persistent entities. The [`Storage`] trait is what the manager (accounts)
//! and the baseapps (entities) program against. Its backends: [`SqliteStorage`],
//! one SQLite file shared by the processes of one machine (the embedded
//! default); `PgStorage` (feature `postgres`), one PostgreSQL database shared
//! by every machine of a cluster; and [`MemStorage`], for the simulator. A
//! [`Location`] names the database a process uses.
//!
//! Entity state is opaque here: the caller encodes it and records which
//! encoding it used in [`StoredEntity::format_version`], so rows written by an
//! older build stay readable after the entity definitions change.
//!
//! The API is synchronous; async callers run it on a blocking thread.

mod database;
mod error;
#[cfg(test)]
pub(crate) mod fence_tests;
mod memory;
mod password;
#[cfg(feature = "postgres")]
mod postgres;
mod schema;
mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

pub use database::{redact, Database, Location, SQLITE_FILE};
pub use error::StorageError;
pub use memory::MemStorage;
pub use password::{
    HashCost, MAX_HASH_MEMORY_KIB, MAX_NAME_LEN, MAX_PASSWORD_LEN, MIN_NEW_PASSWORD_LEN,
};
#[cfg(feature = "postgres")]
pub use postgres::{PgPool, PgStorage};
pub use sqlite::SqliteStorage;

/// Seconds since the Unix epoch, or 0 if the clock is before it.
fn unix_time() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A database row id of a persistent entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DbId(pub i64);

impl fmt::Display for DbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A database row id of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub i64);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One persistent entity as stored.
///
/// The caller encodes `data`; `format_version` says which encoding, so old
/// rows stay readable after the definitions change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntity {
    /// Row id of the entity.
    pub db_id: DbId,
    /// Name of the entity type, as in the entity definitions.
    pub type_name: String,
    /// Version of the encoding of `data`.
    pub format_version: u32,
    /// The encoded entity state.
    pub data: Vec<u8>,
    /// The writer's fence. A save is refused once a save with a higher
    /// fence has been taken: a base restored from its copy after its
    /// baseapp was declared dead saves with one more than the copy had, so
    /// that baseapp, if it lives on (a partition), cannot write over it.
    /// 0 for a new row; a loaded row carries the fence it was last saved
    /// with, which its next owner keeps.
    pub fence: u64,
}

/// The account a successful login resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Row id of the account.
    pub id: AccountId,
    /// The account name as it was stored when the account was created.
    pub name: String,
    /// The player entity linked to the account, if one was linked yet.
    pub entity: Option<DbId>,
}

/// Persistent storage of accounts and entities.
///
/// Every method is synchronous and may block on disk I/O or on another process
/// holding the database lock; async callers run it on a blocking thread.
pub trait Storage: Send {
    /// Checks a name and password and returns the account they resolve to.
    ///
    /// Names are 1 to [`MAX_NAME_LEN`] characters of `A-Z a-z 0-9 _ -` and are
    /// compared case-insensitively; passwords are 1 to [`MAX_PASSWORD_LEN`]
    /// bytes. Without `create`, an unknown name is
    /// [`StorageError::NoSuchAccount`]. With `create`, an unknown name becomes
    /// a new account with this password; a name that already exists logs in
    /// normally if the password matches; a new account's password must be
    /// at least [`MIN_NEW_PASSWORD_LEN`] bytes. Either way a password that
    /// does not match the account is [`StorageError::WrongPassword`].
    fn login(&mut self, name: &str, password: &str, create: bool) -> Result<Account, StorageError>;

    /// The account with this id.
    ///
    /// Errors with [`StorageError::NoSuchAccountId`] if there is none.
    fn account(&mut self, id: AccountId) -> Result<Account, StorageError>;

    /// Links an account to its player entity, replacing any previous link.
    ///
    /// Errors with [`StorageError::NoSuchAccountId`] or
    /// [`StorageError::NoSuchEntity`] if either row does not exist.
    fn set_account_entity(&mut self, account: AccountId, entity: DbId) -> Result<(), StorageError>;

    /// Inserts a new entity, returning its id.
    fn create_entity(
        &mut self,
        type_name: &str,
        format_version: u32,
        data: &[u8],
    ) -> Result<DbId, StorageError>;

    /// Loads one entity, or `None` if no entity has this id.
    fn load_entity(&mut self, id: DbId) -> Result<Option<StoredEntity>, StorageError>;

    /// Overwrites many existing entities in one transaction.
    ///
    /// Either the whole batch is durable or none of it is: an entity's save is
    /// never half-written, and a batch is never half-applied. An entity whose
    /// id does not exist is [`StorageError::NoSuchEntity`] and rolls back the
    /// whole batch. If an id appears twice, the later entry wins. An entry
    /// whose fence is below the row's is skipped (the rest are written);
    /// returns how many were.
    fn save_entities(&mut self, batch: &[StoredEntity]) -> Result<usize, StorageError>;

    /// Deletes an entity.
    ///
    /// Errors with [`StorageError::NoSuchEntity`] if it does not exist and
    /// with [`StorageError::EntityInUse`] if an account is still linked to it.
    fn delete_entity(&mut self, id: DbId) -> Result<(), StorageError>;

    /// The entity a type's unique name refers to, if any (a guild by its
    /// name).
    fn find_named(&mut self, type_name: &str, name: &str) -> Result<Option<DbId>, StorageError>;

    /// Makes a type's unique name refer to an entity.
    ///
    /// Errors with [`StorageError::NoSuchEntity`] if the entity does not
    /// exist.
    fn set_named(&mut self, type_name: &str, name: &str, entity: DbId) -> Result<(), StorageError>;

    /// The entity named `name` of type `type_name`, made from `fresh` if
    /// there is none yet.
    fn named_entity(
        &mut self,
        type_name: &str,
        name: &str,
        format_version: u32,
        fresh: &[u8],
    ) -> Result<StoredEntity, StorageError> {
        if let Some(id) = self.find_named(type_name, name)? {
            if let Some(row) = self.load_entity(id)? {
                return Ok(row);
            }
        }
        let id = self.create_entity(type_name, format_version, fresh)?;
        self.set_named(type_name, name, id)?;
        self.load_entity(id)?.ok_or(StorageError::NoSuchEntity(id))
    }
}
