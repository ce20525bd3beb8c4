//! `payd`: one binary for every role.
//!
//! # Layout
//! - `main.rs`: the command line (clap; every flag also reads a `PAYD_*` environment
//!   variable), logging setup, and the subcommands:
//!   - `serve`: the HTTP API and the embedded SQLite store in one process (the default way
//!     to run payd);
//!   - `migrate`: opens the store, applies pending schema migrations, and exits;
//!   - `openapi`: prints the OpenAPI document generated from the code.
//! - `serve.rs`: the server's lifecycle: bind, serve, and the graceful shutdown on
//!   SIGTERM/SIGINT (stop accepting, finish in-flight requests, drain and commit the writer).

mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use payd_domain::MccMap;
use payd_sqlite::{Durability, SqliteConfig};

/// payd: a payment engine. Card authorization on multi-category balances, with an embedded,
/// durable ledger.
#[derive(Debug, Parser)]
#[command(name = "payd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API and the embedded store in one process.
    Serve(ServeArgs),
    /// Apply pending schema migrations to the embedded store, then exit.
    Migrate(StoreArgs),
    /// Print the OpenAPI document (JSON) generated from the code.
    Openapi,
}

#[derive(Debug, Args)]
struct LogArgs {
    /// Log format.
    #[arg(long, env = "PAYD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log filter, in `tracing` EnvFilter syntax (e.g. `info`, `payd_sqlite=debug`).
    #[arg(long, env = "PAYD_LOG", default_value = "info", global = true)]
    log: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address and port the HTTP API listens on.
    #[arg(long, env = "PAYD_LISTEN", default_value = "0.0.0.0:9999")]
    listen: SocketAddr,
    /// How long graceful shutdown waits for in-flight requests before giving up, in ms.
    #[arg(long, env = "PAYD_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    shutdown_grace_ms: u64,
    /// Tokio worker threads for HTTP (0 = one per core).
    #[arg(long, env = "PAYD_HTTP_THREADS", default_value_t = 0)]
    http_threads: usize,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// Directory of the embedded SQLite store (created if missing).
    #[arg(long, env = "PAYD_DATA_DIR", default_value = "./payd-data")]
    data_dir: PathBuf,
    /// `strict`: fsync every group commit (survives power loss). `relaxed`: no fsync at
    /// commit (survives a process crash; may lose the last milliseconds on power loss).
    #[arg(long, env = "PAYD_DURABILITY", default_value = "strict")]
    durability: Durability,
    /// MCC → category map, as `MCC=CATEGORY` pairs; codes not listed are CASH.
    #[arg(long, env = "PAYD_MCC_MAP", default_value = MccMap::DEFAULT_TEXT)]
    mcc_map: String,
    /// Most commands the writer applies in one group commit.
    #[arg(long, env = "PAYD_BATCH_MAX", default_value_t = 1024)]
    batch_max: usize,
    /// Capacity of the writer's command queue; a full queue makes requests wait.
    #[arg(long, env = "PAYD_QUEUE_CAPACITY", default_value_t = 8192)]
    queue_capacity: usize,
    /// Read-only connections for balance and journal reads.
    #[arg(long, env = "PAYD_READERS", default_value_t = 4)]
    readers: usize,
}

impl StoreArgs {
    /// Validates the flags into the store's configuration; fails fast on bad values.
    fn config(&self) -> anyhow::Result<SqliteConfig> {
        anyhow::ensure!(self.batch_max >= 1, "--batch-max must be at least 1");
        anyhow::ensure!(
            self.queue_capacity >= 1,
            "--queue-capacity must be at least 1"
        );
        anyhow::ensure!(self.readers >= 1, "--readers must be at least 1");
        let mut config = SqliteConfig::new(&self.data_dir);
        config.durability = self.durability;
        config.mcc_map = MccMap::parse(&self.mcc_map).context("invalid --mcc-map")?;
        config.batch_max = self.batch_max;
        config.queue_capacity = self.queue_capacity;
        config.readers = self.readers;
        Ok(config)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log)?;
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Migrate(args) => {
            let store = payd_sqlite::SqliteStore::open(args.config()?)
                .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
            store.shutdown();
            println!("payd: store at {} is migrated", args.data_dir.display());
            Ok(())
        }
        Command::Openapi => {
            let document = payd_api::openapi();
            println!("{}", serde_json::to_string_pretty(&document)?);
            Ok(())
        }
    }
}

fn init_logging(args: &LogArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .with_context(|| format!("invalid --log filter {:?}", args.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
