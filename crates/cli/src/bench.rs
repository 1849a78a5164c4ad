//! `sparetire bench`: prompt-processing and generation speed, shaped like llama-bench,
//! with the weight-bandwidth roofline next to it.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use sparetire_models::{KvType, KvTypes, Logits, Model};
use sparetire_runtime::{Engine, PREFILL_CHUNK};

use crate::args::default_threads;
use crate::{store, usage};

/// `bench` flags (llama-bench's names).
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// `bench serve`: a running server instead of a model file
    #[command(subcommand)]
    pub command: Option<BenchCmd>,
    /// Model: a GGUF file or a store name (default: smollm2)
    #[arg(short = 'm', long = "model", value_name = "FILE|NAME")]
    pub model: Option<String>,
    /// Prompt sizes to test, comma-separated (0 = none)
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Generation lengths to test, comma-separated (0 = none)
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Thread counts, comma-separated (default: the number of physical cores)
    #[arg(short = 't', long = "threads", value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Tokens already in the KV cache before each test, comma-separated
    #[arg(
        short = 'd',
        long = "n-depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    pub depth: Vec<usize>,
    /// Repetitions of each test
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: usize,
    /// KV cache types of keys to test, comma-separated (also -ctk): f16, q8_0, q5_1, q5_0, q4_1, q4_0
    #[arg(long = "cache-type-k", value_delimiter = ',', default_value = "f16", value_parser = crate::args::parse_kv_type)]
    pub cache_type_k: Vec<KvType>,
    /// KV cache types of values to test, comma-separated (also -ctv)
    #[arg(long = "cache-type-v", value_delimiter = ',', default_value = "f16", value_parser = crate::args::parse_kv_type)]
    pub cache_type_v: Vec<KvType>,
    /// Print a JSON array of rows with llama-bench's field names
    #[arg(long, short = 'o', value_parser = ["json", "md"], default_value = "md", hide = true)]
    pub output: String,
    /// Print JSON (same as -o json)
    #[arg(long)]
    pub json: bool,
    /// Measure the machine's memory read bandwidth instead
    #[arg(long)]
    pub memory: bool,
    /// Where the model runs (--device, --gpu-layers)
    #[command(flatten)]
    pub device: crate::device::DeviceArgs,
    /// Under mpirun: how ranks share the model (pp or tp)
    #[arg(long = "split", value_enum, default_value_t = crate::cluster::Split::Pp)]
    pub split: crate::cluster::Split,
    /// Under mpirun: each rank's share of the layers (pp), e.g. 1,1,2
    #[arg(long = "rank-weights", value_delimiter = ',', value_name = "W,W,...")]
    pub rank_weights: Option<Vec<f64>>,
    /// Under mpirun with --split tp: activations between ranks as f32, q8 or q8-f16
    #[arg(long = "tp-wire", value_enum, default_value_t = crate::cluster::Wire::F32)]
    pub tp_wire: crate::cluster::Wire,
}

/// What `bench` measures other than the model itself.
#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Throughput and latency of a running OpenAI-compatible server at rising concurrency
    Serve(crate::bench_serve::BenchServeArgs),
}

/// Runs `sparetire bench`.
pub fn main(a: BenchArgs) -> Result<()> {
    if let Some(BenchCmd::Serve(s)) = a.command {
        return crate::bench_serve::main(s);
    }
    let threads = if a.threads.is_empty() {
        vec![default_threads()]
    } else {
        a.threads.clone()
    };
    if threads.contains(&0) || a.reps == 0 {
        return Err(usage("thread counts and -r must be at least 1"));
    }
    let json = a.json || a.output == "json";
    if a.memory {
        return memory(&threads, json);
    }
    let path = store::resolve(a.model.as_deref())?;
    let mut rows = Vec::new();
    let mut header = !json;
    if threads.len() > 1 && sparetire_cluster::world()?.is_some() {
        return Err(crate::usage(
            "under mpirun, bench takes one thread count per rank (-t N)",
        ));
    }
    let kv_types: Vec<KvTypes> = a
        .cache_type_k
        .iter()
        .flat_map(|&k| a.cache_type_v.iter().map(move |&v| KvTypes { k, v }))
        .collect();
    let show_kv = kv_types.iter().any(|t| !t.is_f16());
    for &t in &threads {
        let mut engine =
            Engine::load(&path, t).with_context(|| format!("loading {}", path.display()))?;
        for types in &kv_types {
            engine
                .set_kv_types(*types)
                .with_context(|| format!("KV cache {types}"))?;
        }
        let engine = crate::device::place(engine, &path, &a.device)?;
        let mut engine =
            crate::cluster::join_as(engine, a.split, a.rank_weights.as_deref(), a.tp_wire)?;
        let info = ModelInfo::of(&engine, &path);
        // After joining: under mpirun only rank 0 gets here and prints.
        if std::mem::take(&mut header) {
            let kv = if show_kv { " type_k | type_v |" } else { "" };
            let kv_sep = if show_kv { " --- | --- |" } else { "" };
            println!("| model | size | params | threads |{kv} test | t/s | weight GB/s |");
            println!("| --- | ---: | ---: | ---: |{kv_sep} ---: | ---: | ---: |");
        }
        for &types in &kv_types {
            engine.set_kv_types(types)?;
            for &d in &a.depth {
                let mut tests: Vec<(usize, usize)> = a
                    .n_prompt
                    .iter()
                    .filter(|&&p| p > 0)
                    .map(|&p| (p, 0))
                    .collect();
                tests.extend(a.n_gen.iter().filter(|&&n| n > 0).map(|&n| (0, n)));
                for (np, ng) in tests {
                    let samples = run_test(&engine, d, np, ng, a.reps)?;
                    let n = (np + ng) as f64;
                    let ts: Vec<f64> = samples.iter().map(|&ns| n * 1e9 / ns as f64).collect();
                    let (avg_ts, sd_ts) = mean_sd(&ts);
                    let (avg_ns, sd_ns) =
                        mean_sd(&samples.iter().map(|&x| x as f64).collect::<Vec<_>>());
                    let bw = if ng > 0 {
                        info.bytes_per_token as f64 * avg_ts / 1e9
                    } else {
                        0.0
                    };
                    let test = if np > 0 {
                        format!("pp{np}")
                    } else {
                        format!("tg{ng}")
                    };
                    let test = if d > 0 {
                        format!("{test} @ d{d}")
                    } else {
                        test
                    };
                    if !json {
                        let kv = if show_kv {
                            format!(" {} | {} |", types.k, types.v)
                        } else {
                            String::new()
                        };
                        println!(
                        "| {} | {:.1} MiB | {:.1} M | {t} |{kv} {test} | {avg_ts:.2} ± {sd_ts:.2} | {} |",
                        info.name,
                        info.size as f64 / (1 << 20) as f64,
                        info.n_params as f64 / 1e6,
                        if ng > 0 { format!("{bw:.1}") } else { "-".into() }
                    );
                    }
                    rows.push(json!({
                        "model_filename": path.display().to_string(),
                        "model_type": info.model_type,
                        "model_size": info.size,
                        "model_n_params": info.n_params,
                        "n_batch": PREFILL_CHUNK,
                        "n_ubatch": PREFILL_CHUNK,
                        "n_threads": t,
                        "type_k": types.k.name(),
                        "type_v": types.v.name(),
                        "n_prompt": np,
                        "n_gen": ng,
                        "n_depth": d,
                        "avg_ns": avg_ns as u64,
                        "stddev_ns": sd_ns as u64,
                        "avg_ts": avg_ts,
                        "stddev_ts": sd_ts,
                        "samples_ns": samples,
                        "samples_ts": ts,
                        "weight_bytes_per_token": info.bytes_per_token,
                        "weight_gbps": if ng > 0 { json!(bw) } else { json!(null) },
                        "peak_rss_bytes": peak_rss_bytes(),
                        "device": crate::device::report().map_or_else(|| "cpu".to_owned(), |r| r.0),
                        "device_memory_bytes": crate::device::report().map(|r| r.2),
                    }));
                }
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "\nweight GB/s = weight bytes read per generated token x tok/s; compare with `sparetire bench --memory`"
        );
        if let Some(b) = peak_rss_bytes() {
            println!("peak RSS: {:.1} MiB", b as f64 / (1 << 20) as f64);
        }
    }
    Ok(())
}

/// The process's peak resident memory so far (`VmHWM`), in bytes.
fn peak_rss_bytes() -> Option<u64> {
    sparetire_cluster::memory::peak_resident_mib().map(|m| (m * (1 << 20) as f64) as u64)
}

struct ModelInfo {
    name: String,
    model_type: String,
    size: u64,
    n_params: u64,
    /// Bytes of weights one decode step reads: every matrix once, one embedding row.
    bytes_per_token: u64,
}

impl ModelInfo {
    fn of(engine: &Engine, path: &std::path::Path) -> ModelInfo {
        let f = engine.file();
        let hp = engine.model().hparams();
        let mut bytes = 0u64;
        let mut n_params = 0u64;
        let tied = f.tensor("output.weight").is_none();
        for t in f.tensors() {
            n_params += t.n_elements();
            if t.name == "token_embd.weight" {
                bytes += if tied {
                    t.n_bytes
                } else {
                    t.n_bytes / hp.n_vocab as u64
                };
            } else {
                bytes += t.n_bytes;
            }
        }
        let ftype = f
            .tensors()
            .iter()
            .filter(|t| t.name.starts_with("blk."))
            .map(|t| t.ty.name())
            .fold(
                std::collections::BTreeMap::<&str, usize>::new(),
                |mut m, ty| {
                    *m.entry(ty).or_default() += 1;
                    m
                },
            )
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(ty, _)| ty)
            .unwrap_or("?");
        ModelInfo {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            model_type: format!("{} {:.0}M {ftype}", hp.arch, n_params as f64 / 1e6),
            size: f.file_size(),
            n_params,
            bytes_per_token: bytes,
        }
    }
}

/// Nanoseconds of each repetition of one test (after one warm-up run).
fn run_test(
    engine: &Engine,
    depth: usize,
    n_prompt: usize,
    n_gen: usize,
    reps: usize,
) -> Result<Vec<u64>> {
    let model = engine.model();
    let n_vocab = model.hparams().n_vocab as u64;
    let mut state = model.new_state(depth + n_prompt + n_gen + 1, engine.kv_types())?;
    // Deterministic pseudo-random tokens (llama-bench uses random ones too).
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut tok = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n_vocab) as u32
    };
    let mut out = Vec::with_capacity(reps);
    for rep in 0..=reps {
        state.truncate(0);
        if depth > 0 {
            let fill: Vec<u32> = (0..depth).map(|_| tok()).collect();
            eval_batched(model, engine, &mut state, &fill)?;
        }
        let t0 = Instant::now();
        if n_prompt > 0 {
            let prompt: Vec<u32> = (0..n_prompt).map(|_| tok()).collect();
            eval_batched(model, engine, &mut state, &prompt)?;
        }
        for _ in 0..n_gen {
            model.forward(engine.pool(), &mut state, &[tok()], Logits::Last)?;
        }
        let ns = t0.elapsed().as_nanos() as u64;
        if rep > 0 {
            out.push(ns);
        }
    }
    Ok(out)
}

fn eval_batched(
    model: &dyn Model,
    engine: &Engine,
    state: &mut sparetire_models::State,
    toks: &[u32],
) -> Result<()> {
    for chunk in toks.chunks(PREFILL_CHUNK) {
        model.forward(engine.pool(), state, chunk, Logits::Last)?;
    }
    Ok(())
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Reads a 1 GiB buffer repeatedly with each thread count and reports GB/s.
fn memory(threads: &[usize], json: bool) -> Result<()> {
    const BYTES: usize = 1 << 30;
    let buf: Vec<u64> = (0..BYTES / 8).map(|i| i as u64).collect();
    let mut rows = Vec::new();
    for &t in threads {
        let pool = sparetire_quant::ThreadPool::new(t);
        let mut best = 0f64;
        let mut samples = Vec::new();
        for _ in 0..5 {
            let t0 = Instant::now();
            let per = buf.len().div_ceil(t);
            let sums: Vec<std::sync::atomic::AtomicU64> =
                (0..t).map(|_| Default::default()).collect();
            pool.run(|i, _| {
                let part = &buf[(i * per).min(buf.len())..((i + 1) * per).min(buf.len())];
                // Four independent accumulators keep the loads, not the adds, the bottleneck.
                let mut acc = [0u64; 4];
                for c in part.chunks_exact(4) {
                    acc[0] = acc[0].wrapping_add(c[0]);
                    acc[1] = acc[1].wrapping_add(c[1]);
                    acc[2] = acc[2].wrapping_add(c[2]);
                    acc[3] = acc[3].wrapping_add(c[3]);
                }
                let s = acc.iter().fold(0u64, |a, &b| a.wrapping_add(b));
                if let Some(slot) = sums.get(i) {
                    slot.store(s, std::sync::atomic::Ordering::Relaxed);
                }
            });
            let gbps = BYTES as f64 / t0.elapsed().as_secs_f64() / 1e9;
            std::hint::black_box(&sums);
            samples.push(gbps);
            best = best.max(gbps);
        }
        let (mean, sd) = mean_sd(&samples);
        if !json {
            println!(
                "memory read bandwidth, {t} thread(s): {mean:.1} ± {sd:.1} GB/s (best {best:.1})"
            );
        }
        rows.push(json!({"n_threads": t, "read_gbps": mean, "stddev_gbps": sd, "best_gbps": best}));
    }
    if json {
        println!("{}", serde_json::Value::Array(rows));
    }
    Ok(())
}
