//! The payment-gateway scenario of `bench/gateway.sh` (what `bench/k6/gateway.js` does,
//! with the same phases, checks and output keys, so either can drive the script).
//!
//! Three activities share one clock: payments sent from a dedicated thread at their due
//! times (each answered on a one-thread runtime), the chaos script reconfiguring both
//! simulators, and the checker comparing payd's summary with the simulators' every 10 s.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use reqwest::Client;
use reqwest::header::CONTENT_TYPE;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::schedule::Ramp;
use crate::stats::Quantiles;

/// The simulators' admin token (the contest's, which `payd processor-sim` uses by default).
const SIM_TOKEN_HEADER: &str = "X-Rinha-Token";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// payd's base URL.
    #[arg(long, default_value = "http://127.0.0.1:9999")]
    payd: String,
    /// Where payd's gateway backlog gauge is read (`/metrics` of a process that runs the
    /// gateway: a `payd worker` when --payd is an API behind a balancer); default --payd.
    #[arg(long)]
    metrics: Option<String>,
    /// The default processor simulator's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    default: String,
    /// The fallback processor simulator's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8002")]
    fallback: String,
    /// The simulators' admin token.
    #[arg(long, default_value = "123")]
    sim_token: String,
    /// Payments per second at the end of the ramp and during the plateau.
    #[arg(long, default_value_t = 600)]
    peak_per_s: u32,
    /// Client timeout of one `POST /payments`, in ms.
    #[arg(long, default_value_t = 1_500)]
    timeout_ms: u64,
    /// `chaos`: the benchmark (ramp, every chaos phase, 180 s). `outage`: 50 s at the peak
    /// rate with both processors failing from 10 s, slow from 25 s, recovered from 35 s: a
    /// short run for comparing builds on the recovery phase, which holds most of the tail.
    #[arg(long, value_enum, default_value_t = ScenarioName::Chaos)]
    scenario: ScenarioName,
    /// Also writes every `POST /payments` to this file, a line each: ms since the start
    /// when it was sent, its latency in µs, and 1 if it was accepted (for a timeline).
    #[arg(long)]
    samples: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ScenarioName {
    Chaos,
    Outage,
}

/// How each simulator behaves during a phase: its delay before booking, and whether it fails.
#[derive(Clone, Copy, Debug)]
struct SimConfig {
    delay_ms: u64,
    failure: bool,
}

struct Phase {
    at_s: u64,
    name: &'static str,
    default: SimConfig,
    fallback: SimConfig,
}

const fn sim(delay_ms: u64, failure: bool) -> SimConfig {
    SimConfig { delay_ms, failure }
}

const fn phase(at_s: u64, name: &'static str, default: SimConfig, fallback: SimConfig) -> Phase {
    Phase {
        at_s,
        name,
        default,
        fallback,
    }
}

/// The arrival schedule and the chaos phases of a run.
struct Scenario {
    ramp_s: f64,
    hold_s: f64,
    /// In order of `at_s`; the first must leave the default healthy and fast throughout
    /// (the fallback-while-healthy check), the last is the recovery whose drain is timed.
    phases: &'static [Phase],
}

impl Scenario {
    fn named(name: ScenarioName) -> &'static Scenario {
        match name {
            ScenarioName::Chaos => &CHAOS,
            ScenarioName::Outage => &OUTAGE,
        }
    }

    fn ramp(&self, peak_per_s: u32) -> Ramp {
        let peak_per_s = f64::from(peak_per_s.max(1));
        Ramp {
            // A scenario without a ramp starts at the peak.
            start_per_s: if self.ramp_s > 0.0 { 1.0 } else { peak_per_s },
            peak_per_s,
            ramp_s: self.ramp_s,
            hold_s: self.hold_s,
        }
    }

    fn end_s(&self) -> u64 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let end_s = (self.ramp_s + self.hold_s) as u64;
        end_s
    }

    fn phase_at(&self, elapsed: Duration) -> usize {
        self.phases
            .iter()
            .rposition(|p| Duration::from_secs(p.at_s) <= elapsed)
            .unwrap_or(0)
    }
}

/// The last chaos phase ends at 140 s, then 40 s of recovery under load.
#[rustfmt::skip]
const CHAOS: Scenario = Scenario { ramp_s: 120.0, hold_s: 60.0, phases: &[
    phase(0, "healthy", sim(0, false), sim(0, false)),
    phase(30, "default slow 1 s", sim(1_000, false), sim(0, false)),
    phase(50, "default slow 5 s", sim(5_000, false), sim(0, false)),
    phase(70, "default failing", sim(0, true), sim(0, false)),
    phase(90, "fallback failing", sim(0, false), sim(0, true)),
    phase(105, "both failing", sim(0, true), sim(500, true)),
    phase(125, "both slow", sim(2_000, false), sim(1_000, false)),
    phase(140, "recovered", sim(0, false), sim(0, false)),
] };

/// The end of [`CHAOS`] at its peak rate: both processors failing, then both slow, leave
/// a backlog of about 12,000 payments at 600/s.
#[rustfmt::skip]
const OUTAGE: Scenario = Scenario { ramp_s: 0.0, hold_s: 50.0, phases: &[
    phase(0, "healthy", sim(0, false), sim(0, false)),
    phase(10, "both failing", sim(0, true), sim(500, true)),
    phase(25, "both slow", sim(2_000, false), sim(1_000, false)),
    phase(35, "recovered", sim(0, false), sim(0, false)),
] };

/// Consistency checks: every 10 s to the end, over [now - 15 s, now - 2 s].
const CHECK_EVERY_S: u64 = 10;
const CHECK_ATTEMPTS: u32 = 5;

/// One `POST /payments`: when it was sent (phase), how long it took, whether it was a 202.
#[derive(Clone, Copy)]
struct Sample {
    sent_ms: u32,
    phase: usize,
    latency_us: u32,
    accepted: bool,
}

/// The JSON line printed at the end (the keys of `bench/k6/gateway.js`'s summary).
#[derive(Debug, Serialize)]
struct Report {
    post_p50_ms: f64,
    post_p99_ms: f64,
    summary_p50_ms: f64,
    summary_p99_ms: f64,
    failed_requests: u64,
    accepted: u64,
    inconsistencies: u64,
    inconsistencies_transient: u64,
    fallback_while_default_healthy: u64,
    backlog_drain_ms: u64,
    /// Name, p50, p99 and max in ms, per chaos phase.
    post_by_phase: Vec<(&'static str, f64, f64, f64)>,
    /// The latest any payment was sent after its due time, in ms (the generator's own lag).
    send_lag_max_ms: f64,
    /// Each persistent inconsistency: the window, both sides at the last look and again
    /// after the run (equal then: payd recorded late; still different: a booking counted
    /// in the wrong place), with the seconds that differ.
    mismatches: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Totals {
    total_requests: u64,
    total_amount: f64,
}

impl Totals {
    fn cents(&self) -> (u64, i64) {
        // The simulators answer amounts as JSON numbers; cents compare exactly.
        #[allow(clippy::cast_possible_truncation)]
        let cents = (self.total_amount * 100.0).round() as i64;
        (self.total_requests, cents)
    }
}

#[derive(Deserialize)]
struct PaydSummary {
    default: Totals,
    fallback: Totals,
}

struct Ctx {
    client: Client,
    args: Args,
    scenario: &'static Scenario,
    start: Instant,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let report = runtime.block_on(scenario(args))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn scenario(args: Args) -> anyhow::Result<Report> {
    let scenario = Scenario::named(args.scenario);
    let ramp = scenario.ramp(args.peak_per_s);
    let ctx = Arc::new(Ctx {
        client: Client::builder()
            .pool_max_idle_per_host(1_024)
            .build()
            .context("building the HTTP client")?,
        args,
        scenario,
        start: Instant::now(),
    });
    // Created now, so that a path that cannot be written fails before the run, not after.
    let samples_file = match &ctx.args.samples {
        Some(path) => Some(
            std::fs::File::create(path)
                .with_context(|| format!("creating the samples file {}", path.display()))?,
        ),
        None => None,
    };
    let samples = Arc::new(Mutex::new(Vec::with_capacity(80_000)));
    let chaos = tokio::spawn(chaos(ctx.clone()));
    let checks = tokio::spawn(checks(ctx.clone()));

    // Sleeping on a thread of its own, not on tokio's timer (1 ms ticks), sends each payment
    // within a few µs of its due time, evenly spaced like k6's arrival-rate executor.
    let runtime = tokio::runtime::Handle::current();
    let sender = {
        let (ctx, samples) = (ctx.clone(), samples.clone());
        std::thread::Builder::new()
            .name("payd-bench-send".to_owned())
            .spawn(move || {
                let mut sent = Vec::with_capacity(80_000);
                let mut lag_max = Duration::ZERO;
                for k in 0.. {
                    let Some(due_s) = ramp.due_s(k) else { break };
                    let due = ctx.start + Duration::from_secs_f64(due_s);
                    let now = Instant::now();
                    match due.checked_duration_since(now) {
                        Some(wait) => std::thread::sleep(wait),
                        None => lag_max = lag_max.max(now - due),
                    }
                    sent.push(runtime.spawn(pay(ctx.clone(), samples.clone())));
                }
                (sent, lag_max)
            })?
    };
    let (sent, lag_max) = tokio::task::spawn_blocking(move || sender.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the sending thread panicked"))?;
    for payment in sent {
        payment.await?;
    }
    let (fallback_while_default_healthy, backlog_drain_ms) = chaos.await??;
    let checked = checks.await??;
    let mut mismatches = Vec::new();
    for mismatch in &checked.mismatches {
        mismatches.push(ctx.explain(mismatch).await?);
    }

    let samples = std::mem::take(
        &mut *samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    if let Some(file) = samples_file
        && let Err(error) = write_samples(file, &samples)
    {
        // The run's report matters more than its timeline: warn, and still print it.
        eprintln!("could not write the samples: {error}");
    }
    let accepted = samples.iter().filter(|s| s.accepted).count() as u64;
    let failed_posts = samples.len() as u64 - accepted;
    let post = Quantiles::of(samples.iter().map(|s| s.latency_us).collect());
    let summary = Quantiles::of(checked.summary_latencies_us);
    let post_by_phase = scenario
        .phases
        .iter()
        .enumerate()
        .map(|(i, phase)| {
            let q = Quantiles::of(
                samples
                    .iter()
                    .filter(|s| s.phase == i)
                    .map(|s| s.latency_us)
                    .collect(),
            );
            (phase.name, q.p50_ms, q.p99_ms, q.max_ms)
        })
        .collect();
    Ok(Report {
        post_p50_ms: post.p50_ms,
        post_p99_ms: post.p99_ms,
        summary_p50_ms: summary.p50_ms,
        summary_p99_ms: summary.p99_ms,
        failed_requests: failed_posts + checked.failed,
        accepted,
        inconsistencies: checked.inconsistencies,
        inconsistencies_transient: checked.transient,
        fallback_while_default_healthy,
        backlog_drain_ms,
        post_by_phase,
        send_lag_max_ms: lag_max.as_secs_f64() * 1_000.0,
        mismatches,
    })
}

fn write_samples(file: std::fs::File, samples: &[Sample]) -> std::io::Result<()> {
    use std::io::Write;
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.sent_ms);
    let mut out = std::io::BufWriter::new(file);
    for s in sorted {
        writeln!(
            out,
            "{} {} {}",
            s.sent_ms,
            s.latency_us,
            u8::from(s.accepted)
        )?;
    }
    out.flush()
}

fn micros(elapsed: Duration) -> u32 {
    u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX)
}

/// Sends one payment and records its latency: from sending the request to reading the whole
/// response, the span of k6's `http_req_duration`.
async fn pay(ctx: Arc<Ctx>, samples: Arc<Mutex<Vec<Sample>>>) {
    let body =
        json!({ "correlationId": uuid::Uuid::new_v4().to_string(), "amount": 19.9 }).to_string();
    let sent = Instant::now();
    let answer = ctx
        .client
        .post(format!("{}/payments", ctx.args.payd))
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .timeout(Duration::from_millis(ctx.args.timeout_ms))
        .send()
        .await;
    let accepted = match answer {
        Ok(response) => {
            let status = response.status();
            response.bytes().await.is_ok() && status == reqwest::StatusCode::ACCEPTED
        }
        Err(_) => false,
    };
    let since_start = sent.duration_since(ctx.start);
    let sample = Sample {
        sent_ms: u32::try_from(since_start.as_millis()).unwrap_or(u32::MAX),
        phase: ctx.scenario.phase_at(since_start),
        latency_us: micros(sent.elapsed()),
        accepted,
    };
    samples
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(sample);
}

impl Ctx {
    async fn sleep_until_s(&self, at_s: u64) {
        tokio::time::sleep_until((self.start + Duration::from_secs(at_s)).into()).await;
    }

    async fn configure(&self, url: &str, config: SimConfig) -> anyhow::Result<()> {
        for (path, body) in [
            ("delay", json!({ "delay": config.delay_ms })),
            ("failure", json!({ "failure": config.failure })),
        ] {
            self.client
                .put(format!("{url}/admin/configurations/{path}"))
                .header(SIM_TOKEN_HEADER, &self.args.sim_token)
                .json(&body)
                .send()
                .await?
                .error_for_status()
                .with_context(|| format!("configuring {url}"))?;
        }
        Ok(())
    }

    /// A simulator's admin summary over `[from, to]` (everything without a window).
    async fn sim_totals(&self, url: &str, window: Option<&str>) -> anyhow::Result<(u64, i64)> {
        let totals: Totals = self
            .client
            .get(format!(
                "{url}/admin/payments-summary{}",
                window.unwrap_or("")
            ))
            .header(SIM_TOKEN_HEADER, &self.args.sim_token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(totals.cents())
    }

    /// Both simulators' totals over a window.
    async fn sim_sides(&self, window: &str) -> anyhow::Result<Sides> {
        Ok([
            self.sim_totals(&self.args.default, Some(window)).await?,
            self.sim_totals(&self.args.fallback, Some(window)).await?,
        ])
    }

    /// payd's totals over a window.
    async fn payd_sides(&self, window: &str) -> anyhow::Result<Sides> {
        let ours: PaydSummary = self
            .client
            .get(format!("{}/payments-summary{window}", self.args.payd))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok([ours.default.cents(), ours.fallback.cents()])
    }

    /// One line on a persistent inconsistency, looked at again now that the run is over:
    /// a window that agrees now was recorded late by payd; one that still differs has a
    /// booking counted in another second (listed) than the processor's.
    async fn explain(&self, m: &Mismatch) -> anyhow::Result<String> {
        let whole = window(m.from_ms, m.to_ms);
        let (ours, theirs) = (
            self.payd_sides(&whole).await?,
            self.sim_sides(&whole).await?,
        );
        let mut line = format!(
            "check at {} s, window [{}, {}] ms: payd {:?}, processors {:?} at the last look;              after the run payd {ours:?}, processors {theirs:?}",
            m.at_s, m.from_ms, m.to_ms, m.ours, m.theirs
        );
        if ours == theirs {
            line.push_str(": equal now (recorded late)");
            return Ok(line);
        }
        line.push_str(": still different in seconds");
        let mut second_ms = m.from_ms.div_euclid(1_000) * 1_000;
        while second_ms <= m.to_ms {
            let second = window(second_ms.max(m.from_ms), (second_ms + 999).min(m.to_ms));
            let (ours, theirs) = (
                self.payd_sides(&second).await?,
                self.sim_sides(&second).await?,
            );
            if ours != theirs {
                line.push_str(&format!(
                    " {second_ms} (payd {ours:?}, processors {theirs:?})"
                ));
            }
            second_ms += 1_000;
        }
        Ok(line)
    }

    /// payd's `payd_gateway_backlog` gauge.
    async fn backlog(&self) -> anyhow::Result<f64> {
        let text = self
            .client
            .get(format!(
                "{}/metrics",
                self.args.metrics.as_deref().unwrap_or(&self.args.payd)
            ))
            .send()
            .await?
            .text()
            .await?;
        text.lines()
            .find_map(|line| line.strip_prefix("payd_gateway_backlog "))
            .and_then(|value| value.trim().parse().ok())
            .context("payd_gateway_backlog is missing from /metrics")
    }
}

/// Runs the phases. Returns what the fallback booked during the healthy phase (it must be
/// nothing) and how long the backlog took to drain after the last phase began.
async fn chaos(ctx: Arc<Ctx>) -> anyhow::Result<(u64, u64)> {
    let mut fallback_while_healthy = 0;
    let mut drain_ms = 0;
    let phases = ctx.scenario.phases;
    for (i, phase) in phases.iter().enumerate() {
        ctx.sleep_until_s(phase.at_s).await;
        ctx.configure(&ctx.args.default, phase.default).await?;
        ctx.configure(&ctx.args.fallback, phase.fallback).await?;
        eprintln!("chaos: {}", phase.name);
        if i == 0 {
            // The default is healthy and fast for this whole phase.
            let before = ctx.sim_totals(&ctx.args.fallback, None).await?.0;
            ctx.sleep_until_s(phases[1].at_s.saturating_sub(1)).await;
            fallback_while_healthy = ctx.sim_totals(&ctx.args.fallback, None).await?.0 - before;
        }
        if i == phases.len() - 1 {
            let began = Instant::now();
            while ctx.backlog().await? > 100.0 && began.elapsed() < Duration::from_secs(40) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            drain_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        }
    }
    Ok((fallback_while_healthy, drain_ms))
}

#[derive(Default)]
struct Checked {
    summary_latencies_us: Vec<u32>,
    failed: u64,
    inconsistencies: u64,
    transient: u64,
    mismatches: Vec<Mismatch>,
}

/// Per processor (default, fallback): payments and cents.
type Sides = [(u64, i64); 2];

/// A window whose totals still differed at the last look.
struct Mismatch {
    at_s: u64,
    from_ms: i64,
    to_ms: i64,
    ours: Sides,
    theirs: Sides,
}

/// Every 10 s: payd's summary over [now - 15 s, now - 2 s] must equal the simulators' for
/// the same window, per processor, in count and cents. A mismatch is looked at again up to
/// four times, 300 ms apart (a booking may be in flight at the edge of the window): the
/// first look counts as transient, five as an inconsistency.
async fn checks(ctx: Arc<Ctx>) -> anyhow::Result<Checked> {
    let mut checked = Checked::default();
    let end_s = ctx.scenario.end_s();
    for at_s in (CHECK_EVERY_S..=end_s).step_by(CHECK_EVERY_S as usize) {
        ctx.sleep_until_s(at_s).await;
        let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
        let (from_ms, to_ms) = (now_ms - 15_000, now_ms - 2_000);
        let window = window(from_ms, to_ms);
        let mut same = false;
        let mut last = None;
        for attempt in 0..CHECK_ATTEMPTS {
            let asked = Instant::now();
            let answer = ctx
                .client
                .get(format!("{}/payments-summary{window}", ctx.args.payd))
                .send()
                .await;
            let ours = match answer {
                Ok(response) if response.status().is_success() => {
                    let body = response.json::<PaydSummary>().await;
                    checked.summary_latencies_us.push(micros(asked.elapsed()));
                    body.ok()
                }
                _ => None,
            };
            let Some(ours) = ours else {
                checked.failed += 1;
                continue;
            };
            let ours = [ours.default.cents(), ours.fallback.cents()];
            let theirs = ctx.sim_sides(&window).await?;
            same = ours == theirs;
            if same {
                break;
            }
            last = Some((ours, theirs));
            if attempt == 0 {
                checked.transient += 1;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if !same {
            checked.inconsistencies += 1;
            if let Some((ours, theirs)) = last {
                checked.mismatches.push(Mismatch {
                    at_s,
                    from_ms,
                    to_ms,
                    ours,
                    theirs,
                });
            }
        }
    }
    Ok(checked)
}

fn window(from_ms: i64, to_ms: i64) -> String {
    format!(
        "?from={}&to={}",
        payd_domain::timestamp::format_ms(from_ms),
        payd_domain::timestamp::format_ms(to_ms)
    )
}
