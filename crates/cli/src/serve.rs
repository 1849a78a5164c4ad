//! `sparetire serve`: the OpenAI-compatible HTTP server.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result};
use clap::Args;
use sparetire_server::worker::KvBudget;
use sparetire_server::{serve, ServeConfig};

use crate::args::ModelArgs;
use crate::{store, usage};

/// `serve` flags (llama-server's names).
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default; anything else should have an API key)
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0 = any free port, printed at start)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY`
    #[arg(long = "api-key", conflicts_with = "api_key_file")]
    pub api_key: Option<String>,
    /// Read the API key from a file (first line)
    #[arg(long = "api-key-file")]
    pub api_key_file: Option<std::path::PathBuf>,
    /// Requests that may wait before new ones are refused with 429
    #[arg(long = "max-queue", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_queue: u32,
    /// Sequences generated at once (continuous batching)
    #[arg(long = "parallel", visible_alias = "np", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub parallel: u32,
    /// Memory for the shared KV cache, in MiB (default: room for --parallel full contexts of -c;
    /// sequences take 16-position blocks as they grow, so less memory serves many short requests)
    #[arg(long = "kv-memory", value_parser = clap::value_parser!(u64).range(1..=16_777_216))]
    pub kv_memory: Option<u64>,
    /// After SIGTERM/SIGINT, seconds running requests may take to finish before they are cancelled
    #[arg(long = "shutdown-timeout", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub shutdown_timeout: u64,
    /// Model name reported by /v1/models (default: the store name or file stem)
    #[arg(long = "alias")]
    pub alias: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Runs `sparetire serve`.
pub fn main(a: ServeArgs) -> Result<()> {
    let api_key = match (&a.api_key, &a.api_key_file) {
        (Some(k), _) => Some(k.clone()),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading API key file {}", f.display()))?;
            let key = text.lines().next().unwrap_or("").trim().to_owned();
            if key.is_empty() {
                return Err(usage(format!("API key file {} is empty", f.display())));
            }
            Some(key)
        }
        (None, None) => None,
    };
    if !a.host.is_loopback() && api_key.is_none() {
        eprintln!(
            "sparetire: WARNING: listening on {} without an API key: anyone who can reach this address can use the model. Use --api-key or --api-key-file.",
            a.host
        );
    }
    // Resolve (and fetch) the model before binding, so errors come before "listening".
    let resolved = store::resolve_named(a.model.model.as_deref())?;
    let path = resolved.path;
    let model_name = a.alias.clone().or(resolved.name).unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    });
    let mut margs = a.model.clone();
    margs.model = Some(path.display().to_string());
    // Under mpirun only rank 0 serves HTTP; the other ranks compute its steps (and never return).
    if sparetire_cluster::world()?.is_some_and(|c| c.rank() != 0) {
        margs.load()?;
    }
    let cfg = ServeConfig {
        addr: SocketAddr::new(a.host, a.port),
        model_name,
        api_key,
        max_queue: a.max_queue as usize,
        parallel: a.parallel as usize,
        kv_budget: match a.kv_memory {
            Some(mib) => KvBudget::Bytes((mib as usize).saturating_mul(1 << 20)),
            None => KvBudget::FullContexts,
        },
        shutdown_grace: std::time::Duration::from_secs(a.shutdown_timeout),
    };
    let load = Box::new(move || {
        // A testing aid: hold the model back to observe the loading state (/health 503).
        if let Some(ms) = std::env::var("SPARETIRE_TEST_LOAD_DELAY_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        let (engine, _) = margs.load().map_err(|e| format!("{e:#}"))?;
        let n_ctx = margs.n_ctx(&engine);
        Ok((engine, n_ctx))
    });
    serve(cfg, load, |addr| {
        eprintln!("sparetire: listening on http://{addr}")
    })
    .with_context(|| format!("serving on {}:{}", a.host, a.port))?;
    Ok(())
}
