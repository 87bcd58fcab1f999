//! An in-memory [`Storage`] for the simulator and tests: the same contract as
//! SQLite (names, batches that apply whole or not at all, linked entities),
//! nothing on disk. Passwords are compared, not hashed: this backend is never
//! for real accounts.

use std::collections::BTreeMap;

use super::password::{validate_name, validate_new_password, validate_password};
use super::{Account, AccountId, DbId, Storage, StorageError, StoredEntity};

/// Accounts and entities in memory.
#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    accounts: BTreeMap<i64, (String, String, Option<DbId>)>,
    entities: BTreeMap<i64, StoredEntity>,
    named: BTreeMap<(String, String), DbId>,
    next_account: i64,
    next_entity: i64,
}

impl MemStorage {
    /// An empty store.
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Every stored entity, by id.
    pub fn entities(&self) -> impl Iterator<Item = &StoredEntity> {
        self.entities.values()
    }
}

impl Storage for MemStorage {
    fn login(&mut self, name: &str, password: &str, create: bool) -> Result<Account, StorageError> {
        validate_name(name)?;
        validate_password(password)?;
        let found = self
            .accounts
            .iter()
            .find(|(_, (n, _, _))| n.eq_ignore_ascii_case(name));
        if let Some((id, (stored, pw, entity))) = found {
            return if pw == password {
                Ok(Account {
                    id: AccountId(*id),
                    name: stored.clone(),
                    entity: *entity,
                })
            } else {
                Err(StorageError::WrongPassword)
            };
        }
        if !create {
            return Err(StorageError::NoSuchAccount(name.to_string()));
        }
        validate_new_password(password)?;
        self.next_account += 1;
        let id = self.next_account;
        self.accounts
            .insert(id, (name.to_string(), password.to_string(), None));
        Ok(Account {
            id: AccountId(id),
            name: name.to_string(),
            entity: None,
        })
    }

    fn account(&mut self, id: AccountId) -> Result<Account, StorageError> {
        let (name, _, entity) = self
            .accounts
            .get(&id.0)
            .ok_or(StorageError::NoSuchAccountId(id))?;
        Ok(Account {
            id,
            name: name.clone(),
            entity: *entity,
        })
    }

    fn set_account_entity(&mut self, account: AccountId, entity: DbId) -> Result<(), StorageError> {
        if !self.entities.contains_key(&entity.0) {
            return Err(StorageError::NoSuchEntity(entity));
        }
        let a = self
            .accounts
            .get_mut(&account.0)
            .ok_or(StorageError::NoSuchAccountId(account))?;
        a.2 = Some(entity);
        Ok(())
    }

    fn find_named(&mut self, type_name: &str, name: &str) -> Result<Option<DbId>, StorageError> {
        Ok(self
            .named
            .get(&(type_name.to_string(), name.to_string()))
            .copied())
    }

    fn set_named(&mut self, type_name: &str, name: &str, entity: DbId) -> Result<(), StorageError> {
        if !self.entities.contains_key(&entity.0) {
            return Err(StorageError::NoSuchEntity(entity));
        }
        self.named
            .insert((type_name.to_string(), name.to_string()), entity);
        Ok(())
    }

    fn create_entity(
        &mut self,
        type_name: &str,
        format_version: u32,
        data: &[u8],
    ) -> Result<DbId, StorageError> {
        self.next_entity += 1;
        let id = DbId(self.next_entity);
        self.entities.insert(
            id.0,
            StoredEntity {
                db_id: id,
                type_name: type_name.to_string(),
                format_version,
                data: data.to_vec(),
                fence: 0,
            },
        );
        Ok(id)
    }

    fn load_entity(&mut self, id: DbId) -> Result<Option<StoredEntity>, StorageError> {
        Ok(self.entities.get(&id.0).cloned())
    }

    fn save_entities(&mut self, batch: &[StoredEntity]) -> Result<usize, StorageError> {
        if let Some(missing) = batch
            .iter()
            .find(|e| !self.entities.contains_key(&e.db_id.0))
        {
            return Err(StorageError::NoSuchEntity(missing.db_id));
        }
        let mut fenced = 0;
        for e in batch {
            match self.entities.get_mut(&e.db_id.0) {
                Some(row) if row.fence <= e.fence => *row = e.clone(),
                _ => fenced += 1,
            }
        }
        Ok(fenced)
    }

    fn delete_entity(&mut self, id: DbId) -> Result<(), StorageError> {
        if self.accounts.values().any(|(_, _, e)| *e == Some(id)) {
            return Err(StorageError::EntityInUse(id));
        }
        self.entities
            .remove(&id.0)
            .map(|_| ())
            .ok_or(StorageError::NoSuchEntity(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory: a store per value, with no second handle on it.
    struct Memory;

    impl crate::storage::suite::Backend for Memory {
        type Guard = ();

        fn fresh() -> Option<((), Box<dyn Storage>)> {
            Some(((), Box::new(MemStorage::new())))
        }

        fn again(_: &()) -> Option<Box<dyn Storage>> {
            None
        }
    }

    crate::storage::suite::storage_suite!(Memory);
}
