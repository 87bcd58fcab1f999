//! The SQLite schema and its versioned migrations.
//!
//! The schema version lives in `PRAGMA user_version`. [`MIGRATIONS`] is the
//! ordered list of steps: step `i` takes the database from version `i` to
//! `i + 1`. Each step runs in its own write transaction together with the
//! version bump, so a crash mid-migration leaves the previous version intact,
//! and several processes opening the same file at once apply each step once.
//! A database newer than this build is refused rather than misread.

use rusqlite::{Connection, TransactionBehavior};

use super::StorageError;

/// Migration steps, oldest first. Never edit a released step: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: accounts and entities.
    "CREATE TABLE entities (
         id             INTEGER PRIMARY KEY,
         type_name      TEXT    NOT NULL,
         format_version INTEGER NOT NULL,
         data           BLOB    NOT NULL,
         updated_at     INTEGER NOT NULL
     );
     CREATE TABLE accounts (
         id            INTEGER PRIMARY KEY,
         name          TEXT    NOT NULL UNIQUE COLLATE NOCASE,
         password_hash TEXT    NOT NULL,
         entity_id     INTEGER NULL REFERENCES entities(id),
         created_at    INTEGER
     );
     CREATE INDEX accounts_entity_id ON accounts(entity_id);",
    // 2: the writer's fence (see `StoredEntity::fence`).
    "ALTER TABLE entities ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;",
    // 3: entities found by a unique name within their type (a guild).
    "CREATE TABLE named_entities (
         type_name TEXT    NOT NULL,
         name      TEXT    NOT NULL,
         entity_id INTEGER NOT NULL REFERENCES entities(id),
         PRIMARY KEY (type_name, name)
     );",
];

/// The schema version this build writes and the newest it can read.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Reads the schema version of the database.
pub(super) fn current_version(conn: &Connection) -> Result<i64, StorageError> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// Brings the database up to [`SCHEMA_VERSION`], or refuses a newer one.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StorageError> {
    check_not_newer(current_version(conn)?)?;
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-read under the write lock: another process may have migrated.
        let version = current_version(&tx)?;
        check_not_newer(version)?;
        let Some(step) = usize::try_from(version)
            .ok()
            .and_then(|v| MIGRATIONS.get(v))
        else {
            return Ok(());
        };
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
        tracing::info!(from = version, to = version + 1, "migrated storage schema");
    }
}

fn check_not_newer(found: i64) -> Result<(), StorageError> {
    if found > SCHEMA_VERSION {
        return Err(StorageError::Schema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn migrates_a_new_database_to_the_latest_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(current_version(&conn).unwrap(), 0);
        migrate(&mut conn).unwrap();
        assert_eq!(current_version(&conn).unwrap(), SCHEMA_VERSION);
        // Running again is a no-op.
        migrate(&mut conn).unwrap();
        assert_eq!(current_version(&conn).unwrap(), SCHEMA_VERSION);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'
                 AND name IN ('accounts', 'entities')",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tables, 2);
    }

    #[test]
    fn a_first_version_database_keeps_its_rows_and_gains_the_fence() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO entities (type_name, format_version, data, updated_at)
             VALUES ('Avatar', 1, x'01', 0)",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let (data, fence): (Vec<u8>, i64) = conn
            .query_row("SELECT data, fence FROM entities", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        assert_eq!((data, fence), (vec![1], 0));
    }

    #[test]
    fn refuses_a_newer_database() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(err, StorageError::Schema { found, supported }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err}"
        );
    }

    #[test]
    fn a_failing_step_leaves_the_version_unchanged() {
        let mut conn = Connection::open_in_memory().unwrap();
        // A table in the way makes step 1 fail after it created `entities`.
        conn.execute_batch("CREATE TABLE accounts (x INTEGER);")
            .unwrap();
        assert!(migrate(&mut conn).is_err());
        assert_eq!(current_version(&conn).unwrap(), 0);
        let entities: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'entities'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(entities, 0, "the failed step was rolled back");
    }
}
