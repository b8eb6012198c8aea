//! Mail: rendering from templates (built in, or the operator's files), and
//! the outbox worker that hands queued mail to SMTP (lettre) — or, with no
//! SMTP configured, writes it as `.eml` files a developer can read.
//!
//! Mail is queued in the same transaction as what caused it and sent
//! afterwards, never inside a request: a slow or failing SMTP server delays
//! mail, not answers. Failed deliveries are retried with backoff.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::Notify;

use crate::config::Config;
use crate::store::Store;
use crate::store::sessions::OutboxMail;

/// Deliveries attempted before a mail is given up on.
pub const MAX_ATTEMPTS: i32 = 8;

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Dir(PathBuf),
}

pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    templates: Option<PathBuf>,
}

const BUILT_IN: &[(&str, &str)] = &[
    (
        "password_reset",
        "Subject: Reset your password\n\n\
         Hello {name},\n\n\
         Someone asked to reset the password of your account. To choose a new one, open:\n\n\
         {link}\n\n\
         The link works once, for {minutes} minutes. If it was not you, ignore this mail:\n\
         your password stays as it is.\n",
    ),
    (
        "welcome",
        "Subject: Welcome\n\n\
         Hello {name},\n\n\
         Your account is ready. You log in as {login}.\n\
         {password_note}",
    ),
    (
        "verify_email",
        "Subject: Confirm your email address\n\n\
         Hello {name},\n\n\
         To confirm that this address is yours, open:\n\n\
         {link}\n\n\
         The link works once, for 7 days.\n",
    ),
    (
        "email_changed",
        "Subject: Your email address was changed\n\n\
         Hello {name},\n\n\
         The email address of your account was changed from this one to {new_email}.\n\
         Password resets will not be mailed to the new address for an hour.\n\
         If you did not ask for this, contact the people who run this service now.\n",
    ),
];

impl Mailer {
    pub fn from_config(c: &Config) -> anyhow::Result<Self> {
        let transport = match &c.smtp_url {
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .context("smtp_url")?
                    .timeout(Some(Duration::from_secs(20)))
                    .build(),
            ),
            None => Transport::Dir(PathBuf::from(&c.mail_outbox_dir)),
        };
        Ok(Self {
            transport,
            from: c.mail_from.parse().context("mail_from")?,
            templates: c.mail_templates_dir.as_ref().map(PathBuf::from),
        })
    }

    /// `(subject, body)` of template `name` with `{var}`s replaced. An
    /// operator's `{templates}/{name}.txt` wins over the built-in one; its
    /// first line is `Subject: …`, then a blank line, then the body.
    pub fn render(&self, name: &str, vars: &[(&str, &str)]) -> (String, String) {
        let own = self
            .templates
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.join(format!("{name}.txt"))).ok());
        let text = own.unwrap_or_else(|| {
            BUILT_IN
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| (*t).to_owned())
                .unwrap_or_default()
        });
        let mut text = text;
        for (k, v) in vars {
            text = text.replace(&format!("{{{k}}}"), v);
        }
        let (head, body) = text.split_once("\n\n").unwrap_or(("", &text));
        let subject = head
            .lines()
            .find_map(|l| l.strip_prefix("Subject:"))
            .unwrap_or(name)
            .trim()
            .to_owned();
        (subject, body.to_owned())
    }

    /// Hands one mail over.
    pub async fn deliver(&self, m: &OutboxMail) -> anyhow::Result<()> {
        let message = Message::builder()
            .from(self.from.clone())
            .to(m.to.parse().context("recipient")?)
            .subject(&m.subject)
            .message_id(Some(format!("<{}@roster>", m.id)))
            .body(m.body.clone())
            .context("building the message")?;
        match &self.transport {
            Transport::Smtp(smtp) => {
                smtp.send(message).await.context("SMTP")?;
            }
            Transport::Dir(dir) => {
                tokio::fs::create_dir_all(dir).await?;
                let path = dir.join(format!("{}.eml", m.id));
                tokio::fs::write(&path, message.formatted()).await?;
                tracing::info!(path = %path.display(), "mail written to the file outbox (no smtp_url set)");
            }
        }
        Ok(())
    }
}

/// Seconds before attempt `n + 1`, after `n` failures: 10 s doubling, at
/// most an hour.
fn backoff(attempts: i32) -> time::Duration {
    let secs = 10i64.saturating_mul(1 << attempts.clamp(0, 9)).min(3600);
    time::Duration::seconds(secs)
}

/// Runs the outbox: whenever woken (or every two seconds), claims due mail
/// and delivers it.
pub fn spawn_outbox(store: Arc<dyn Store>, mailer: Arc<Mailer>, wake: Arc<Notify>) {
    tokio::spawn(async move {
        loop {
            let now = crate::domain::time::now();
            let batch = match store.claim_mail(now, time::Duration::minutes(2), 20).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox: cannot claim mail");
                    Vec::new()
                }
            };
            let idle = batch.is_empty();
            for m in batch {
                let result = mailer.deliver(&m).await;
                let at = crate::domain::time::now();
                let failure = result.as_ref().err().map(|e| {
                    let error = format!("{e:#}");
                    let next = (m.attempts + 1 < MAX_ATTEMPTS).then(|| at + backoff(m.attempts));
                    tracing::warn!(mail = %m.id, attempts = m.attempts + 1, error = %error, gave_up = next.is_none(), "outbox: delivery failed");
                    (error, next)
                });
                let failure = failure.as_ref().map(|(e, n)| (e.as_str(), *n));
                if let Err(e) = store.finish_mail(m.id, at, failure).await {
                    tracing::warn!(error = %e, "outbox: cannot record the delivery");
                }
            }
            if idle {
                let _ = tokio::time::timeout(Duration::from_secs(2), wake.notified()).await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_templates_win_and_variables_are_filled() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config {
            mail_templates_dir: Some(dir.path().display().to_string()),
            ..Config::default()
        };
        let m = Mailer::from_config(&c).unwrap();
        let (s, b) = m.render(
            "password_reset",
            &[("name", "Ann"), ("link", "L"), ("minutes", "60")],
        );
        assert_eq!(s, "Reset your password");
        assert!(b.contains("Hello Ann") && b.contains("\nL\n") && b.contains("60 minutes"));
        std::fs::write(
            dir.path().join("password_reset.txt"),
            "Subject: Nouveau mot de passe\n\nBonjour {name} : {link}\n",
        )
        .unwrap();
        let (s, b) = m.render("password_reset", &[("name", "Ann"), ("link", "L")]);
        assert_eq!(s, "Nouveau mot de passe");
        assert_eq!(b, "Bonjour Ann : L\n");
    }

    #[test]
    fn retries_back_off_up_to_an_hour() {
        assert_eq!(backoff(0), time::Duration::seconds(10));
        assert_eq!(backoff(1), time::Duration::seconds(20));
        assert_eq!(backoff(20), time::Duration::seconds(3600));
    }
}
