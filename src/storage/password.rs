//! Account credentials: validation of names and passwords, and argon2id
//! password hashing. Kept apart from the database code so the rules are
//! checked in one place whatever backend stores the result.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use super::StorageError;

/// The longest account name, in characters.
pub const MAX_NAME_LEN: usize = 32;

/// The longest password, in bytes.
pub const MAX_PASSWORD_LEN: usize = 128;

/// Password hashing cost (argon2id).
///
/// `Default` is the argon2 crate's defaults, which follow the OWASP
/// recommendation: 19456 KiB of memory, 2 iterations, 1 lane. The cost only
/// applies to new hashes; stored hashes carry their own parameters and keep
/// verifying after the cost changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashCost {
    /// Memory per hash, in KiB.
    pub memory_kib: u32,
    /// Number of passes over the memory.
    pub iterations: u32,
    /// Degree of parallelism (lanes).
    pub parallelism: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

/// Checks that `name` is 1 to [`MAX_NAME_LEN`] characters of `A-Z a-z 0-9 _ -`.
pub(super) fn validate_name(name: &str) -> Result<(), StorageError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(allowed) {
        return Err(StorageError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// Checks that `password` is 1 to [`MAX_PASSWORD_LEN`] bytes long.
pub(super) fn validate_password(password: &str) -> Result<(), StorageError> {
    if password.is_empty() {
        return Err(StorageError::EmptyPassword);
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(StorageError::PasswordTooLong {
            len: password.len(),
            max: MAX_PASSWORD_LEN,
        });
    }
    Ok(())
}

/// Hashes new passwords at a fixed cost and verifies stored hashes.
#[derive(Clone, Debug)]
pub(super) struct PasswordHashing {
    params: Params,
}

impl PasswordHashing {
    /// Checks the cost and builds a hasher for it.
    pub(super) fn new(cost: HashCost) -> Result<Self, StorageError> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| StorageError::Hash(format!("invalid hash cost {cost:?}: {e}")))?;
        Ok(Self { params })
    }

    /// Hashes `password` with a fresh random salt (16 bytes from the
    /// operating system), returning a PHC string.
    pub(super) fn hash(&self, password: &str) -> Result<String, StorageError> {
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone());
        let hash: PasswordHash = argon
            .hash_password(password.as_bytes())
            .map_err(|e| StorageError::Hash(format!("cannot hash password: {e}")))?;
        Ok(hash.to_string())
    }

    /// Checks `password` against a stored PHC string, using the parameters
    /// recorded in it.
    pub(super) fn verify(&self, password: &str, stored: &str) -> Result<(), StorageError> {
        let parsed = PasswordHash::new(stored)
            .map_err(|e| StorageError::Hash(format!("stored password hash is unreadable: {e}")))?;
        match Argon2::default().verify_password(password.as_bytes(), &parsed) {
            Ok(()) => Ok(()),
            Err(argon2::password_hash::Error::PasswordInvalid) => Err(StorageError::WrongPassword),
            Err(e) => Err(StorageError::Hash(format!(
                "cannot verify password against stored hash: {e}"
            ))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CHEAP: HashCost = HashCost {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn names_follow_the_rules() {
        for ok in ["a", "Alice", "x_y-z", "0123", &"n".repeat(MAX_NAME_LEN)] {
            assert!(validate_name(ok).is_ok(), "{ok:?} should be valid");
        }
        let long = "n".repeat(MAX_NAME_LEN + 1);
        for bad in ["", "a b", "a/b", "é", "tab\t", "nul\0", "a.b", &long] {
            assert!(
                matches!(validate_name(bad), Err(StorageError::InvalidName(n)) if n == bad),
                "{bad:?} should be invalid"
            );
        }
    }

    #[test]
    fn passwords_follow_the_rules() {
        assert!(matches!(
            validate_password(""),
            Err(StorageError::EmptyPassword)
        ));
        assert!(validate_password(&"p".repeat(MAX_PASSWORD_LEN)).is_ok());
        assert!(matches!(
            validate_password(&"p".repeat(MAX_PASSWORD_LEN + 1)),
            Err(StorageError::PasswordTooLong { len: 129, max: 128 })
        ));
    }

    #[test]
    fn default_cost_is_the_argon2_default() {
        let cost = HashCost::default();
        assert_eq!(
            (cost.memory_kib, cost.iterations, cost.parallelism),
            (19456, 2, 1)
        );
    }

    #[test]
    fn hashes_are_salted_argon2id_and_verify() {
        let hashing = PasswordHashing::new(CHEAP).unwrap();
        let a = hashing.hash("secret").unwrap();
        let b = hashing.hash("secret").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash gets its own salt");
        hashing.verify("secret", &a).unwrap();
        hashing.verify("secret", &b).unwrap();
        assert!(matches!(
            hashing.verify("Secret", &a),
            Err(StorageError::WrongPassword)
        ));
    }

    #[test]
    fn hashes_made_at_another_cost_still_verify() {
        let old = PasswordHashing::new(CHEAP).unwrap();
        let stored = old.hash("secret").unwrap();
        let new = PasswordHashing::new(HashCost {
            memory_kib: 512,
            iterations: 2,
            parallelism: 1,
        })
        .unwrap();
        new.verify("secret", &stored).unwrap();
    }

    #[test]
    fn unreadable_stored_hash_is_an_error() {
        let hashing = PasswordHashing::new(CHEAP).unwrap();
        assert!(matches!(
            hashing.verify("secret", "not a hash"),
            Err(StorageError::Hash(_))
        ));
    }

    #[test]
    fn invalid_cost_is_refused() {
        let zero = HashCost {
            memory_kib: 256,
            iterations: 0,
            parallelism: 1,
        };
        assert!(matches!(
            PasswordHashing::new(zero),
            Err(StorageError::Hash(_))
        ));
    }
}
