//! argon2id hashing off the async executor, bounded to one hash per core so
//! that a login flood queues here instead of starving everything else.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use tokio::sync::Semaphore;

use crate::domain::{AuthError, Password, Result};

/// Hashes and verifies passwords with argon2id and OWASP's parameters
/// (m = 19456 KiB, t = 2, p = 1), storing PHC strings.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// A real hash of a random password: verifying against it makes a login
    /// for an unknown username cost as much as one for a known username.
    dummy: Arc<str>,
}

impl PasswordHasher {
    /// A hasher allowing one hash at a time per available core.
    pub fn new() -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (dummy_password, _) =
            crate::token::generate().map_err(|e| AuthError::Hashing(e.to_string()))?;
        let dummy = hash_blocking(&dummy_password)?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(cores)),
            dummy: dummy.into(),
        })
    }

    /// The PHC string of `password` under a fresh random salt.
    pub async fn hash(&self, password: Password) -> Result<String> {
        self.run(move || hash_blocking(&password.into_inner()))
            .await
    }

    /// Whether `password` matches `hash`. With no hash (unknown user) it
    /// verifies against a dummy hash, so it takes as long, and answers false.
    pub async fn verify(&self, password: Password, hash: Option<String>) -> Result<bool> {
        let dummy = self.dummy.clone();
        self.run(move || {
            let known = hash.is_some();
            let phc = hash.as_deref().unwrap_or(&dummy);
            let ok = Argon2::default()
                .verify_password(password.into_inner().as_bytes(), phc)
                .is_ok();
            Ok(known && ok)
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| AuthError::Hashing(e.to_string()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| AuthError::Hashing(e.to_string()))?
    }
}

fn hash_blocking(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hashing(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_do() {
        let h = PasswordHasher::new().unwrap();
        let pw = || Password::parse_given("correct horse".into()).unwrap();
        let phc = h.hash(pw()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify(pw(), Some(phc.clone())).await.unwrap());
        let wrong = Password::parse_given("wrong horse".into()).unwrap();
        assert!(!h.verify(wrong, Some(phc)).await.unwrap());
        assert!(!h.verify(pw(), None).await.unwrap());
    }
}
