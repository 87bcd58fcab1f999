//! The error type of the storage layer, kept apart so every backend and
//! caller shares one set of clearly worded failures.

use std::path::PathBuf;

use super::{AccountId, DbId};

/// Everything that can go wrong in the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL reported an error, or a connection to it failed.
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// The database could not be reached when the process started.
    #[error("cannot reach the database {location}: {why}")]
    Unreachable {
        /// The database, without its password.
        location: String,
        /// Why.
        why: String,
    },
    /// A `database` setting that names no database this build can use.
    #[error(
        "invalid database setting {0:?}: expected postgres://USER:PASSWORD@HOST:PORT/DATABASE \
         or sqlite:PATH"
    )]
    BadLocation(String),
    /// The directory that should hold the database could not be created.
    #[error("cannot create database directory {path}: {source}")]
    CreateDir {
        /// The directory that could not be created.
        path: PathBuf,
        /// Why it could not be created.
        source: std::io::Error,
    },
    /// The password does not match the account.
    #[error("wrong password")]
    WrongPassword,
    /// No account has this name (and creating one was not asked for).
    #[error("no account named {0:?}")]
    NoSuchAccount(String),
    /// No account has this id.
    #[error("no account with id {0}")]
    NoSuchAccountId(AccountId),
    /// The account name is not 1 to 32 characters of `A-Z a-z 0-9 _ -`.
    #[error(
        "invalid account name {0:?}: a name is 1 to 32 characters of A-Z, a-z, 0-9, '_' and '-'"
    )]
    InvalidName(String),
    /// The password is empty.
    #[error("password is empty")]
    EmptyPassword,
    /// A new account's password is shorter than the minimum.
    #[error("a new account's password must be at least {min} bytes long")]
    PasswordTooShort {
        /// The shortest length allowed, in bytes.
        min: usize,
    },
    /// The password is longer than the limit.
    #[error("password is {len} bytes long; at most {max} bytes are allowed")]
    PasswordTooLong {
        /// Length of the password given, in bytes.
        len: usize,
        /// The largest length allowed, in bytes.
        max: usize,
    },
    /// Password hashing failed, the hash cost is invalid, or a stored hash is
    /// unreadable.
    #[error("password hashing: {0}")]
    Hash(String),
    /// The database was written by a newer build that uses a schema this one
    /// does not know.
    #[error(
        "database schema version {found} is newer than this build supports \
         (up to {supported}); run a newer server build"
    )]
    Schema {
        /// The schema version found in the database.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// No entity has this id.
    #[error("no entity with id {0}")]
    NoSuchEntity(DbId),
    /// The entity cannot be deleted because an account is linked to it.
    #[error("entity {0} is linked to an account and cannot be deleted")]
    EntityInUse(DbId),
}
