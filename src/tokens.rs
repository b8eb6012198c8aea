//! Signed tokens: the Ed25519 signing keys, the JWKS that publishes them, and
//! issuing and verifying the JWTs Roster hands out.
//!
//! Verification is strict: one algorithm (EdDSA), a known `kid`, `exp`,
//! `nbf`, `iat`, `iss`, `aud` and `sub` required and checked, and a `typ`
//! claim per kind of token. A signature only proves the token was issued;
//! whether it is still good (revoked, user deactivated) is storage's answer.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::domain::access::AccessLink;
use crate::domain::event::{ActorRef, Change};
use crate::store::{SigningKeyRecord, Store};

/// Lifetime of a `user` token (CollabKit: 90 days).
pub const USER_TOKEN_TTL: Duration = Duration::days(90);
/// Lifetime of an `access` token, handed out by login and refresh.
pub const ACCESS_TOKEN_TTL: Duration = Duration::minutes(15);
/// Lifetime of a refresh token (opaque, stored hashed, rotated on use).
pub const REFRESH_TOKEN_TTL: Duration = Duration::days(30);
/// How long a retired signing key keeps verifying and being published: the
/// longest lifetime of a token it may have signed.
pub const RETIRED_KEY_KEPT: Duration = USER_TOKEN_TTL;

/// Claims of a `user` token, the realtime connection's credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    #[serde(rename = "accountId")]
    pub account_id: Uuid,
    #[serde(rename = "userId")]
    pub user_id: Uuid,
    #[serde(rename = "roomId", default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<Uuid>,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: Uuid,
    pub typ: String,
}

/// Claims of a `guest` token: a pass to one room from an access link.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    #[serde(rename = "accountId")]
    pub account_id: Uuid,
    #[serde(rename = "roomId")]
    pub room_id: Uuid,
    #[serde(rename = "linkId")]
    pub link_id: Uuid,
    pub username: String,
    pub role: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: Uuid,
    pub typ: String,
}

struct ActiveKey {
    kid: String,
    encoding: EncodingKey,
}

struct KeySet {
    active: ActiveKey,
    verify: HashMap<String, DecodingKey>,
    jwks: serde_json::Value,
}

/// The server's signing keys. The newest unretired key signs; every key not
/// yet past its retirement window verifies and is published.
pub struct Keys {
    set: RwLock<Arc<KeySet>>,
    issuer: String,
    audience: String,
    cipher: KeyCipher,
}

/// Protects private signing keys at rest: AES-256-GCM under a key derived
/// (SHA-256) from the configured `signing_key_master_key`, with the `kid` as
/// associated data. Without a master key they are stored as they are, and
/// the database must be guarded like the key itself (see docs/sessions.md).
#[derive(Clone)]
pub struct KeyCipher {
    key: Option<Vec<u8>>,
}

const SEALED: &[u8] = b"roster-sealed-v1:";

impl KeyCipher {
    pub fn new(master: Option<&str>) -> Self {
        Self {
            key: master.map(|m| crate::secret::sha256(m.as_bytes())),
        }
    }

    fn aead(key: &[u8]) -> anyhow::Result<aws_lc_rs::aead::LessSafeKey> {
        let unbound = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, key)
            .map_err(|_| anyhow::anyhow!("bad master key"))?;
        Ok(aws_lc_rs::aead::LessSafeKey::new(unbound))
    }

    /// The record with its private key encrypted (as is without a master key).
    pub fn seal(&self, r: &SigningKeyRecord) -> anyhow::Result<SigningKeyRecord> {
        let Some(key) = &self.key else {
            return Ok(r.clone());
        };
        let nonce = crate::secret::random_bytes::<12>();
        let mut data = r.private_der.clone();
        Self::aead(key)?
            .seal_in_place_append_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::from(r.kid.as_bytes()),
                &mut data,
            )
            .map_err(|_| anyhow::anyhow!("sealing a signing key failed"))?;
        let mut out = SEALED.to_vec();
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        Ok(SigningKeyRecord {
            private_der: out,
            ..r.clone()
        })
    }

    /// The record with its private key in the clear.
    pub fn open(&self, r: SigningKeyRecord) -> anyhow::Result<SigningKeyRecord> {
        let Some(sealed) = r.private_der.strip_prefix(SEALED) else {
            return Ok(r);
        };
        let key = self.key.as_ref().context(
            "the stored signing keys are encrypted: set signing_key_master_key (ROSTER_SIGNING_KEY_MASTER_KEY)",
        )?;
        let (nonce, data) = sealed
            .split_at_checked(12)
            .context("truncated sealed key")?;
        let nonce: [u8; 12] = nonce.try_into().context("bad nonce")?;
        let mut data = data.to_vec();
        let plain = Self::aead(key)?
            .open_in_place(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::from(r.kid.as_bytes()),
                &mut data,
            )
            .map_err(|_| {
                anyhow::anyhow!("signing key {} does not open with this master key", r.kid)
            })?
            .to_vec();
        Ok(SigningKeyRecord {
            private_der: plain,
            ..r
        })
    }

    fn open_all(&self, records: Vec<SigningKeyRecord>) -> anyhow::Result<Vec<SigningKeyRecord>> {
        records.into_iter().map(|r| self.open(r)).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed, forged, expired or of another kind")]
    Invalid,
    /// Signed under a `kid` this node does not hold (yet): one rotated in
    /// elsewhere, or an invented one. Answered as `Invalid` is.
    #[error("token is malformed, forged, expired or of another kind")]
    UnknownKey,
}

pub fn generate_key(now: OffsetDateTime) -> anyhow::Result<SigningKeyRecord> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8v1(&rng)
        .map_err(|_| anyhow::anyhow!("key generation failed"))?;
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
        .map_err(|_| anyhow::anyhow!("generated key rejected"))?;
    let public_x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    Ok(SigningKeyRecord {
        kid: Uuid::now_v7().simple().to_string(),
        private_der: doc.as_ref().to_vec(),
        public_x,
        created_at: now,
        retired_at: None,
    })
}

impl Keys {
    /// Loads the keys from storage, generating the first one if there is
    /// none; private keys stored as they are (no master key).
    pub async fn load(store: &dyn Store, issuer: String, audience: String) -> anyhow::Result<Self> {
        Self::load_sealed(store, issuer, audience, KeyCipher::new(None)).await
    }

    /// Loads the keys, opening (and sealing new) private keys with `cipher`.
    pub async fn load_sealed(
        store: &dyn Store,
        issuer: String,
        audience: String,
        cipher: KeyCipher,
    ) -> anyhow::Result<Self> {
        let mut records = store.signing_keys().await?;
        if records.iter().all(|r| r.retired_at.is_some()) {
            let key = generate_key(crate::domain::time::now())?;
            let change = Change::system(key.created_at);
            // The database keeps one live key (a unique index): a node that
            // loses the race to create the first one takes the winner's.
            match store.insert_signing_key(&cipher.seal(&key)?, &change).await {
                Ok(()) | Err(crate::store::StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            records = store.signing_keys().await?;
        }
        let set = build_set(&cipher.open_all(records)?, crate::domain::time::now())?;
        Ok(Self {
            set: RwLock::new(Arc::new(set)),
            issuer,
            audience,
            cipher,
        })
    }

    fn current(&self) -> Arc<KeySet> {
        self.set
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The RFC 7517 JWK Set of every verifying key.
    pub fn jwks(&self) -> serde_json::Value {
        self.current().jwks.clone()
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs a new `user` token.
    pub fn issue_user_token(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        room_id: Option<Uuid>,
        jti: Uuid,
        now: OffsetDateTime,
    ) -> anyhow::Result<(String, OffsetDateTime)> {
        self.issue(
            "user",
            USER_TOKEN_TTL,
            account_id,
            user_id,
            room_id,
            jti,
            now,
        )
    }

    /// Signs a new `access` token (login, refresh) that lives `ttl`
    /// ([`ACCESS_TOKEN_TTL`], or a compatibility login's longer life).
    pub fn issue_access_token(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        jti: Uuid,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> anyhow::Result<(String, OffsetDateTime)> {
        self.issue("access", ttl, account_id, user_id, None, jti, now)
    }

    #[allow(clippy::too_many_arguments)]
    fn issue(
        &self,
        typ: &str,
        ttl: Duration,
        account_id: Uuid,
        user_id: Uuid,
        room_id: Option<Uuid>,
        jti: Uuid,
        now: OffsetDateTime,
    ) -> anyhow::Result<(String, OffsetDateTime)> {
        let exp = now + ttl;
        let claims = UserClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id.to_string(),
            account_id,
            user_id,
            room_id,
            iat: now.unix_timestamp(),
            nbf: now.unix_timestamp(),
            exp: exp.unix_timestamp(),
            jti,
            typ: typ.into(),
        };
        let token = self.sign(&claims)?;
        Ok((token, exp))
    }

    /// Verifies signature and claims of a `user` token.
    pub fn verify_user_token(&self, token: &str) -> Result<UserClaims, TokenError> {
        self.verify_user_kinds(token, &["user"])
    }

    /// Verifies a token a user may present on account routes and at the
    /// realtime upgrade: a `user` or an `access` token.
    pub fn verify_account_token(&self, token: &str) -> Result<UserClaims, TokenError> {
        self.verify_user_kinds(token, &["user", "access"])
    }

    fn verify_user_kinds(&self, token: &str, kinds: &[&str]) -> Result<UserClaims, TokenError> {
        let c: UserClaims = self.verify(token)?;
        if !kinds.contains(&c.typ.as_str())
            || c.sub != c.user_id.to_string()
            || issued_in_the_future(c.iat)
        {
            return Err(TokenError::Invalid);
        }
        Ok(c)
    }

    /// Signs the `guest` token of an access link; it lives as long as the link.
    pub fn issue_guest_token(
        &self,
        account_id: Uuid,
        link: &AccessLink,
        now: OffsetDateTime,
    ) -> anyhow::Result<String> {
        let claims = GuestClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: link.id.to_string(),
            account_id,
            room_id: link.room_id,
            link_id: link.id,
            username: link.username.clone(),
            role: link.role.as_str().to_owned(),
            iat: now.unix_timestamp(),
            nbf: now.unix_timestamp(),
            exp: link.expires_at.unix_timestamp(),
            jti: link.id,
            typ: "guest".into(),
        };
        self.sign(&claims)
    }

    pub fn verify_guest_token(&self, token: &str) -> Result<GuestClaims, TokenError> {
        let c: GuestClaims = self.verify(token)?;
        if c.typ != "guest"
            || c.sub != c.link_id.to_string()
            || c.jti != c.link_id
            || issued_in_the_future(c.iat)
        {
            return Err(TokenError::Invalid);
        }
        Ok(c)
    }

    fn sign<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        let set = self.current();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(set.active.kid.clone());
        jsonwebtoken::encode(&header, claims, &set.active.encoding).context("signing")
    }

    /// Signature and the registered claims; the caller checks `typ`.
    fn verify<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let set = self.current();
        let key = set.verify.get(&kid).ok_or(TokenError::UnknownKey)?;
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.validate_nbf = true;
        v.leeway = LEEWAY_SECS;
        v.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<T>(token, key, &v)
            .map(|d| d.claims)
            .map_err(|_| TokenError::Invalid)
    }

    /// The `kid` new tokens are signed under.
    pub fn active_kid(&self) -> String {
        self.current().active.kid.clone()
    }

    /// Re-reads the keys from storage (after a rotation, here or on
    /// another node).
    pub async fn reload(&self, store: &dyn Store) -> anyhow::Result<()> {
        let records = self.cipher.open_all(store.signing_keys().await?)?;
        let set = build_set(&records, crate::domain::time::now())?;
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        Ok(())
    }

    /// Retires the signing key(s) in use and makes a new one the signer;
    /// the old ones keep verifying for [`RETIRED_KEY_KEPT`]. Returns the new kid.
    pub async fn rotate(
        &self,
        store: &dyn Store,
        by: ActorRef,
        request_id: Option<String>,
    ) -> anyhow::Result<String> {
        let now = crate::domain::time::now();
        let key = generate_key(now)?;
        store
            .rotate_signing_key(&self.cipher.seal(&key)?, &Change::new(now, by, request_id))
            .await?;
        self.reload(store).await?;
        Ok(key.kid)
    }
}

/// Clock skew allowed between the servers that sign and verify.
const LEEWAY_SECS: u64 = 30;

/// A token that says it was issued later than now (beyond the leeway) was
/// not issued by a server with a sane clock: refused, like a bad `nbf`.
fn issued_in_the_future(iat: i64) -> bool {
    iat > crate::domain::time::now().unix_timestamp() + LEEWAY_SECS as i64
}

fn build_set(records: &[SigningKeyRecord], now: OffsetDateTime) -> anyhow::Result<KeySet> {
    let newest = records
        .iter()
        .filter(|r| r.retired_at.is_none())
        .max_by_key(|r| (r.created_at, r.kid.clone()))
        .context("no active signing key")?;
    let mut verify = HashMap::new();
    let mut keys = Vec::new();
    // A retired key verifies until every token it signed has expired.
    for r in records
        .iter()
        .filter(|r| r.retired_at.is_none_or(|t| t + RETIRED_KEY_KEPT > now))
    {
        verify.insert(r.kid.clone(), DecodingKey::from_ed_components(&r.public_x)?);
        keys.push(serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": r.public_x,
            "kid": r.kid,
            "alg": "EdDSA",
            "use": "sig",
        }));
    }
    Ok(KeySet {
        active: ActiveKey {
            kid: newest.kid.clone(),
            encoding: EncodingKey::from_ed_der(&newest.private_der),
        },
        verify,
        jwks: serde_json::json!({ "keys": keys }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_their_master_key() {
        let key = generate_key(crate::domain::time::now()).unwrap();
        let cipher = KeyCipher::new(Some("master key number one, long enough"));
        let sealed = cipher.seal(&key).unwrap();
        assert!(sealed.private_der.starts_with(SEALED));
        assert_ne!(sealed.private_der, key.private_der);
        assert_eq!(
            cipher.open(sealed.clone()).unwrap().private_der,
            key.private_der
        );
        let other = KeyCipher::new(Some("master key number two, long enough"));
        assert!(other.open(sealed.clone()).is_err());
        assert!(KeyCipher::new(None).open(sealed.clone()).is_err());
        // Bound to its kid: moved under another kid, it does not open.
        let moved = SigningKeyRecord {
            kid: "another".into(),
            ..sealed
        };
        assert!(cipher.open(moved).is_err());
        // Keys stored before a master key was configured still load.
        assert_eq!(
            cipher.open(key.clone()).unwrap().private_der,
            key.private_der
        );
    }

    #[test]
    fn a_retired_key_is_published_until_its_last_token_expires() {
        let now = crate::domain::time::now();
        let active = generate_key(now).unwrap();
        let mut recent = generate_key(now - Duration::days(100)).unwrap();
        recent.retired_at = Some(now - RETIRED_KEY_KEPT + Duration::minutes(1));
        let mut old = generate_key(now - Duration::days(200)).unwrap();
        old.retired_at = Some(now - RETIRED_KEY_KEPT - Duration::minutes(1));
        let set = build_set(&[old.clone(), recent.clone(), active.clone()], now).unwrap();
        assert_eq!(set.active.kid, active.kid);
        assert!(set.verify.contains_key(&recent.kid));
        assert!(!set.verify.contains_key(&old.kid));
        let kids: Vec<&str> = set.jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids.len(), 2);
        assert!(!kids.contains(&old.kid.as_str()));
    }
}
