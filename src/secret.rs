//! Secrets the server hands out (API keys, the operator key) and the
//! passwords it keeps: random generation, hashing, constant-time comparison.
//!
//! API keys and the operator key are high-entropy random strings, so a
//! SHA-256 hash is the right thing to store; passwords are chosen by people
//! and get argon2id, computed on the blocking pool behind a semaphore so a
//! burst of logins cannot starve the async threads.

use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, PasswordVerifier, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use uuid::Uuid;

/// `n` random bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).expect("the system random generator failed");
    b
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

pub fn equal_hashes(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// An API key: `rk_<key id>_<secret>`. The id finds the row; the secret's
/// hash is compared in constant time.
pub struct ApiKeySecret {
    pub id: Uuid,
    pub full: String,
}

impl ApiKeySecret {
    pub fn generate() -> (Self, Vec<u8>) {
        let id = Uuid::now_v7();
        let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
        let hash = sha256(secret.as_bytes());
        (
            Self {
                id,
                full: format!("rk_{}_{}", id.simple(), secret),
            },
            hash,
        )
    }

    /// Splits a presented key into its id and the hash of its secret.
    pub fn parse(presented: &str) -> Option<(Uuid, Vec<u8>)> {
        let rest = presented.strip_prefix("rk_")?;
        let (id, secret) = rest.split_at_checked(32)?;
        let secret = secret.strip_prefix('_')?;
        if secret.len() != 43 {
            return None;
        }
        let id = Uuid::try_parse(id).ok()?;
        Some((id, sha256(secret.as_bytes())))
    }
}

/// A generated operator key.
pub fn generate_operator_key() -> String {
    format!("rop_{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// A random password for `setRandomPassword`: 20 characters.
pub fn random_password() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<15>())
}

/// A refresh token: `rt_<43 characters>`, 256 random bits. Only its
/// SHA-256 is stored.
pub fn generate_refresh_token() -> (String, Vec<u8>) {
    let token = format!("rt_{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()));
    let hash = sha256(token.as_bytes());
    (token, hash)
}

/// argon2id (m=19456 KiB, t=2, p=1) on the blocking pool, bounded.
///
/// Each hash fills 19 MiB of argon2 memory. Allocating it per hash made
/// glibc keep that much in each of its per-thread arenas once its mmap
/// threshold had adapted (900 MiB of RSS after a login burst, measured
/// with roster-bench), so each permit's worth of memory is allocated once
/// and reused: the hasher holds `concurrency` × 19 MiB at most, for good.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// Argon2 memory not in use right now; at most one per permit.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
    /// A real hash of nothing anyone knows, verified when there is no user
    /// (or no password) so that the answer takes as long as a real check.
    dummy: Arc<tokio::sync::OnceCell<String>>,
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// It matched an imported (bcrypt) hash, which should be replaced.
    YesRehash,
}

/// The argon2 parameters of every hash Roster makes.
fn params() -> Params {
    Params::new(19_456, 2, 1, None).expect("valid argon2 parameters")
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
}

/// A PHC string for `password`, computed in `memory`.
fn hash_in(memory: &mut [Block], password: &[u8]) -> anyhow::Result<String> {
    let salt = Salt::new(&random_bytes::<16>()).map_err(|e| anyhow::anyhow!("argon2 salt: {e}"))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2()
        .hash_password_into_with_memory(password, salt.as_ref(), &mut out, memory)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params()).map_err(|e| anyhow::anyhow!("argon2: {e}"))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("argon2: {e}"))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `phc`. Hashes made with
/// Roster's parameters are recomputed in `memory`; any other argon2 hash
/// (imported, or older parameters) the library's own way.
fn verify_in(memory: &mut [Block], password: &[u8], phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected), true) = (&parsed.salt, &parsed.hash, made_here(&parsed))
    else {
        return PasswordVerifier::<str>::verify_password(&argon2(), password, phc).is_ok();
    };
    let mut out = vec![0u8; expected.len()];
    argon2()
        .hash_password_into_with_memory(password, salt.as_ref(), &mut out, memory)
        .is_ok()
        && Output::new(&out).is_ok_and(|got| got == *expected)
}

/// Whether `phc` has Roster's algorithm and costs, so that it can be
/// recomputed in pooled memory. (Its output length may differ: the
/// parameters parsed from a hash carry it, Roster's own do not.)
fn made_here(phc: &PasswordHash) -> bool {
    let ours = params();
    phc.algorithm == Algorithm::Argon2id.ident()
        && phc.version == Some(Version::V0x13.into())
        && Params::try_from(phc).is_ok_and(|p| {
            (p.m_cost(), p.t_cost(), p.p_cost()) == (ours.m_cost(), ours.t_cost(), ours.p_cost())
        })
}

impl PasswordHasher {
    pub fn new(concurrency: usize) -> Self {
        let n = if concurrency == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            concurrency
        };
        Self {
            permits: Arc::new(Semaphore::new(n)),
            memory: Arc::default(),
            dummy: Arc::default(),
        }
    }

    /// Runs `f` with a permit and argon2 memory, on the blocking pool.
    async fn with_memory<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await?;
        let mut memory = self
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_else(|| vec![Block::default(); params().block_count()]);
        let span = tracing::Span::current();
        let (out, memory) = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let out = f(&mut memory);
            (out, memory)
        })
        .await?;
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(memory);
        Ok(out)
    }

    /// Hashes `password` into a PHC string.
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        self.with_memory(move |m| hash_in(m, password.as_bytes()))
            .await?
    }

    /// Checks `password` against a PHC string.
    pub async fn verify(&self, password: String, phc: String) -> anyhow::Result<bool> {
        self.with_memory(move |m| verify_in(m, password.as_bytes(), &phc))
            .await
    }
}

impl PasswordHasher {
    /// Checks `password` against an argon2 PHC string or an imported bcrypt
    /// hash (`$2a$`, `$2b$`, `$2y$`).
    pub async fn verify_any(&self, password: String, stored: String) -> anyhow::Result<Verified> {
        if !stored.starts_with("$2") {
            return Ok(if self.verify(password, stored).await? {
                Verified::Yes
            } else {
                Verified::No
            });
        }
        let _permit = self.permits.acquire().await?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            // bcrypt reads at most 72 bytes: longer passwords are refused
            // rather than silently truncated.
            Ok(match bcrypt::verify(password.as_bytes(), &stored) {
                Ok(true) if password.len() <= 72 => Verified::YesRehash,
                _ => Verified::No,
            })
        })
        .await?
    }

    /// Spends the time of one real verification, for a login that has no
    /// user or no password to check against.
    pub async fn verify_dummy(&self, password: String) -> anyhow::Result<()> {
        let phc = self
            .dummy
            .get_or_try_init(|| self.hash(random_password()))
            .await?
            .clone();
        self.verify(password, phc).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_parse_back_to_their_id_and_hash() {
        let (key, hash) = ApiKeySecret::generate();
        let (id, presented) = ApiKeySecret::parse(&key.full).unwrap();
        assert_eq!(id, key.id);
        assert!(equal_hashes(&presented, &hash));
        assert!(ApiKeySecret::parse("rk_nope").is_none());
        let mut tampered = key.full.clone();
        tampered.pop();
        tampered.push('x');
        let (_, h2) = ApiKeySecret::parse(&tampered).unwrap();
        assert!(!equal_hashes(&h2, &hash) || key.full.ends_with('x'));
    }

    #[tokio::test]
    async fn passwords_hash_and_verify() {
        let h = PasswordHasher::new(1);
        let phc = h.hash("correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify("correct horse".into(), phc.clone()).await.unwrap());
        assert!(!h.verify("wrong horse!".into(), phc).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_made_by_the_library_itself_still_verify() {
        // The pooled path must agree with argon2's own, both for our
        // parameters and for others (an imported or older hash).
        let h = PasswordHasher::new(2);
        for params in [params(), Params::new(8_192, 3, 1, None).unwrap()] {
            let lib = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
            let phc = argon2::PasswordHasher::<PasswordHash>::hash_password(&lib, b"pa55word")
                .unwrap()
                .to_string();
            assert!(h.verify("pa55word".into(), phc.clone()).await.unwrap());
            assert!(!h.verify("pa55wore".into(), phc).await.unwrap());
        }
        // And the library verifies what the pool made, which the pool
        // itself recomputes in its own memory, not the library's way.
        let ours = h.hash("pa55word".into()).await.unwrap();
        assert!(made_here(&PasswordHash::new(&ours).unwrap()));
        let lib_default = argon2::PasswordHasher::<PasswordHash>::hash_password(
            &Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(8_192, 3, 1, None).unwrap(),
            ),
            b"x",
        )
        .unwrap();
        assert!(!made_here(&lib_default));
        assert!(PasswordVerifier::<str>::verify_password(&argon2(), b"pa55word", &ours).is_ok());
        assert!(
            !h.verify("x".into(), "not a phc string".into())
                .await
                .unwrap()
        );
    }
}
