//! The pre-norm decoder-only transformer that `llama`, `qwen2`, `qwen3` and
//! `gemma3` share. Each architecture file only says which tensors exist and
//! which options are on ([`DecoderCfg`], [`LayerCfg`]); the forward pass is
//! written once, here, and reads like the papers:
//!
//! ```text
//! x = embed(tokens) [* embd_scale]
//! for each layer:
//!     h = rmsnorm(x)                                   attn_norm
//!     q, k, v = h·Wq [+bq], h·Wk [+bk], h·Wv [+bv]     Qcur, Kcur, Vcur
//!     q, k = rmsnorm_per_head(q, k)                    (qwen3, gemma3)
//!     q, k = rope(q, k) ; q *= q_scale                 (gemma3 pre-scales q)
//!     a = attention(q, K, V) · Wo [then rmsnorm]       kqv_out, attn_out (gemma3 post-norm)
//!     x = x + a                                        ffn_inp
//!     h = rmsnorm(x)                                   ffn_norm
//!     f = (act(h·Wgate) * h·Wup) · Wdown [then rmsnorm] ffn_out (gemma3 post-norm)
//!     x = x + f                                        l_out
//! logits = rmsnorm(x) · Wout
//! ```

use std::ops::Range;
use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;
use sparetire_quant::{GgmlType, ThreadPool};

use crate::expert_parallel::{experts_of, ExpertParallel};
use crate::hparams::HParams;
use crate::kv_cache::{check_types, KvCache, KvPool};
use crate::kv_type::KvTypes;
use crate::layers::attention::{attention, AttnShape, HeadOffsets};
use crate::layers::hadamard::{key_rotation, rotate, value_rotation};
use crate::layers::mla::{Mla, MlaQuery};
use crate::layers::mlp::{geglu, swiglu, Mlp};
use crate::layers::moe::Moe;
use crate::layers::norm::rms_norm;
use crate::layers::rope::{rope_apply, rope_table, RopeStyle};
use crate::state::{sized, tap, State};
use crate::tensor_parallel::{plan_shard, Gathered, Gatherer, Shard};
use crate::weights::{Weight, WeightLoader};
use crate::{linear, Arithmetic, Logits, Model, ModelError, Seq};

/// The gated activation of the feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `silu(gate) * up` (Llama, Qwen).
    SwiGlu,
    /// `gelu(gate) * up`, tanh GELU (Gemma).
    GeGlu,
}

/// Options that hold for every layer.
#[derive(Clone, Debug)]
pub struct DecoderCfg {
    /// How RoPE pairs dimensions.
    pub rope_style: RopeStyle,
    /// Multiply the embeddings by this (Gemma: `sqrt(n_embd)`).
    pub embd_scale: Option<f32>,
    /// Multiply the queries by this after RoPE and use an attention scale of 1
    /// (Gemma); otherwise the attention scale is `1/sqrt(head_dim)`.
    pub q_scale: Option<f32>,
    /// The feed-forward activation.
    pub activation: Activation,
}

/// Options of one layer.
#[derive(Clone, Debug)]
pub struct LayerCfg {
    /// RoPE base frequency.
    pub rope_base: f32,
    /// Sliding attention window, if the layer is local.
    pub window: Option<usize>,
}

/// One block's weights; the optional ones are present only in some architectures.
pub struct Block {
    /// Layer options.
    pub cfg: LayerCfg,
    /// Pre-attention RMSNorm weight.
    pub attn_norm: Vec<f32>,
    /// The attention projections: grouped-query or latent.
    pub attn: Attn,
    /// Biases of q, k, v (Qwen2).
    pub bqkv: Option<[Vec<f32>; 3]>,
    /// Per-head RMSNorm weights of q and k (Qwen3, Gemma 3).
    pub qk_norm: Option<[Vec<f32>; 2]>,
    /// RMSNorm of the attention output before the residual (Gemma 3).
    pub attn_post_norm: Option<Vec<f32>>,
    /// Pre-FFN RMSNorm weight.
    pub ffn_norm: Vec<f32>,
    /// The feed-forward network: dense, or a mixture of experts.
    pub ffn: Ffn,
    /// RMSNorm of the FFN output before the residual (Gemma 3).
    pub ffn_post_norm: Option<Vec<f32>>,
}

/// The projections of grouped-query attention.
pub struct Gqa {
    /// Query projection.
    pub wq: Weight,
    /// Key projection.
    pub wk: Weight,
    /// Value projection.
    pub wv: Weight,
    /// Attention output projection.
    pub wo: Weight,
}

/// A block's attention.
#[allow(clippy::large_enum_variant)] // why: one per layer, built once at load time
pub enum Attn {
    /// Grouped-query attention (every family but DeepSeek).
    Gqa(Gqa),
    /// Multi-head latent attention ([`crate::layers::mla`]).
    Mla(Box<Mla>),
}

/// A block's feed-forward network.
#[allow(clippy::large_enum_variant)] // why: one per layer, built once at load time
pub enum Ffn {
    /// One gated MLP (`ffn_gate`, `ffn_up`, `ffn_down`).
    Dense(Mlp),
    /// A mixture of experts ([`crate::layers::moe`]).
    Moe(Box<Moe>),
}

/// A decoder-only transformer over a memory-mapped GGUF file.
pub struct Decoder {
    file: Arc<GgufFile>,
    hp: HParams,
    cfg: DecoderCfg,
    tok_embd: Weight,
    blocks: Vec<Block>,
    output_norm: Vec<f32>,
    /// `output.weight`, or `token_embd.weight` when the embedding is tied.
    output: Weight,
    /// Set when this process computes one tensor-parallel rank's share.
    tp: Option<Tp>,
    /// Set when this process computes only some of every layer's experts.
    ep: Option<ExpertParallel>,
}

/// A tensor-parallel rank's share, every rank's (to reassemble gathered
/// parts), and the all-gather joining them.
struct Tp {
    shard: Shard,
    all: Vec<Shard>,
    gatherer: Arc<dyn Gatherer>,
    rank: usize,
}

/// The dimensions this process computes (all of them, or a rank's share).
struct Local {
    n_head: usize,
    n_head_kv: usize,
    n_ff: usize,
    offsets: HeadOffsets,
}

/// Names of a block's tensors (`blk.{i}.{name}.weight`), loaded with the shapes `hp` implies.
pub struct BlockLoader<'a> {
    ld: &'a WeightLoader,
    hp: &'a HParams,
}

impl<'a> BlockLoader<'a> {
    /// A loader for the blocks of a model with hyperparameters `hp`.
    pub fn new(ld: &'a WeightLoader, hp: &'a HParams) -> Self {
        BlockLoader { ld, hp }
    }

    fn name(i: usize, s: &str, kind: &str) -> String {
        format!("blk.{i}.{s}.{kind}")
    }

    /// Block `i` with the tensors every architecture has; options off.
    pub fn base(&self, i: usize, cfg: LayerCfg) -> Result<Block, ModelError> {
        let hp = self.hp;
        let (d, ff) = (hp.n_embd, hp.n_ff);
        let n = |s: &str| Self::name(i, s, "weight");
        let ld = self.ld;
        Ok(Block {
            cfg,
            attn_norm: ld.vector(&n("attn_norm"), d)?,
            attn: self.gqa(i)?,
            bqkv: None,
            qk_norm: None,
            attn_post_norm: None,
            ffn_norm: ld.vector(&n("ffn_norm"), d)?,
            ffn: Ffn::Dense(self.mlp(i, "", ff)?),
            ffn_post_norm: None,
        })
    }

    /// The grouped-query attention projections of block `i`.
    pub fn gqa(&self, i: usize) -> Result<Attn, ModelError> {
        let hp = self.hp;
        let (d, q_dim, kv_dim) = (hp.n_embd, hp.q_dim(), hp.kv_dim());
        let n = |s: &str| Self::name(i, s, "weight");
        let ld = self.ld;
        Ok(Attn::Gqa(Gqa {
            wq: matrix(ld, &n("attn_q"), d, q_dim)?,
            wk: matrix(ld, &n("attn_k"), d, kv_dim)?,
            wv: matrix(ld, &n("attn_v"), d, kv_dim)?,
            wo: matrix(ld, &n("attn_output"), q_dim, d)?,
        }))
    }

    /// Block `i` with a mixture of experts (`moe`) instead of the dense FFN.
    pub fn base_moe(&self, i: usize, cfg: LayerCfg, moe: Moe) -> Result<Block, ModelError> {
        let d = self.hp.n_embd;
        let n = |s: &str| Self::name(i, s, "weight");
        let ld = self.ld;
        moe.validate()?;
        Ok(Block {
            cfg,
            attn_norm: ld.vector(&n("attn_norm"), d)?,
            attn: self.gqa(i)?,
            bqkv: None,
            qk_norm: None,
            attn_post_norm: None,
            ffn_norm: ld.vector(&n("ffn_norm"), d)?,
            ffn: Ffn::Moe(Box::new(moe)),
            ffn_post_norm: None,
        })
    }

    /// The gated MLP `ffn_{gate,up,down}{suffix}` of block `i`, `ff` wide
    /// (`suffix` is `""` for a dense block, `"_shexp"` for a shared expert).
    pub fn mlp(&self, i: usize, suffix: &str, ff: usize) -> Result<Mlp, ModelError> {
        let n = |s: &str| Self::name(i, &format!("{s}{suffix}"), "weight");
        let d = self.hp.n_embd;
        Ok(Mlp {
            gate: matrix(self.ld, &n("ffn_gate"), d, ff)?,
            up: matrix(self.ld, &n("ffn_up"), d, ff)?,
            down: matrix(self.ld, &n("ffn_down"), ff, d)?,
        })
    }

    /// The stacked experts `ffn_{gate,up,down}_exps` of block `i`: `n_expert` MLPs `ff` wide.
    pub fn experts(&self, i: usize, n_expert: usize, ff: usize) -> Result<Vec<Mlp>, ModelError> {
        let n = |s: &str| Self::name(i, s, "weight");
        let d = self.hp.n_embd;
        let checked = |v: Vec<Weight>| {
            v.into_iter()
                .map(check_matmul_type)
                .collect::<Result<Vec<_>, _>>()
        };
        let gate = checked(self.ld.stacked(&n("ffn_gate_exps"), d, ff, n_expert)?)?;
        let up = checked(self.ld.stacked(&n("ffn_up_exps"), d, ff, n_expert)?)?;
        let down = checked(self.ld.stacked(&n("ffn_down_exps"), ff, d, n_expert)?)?;
        Ok(gate
            .into_iter()
            .zip(up)
            .zip(down)
            .map(|((gate, up), down)| Mlp { gate, up, down })
            .collect())
    }

    /// The router `ffn_gate_inp` of block `i` (`n_expert` rows).
    pub fn router(&self, i: usize, n_expert: usize) -> Result<Weight, ModelError> {
        matrix(
            self.ld,
            &Self::name(i, "ffn_gate_inp", "weight"),
            self.hp.n_embd,
            n_expert,
        )
    }

    /// The loader of the tensors.
    pub fn weights(&self) -> &WeightLoader {
        self.ld
    }

    /// The hyperparameters the shapes come from.
    pub fn hparams(&self) -> &HParams {
        self.hp
    }

    /// The q/k/v biases of block `i` (`attn_q.bias`, …).
    pub fn qkv_bias(&self, i: usize) -> Result<[Vec<f32>; 3], ModelError> {
        let n = |s: &str| Self::name(i, s, "bias");
        let (q_dim, kv_dim) = (self.hp.q_dim(), self.hp.kv_dim());
        Ok([
            self.ld.vector(&n("attn_q"), q_dim)?,
            self.ld.vector(&n("attn_k"), kv_dim)?,
            self.ld.vector(&n("attn_v"), kv_dim)?,
        ])
    }

    /// The per-head q/k norm weights of block `i`.
    pub fn qk_norm(&self, i: usize) -> Result<[Vec<f32>; 2], ModelError> {
        let n = |s: &str| Self::name(i, s, "weight");
        Ok([
            self.ld.vector(&n("attn_q_norm"), self.hp.head_dim)?,
            self.ld.vector(&n("attn_k_norm"), self.hp.head_dim)?,
        ])
    }

    /// A model-width norm vector of block `i` (e.g. `post_attention_norm`).
    pub fn norm(&self, i: usize, s: &str) -> Result<Vec<f32>, ModelError> {
        self.ld.vector(&Self::name(i, s, "weight"), self.hp.n_embd)
    }
}

/// A `(rows, cols)` weight matrix usable by matmul: GGUF shape `[cols, rows]`.
pub(crate) fn matrix(
    ld: &WeightLoader,
    name: &str,
    cols: usize,
    rows: usize,
) -> Result<Weight, ModelError> {
    check_matmul_type(ld.get(name, &[cols, rows])?)
}

fn check_matmul_type(w: Weight) -> Result<Weight, ModelError> {
    match w.ty {
        GgmlType::Q8_1 | GgmlType::Q8_K => Err(ModelError::UnsupportedType {
            tensor: w.name.clone(),
            ty: w.ty.name().into(),
        }),
        _ => Ok(w),
    }
}

impl Decoder {
    /// Bytes of weights one decoded token reads against a dense model of
    /// the same parameters (see [`crate::WeightBytes`]). F32 norm vectors
    /// and biases count at 4 bytes a value.
    pub fn weight_traffic(&self) -> crate::WeightBytes {
        let f32s = |v: &[f32]| 4 * v.len();
        let emb_row = self.tok_embd.n_bytes() / self.hp.n_vocab.max(1);
        let mut common = emb_row + f32s(&self.output_norm) + self.output.n_bytes();
        let (mut active, mut all) = (0, 0);
        for b in &self.blocks {
            common += f32s(&b.attn_norm) + f32s(&b.ffn_norm);
            common += b.attn_post_norm.as_deref().map_or(0, f32s);
            common += b.ffn_post_norm.as_deref().map_or(0, f32s);
            common += b
                .bqkv
                .as_ref()
                .map_or(0, |v| v.iter().map(|x| f32s(x)).sum());
            common += b
                .qk_norm
                .as_ref()
                .map_or(0, |v| v.iter().map(|x| f32s(x)).sum());
            common += match &b.attn {
                Attn::Gqa(g) => g.wq.n_bytes() + g.wk.n_bytes() + g.wv.n_bytes() + g.wo.n_bytes(),
                Attn::Mla(m) => m.n_bytes(),
            };
            match &b.ffn {
                Ffn::Dense(m) => common += m.n_bytes(),
                Ffn::Moe(m) => {
                    active += m.active_bytes();
                    all += m.total_bytes();
                }
            }
        }
        crate::WeightBytes {
            per_token: common + active,
            dense: common + all,
        }
    }

    /// Assembles a decoder from loaded blocks, reading the embedding, the
    /// final norm and the (possibly tied) output projection.
    pub fn new(
        ld: &WeightLoader,
        hp: HParams,
        cfg: DecoderCfg,
        blocks: Vec<Block>,
    ) -> Result<Decoder, ModelError> {
        let d = hp.n_embd;
        let tok_embd = ld.get("token_embd.weight", &[d, hp.n_vocab])?;
        let output_norm = ld.vector("output_norm.weight", d)?;
        let output = match ld.try_get("output.weight", &[d, hp.n_vocab])? {
            Some(w) => check_matmul_type(w)?,
            None => check_matmul_type(tok_embd.clone())?,
        };
        Ok(Decoder {
            file: ld.file().clone(),
            hp,
            cfg,
            tok_embd,
            blocks,
            output_norm,
            output,
            tp: None,
            ep: None,
        })
    }

    fn local(&self) -> Local {
        let hp = &self.hp;
        match &self.tp {
            None => Local {
                n_head: hp.n_head,
                n_head_kv: hp.n_head_kv,
                n_ff: hp.n_ff,
                offsets: HeadOffsets::default(),
            },
            Some(tp) => Local {
                n_head: tp.shard.heads.len(),
                // Latent attention caches one latent row every head reads: whole on every rank.
                n_head_kv: if hp.kv_values {
                    tp.shard.kv_heads.len()
                } else {
                    hp.n_head_kv
                },
                n_ff: tp.shard.ff.len(),
                offsets: HeadOffsets {
                    group: hp.n_head / hp.n_head_kv.max(1),
                    q0: tp.shard.heads.start,
                    kv0: tp.shard.kv_heads.start,
                },
            },
        }
    }

    /// With tensor parallelism, gathers every rank's columns of an
    /// `(n, width)` activation: this rank computed `part` (`(n, w_mine)`), and
    /// rank `r` the columns `cols(r)`; the whole lands in `out` (`(n, width)`).
    /// Without it, `part` is already whole and is copied.
    fn gather(
        &self,
        part: &[f32],
        n: usize,
        cols: impl Fn(&Shard) -> Range<usize>,
        what: Gathered,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let Some(tp) = &self.tp else {
            out.copy_from_slice(part);
            return Ok(());
        };
        let counts: Vec<usize> = tp.all.iter().map(|s| n * cols(s).len()).collect();
        let all = tp
            .gatherer
            .all_gather(part, &counts, n, what)
            .map_err(|e| ModelError::Cluster(format!("rank {}: all-gather: {e}", tp.rank)))?;
        let width = out.len() / n.max(1);
        let mut at = 0;
        for s in &tp.all {
            let c = cols(s);
            let w = c.len();
            for t in 0..n {
                out[t * width + c.start..t * width + c.end]
                    .copy_from_slice(&all[at + t * w..at + (t + 1) * w]);
            }
            at += n * w;
        }
        Ok(())
    }

    /// This decoder with its experts spread over `size` ranks, rank `rank`
    /// computing its share of them and everything else whole
    /// ([`crate::expert_parallel`]).
    pub fn into_experts(
        mut self,
        rank: usize,
        size: usize,
        gatherer: Arc<dyn Gatherer>,
    ) -> Result<Decoder, ModelError> {
        if rank >= size {
            return Err(ModelError::Invalid(format!("rank {rank} of {size}")));
        }
        if !self.blocks.iter().any(|b| matches!(b.ffn, Ffn::Moe(_))) {
            return Err(ModelError::Invalid(
                "expert parallelism needs a mixture-of-experts model; this one has no experts"
                    .into(),
            ));
        }
        self.ep = Some(ExpertParallel {
            rank,
            size,
            gatherer,
        });
        Ok(self)
    }

    /// This decoder cut down to rank `rank`'s share of every layer among
    /// `size` ranks ([`crate::tensor_parallel`]).
    pub fn into_shard(
        mut self,
        rank: usize,
        size: usize,
        gatherer: Arc<dyn Gatherer>,
    ) -> Result<Decoder, ModelError> {
        if rank >= size {
            return Err(ModelError::Invalid(format!("rank {rank} of {size}")));
        }
        let all: Vec<Shard> = (0..size).map(|r| plan_shard(&self.hp, r, size)).collect();
        let shard = all[rank].clone();
        let hd = self.hp.head_dim;
        let (q, kv) = (
            shard.heads.start * hd..shard.heads.end * hd,
            shard.kv_heads.start * hd..shard.kv_heads.end * hd,
        );
        // Mixture-of-experts layers are not cut by columns: their experts are spread over the ranks.
        if self.blocks.iter().any(|b| matches!(b.ffn, Ffn::Moe(_))) {
            self.ep = Some(ExpertParallel {
                rank,
                size,
                gatherer: gatherer.clone(),
            });
        }
        // Each slice is copied into memory of its own and the file's pages
        // are let go after every layer, so a rank's resident memory is its
        // share of the weights (plus the embeddings it reads), not the whole
        // file: the page cache maps whole large folios around every read.
        let file = self.file.clone();
        let own = |w: &Weight, rows: &Range<usize>| -> Result<Weight, ModelError> {
            Ok(w.row_slice(rows.clone())?.into_owned(&file))
        };
        for b in &mut self.blocks {
            match &mut b.ffn {
                Ffn::Dense(mlp) => {
                    mlp.gate = own(&mlp.gate, &shard.ff)?;
                    mlp.up = own(&mlp.up, &shard.ff)?;
                    mlp.down = own(&mlp.down, &shard.rows)?;
                }
                Ffn::Moe(moe) => {
                    // This rank's experts whole; the others' pages are never read.
                    let mine = experts_of(moe.experts.len(), rank, size);
                    for x in &mut moe.experts[mine] {
                        for w in [&mut x.gate, &mut x.up, &mut x.down] {
                            *w = w.clone().into_owned(&file);
                        }
                    }
                }
            }
            match &mut b.attn {
                Attn::Gqa(g) => {
                    g.wq = own(&g.wq, &q)?;
                    g.wk = own(&g.wk, &kv)?;
                    g.wv = own(&g.wv, &kv)?;
                    g.wo = own(&g.wo, &shard.rows)?;
                }
                Attn::Mla(m) => {
                    // The latent (kv_a) is every head's: each rank computes and caches
                    // it whole; queries, k_b/v_b and the output rows are cut by heads.
                    let qk = m.shape.nope + m.shape.rope;
                    let q_rows = shard.heads.start * qk..shard.heads.end * qk;
                    m.q = match &m.q {
                        MlaQuery::LowRank { a, norm, b } => MlaQuery::LowRank {
                            a: a.clone().into_owned(&file),
                            norm: norm.clone(),
                            b: own(b, &q_rows)?,
                        },
                        MlaQuery::Direct(w) => MlaQuery::Direct(own(w, &q_rows)?),
                    };
                    m.kv_a = m.kv_a.clone().into_owned(&file);
                    let heads = shard.heads.clone();
                    m.k_b = m.k_b[heads.clone()]
                        .iter()
                        .map(|w| w.clone().into_owned(&file))
                        .collect();
                    m.v_b = m.v_b[heads]
                        .iter()
                        .map(|w| w.clone().into_owned(&file))
                        .collect();
                    m.wo = own(&m.wo, &shard.rows)?;
                }
            }
            file.release_pages();
            if let Some([bq, bk, bv]) = &mut b.bqkv {
                *bq = bq[q.clone()].to_vec();
                *bk = bk[kv.clone()].to_vec();
                *bv = bv[kv.clone()].to_vec();
            }
        }
        self.tp = Some(Tp {
            shard,
            all,
            gatherer,
            rank,
        });
        Ok(self)
    }
}

impl Model for Decoder {
    fn hparams(&self) -> &HParams {
        &self.hp
    }

    fn tied_output(&self) -> bool {
        self.output.name == self.tok_embd.name
    }

    fn new_state(&self, n_ctx: usize, kv: KvTypes) -> Result<State, ModelError> {
        check_types(&self.hp, kv)?;
        let pool = KvPool::with_values(
            self.hp.n_layer,
            self.local().n_head_kv * self.hp.head_dim,
            n_ctx.div_ceil(crate::kv_cache::BLOCK_SIZE),
            self.hp.kv_values,
            kv,
        )?;
        Ok(State::new(KvCache::in_pool(pool, n_ctx)))
    }

    fn weight_bytes(&self) -> Option<crate::WeightBytes> {
        Some(self.weight_traffic())
    }

    fn into_tensor_parallel(
        self: Box<Self>,
        rank: usize,
        size: usize,
        gatherer: Arc<dyn Gatherer>,
    ) -> Result<Box<dyn Model>, ModelError> {
        Ok(Box::new(self.into_shard(rank, size, gatherer)?))
    }

    fn into_expert_parallel(
        self: Box<Self>,
        rank: usize,
        size: usize,
        gatherer: Arc<dyn Gatherer>,
    ) -> Result<Box<dyn Model>, ModelError> {
        Ok(Box::new(self.into_experts(rank, size, gatherer)?))
    }

    fn new_state_in(&self, pool: Arc<KvPool>, n_ctx: usize) -> Result<State, ModelError> {
        if !pool.fits(self.hp.n_layer, self.local().n_head_kv * self.hp.head_dim)
            || pool.has_values() != self.hp.kv_values
        {
            return Err(ModelError::Invalid(
                "the KV pool was made for another model's shape".into(),
            ));
        }
        check_types(&self.hp, pool.types())?;
        Ok(State::new(KvCache::in_pool(pool, n_ctx)))
    }

    fn forward(
        &self,
        pool: &ThreadPool,
        st: &mut State,
        tokens: &[u32],
        logits: Logits,
    ) -> Result<(), ModelError> {
        self.forward_batch(
            pool,
            &mut [Seq {
                state: st,
                tokens,
                logits,
            }],
        )
    }

    /// The forward pass of several sequences at once: every matmul runs over
    /// the rows of all of them; RoPE, the KV cache and attention stay per
    /// sequence. The activation buffers (and the debugging tap) of the batch
    /// are those of the first sequence's state.
    fn forward_batch(&self, pool: &ThreadPool, seqs: &mut [Seq<'_>]) -> Result<(), ModelError> {
        self.forward_stage(pool, seqs, 0..self.hp.n_layer, None, None)
    }

    fn forward_stage(
        &self,
        pool: &ThreadPool,
        seqs: &mut [Seq<'_>],
        layers: std::ops::Range<usize>,
        hidden_in: Option<&[f32]>,
        hidden_out: Option<&mut Vec<f32>>,
    ) -> Result<(), ModelError> {
        let hp = &self.hp;
        if layers.start > layers.end || layers.end > hp.n_layer {
            return Err(ModelError::Invalid(format!(
                "layers {layers:?} outside the model's {}",
                hp.n_layer
            )));
        }
        for s in seqs.iter() {
            crate::check_batch(hp, s.state, s.tokens)?;
        }
        if let Some(h) = hidden_in {
            let n: usize = seqs.iter().map(|s| s.tokens.len()).sum();
            if h.len() != n * hp.n_embd {
                return Err(ModelError::Invalid(format!(
                    "hidden states of {} values for {n} tokens of width {}",
                    h.len(),
                    hp.n_embd
                )));
            }
        }
        if let Some(s) = seqs
            .iter()
            .find(|s| s.state.arithmetic != seqs[0].state.arithmetic)
        {
            return Err(ModelError::Invalid(format!(
                "a batch mixes arithmetics ({:?} and {:?})",
                seqs[0].state.arithmetic, s.state.arithmetic
            )));
        }
        for s in seqs.iter_mut() {
            let to = s.state.n_past + s.tokens.len();
            s.state.kv.prepare(to)?;
        }
        let Some(first_seq) = seqs.first_mut() else {
            return Ok(());
        };
        let mut b = std::mem::take(&mut first_seq.state.buf);
        let mut tap_slot = first_seq.state.tap.take();
        let stage = StageIo {
            layers,
            hidden_in,
            hidden_out,
        };
        let result = self.forward_rows(pool, seqs, stage, &mut b, &mut tap_slot);
        if let Some(first_seq) = seqs.first_mut() {
            first_seq.state.buf = b;
            first_seq.state.tap = tap_slot;
        }
        result
    }

    fn output_logits(
        &self,
        pool: &ThreadPool,
        seqs: &mut [Seq<'_>],
        hidden: &[f32],
    ) -> Result<(), ModelError> {
        let lens: Vec<usize> = seqs.iter().map(|s| s.tokens.len()).collect();
        let n: usize = lens.iter().sum();
        if hidden.len() != n * self.hp.n_embd {
            return Err(ModelError::Invalid(format!(
                "hidden states of {} values for {n} tokens of width {}",
                hidden.len(),
                self.hp.n_embd
            )));
        }
        let Some(first_seq) = seqs.first_mut() else {
            return Ok(());
        };
        let arith = first_seq.state.arithmetic;
        let mut b = std::mem::take(&mut first_seq.state.buf);
        let mut tap_slot = first_seq.state.tap.take();
        let result = self.head(
            pool,
            seqs,
            &lens,
            hidden,
            &mut b.xn,
            &mut b.out,
            &mut tap_slot,
            arith,
        );
        if let Some(first_seq) = seqs.first_mut() {
            first_seq.state.buf = b;
            first_seq.state.tap = tap_slot;
        }
        result
    }
}

/// A decoder's weights and options, for a backend that runs the same network
/// elsewhere (the Vulkan backend uploads them to a GPU).
pub struct DecoderParts<'a> {
    /// The file the weights are in.
    pub file: &'a Arc<GgufFile>,
    /// Hyperparameters.
    pub hp: &'a HParams,
    /// Options of every layer.
    pub cfg: &'a DecoderCfg,
    /// The token embedding `(n_vocab, n_embd)`.
    pub tok_embd: &'a Weight,
    /// The blocks.
    pub blocks: &'a [Block],
    /// The final RMSNorm weight.
    pub output_norm: &'a [f32],
    /// The output projection (the embedding when tied).
    pub output: &'a Weight,
}

impl Decoder {
    /// Its weights and options.
    pub fn parts(&self) -> DecoderParts<'_> {
        DecoderParts {
            file: &self.file,
            hp: &self.hp,
            cfg: &self.cfg,
            tok_embd: &self.tok_embd,
            blocks: &self.blocks,
            output_norm: &self.output_norm,
            output: &self.output,
        }
    }
}

/// The part of the network one call runs (a pipeline stage, or all of it).
struct StageIo<'a> {
    layers: std::ops::Range<usize>,
    /// Hidden states from the previous stage (`None`: embed the tokens).
    hidden_in: Option<&'a [f32]>,
    /// Where to leave the hidden states for the next stage (`None`: compute logits).
    hidden_out: Option<&'a mut Vec<f32>>,
}

impl Decoder {
    fn forward_rows(
        &self,
        pool: &ThreadPool,
        seqs: &mut [Seq<'_>],
        stage: StageIo<'_>,
        b: &mut crate::state::Buffers,
        taps: &mut Option<crate::state::Tap>,
    ) -> Result<(), ModelError> {
        let hp = &self.hp;
        let cfg = &self.cfg;
        let f = &*self.file;
        let arith = seqs
            .first()
            .map_or(Arithmetic::Reference, |s| s.state.arithmetic);
        let per_token = arith == Arithmetic::PerToken;
        // Row ranges of each sequence in the batch, and their first positions.
        let mut spans = Vec::with_capacity(seqs.len());
        let mut n = 0;
        for s in seqs.iter() {
            spans.push((n, s.tokens.len(), s.state.n_past));
            n += s.tokens.len();
        }
        let local = self.local();
        let hd = hp.head_dim;
        let (d, q_dim, kv_dim, ff) = (
            hp.n_embd,
            local.n_head * hd,
            local.n_head_kv * hd,
            local.n_ff,
        );
        let x = sized(&mut b.x, n * d); // (n, d) residual stream
        if let Some(h) = stage.hidden_in {
            x.copy_from_slice(h);
        } else {
            for (s, &(row0, _, _)) in seqs.iter().zip(&spans) {
                for (t, &tok) in s.tokens.iter().enumerate() {
                    let r = row0 + t;
                    self.tok_embd
                        .row_into(f, tok as usize, &mut x[r * d..(r + 1) * d])?;
                }
            }
            if let Some(s) = cfg.embd_scale {
                x.iter_mut().for_each(|v| *v *= s);
                tap(taps, "inp_scaled", None, x);
            }
        }
        let half = hp.n_rot / 2;
        let mut cos = vec![0f32; half];
        let mut sin = vec![0f32; half];
        for il in stage.layers {
            let blk = &self.blocks[il];
            // attention
            let xn = sized(&mut b.xn, n * d); // (n, d) "attn_norm"
            rms_norm(x, &blk.attn_norm, hp.rms_eps, xn);
            tap(taps, "attn_norm", Some(il), xn);
            match &blk.attn {
                Attn::Mla(mla) => match &self.tp {
                    None => {
                        let out = sized(&mut b.out, n * d);
                        mla.forward(
                            pool, f, arith, xn, n, seqs, &spans, il, &mut b.mla, out, taps,
                        )?;
                    }
                    Some(tp) => {
                        // This rank's heads, then every rank's values gathered for the
                        // output projection's rows, as for grouped-query attention.
                        mla.heads(pool, f, arith, xn, n, seqs, &spans, il, &mut b.mla, taps)?;
                        let vh = mla.shape.v_head;
                        let whole = sized(&mut b.gathered, n * mla.shape.n_head * vh);
                        self.gather(
                            b.mla.values(),
                            n,
                            |s| s.heads.start * vh..s.heads.end * vh,
                            Gathered::input_of(mla.wo.ty),
                            whole,
                        )?;
                        let part = sized(&mut b.part, n * tp.shard.rows.len());
                        linear(pool, f, arith, &mla.wo, whole, n, part)?;
                        let out = sized(&mut b.out, n * d);
                        self.gather(part, n, |s| s.rows.clone(), Gathered::Residual, out)?;
                    }
                },
                Attn::Gqa(g) => {
                    let q = sized(&mut b.q, n * q_dim); // (n, n_head * head_dim) "Qcur"
                    let k = sized(&mut b.k, n * kv_dim); // (n, n_head_kv * head_dim) "Kcur"
                    let v = sized(&mut b.v, n * kv_dim); // (n, n_head_kv * head_dim) "Vcur"
                    linear(pool, f, arith, &g.wq, xn, n, q)?;
                    linear(pool, f, arith, &g.wk, xn, n, k)?;
                    linear(pool, f, arith, &g.wv, xn, n, v)?;
                    if let Some([bq, bk, bv]) = &blk.bqkv {
                        add_bias(q, bq);
                        add_bias(k, bk);
                        add_bias(v, bv);
                    }
                    if let Some([nq, nk]) = &blk.qk_norm {
                        // Rows of head_dim: each head normalized on its own.
                        let (qn, kn) =
                            (sized(&mut b.attn, n * q_dim), sized(&mut b.out, n * kv_dim));
                        rms_norm(q, nq, hp.rms_eps, qn);
                        q.copy_from_slice(qn);
                        rms_norm(k, nk, hp.rms_eps, kn);
                        k.copy_from_slice(kn);
                        tap(taps, "Qcur_normed", Some(il), q);
                        tap(taps, "Kcur_normed", Some(il), k);
                    }
                    for (s, &(row0, len, pos0)) in seqs.iter_mut().zip(&spans) {
                        for t in 0..len {
                            let r = row0 + t;
                            rope_table(pos0 + t, hp.n_rot, blk.cfg.rope_base, &mut cos, &mut sin);
                            rope_apply(
                                &mut q[r * q_dim..(r + 1) * q_dim],
                                hd,
                                cfg.rope_style,
                                &cos,
                                &sin,
                            );
                            rope_apply(
                                &mut k[r * kv_dim..(r + 1) * kv_dim],
                                hd,
                                cfg.rope_style,
                                &cos,
                                &sin,
                            );
                        }
                        if kv_dim > 0 {
                            let rows = row0 * kv_dim..(row0 + len) * kv_dim;
                            // A quantized cache stores rotated rows (llama.cpp's attention rotation).
                            let types = s.state.kv.pool().types();
                            if let Some(n) = key_rotation(types.k, hd) {
                                rotate(&mut k[rows.clone()], n);
                            }
                            if let Some(n) = value_rotation(types.v, hd) {
                                rotate(&mut v[rows.clone()], n);
                            }
                            s.state.kv.store(il, pos0, &k[rows.clone()], &v[rows]);
                        }
                    }
                    tap(taps, "Qcur", Some(il), q);
                    tap(taps, "Kcur", Some(il), k);
                    tap(taps, "Vcur", Some(il), v);
                    let scale = match cfg.q_scale {
                        Some(s) => {
                            q.iter_mut().for_each(|v| *v *= s);
                            1.0
                        }
                        None => 1.0 / (hd as f32).sqrt(),
                    };
                    let shape = AttnShape {
                        n_head: local.n_head,
                        n_head_kv: local.n_head_kv,
                        head_dim: hd,
                        head_dim_v: hd,
                        values_in_keys: false,
                        scale,
                        window: blk.cfg.window,
                        offsets: local.offsets,
                    };
                    let attn = sized(&mut b.attn, n * q_dim); // (n, n_head * head_dim) "kqv_out"
                                                              // (A tensor-parallel rank may hold no heads at all.)
                    for (s, &(row0, len, pos0)) in seqs.iter().zip(&spans).filter(|_| q_dim > 0) {
                        let rows = row0 * q_dim..(row0 + len) * q_dim;
                        if let Some(n) = key_rotation(s.state.kv.pool().types().k, hd) {
                            rotate(&mut q[rows.clone()], n);
                        }
                        s.state.kv.with_layer(il, |kv| {
                            attention(
                                pool,
                                &shape,
                                &q[rows.clone()],
                                kv,
                                pos0,
                                len,
                                per_token,
                                &mut attn[rows],
                            )
                        });
                    }
                    tap(taps, "kqv_out", Some(il), attn);
                    for (s, &(row0, len, _)) in seqs.iter().zip(&spans) {
                        if let Some(n) = value_rotation(s.state.kv.pool().types().v, hd) {
                            rotate(&mut attn[row0 * q_dim..(row0 + len) * q_dim], n);
                        }
                    }
                    let out = sized(&mut b.out, n * d); // (n, d) "attn_out"
                    if let Some(tp) = &self.tp {
                        // Every rank needs every head's output; each computes some rows.
                        let hd = hp.head_dim;
                        let whole = sized(&mut b.gathered, n * hp.q_dim());
                        self.gather(
                            attn,
                            n,
                            |s| s.heads.start * hd..s.heads.end * hd,
                            Gathered::input_of(g.wo.ty),
                            whole,
                        )?;
                        let part = sized(&mut b.part, n * tp.shard.rows.len());
                        linear(pool, f, arith, &g.wo, whole, n, part)?;
                        self.gather(part, n, |s| s.rows.clone(), Gathered::Residual, out)?;
                    } else {
                        linear(pool, f, arith, &g.wo, attn, n, out)?;
                    }
                }
            }
            let out = sized(&mut b.out, n * d); // (n, d) "attn_out"
            tap(taps, "attn_out", Some(il), out);
            if let Some(w) = &blk.attn_post_norm {
                let xn = sized(&mut b.xn, n * d);
                rms_norm(out, w, hp.rms_eps, xn);
                out.copy_from_slice(xn);
                tap(taps, "attn_post_norm", Some(il), out);
            }
            add_into(x, out);
            tap(taps, "ffn_inp", Some(il), x);

            // feed-forward
            let xn = sized(&mut b.xn, n * d);
            rms_norm(x, &blk.ffn_norm, hp.rms_eps, xn);
            tap(taps, "ffn_norm", Some(il), xn);
            let mlp = match &blk.ffn {
                Ffn::Dense(mlp) => mlp,
                Ffn::Moe(moe) => {
                    let ep = self.ep.as_ref();
                    moe.forward(pool, f, arith, xn, n, &mut b.moe, out, taps, il, ep)?;
                    tap(taps, "ffn_out", Some(il), out);
                    add_into(x, out);
                    tap(taps, "l_out", Some(il), x);
                    continue;
                }
            };
            let gate = sized(&mut b.gate, n * ff); // (n, ff)
            let up = sized(&mut b.up, n * ff); // (n, ff)
            linear(pool, f, arith, &mlp.gate, xn, n, gate)?;
            linear(pool, f, arith, &mlp.up, xn, n, up)?;
            tap(taps, "ffn_gate", Some(il), gate);
            tap(taps, "ffn_up", Some(il), up);
            match cfg.activation {
                _ if ff == 0 => {} // a tensor-parallel rank without feed-forward columns
                Activation::SwiGlu => swiglu(gate, up, ff),
                Activation::GeGlu => geglu(gate, up),
            }
            let act_name = match cfg.activation {
                Activation::SwiGlu => "ffn_swiglu",
                Activation::GeGlu => "ffn_geglu",
            };
            tap(taps, act_name, Some(il), gate);
            if let Some(tp) = &self.tp {
                let whole = sized(&mut b.gathered, n * hp.n_ff);
                self.gather(
                    gate,
                    n,
                    |s| s.ff.clone(),
                    Gathered::input_of(mlp.down.ty),
                    whole,
                )?;
                let part = sized(&mut b.part, n * tp.shard.rows.len());
                linear(pool, f, arith, &mlp.down, whole, n, part)?;
                self.gather(part, n, |s| s.rows.clone(), Gathered::Residual, out)?;
            } else {
                linear(pool, f, arith, &mlp.down, gate, n, out)?;
            }
            tap(taps, "ffn_out", Some(il), out);
            if let Some(w) = &blk.ffn_post_norm {
                rms_norm(out, w, hp.rms_eps, xn);
                out.copy_from_slice(xn);
                tap(taps, "ffn_post_norm", Some(il), out);
            }
            add_into(x, out);
            tap(taps, "l_out", Some(il), x);
        }
        for (s, &(_, len, _)) in seqs.iter_mut().zip(&spans) {
            s.state.n_past += len;
            s.state.kv.commit(s.tokens);
        }
        if let Some(out) = stage.hidden_out {
            out.clear();
            out.extend_from_slice(x);
            return Ok(());
        }
        let lens: Vec<usize> = spans.iter().map(|&(_, len, _)| len).collect();
        self.head(pool, seqs, &lens, x, &mut b.xn, &mut b.out, taps, arith)
    }

    /// The final norm and the output projection over `x` (the last layer's
    /// hidden states, `lens[i]` rows for sequence `i`), for the rows each
    /// sequence's [`Logits`] asks for.
    #[allow(clippy::too_many_arguments)]
    fn head(
        &self,
        pool: &ThreadPool,
        seqs: &mut [Seq<'_>],
        lens: &[usize],
        x: &[f32],
        xn_buf: &mut Vec<f32>,
        out_buf: &mut Vec<f32>,
        taps: &mut Option<crate::state::Tap>,
        arith: Arithmetic,
    ) -> Result<(), ModelError> {
        let (hp, f, d) = (&self.hp, &*self.file, self.hp.n_embd);
        // output: only the rows whose logits are wanted, all sequences in one matmul
        let mut picked = Vec::new(); // (sequence, first row, rows)
        let mut n_out = 0;
        let mut row0 = 0;
        for (i, (s, &len)) in seqs.iter_mut().zip(lens).enumerate() {
            let first = match s.logits {
                Logits::All => 0,
                Logits::Last => len - 1,
                Logits::None => len,
            };
            picked.push((i, row0 + first, len - first));
            n_out += len - first;
            row0 += len;
        }
        let xn = sized(xn_buf, n_out * d);
        let mut at = 0;
        for &(_, r, rows) in &picked {
            rms_norm(
                &x[r * d..(r + rows) * d],
                &self.output_norm,
                hp.rms_eps,
                &mut xn[at * d..(at + rows) * d],
            );
            at += rows;
        }
        tap(taps, "result_norm", None, xn);
        let nv = hp.n_vocab;
        picked.retain(|&(_, _, rows)| rows > 0);
        if n_out == 0 {
            return Ok(());
        }
        if let [(i, _, _)] = picked[..] {
            // One sequence: straight into its logits.
            let logits = &mut seqs[i].state.logits;
            logits.resize(n_out * nv, 0.0);
            linear(pool, f, arith, &self.output, xn, n_out, logits)?;
            tap(taps, "result_output", None, logits);
            return Ok(());
        }
        let all = sized(out_buf, n_out * nv);
        linear(pool, f, arith, &self.output, xn, n_out, all)?;
        tap(taps, "result_output", None, all);
        let mut at = 0;
        for &(i, _, rows) in &picked {
            let logits = &mut seqs[i].state.logits;
            logits.clear();
            logits.extend_from_slice(&all[at * nv..(at + rows) * nv]);
            at += rows;
        }
        Ok(())
    }
}

fn add_into(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Adds `bias` to every row of `x`.
fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (a, &b) in row.iter_mut().zip(bias) {
            *a += b;
        }
    }
}
