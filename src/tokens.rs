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
use crate::store::{SigningKeyRecord, Store};

/// Lifetime of a `user` token (CollabKit: 90 days).
pub const USER_TOKEN_TTL: Duration = Duration::days(90);

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
        let exp = now + USER_TOKEN_TTL;
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
            typ: "user".into(),
        };
        let token = self.sign(&claims)?;
        Ok((token, exp))
    }

    /// Verifies signature and claims of a `user` token.
    pub fn verify_user_token(&self, token: &str) -> Result<UserClaims, TokenError> {
        let c: UserClaims = self.verify(token)?;
        if c.typ != "user" || c.sub != c.user_id.to_string() {
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
        if c.typ != "guest" || c.sub != c.link_id.to_string() || c.jti != c.link_id {
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
        let key = set.verify.get(&kid).ok_or(TokenError::Invalid)?;
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.validate_nbf = true;
        v.leeway = 30;
        v.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<T>(token, key, &v)
            .map(|d| d.claims)
            .map_err(|_| TokenError::Invalid)
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
