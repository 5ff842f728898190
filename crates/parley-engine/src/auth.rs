//! API tokens (random, shown once, stored as SHA-256) and console passwords (Argon2id).

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rand::Rng;
use sha2::{Digest, Sha256};

const TOKEN_PREFIX: &str = "pk_";
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A fresh API token: `pk_` + 40 random alphanumerics (~238 bits).
pub fn generate_api_token() -> String {
    random_string(TOKEN_PREFIX, 40)
}

/// A readable random password for generated console logins.
pub fn generate_password() -> String {
    random_string("", 20)
}

fn random_string(prefix: &str, len: usize) -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(prefix.len() + len);
    s.push_str(prefix);
    for _ in 0..len {
        s.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    s
}

/// What the database keeps of an API token. Tokens are long random strings, so a fast hash
/// is enough (no dictionary to attack).
pub fn hash_api_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Argon2 work on the blocking pool, a few at a time. Each check holds ~19 MiB for tens of
/// milliseconds: unbounded, a burst of wrong passwords becomes gigabytes (the blocking pool
/// grows to 512 threads). Callers wait their turn instead; the login form's own throttle
/// decides how long anyone waits.
pub struct HashingPool {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

impl HashingPool {
    pub fn new(permits: usize) -> Self {
        HashingPool {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(permits.max(1))),
        }
    }

    /// The process's pool: as many at once as there are cores.
    pub fn global() -> &'static HashingPool {
        static POOL: std::sync::OnceLock<HashingPool> = std::sync::OnceLock::new();
        POOL.get_or_init(|| {
            HashingPool::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
        })
    }

    /// Runs `work` on the blocking pool once a permit is free; `None` if it panicked. The
    /// permit goes with the work, so a caller that hangs up mid-check frees it only when the
    /// check ends: dropped requests cannot raise the number running.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .ok()
    }
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn callers_that_hang_up_do_not_raise_the_number_of_checks_running() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pool = Arc::new(HashingPool::new(2));
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let check = |ms: u64| {
            let (pool, now, most) = (pool.clone(), now.clone(), most.clone());
            tokio::spawn(async move {
                pool.run(move || {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                    now.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            })
        };
        let first = [check(300), check(300)];
        while now.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        // Both callers hang up while their checks run on.
        for t in &first {
            t.abort();
        }
        let later = [check(10), check(10)];
        for t in later {
            assert!(t.await.expect("task").is_some());
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most <= 2, "checks running at once: {most}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_of_password_checks_runs_a_few_at_a_time() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pool = Arc::new(HashingPool::new(2));
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let (pool, now, most) = (pool.clone(), now.clone(), most.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(10));
                        now.fetch_sub(1, Ordering::SeqCst);
                        i
                    })
                    .await
                })
            })
            .collect();
        let mut done = 0;
        for t in tasks {
            assert!(t.await.expect("task").is_some());
            done += 1;
        }
        assert_eq!(done, 20, "every check ran");
        let most = most.load(Ordering::SeqCst);
        assert!(
            (1..=2).contains(&most),
            "never more than the permits at once: {most}"
        );
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = generate_api_token();
        let b = generate_api_token();
        assert!(a.starts_with("pk_") && a.len() == 43);
        assert_ne!(a, b);
        assert_eq!(hash_api_token(&a), hash_api_token(&a));
        assert_ne!(hash_api_token(&a), hash_api_token(&b));
    }

    #[test]
    fn passwords_verify() {
        let h = hash_password("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }
}
