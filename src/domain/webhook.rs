//! Webhook endpoints and their deliveries: the types, the rules on an
//! endpoint's URL and event patterns, the Standard Webhooks signature and
//! the retry schedule.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::ValidationError;
use super::text;

/// At most this many patterns per endpoint.
pub const MAX_PATTERNS: usize = 50;

/// An account's webhook endpoint, as answered (never its secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    /// Event types (`user.created`), prefixes (`user.*`) or `*`.
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Since when every attempt has failed (none succeeded since); the
    /// endpoint is disabled once this is `webhook_disable_after` old.
    #[serde(with = "super::time::serde_millis::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub failing_since: Option<OffsetDateTime>,
    #[serde(with = "super::time::serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "super::time::serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// `POST /webhooks` as sent.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    #[schema(
        max_length = 3000,
        pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://(([A-Za-z0-9_-]+\.)*[A-Za-z][A-Za-z0-9_-]*)(:[0-9]{1,4})?([/?#][!-~]*)?$"
    )]
    pub url: String,
    #[schema(schema_with = events_schema)]
    pub events: Vec<String>,
    #[schema(schema_with = crate::domain::text::free_or_null_schema::<500>)]
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// `PATCH /webhooks/{id}` as sent: what is given changes.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    #[schema(
        max_length = 3000,
        pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://(([A-Za-z0-9_-]+\.)*[A-Za-z][A-Za-z0-9_-]*)(:[0-9]{1,4})?([/?#][!-~]*)?$"
    )]
    pub url: Option<String>,
    #[schema(schema_with = events_schema)]
    pub events: Option<Vec<String>>,
    #[schema(schema_with = crate::domain::text::free_or_null_schema::<500>)]
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// An endpoint's URL: http(s), a host, at most 3000 characters.
pub fn webhook_url(s: &str) -> Result<url::Url, ValidationError> {
    text::http_url("url", s)?;
    url::Url::parse(s).map_err(|_| ValidationError::new("url", "must be an absolute URL"))
}

/// The OpenAPI schema of `events`: what `event_patterns` takes.
fn events_schema() -> utoipa::openapi::Array {
    let item = utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .max_length(Some(102))
        .pattern(Some(r"^(\*|[a-z_]+(\.[a-z_]+)*(\.\*)?)$"));
    utoipa::openapi::ArrayBuilder::new()
        .items(item)
        .min_items(Some(1))
        .max_items(Some(MAX_PATTERNS))
        .build()
}

/// The patterns an endpoint subscribes to: 1 to 50, each `*`, an event
/// type or a prefix of one (`user.*`).
pub fn event_patterns(v: &[String]) -> Result<Vec<String>, ValidationError> {
    if v.is_empty() || v.len() > MAX_PATTERNS {
        return Err(ValidationError::new(
            "events",
            format!("must list 1 to {MAX_PATTERNS} event types or prefixes"),
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, p) in v.iter().enumerate() {
        let base = p.strip_suffix(".*").unwrap_or(p);
        let valid = p == "*"
            || (!base.is_empty()
                && base.len() <= 100
                && base.split('.').all(|part| {
                    !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                }));
        if !valid {
            return Err(ValidationError::new(
                format!("events[{i}]"),
                "must be an event type (user.created), a prefix of one (user.*) or *",
            ));
        }
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Whether an event of `kind` goes to an endpoint with these patterns.
pub fn matches(patterns: &[String], kind: &str) -> bool {
    patterns.iter().any(|p| {
        p == "*"
            || p == kind
            || p.strip_suffix('*')
                .is_some_and(|prefix| kind.starts_with(prefix))
    })
}

/// The presence types, which an endpoint receives only if it names them
/// (`participant.joined`, `participant.left` or `participant.*`): `*` does
/// not take them in, so that endpoints made for the event log do not get
/// one delivery per join.
pub const PARTICIPANT_JOINED: &str = "participant.joined";
pub const PARTICIPANT_LEFT: &str = "participant.left";

/// Whether `patterns` opt in to the presence type `kind`.
pub fn wants_presence(patterns: &[String], kind: &str) -> bool {
    patterns
        .iter()
        .any(|p| p != "*" && matches(std::slice::from_ref(p), kind))
}

/// Addresses a webhook may not reach unless `webhook_allow_private_targets`:
/// loopback, private, link-local (cloud metadata at 169.254.169.254
/// included), unique-local, unspecified, multicast and broadcast.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // CGNAT 100.64/10
                || v4.octets()[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local fe80::/10
        }
    }
}

/// A new signing secret, Standard Webhooks' `whsec_` + base64 of 24 random
/// bytes.
pub fn new_secret() -> String {
    format!(
        "whsec_{}",
        STANDARD.encode(crate::secret::random_bytes::<24>())
    )
}

/// The `webhook-signature` value for one delivery: `v1,` + base64 of
/// HMAC-SHA256 over `{id}.{timestamp}.{body}`, keyed by the secret's bytes.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    use aws_lc_rs::hmac;
    let raw = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key_bytes = STANDARD
        .decode(raw)
        .unwrap_or_else(|_| raw.as_bytes().to_vec());
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key_bytes);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
}

/// `5m`, `2h`: one duration (units `ms`, `s`, `m`, `h`, `d`).
pub fn parse_duration(part: &str) -> Result<Duration, String> {
    let part = part.trim();
    let digits = part
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(part.len());
    let (n, unit) = part.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{part}` is not a number with a unit (5s, 5m, 2h)"))?;
    let scale = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{part}`: the unit must be ms, s, m, h or d")),
    };
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{part}` is too long"))
}

/// `5s,5m,30m,2h,5h,10h,10h`: the waits before each retry (units `ms`,
/// `s`, `m`, `h`, `d`). At most 20 retries, each at most 7 days.
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let d = parse_duration(part)?;
        if d > Duration::from_secs(7 * 86_400) {
            return Err(format!("`{part}` is longer than 7 days"));
        }
        out.push(d);
    }
    if out.len() > 20 {
        return Err("at most 20 retries".into());
    }
    Ok(out)
}

/// `webhook_disable_after`: how long an endpoint may fail (no attempt
/// succeeding) before it is disabled; between 1 s and 365 days.
pub fn parse_disable_after(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(365 * 86_400) {
        return Err(format!("`{s}` must be between 1s and 365d"));
    }
    Ok(d)
}

/// A delivery as the log answers it, with its attempts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_seq: i64,
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending` (to be tried, again or first), `delivered`, `failed`
    /// (the schedule ran out).
    pub state: String,
    pub attempts: i32,
    #[serde(with = "super::time::serde_millis::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<OffsetDateTime>,
    #[serde(with = "super::time::serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    pub log: Vec<Attempt>,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    #[serde(with = "super::time::serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// The receiver's status, if it answered.
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    /// The first 1 KiB of the receiver's answer.
    pub response: Option<String>,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_types_prefixes_and_everything() {
        let p = vec!["user.*".to_owned(), "room.created".to_owned()];
        assert!(matches(&p, "user.created"));
        assert!(matches(&p, "room.created"));
        assert!(!matches(&p, "room.deleted"));
        assert!(!matches(&p, "users.x"));
        assert!(matches(&["*".to_owned()], "anything.at_all"));
        assert!(event_patterns(&["User.*".into()]).is_err());
        assert!(event_patterns(&[]).is_err());
        assert!(event_patterns(&["user.".into()]).is_err());
    }

    #[test]
    fn presence_is_sent_only_where_named() {
        let all = vec!["*".to_owned()];
        assert!(!wants_presence(&all, PARTICIPANT_JOINED));
        let joined = vec!["*".to_owned(), PARTICIPANT_JOINED.to_owned()];
        assert!(wants_presence(&joined, PARTICIPANT_JOINED));
        assert!(!wants_presence(&joined, PARTICIPANT_LEFT));
        let both = vec!["participant.*".to_owned()];
        assert!(wants_presence(&both, PARTICIPANT_LEFT));
        assert!(!wants_presence(&["user.*".to_owned()], PARTICIPANT_LEFT));
    }

    #[test]
    fn the_signature_is_standard_webhooks() {
        // The specification's own example.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn schedules_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_schedule("1s, 5m,2h").unwrap(),
            vec![
                Duration::from_secs(1),
                Duration::from_secs(300),
                Duration::from_secs(7200)
            ]
        );
        assert!(parse_schedule("5 minutes").is_err());
        assert!(parse_schedule("8d").is_err());
        assert_eq!(parse_disable_after("5d"), Ok(Duration::from_secs(432_000)));
        assert!(parse_disable_after("500ms").is_err());
        assert!(parse_disable_after("99999999999999999d").is_err());
        assert!(is_private("169.254.169.254".parse().unwrap()));
        assert!(is_private("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_private("93.184.216.34".parse().unwrap()));
    }
}
