//! Flags shared by several subcommands, with llama.cpp's names.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use sparetire_models::{KvType, KvTypes};
use sparetire_runtime::{Engine, SamplerConfig};
use sparetire_tokenizer::ChatTemplate;

use crate::store;

/// Which model, and how to run it.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Model: a GGUF file, a store name (smollm2, gemma3-270m, or one `sparetire pull` printed; a
    /// unique prefix works), or hf:ORG/REPO[:QUANT] / ms:ORG/REPO[:QUANT] (pulled first). Default: smollm2
    #[arg(short = 'm', long = "model", value_name = "FILE|NAME")]
    pub model: Option<String>,
    /// Threads to compute with (default: the number of physical cores)
    #[arg(short = 't', long = "threads", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Context size in tokens (default: 4096, or the model's training context if smaller)
    #[arg(short = 'c', long = "ctx-size", value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub ctx_size: Option<u32>,
    /// A Jinja chat template file to use instead of the model's
    #[arg(long = "chat-template", value_name = "FILE")]
    pub chat_template: Option<std::path::PathBuf>,
    /// Under mpirun: how ranks share the model (pp = consecutive layers per rank)
    #[arg(long = "split", value_enum, default_value_t = crate::cluster::Split::Pp)]
    pub split: crate::cluster::Split,
    /// Under mpirun: each rank's share of the layers, e.g. 1,1,2 (default: each rank's available memory)
    #[arg(long = "rank-weights", value_delimiter = ',', value_name = "W,W,...")]
    pub rank_weights: Option<Vec<f64>>,
    /// Under mpirun with --split tp: how activations travel between ranks (q8: 8-bit
    /// blocks where the next product quantizes anyway, ~1.9x fewer bytes; q8-f16: ~2.8x, lossy)
    #[arg(long = "tp-wire", value_enum, default_value_t = crate::cluster::Wire::F32)]
    pub tp_wire: crate::cluster::Wire,
    /// KV cache type of keys (also -ctk): f16, q8_0 (about half the memory), q5_1, q5_0, q4_1, q4_0
    #[arg(long = "cache-type-k", value_name = "TYPE", default_value = "f16", value_parser = parse_kv_type)]
    pub cache_type_k: KvType,
    /// KV cache type of values (also -ctv): f16, q8_0, q5_1, q5_0, q4_1, q4_0
    #[arg(long = "cache-type-v", value_name = "TYPE", default_value = "f16", value_parser = parse_kv_type)]
    pub cache_type_v: KvType,
    /// Where the model runs (--device, --gpu-layers)
    #[command(flatten)]
    pub device: crate::device::DeviceArgs,
}

/// Parses a `--cache-type-k/-v` value.
pub fn parse_kv_type(s: &str) -> std::result::Result<KvType, String> {
    s.parse::<KvType>().map_err(|e| e.to_string())
}

/// llama.cpp's two-letter short flags that clap cannot declare (`-ctk`, `-ctv`),
/// rewritten to their long forms before parsing (never after a `--`).
pub fn expand_short_flags(
    args: impl Iterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let mut after_dashes = false;
    args.map(|a| {
        if after_dashes {
            return a;
        }
        match a.to_str() {
            Some("--") => {
                after_dashes = true;
                a
            }
            Some("-ctk") => "--cache-type-k".into(),
            Some("-ctv") => "--cache-type-v".into(),
            _ => a,
        }
    })
    .collect()
}

/// Bytes of keys and of values a KV cache of `n_ctx` positions of `engine`'s model takes.
pub fn kv_bytes(engine: &Engine, n_ctx: usize) -> Result<(usize, usize)> {
    let hp = engine.model().hparams();
    let p = sparetire_models::kv_cache::KvPool::for_model(hp, 16, engine.kv_types())?;
    Ok((
        p.k_bytes_per_position() * n_ctx,
        p.v_bytes_per_position() * n_ctx,
    ))
}

/// The KV cache as `--json` outputs describe it: `{"type_k", "type_v", "bytes"}`.
pub fn kv_json(engine: &Engine, n_ctx: usize) -> serde_json::Value {
    let types = engine.kv_types();
    let bytes = kv_bytes(engine, n_ctx).ok().map(|(k, v)| k + v);
    serde_json::json!({"type_k": types.k.name(), "type_v": types.v.name(), "bytes": bytes})
}

/// The KV cache's size for `n_ctx` positions of `engine`'s model, as llama.cpp reports it.
pub fn kv_report(engine: &Engine, n_ctx: usize) -> String {
    let types = engine.kv_types();
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    match kv_bytes(engine, n_ctx) {
        Ok((k, v)) if engine.model().hparams().kv_values => format!(
            "KV cache {:.2} MiB for {n_ctx} positions (K {}: {:.2} MiB, V {}: {:.2} MiB)",
            mib(k + v),
            types.k,
            mib(k),
            types.v,
            mib(v)
        ),
        Ok((k, _)) => format!(
            "KV cache {:.2} MiB for {n_ctx} positions (latent rows as {}; values are read from them)",
            mib(k),
            types.k
        ),
        Err(e) => format!("KV cache: {e}"),
    }
}

impl ModelArgs {
    /// Resolves, loads and reports the model; returns it with the load time in ms.
    pub fn load(&self) -> Result<(Engine, f64)> {
        let path = store::resolve(self.model.as_deref())?;
        let t0 = Instant::now();
        let threads = self
            .threads
            .map(usize::from)
            .unwrap_or_else(default_threads);
        let mut engine =
            Engine::load(&path, threads).with_context(|| format!("loading {}", path.display()))?;
        if let Some(tpl) = &self.chat_template {
            let src = std::fs::read_to_string(tpl)
                .with_context(|| format!("reading chat template {}", tpl.display()))?;
            let t = ChatTemplate::new(&src)
                .with_context(|| format!("chat template {}", tpl.display()))?;
            engine.set_chat_template(t);
        }
        let types = KvTypes {
            k: self.cache_type_k,
            v: self.cache_type_v,
        };
        engine
            .set_kv_types(types)
            .with_context(|| format!("--cache-type-k {} --cache-type-v {}", types.k, types.v))?;
        if !engine.model().hparams().kv_values && types.v != types.k {
            eprintln!(
                "sparetire: note: this model caches one latent row per token; values are read from \
                 it as {}, so --cache-type-v does not apply",
                types.k
            );
        }
        let engine = crate::device::place(engine, &path, &self.device)?;
        let engine = crate::cluster::join(engine, self)?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let hp = engine.model().hparams();
        eprintln!(
            "sparetire: {} ({}, {} layers, d={}, vocab {}) loaded in {ms:.0} ms, {threads} threads",
            path.display(),
            hp.arch,
            hp.n_layer,
            hp.n_embd,
            hp.n_vocab
        );
        Ok((engine, ms))
    }

    /// The context size to use with `engine` (warning when it exceeds what the model was trained on).
    pub fn n_ctx(&self, engine: &Engine) -> usize {
        let train = engine.model().hparams().n_ctx_train;
        match self.ctx_size {
            Some(c) => {
                if c as usize > train {
                    eprintln!(
                        "sparetire: warning: -c {c} exceeds the {train} tokens the model was trained on; \
                         quality degrades past that"
                    );
                }
                c as usize
            }
            None => 4096.min(train),
        }
    }
}

/// The default thread count: one per physical core this process may use
/// (SMT siblings share a core's load/store units, and decoding is bound by
/// memory, so a second thread per core only adds synchronisation).
pub fn default_threads() -> usize {
    let available = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    physical_cores().map_or(available, |p| p.clamp(1, available))
}

/// Distinct physical cores (package, core id) in /sys (Linux); `None` elsewhere.
fn physical_cores() -> Option<usize> {
    let mut cores = std::collections::HashSet::new();
    for entry in std::fs::read_dir("/sys/devices/system/cpu").ok()? {
        let path = entry.ok()?.path();
        let name = path.file_name()?.to_str()?.to_owned();
        if name
            .strip_prefix("cpu")
            .is_none_or(|n| n.parse::<u32>().is_err())
        {
            continue;
        }
        let read = |f: &str| std::fs::read_to_string(path.join("topology").join(f)).ok();
        if let (Some(pkg), Some(core)) = (read("physical_package_id"), read("core_id")) {
            cores.insert((pkg.trim().to_owned(), core.trim().to_owned()));
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// Sampling flags.
#[derive(Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Temperature; 0 = greedy
    #[arg(long = "temp", default_value_t = 0.8, allow_negative_numbers = true)]
    pub temp: f32,
    /// Top-k sampling (0 = off)
    #[arg(long = "top-k", default_value_t = 40)]
    pub top_k: usize,
    /// Top-p (nucleus) sampling (1.0 = off)
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p sampling (0.0 = off)
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalize repeated tokens (1.0 = off)
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty considers
    #[arg(long = "repeat-last-n", default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Subtract this from the logits of recently seen tokens (0 = off)
    #[arg(
        long = "presence-penalty",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub presence_penalty: f32,
    /// Subtract this per recent occurrence of a token (0 = off)
    #[arg(
        long = "frequency-penalty",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub frequency_penalty: f32,
    /// Random seed (default or -1: random); the same seed gives the same output
    #[arg(short = 's', long = "seed", allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(-1..))]
    pub seed: Option<i64>,
    /// Stop when this string is generated (repeatable); it is not printed
    #[arg(long = "stop", value_name = "STR")]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    /// The sampler settings (a random seed if none was given).
    pub fn config(&self) -> Result<SamplerConfig> {
        let seed = self
            .seed
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0)
            });
        let cfg = SamplerConfig {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed,
        };
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("invalid sampling flag: {e}"))?;
        Ok(cfg)
    }
}
