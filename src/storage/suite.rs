//! The storage contract, checked the same way on every backend: each check
//! is a function over fresh, empty storage, and [`storage_suite!`] makes a
//! test of each for a backend. What only one backend has (SQLite's file
//! settings, PostgreSQL's migrations) is tested beside that backend.
#![allow(clippy::unwrap_used)]

use super::{AccountId, DbId, Storage, StorageError, StoredEntity};

/// Fresh, empty storage of one backend, and a second handle on the same
/// store where the backend has one (as a second process would open it).
pub(crate) trait Backend {
    /// Whatever keeps the store alive (a directory, a schema).
    type Guard;
    /// A new, empty store and a handle on it; `None` (having said why)
    /// where the backend cannot be tested here.
    fn fresh() -> Option<(Self::Guard, Box<dyn Storage>)>;
    /// Another handle on the store `guard` keeps, if the backend shares one.
    fn again(guard: &Self::Guard) -> Option<Box<dyn Storage>>;
}

pub(crate) fn entity(
    db_id: DbId,
    type_name: &str,
    format_version: u32,
    data: &[u8],
) -> StoredEntity {
    StoredEntity {
        db_id,
        type_name: type_name.to_owned(),
        format_version,
        data: data.to_vec(),
        fence: 0,
    }
}

pub(crate) fn account_create_then_login(db: &mut dyn Storage) {
    let created = db.login("Alice", "hunter2hunter2", true).unwrap();
    assert_eq!(created.name, "Alice");
    assert_eq!(created.entity, None);
    assert_eq!(db.login("Alice", "hunter2hunter2", false).unwrap(), created);
    // Creating again with the right password logs in to the same account.
    assert_eq!(db.login("Alice", "hunter2hunter2", true).unwrap(), created);
    // Names are compared case-insensitively; the stored spelling is kept.
    assert_eq!(db.login("aLICE", "hunter2hunter2", false).unwrap(), created);
    assert_eq!(db.login("ALICE", "hunter2hunter2", true).unwrap(), created);
    assert_eq!(db.account(created.id).unwrap(), created);
}

pub(crate) fn unknown_account_without_create_is_refused(db: &mut dyn Storage) {
    let err = db.login("nobody", "password1", false).unwrap_err();
    assert!(
        matches!(&err, StorageError::NoSuchAccount(n) if n == "nobody"),
        "{err}"
    );
    // And it was not made on the way.
    let err = db.login("nobody", "password1", false).unwrap_err();
    assert!(matches!(err, StorageError::NoSuchAccount(_)), "{err}");
    let err = db.account(AccountId(424_242)).unwrap_err();
    assert!(matches!(err, StorageError::NoSuchAccountId(_)), "{err}");
}

pub(crate) fn wrong_password_is_refused(db: &mut dyn Storage) {
    let bob = db.login("bob", "right-password", true).unwrap();
    for wrong in ["wrong", "Right-password", "right-password ", "r"] {
        let err = db.login("bob", wrong, false).unwrap_err();
        assert!(
            matches!(err, StorageError::WrongPassword),
            "{wrong:?}: {err}"
        );
    }
    // Creating over an existing name, whatever its case, needs its password.
    for name in ["bob", "BOB"] {
        let err = db.login(name, "other-password", true).unwrap_err();
        assert!(matches!(err, StorageError::WrongPassword), "{err}");
    }
    assert_eq!(db.login("bob", "right-password", false).unwrap(), bob);
}

pub(crate) fn invalid_names_and_passwords_are_refused(db: &mut dyn Storage) {
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
    // None of those made an account.
    let err = db.login("carol", "password1", false).unwrap_err();
    assert!(matches!(err, StorageError::NoSuchAccount(_)), "{err}");
    db.login(&"a".repeat(32), &"p".repeat(128), true).unwrap();
}

pub(crate) fn account_links_to_its_entity(db: &mut dyn Storage) {
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
    assert_eq!(db.account(account.id).unwrap().entity, Some(player));
}

pub(crate) fn a_lower_fence_cannot_write_over_a_higher(db: &mut dyn Storage) {
    let e = db.create_entity("Avatar", 1, b"x").unwrap();
    super::fence_tests::a_lower_fence_cannot_write_over_a_higher(db, e);
    assert_eq!(db.load_entity(e).unwrap().unwrap().fence, 5);
}

pub(crate) fn entity_create_load_save_delete(db: &mut dyn Storage) {
    let id = db
        .create_entity("Avatar", 1, b"\x00\x01binary\xff")
        .unwrap();
    let loaded = db.load_entity(id).unwrap().unwrap();
    assert_eq!(loaded, entity(id, "Avatar", 1, b"\x00\x01binary\xff"));
    let saved = entity(id, "Avatar", u32::MAX, &[7u8; 100_000]);
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

pub(crate) fn entity_linked_to_an_account_is_not_deleted(db: &mut dyn Storage) {
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

pub(crate) fn a_batch_that_fails_midway_changes_nothing(db: &mut dyn Storage) {
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
    // The unknown id in the middle, and last: earlier rows were already
    // updated inside the transaction when it fails.
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
    // The storage is still usable and the batch without the bad id saves.
    let good: Vec<StoredEntity> = ids.iter().map(|&id| updated(id)).collect();
    db.save_entities(&good).unwrap();
    for e in &good {
        assert_eq!(&db.load_entity(e.db_id).unwrap().unwrap(), e);
    }
}

pub(crate) fn named_entities_are_made_once(db: &mut dyn Storage) {
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
    assert_eq!(db.find_named("Guild", "red").unwrap(), Some(guild.db_id));
    assert_eq!(
        db.named_entity("Guild", "red", 1, b"x").unwrap().data,
        b"members"
    );
    assert_eq!(db.find_named("Guild", "green").unwrap(), None);
    assert!(matches!(
        db.set_named("Guild", "green", DbId(9999)),
        Err(StorageError::NoSuchEntity(_))
    ));
}

/// Two handles on one store, as a manager and a baseapp (or two baseapps
/// on two machines) hold them: each sees what the other wrote, and they
/// make one account of one name.
pub(crate) fn two_handles_see_each_others_writes(
    manager: &mut dyn Storage,
    baseapp: &mut dyn Storage,
) {
    let account = manager.login("hana", "password1", true).unwrap();
    assert_eq!(baseapp.login("hana", "password1", false).unwrap(), account);
    let id = baseapp.create_entity("Avatar", 1, b"v1").unwrap();
    assert_eq!(manager.load_entity(id).unwrap().unwrap().data, b"v1");
    manager.set_account_entity(account.id, id).unwrap();
    assert_eq!(baseapp.account(account.id).unwrap().entity, Some(id));
    let saved = entity(id, "Avatar", 2, b"v2");
    baseapp.save_entities(std::slice::from_ref(&saved)).unwrap();
    assert_eq!(manager.load_entity(id).unwrap().unwrap(), saved);
    // Creating the same name from the other handle logs in to the one account.
    assert_eq!(
        baseapp.login("HANA", "password1", true).unwrap().id,
        account.id
    );
    let err = baseapp.login("hana", "bad-password", true).unwrap_err();
    assert!(matches!(err, StorageError::WrongPassword), "{err}");
    let guild = manager.named_entity("Guild", "gold", 1, b"g").unwrap();
    assert_eq!(
        baseapp
            .named_entity("Guild", "gold", 1, b"other")
            .unwrap()
            .db_id,
        guild.db_id
    );
}

/// Makes a test of every check of the contract for `$backend` (a
/// [`Backend`]).
macro_rules! storage_suite {
    ($backend:ty) => {
        $crate::storage::suite::storage_suite!(@each $backend;
            account_create_then_login,
            unknown_account_without_create_is_refused,
            wrong_password_is_refused,
            invalid_names_and_passwords_are_refused,
            account_links_to_its_entity,
            a_lower_fence_cannot_write_over_a_higher,
            entity_create_load_save_delete,
            entity_linked_to_an_account_is_not_deleted,
            a_batch_that_fails_midway_changes_nothing,
            named_entities_are_made_once
        );

        #[test]
        fn two_handles_see_each_others_writes() {
            use $crate::storage::suite::Backend;
            let Some((guard, mut one)) = <$backend>::fresh() else { return };
            if let Some(mut two) = <$backend>::again(&guard) {
                $crate::storage::suite::two_handles_see_each_others_writes(&mut *one, &mut *two);
            }
        }
    };
    (@each $backend:ty; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                use $crate::storage::suite::Backend;
                let Some((_guard, mut db)) = <$backend>::fresh() else { return };
                $crate::storage::suite::$check(&mut *db);
            }
        )*
    };
}
pub(crate) use storage_suite;
