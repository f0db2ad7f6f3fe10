//! Agents' console passwords, stored only as Argon2id hashes (PHC strings) in the
//! region's credentials bucket: agent id → hash. `helpline agent passwd` writes one; the
//! console reads one per sign-in. Every replica sees a new password at once, and no
//! password, nor anything it could be read back from, is kept anywhere else.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use async_nats::jetstream::{self, kv};

/// A password shorter than this is refused when it is set.
pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("the credentials bucket {bucket} is not there (`helpline ensure` makes it): {reason}")]
    Missing { bucket: String, reason: String },
    #[error("the credentials bucket: {0}")]
    Store(String),
    #[error("a password needs at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("hashing the password: {0}")]
    Hash(String),
}

/// The region's credentials bucket.
#[derive(Clone, Debug)]
pub struct Credentials {
    bucket: kv::Store,
}

impl Credentials {
    /// Opens `bucket` (made by `helpline ensure`).
    pub async fn open(js: &jetstream::Context, bucket: &str) -> Result<Self, CredentialsError> {
        let bucket = js
            .get_key_value(bucket)
            .await
            .map_err(|e| CredentialsError::Missing {
                bucket: bucket.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self { bucket })
    }

    /// Sets `agent`'s password: its Argon2id hash replaces the one before.
    pub async fn set(&self, agent: &str, password: &str) -> Result<(), CredentialsError> {
        let hashed = hash(password.to_owned()).await?;
        self.bucket
            .put(agent, hashed.into_bytes().into())
            .await
            .map_err(|e| CredentialsError::Store(e.to_string()))?;
        Ok(())
    }

    /// Whether `agent` has a password.
    pub async fn is_set(&self, agent: &str) -> Result<bool, CredentialsError> {
        self.bucket
            .get(agent)
            .await
            .map(|stored| stored.is_some())
            .map_err(|e| CredentialsError::Store(e.to_string()))
    }

    /// Whether `password` is `agent`'s. An agent with no password set takes as long to
    /// refuse as a wrong password does, so the answer's timing does not tell who has one.
    pub async fn check(&self, agent: &str, password: &str) -> Result<bool, CredentialsError> {
        let stored = self
            .bucket
            .get(agent)
            .await
            .map_err(|e| CredentialsError::Store(e.to_string()))?;
        let stored = stored.and_then(|bytes| String::from_utf8(bytes.to_vec()).ok());
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || match stored {
            Some(stored) => verify(&stored, &password),
            None => {
                let _ = verify(DECOY, &password);
                false
            }
        })
        .await
        .map_err(|e| CredentialsError::Hash(e.to_string()))
    }
}

/// The Argon2id hash of `password` as a PHC string, on a blocking thread (it takes a
/// noticeable moment by design).
pub async fn hash(password: String) -> Result<String, CredentialsError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(CredentialsError::TooShort);
    }
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| CredentialsError::Hash(e.to_string()))?;
        let salt =
            SaltString::encode_b64(&salt).map_err(|e| CredentialsError::Hash(e.to_string()))?;
        hasher()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| CredentialsError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| CredentialsError::Hash(e.to_string()))?
}

/// Whether `password` matches the PHC string `stored` (compared in constant time by the
/// library); a string that is not a hash matches nothing.
pub fn verify(stored: &str, password: &str) -> bool {
    PasswordHash::new(stored)
        .is_ok_and(|hash| hasher().verify_password(password.as_bytes(), &hash).is_ok())
}

/// Argon2id with OWASP's first recommended setting (19 MiB, 2 passes, 1 lane). A stored
/// hash names its own parameters, so raising them later still verifies older ones.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A hash no password was set with, checked against when an agent has none.
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Y2FjdHVzY2FjdHVzY2FjdHVzY2FjdHVzY2FjdHVzY2E";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_is_kept_only_as_an_argon2id_hash_that_verifies_it() {
        let hashed = hash("correct horse battery".to_owned()).await.unwrap();
        assert!(hashed.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(!hashed.contains("horse"));
        assert!(verify(&hashed, "correct horse battery"));
        assert!(!verify(&hashed, "correct horse battery "));
        assert!(!verify("not a hash", "correct horse battery"));
    }

    #[tokio::test]
    async fn a_short_password_is_refused() {
        assert!(matches!(
            hash("eleven char".to_owned()).await,
            Err(CredentialsError::TooShort)
        ));
    }

    #[test]
    fn the_decoy_is_a_hash_that_matches_no_password_anyone_types() {
        assert!(PasswordHash::new(DECOY).is_ok());
        assert!(!verify(DECOY, ""));
    }
}
