//! Timestamps: stored and answered as RFC 3339 UTC with milliseconds.

use time::{OffsetDateTime, format_description::FormatItem, macros::format_description};

const RFC3339_MILLIS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Now, truncated to milliseconds so what is stored is exactly what is answered.
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond((t.nanosecond() / 1_000_000) * 1_000_000)
        .unwrap_or(t)
}

/// `2026-05-29T10:05:00.000Z`.
pub fn format(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(RFC3339_MILLIS)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Serde helpers for `OffsetDateTime` fields answered to clients.
pub mod serde_millis {
    use serde::Serializer;
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*t))
    }

    pub mod option {
        use serde::Serializer;
        use time::OffsetDateTime;

        pub fn serialize<S: Serializer>(
            t: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&super::super::format(*t)),
                None => s.serialize_none(),
            }
        }
    }
}
