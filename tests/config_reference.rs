//! The configuration reference in docs/deployment.md is exact: one row per
//! key of `Config`, with its environment variable and its default, taken
//! from the struct itself. When a key is added or a default changes, this
//! fails and prints the rows to paste.

use roster::config::Config;

/// `| \`key\` | \`ROSTER_KEY\` | default |` for every key, in struct order.
fn expected_rows() -> Vec<String> {
    let value = serde_json::to_value(Config::default()).expect("config serializes");
    let obj = value.as_object().expect("config is a table");
    // serde_json's map is sorted; TOML keeps the struct's order for the keys
    // it writes (it leaves out the unset ones), so order by that, then the rest.
    let toml_text = toml::to_string(&Config::default()).expect("config as TOML");
    let mut keys: Vec<&String> = obj.keys().collect();
    let pos = |k: &str| {
        toml_text
            .find(&format!("\n{k} ="))
            .or_else(|| toml_text.starts_with(&format!("{k} =")).then_some(0))
            .unwrap_or(usize::MAX)
    };
    keys.sort_by_key(|k| pos(k));
    keys.into_iter()
        .map(|k| {
            let default = match &obj[k] {
                serde_json::Value::Null => "unset".to_owned(),
                v => format!("`{}`", toml_literal(v)),
            };
            format!("| `{k}` | `ROSTER_{}` | {default} |", k.to_uppercase())
        })
        .collect()
}

fn toml_literal(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("{s:?}"),
        serde_json::Value::Array(a) => format!(
            "[{}]",
            a.iter().map(toml_literal).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

/// The first three columns of the documented rows.
fn documented_rows() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deployment.md"))
        .expect("docs/deployment.md");
    let start = doc
        .find("<!-- config-reference:begin -->")
        .expect("begin marker");
    let end = doc
        .find("<!-- config-reference:end -->")
        .expect("end marker");
    doc[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            format!("{} | {} | {} |", cells[0], cells[1], cells[2])
        })
        .collect()
}

#[test]
fn the_documented_configuration_matches_the_struct() {
    let expected = expected_rows();
    let documented = documented_rows();
    let sorted = |rows: &[String]| {
        let mut r = rows.to_vec();
        r.sort();
        r
    };
    // Any order will do in the docs; every key exactly once, exactly so.
    if sorted(&expected) != sorted(&documented) {
        panic!(
            "docs/deployment.md's configuration reference is out of date.\n\
             Expected these rows (add a meaning column to each):\n{}\n\nDocumented:\n{}",
            expected.join("\n"),
            documented.join("\n")
        );
    }
}

/// `roster.example.toml` names every key exactly once — set to its
/// default, or commented out when it has none — and nothing else: loaded as
/// it is, it gives exactly the defaults.
#[test]
fn the_example_file_holds_every_key_at_its_default() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/roster.example.toml");
    let text = std::fs::read_to_string(path).expect("roster.example.toml");
    let defaults = serde_json::to_value(Config::default()).expect("config serializes");
    let keys = defaults.as_object().expect("config is a table");
    for (key, default) in keys {
        let set = format!("{key} = ");
        let commented = format!("# {key} = ");
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&set) || l.starts_with(&commented))
            .collect();
        assert_eq!(lines.len(), 1, "`{key}` appears {} times", lines.len());
        assert_eq!(
            lines[0].starts_with('#'),
            default.is_null(),
            "`{key}`: a key with a default is set to it, one without is commented out"
        );
    }
    let loaded = Config::load(
        Some(std::path::Path::new(path)),
        &roster::config::Overrides::default(),
    )
    .expect("the example file loads");
    assert_eq!(serde_json::to_value(loaded).unwrap(), defaults);
}
