//! Mail that goes with a user's create or change — the welcome mail
//! (Rocket.Chat's `sendWelcomeEmail`, with the password when
//! `setRandomPassword` chose it), the address verification link (when the
//! account asks for verification) and the notice to an old address — built
//! here and queued by storage in the change's own transaction.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::app::App;
use crate::domain::settings::Settings;
use crate::domain::time;
use crate::domain::user::{NewUser, User};
use crate::secret;
use crate::store::sessions::{OutboxMail, UserMail};

/// How long a verification link works.
pub const VERIFICATION_TTL: ::time::Duration = ::time::Duration::days(7);

/// The mail to queue with `user`, if any.
pub fn for_new_user(
    app: &App,
    account: Uuid,
    settings: &Settings,
    user: &NewUser,
    welcome: bool,
    random_password: Option<&str>,
) -> Option<UserMail> {
    let to = user.email.clone()?;
    let name = user
        .name
        .clone()
        .or(user.username.clone())
        .unwrap_or_default();
    let mail = mail_to(account, &to);
    let mut out = UserMail::default();
    if welcome {
        let note = match random_password {
            Some(p) => format!(
                "\nYour password: {p}\nYou will be asked to change it when you first log in.\n"
            ),
            None => String::new(),
        };
        let login = user
            .username
            .clone()
            .or(user.email.clone())
            .unwrap_or_default();
        out.mails.push(mail(app.mailer.render(
            "welcome",
            &[("name", &name), ("login", &login), ("password_note", &note)],
        )));
    }
    if settings.email.verify && !user.email_verified {
        add_verification(app, account, &name, &mut out, mail);
    }
    (!out.mails.is_empty()).then_some(out)
}

/// The mail that goes with a change of `current`'s address to `new`: a
/// notice to the old address (so its owner learns of a takeover attempt at
/// once), and a verification link to the new one when the account asks for
/// verification and the new address is not already marked verified.
pub fn for_changed_email(
    app: &App,
    account: Uuid,
    settings: &Settings,
    current: &User,
    new: Option<&str>,
    new_verified: bool,
) -> Option<UserMail> {
    let name = current
        .name
        .clone()
        .or(current.username.clone())
        .unwrap_or_default();
    let mut out = UserMail::default();
    if let Some(old) = &current.email {
        let shown = new.unwrap_or("(none)");
        out.mails.push(mail_to(account, old)(
            app.mailer
                .render("email_changed", &[("name", &name), ("new_email", shown)]),
        ));
    }
    if let Some(new) = new
        && settings.email.verify
        && !new_verified
    {
        add_verification(app, account, &name, &mut out, mail_to(account, new));
    }
    (!out.mails.is_empty()).then_some(out)
}

/// Makes a rendered `(subject, body)` into a queued mail to `to`.
fn mail_to(account: Uuid, to: &str) -> impl Fn((String, String)) -> OutboxMail {
    let to = to.to_owned();
    let now = time::now();
    move |(subject, body)| OutboxMail {
        id: Uuid::now_v7(),
        account_id: Some(account),
        to: to.clone(),
        subject,
        body,
        created_at: now,
        attempts: 0,
    }
}

/// A verification link for the address `mail` sends to, recorded in `out`.
fn add_verification(
    app: &App,
    account: Uuid,
    name: &str,
    out: &mut UserMail,
    mail: impl Fn((String, String)) -> OutboxMail,
) {
    let token = format!(
        "ev_{}",
        URL_SAFE_NO_PAD.encode(secret::random_bytes::<32>())
    );
    let link = format!(
        "{}/v1/accounts/{account}/auth/verify-email?token={token}",
        super::public_base(app)
    );
    out.mails.push(mail(
        app.mailer
            .render("verify_email", &[("name", name), ("link", &link)]),
    ));
    out.verification = Some((
        secret::sha256(token.as_bytes()),
        time::now() + VERIFICATION_TTL,
    ));
}
