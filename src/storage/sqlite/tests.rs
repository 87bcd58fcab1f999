//! Tests of [`SqliteStorage`]: the storage contract every backend keeps
//! (`storage::suite`), and what is SQLite's own: the file's settings,
//! reopening, schema versions, the stored hashes.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use tempfile::TempDir;

use super::super::schema::SCHEMA_VERSION;
use super::*;

/// A cheap hash cost so tests run fast.
pub(super) const CHEAP: HashCost = HashCost {
    memory_kib: 256,
    iterations: 1,
    parallelism: 1,
};

/// A temporary directory and the path of a database inside a subdirectory of
/// it that does not exist yet.
pub(super) fn temp_db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("tessera.db");
    (dir, path)
}

pub(super) fn open(path: &Path) -> SqliteStorage {
    SqliteStorage::open(path, CHEAP).unwrap()
}

use crate::storage::suite::entity;

#[test]
fn open_sets_up_the_file() {
    let (_dir, path) = temp_db();
    let db = open(&path);
    let pragma = |name: &str| -> i64 {
        db.conn
            .pragma_query_value(None, name, |row| row.get(0))
            .unwrap()
    };
    let mode: String = db
        .conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(pragma("synchronous"), 2, "synchronous=FULL");
    assert_eq!(pragma("foreign_keys"), 1);
    assert!(pragma("busy_timeout") >= 1000);
    assert_eq!(pragma("user_version"), SCHEMA_VERSION);
}

#[test]
fn passwords_are_stored_as_salted_argon2id() {
    let (_dir, path) = temp_db();
    let mut db = open(&path);
    db.login("one", "same-password", true).unwrap();
    db.login("two", "same-password", true).unwrap();
    let conn = Connection::open(&path).unwrap();
    let hashes: Vec<String> = conn
        .prepare("SELECT password_hash FROM accounts ORDER BY id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(hashes.len(), 2);
    assert!(hashes.iter().all(|h| h.starts_with("$argon2id$")));
    assert!(hashes.iter().all(|h| !h.contains("same")));
    assert_ne!(hashes[0], hashes[1]);
}

#[test]
fn corrupt_stored_hash_is_an_error() {
    let (_dir, path) = temp_db();
    let mut db = open(&path);
    db.login("dave", "password1", true).unwrap();
    db.conn
        .execute("UPDATE accounts SET password_hash = 'garbage'", [])
        .unwrap();
    let err = db.login("dave", "password1", false).unwrap_err();
    assert!(matches!(err, StorageError::Hash(_)), "{err}");
}

#[test]
fn a_fence_holds_across_a_reopen() {
    let (_dir, path) = temp_db();
    let mut db = open(&path);
    let e = db.create_entity("Avatar", 1, b"x").unwrap();
    crate::storage::fence_tests::a_lower_fence_cannot_write_over_a_higher(&mut db, e);
    drop(db);
    let mut db = open(&path);
    assert_eq!(db.load_entity(e).unwrap().unwrap().fence, 5);
}

#[test]
fn reopening_keeps_everything() {
    let (_dir, path) = temp_db();
    let (account, saved) = {
        let mut db = open(&path);
        let account = db.login("gina", "password1", true).unwrap();
        let id = db.create_entity("Avatar", 1, b"v1").unwrap();
        db.set_account_entity(account.id, id).unwrap();
        let saved = entity(id, "Avatar", 4, b"v2");
        db.save_entities(std::slice::from_ref(&saved)).unwrap();
        (account, saved)
    };
    let mut db = open(&path);
    let again = db.login("gina", "password1", false).unwrap();
    assert_eq!(again.id, account.id);
    assert_eq!(again.entity, Some(saved.db_id));
    assert_eq!(db.load_entity(saved.db_id).unwrap().unwrap(), saved);
    let next = db.create_entity("Avatar", 1, b"new").unwrap();
    assert_ne!(next, saved.db_id);
}

#[test]
fn a_newer_database_is_refused() {
    let (_dir, path) = temp_db();
    drop(open(&path));
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = SqliteStorage::open(&path, CHEAP).unwrap_err();
    assert!(
        matches!(err, StorageError::Schema { found, supported }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn an_invalid_hash_cost_is_refused() {
    let (_dir, path) = temp_db();
    let cost = HashCost {
        memory_kib: 1,
        iterations: 1,
        parallelism: 1,
    };
    let err = SqliteStorage::open(&path, cost).unwrap_err();
    assert!(matches!(err, StorageError::Hash(_)), "{err}");
}

#[test]
fn storage_is_usable_as_a_trait_object() {
    let (_dir, path) = temp_db();
    let mut db: Box<dyn Storage> = Box::new(open(&path));
    let id = db.create_entity("Avatar", 1, b"x").unwrap();
    assert!(db.load_entity(id).unwrap().is_some());
}

#[test]
fn named_entities_are_found_again_after_a_reopen() {
    let (_dir, path) = temp_db();
    let mut db = open(&path);
    let guild = db.named_entity("Guild", "red", 1, b"fresh").unwrap();
    drop(db);
    let mut db = open(&path);
    assert_eq!(db.find_named("Guild", "red").unwrap(), Some(guild.db_id));
}

/// A SQLite file in a directory of its own.
struct Sqlite;

impl crate::storage::suite::Backend for Sqlite {
    type Guard = (TempDir, PathBuf);

    fn fresh() -> Option<(Self::Guard, Box<dyn Storage>)> {
        let (dir, path) = temp_db();
        let db = Box::new(open(&path));
        Some(((dir, path), db))
    }

    fn again((_, path): &Self::Guard) -> Option<Box<dyn Storage>> {
        Some(Box::new(open(path)))
    }
}

crate::storage::suite::storage_suite!(Sqlite);
