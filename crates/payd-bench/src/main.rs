//! `payd-bench`: load generators for payd's benchmarks (`bench/*.sh`).
//!
//! - [`schedule`]: when each request of an open-loop load is due (a linear ramp, then a
//!   plateau), as a pure function.
//! - [`stats`]: latency quantiles.
//! - [`gateway`]: the scenarios of `bench/gateway.sh`: `chaos` (payments ramping from 1 to
//!   600/s through chaos phases on two `payd processor-sim`) and `outage` (its last phases,
//!   in 50 s), with a summary-vs-processors check every 10 s and the backlog's drain timed;
//!   prints one JSON line, and optionally every payment's send time and latency to a file.
//!
//! Why our own generator: the benchmark shares two cores with payd and both simulators, and
//! what it measures is a 2 ms tail, so the generator should take as little of those cores,
//! and add as little scheduling of its own, as it can. k6 runs every virtual user's
//! JavaScript on the Go runtime (about a sixth of a core at 600 requests/s, by `ps`). This
//! one sends from one thread at each request's due time, answers on a one-thread runtime,
//! and measures the same span as k6's `http_req_duration` (request sent to body read).

mod gateway;
mod schedule;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "payd-bench", about = "Load generators for payd's benchmarks.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The payment-gateway scenario (bench/gateway.sh): ramp, chaos, consistency checks.
    Gateway(gateway::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Gateway(args) => gateway::run(args),
    }
}
