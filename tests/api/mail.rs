//! Password reset by mail, delivered through a real SMTP server process
//! (Python's `aiosmtpd`, writing a maildir): the mail is read back, its link
//! followed; and the file outbox when no SMTP server is configured. Link
//! expiry and delivery retries are shown by the storage contract suite.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::helpers::{Account, TestApp, assert_error};
use crate::sessions::{PASSWORD, member, session};

const DEADLINE: Duration = Duration::from_secs(15);

/// An `aiosmtpd` server on a free port, delivering into a maildir.
pub struct Smtp {
    pub port: u16,
    pub maildir: tempfile::TempDir,
    _child: Child,
}

impl Smtp {
    pub async fn start() -> Self {
        let maildir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("box"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 -m aiosmtpd (pip install aiosmtpd)");
        tokio::time::timeout(DEADLINE, async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("aiosmtpd listens");
        Self {
            port,
            maildir,
            _child: child,
        }
    }

    /// The next delivered message (raw RFC 5322 text).
    pub async fn next_message(&self, seen: usize) -> String {
        wait_for_file(&self.maildir.path().join("box/new"), seen).await
    }

    /// An SMTP server and a Roster server that mails through it.
    pub async fn with_app() -> (Self, TestApp) {
        let smtp = Self::start().await;
        let port = smtp.port;
        let t = TestApp::spawn_with(move |c| c.smtp_url = Some(format!("smtp://127.0.0.1:{port}")))
            .await;
        (smtp, t)
    }

    /// Every delivered message, once at least `n` have arrived.
    pub async fn messages(&self, n: usize) -> Vec<String> {
        let dir = self.maildir.path().join("box/new");
        wait_for_file(&dir, n - 1).await;
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect()
    }

    pub fn count(&self) -> usize {
        count(&self.maildir.path().join("box/new"))
    }
}

/// Waits until `dir` holds more than `seen` files; returns the newest.
async fn wait_for_file(dir: &Path, seen: usize) -> String {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            if files.len() > seen {
                files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
                return std::fs::read_to_string(files.last().unwrap()).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a mail within the deadline")
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// The reset token in a mail's link (quoted-printable soft breaks undone).
pub fn token_in(mail: &str) -> String {
    let flat = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let at = flat.find("token=").expect("a link with a token") + "token=".len();
    flat[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

pub async fn ask(t: &TestApp, a: &Account, email: &str) -> (StatusCode, Value) {
    t.call(
        reqwest::Method::POST,
        &a.path("/auth/password-reset"),
        None,
        Some(json!({ "email": email })),
    )
    .await
}

async fn confirm(t: &TestApp, a: &Account, token: &str, password: &str) -> (StatusCode, Value) {
    t.call(
        reqwest::Method::POST,
        &a.path("/auth/password-reset/confirm"),
        None,
        Some(json!({ "token": token, "new_password": password })),
    )
    .await
}

#[tokio::test]
async fn a_mailed_reset_link_sets_a_new_password_once_and_ends_every_session() {
    let smtp = Smtp::start().await;
    let port = smtp.port;
    let t = TestApp::spawn_with(move |c| {
        c.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.mail_from = "Acme <no-reply@acme.test>".into();
        c.public_url = Some("https://app.acme.test".into());
    })
    .await;
    let a = t.account("acme").await;
    let id = member(&t, &a, "alice", json!({})).await;
    let me = a.path(&format!("/users/{id}"));
    let (access, _) = session(&t, &a, "alice").await;

    // Unknown and known addresses get the same answer; only one mail goes out.
    let unknown = ask(&t, &a, "nobody@example.com").await;
    let known = ask(&t, &a, "ALICE@example.com").await;
    assert_eq!(unknown.0, StatusCode::OK);
    assert_eq!(known.0, StatusCode::OK);
    assert_eq!(unknown.1["description"], known.1["description"]);
    assert_eq!(unknown.1["data"], known.1["data"]);
    let mail = smtp.next_message(0).await;
    assert!(mail.contains("To: alice@example.com"), "{mail}");
    assert!(mail.contains("From: Acme <no-reply@acme.test>"), "{mail}");
    assert!(mail.contains("Subject: Reset your password"), "{mail}");
    assert!(
        mail.contains("https://app.acme.test/reset-password?account_id="),
        "{mail}"
    );
    let token = token_in(&mail);
    assert!(token.starts_with("pr_"), "{token}");

    let got = confirm(&t, &a, &token, "short").await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("new_password"),
    );
    let (s, b) = confirm(&t, &a, &token, "a brand new secret").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        t.get(&me, &access).await.0,
        StatusCode::UNAUTHORIZED,
        "sessions end"
    );
    let login_path = a.path("/auth/login");
    let login = |password: &'static str| {
        t.call(
            reqwest::Method::POST,
            &login_path,
            None,
            Some(json!({ "username": "alice", "password": password })),
        )
    };
    assert_eq!(login(PASSWORD).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(login("a brand new secret").await.0, StatusCode::OK);

    // Once only; unknown tokens too are gone.
    let got = confirm(&t, &a, &token, "yet another secret").await;
    assert_error(&got, StatusCode::GONE, "GONE", Some("token"));
    let got = confirm(&t, &a, "pr_unknown", "yet another secret").await;
    assert_error(&got, StatusCode::GONE, "GONE", Some("token"));
    // Not an address at all is a validation error, not a silent success.
    let got = ask(&t, &a, "not an address").await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("email"),
    );
    assert_eq!(count(&smtp.maildir.path().join("box/new")), 1);
}

#[tokio::test]
async fn without_smtp_mail_lands_in_the_file_outbox_with_the_operators_link() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let path = outbox.display().to_string();
    let t = TestApp::spawn_with(move |c| {
        c.mail_outbox_dir = path;
        c.password_reset_url = Some("myapp://reset/{account_id}/{token}?token={token}".into());
    })
    .await;
    let a = t.account("acme").await;
    member(&t, &a, "alice", json!({})).await;
    assert_eq!(ask(&t, &a, "alice@example.com").await.0, StatusCode::OK);
    let mail = wait_for_file(&outbox, 0).await;
    assert!(mail.contains("myapp://reset/"), "{mail}");
    let token = token_in(&mail);
    assert_eq!(
        confirm(&t, &a, &token, "a brand new secret").await.0,
        StatusCode::OK
    );
    // Expiry is the storage contract's to show (no sleeping here).
}

/// The value after `label` on its line, in a mail's text.
fn line_value(mail: &str, label: &str) -> String {
    let flat = mail.replace("=\r\n", "").replace("=\n", "");
    let at = flat
        .find(label)
        .unwrap_or_else(|| panic!("no {label} in {mail}"))
        + label.len();
    flat[at..].lines().next().unwrap().trim().to_owned()
}

#[tokio::test]
async fn the_welcome_mail_carries_the_random_password_and_verification_links_confirm_addresses() {
    let (smtp, t) = Smtp::with_app().await;
    let a = t.account("acme").await;

    // Rocket.Chat: sendWelcomeEmail + setRandomPassword.
    let d = t
        .user(
            &a,
            json!({ "name": "Bob", "username": "bob", "email": "bob@example.com",
                    "setRandomPassword": true, "sendWelcomeEmail": true, "verified": true }),
        )
        .await;
    let welcome = smtp.next_message(0).await;
    assert!(welcome.contains("To: bob@example.com"), "{welcome}");
    assert!(welcome.contains("Subject: Welcome"), "{welcome}");
    let password = line_value(&welcome, "Your password: ");
    assert_eq!(password.chars().count(), 20, "{welcome}");
    let (s, b) = t
        .call(
            reqwest::Method::POST,
            &a.path("/auth/login"),
            None,
            Some(json!({ "username": "bob", "password": password })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["user"]["id"], d["user"]["id"]);

    // Verification, once the account asks for it.
    let (s, _) = t
        .patch(
            &a.path("/settings"),
            &a.key,
            json!({ "email": { "verify": true } }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let d = t
        .user(&a, json!({ "name": "Cy", "email": "cy@example.com" }))
        .await;
    assert_eq!(d["user"]["email_verified"], false);
    let mail = smtp.next_message(1).await;
    assert!(
        mail.contains("To: cy@example.com") && mail.contains("Subject: Confirm your email address"),
        "{mail}"
    );
    let token = token_in(&mail);
    assert!(token.starts_with("ev_"), "{token}");
    let link = format!("{}?token={token}", a.path("/auth/verify-email"));
    let (s, b) = t.call(reqwest::Method::GET, &link, None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["user"]["email_verified"], true);
    let id = d["user"]["id"].as_str().unwrap();
    let (_, u) = t.get(&a.path(&format!("/users/{id}")), &a.key).await;
    assert_eq!(u["data"]["user"]["email_verified"], true);
    let got = t.call(reqwest::Method::GET, &link, None, None).await;
    assert_error(&got, StatusCode::GONE, "GONE", Some("token"));
    // Already verified addresses, and users without one, get no link.
    t.user(
        &a,
        json!({ "name": "Di", "email": "di@example.com", "verified": true }),
    )
    .await;
    t.user(&a, json!({ "name": "Ed" })).await;
    // Sign-ups are verified too.
    let (s, _) = t
        .patch(
            &a.path("/settings"),
            &a.key,
            json!({ "signup": { "enabled": true, "captcha": false } }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = t
        .call(
            reqwest::Method::POST,
            &a.path("/signup"),
            None,
            Some(json!({ "email": "fay@example.com", "username": "fay", "password": "a long password" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let mail = smtp.next_message(2).await;
    assert!(mail.contains("To: fay@example.com"), "{mail}");
    assert_eq!(count(&smtp.maildir.path().join("box/new")), 3);
}
