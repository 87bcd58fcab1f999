//! Which database a cluster's processes share, and a [`Storage`] handle for
//! each thread that uses it.
//!
//! A [`Location`] is what the settings name: a SQLite file (the embedded
//! default, shared by the processes of one machine) or a PostgreSQL URL
//! (shared by every machine of a cluster). [`Location::connect`] opens it
//! once per process and checks it: the schema is brought up to date, and a
//! database that cannot be reached fails here, at start, with its address.
//! [`Database::handle`] then gives each thread its own handle: a SQLite
//! connection, or a handle on the process's PostgreSQL pool.

use std::fmt;
use std::path::{Path, PathBuf};

use super::password::HashCost;
use super::{SqliteStorage, Storage, StorageError};

/// The file a SQLite database has in a data directory unless told otherwise.
pub const SQLITE_FILE: &str = "world.db";

/// Where the accounts and entities live.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL server, by its URL (`postgres://user:password@host/db`).
    Postgres(String),
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Shows the location without a password a URL may carry.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Location::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// `url` with the password of its user part, if any, replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl Location {
    /// The default: `world.db` in the data directory.
    pub fn in_data_dir(data: &Path) -> Location {
        Location::Sqlite(data.join(SQLITE_FILE))
    }

    /// Reads a `database` setting: `postgres://…` or `postgresql://…` for
    /// PostgreSQL, `sqlite:PATH` for a SQLite file (relative to `data`
    /// when relative).
    pub fn parse(setting: &str, data: &Path) -> Result<Location, StorageError> {
        let s = setting.trim();
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(Location::Postgres(s.to_string()))
        } else if let Some(path) = s.strip_prefix("sqlite:") {
            let path = Path::new(path);
            match path.as_os_str().is_empty() {
                true => Err(StorageError::BadLocation(setting.to_string())),
                false => Ok(Location::Sqlite(data.join(path))),
            }
        } else {
            Err(StorageError::BadLocation(redact(setting)))
        }
    }

    /// Opens the database once for this process: makes a SQLite file's
    /// directory, connects to PostgreSQL, and brings the schema up to date
    /// either way. New passwords are hashed at `cost`.
    pub fn connect(&self, cost: HashCost) -> Result<Database, StorageError> {
        cost.check()?;
        match self {
            Location::Sqlite(path) => {
                // Opened once here so that a bad path or a newer schema
                // fails at start.
                drop(SqliteStorage::open(path, cost)?);
                Ok(Database::Sqlite {
                    path: path.clone(),
                    cost,
                })
            }
            #[cfg(feature = "postgres")]
            Location::Postgres(url) => Ok(Database::Postgres(super::postgres::PgPool::connect(
                url, cost,
            )?)),
            #[cfg(not(feature = "postgres"))]
            Location::Postgres(_) => Err(StorageError::BadLocation(format!(
                "{self}: this build has no PostgreSQL support"
            ))),
        }
    }
}

#[cfg(feature = "postgres")]
impl Location {
    /// [`Location::connect`] from async code: on a blocking thread, since
    /// it waits on the disk or the network.
    pub async fn open(&self, cost: HashCost) -> Result<Database, StorageError> {
        let location = self.clone();
        tokio::task::spawn_blocking(move || location.connect(cost))
            .await
            .map_err(|e| StorageError::Postgres(format!("the connecting thread failed: {e}")))?
    }
}

/// A database opened by [`Location::connect`].
#[derive(Clone)]
pub enum Database {
    /// A SQLite file: each handle is its own connection.
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The hashing cost of new passwords.
        cost: HashCost,
    },
    /// A PostgreSQL pool shared by every handle of the process.
    #[cfg(feature = "postgres")]
    Postgres(super::postgres::PgPool),
}

impl Database {
    /// A handle for one thread.
    pub fn handle(&self) -> Result<Box<dyn Storage>, StorageError> {
        match self {
            Database::Sqlite { path, cost } => Ok(Box::new(SqliteStorage::open(path, *cost)?)),
            #[cfg(feature = "postgres")]
            Database::Postgres(pool) => Ok(Box::new(pool.storage()?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_names_sqlite_or_postgres() {
        let data = Path::new("/srv/world");
        assert_eq!(
            Location::parse("sqlite:world.db", data).ok(),
            Some(Location::Sqlite(data.join("world.db")))
        );
        assert_eq!(
            Location::parse("sqlite:/var/db/w.db", data).ok(),
            Some(Location::Sqlite(PathBuf::from("/var/db/w.db")))
        );
        let url = "postgres://tessera:secret@db.internal:5432/world";
        assert_eq!(
            Location::parse(url, data).ok(),
            Some(Location::Postgres(url.into()))
        );
        for bad in ["mysql://x", "world.db", "sqlite:", ""] {
            assert!(Location::parse(bad, data).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_password_is_never_shown() {
        let url = "postgres://tessera:secret@db.internal:5432/world?sslmode=disable";
        let shown = Location::Postgres(url.into()).to_string();
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(
            shown,
            "postgres://tessera:***@db.internal:5432/world?sslmode=disable"
        );
        assert_eq!(redact("postgres://db/world"), "postgres://db/world");
        assert_eq!(redact("postgres://u@db/w"), "postgres://u@db/w");
        let e = Location::parse("mysql://u:secret@h/db", Path::new(".")).expect_err("refused");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
