//! The `roster` command: serve, migrate, check and print the configuration,
//! and the operator's scripting commands (accounts, users, API keys,
//! tokens, signing keys, the move to PostgreSQL). Each subcommand takes
//! only its own flags; the account-level ones act through the use-case
//! layer as the operator, exactly as the REST API would.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use roster::app::{App, open_store};
use roster::config::{Config, Overrides};
use roster::service::{self, Operator};
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "roster",
    version,
    about = "Users, rooms, roles, invites, tokens and presence for real-time apps",
    after_help = "Examples:\n  \
        roster serve                                  # SQLite in ./roster-data, port 8080\n  \
        roster serve --config roster.toml\n  \
        roster accounts create --name Acme            # prints the account and its API key\n  \
        roster users create --account ACCOUNT_ID --name Ada --username ada"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the configuration comes from: every subcommand that reads it.
#[derive(Args, Clone)]
struct ConfigArgs {
    /// A TOML configuration file (keys: roster.example.toml).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// The configuration and the database to act on.
#[derive(Args, Clone)]
struct DbArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Overrides `database_url` / ROSTER_DATABASE_URL.
    #[arg(long)]
    database_url: Option<String>,
}

impl DbArgs {
    fn load(&self) -> anyhow::Result<Config> {
        load(
            &self.config,
            Overrides {
                database_url: self.database_url.clone(),
                ..Overrides::default()
            },
        )
    }
}

/// The account an account-level command acts in.
#[derive(Args, Clone)]
struct AccountArg {
    /// The account's id (from `roster accounts create`).
    #[arg(long, value_name = "ACCOUNT_ID")]
    account: Uuid,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    #[command(after_help = "Examples:\n  \
        roster serve\n  \
        roster serve --listen 0.0.0.0:8080 --database-url postgres://roster@db/roster\n  \
        ROSTER_LOG=debug roster serve --config roster.toml")]
    Serve {
        #[command(flatten)]
        db: DbArgs,
        /// Overrides `listen` / ROSTER_LISTEN.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Create or upgrade the database schema, then exit.
    #[command(after_help = "Example:\n  roster migrate --database-url postgres://roster@db/roster")]
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print the effective configuration, every key (secrets redacted;
    /// unset keys as comments).
    #[command(
        after_help = "Example:\n  ROSTER_LISTEN=0.0.0.0:9000 roster print-config --config roster.toml"
    )]
    PrintConfig {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Check the configuration (file and ROSTER_* variables) and exit:
    /// status 0 and `configuration is valid`, or 1 and what is wrong.
    #[command(after_help = "Example:\n  roster check-config --config /etc/roster/roster.toml")]
    CheckConfig {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Manage accounts.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Create and list an account's users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Create and revoke an account's API keys.
    ApiKeys {
        #[command(subcommand)]
        command: ApiKeysCommand,
    },
    /// Issue users' `user` tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Copy an embedded (SQLite) install into an empty PostgreSQL database;
    /// prints rows per table as JSON. Stop the server first.
    MigrateSqliteToPostgres {
        #[command(flatten)]
        args: roster::transfer::Args,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Manage the token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Retire the signing key in use and sign new tokens with a new one
    /// (the old one verifies for 90 more days). Prints {"kid": …}.
    #[command(after_help = "Example:\n  roster keys rotate --config roster.toml")]
    Rotate {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Create an account; prints {"account": …, "api_key": …} as JSON.
    #[command(after_help = "Example:\n  \
        roster accounts create --name Acme\n  \
        KEY=$(roster accounts create --name Acme | jq -r .api_key)")]
    Create {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user, as `POST /users` with a full API key would; prints
    /// {"user": …, "token": …} as JSON.
    #[command(after_help = "Examples:\n  \
        roster users create --account ACCOUNT_ID --name Ada --username ada --email ada@example.com\n  \
        printf '%s' \"$PASSWORD\" | roster users create --account ACCOUNT_ID --username ada --password-stdin")]
    Create {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        username: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// The integrator's own id for the user (CometChat's `uid`).
        #[arg(long)]
        custom_id: Option<String>,
        /// A role to give (repeat for several; default `user`).
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// Read the password from stdin (never from the command line, which
        /// other users of the machine can see).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List users, oldest first; prints {"users": […], "next_cursor": …}.
    #[command(after_help = "Examples:\n  \
        roster users list --account ACCOUNT_ID --limit 100\n  \
        roster users list --account ACCOUNT_ID --q ada --cursor NEXT_CURSOR")]
    List {
        #[command(flatten)]
        account: AccountArg,
        /// Search names, usernames and emails.
        #[arg(long)]
        q: Option<String>,
        /// 1–100 (default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// `next_cursor` of the page before.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand)]
enum ApiKeysCommand {
    /// Create an API key; prints {"api_key": secret (shown this once), "key": …}.
    #[command(after_help = "Example:\n  \
        roster api-keys create --account ACCOUNT_ID --name ci --scope read")]
    Create {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long)]
        name: String,
        /// `full` (default) or `read`.
        #[arg(long)]
        scope: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke an API key. A running single-node server stops accepting it
    /// within 60 s (its key cache); `DELETE /api-keys/{id}` is immediate.
    #[command(after_help = "Example:\n  roster api-keys revoke --account ACCOUNT_ID --key KEY_ID")]
    Revoke {
        #[command(flatten)]
        account: AccountArg,
        /// The key's id (`key.id` when created; the part before the `.`).
        #[arg(long, value_name = "KEY_ID")]
        key: Uuid,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Issue a 90-day `user` token; prints {"token": …, "token_info": …}.
    #[command(after_help = "Example:\n  \
        USER_TOKEN=$(roster tokens issue --account ACCOUNT_ID --user USER_ID | jq -r .token)")]
    Issue {
        #[command(flatten)]
        account: AccountArg,
        #[arg(long, value_name = "USER_ID")]
        user: Uuid,
        /// Carried in the token as `roomId`.
        #[arg(long, value_name = "ROOM_ID")]
        room: Option<Uuid>,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn load(config: &ConfigArgs, overrides: Overrides) -> anyhow::Result<Config> {
    Config::load(config.config.as_deref(), &overrides)
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROSTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "text" {
        builder.init();
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roster: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::PrintConfig { config } => {
            let config = load(&config, Overrides::default())?;
            print!("{}", config.redacted_toml()?);
            Ok(())
        }
        Command::CheckConfig { config } => {
            let config = load(&config, Overrides::default())?;
            println!(
                "configuration is valid (database: {})",
                roster::config::redact_url(&config.database_url)
            );
            Ok(())
        }
        Command::Migrate { db } => {
            let config = db.load()?;
            init_logging(&config.log_format);
            let store = open_store(&config).await?;
            tracing::info!(backend = store.backend(), "database is migrated");
            Ok(())
        }
        Command::Accounts {
            command: AccountsCommand::Create { name, db },
        } => {
            let app = open_app(&db).await?;
            let service::accounts::Created { account, api_key } =
                service::accounts::create(&app, &Operator { request_id: None }, &name)
                    .await
                    .map_err(refusal)?;
            print_json(&serde_json::json!({ "account": account, "api_key": api_key }))
        }
        Command::Users { command } => users(command).await,
        Command::ApiKeys { command } => api_keys(command).await,
        Command::Tokens {
            command:
                TokensCommand::Issue {
                    account,
                    user,
                    room,
                    db,
                },
        } => {
            let (app, actor) = act_in(&db, &account).await?;
            let req = roster::domain::session::IssueTokenRequest { room_id: room };
            let issued = service::tokens::issue(&app, &actor, user, req)
                .await
                .map_err(refusal)?;
            print_json(&serde_json::json!({
                "token": issued.token,
                "token_info": roster::http::tokens::TokenInfoView::from(&issued.info),
            }))
        }
        Command::Keys {
            command: KeysCommand::Rotate { db },
        } => {
            let config = db.load()?;
            init_logging(&config.log_format);
            let kid = roster::app::rotate_signing_key(&config).await?;
            print_json(&serde_json::json!({ "kid": kid }))
        }
        Command::MigrateSqliteToPostgres { args, config } => {
            let config = load(&config, Overrides::default())?;
            init_logging(&config.log_format);
            let from = args.from.unwrap_or(config.database_url);
            let report = roster::transfer::sqlite_to_postgres(&from, &args.to).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Serve { db, listen } => {
            let config = load(
                &db.config,
                Overrides {
                    listen,
                    database_url: db.database_url,
                },
            )?;
            init_logging(&config.log_format);
            let listeners = roster::server::Server::listen(&config).await?;
            let _file_held = roster::store::sqlite::hold_while_serving(&config.database_url)?;
            let (app, generated) = App::open(config).await?;
            keep_generated_operator_key(&app.config, generated)?;
            let server = roster::server::Server::on(listeners, app.clone());
            tracing::info!(
                addr = %server.local_addr(),
                metrics = server.metrics_addr().map(|a| format!("http://{a}/metrics")),
                database = app.store.backend(),
                docs = format!("http://{}/docs", server.local_addr()),
                next = "create an account: roster accounts create --name Acme \
                        (or POST /v1/accounts with the operator key)",
                "roster is listening"
            );
            server.run(roster::server::shutdown_signal()).await?;
            tracing::info!("drained, exiting");
            Ok(())
        }
    }
}

async fn users(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create {
            account,
            name,
            username,
            email,
            custom_id,
            roles,
            password_stdin,
            db,
        } => {
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("reading the password from stdin")?;
                Some(line.trim_end_matches(['\r', '\n']).to_owned())
            } else {
                None
            };
            let (app, actor) = act_in(&db, &account).await?;
            let req = roster::domain::user::CreateUserRequest {
                name,
                username,
                email,
                custom_id,
                roles: (!roles.is_empty()).then_some(roles),
                password,
                ..Default::default()
            };
            let created = service::users::create(&app, &actor, req)
                .await
                .map_err(refusal)?;
            print_json(&serde_json::json!({ "user": created.user, "token": created.token }))
        }
        UsersCommand::List {
            account,
            q,
            limit,
            cursor,
            db,
        } => {
            let (app, actor) = act_in(&db, &account).await?;
            let page = roster::http::extract::page(limit, cursor.as_deref()).map_err(refusal)?;
            let query = service::users::ListQuery {
                q,
                ..Default::default()
            };
            let found = service::users::list(&app, &actor, query, page)
                .await
                .map_err(refusal)?;
            print_json(&serde_json::json!({
                "users": found.items,
                "next_cursor": found.next.map(roster::http::extract::encode_cursor),
            }))
        }
    }
}

async fn api_keys(command: ApiKeysCommand) -> anyhow::Result<()> {
    match command {
        ApiKeysCommand::Create {
            account,
            name,
            scope,
            db,
        } => {
            let (app, actor) = act_in(&db, &account).await?;
            let req = roster::domain::account::CreateKey { name, scope };
            let created = service::api_keys::create(&app, &actor, req)
                .await
                .map_err(refusal)?;
            print_json(&serde_json::json!({ "api_key": created.secret, "key": created.key }))
        }
        ApiKeysCommand::Revoke { account, key, db } => {
            let (app, actor) = act_in(&db, &account).await?;
            service::api_keys::revoke(&app, &actor, key)
                .await
                .map_err(refusal)?;
            print_json(&serde_json::json!({ "revoked": key }))
        }
    }
}

/// The application on the configured database, logging as configured,
/// with a generated operator key kept (first start from the CLI).
async fn open_app(db: &DbArgs) -> anyhow::Result<App> {
    let config = db.load()?;
    init_logging(&config.log_format);
    let (app, generated) = App::open(config).await?;
    keep_generated_operator_key(&app.config, generated)?;
    Ok(app)
}

/// The application, and the operator acting inside `account` (which must
/// exist).
async fn act_in(db: &DbArgs, account: &AccountArg) -> anyhow::Result<(App, service::Actor)> {
    let app = open_app(db).await?;
    let operator = Operator { request_id: None };
    service::accounts::get(&app, &operator, account.account)
        .await
        .map_err(refusal)?;
    let actor = operator.on(account.account);
    Ok((app, actor))
}

/// A use case's refusal in the API's words: its code, message and field.
fn refusal(e: service::Error) -> anyhow::Error {
    let e = roster::http::envelope::ApiError::from(e);
    match &e.field {
        Some(field) => anyhow::anyhow!("{} {} (field `{field}`)", e.code, e.message),
        None => anyhow::anyhow!("{} {}", e.code, e.message),
    }
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// A generated operator key goes to a file only its owner reads (beside
/// the SQLite database, or in the working directory on PostgreSQL), and the
/// log names the file, never the key; a person at a terminal also sees the
/// key itself. Its hash is already stored, so a key that cannot be written
/// (a read-only directory) is printed once rather than lost.
fn keep_generated_operator_key(config: &Config, key: Option<String>) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let Some(key) = key else { return Ok(()) };
    let path = roster::app::data_dir(config).join("operator-key");
    match write_private(&path, &key) {
        Ok(()) => tracing::warn!(
            path = %path.display(),
            "generated the operator key (only its hash is kept): it is in this file, readable by \
             its owner only; store it somewhere safe and delete the file, or set ROSTER_OPERATOR_KEY"
        ),
        Err(e) => {
            tracing::warn!(
                path = %path.display(),
                error = %e,
                "generated the operator key but cannot write it to this file: it is printed once below"
            );
            eprintln!("\nroster: the generated operator key (shown this once):\n\n    {key}\n");
            return Ok(());
        }
    }
    if std::io::stderr().is_terminal() {
        eprintln!(
            "\nroster: generated the operator key (shown this once; also in {}):\n\n    {key}\n",
            path.display()
        );
    }
    Ok(())
}

/// Writes `text` to `path`, readable and writable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let mut file = open.open(path)?;
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    writeln!(file, "{text}")?;
    file.sync_all()
}
