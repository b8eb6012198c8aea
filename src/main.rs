//! The `roster` command: serve, migrate, print-config, accounts, keys.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use roster::app::{App, open_store};
use roster::config::{Config, Overrides};

#[derive(Parser)]
#[command(
    name = "roster",
    version,
    about = "Users, rooms, roles, invites, tokens and presence for real-time apps"
)]
struct Cli {
    /// A TOML configuration file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Overrides `listen` / ROSTER_LISTEN.
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Overrides `database_url` / ROSTER_DATABASE_URL.
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Print the effective configuration (secrets redacted).
    PrintConfig,
    /// Manage accounts.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Copy an embedded (SQLite) install into an empty PostgreSQL database;
    /// prints rows per table as JSON.
    MigrateSqliteToPostgres(roster::transfer::Args),
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
    Rotate,
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Create an account; prints {"account": …, "api_key": …} as JSON.
    Create {
        #[arg(long)]
        name: String,
    },
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
    let cli = Cli::parse();
    let overrides = Overrides {
        listen: cli.listen.clone(),
        database_url: cli.database_url.clone(),
    };
    let config = Config::load(cli.config.as_deref(), &overrides)?;
    match cli.command {
        Command::PrintConfig => {
            print!("{}", config.redacted_toml()?);
            Ok(())
        }
        Command::Migrate => {
            init_logging(&config.log_format);
            let store = open_store(&config).await?;
            tracing::info!(backend = store.backend(), "database is migrated");
            Ok(())
        }
        Command::Accounts {
            command: AccountsCommand::Create { name },
        } => {
            init_logging(&config.log_format);
            let (app, generated) = App::open(config).await?;
            keep_generated_operator_key(&app.config, generated)?;
            let operator = roster::service::Operator { request_id: None };
            let roster::service::accounts::Created { account, api_key } =
                roster::service::accounts::create(&app, &operator, &name)
                    .await
                    .map_err(|e| {
                        let e = roster::http::envelope::ApiError::from(e);
                        anyhow::anyhow!("{} {}", e.code, e.message)
                    })?;
            println!(
                "{}",
                serde_json::json!({ "account": account, "api_key": api_key })
            );
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Rotate,
        } => {
            init_logging(&config.log_format);
            let kid = roster::app::rotate_signing_key(&config).await?;
            println!("{}", serde_json::json!({ "kid": kid }));
            Ok(())
        }
        Command::MigrateSqliteToPostgres(args) => {
            init_logging(&config.log_format);
            let report = roster::transfer::sqlite_to_postgres(&args.from, &args.to).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Serve => {
            init_logging(&config.log_format);
            let listener = roster::server::Server::listen(&config.listen).await?;
            let (app, generated) = App::open(config).await?;
            keep_generated_operator_key(&app.config, generated)?;
            let server = roster::server::Server::on(listener, app.clone());
            tracing::info!(
                addr = %server.local_addr(),
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
