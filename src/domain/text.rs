//! Text rules shared by every field a client can send.
//!
//! Lengths are counted in Unicode scalar values (what most people call
//! characters; an emoji ZWJ sequence counts as each of its parts), matching the
//! vendors' "100 characters (UTF8mb4)". Every script and emoji is welcome;
//! control characters (NUL included) and bidirectional overrides/isolates are
//! refused, because they hide or reorder what a reader sees.

use super::ValidationError;

/// U+202A–U+202E and U+2066–U+2069: embeddings, overrides and isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Refuses control and bidi-control characters anywhere in `s`.
pub fn check_safe(field: &str, s: &str) -> Result<(), ValidationError> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(ValidationError::new(
            field,
            format!(
                "must not contain control characters (found U+{:04X})",
                c as u32
            ),
        ));
    }
    if let Some(c) = s.chars().find(|c| is_bidi_control(*c)) {
        return Err(ValidationError::new(
            field,
            format!(
                "must not contain bidirectional control characters (found U+{:04X})",
                c as u32
            ),
        ));
    }
    Ok(())
}

/// A display text: safe characters, not blank, 1..=`max` characters.
pub fn display_text(field: &str, s: &str, max: usize) -> Result<String, ValidationError> {
    check_safe(field, s)?;
    if s.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty or blank"));
    }
    check_len(field, s, max)?;
    Ok(s.to_owned())
}

/// Text that may be empty (a bio, a status message), still safe and bounded.
pub fn free_text(field: &str, s: &str, max: usize) -> Result<String, ValidationError> {
    check_safe(field, s)?;
    check_len(field, s, max)?;
    Ok(s.to_owned())
}

pub fn check_len(field: &str, s: &str, max: usize) -> Result<(), ValidationError> {
    let n = s.chars().count();
    if n > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters (got {n})"),
        ));
    }
    Ok(())
}

/// An http(s) URL of at most 3000 characters.
pub fn http_url(field: &str, s: &str) -> Result<String, ValidationError> {
    check_len(field, s, MAX_URL)?;
    check_safe(field, s)?;
    let url = url::Url::parse(s)
        .map_err(|e| ValidationError::new(field, format!("must be an absolute URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ValidationError::new(field, "must be an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ValidationError::new(field, "must name a host"));
    }
    Ok(s.to_owned())
}

pub const MAX_URL: usize = 3000;

/// Refuses NUL and other control characters inside any string of a JSON
/// document (keys included): PostgreSQL's `jsonb` cannot hold `\u0000`, and a
/// document that is stored must read back the same on every backend.
pub fn check_json_strings(field: &str, v: &serde_json::Value) -> Result<(), ValidationError> {
    match v {
        serde_json::Value::String(s) => check_no_nul(field, s),
        serde_json::Value::Array(items) => {
            items.iter().try_for_each(|i| check_json_strings(field, i))
        }
        serde_json::Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            check_no_nul(field, k)?;
            check_json_strings(field, v)
        }),
        _ => Ok(()),
    }
}

fn check_no_nul(field: &str, s: &str) -> Result<(), ValidationError> {
    if s.contains('\0') {
        return Err(ValidationError::new(
            field,
            "must not contain NUL characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_and_emoji_zwj_sequences_are_welcome() {
        for s in ["Алиса", "李小龙", "عائشة", "👩‍👩‍👧‍👦 family", "Zoë", "हिन्दी"]
        {
            assert_eq!(display_text("name", s, 100).unwrap(), s);
        }
    }

    #[test]
    fn control_and_bidi_characters_are_refused() {
        for s in [
            "a\0b",
            "a\nb",
            "a\u{7f}",
            "x\u{202E}y",
            "x\u{2066}y",
            "\u{2069}",
        ] {
            assert!(display_text("name", s, 100).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        let hundred = "é".repeat(100);
        assert!(display_text("name", &hundred, 100).is_ok());
        assert!(display_text("name", &format!("{hundred}é"), 100).is_err());
    }

    #[test]
    fn urls_must_be_http_and_bounded() {
        assert!(http_url("link", "https://example.com/a").is_ok());
        assert!(http_url("link", "javascript:alert(1)").is_err());
        assert!(http_url("link", "ftp://example.com").is_err());
        let long = format!("https://example.com/{}", "a".repeat(3000 - 20));
        assert_eq!(long.len(), 3000);
        assert!(http_url("link", &long).is_ok());
        assert!(http_url("link", &format!("{long}a")).is_err());
    }

    #[test]
    fn nul_inside_json_is_refused() {
        let v = serde_json::json!({"a": ["ok", {"b\u{0}": 1}]});
        assert!(check_json_strings("metadata", &v).is_err());
        let v = serde_json::json!({"a": ["ok\u{0}"]});
        assert!(check_json_strings("metadata", &v).is_err());
        assert!(check_json_strings("metadata", &serde_json::json!({"a": "b"})).is_ok());
    }
}
