//! Configuration: defaults → TOML file (`--config`) → `ROSTER_*` environment
//! variables (`__` nests) → command-line flags. Secrets may also come from a
//! file named by `ROSTER_OPERATOR_KEY_FILE`.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub listen: String,
    /// A second address serving `/metrics` alone (a port only Prometheus
    /// reaches); when set, the main address answers `/metrics` with 404.
    /// Unset: `/metrics` on the main address.
    pub metrics_listen: Option<String>,
    /// `sqlite://PATH` (embedded default) or `postgres://…`.
    pub database_url: String,
    /// Unset: a single node with an in-process bus.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel (several installs, one Redis).
    pub redis_prefix: String,
    /// A PEM file of the CA that signed Redis's certificate, for a
    /// `rediss://` URL; unset: the system's trust store.
    pub redis_tls_ca_file: Option<String>,
    /// The server owner's key (32+ characters). Unset on first start: one is
    /// generated and printed once; only its hash is kept.
    pub operator_key: Option<String>,
    /// Read the operator key from this file instead.
    pub operator_key_file: Option<String>,
    /// Base of links the server hands out.
    pub public_url: Option<String>,
    /// SQLite durability: `normal` (a 2xx survives a process crash) or
    /// `full` (it also survives power loss; one fsync per group commit).
    pub sqlite_synchronous: String,
    /// Request bodies above this many bytes are refused with 413.
    pub max_body_bytes: usize,
    /// `iss` and `aud` of the tokens this server signs.
    pub token_issuer: String,
    pub token_audience: String,
    /// `json` (default) or `text`.
    pub log_format: String,
    /// A request taking longer is answered 503.
    pub request_timeout_secs: u64,
    /// A client must send its request headers within this many seconds.
    pub header_read_timeout_secs: u64,
    /// Password hashes computed at once (0: the number of cores).
    pub password_hash_concurrency: usize,
    /// Origins allowed to open the realtime WebSocket; empty allows any
    /// (the token, not a cookie, authenticates the connection).
    pub realtime_allowed_origins: Vec<String>,
    /// Origins (`https://app.example`, exact: scheme, host, port) whose
    /// pages may call the REST API from the browser, cookies included
    /// (CORS). Empty: none.
    pub cors_allowed_origins: Vec<String>,
    /// Largest realtime frame accepted; larger closes with 1009.
    pub realtime_max_frame_bytes: usize,
    /// Sustained client frames per second per connection (burst: twice).
    pub realtime_frames_per_second: u32,
    pub realtime_rooms_per_connection: usize,
    pub realtime_connections_per_user: usize,
    pub realtime_connections_per_ip: usize,
    /// How often the server pings, and how long silence is tolerated.
    pub heartbeat_ms: u64,
    pub heartbeat_timeout_ms: u64,
    /// Delay before a dropped connection's user is announced offline.
    pub presence_grace_ms: u64,
    /// Login and refresh answer with cookies too, even when not asked.
    pub session_cookies: bool,
    /// 32+ characters; when set, private signing keys are stored encrypted
    /// under it (AES-256-GCM). Losing it loses the keys.
    pub signing_key_master_key: Option<String>,
    /// Failed logins per account+login name, and per client address, in
    /// `login_failure_window_secs`, before 429.
    pub login_failures_per_name: u32,
    pub login_failures_per_ip: u32,
    pub login_failure_window_secs: u64,
    /// Login, refresh and sign-up attempts per client address per minute.
    pub auth_requests_per_ip_per_minute: u32,
    /// Refused API keys, tokens and operator keys (401s) per client address
    /// per minute, for the cluster; beyond, every credential from that
    /// address is answered 429 without being looked up. 0: no limit.
    pub bad_credentials_per_ip_per_minute: u32,
    /// Proxies (IP addresses or CIDR ranges) whose `X-Forwarded-For` is
    /// believed; from anyone else the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// The captcha provider's `siteverify` URL (hCaptcha, Turnstile and
    /// reCAPTCHA speak the same protocol) and the secret sent to it.
    pub captcha_verify_url: Option<String>,
    pub captcha_secret: Option<String>,
    /// Sign-up attempts per client address per hour.
    pub signups_per_ip_per_hour: u32,
    /// `smtp://user:pass@host:587?tls=required`, `smtps://…:465`, or unset:
    /// mail is written as `.eml` files to `mail_outbox_dir`.
    pub smtp_url: Option<String>,
    pub mail_from: String,
    pub mail_outbox_dir: String,
    /// The operator's templates (`password_reset.txt`: `Subject: …`, a blank
    /// line, the body; `{name}`, `{link}`, `{minutes}` are filled in).
    pub mail_templates_dir: Option<String>,
    /// The reset link mailed to users; `{token}` and `{account_id}` are
    /// filled in. Default: `{public_url}/reset-password?account_id=…&token=…`.
    pub password_reset_url: Option<String>,
    pub password_reset_ttl_secs: u64,
    /// Events older than this many days are deleted from the event log (the
    /// audit log), hourly. 0: kept forever.
    pub audit_retention_days: u32,
    /// The waits before each retry of a webhook delivery that failed
    /// (`ms`, `s`, `m`, `h`, `d`); after the last, the delivery has failed.
    pub webhook_retry_schedule: String,
    /// Let webhooks reach loopback, private and link-local addresses (a
    /// receiver on the same host or network). Off: refused, after DNS.
    pub webhook_allow_private_targets: bool,
    /// An endpoint whose every attempt has failed for this long (`5d`,
    /// `12h`) is disabled, with a `webhook.disabled` event.
    pub webhook_disable_after: String,
    /// Deliveries to one endpoint in flight at once (on each node).
    pub webhook_endpoint_concurrency: u32,
    /// Deliveries in flight at once on this node, over all endpoints.
    pub webhook_max_in_flight: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            metrics_listen: None,
            database_url: "sqlite://roster-data/roster.db".into(),
            redis_url: None,
            redis_prefix: "roster".into(),
            redis_tls_ca_file: None,
            operator_key: None,
            operator_key_file: None,
            public_url: None,
            sqlite_synchronous: "normal".into(),
            max_body_bytes: 64 * 1024,
            token_issuer: "roster".into(),
            token_audience: "roster".into(),
            log_format: "json".into(),
            request_timeout_secs: 30,
            header_read_timeout_secs: 10,
            password_hash_concurrency: 0,
            realtime_allowed_origins: Vec::new(),
            cors_allowed_origins: Vec::new(),
            realtime_max_frame_bytes: 64 * 1024,
            realtime_frames_per_second: 20,
            realtime_rooms_per_connection: 50,
            realtime_connections_per_user: 20,
            realtime_connections_per_ip: 2000,
            heartbeat_ms: 25_000,
            heartbeat_timeout_ms: 60_000,
            presence_grace_ms: 3_000,
            session_cookies: false,
            signing_key_master_key: None,
            login_failures_per_name: 10,
            login_failures_per_ip: 100,
            login_failure_window_secs: 900,
            auth_requests_per_ip_per_minute: 300,
            bad_credentials_per_ip_per_minute: 100,
            trusted_proxies: Vec::new(),
            captcha_verify_url: None,
            captcha_secret: None,
            signups_per_ip_per_hour: 20,
            smtp_url: None,
            mail_from: "Roster <roster@localhost>".into(),
            mail_outbox_dir: "roster-data/outbox".into(),
            mail_templates_dir: None,
            password_reset_url: None,
            password_reset_ttl_secs: 3600,
            audit_retention_days: 365,
            webhook_retry_schedule: "5s,5m,30m,2h,5h,10h,10h".into(),
            webhook_allow_private_targets: false,
            webhook_disable_after: "5d".into(),
            webhook_endpoint_concurrency: 8,
            webhook_max_in_flight: 64,
        }
    }
}

/// Values given on the command line, the last layer.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

/// `ROSTER_*` variables that are not configuration keys: the log filter,
/// read before the configuration, `migrate-sqlite-to-postgres`'s target
/// (`ROSTER_MIGRATE_TO`), and the namespaces of the test suite
/// (`ROSTER_TEST_*`) and the benchmark (`ROSTER_BENCH_*`). Any other unknown
/// `ROSTER_*` variable (a typo: `ROSTER_LISTN`) is refused.
fn not_config(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "log" || key == "migrate_to" || key.starts_with("test_") || key.starts_with("bench_")
}

impl Config {
    /// The layers, later ones winning: defaults, the TOML file, `ROSTER_*`
    /// variables, the command line. A key none of them knows is refused,
    /// named.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                anyhow::bail!("config file {} does not exist", file.display());
            }
            fig = fig.merge(Toml::file(file));
        }
        let mut config: Config = fig
            .merge(Env::prefixed("ROSTER_").filter(|k| !not_config(k.as_str())))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(unknown_key)?;
        if let Some(path) = &config.operator_key_file {
            let key = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read operator_key_file {path}: {e}"))?;
            config.operator_key = Some(key.trim().to_owned());
        }
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(k) = &self.operator_key {
            strong_secret("operator_key", k)?;
        }
        if !matches!(self.sqlite_synchronous.as_str(), "normal" | "full") {
            anyhow::bail!("sqlite_synchronous must be `normal` or `full`");
        }
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            anyhow::bail!("database_url must start with sqlite:, postgres:// or postgresql://");
        }
        if let Some(k) = &self.signing_key_master_key {
            strong_secret("signing_key_master_key", k)?;
        }
        for o in &self.cors_allowed_origins {
            let exact = url::Url::parse(o).ok().filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.origin().ascii_serialization() == *o
            });
            if exact.is_none() {
                anyhow::bail!(
                    "cors_allowed_origins: `{o}` is not an origin (scheme://host[:port], no path, no wildcard)"
                );
            }
        }
        for p in &self.trusted_proxies {
            crate::http::client_ip::Cidr::parse(p).ok_or_else(|| {
                anyhow::anyhow!("trusted_proxies: `{p}` is not an IP address or CIDR range")
            })?;
        }
        if let Some(u) = &self.captcha_verify_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            anyhow::bail!("captcha_verify_url must be an http(s) URL");
        }
        if let Err(e) = crate::domain::webhook::parse_schedule(&self.webhook_retry_schedule) {
            anyhow::bail!("webhook_retry_schedule: {e}");
        }
        if let Err(e) = crate::domain::webhook::parse_disable_after(&self.webhook_disable_after) {
            anyhow::bail!("webhook_disable_after: {e}");
        }
        if !(1..=1024).contains(&self.webhook_endpoint_concurrency) {
            anyhow::bail!("webhook_endpoint_concurrency must be between 1 and 1024");
        }
        if !(1..=4096).contains(&self.webhook_max_in_flight) {
            anyhow::bail!("webhook_max_in_flight must be between 1 and 4096");
        }
        if self.max_body_bytes < 1024 {
            anyhow::bail!("max_body_bytes must be at least 1024");
        }
        Ok(())
    }

    /// The configuration as TOML with secrets redacted.
    pub fn redacted_toml(&self) -> anyhow::Result<String> {
        let mut c = self.clone();
        if c.operator_key.is_some() {
            c.operator_key = Some("[redacted]".into());
        }
        if c.captcha_secret.is_some() {
            c.captcha_secret = Some("[redacted]".into());
        }
        if c.signing_key_master_key.is_some() {
            c.signing_key_master_key = Some("[redacted]".into());
        }
        c.database_url = redact_url(&c.database_url);
        c.redis_url = c.redis_url.as_deref().map(redact_url);
        c.smtp_url = c.smtp_url.as_deref().map(redact_url);
        let mut out = toml::to_string(&c)?;
        // TOML has no null: the keys left unset are listed as comments, so
        // that every key shows.
        let unset: Vec<String> = match serde_json::to_value(&c)? {
            serde_json::Value::Object(keys) => keys
                .into_iter()
                .filter(|(_, v)| v.is_null())
                .map(|(k, _)| k)
                .collect(),
            _ => Vec::new(),
        };
        if !unset.is_empty() {
            out.push_str("\n# Unset (no value):\n");
            for key in unset {
                out.push_str(&format!("# {key} =\n"));
            }
        }
        Ok(out)
    }
}

/// A key nobody knows, said in the operator's words: the variable or the
/// file key as written, not the list of every field.
fn unknown_key(e: figment::Error) -> anyhow::Error {
    let figment::error::Kind::UnknownField(found, _) = &e.kind else {
        return e.into();
    };
    let from_env = e
        .metadata
        .as_ref()
        .is_some_and(|m| m.name.contains("environment"));
    if from_env {
        anyhow::anyhow!(
            "unknown configuration variable ROSTER_{}: no such key (the keys are in docs/deployment.md)",
            found.to_uppercase()
        )
    } else {
        let source = e.metadata.as_ref().and_then(|m| m.source.as_ref());
        let place = source.map_or_else(|| "the configuration".to_owned(), |s| s.to_string());
        anyhow::anyhow!(
            "unknown configuration key `{found}` in {place}: no such key (the keys are in docs/deployment.md)"
        )
    }
}

/// Words of the placeholders that deploy files and examples ship (the k8s
/// secret's `REPLACE-with-32-or-more-random-characters`): a key holding one
/// was never changed.
const PLACEHOLDER_WORDS: [&str; 6] = [
    "replace",
    "changeme",
    "change-me",
    "change_me",
    "placeholder",
    "example",
];

/// Refuses a secret that anyone could guess: shorter than 32 characters, a
/// shipped placeholder, or of low entropy (fewer than 100 bits by the
/// Shannon estimate of its characters, e.g. one character repeated, or
/// fewer than 8 distinct characters). The refusal names the key, never the
/// value.
fn strong_secret(name: &str, value: &str) -> anyhow::Result<()> {
    let hint = "generate one with `openssl rand -base64 36`";
    let n = value.chars().count();
    if n < 32 {
        anyhow::bail!("{name} must be at least 32 characters; {hint}");
    }
    let lower = value.to_lowercase();
    if PLACEHOLDER_WORDS.iter().any(|w| lower.contains(w)) {
        anyhow::bail!("{name} is still the placeholder of a shipped file; {hint}");
    }
    let mut counts = std::collections::HashMap::new();
    for c in value.chars() {
        *counts.entry(c).or_insert(0u32) += 1;
    }
    let bits: f64 = counts
        .values()
        .map(|&k| {
            let p = f64::from(k) / n as f64;
            -p * p.log2()
        })
        .sum::<f64>()
        * n as f64;
    if counts.len() < 8 || bits < 100.0 {
        anyhow::bail!("{name} is too easy to guess (too few different characters); {hint}");
    }
    Ok(())
}

/// Hides the password of a `scheme://user:password@host` URL.
pub fn redact_url(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        _ => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://roster:s3cret@db:5432/roster"),
            "postgres://roster:REDACTED@db:5432/roster"
        );
        assert_eq!(
            redact_url("sqlite://roster-data/roster.db"),
            "sqlite://roster-data/roster.db"
        );
    }

    #[test]
    fn print_config_hides_every_secret() {
        let c = Config {
            signing_key_master_key: Some("master-key-master-key-master-key-1".into()),
            captcha_secret: Some("captcha-secret-value".into()),
            smtp_url: Some("smtp://mailer:smtp-pass@mail.example:587".into()),
            ..Config::default()
        };
        let text = c.redacted_toml().unwrap();
        for secret in ["master-key-master", "captcha-secret-value", "smtp-pass"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("mail.example"));
        assert!(
            Config {
                signing_key_master_key: Some("short".into()),
                ..Config::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Config {
                trusted_proxies: vec!["10.0.0.0/99".into()],
                ..Config::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn short_placeholder_and_guessable_secrets_are_refused() {
        for weak in [
            "short".to_owned(),
            "REPLACE-with-32-or-more-random-characters".to_owned(),
            "x".repeat(64),
            "abcd".repeat(10),
            "0123456".repeat(6),
        ] {
            let c = Config {
                operator_key: Some(weak.clone()),
                ..Config::default()
            };
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("operator_key") && !e.contains(&weak), "{e}");
        }
        // Random keys, base64 and hex alike, pass.
        for strong in [
            "q3J0x5c1VbXo9mJd0F2r0Lw8pQe7sTnYk6hGz4aBcD1eF2gH",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ] {
            strong_secret("operator_key", strong).unwrap();
        }
    }
}
