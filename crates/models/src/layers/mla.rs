//! Multi-head latent attention (DeepSeek-V2/V3), in the "absorbed" form
//! llama.cpp runs: the KV cache holds one compressed latent row per token
//! and layer (`kv_lora_rank` features plus the decoupled RoPE dimensions),
//! never the expanded per-head keys and values.
//!
//! ```text
//! q       = [q_b · rmsnorm(q_a · h)]  or  q · h          (n, n_head, nope + rope)  q
//! c, k_pe = kv_a · h                                     (n, kv_lora), (n, rope)   kv_cmpr_pe
//! c       = rmsnorm(c) ; k_pe = rope(k_pe)              the latent row [c, k_pe] is cached
//! q_pe    = rope(q[.., nope..])
//! q_c[h]  = k_b[h] · q[h, ..nope]                        (n, n_head, kv_lora)      q_nope_absorbed
//! o[h]    = softmax(scale · [q_c, q_pe][h] · [c, k_pe]ᵀ) · c     one KV head for all query heads
//! out     = wo · (v_b[h] · o[h])_h                       (n, n_embd)               attn_out
//! ```
//!
//! Keys and values are the same cached rows (values are their first
//! `kv_lora_rank` features), so a token costs `kv_lora_rank + rope` f16 per
//! layer: 576 values for DeepSeek-V3 against 2 × 128 heads × 192/128 for the
//! expanded keys and values.

use sparetire_formats::gguf::GgufFile;
use sparetire_quant::ThreadPool;

use super::attention::{attention, AttnShape, HeadOffsets};
use super::norm::rms_norm;
use super::rope::{rope_apply, rope_table_yarn, RopeStyle, Yarn};
use crate::state::{sized, tap, Tap};
use crate::weights::Weight;
use crate::{linear, Arithmetic, ModelError, Seq};

/// The query projection: low-rank (DeepSeek-V2/V3) or direct (V2-Lite).
#[derive(Clone, Debug)]
pub enum MlaQuery {
    /// `q_b · rmsnorm(q_a · h)`.
    LowRank {
        /// `attn_q_a`: `(q_lora_rank, n_embd)`.
        a: Weight,
        /// `attn_q_a_norm`.
        norm: Vec<f32>,
        /// `attn_q_b`: `(n_head * (nope + rope), q_lora_rank)`.
        b: Weight,
    },
    /// `attn_q`: `(n_head * (nope + rope), n_embd)`.
    Direct(Weight),
}

/// The shape of a latent attention layer.
#[derive(Clone, Debug, PartialEq)]
pub struct MlaShape {
    /// Query heads.
    pub n_head: usize,
    /// Per-head query/key features without RoPE (`key_length_mla - rope`).
    pub nope: usize,
    /// Decoupled RoPE features per head (`rope.dimension_count`).
    pub rope: usize,
    /// Width of the compressed KV latent (`attention.kv_lora_rank`).
    pub kv_lora: usize,
    /// Per-head value width after up-projection (`value_length_mla`).
    pub v_head: usize,
    /// Softmax scale (with YaRN's magnitude correction folded in).
    pub scale: f32,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// RoPE (YaRN) scaling.
    pub yarn: Yarn,
    /// RMSNorm epsilon of the latent norms.
    pub eps: f32,
}

impl MlaShape {
    /// Features of one cached latent row.
    pub fn latent(&self) -> usize {
        self.kv_lora + self.rope
    }
}

/// One latent attention layer's weights.
#[derive(Clone, Debug)]
pub struct Mla {
    /// Its shape.
    pub shape: MlaShape,
    /// The query projection.
    pub q: MlaQuery,
    /// `attn_kv_a_mqa`: `(kv_lora + rope, n_embd)`.
    pub kv_a: Weight,
    /// `attn_kv_a_norm` (`kv_lora`).
    pub kv_a_norm: Vec<f32>,
    /// `attn_k_b`, one `(kv_lora, nope)` matrix per head.
    pub k_b: Vec<Weight>,
    /// `attn_v_b`, one `(v_head, kv_lora)` matrix per head.
    pub v_b: Vec<Weight>,
    /// `attn_output`: `(n_embd, n_head * v_head)`.
    pub wo: Weight,
}

/// Scratch buffers of [`Mla::forward`], kept between calls.
#[derive(Default)]
pub struct MlaBuffers {
    qa: Vec<f32>,
    qa_n: Vec<f32>,
    q: Vec<f32>,
    kv: Vec<f32>,
    latent: Vec<f32>,
    head_in: Vec<f32>,
    head_out: Vec<f32>,
    q_full: Vec<f32>,
    attn: Vec<f32>,
    o: Vec<f32>,
    /// Values in use in `o` (it keeps the capacity of earlier, larger calls).
    o_len: usize,
}

impl Mla {
    /// Checks the per-head matrices against the shape.
    pub fn validate(&self) -> Result<(), ModelError> {
        let s = &self.shape;
        if self.k_b.len() != s.n_head || self.v_b.len() != s.n_head {
            // (Called on the whole layer, before any tensor-parallel cut.)
            return Err(ModelError::Invalid(format!(
                "latent attention: {} k_b and {} v_b matrices for {} heads",
                self.k_b.len(),
                self.v_b.len(),
                s.n_head
            )));
        }
        Ok(())
    }

    /// Bytes of its weights, norms included (all read by every token).
    pub fn n_bytes(&self) -> usize {
        let q = match &self.q {
            MlaQuery::LowRank { a, norm, b } => a.n_bytes() + 4 * norm.len() + b.n_bytes(),
            MlaQuery::Direct(w) => w.n_bytes(),
        };
        q + self.kv_a.n_bytes()
            + 4 * self.kv_a_norm.len()
            + self
                .k_b
                .iter()
                .chain(&self.v_b)
                .map(Weight::n_bytes)
                .sum::<usize>()
            + self.wo.n_bytes()
    }

    /// Attention of layer `il` over `xn` (`(n, n_embd)`, already normalized)
    /// into `out` (`(n, n_embd)`): [`Mla::heads`], then the output projection.
    #[allow(clippy::too_many_arguments)] // why: the model context of one layer call
    pub fn forward(
        &self,
        pool: &ThreadPool,
        f: &GgufFile,
        arith: Arithmetic,
        xn: &[f32],
        n: usize,
        seqs: &mut [Seq<'_>],
        spans: &[(usize, usize, usize)],
        il: usize,
        b: &mut MlaBuffers,
        out: &mut [f32],
        taps: &mut Option<Tap>,
    ) -> Result<(), ModelError> {
        self.heads(pool, f, arith, xn, n, seqs, spans, il, b, taps)?;
        linear(pool, f, arith, &self.wo, b.values(), n, out)
    }

    /// Query heads this layer holds (all of them, or a tensor-parallel
    /// rank's consecutive share: its query rows and `k_b`/`v_b` matrices).
    pub fn n_heads(&self) -> usize {
        self.k_b.len()
    }

    /// The heads' part of [`Mla::forward`]: appends each sequence's latent
    /// rows to its cache (the whole latent, on every tensor-parallel rank),
    /// attends over them with this layer's heads and leaves their values,
    /// `(n, n_heads * v_head)`, in [`MlaBuffers::values`]. `spans` are each
    /// sequence's `(first row, rows, first position)`.
    #[allow(clippy::too_many_arguments)] // why: the model context of one layer call
    pub fn heads(
        &self,
        pool: &ThreadPool,
        f: &GgufFile,
        arith: Arithmetic,
        xn: &[f32],
        n: usize,
        seqs: &mut [Seq<'_>],
        spans: &[(usize, usize, usize)],
        il: usize,
        b: &mut MlaBuffers,
        taps: &mut Option<Tap>,
    ) -> Result<(), ModelError> {
        let s = &self.shape;
        let (nh, nope, rope, c) = (self.n_heads(), s.nope, s.rope, s.kv_lora);
        let qk = nope + rope; // per-head query width
        let lat = s.latent();
        let q = sized(&mut b.q, n * nh * qk); // (n, n_head, nope + rope)
        match &self.q {
            MlaQuery::LowRank { a, norm, b: wb } => {
                let qa = sized(&mut b.qa, n * a.rows);
                linear(pool, f, arith, a, xn, n, qa)?;
                let qa_n = sized(&mut b.qa_n, n * a.rows);
                rms_norm(qa, norm, s.eps, qa_n);
                linear(pool, f, arith, wb, qa_n, n, q)?;
            }
            MlaQuery::Direct(w) => linear(pool, f, arith, w, xn, n, q)?,
        }
        tap(taps, "q", Some(il), q);
        let kv = sized(&mut b.kv, n * lat); // (n, kv_lora + rope) "kv_cmpr_pe"
        linear(pool, f, arith, &self.kv_a, xn, n, kv)?;
        tap(taps, "kv_cmpr_pe", Some(il), kv);
        // The cached rows: [rmsnorm(c), rope(k_pe)].
        let latent = sized(&mut b.latent, n * lat);
        let (mut cos, mut sin) = (vec![0f32; rope / 2], vec![0f32; rope / 2]);
        for &(row0, len, pos0) in spans {
            for t in 0..len {
                let r = row0 + t;
                rope_table_yarn(pos0 + t, rope, s.rope_base, &s.yarn, &mut cos, &mut sin);
                let (src, dst) = (
                    &kv[r * lat..(r + 1) * lat],
                    &mut latent[r * lat..(r + 1) * lat],
                );
                rms_norm(&src[..c], &self.kv_a_norm, s.eps, &mut dst[..c]);
                dst[c..].copy_from_slice(&src[c..]);
                rope_apply(&mut dst[c..], rope, RopeStyle::Normal, &cos, &sin);
                for h in 0..nh {
                    let qh = &mut q[(r * nh + h) * qk..][..qk];
                    rope_apply(&mut qh[nope..], rope, RopeStyle::Normal, &cos, &sin);
                }
            }
        }
        tap(taps, "Kcur", Some(il), latent);
        for (sq, &(row0, len, pos0)) in seqs.iter_mut().zip(spans) {
            let rows = &latent[row0 * lat..(row0 + len) * lat];
            sq.state.kv.store(il, pos0, rows, &[]);
        }
        // Absorb k_b into the queries: per head, (n, nope) -> (n, kv_lora).
        let q_full = sized(&mut b.q_full, n * nh * lat); // (n, n_head, kv_lora + rope) "Qcur"
        let head_in = sized(&mut b.head_in, n * nope);
        let head_out = sized(&mut b.head_out, n * c.max(s.v_head));
        for (h, kb) in self.k_b.iter().enumerate() {
            for t in 0..n {
                head_in[t * nope..(t + 1) * nope].copy_from_slice(&q[(t * nh + h) * qk..][..nope]);
            }
            linear(pool, f, arith, kb, head_in, n, &mut head_out[..n * c])?;
            for t in 0..n {
                let dst = &mut q_full[(t * nh + h) * lat..][..lat];
                dst[..c].copy_from_slice(&head_out[t * c..(t + 1) * c]);
                dst[c..].copy_from_slice(&q[(t * nh + h) * qk + nope..][..rope]);
            }
        }
        tap(taps, "Qcur", Some(il), q_full);
        // Multi-query attention over the latent rows: values are their first kv_lora features.
        let shape = AttnShape {
            n_head: nh,
            n_head_kv: 1,
            head_dim: lat,
            head_dim_v: c,
            values_in_keys: true,
            scale: s.scale,
            window: None,
            offsets: HeadOffsets::default(),
        };
        let per_token = arith == Arithmetic::PerToken;
        let attn = sized(&mut b.attn, n * nh * c); // (n, n_head, kv_lora)
        for (sq, &(row0, len, pos0)) in seqs.iter().zip(spans) {
            let qr = &q_full[row0 * nh * lat..(row0 + len) * nh * lat];
            let or = &mut attn[row0 * nh * c..(row0 + len) * nh * c];
            sq.state.kv.with_layer(il, |kv| {
                attention(pool, &shape, qr, kv, pos0, len, per_token, or)
            });
        }
        tap(taps, "kqv_out", Some(il), attn);
        // Up-project each head's latent output to its values: (n, kv_lora) -> (n, v_head).
        let vh = s.v_head;
        let o = sized(&mut b.o, n * nh * vh); // (n, n_head * v_head)
        let head_in = sized(&mut b.head_in, n * c);
        for (h, vb) in self.v_b.iter().enumerate() {
            for t in 0..n {
                head_in[t * c..(t + 1) * c].copy_from_slice(&attn[(t * nh + h) * c..][..c]);
            }
            linear(pool, f, arith, vb, head_in, n, &mut head_out[..n * vh])?;
            for t in 0..n {
                o[(t * nh + h) * vh..][..vh].copy_from_slice(&head_out[t * vh..(t + 1) * vh]);
            }
        }
        tap(taps, "kqv_mla", Some(il), o);
        b.o_len = n * nh * vh;
        Ok(())
    }
}

impl MlaBuffers {
    /// The values [`Mla::heads`] left: `(n, n_heads * v_head)`.
    pub fn values(&self) -> &[f32] {
        &self.o[..self.o_len]
    }
}
