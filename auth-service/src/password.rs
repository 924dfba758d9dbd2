//! argon2id hashing on a small pool of its own: one thread per core, at the
//! lowest CPU priority.
//!
//! Why not `spawn_blocking` behind a semaphore: on a busy machine the async
//! side must be scheduled between two hashes to hand out the next one, and
//! with every core hashing it waits for a time slice, so cores sit idle
//! between hashes (measured: logins at ~0.7x the raw verify rate). Here each
//! thread takes its next job from a queue itself, so hashing keeps every core
//! busy while work is queued; and at `nice 19` the threads yield the CPU to
//! everything else, so a login flood cannot starve `Authenticate`.

use std::sync::{Arc, Mutex};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use tokio::sync::{mpsc, oneshot};

use crate::domain::Password;
use crate::error::{AuthError, Result};

type Job = Box<dyn FnOnce() + Send>;

/// Hashes and verifies passwords with argon2id and OWASP's parameters
/// (m = 19456 KiB, t = 2, p = 1), storing PHC strings.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: mpsc::Sender<Job>,
    /// A real hash of a random password: verifying against it makes a login
    /// for an unknown username cost as much as one for a known username.
    dummy: Arc<str>,
}

impl PasswordHasher {
    /// A hasher with one low-priority thread per available core, and room
    /// for `queue` jobs waiting: past that, a hash is refused at once with
    /// [`AuthError::Busy`] instead of queueing behind a flood. The threads
    /// stop when every clone of the hasher is dropped.
    pub fn new(queue: usize) -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (jobs, queue) = mpsc::channel::<Job>(queue.max(1));
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..cores {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // Holding the lock while waiting is fine: whoever holds
                        // it takes the next job, then lets the next thread wait.
                        let job = queue
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .blocking_recv();
                        match job {
                            Some(job) => job(),
                            None => break,
                        }
                    }
                })
                .map_err(|e| AuthError::Hashing(e.to_string()))?;
        }
        let (dummy_password, _) =
            crate::token::generate().map_err(|e| AuthError::Hashing(e.to_string()))?;
        let dummy = hash_blocking(&dummy_password)?;
        Ok(Self {
            jobs,
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
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        let gone = || AuthError::Hashing("the hashing threads are gone".into());
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => AuthError::Busy,
            mpsc::error::TrySendError::Closed(_) => gone(),
        })?;
        answer.await.map_err(|_| gone())?
    }
}

/// Puts the calling thread at the lowest scheduling priority (Linux nice is
/// per thread). Best effort: if refused, hashing still works.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority has no memory-safety preconditions; `0` names the
    // calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
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
        let h = PasswordHasher::new(8).unwrap();
        let pw = || Password::parse_given("correct horse".into()).unwrap();
        let phc = h.hash(pw()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify(pw(), Some(phc.clone())).await.unwrap());
        let wrong = Password::parse_given("wrong horse".into()).unwrap();
        assert!(!h.verify(wrong, Some(phc)).await.unwrap());
        assert!(!h.verify(pw(), None).await.unwrap());
    }
}
