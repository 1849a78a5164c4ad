//! `sparetire plan`: predicted layout, memory and decode speed on a cluster.

use anyhow::{Context, Result};
use clap::Args;
use sparetire_cluster::plan::{predict, Cluster, ModelShape};

use crate::{store, usage};

/// `plan` flags: the model (a file, or a description) and the cluster.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Model: a GGUF file or a store name (default: smollm2); or describe one with --params
    #[arg(
        short = 'm',
        long = "model",
        value_name = "FILE|NAME",
        conflicts_with = "params"
    )]
    pub model: Option<String>,
    /// A model without a file: total parameters (e.g. 671e9)
    #[arg(long, requires_all = ["layers", "width", "vocab", "ff"])]
    pub params: Option<f64>,
    /// Parameters one token uses (MoE: shared + routed experts; default: all)
    #[arg(long = "active-params")]
    pub active_params: Option<f64>,
    /// Bits per weight of the described model (default 4.5, about Q4_K_M)
    #[arg(long, default_value_t = 4.5)]
    pub bits: f64,
    /// Layers of the described model
    #[arg(long)]
    pub layers: Option<usize>,
    /// Model width of the described model
    #[arg(long)]
    pub width: Option<usize>,
    /// Vocabulary of the described model
    #[arg(long)]
    pub vocab: Option<usize>,
    /// Active feed-forward width per layer of the described model
    #[arg(long)]
    pub ff: Option<usize>,
    /// KV-cache bytes per token of the described model (default: 2 × width × 2 bytes × layers)
    #[arg(long = "kv-bytes")]
    pub kv_bytes: Option<f64>,
    /// Node counts to plan for, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub nodes: Vec<usize>,
    /// Memory per node, GiB
    #[arg(long = "mem-gib", default_value_t = 16.0)]
    pub mem_gib: f64,
    /// Memory read bandwidth per node, GB/s (`sparetire bench --memory` measures it)
    #[arg(long = "mem-bw", default_value_t = 20.0)]
    pub mem_bw: f64,
    /// Fraction of the memory bandwidth decoding reaches (about half on this project's
    /// reference machine: 47% for SmolLM2, docs/PERFORMANCE.md)
    #[arg(long, default_value_t = 0.5)]
    pub efficiency: f64,
    /// Link bandwidth between nodes, Gbit/s
    #[arg(long = "link-gbit", default_value_t = 10.0)]
    pub link_gbit: f64,
    /// One message's latency between nodes, microseconds
    #[arg(long = "latency-us", default_value_t = 50.0)]
    pub latency_us: f64,
    /// How tensor-parallel activations travel (as `--tp-wire` of run/serve)
    #[arg(long = "tp-wire", value_enum, default_value_t = crate::cluster::Wire::F32)]
    pub tp_wire: crate::cluster::Wire,
    /// Context tokens of KV cache to hold
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub ctx: usize,
    /// Print JSON rows
    #[arg(long)]
    pub json: bool,
}

/// Runs `sparetire plan`.
pub fn main(a: PlanArgs) -> Result<()> {
    let positive = |v: f64, what: &str| {
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(usage(format!("{what} must be a positive number, not {v}")))
        }
    };
    let (name, m, experts) = match a.params {
        Some(p) => (
            format!("{:.0}B-parameter model", p / 1e9),
            described(&a, positive(p, "--params")?)?,
            None,
        ),
        None => {
            let path = store::resolve(a.model.as_deref())?;
            let file = sparetire_formats::gguf::GgufFile::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            let experts = Experts::of(&file);
            (
                path.display().to_string(),
                from_file(std::sync::Arc::new(file))?,
                experts,
            )
        }
    };
    if a.nodes.is_empty() || a.nodes.contains(&0) {
        return Err(usage("--nodes needs counts of at least 1"));
    }
    let mut rows = Vec::new();
    if !a.json {
        println!(
            "{name}: {:.2} GB of weights, {:.2} GB read per token",
            m.weight_bytes / 1e9,
            m.active_bytes / 1e9
        );
        if let Some(e) = &experts {
            e.describe(&a.nodes, m.weight_bytes);
        }
        println!("| nodes | split | GB/node | fits | memory ms | network ms | tok/s | KB sent/node/token |");
        println!("| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |");
    }
    for &nodes in &a.nodes {
        let c = Cluster {
            nodes,
            mem_bytes: positive(a.mem_gib, "--mem-gib")? * (1u64 << 30) as f64,
            mem_bw: positive(a.mem_bw, "--mem-bw")?
                * 1e9
                * positive(a.efficiency, "--efficiency")?.min(1.0),
            link_bw: positive(a.link_gbit, "--link-gbit")? * 1e9 / 8.0,
            latency: positive(a.latency_us, "--latency-us")? * 1e-6,
            tp_wire: a.tp_wire.into(),
        };
        for p in predict(&m, &c, a.ctx) {
            if a.json {
                rows.push(serde_json::json!({
                    "nodes": nodes, "split": p.split, "weights_per_node": p.weights_per_node,
                    "fits": p.fits, "compute_s": p.compute_s, "network_s": p.network_s,
                    "tokens_per_s": p.tokens_per_s, "sent_per_node": p.sent_per_node,
                }));
            } else {
                println!(
                    "| {nodes} | {} | {:.2} | {} | {:.2} | {:.2} | {:.1} | {:.1} |",
                    p.split,
                    p.weights_per_node / 1e9,
                    if p.fits { "yes" } else { "no" },
                    p.compute_s * 1e3,
                    p.network_s * 1e3,
                    p.tokens_per_s,
                    p.sent_per_node / 1e3
                );
            }
        }
    }
    if a.json {
        println!("{}", serde_json::Value::Array(rows));
    }
    Ok(())
}

fn described(a: &PlanArgs, params: f64) -> Result<ModelShape> {
    let need = |v: Option<usize>, f: &str| {
        v.filter(|&x| x > 0)
            .ok_or_else(|| usage(format!("{f} must be at least 1")))
    };
    let (layers, width) = (need(a.layers, "--layers")?, need(a.width, "--width")?);
    let bytes = |p: f64| p * a.bits / 8.0;
    Ok(ModelShape {
        n_layer: layers,
        n_embd: width,
        q_dim: width,
        n_ff: need(a.ff, "--ff")?,
        n_vocab: need(a.vocab, "--vocab")?,
        weight_bytes: bytes(params),
        active_bytes: bytes(a.active_params.unwrap_or(params).min(params)),
        kv_bytes_per_token: a.kv_bytes.unwrap_or((2 * width * 2 * layers) as f64),
        tied: false,
    })
}

/// The shape of the model in `f`: its architecture is loaded (shapes checked, nothing read),
/// so mixture-of-experts models count only the experts a token uses as read per token, and
/// latent-attention models their compressed KV cache.
fn from_file(f: std::sync::Arc<sparetire_formats::gguf::GgufFile>) -> Result<ModelShape> {
    let weight_bytes: u64 = f.tensors().iter().map(|t| t.n_bytes).sum();
    let model = sparetire_models::load(f.clone()).context("reading the model's shape")?;
    let hp = model.hparams().clone();
    // A dense model reads every weight per token, but only one row of the embedding.
    let dense_active = weight_bytes as f64
        - f.tensor("token_embd.weight")
            .filter(|_| f.tensor("output.weight").is_some())
            .map_or(0.0, |t| t.n_bytes as f64);
    let active_bytes = model
        .weight_bytes()
        .map_or(dense_active, |w| w.per_token as f64);
    let block = sparetire_models::kv_cache::BLOCK_SIZE;
    let kv_bytes_per_token =
        sparetire_models::kv_cache::KvPool::for_model(&hp, block, sparetire_models::KvTypes::F16)?
            .block_bytes() as f64
            / block as f64;
    // The feed-forward activation tensor parallelism gathers: a MoE layer's chosen experts.
    let key = |k: &str| f.get_u64(&format!("{}.{k}", hp.arch)).map(|v| v as usize);
    let n_ff = match (key("expert_used_count"), key("expert_feed_forward_length")) {
        (Some(used), Some(ff_exp)) if used > 0 => {
            let shared = key("expert_shared_feed_forward_length")
                .or_else(|| key("expert_shared_count").map(|n| n * ff_exp))
                .unwrap_or(0);
            used * ff_exp + shared
        }
        _ => hp.n_ff,
    };
    Ok(ModelShape {
        n_layer: hp.n_layer,
        n_embd: hp.n_embd,
        q_dim: hp.q_dim(),
        n_ff,
        n_vocab: hp.n_vocab,
        weight_bytes: weight_bytes as f64,
        active_bytes,
        kv_bytes_per_token,
        tied: f.tensor("output.weight").is_none(),
    })
}

/// The routed experts of a mixture-of-experts file, for `--split ep` placement.
struct Experts {
    n_expert: usize,
    n_used: usize,
    /// Bytes of every stacked expert tensor (`*_exps`).
    bytes: f64,
}

impl Experts {
    fn of(f: &sparetire_formats::gguf::GgufFile) -> Option<Experts> {
        let arch = f.get_str("general.architecture")?;
        let key = |k: &str| f.get_u64(&format!("{arch}.{k}")).map(|v| v as usize);
        let (n_expert, n_used) = (key("expert_count")?, key("expert_used_count")?);
        let bytes: u64 = f
            .tensors()
            .iter()
            .filter(|t| t.name.ends_with("_exps.weight"))
            .map(|t| t.n_bytes)
            .sum();
        (n_expert > 0 && bytes > 0).then_some(Experts {
            n_expert,
            n_used,
            bytes: bytes as f64,
        })
    }

    /// Prints where `--split ep` puts the experts on each node count.
    fn describe(&self, nodes: &[usize], weight_bytes: f64) {
        println!(
            "experts: {} per MoE layer, {} used per token; {:.2} GB of expert weights, {:.2} GB of the rest",
            self.n_expert,
            self.n_used,
            self.bytes / 1e9,
            (weight_bytes - self.bytes) / 1e9
        );
        for &n in nodes.iter().filter(|&&n| n > 1) {
            let (fewest, most) = (self.n_expert / n, self.n_expert.div_ceil(n));
            let range = if fewest == most {
                most.to_string()
            } else {
                format!("{fewest}–{most}")
            };
            println!(
                "  --split ep on {n}: {range} experts per layer per rank, {:.2} GB per rank (the rest on every rank)",
                (weight_bytes - self.bytes + self.bytes * most as f64 / self.n_expert as f64) / 1e9
            );
        }
    }
}
