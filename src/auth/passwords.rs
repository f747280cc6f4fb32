//! argon2id password hashing on a few threads of its own, one a core, fed by a queue.
//!
//! A flood of logins queues here instead of taking the blocking threads the database work of other requests
//! needs, and a queued hash whose caller has gone (the client hung up) is skipped. Each thread keeps its
//! argon2 working memory (19 MiB at the production cost) from one hash to the next and takes the next hash
//! from the queue itself: with a fresh allocation a hash, or a semaphore and tokio's blocking threads (each
//! hash handed on through the busy async workers), the load harness measured logins at 46–56 % and 71–86 %
//! of two bare hashes at once (the floor is 85 %). A thread idle for `KEEP_MEMORY` wipes and frees it.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::config::PasswordHashing;
use crate::domain::Sensitive;

const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;
/// How long a hashing thread keeps its working memory after its last hash.
const KEEP_MEMORY: Duration = Duration::from_secs(1);

/// argon2's working memory of one hash.
type Memory = Vec<Block>;

type Work = Box<dyn FnOnce(&mut Memory) + Send>;

#[derive(Clone)]
pub struct Hasher {
    params: Params,
    queue: Sender<Work>,
    /// A hash with the current cost and a random salt and output, verified against when the account is
    /// unknown, so that an unknown phone and a wrong password take the same time.
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
    /// Starts one hashing thread a core; they end when the last clone of the hasher is dropped.
    pub fn new(cost: PasswordHashing) -> Self {
        let params = Params::new(
            cost.memory_kib,
            cost.iterations,
            cost.parallelism,
            Some(OUTPUT_LEN),
        )
        .expect("argon2 parameters are validated by the configuration");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (queue, jobs) = mpsc::channel::<Work>();
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 0..cores {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("shopd-argon2-{n}"))
                .spawn(move || hashing_thread(&jobs))
                .expect("a hashing thread starts");
        }
        let dummy = dummy_hash(&params);
        Self {
            params,
            queue,
            dummy: Arc::new(dummy),
        }
    }

    pub async fn hash(&self, password: Sensitive<String>) -> anyhow::Result<String> {
        let params = self.params.clone();
        self.on_hashing_thread(move |memory| hash_with(&params, memory, password.expose()))
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
        self.on_hashing_thread(move |memory| {
            let (matches, current) = verify_with(&params, memory, password.expose(), &hash);
            Verdict {
                matches: matches && known,
                needs_rehash: matches && known && !current,
            }
        })
        .await
    }

    async fn on_hashing_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let span = tracing::Span::current();
        self.queue
            .send(Box::new(move |memory| {
                // Whoever asked has gone: a hash nobody waits for would only delay the queue behind it.
                if !done.is_closed() {
                    let _ = done.send(span.in_scope(|| f(memory)));
                }
            }))
            .map_err(|_| anyhow::anyhow!("the hashing threads have stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("a hashing thread failed"))
    }
}

fn hashing_thread(jobs: &Mutex<Receiver<Work>>) {
    let mut memory = Memory::new();
    loop {
        let next = {
            // One thread at a time waits on the queue; the others are hashing or waiting for this lock.
            let jobs = jobs.lock().unwrap_or_else(PoisonError::into_inner);
            if memory.is_empty() {
                jobs.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                jobs.recv_timeout(KEEP_MEMORY)
            }
        };
        match next {
            Ok(work) => {
                let ran =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&mut memory)));
                if ran.is_err() {
                    tracing::error!("a password hash panicked");
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                // Derived from passwords: wiped before it is given back.
                memory.zeroize();
                memory = Memory::new();
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// `memory`, grown to the blocks of `params`.
fn blocks<'m>(memory: &'m mut Memory, params: &Params) -> &'m mut [Block] {
    let count = params.block_count();
    if memory.len() < count {
        memory.resize(count, Block::default());
    }
    &mut memory[..count]
}

/// A PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) of `password` with a fresh random salt.
fn hash_with(params: &Params, memory: &mut Memory, password: &str) -> anyhow::Result<String> {
    let salt = crate::config::secrets::random_bytes::<SALT_LEN>();
    let mut out = [0u8; OUTPUT_LEN];
    argon(params)
        .hash_password_into_with_memory(
            password.as_bytes(),
            &salt,
            &mut out,
            blocks(memory, params),
        )
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(phc(params, &salt, &out))
}

/// A stored hash no password matches: random bytes stand for the output, which a verification computes in
/// full before it compares, so it costs what a real hash of these parameters does, and making it costs no
/// hash at start-up (one took 12 to 31 ms there).
fn dummy_hash(params: &Params) -> String {
    let salt = crate::config::secrets::random_bytes::<SALT_LEN>();
    let out = crate::config::secrets::random_bytes::<OUTPUT_LEN>();
    phc(params, &salt, &out)
}

/// The PHC string of an argon2id (version 0x13) hash.
fn phc(params: &Params, salt: &[u8], out: &[u8]) -> String {
    format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out)
    )
}

/// Whether `password` matches the PHC string `stored`, and whether `stored` uses the current parameters. A
/// hash of the current parameters is computed in `memory`; any other (older parameters, another argon2
/// variant) by the argon2 crate's own verifier.
fn verify_with(params: &Params, memory: &mut Memory, password: &str, stored: &str) -> (bool, bool) {
    let Ok(phc) = PasswordHash::new(stored) else {
        return (false, false);
    };
    if !uses(&phc, params) {
        let matches = argon(params)
            .verify_password(password.as_bytes(), &phc)
            .is_ok();
        return (matches, false);
    }
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        return (false, true);
    };
    let mut out = vec![0u8; expected.len()];
    let computed = Params::new(
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        Some(expected.len()),
    )
    .ok()
    .map(|p| {
        argon(&p).hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            blocks(memory, &p),
        )
    });
    let matches = matches!(computed, Some(Ok(()))) && bool::from(out.ct_eq(expected.as_bytes()));
    (matches, true)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub matches: bool,
    pub needs_rehash: bool,
}

fn argon(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

/// argon2id, version 0x13, and the cost of `params`.
fn uses(hash: &PasswordHash, params: &Params) -> bool {
    hash.algorithm.as_str() == "argon2id"
        && hash.version.is_none_or(|v| v == 0x13)
        && Params::try_from(hash).is_ok_and(|p| {
            p.m_cost() == params.m_cost()
                && p.t_cost() == params.t_cost()
                && p.p_cost() == params.p_cost()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordHasher;
    use std::time::Duration;

    const CHEAP: PasswordHashing = PasswordHashing {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[tokio::test]
    async fn hashes_queue_behind_busy_threads_and_one_whose_caller_has_gone_is_skipped() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let cheap = Hasher::new(CHEAP);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // Every hashing thread busy until released.
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let busy: Vec<_> = (0..cores)
            .map(|_| {
                let released = released.clone();
                let hasher = cheap.clone();
                tokio::spawn(async move {
                    hasher
                        .on_hashing_thread(move |_| {
                            let _ = released.lock().unwrap().recv();
                        })
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ran = Arc::new(AtomicUsize::new(0));
        // Queued behind them: one caller gives up, one waits.
        let given_up = {
            let (hasher, ran) = (cheap.clone(), ran.clone());
            tokio::spawn(async move {
                hasher
                    .on_hashing_thread(move |_| ran.fetch_add(1, Ordering::SeqCst))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        given_up.abort();
        let _ = given_up.await;
        let waited = {
            let (hasher, ran) = (cheap.clone(), ran.clone());
            tokio::spawn(async move {
                hasher
                    .on_hashing_thread(move |_| ran.fetch_add(10, Ordering::SeqCst))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "nothing runs while every thread is busy"
        );
        for _ in 0..cores {
            release.send(()).unwrap();
        }
        for b in busy {
            b.await.unwrap().unwrap();
        }
        waited.await.unwrap().unwrap();
        assert_eq!(
            ran.load(Ordering::SeqCst),
            10,
            "only the waiting caller's work ran"
        );
    }

    #[tokio::test]
    async fn the_dummy_hash_has_the_current_cost_and_matches_no_password() {
        let cheap = Hasher::new(CHEAP);
        let dummy = cheap.dummy.as_ref().clone();
        let parsed = PasswordHash::new(&dummy).expect("a PHC string");
        assert!(uses(&parsed, &cheap.params), "{dummy}");
        assert_eq!(parsed.salt.map(|s| s.len()), Some(SALT_LEN));
        assert_eq!(parsed.hash.map(|h| h.len()), Some(OUTPUT_LEN));
        assert_ne!(dummy, *Hasher::new(CHEAP).dummy, "random for each hasher");
        // The current cost, salt and output: verified by computing the hash in full, as a known account is.
        let params = cheap.params.clone();
        let verdict = cheap
            .on_hashing_thread(move |memory| verify_with(&params, memory, "", &dummy))
            .await
            .unwrap();
        assert_eq!(verdict, (false, true));
    }

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

    #[tokio::test]
    async fn hashes_are_standard_phc_strings_both_ways() {
        let cheap = Hasher::new(CHEAP);
        let params = Params::new(64, 1, 1, Some(32)).unwrap();
        // ours verifies with the argon2 crate's own verifier
        let ours = cheap
            .hash(Sensitive::new("tr0ub4dor".into()))
            .await
            .unwrap();
        assert!(
            argon(&params)
                .verify_password(b"tr0ub4dor", ours.as_str())
                .is_ok()
        );
        assert!(
            argon(&params)
                .verify_password(b"tr0ub4dor!", ours.as_str())
                .is_err()
        );
        // and the crate's (other salts, another output length) verifies with ours, on reused memory
        for output_len in [32, 16, 64] {
            let p = Params::new(64, 1, 1, Some(output_len)).unwrap();
            let theirs = argon(&p).hash_password(b"tr0ub4dor").unwrap().to_string();
            for (password, matches) in [("tr0ub4dor", true), ("tr0ub4dor ", false)] {
                let v = cheap
                    .verify(Sensitive::new(password.into()), Some(theirs.clone()))
                    .await
                    .unwrap();
                assert_eq!(v.matches, matches, "{output_len} {password:?}");
                assert!(!v.needs_rehash);
            }
        }
        // argon2i with the same cost is verified, and upgraded
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, params.clone())
            .hash_password(b"tr0ub4dor")
            .unwrap()
            .to_string();
        let v = cheap
            .verify(Sensitive::new("tr0ub4dor".into()), Some(argon2i))
            .await
            .unwrap();
        assert_eq!(
            v,
            Verdict {
                matches: true,
                needs_rehash: true
            }
        );
        // garbage never matches
        for stored in [
            "",
            "$argon2id$",
            "plain",
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$",
        ] {
            let v = cheap
                .verify(Sensitive::new("x".into()), Some(stored.into()))
                .await
                .unwrap();
            assert!(!v.matches, "{stored}");
        }
    }

    #[tokio::test]
    async fn many_hashes_at_once_all_complete() {
        let cheap = Hasher::new(CHEAP);
        let hashes = futures_util::future::join_all(
            (0..32).map(|i| cheap.hash(Sensitive::new(format!("password {i}")))),
        )
        .await;
        for (i, h) in hashes.into_iter().enumerate() {
            let v = cheap
                .verify(Sensitive::new(format!("password {i}")), Some(h.unwrap()))
                .await
                .unwrap();
            assert!(v.matches);
        }
    }
}
