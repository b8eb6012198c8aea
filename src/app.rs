//! The application: the backends chosen from configuration and the shared
//! services every request uses. `App::open` is the one place that looks at
//! URLs to pick a backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::cache::Cache;
use crate::config::Config;
use crate::domain::account::ApiKeyAuth;
use crate::domain::settings::Settings;
use crate::realtime::bus::{Bus, InProcessBus};
use crate::realtime::hub::{Hub, Limits};
use crate::realtime::redis::{Redis, RedisBus};
use crate::realtime::registry::{LocalRegistry, RedisRegistry, Registry};
use crate::secret::{self, PasswordHasher};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use crate::tokens::Keys;

const OPERATOR_KEY_STATE: &str = "operator_key_sha256";

#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn Store>,
    pub keys: Arc<Keys>,
    pub config: Arc<Config>,
    pub passwords: PasswordHasher,
    pub bus: Arc<dyn Bus>,
    pub hub: Arc<Hub>,
    /// Set when several nodes share Redis.
    pub redis: Option<Redis>,
    /// This process's id among the nodes.
    pub node: Uuid,
    /// Cancelled on shutdown: every realtime connection closes with 1001.
    pub realtime_shutdown: CancellationToken,
    /// The realtime connection tasks, awaited on shutdown.
    pub realtime_tasks: TaskTracker,
    /// Login/refresh/sign-up buckets (brute-force defence).
    pub throttle: Arc<crate::service::throttle::Throttle>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<Vec<crate::http::client_ip::Cidr>>,
    /// Outgoing HTTP (the captcha provider): short timeouts, no redirects.
    pub http: reqwest::Client,
    /// Wakes the outbox worker when mail is queued.
    pub outbox: Arc<tokio::sync::Notify>,
    pub mailer: Arc<crate::mail::Mailer>,
    /// API keys by id and settings by account, on a single node only
    /// (see [`crate::cache`]).
    api_keys: Arc<Cache<Uuid, ApiKeyAuth>>,
    /// When this node last re-read the signing keys for a token naming an
    /// unknown one (see [`App::verify_account_token`]).
    signer_lookup: Arc<Mutex<Option<Instant>>>,
    settings: Arc<Cache<Uuid, Arc<Settings>>>,
    operator_key_hash: Arc<Vec<u8>>,
    key_touches: Arc<Mutex<HashMap<Uuid, Instant>>>,
}

/// Opens the configured database (running migrations).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = config.database_url.as_str();
    if url.starts_with("sqlite:") {
        let full = config.sqlite_synchronous == "full";
        Ok(Arc::new(SqliteStore::open(url, full).await.with_context(
            || format!("opening {}", crate::config::redact_url(url)),
        )?))
    } else {
        Ok(Arc::new(
            crate::store::postgres::PostgresStore::open(url)
                .await
                .with_context(|| format!("opening {}", crate::config::redact_url(url)))?,
        ))
    }
}

impl App {
    /// Opens storage, loads signing keys and settles the operator key. If the
    /// operator key had to be generated, it is returned (to print once).
    pub async fn open(config: Config) -> anyhow::Result<(Self, Option<String>)> {
        let store = open_store(&config).await?;
        let node = Uuid::now_v7();
        let (bus, registry, redis): (Arc<dyn Bus>, Arc<dyn Registry>, Option<Redis>) =
            match &config.redis_url {
                None => (
                    Arc::new(InProcessBus::new()),
                    Arc::new(LocalRegistry::default()),
                    None,
                ),
                Some(url) => {
                    let redis = Redis::open(
                        url,
                        &config.redis_prefix,
                        config.redis_tls_ca_file.as_deref(),
                    )
                    .with_context(|| format!("opening {}", crate::config::redact_url(url)))?;
                    (
                        RedisBus::start(redis.clone(), node),
                        RedisRegistry::new(redis.clone(), node),
                        Some(redis),
                    )
                }
            };
        // Nobody stays online from a previous run — unless other nodes are
        // running, whose users are theirs (a dead node's are reaped).
        if !others_alive(redis.as_ref(), node).await {
            let reset = store.reset_presence(crate::domain::time::now()).await?;
            if reset > 0 {
                tracing::info!(
                    users = reset,
                    "presence reset: nobody stays online from a previous run"
                );
            }
        }
        let hub = Hub::start(
            bus.clone(),
            store.clone(),
            registry,
            Limits {
                connections_per_user: config.realtime_connections_per_user,
                connections_per_ip: config.realtime_connections_per_ip,
                rooms_per_connection: config.realtime_rooms_per_connection,
                grace: std::time::Duration::from_millis(config.presence_grace_ms),
                heartbeat: std::time::Duration::from_millis(config.heartbeat_ms),
            },
        );
        fill_username_skeletons(store.as_ref()).await?;
        if config.signing_key_master_key.is_none() {
            tracing::warn!(
                "signing keys are stored unsealed: whoever reads the database can sign tokens; \
                 set signing_key_master_key (ROSTER_SIGNING_KEY_MASTER_KEY) to seal them"
            );
        }
        let keys = Keys::load_sealed(
            store.as_ref(),
            config.token_issuer.clone(),
            config.token_audience.clone(),
            crate::tokens::KeyCipher::new(config.signing_key_master_key.as_deref()),
        )
        .await?;
        let (operator_key_hash, generated) = match &config.operator_key {
            Some(k) => (secret::sha256(k.as_bytes()), None),
            None => operator_key_from_store(store.as_ref()).await?,
        };
        let keys = Arc::new(keys);
        spawn_key_reloads(store.clone(), Arc::downgrade(&keys));
        let trusted_proxies = config
            .trusted_proxies
            .iter()
            .filter_map(|p| crate::http::client_ip::Cidr::parse(p))
            .collect();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .connect_timeout(std::time::Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let mailer = Arc::new(crate::mail::Mailer::from_config(&config)?);
        let outbox = Arc::new(tokio::sync::Notify::new());
        crate::mail::spawn_outbox(store.clone(), mailer.clone(), outbox.clone());
        crate::service::audit::spawn_retention(store.clone(), config.audit_retention_days);
        let single_node = redis.is_none();
        let app = Self {
            api_keys: Arc::new(Cache::new(single_node)),
            signer_lookup: Arc::default(),
            settings: Arc::new(Cache::new(single_node)),
            http,
            outbox,
            mailer,
            throttle: Arc::new(crate::service::throttle::Throttle::shared(redis.clone())),
            trusted_proxies: Arc::new(trusted_proxies),
            passwords: PasswordHasher::new(config.password_hash_concurrency),
            bus,
            hub,
            redis,
            node,
            realtime_shutdown: CancellationToken::new(),
            realtime_tasks: TaskTracker::new(),
            store,
            keys,
            config: Arc::new(config),
            operator_key_hash: Arc::new(operator_key_hash),
            key_touches: Arc::default(),
        };
        Ok((app, generated))
    }

    /// Verifies a token a user may present (`user` or `access`). One signed
    /// by a key this node does not hold — rotated in on another node, or by
    /// `roster keys rotate`, since the last periodic reload — makes the node
    /// re-read the keys and verify again, so a new key's tokens verify on
    /// every node at once. At most one re-read a second per node: a flood
    /// of invented `kid`s costs one read a second.
    pub async fn verify_account_token(
        &self,
        token: &str,
    ) -> Result<crate::tokens::UserClaims, crate::tokens::TokenError> {
        match self.keys.verify_account_token(token) {
            Err(crate::tokens::TokenError::UnknownKey) if self.reload_signers().await => {
                self.keys.verify_account_token(token)
            }
            verified => verified,
        }
    }

    /// Re-reads the signing keys unless this node did within the last
    /// second; whether it did now.
    async fn reload_signers(&self) -> bool {
        {
            let mut last = self.signer_lookup.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match self.keys.reload(self.store.as_ref()).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not reload the signing keys");
                false
            }
        }
    }

    /// The live (unrevoked) API key with this id, for authentication.
    pub async fn api_key_for_auth(&self, key: Uuid) -> Result<Option<ApiKeyAuth>, StoreError> {
        self.api_keys
            .get_or_load(&key, self.store.api_key_for_auth(key))
            .await
    }

    /// Call after revoking `key`: no request on this node accepts it again.
    pub fn forget_api_key(&self, key: Uuid) {
        self.api_keys.forget(&key);
    }

    /// The account's settings.
    pub async fn settings(&self, account: Uuid) -> Result<Arc<Settings>, StoreError> {
        let loaded = self
            .settings
            .get_or_load(&account, async {
                self.store
                    .get_settings(account)
                    .await
                    .map(|s| Some(Arc::new(s)))
            })
            .await?;
        Ok(loaded.unwrap_or_default())
    }

    /// Call after changing the account's settings.
    pub fn forget_settings(&self, account: Uuid) {
        self.settings.forget(&account);
    }

    pub fn is_operator_key(&self, presented: &str) -> bool {
        secret::equal_hashes(
            &secret::sha256(presented.as_bytes()),
            &self.operator_key_hash,
        )
    }

    /// Records that an API key was used, at most once a minute per key, off
    /// the request's path.
    pub fn touch_api_key(&self, key: Uuid) {
        let now = Instant::now();
        {
            let mut touches = self.key_touches.lock().unwrap_or_else(|e| e.into_inner());
            if touches
                .get(&key)
                .is_some_and(|t| now.duration_since(*t).as_secs() < 60)
            {
                return;
            }
            touches.insert(key, now);
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_api_key(key, crate::domain::time::now()).await {
                tracing::warn!(error = %e, "could not record API key use");
            }
        });
    }
}

/// `roster keys rotate`: retires the signing key in use and makes a new one
/// the signer, against the configured database; returns the new kid.
/// Running servers re-read the keys at the first token that names the new
/// one (and every minute).
pub async fn rotate_signing_key(config: &Config) -> anyhow::Result<String> {
    let store = open_store(config).await?;
    let keys = Keys::load_sealed(
        store.as_ref(),
        config.token_issuer.clone(),
        config.token_audience.clone(),
        crate::tokens::KeyCipher::new(config.signing_key_master_key.as_deref()),
    )
    .await?;
    keys.rotate(
        store.as_ref(),
        crate::domain::event::ActorRef::OPERATOR,
        None,
    )
    .await
}

/// Re-reads the signing keys every minute, so a rotation made on another
/// node or by `roster keys rotate` is picked up.
fn spawn_key_reloads(store: Arc<dyn Store>, keys: std::sync::Weak<Keys>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(keys) = keys.upgrade() else { return };
            if let Err(e) = keys.reload(store.as_ref()).await {
                tracing::warn!(error = %e, "could not reload the signing keys");
            }
        }
    });
}

async fn operator_key_from_store(store: &dyn Store) -> anyhow::Result<(Vec<u8>, Option<String>)> {
    if let Some(hex) = store.get_state(OPERATOR_KEY_STATE).await? {
        return Ok((decode_hex(&hex)?, None));
    }
    let key = secret::generate_operator_key();
    let hash = secret::sha256(key.as_bytes());
    if store
        .put_state_if_absent(OPERATOR_KEY_STATE, &encode_hex(&hash))
        .await?
    {
        Ok((hash, Some(key)))
    } else {
        // Another node generated it first: use theirs.
        let hex = store
            .get_state(OPERATOR_KEY_STATE)
            .await?
            .context("operator key vanished")?;
        Ok((decode_hex(&hex)?, None))
    }
}

fn encode_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn decode_hex(s: &str) -> anyhow::Result<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .context("bad hex in stored operator key hash")
        })
        .collect()
}

/// Whether another node has beaten recently (then presence is not reset).
async fn others_alive(redis: Option<&Redis>, me: Uuid) -> bool {
    let Some(redis) = redis else { return false };
    let r: redis::RedisResult<bool> = async {
        let mut c = redis.conn().await?;
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}:nodes", redis.prefix()))
            .query_async(&mut c)
            .await?;
        for n in nodes.iter().filter(|n| **n != me.to_string()) {
            let alive: bool = redis::cmd("EXISTS")
                .arg(format!("{}:alive:{n}", redis.prefix()))
                .query_async(&mut c)
                .await?;
            if alive {
                return Ok(true);
            }
        }
        Ok(false)
    }
    .await;
    r.unwrap_or(false)
}

/// Usernames stored before their confusable skeletons were kept get them
/// (once; later starts find nothing to do). Look-alikes that already
/// coexist are left as they are, and said.
async fn fill_username_skeletons(store: &dyn Store) -> anyhow::Result<()> {
    let (mut after, mut clashes) = (Uuid::nil(), 0);
    while let Some((last, left)) = store.fill_username_skeletons(after, 500).await? {
        (after, clashes) = (last, clashes + left);
    }
    if clashes > 0 {
        tracing::warn!(
            users = clashes,
            "usernames that look like another user's of their account were stored before \
             look-alikes were refused; they keep working, and renaming them clears this"
        );
    }
    Ok(())
}

/// The directory of the server's own files: the SQLite database's, or the
/// working directory on PostgreSQL.
pub fn data_dir(config: &Config) -> std::path::PathBuf {
    use std::str::FromStr;
    config
        .database_url
        .starts_with("sqlite:")
        .then(|| sqlx::sqlite::SqliteConnectOptions::from_str(&config.database_url).ok())
        .flatten()
        .and_then(|o| {
            std::path::Path::new(o.get_filename())
                .parent()
                .map(|p| p.to_path_buf())
        })
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| std::path::PathBuf::from("."))
}
