//! The event log's vocabulary: every change is recorded as an event — who
//! did it ([`ActorRef`]), to what (`subject`), the resource after the change
//! (`data`, private fields included: readers filter) — written by storage in
//! the change's own transaction, so there is no change without its event and
//! no event without its change.

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// Who an event names as its actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActorRef {
    /// `api_key`, `user`, `operator`, `anonymous` or `system`.
    pub kind: &'static str,
    pub id: Option<Uuid>,
}

impl ActorRef {
    pub const SYSTEM: ActorRef = ActorRef {
        kind: "system",
        id: None,
    };
    pub const OPERATOR: ActorRef = ActorRef {
        kind: "operator",
        id: None,
    };
    /// Nobody signed in yet: a login, a sign-up, a password reset or a
    /// guest link, before the request proves who it is.
    pub const ANONYMOUS: ActorRef = ActorRef {
        kind: "anonymous",
        id: None,
    };

    pub fn user(id: Uuid) -> Self {
        Self {
            kind: "user",
            id: Some(id),
        }
    }
}

/// The context of one change, handed to storage with it: when, by whom, in
/// which request. Storage writes the change's event(s) from it.
#[derive(Debug, Clone)]
pub struct Change {
    pub at: OffsetDateTime,
    pub actor: ActorRef,
    pub request_id: Option<String>,
    /// The front door the change came through (`scim`, `rocketchat`,
    /// `cometchat`); None for the native API and the server itself.
    pub surface: Option<&'static str>,
}

impl Change {
    pub fn new(at: OffsetDateTime, actor: ActorRef, request_id: Option<String>) -> Self {
        Self {
            at,
            actor,
            request_id,
            surface: None,
        }
    }

    /// A change made by the server itself (a background job, the CLI).
    pub fn system(at: OffsetDateTime) -> Self {
        Self {
            at,
            actor: ActorRef::SYSTEM,
            request_id: None,
            surface: None,
        }
    }
}

/// An event as recorded. `seq` grows with every event (across accounts);
/// readers page by it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: i64,
    pub id: Uuid,
    pub account_id: Option<Uuid>,
    /// `user.created`, `user.updated`, …
    pub kind: String,
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    pub subject_kind: String,
    pub subject_id: String,
    pub data: Value,
    pub at: OffsetDateTime,
    pub request_id: Option<String>,
    pub surface: Option<String>,
}

/// What the audit log is asked for: one account's events, narrowed by any
/// of these.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    /// An exact type (`user.created`).
    pub kind: Option<String>,
    /// A type prefix ending in `.` (`user.`, from `user.*`).
    pub kind_prefix: Option<String>,
    pub actor_id: Option<Uuid>,
    pub subject_id: Option<String>,
    /// At or after.
    pub since: Option<OffsetDateTime>,
    /// Before.
    pub until: Option<OffsetDateTime>,
}
