//! Account credentials: validation of names and passwords, and argon2id
//! password hashing. Kept apart from the database code so the rules are
//! checked in one place whatever backend stores the result.

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;

use super::StorageError;

/// The longest account name, in characters.
pub const MAX_NAME_LEN: usize = 32;

/// The longest password, in bytes.
pub const MAX_PASSWORD_LEN: usize = 128;

/// The shortest password a new account may have, in bytes. Accounts made
/// before a longer minimum keep logging in.
pub const MIN_NEW_PASSWORD_LEN: usize = 8;

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

/// The most memory one hash may take, in KiB (1 GiB): a manager hashes
/// several passwords at once, and a cost beyond this is a mistake.
pub const MAX_HASH_MEMORY_KIB: u32 = 1 << 20;

impl HashCost {
    /// The argon2 parameters of this cost, or why there are none.
    fn params(&self) -> Result<Params, StorageError> {
        if self.memory_kib > MAX_HASH_MEMORY_KIB {
            return Err(StorageError::Hash(format!(
                "invalid hash cost {self:?}: more than {MAX_HASH_MEMORY_KIB} KiB of memory"
            )));
        }
        Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(OUTPUT_LEN),
        )
        .map_err(|e| StorageError::Hash(format!("invalid hash cost {self:?}: {e}")))
    }

    /// Checks that argon2 takes this cost (at least 8 KiB of memory per
    /// lane, at least one pass, at most [`MAX_HASH_MEMORY_KIB`]).
    pub fn check(&self) -> Result<(), StorageError> {
        self.params().map(|_| ())
    }
}

/// What a database backend does for [`login`]: its two statements.
pub(super) trait AccountRows {
    /// The account of this name, whatever its case, with its password hash.
    fn find(&mut self, name: &str) -> Result<Option<(super::Account, String)>, StorageError>;
    /// Inserts a new account; `None` if another process took the name
    /// since it was looked up.
    fn insert(&mut self, name: &str, hash: &str) -> Result<Option<super::AccountId>, StorageError>;
}

/// The login every database backend shares: check the name and password,
/// find the account and verify, or (with `create`) make it.
pub(super) fn login(
    hashing: &mut PasswordHashing,
    rows: &mut dyn AccountRows,
    name: &str,
    password: &str,
    create: bool,
) -> Result<super::Account, StorageError> {
    validate_name(name)?;
    validate_password(password)?;
    let verify = |hashing: &mut PasswordHashing, account: super::Account, hash: &str| match hashing
        .verify(password, hash)
    {
        Ok(()) => Ok(account),
        Err(e) => {
            tracing::debug!(account = account.id.0, "login refused: {e}");
            Err(e)
        }
    };
    if let Some((account, hash)) = rows.find(name)? {
        return verify(hashing, account, &hash);
    }
    if !create {
        // As slow as a wrong password: timing tells no one which names
        // have accounts.
        hashing.verify_nobody(password);
        return Err(StorageError::NoSuchAccount(name.to_owned()));
    }
    validate_new_password(password)?;
    let hash = hashing.hash(password)?;
    match rows.insert(name, &hash)? {
        Some(id) => {
            tracing::info!(account = id.0, name, "created account");
            Ok(super::Account {
                id,
                name: name.to_owned(),
                entity: None,
            })
        }
        // Another process created the name since the lookup above.
        None => {
            let (account, hash) = rows
                .find(name)?
                .ok_or_else(|| StorageError::NoSuchAccount(name.to_owned()))?;
            verify(hashing, account, &hash)
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

/// Checks that a new account's password is at least
/// [`MIN_NEW_PASSWORD_LEN`] bytes long.
pub(super) fn validate_new_password(password: &str) -> Result<(), StorageError> {
    if password.len() < MIN_NEW_PASSWORD_LEN {
        return Err(StorageError::PasswordTooShort {
            min: MIN_NEW_PASSWORD_LEN,
        });
    }
    Ok(())
}

/// Hashes new passwords at a fixed cost and verifies stored hashes. Each
/// keeps the argon2 working memory it last used and hashes into it again:
/// one per hashing thread, so a storm of logins costs no more memory than
/// one login per thread (allocating it per hash leaves it in the
/// allocator's arenas).
pub(super) struct PasswordHashing {
    params: Params,
    /// Working memory, grown to the largest cost met so far.
    scratch: Vec<argon2::Block>,
    /// A hash of no one's password, verified against for names that have
    /// no account: an unknown name costs what a known one does.
    dummy: String,
}

impl std::fmt::Debug for PasswordHashing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHashing")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// The length of a hash's output, in bytes.
const OUTPUT_LEN: usize = 32;
/// The length of a fresh salt, in bytes.
const SALT_LEN: usize = 16;

fn hash_error(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Hash(format!("{what}: {e}"))
}

impl PasswordHashing {
    /// Checks the cost and builds a hasher for it.
    pub(super) fn new(cost: HashCost) -> Result<Self, StorageError> {
        let params = cost.params()?;
        let mut hashing = PasswordHashing {
            params,
            scratch: Vec::new(),
            dummy: String::new(),
        };
        let mut nobody = [0u8; 24];
        rand::rand_core::UnwrapErr(rand::rngs::SysRng).fill_bytes(&mut nobody);
        hashing.dummy = hashing.hash(&hex::encode(nobody))?;
        Ok(hashing)
    }

    /// The working memory for `params`, reused.
    fn memory(&mut self, params: &Params) -> &mut [argon2::Block] {
        let n = params.block_count();
        if self.scratch.len() < n {
            self.scratch.resize(n, argon2::Block::default());
        }
        &mut self.scratch[..n]
    }

    /// Hashes `password` with a fresh random salt (16 bytes from the
    /// operating system), returning a PHC string.
    pub(super) fn hash(&mut self, password: &str) -> Result<String, StorageError> {
        let mut salt = [0u8; SALT_LEN];
        rand::rand_core::UnwrapErr(rand::rngs::SysRng).fill_bytes(&mut salt);
        let params = self.params.clone();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut out = [0u8; OUTPUT_LEN];
        argon
            .hash_password_into_with_memory(
                password.as_bytes(),
                &salt,
                &mut out,
                self.memory(&params),
            )
            .map_err(|e| hash_error("cannot hash password", e))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params)
                .map_err(|e| hash_error("cannot write hash parameters", e))?,
            salt: Some(Salt::new(&salt).map_err(|e| hash_error("bad salt", e))?),
            hash: Some(Output::new(&out).map_err(|e| hash_error("bad output", e))?),
        };
        Ok(phc.to_string())
    }

    /// Checks `password` against a stored PHC string, using the parameters
    /// recorded in it.
    pub(super) fn verify(&mut self, password: &str, stored: &str) -> Result<(), StorageError> {
        let unreadable = |e: &dyn std::fmt::Display| {
            StorageError::Hash(format!("stored password hash is unreadable: {e}"))
        };
        let parsed = PasswordHash::new(stored).map_err(|e| unreadable(&e))?;
        let algorithm =
            Algorithm::try_from(parsed.algorithm.as_str()).map_err(|e| unreadable(&e))?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).map_err(|e| unreadable(&e))?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).map_err(|e| unreadable(&e))?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err(unreadable(&"no salt or no hash"));
        };
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params.clone())
            .hash_password_into_with_memory(
                password.as_bytes(),
                salt.as_ref(),
                &mut out,
                self.memory(&params),
            )
            .map_err(|e| hash_error("cannot verify password", e))?;
        // Output compares in constant time.
        match Output::new(&out) {
            Ok(got) if got == expected => Ok(()),
            Ok(_) => Err(StorageError::WrongPassword),
            Err(e) => Err(hash_error("cannot verify password", e)),
        }
    }

    /// Spends what verifying a password costs, for a name with no account.
    pub(super) fn verify_nobody(&mut self, password: &str) {
        let dummy = std::mem::take(&mut self.dummy);
        let _ = self.verify(password, &dummy);
        self.dummy = dummy;
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
        let mut hashing = PasswordHashing::new(CHEAP).unwrap();
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
        let mut old = PasswordHashing::new(CHEAP).unwrap();
        let stored = old.hash("secret").unwrap();
        let mut new = PasswordHashing::new(HashCost {
            memory_kib: 512,
            iterations: 2,
            parallelism: 1,
        })
        .unwrap();
        new.verify("secret", &stored).unwrap();
    }

    #[test]
    fn unreadable_stored_hash_is_an_error() {
        let mut hashing = PasswordHashing::new(CHEAP).unwrap();
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
