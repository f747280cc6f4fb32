//! argon2id password hashing on the blocking pool, with bounded concurrency so that a storm of logins
//! queues instead of starving every other request of blocking threads.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::config::PasswordHashing;
use crate::domain::Sensitive;

#[derive(Clone)]
pub struct Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when the account is unknown, so that an unknown
    /// phone and a wrong password take the same time.
    dummy: Arc<String>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("m", &self.params.m_cost())
            .field("t", &self.params.t_cost())
            .finish_non_exhaustive()
    }
}

impl Hasher {
    pub fn new(cost: PasswordHashing) -> Self {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .expect("argon2 parameters are validated by the configuration");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let random = crate::config::secrets::random_bytes::<24>();
        let dummy = argon(&params)
            .hash_password(&random)
            .expect("hashing random bytes")
            .to_string();
        Self {
            params,
            permits: Arc::new(Semaphore::new(cores)),
            dummy: Arc::new(dummy),
        }
    }

    pub async fn hash(&self, password: Sensitive<String>) -> anyhow::Result<String> {
        let params = self.params.clone();
        self.blocking(move || {
            argon(&params)
                .hash_password(password.expose().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2: {e}"))
        })
        .await?
    }

    /// Verifies `password` against `stored`, or against the dummy hash when there is no account, and says
    /// whether it matched and whether the stored hash should be upgraded to the current parameters.
    pub async fn verify(
        &self,
        password: Sensitive<String>,
        stored: Option<String>,
    ) -> anyhow::Result<Verdict> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy.as_ref().clone());
        let params = self.params.clone();
        self.blocking(move || {
            let matches = argon(&params)
                .verify_password(password.expose().as_bytes(), hash.as_str())
                .is_ok();
            Verdict {
                matches: matches && known,
                needs_rehash: matches && known && !uses(&hash, &params),
            }
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await?;
        let span = tracing::Span::current();
        Ok(tokio::task::spawn_blocking(move || span.in_scope(f)).await?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub matches: bool,
    pub needs_rehash: bool,
}

fn argon(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn uses(hash: &str, params: &Params) -> bool {
    argon2::password_hash::phc::PasswordHash::new(hash)
        .ok()
        .and_then(|h| {
            Params::try_from(&h)
                .ok()
                .map(|p| (h.algorithm.as_str() == "argon2id", p))
        })
        .is_some_and(|(id, p)| {
            id && p.m_cost() == params.m_cost()
                && p.t_cost() == params.t_cost()
                && p.p_cost() == params.p_cost()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: PasswordHashing = PasswordHashing {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[tokio::test]
    async fn hash_verify_and_upgrade() {
        let cheap = Hasher::new(CHEAP);
        let hash = cheap
            .hash(Sensitive::new("correct horse".into()))
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        let v = cheap
            .verify(Sensitive::new("correct horse".into()), Some(hash.clone()))
            .await
            .unwrap();
        assert_eq!(
            v,
            Verdict {
                matches: true,
                needs_rehash: false
            }
        );
        let wrong = cheap
            .verify(Sensitive::new("wrong".into()), Some(hash.clone()))
            .await
            .unwrap();
        assert!(!wrong.matches);
        let unknown = cheap
            .verify(Sensitive::new("correct horse".into()), None)
            .await
            .unwrap();
        assert!(!unknown.matches);

        let stronger = Hasher::new(PasswordHashing {
            memory_kib: 128,
            ..CHEAP
        });
        let v = stronger
            .verify(Sensitive::new("correct horse".into()), Some(hash))
            .await
            .unwrap();
        assert_eq!(
            v,
            Verdict {
                matches: true,
                needs_rehash: true
            }
        );
    }
}
