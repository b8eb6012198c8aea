//! Secrets the server hands out (API keys, the operator key) and the
//! passwords it keeps: random generation, hashing, constant-time comparison.
//!
//! API keys and the operator key are high-entropy random strings, so a
//! SHA-256 hash is the right thing to store; passwords are chosen by people
//! and get argon2id, computed on the blocking pool behind a semaphore so a
//! burst of logins cannot starve the async threads.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordVerifier, Version};
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
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
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

impl PasswordHasher {
    pub fn new(concurrency: usize) -> Self {
        let n = if concurrency == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            concurrency
        };
        Self {
            permits: Arc::new(Semaphore::new(n)),
            dummy: Arc::default(),
        }
    }

    fn argon2() -> Argon2<'static> {
        let params = Params::new(19_456, 2, 1, None).expect("valid argon2 parameters");
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// Hashes `password` into a PHC string.
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            argon2::PasswordHasher::<PasswordHash>::hash_password(
                &Self::argon2(),
                password.as_bytes(),
            )
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
        })
        .await?
    }

    /// Checks `password` against a PHC string.
    pub async fn verify(&self, password: String, phc: String) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            Ok(
                PasswordVerifier::<str>::verify_password(
                    &Self::argon2(),
                    password.as_bytes(),
                    &phc,
                )
                .is_ok(),
            )
        })
        .await?
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
}
