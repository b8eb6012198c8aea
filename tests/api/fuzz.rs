//! The OpenAPI document judged by an outside fuzzer: `schemathesis` (PyPI)
//! generates requests from `/openapi.json` for every native operation and
//! checks each answer against the document (status codes, schemas, headers,
//! content types) and the server against its own rules (no 5xx, schema-valid
//! requests accepted, schema-violating ones refused). Zero failures or the
//! test fails, on whichever backend the suite runs.
//!
//! `ROSTER_FUZZ_EXAMPLES` sets the examples per operation (default 25).

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::helpers::TestApp;

/// Native operations only: the compat routes, SCIM and the realtime upgrade
/// are described in their vendors' documents, not in this one.
const PATHS: &str = r"^/(v1/(?!realtime$)(?!accounts/\{accountId\}/scim/)|healthz$|readyz$|metrics$|\.well-known/jwks\.json$)";

/// The fuzzer's configuration. A schema-valid request may still be refused
/// where the refusal is not about its shape: 410 for a one-time link that
/// does not exist (as 404 for an object), and 400 on the three operations
/// whose rules JSON Schema cannot state: a phone number valid for its
/// country code (users create and update), and logout with an API key,
/// which has no session unless a refresh token is sent.
const CONFIG: &str = r#"
[generation]
max-examples = EXAMPLES

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "410", "429", "5xx"]

[[operations]]
include-name = ["POST /v1/accounts/{accountId}/users", "PATCH /v1/accounts/{accountId}/users/{userId}", "POST /v1/accounts/{accountId}/auth/logout"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "410", "429", "5xx"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_in_any_native_operation() {
    // The fuzzer sends many refused credentials and sign-ups from one
    // address; the limits that would answer 429 to all of it are lifted.
    let app = TestApp::spawn_with(|c| {
        c.bad_credentials_per_ip_per_minute = 0;
        c.login_failures_per_ip = 1_000_000;
        c.login_failures_per_name = 1_000_000;
        c.auth_requests_per_ip_per_minute = 1_000_000;
        c.signups_per_ip_per_hour = 1_000_000;
        // Generated webhook URLs name whatever host they like.
        c.webhook_allow_private_targets = true;
    })
    .await;
    let account = app.account("fuzz").await;
    app.user(&account, json!({ "username": "alice", "name": "Alice" }))
        .await;
    app.room(&account, json!({ "name": "General" })).await;

    let examples = std::env::var("ROSTER_FUZZ_EXAMPLES").unwrap_or_else(|_| "25".into());
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[parameters]\n\"accountId\" = \"{}\"\n{}",
            account.id,
            CONFIG.replace("EXAMPLES", &examples)
        ),
    )
    .expect("write schemathesis.toml");

    let mut cmd = tokio::process::Command::new("schemathesis");
    cmd.arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/openapi.json", app.base))
        .args(["--checks", "all", "--seed", "1", "--workers", "2"])
        .args(["--include-path-regex", PATHS])
        .args(["--request-timeout", "10"])
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", account.key))
        .arg("--report-dir")
        .arg(dir.path().join("report"))
        .env("NO_COLOR", "1")
        // Its example database (`.schemathesis/`) goes with the temp dir.
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(900), cmd.output())
        .await
        .expect("schemathesis finishes within 15 minutes")
        .expect("run schemathesis (pip install schemathesis)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('=') && l.contains(" in "))
        .unwrap_or("(no summary line)");
    println!("schemathesis: {summary}");
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
