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

use crate::store::{SigningKeyRecord, Store};

/// Lifetime of a `user` token (CollabKit: 90 days).
pub const USER_TOKEN_TTL: Duration = Duration::days(90);
/// Lifetime of an `access` token, handed out by login and refresh.
pub const ACCESS_TOKEN_TTL: Duration = Duration::minutes(15);
/// Lifetime of a refresh token (opaque, stored hashed, rotated on use).
pub const REFRESH_TOKEN_TTL: Duration = Duration::days(30);

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
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed, forged, expired or of another kind")]
    Invalid,
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
    /// Loads the keys from storage, generating the first one if there is none.
    pub async fn load(store: &dyn Store, issuer: String, audience: String) -> anyhow::Result<Self> {
        let mut records = store.signing_keys().await?;
        if records.iter().all(|r| r.retired_at.is_some()) {
            store
                .insert_signing_key(&generate_key(crate::domain::time::now())?)
                .await?;
            records = store.signing_keys().await?;
        }
        let set = build_set(&records)?;
        Ok(Self {
            set: RwLock::new(Arc::new(set)),
            issuer,
            audience,
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
        self.sign(
            "user",
            USER_TOKEN_TTL,
            account_id,
            user_id,
            room_id,
            jti,
            now,
        )
    }

    /// Signs a new `access` token (login, refresh).
    pub fn issue_access_token(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        jti: Uuid,
        now: OffsetDateTime,
    ) -> anyhow::Result<(String, OffsetDateTime)> {
        self.sign(
            "access",
            ACCESS_TOKEN_TTL,
            account_id,
            user_id,
            None,
            jti,
            now,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn sign(
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
        let set = self.current();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(set.active.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &set.active.encoding).context("signing")?;
        Ok((token, exp))
    }

    /// Verifies signature and claims of a `user` token.
    pub fn verify_user_token(&self, token: &str) -> Result<UserClaims, TokenError> {
        self.verify(token, &["user"])
    }

    /// Verifies a token a user may present on account routes and at the
    /// realtime upgrade: a `user` or an `access` token.
    pub fn verify_account_token(&self, token: &str) -> Result<UserClaims, TokenError> {
        self.verify(token, &["user", "access"])
    }

    fn verify(&self, token: &str, kinds: &[&str]) -> Result<UserClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let set = self.current();
        let key = set.verify.get(&kid).ok_or(TokenError::Invalid)?;
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.validate_nbf = true;
        v.leeway = 30;
        v.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<UserClaims>(token, key, &v).map_err(|_| TokenError::Invalid)?;
        let c = data.claims;
        if !kinds.contains(&c.typ.as_str()) || c.sub != c.user_id.to_string() {
            return Err(TokenError::Invalid);
        }
        Ok(c)
    }
}

fn build_set(records: &[SigningKeyRecord]) -> anyhow::Result<KeySet> {
    let newest = records
        .iter()
        .filter(|r| r.retired_at.is_none())
        .max_by_key(|r| (r.created_at, r.kid.clone()))
        .context("no active signing key")?;
    let mut verify = HashMap::new();
    let mut keys = Vec::new();
    for r in records {
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
