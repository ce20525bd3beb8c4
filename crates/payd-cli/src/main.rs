//! `payd`: one binary for every role.
//!
//! # Layout
//! - `main.rs`: logging setup and the subcommands:
//!   - `serve`: the HTTP API and the background engine in one process, on the embedded
//!     SQLite store (the default way to run payd) or, with `--database-url`, on PostgreSQL
//!     shared with any number of other payd processes;
//!   - `api` and `worker`: the same two halves as separate processes on one PostgreSQL
//!     database, any number of each (the scale-out shape);
//!   - `migrate`: applies pending schema migrations to the store, and exits;
//!   - `audit`: checks the store's invariants on a read-only snapshot (safe while payd
//!     runs) and prints a report; exit code 0 clean, 1 violations, 2 could not run;
//!   - `processor-sim`: a simulated payment processor (the processors' API of the gateway
//!     spec), for development, tests and benchmarks;
//!   - `openapi`: prints the OpenAPI document generated from the code;
//!   - `probe`: one `GET /health` (or `--path`) to a process on this host, exit 0 on 200.
//! - `args.rs`: the command line (clap; every flag also reads a `PAYD_*` environment
//!   variable) and its validation.
//! - `probe.rs`: `payd probe`, a container's health check.
//! - `serve.rs`: a server's lifecycle, whichever halves it runs: bind, serve, and the
//!   graceful shutdown on SIGTERM/SIGINT (stop accepting, finish in-flight requests, stop
//!   the engine, drain and commit the writers).
//! - `series.rs`: the counters dashboards and alerts rely on, started at zero.
//! - `store.rs`: which store the flags select (SQLite or PostgreSQL), opened, and what
//!   each gives the API (its in-flight keys) and its shutdown.

mod args;
mod probe;
mod series;
mod serve;
mod store;

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use crate::args::{AuditArgs, Cli, Command, LogArgs, LogFormat};

/// Runs `payd audit` and returns its exit code: 0 clean, 1 violations, 2 could not run.
fn run_audit(args: &AuditArgs) -> u8 {
    let (what, report) = match &args.database_url {
        Some(url) => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("payd audit: {error}");
                    return 2;
                }
            };
            let report = runtime
                .block_on(payd_postgres::audit::audit(url))
                .map_err(|error| error.to_string());
            (payd_postgres::config::redacted(url), report)
        }
        None => {
            let path = args.data_dir.join(payd_sqlite::DATABASE_FILE);
            let report = payd_sqlite::audit::audit(&path).map_err(|error| error.to_string());
            (path.display().to_string(), report)
        }
    };
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            eprintln!("payd audit: {error}");
            return 2;
        }
    };
    let mut out = std::io::stdout().lock();
    let written = writeln!(
        out,
        "payd audit: {what} (schema version {})",
        report.schema_version
    )
    .and_then(|()| writeln!(out, "{report}"))
    .and_then(|()| out.flush());
    if let Err(error) = written {
        eprintln!("payd audit: cannot write the report: {error}");
        return 2;
    }
    if report.is_clean() { 0 } else { 1 }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log)?;
    match cli.command {
        Command::Serve(args) => serve::run(serve::Plan::serve(*args)?),
        Command::Api(args) => serve::run(serve::Plan::api(*args)?),
        Command::Worker(args) => serve::run(serve::Plan::worker(*args)?),
        Command::Migrate(args) => {
            store::migrate(args.config(Arc::new(payd_ports::TokioClock::new()))?)
        }
        // Exit codes 1 and 2 are the audit's own answers, not an error of `main`.
        Command::Audit(args) => std::process::exit(i32::from(run_audit(&args))),
        Command::ProcessorSim(args) => serve::run_sim(args.config()?),
        Command::Openapi => {
            let document = payd_api::openapi();
            println!("{}", serde_json::to_string_pretty(&document)?);
            Ok(())
        }
        Command::Probe(args) => match probe::probe(&args) {
            Ok(()) => Ok(()),
            Err(why) => {
                eprintln!("payd probe: {why}");
                std::process::exit(1)
            }
        },
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
