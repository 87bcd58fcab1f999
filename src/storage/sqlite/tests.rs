//! Behaviour tests of [`SqliteStorage`]: accounts, entities, batches,
//! reopening, schema versions and sharing a file between handles.
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

fn entity(db_id: DbId, type_name: &str, format_version: u32, data: &[u8]) -> StoredEntity {
    StoredEntity {
        db_id,
        type_name: type_name.to_owned(),
        format_version,
        data: data.to_vec(),
        fence: 0,
    }
}

fn account_count(path: &Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row("SELECT count(*) FROM accounts", [], |row| row.get(0))
        .unwrap()
}

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
fn account_create_then_login() {
    let (_dir, path) = temp_db();
    let mut db = open(&path);
    let created = db.login("Alice", "hunter2hunter2", true).unwrap();
    assert_eq!(created.name, "Alice");
    assert_eq!(created.entity, None);
    assert_eq!(db.login("Alice", "hunter2hunter2", false).unwrap(), created);
    // Creating again with the right password logs in to the same account.
    assert_eq!(db.login("Alice", "hunter2hunter2", true).unwrap(), created);
    // Names are compared case-insensitively; the stored spelling is kept.
    assert_eq!(db.login("aLICE", "hunter2hunter2", false).unwrap(), created);
    assert_eq!(account_count(&path), 1);
}

#[test]
fn unknown_account_without_create_is_refused() {
    let (_dir, path) = temp_db();
    let mut db = open(&path);
    let err = db.login("nobody", "password1", false).unwrap_err();
    assert!(
        matches!(&err, StorageError::NoSuchAccount(n) if n == "nobody"),
        "{err}"
    );
    assert_eq!(account_count(&path), 0);
}

#[test]
fn wrong_password_is_refused() {
    let (_dir, path) = temp_db();
    let mut db = open(&path);
    db.login("bob", "right-password", true).unwrap();
    for wrong in ["wrong", "Right-password", "right-password ", "r"] {
        let err = db.login("bob", wrong, false).unwrap_err();
        assert!(
            matches!(err, StorageError::WrongPassword),
            "{wrong:?}: {err}"
        );
    }
}

#[test]
fn create_on_an_existing_name_with_a_wrong_password_is_refused() {
    let (_dir, path) = temp_db();
    let mut db = open(&path);
    let bob = db.login("bob", "right-password", true).unwrap();
    let err = db.login("bob", "other", true).unwrap_err();
    assert!(matches!(err, StorageError::WrongPassword), "{err}");
    let err = db.login("BOB", "other", true).unwrap_err();
    assert!(matches!(err, StorageError::WrongPassword), "{err}");
    assert_eq!(account_count(&path), 1);
    assert_eq!(db.login("bob", "right-password", false).unwrap(), bob);
}

#[test]
fn invalid_names_and_passwords_are_refused() {
    let (_dir, path) = temp_db();
    let mut db = open(&path);
    let long = "a".repeat(33);
    for name in ["", "a b", "a/b", "Zoë", "a'; DROP TABLE accounts;--", &long] {
        let err = db.login(name, "password1", true).unwrap_err();
        assert!(
            matches!(&err, StorageError::InvalidName(n) if n == name),
            "{name:?}: {err}"
        );
    }
    let err = db.login("carol", "", true).unwrap_err();
    assert!(matches!(err, StorageError::EmptyPassword), "{err}");
    let err = db.login("carol", &"p".repeat(129), true).unwrap_err();
    assert!(matches!(err, StorageError::PasswordTooLong { .. }), "{err}");
    let err = db.login("carol", "seven77", true).unwrap_err();
    assert!(
        matches!(err, StorageError::PasswordTooShort { min: 8 }),
        "{err}"
    );
    assert_eq!(account_count(&path), 0);
    db.login(&"a".repeat(32), &"p".repeat(128), true).unwrap();
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
fn account_links_to_its_entity() {
    let (_dir, path) = temp_db();
    let mut db = open(&path);
    let account = db.login("erin", "password1", true).unwrap();
    let player = db.create_entity("Avatar", 1, b"state").unwrap();
    db.set_account_entity(account.id, player).unwrap();
    assert_eq!(
        db.login("erin", "password1", false).unwrap().entity,
        Some(player)
    );

    let missing = DbId(player.0 + 100);
    let err = db.set_account_entity(account.id, missing).unwrap_err();
    assert!(
        matches!(err, StorageError::NoSuchEntity(id) if id == missing),
        "{err}"
    );
    let err = db.set_account_entity(AccountId(999), player).unwrap_err();
    assert!(
        matches!(err, StorageError::NoSuchAccountId(AccountId(999))),
        "{err}"
    );
    assert_eq!(
        db.login("erin", "password1", false).unwrap().entity,
        Some(player)
    );
}

#[test]
fn a_lower_fence_cannot_write_over_a_higher() {
    let (_dir, path) = temp_db();
    let mut db = open(&path);
    let e = db.create_entity("Avatar", 1, b"x").unwrap();
    crate::storage::fence_tests::a_lower_fence_cannot_write_over_a_higher(&mut db, e);
    // And it holds across a reopen.
    drop(db);
    let mut db = open(&path);
    assert_eq!(db.load_entity(e).unwrap().unwrap().fence, 5);
}

#[test]
fn entity_create_load_save_delete() {
    let (_dir, path) = temp_db();
    let mut db = open(&path);
    let id = db
        .create_entity("Avatar", 1, b"\x00\x01binary\xff")
        .unwrap();
    let loaded = db.load_entity(id).unwrap().unwrap();
    assert_eq!(loaded, entity(id, "Avatar", 1, b"\x00\x01binary\xff"));

    let saved = entity(id, "Avatar", 2, &[7u8; 100_000]);
    db.save_entities(std::slice::from_ref(&saved)).unwrap();
    assert_eq!(db.load_entity(id).unwrap().unwrap(), saved);
    let empty = entity(id, "Avatar", 3, b"");
    db.save_entities(std::slice::from_ref(&empty)).unwrap();
    assert_eq!(db.load_entity(id).unwrap().unwrap(), empty);
    db.save_entities(&[]).unwrap();

    assert_eq!(db.load_entity(DbId(id.0 + 1)).unwrap(), None);
    db.delete_entity(id).unwrap();
    assert_eq!(db.load_entity(id).unwrap(), None);
    let err = db.delete_entity(id).unwrap_err();
    assert!(
        matches!(err, StorageError::NoSuchEntity(d) if d == id),
        "{err}"
    );
}

#[test]
fn entity_linked_to_an_account_is_not_deleted() {
    let (_dir, path) = temp_db();
    let mut db = open(&path);
    let account = db.login("frank", "password1", true).unwrap();
    let player = db.create_entity("Avatar", 1, b"state").unwrap();
    db.set_account_entity(account.id, player).unwrap();
    let err = db.delete_entity(player).unwrap_err();
    assert!(
        matches!(err, StorageError::EntityInUse(d) if d == player),
        "{err}"
    );
    assert!(db.load_entity(player).unwrap().is_some());
}

#[test]
fn a_batch_that_fails_midway_changes_nothing() {
    let (_dir, path) = temp_db();
    let mut db = open(&path);
    let ids: Vec<DbId> = (0..3)
        .map(|i| {
            db.create_entity("Npc", 1, format!("before {i}").as_bytes())
                .unwrap()
        })
        .collect();
    let before: Vec<StoredEntity> = ids
        .iter()
        .map(|&id| db.load_entity(id).unwrap().unwrap())
        .collect();
    let missing = DbId(ids[2].0 + 1000);
    let updated = |id: DbId| entity(id, "Npc", 2, b"after");
    // The unknown id in the middle, and last: earlier rows were already updated
    // inside the transaction when it fails.
    for batch in [
        vec![
            updated(ids[0]),
            updated(missing),
            updated(ids[1]),
            updated(ids[2]),
        ],
        vec![
            updated(ids[0]),
            updated(ids[1]),
            updated(ids[2]),
            updated(missing),
        ],
    ] {
        let err = db.save_entities(&batch).unwrap_err();
        assert!(
            matches!(err, StorageError::NoSuchEntity(d) if d == missing),
            "{err}"
        );
        for (id, old) in ids.iter().zip(&before) {
            assert_eq!(&db.load_entity(*id).unwrap().unwrap(), old);
        }
        assert_eq!(db.load_entity(missing).unwrap(), None);
    }
    // The storage is still usable and the same batch without the bad id saves.
    let good: Vec<StoredEntity> = ids.iter().map(|&id| updated(id)).collect();
    db.save_entities(&good).unwrap();
    for e in &good {
        assert_eq!(&db.load_entity(e.db_id).unwrap().unwrap(), e);
    }
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
fn two_handles_on_one_file_see_each_others_writes() {
    let (_dir, path) = temp_db();
    let mut manager = open(&path);
    let mut baseapp = open(&path);

    let account = manager.login("hana", "password1", true).unwrap();
    assert_eq!(baseapp.login("hana", "password1", false).unwrap(), account);

    let id = baseapp.create_entity("Avatar", 1, b"v1").unwrap();
    assert_eq!(manager.load_entity(id).unwrap().unwrap().data, b"v1");
    manager.set_account_entity(account.id, id).unwrap();
    assert_eq!(
        baseapp.login("hana", "password1", false).unwrap().entity,
        Some(id)
    );

    let saved = entity(id, "Avatar", 2, b"v2");
    baseapp.save_entities(std::slice::from_ref(&saved)).unwrap();
    assert_eq!(manager.load_entity(id).unwrap().unwrap(), saved);

    // Creating the same name from the other handle logs in to the one account.
    assert_eq!(
        baseapp.login("hana", "password1", true).unwrap().id,
        account.id
    );
    let err = baseapp.login("hana", "bad", true).unwrap_err();
    assert!(matches!(err, StorageError::WrongPassword), "{err}");
}

#[test]
fn storage_is_usable_as_a_trait_object() {
    let (_dir, path) = temp_db();
    let mut db: Box<dyn Storage> = Box::new(open(&path));
    let id = db.create_entity("Avatar", 1, b"x").unwrap();
    assert!(db.load_entity(id).unwrap().is_some());
}

#[test]
fn named_entities_are_made_once_and_found_again_after_a_reopen() {
    let (_dir, path) = temp_db();
    let mut db = open(&path);
    let guild = db.named_entity("Guild", "red", 1, b"fresh").unwrap();
    assert_eq!(guild.data, b"fresh");
    // The same name gives the same entity, whatever `fresh` says now.
    let again = db.named_entity("Guild", "red", 1, b"other").unwrap();
    assert_eq!(again.db_id, guild.db_id);
    // Another name, or another type with the same name, is another entity.
    let blue = db.named_entity("Guild", "blue", 1, b"b").unwrap();
    let shop = db.named_entity("Shop", "red", 1, b"s").unwrap();
    assert!(blue.db_id != guild.db_id && shop.db_id != guild.db_id);
    let mut saved = guild.clone();
    saved.data = b"members".to_vec();
    db.save_entities(&[saved]).unwrap();
    drop(db);
    let mut db = open(&path);
    assert_eq!(db.find_named("Guild", "red").unwrap(), Some(guild.db_id));
    assert_eq!(
        db.named_entity("Guild", "red", 1, b"x").unwrap().data,
        b"members"
    );
    assert!(matches!(
        db.set_named("Guild", "green", DbId(9999)),
        Err(StorageError::NoSuchEntity(_))
    ));
}
