//! `sparetire bench serve`: a serving benchmark and load generator for any OpenAI-compatible
//! server (`sparetire serve`, llama-server). At each concurrency level, that many clients send
//! streaming `POST /v1/completions` requests back to back, each over its own keep-alive
//! connection; the level's row gives the total generated tokens/s and percentiles of time to
//! first token (TTFT), time per output token after the first (TPOT) and end-to-end latency.

mod client;
mod plot;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use clap::Args;
use hyper::body::Bytes;

use crate::usage;
use client::{Client, Target};
use stats::{LevelRow, Outcome};

/// Prompts used without `--prompt`/`--prompts`: story openings that an instruct model continues
/// well past a few dozen tokens at temperature 0 (there is no portable `ignore_eos`).
const DEFAULT_PROMPTS: [&str; 4] = [
    "Once upon a time, in a small village by the sea, there lived",
    "The history of the printing press begins",
    "Here is a detailed recipe for a traditional apple pie. First,",
    "The three most important lessons I learned while hiking across the mountains were",
];

/// `bench serve` flags.
#[derive(Args, Debug)]
pub struct BenchServeArgs {
    /// The server (its root; `/v1/completions` is appended)
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Concurrent clients at each level, comma-separated
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,4,8,16",
        value_parser = clap::value_parser!(u32).range(1..=4096)
    )]
    pub concurrency: Vec<u32>,
    /// Requests each client sends back to back at each level
    #[arg(long = "requests-per-client", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub requests_per_client: u32,
    /// Instead of a count: seconds each level lasts (clients start requests until then; the
    /// requests under way are finished and counted)
    #[arg(long, conflicts_with = "requests_per_client")]
    pub duration: Option<f64>,
    /// Tokens to generate per request (`max_tokens`)
    #[arg(short = 'n', long = "max-tokens", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: u32,
    /// The prompt of every request (default: a few story openings, in turn)
    #[arg(short = 'p', long, conflicts_with = "prompts")]
    pub prompt: Option<String>,
    /// A file of prompts, one per line, used in turn
    #[arg(short = 'f', long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// Send `Authorization: Bearer KEY`
    #[arg(long = "api-key")]
    pub api_key: Option<String>,
    /// Seconds a request may take before it counts as failed
    #[arg(long, default_value_t = 300.0)]
    pub timeout: f64,
    /// Unmeasured requests sent before the sweep (warms caches; fails fast if the server is down)
    #[arg(long, default_value_t = 1)]
    pub warmup: u32,
    /// Name of this run in the rows and the plot legend (default: the URL)
    #[arg(long)]
    pub label: Option<String>,
    /// Write a PNG of throughput and latency against concurrency
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Print a JSON array of rows instead of the table
    #[arg(long)]
    pub json: bool,
    /// Measure nothing: print and plot the rows of earlier `--json` outputs (repeatable; runs
    /// are told apart by their labels)
    #[arg(long = "from-json", value_name = "FILE", conflicts_with_all = ["duration", "prompt", "prompts"])]
    pub from_json: Vec<PathBuf>,
}

/// How long each client of a level keeps sending.
#[derive(Clone, Copy, Debug)]
enum Plan {
    /// This many requests each.
    Requests(u32),
    /// Start requests until this instant.
    Until(Instant),
}

/// Runs `sparetire bench serve`.
pub fn main(a: BenchServeArgs) -> Result<()> {
    if let Some(p) = &a.plot {
        let png = p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
        if !png {
            return Err(usage(format!(
                "--plot writes a PNG: give a file name ending in .png, not {}",
                p.display()
            )));
        }
    }
    let rows = if a.from_json.is_empty() {
        measure(&a)?
    } else {
        let mut rows = Vec::new();
        for f in &a.from_json {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let more: Vec<LevelRow> = serde_json::from_str(&text).with_context(|| {
                format!("{}: not a JSON array of `bench serve` rows", f.display())
            })?;
            rows.extend(more);
        }
        if !a.json {
            print_header();
            rows.iter().for_each(print_row);
        }
        rows
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    if let Some(p) = &a.plot {
        plot::draw(p, &rows)?;
        eprintln!("sparetire: wrote {}", p.display());
    }
    Ok(())
}

/// Sweeps the concurrency levels against the server; prints the table rows as they come.
fn measure(a: &BenchServeArgs) -> Result<Vec<LevelRow>> {
    if a.duration
        .is_some_and(|d| !(d.is_finite() && d > 0.0 && d <= 86_400.0))
    {
        return Err(usage("--duration must be between 0 and 86400 seconds"));
    }
    if !(a.timeout.is_finite() && a.timeout > 0.0 && a.timeout <= 86_400.0) {
        return Err(usage("--timeout must be between 0 and 86400 seconds"));
    }
    let target = Arc::new(Target::parse(&a.url, a.api_key.clone()).map_err(usage)?);
    let label = a.label.clone().unwrap_or_else(|| a.url.clone());
    let bodies = Arc::new(request_bodies(&prompts(a)?, a.max_tokens));
    let timeout = Duration::from_secs_f64(a.timeout);
    // One thread is plenty to drive a few hundred streams, and leaves the cores to the server.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let mut client = Client::new(target.clone(), timeout);
        for i in 0..a.warmup as usize {
            let o = client.complete(bodies[i % bodies.len()].clone()).await;
            if let Some(e) = o.error {
                return Err(anyhow!(
                    "warm-up request to {} failed: {e}",
                    target.endpoint()
                ));
            }
        }
        if !a.json {
            print_header();
        }
        let mut rows = Vec::new();
        for &c in &a.concurrency {
            let plan = match a.duration {
                Some(d) => Plan::Until(Instant::now() + Duration::from_secs_f64(d)),
                None => Plan::Requests(a.requests_per_client),
            };
            eprintln!(
                "sparetire: {c} concurrent client(s) against {}",
                target.endpoint()
            );
            let (outcomes, wall) = level(&target, &bodies, c as usize, plan, timeout).await;
            let row = LevelRow::summarize(&label, c as usize, &outcomes, wall);
            report_problems(&row, &outcomes, a.max_tokens);
            if !a.json {
                print_row(&row);
            }
            rows.push(row);
        }
        Ok(rows)
    })
}

/// One level: `concurrency` clients, each sending requests back to back as `plan` says.
/// Returns every outcome and the wall time from the start to the last response's end.
async fn level(
    target: &Arc<Target>,
    bodies: &Arc<Vec<Bytes>>,
    concurrency: usize,
    plan: Plan,
    timeout: Duration,
) -> (Vec<Outcome>, Duration) {
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..concurrency {
        let (target, bodies) = (target.clone(), bodies.clone());
        tasks.spawn(async move {
            let mut client = Client::new(target, timeout);
            let mut outcomes = Vec::new();
            for k in 0usize.. {
                let more = match plan {
                    Plan::Requests(n) => k < n as usize,
                    Plan::Until(end) => Instant::now() < end,
                };
                if !more {
                    break;
                }
                // Clients take the prompts in turn, so neighbours do not send the same one.
                let body = bodies[(i + k * concurrency) % bodies.len()].clone();
                let o = client.complete(body).await;
                if o.error.is_some() {
                    // A dead server must not turn the loop into a busy spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                outcomes.push(o);
            }
            outcomes
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(o) => all.extend(o),
            Err(e) => all.push(Outcome::failed(format!("client task: {e}"), t0.elapsed())),
        }
    }
    (all, t0.elapsed())
}

fn prompts(a: &BenchServeArgs) -> Result<Vec<String>> {
    if let Some(p) = &a.prompt {
        return Ok(vec![p.clone()]);
    }
    let Some(f) = &a.prompts else {
        return Ok(DEFAULT_PROMPTS.iter().map(|&p| p.to_owned()).collect());
    };
    let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    if lines.is_empty() {
        return Err(usage(format!("{} has no prompts", f.display())));
    }
    Ok(lines)
}

/// The JSON body of each prompt's request: streamed, greedy, with usage in the last chunk.
fn request_bodies(prompts: &[String], max_tokens: u32) -> Vec<Bytes> {
    prompts
        .iter()
        .map(|p| {
            let v = serde_json::json!({
                "prompt": p,
                "max_tokens": max_tokens,
                "temperature": 0,
                "stream": true,
                "stream_options": {"include_usage": true},
            });
            Bytes::from(v.to_string())
        })
        .collect()
}

/// Tells stderr about failures (with the first reason) and about answers cut short by the model.
fn report_problems(row: &LevelRow, outcomes: &[Outcome], max_tokens: u32) {
    if let Some(e) = outcomes.iter().find_map(|o| o.error.as_deref()) {
        eprintln!(
            "sparetire: warning: {} of {} requests failed at concurrency {}; the first: {e}",
            row.failures, row.requests, row.concurrency
        );
    }
    let ok = row.requests - row.failures;
    if ok > 0 {
        let mean = row.generated_tokens as f64 / ok as f64;
        if mean < max_tokens as f64 {
            eprintln!(
                "sparetire: note: requests generated {mean:.1} tokens on average, fewer than --max-tokens {max_tokens} (the model ended some); tok/s counts the tokens generated"
            );
        }
    }
}

fn print_header() {
    println!("| run | clients | requests | failed | gen tok/s | req/s | TTFT p50 / p90 / p99 ms | TPOT p50 / p90 / p99 ms | latency p50 / p99 ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
}

fn print_row(r: &LevelRow) {
    let f = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |x| format!("{x:.1}"));
    println!(
        "| {} | {} | {} | {} | {:.1} | {:.2} | {} / {} / {} | {} / {} / {} | {} / {} |",
        r.label,
        r.concurrency,
        r.requests,
        r.failures,
        r.tokens_per_second,
        r.requests_per_second,
        f(r.ttft_p50_ms),
        f(r.ttft_p90_ms),
        f(r.ttft_p99_ms),
        f(r.tpot_p50_ms),
        f(r.tpot_p90_ms),
        f(r.tpot_p99_ms),
        f(r.latency_p50_ms),
        f(r.latency_p99_ms),
    );
}
