//! Text rules shared by every field a client can send.
//!
//! Lengths are counted in Unicode scalar values (what most people call
//! characters; an emoji ZWJ sequence counts as each of its parts), matching the
//! vendors' "100 characters (UTF8mb4)". Every script and emoji is welcome;
//! what hides or reorders what a reader sees is refused: control characters
//! (NUL included), bidirectional controls, line and paragraph separators,
//! and the invisible ones — format characters and default-ignorable code
//! points (zero-width space, soft hyphen, word joiner, BOM, Hangul fillers,
//! …) — except where writing needs them: the zero-width joiner inside an
//! emoji sequence, after a virama or between two letters of a script that
//! joins (as the zero-width non-joiner), variation selectors after a
//! character, and tag characters inside an emoji tag sequence (flags).

use unicode_normalization::char::canonical_combining_class;
use unicode_properties::{GeneralCategory, UnicodeEmoji, UnicodeGeneralCategory};

use super::ValidationError;

/// U+202A–U+202E and U+2066–U+2069: embeddings, overrides and isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt):
/// characters a renderer shows as nothing.
pub fn is_default_ignorable(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}'..='\u{1160}' | '\u{17B4}'..='\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// A character invisible to a reader: a format character (`Cf`) or a
/// default-ignorable one.
pub fn is_invisible(c: char) -> bool {
    is_default_ignorable(c) || c.general_category() == GeneralCategory::Format
}

fn is_emoji(c: char) -> bool {
    !c.is_ascii() && c.is_emoji_char()
}

/// A letter of a script that writes joined or conjunct forms (not ASCII).
fn is_joining_letter(c: char) -> bool {
    !c.is_ascii() && c.is_alphabetic()
}

/// Whether the invisible `c`, between `prev` and `next`, is one writing
/// needs (see the module docs).
fn needed_invisible(prev: Option<char>, c: char, next: Option<char>) -> bool {
    let after_virama = prev.is_some_and(|p| canonical_combining_class(p) == 9);
    let between = |f: fn(char) -> bool| prev.is_some_and(f) && next.is_some_and(f);
    match c {
        '\u{200D}' => {
            let emoji_before = prev.is_some_and(|p| is_emoji(p) || p == '\u{FE0F}');
            after_virama
                || (emoji_before && next.is_some_and(is_emoji))
                || between(is_joining_letter)
        }
        '\u{200C}' => after_virama || between(is_joining_letter),
        '\u{FE00}'..='\u{FE0F}' => prev.is_some_and(|p| !is_invisible(p)),
        '\u{E0020}'..='\u{E007F}' => {
            prev.is_some_and(|p| p == '\u{1F3F4}' || ('\u{E0020}'..='\u{E007E}').contains(&p))
        }
        _ => false,
    }
}

/// Refuses control, bidi-control, separator and invisible characters
/// anywhere in `s` (the invisible ones where writing needs them excepted).
pub fn check_safe(field: &str, s: &str) -> Result<(), ValidationError> {
    let refuse = |what: &str, c: char| {
        Err(ValidationError::new(
            field,
            format!("must not contain {what} (found U+{:04X})", c as u32),
        ))
    };
    let mut prev = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_control() {
            return refuse("control characters", c);
        }
        if is_bidi_control(c) {
            return refuse("bidirectional control characters", c);
        }
        if matches!(c, '\u{2028}' | '\u{2029}') {
            return refuse("line or paragraph separators", c);
        }
        if is_invisible(c) && !needed_invisible(prev, c, chars.peek().copied()) {
            return refuse("invisible characters", c);
        }
        prev = Some(c);
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

/// Whether `check_safe` refuses `c` wherever it stands (the invisible
/// characters writing needs are refused too: a schema cannot see context).
fn refused(c: char) -> bool {
    c.is_control() || is_bidi_control(c) || matches!(c, '\u{2028}' | '\u{2029}') || is_invisible(c)
}

/// The characters `check_safe` refuses, as the inside of a regular
/// expression character class (ranges of literal characters), computed from
/// the same rules so that the OpenAPI document cannot drift from them.
fn refused_class() -> &'static str {
    static CLASS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CLASS.get_or_init(|| {
        let mut out = String::new();
        let mut run: Option<(char, char)> = None;
        for c in (0..=0x10FFFF_u32).filter_map(char::from_u32) {
            match run {
                _ if !refused(c) => {}
                Some((lo, hi)) if hi as u32 + 1 == c as u32 => run = Some((lo, c)),
                Some((lo, hi)) => {
                    push_range(&mut out, lo, hi);
                    run = Some((c, c));
                }
                None => run = Some((c, c)),
            }
        }
        if let Some((lo, hi)) = run {
            push_range(&mut out, lo, hi);
        }
        out
    })
}

/// `lo-hi` (or `lo`) inside a character class, escaped where needed.
fn push_range(out: &mut String, lo: char, hi: char) {
    for (i, c) in [lo, hi].into_iter().enumerate() {
        if i == 1 {
            if hi == lo {
                break;
            }
            out.push('-');
        }
        if matches!(c, '\\' | ']' | '[' | '^' | '-') {
            out.push('\\');
        }
        out.push(c);
    }
}

fn string_schema(
    nullable: bool,
    min: usize,
    max: usize,
    pattern: String,
) -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    let ty = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(ty)
        .min_length((min > 0).then_some(min))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .build()
}

/// The OpenAPI schema of a `display_text` field of at most `MAX` characters.
pub fn display_schema<const MAX: usize>() -> utoipa::openapi::Object {
    let class = refused_class();
    string_schema(
        false,
        1,
        MAX,
        format!("^[^{class}]*[^\\s{class}][^{class}]*$"),
    )
}

/// `display_schema`, or `null`.
pub fn display_or_null_schema<const MAX: usize>() -> utoipa::openapi::Object {
    let class = refused_class();
    string_schema(
        true,
        1,
        MAX,
        format!("^[^{class}]*[^\\s{class}][^{class}]*$"),
    )
}

/// The OpenAPI schema of a `free_text` field of at most `MAX` characters,
/// or `null`.
pub fn free_or_null_schema<const MAX: usize>() -> utoipa::openapi::Object {
    string_schema(true, 0, MAX, format!("^[^{}]*$", refused_class()))
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
    fn the_schema_pattern_refuses_what_check_safe_refuses() {
        // Read the class back as ranges, as a regex engine does.
        let mut ranges = Vec::new();
        let mut chars = refused_class().chars().peekable();
        let one = |chars: &mut std::iter::Peekable<std::str::Chars>| match chars.next() {
            Some('\\') => chars.next().unwrap(),
            c => c.unwrap(),
        };
        while chars.peek().is_some() {
            let lo = one(&mut chars);
            let hi = if chars.peek() == Some(&'-') {
                chars.next();
                one(&mut chars)
            } else {
                lo
            };
            ranges.push(lo..=hi);
        }
        let in_class = |c: char| ranges.iter().any(|r| r.contains(&c));
        for c in [
            '\0',
            '\n',
            '\u{7f}',
            '\u{202E}',
            '\u{200B}',
            '\u{FEFF}',
            '\u{E0001}',
        ] {
            assert!(check_safe("x", &c.to_string()).is_err());
            assert!(in_class(c), "{c:?} missing from the class");
        }
        for c in ['a', ' ', 'é', '李', '👩', '-', ']', '\\'] {
            assert!(check_safe("x", &c.to_string()).is_ok());
            assert!(!in_class(c), "{c:?} wrongly in the class");
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

    #[test]
    fn invisible_characters_are_refused_where_writing_does_not_need_them() {
        for bad in [
            "al\u{200b}ice",
            "al\u{ad}ice",
            "eve\u{200e}",
            "\u{feff}eve",
            "a\u{2060}b",
            "a\u{3164}b",
            "a\u{2028}b",
            "a\u{200d}b",
            "\u{200d}\u{1f4bb}",
            "\u{fe0f}x",
            "a\u{e0067}",
            "x\u{202e}y",
        ] {
            assert!(check_safe("f", bad).is_err(), "{bad:?}");
        }
        for good in [
            "\u{1f469}\u{200d}\u{1f4bb}",
            "\u{1f469}\u{1f3fd}\u{200d}\u{1f4bb}",
            "\u{2764}\u{fe0f}\u{200d}\u{1f525}",
            "1\u{fe0f}\u{20e3}",
            "\u{1f3f4}\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}",
            "\u{645}\u{6cc}\u{200c}\u{62e}\u{648}\u{627}\u{647}\u{645}",
            "\u{915}\u{94d}\u{200d}\u{937}",
            "Zoë",
            "日本語",
        ] {
            assert!(check_safe("f", good).is_ok(), "{good:?}");
        }
    }
}
