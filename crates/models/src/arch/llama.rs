//! `llama`: RMSNorm, RoPE (adjacent pairs), grouped-query attention, SwiGLU.
//! SmolLM2, Llama 2/3, Mistral and many fine-tunes use it.

use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;
use sparetire_quant::{GgmlType, ThreadPool};

use crate::hparams::HParams;
use crate::kv_cache::KvCache;
use crate::layers::attention::{attention, AttnShape};
use crate::layers::mlp::swiglu;
use crate::layers::norm::rms_norm;
use crate::layers::rope::{rope_apply, rope_table, RopeStyle};
use crate::state::{sized, tap, State};
use crate::weights::{Weight, WeightLoader};
use crate::{linear, Logits, Model, ModelError};

/// One transformer block's weights.
struct Block {
    attn_norm: Vec<f32>,
    wq: Weight,
    wk: Weight,
    wv: Weight,
    wo: Weight,
    ffn_norm: Vec<f32>,
    w_gate: Weight,
    w_up: Weight,
    w_down: Weight,
}

/// A `llama`-architecture model over a memory-mapped GGUF file.
pub struct Llama {
    file: Arc<GgufFile>,
    hp: HParams,
    tok_embd: Weight,
    blocks: Vec<Block>,
    output_norm: Vec<f32>,
    /// `output.weight`, or `token_embd.weight` when the embedding is tied.
    output: Weight,
}

impl Llama {
    /// Loads and shape-checks every tensor.
    pub fn load(file: Arc<GgufFile>) -> Result<Llama, ModelError> {
        let hp = HParams::from_gguf(&file, "llama")?;
        let ld = WeightLoader::new(file.clone());
        let (d, q_dim, kv_dim, ff) = (hp.n_embd, hp.q_dim(), hp.kv_dim(), hp.n_ff);
        let tok_embd = ld.get("token_embd.weight", &[d, hp.n_vocab])?;
        let mut blocks = Vec::with_capacity(hp.n_layer);
        for i in 0..hp.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            blocks.push(Block {
                attn_norm: ld.vector(&n("attn_norm"), d)?,
                wq: matrix(&ld, &n("attn_q"), d, q_dim)?,
                wk: matrix(&ld, &n("attn_k"), d, kv_dim)?,
                wv: matrix(&ld, &n("attn_v"), d, kv_dim)?,
                wo: matrix(&ld, &n("attn_output"), q_dim, d)?,
                ffn_norm: ld.vector(&n("ffn_norm"), d)?,
                w_gate: matrix(&ld, &n("ffn_gate"), d, ff)?,
                w_up: matrix(&ld, &n("ffn_up"), d, ff)?,
                w_down: matrix(&ld, &n("ffn_down"), ff, d)?,
            });
        }
        let output_norm = ld.vector("output_norm.weight", d)?;
        let output = match ld.try_get("output.weight", &[d, hp.n_vocab])? {
            Some(w) => check_matmul_type(w)?,
            None => check_matmul_type(tok_embd.clone())?,
        };
        Ok(Llama {
            file,
            hp,
            tok_embd,
            blocks,
            output_norm,
            output,
        })
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

pub(crate) fn check_matmul_type(w: Weight) -> Result<Weight, ModelError> {
    match w.ty {
        GgmlType::Q8_1 | GgmlType::Q8_K => Err(ModelError::UnsupportedType {
            tensor: w.name.clone(),
            ty: w.ty.name().into(),
        }),
        _ => Ok(w),
    }
}

impl Model for Llama {
    fn hparams(&self) -> &HParams {
        &self.hp
    }

    fn new_state(&self, n_ctx: usize) -> Result<State, ModelError> {
        Ok(State::new(KvCache::new(
            self.hp.n_layer,
            n_ctx,
            self.hp.kv_dim(),
        )?))
    }

    fn forward(
        &self,
        pool: &ThreadPool,
        st: &mut State,
        tokens: &[u32],
        logits: Logits,
    ) -> Result<(), ModelError> {
        let hp = &self.hp;
        let f = &*self.file;
        let n = tokens.len();
        let pos0 = st.n_past;
        crate::check_batch(hp, st, tokens)?;
        let (d, q_dim, kv_dim, ff) = (hp.n_embd, hp.q_dim(), hp.kv_dim(), hp.n_ff);
        let b = &mut st.buf;
        let taps = &mut st.tap; // debugging hook, see [`crate::Tap`]
        let x = sized(&mut b.x, n * d); // (n, d) residual stream
        for (t, &tok) in tokens.iter().enumerate() {
            self.tok_embd
                .row_into(f, tok as usize, &mut x[t * d..(t + 1) * d])?;
        }
        let shape = AttnShape {
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim: hp.head_dim,
            scale: 1.0 / (hp.head_dim as f32).sqrt(),
            window: None,
        };
        let half = hp.n_rot / 2;
        let mut cos = vec![0f32; half];
        let mut sin = vec![0f32; half];
        for (il, blk) in self.blocks.iter().enumerate() {
            // attention
            let xn = sized(&mut b.xn, n * d); // (n, d) "attn_norm"
            rms_norm(x, &blk.attn_norm, hp.rms_eps, xn);
            tap(taps, "attn_norm", Some(il), xn);
            let q = sized(&mut b.q, n * q_dim); // (n, n_head * head_dim) "Qcur"
            let k = sized(&mut b.k, n * kv_dim); // (n, n_head_kv * head_dim) "Kcur"
            let v = sized(&mut b.v, n * kv_dim); // (n, n_head_kv * head_dim) "Vcur"
            linear(pool, f, &blk.wq, xn, n, q)?;
            linear(pool, f, &blk.wk, xn, n, k)?;
            linear(pool, f, &blk.wv, xn, n, v)?;
            for t in 0..n {
                rope_table(pos0 + t, hp.n_rot, hp.rope_base, &mut cos, &mut sin);
                rope_apply(
                    &mut q[t * q_dim..(t + 1) * q_dim],
                    hp.head_dim,
                    RopeStyle::Normal,
                    &cos,
                    &sin,
                );
                rope_apply(
                    &mut k[t * kv_dim..(t + 1) * kv_dim],
                    hp.head_dim,
                    RopeStyle::Normal,
                    &cos,
                    &sin,
                );
                st.kv.store(
                    il,
                    pos0 + t,
                    &k[t * kv_dim..(t + 1) * kv_dim],
                    &v[t * kv_dim..(t + 1) * kv_dim],
                );
            }
            tap(taps, "Qcur", Some(il), q);
            tap(taps, "Kcur", Some(il), k);
            tap(taps, "Vcur", Some(il), v);
            let attn = sized(&mut b.attn, n * q_dim); // (n, n_head * head_dim) "kqv_out"
            attention(
                pool,
                &shape,
                q,
                st.kv.keys(il),
                st.kv.values(il),
                pos0,
                n,
                attn,
            );
            tap(taps, "kqv_out", Some(il), attn);
            let out = sized(&mut b.out, n * d); // (n, d) "attn_out"
            linear(pool, f, &blk.wo, attn, n, out)?;
            tap(taps, "attn_out", Some(il), out);
            add_into(x, out);
            tap(taps, "ffn_inp", Some(il), x);

            // feed-forward
            rms_norm(x, &blk.ffn_norm, hp.rms_eps, xn);
            tap(taps, "ffn_norm", Some(il), xn);
            let gate = sized(&mut b.gate, n * ff); // (n, ff)
            let up = sized(&mut b.up, n * ff); // (n, ff)
            linear(pool, f, &blk.w_gate, xn, n, gate)?;
            linear(pool, f, &blk.w_up, xn, n, up)?;
            swiglu(gate, up, ff);
            tap(taps, "ffn_swiglu", Some(il), gate);
            linear(pool, f, &blk.w_down, gate, n, out)?;
            tap(taps, "ffn_out", Some(il), out);
            add_into(x, out);
            tap(taps, "l_out", Some(il), x);
        }
        st.n_past += n;

        // output: only the rows whose logits are wanted
        let first = match logits {
            Logits::All => 0,
            Logits::Last => n - 1,
        };
        let n_out = n - first;
        let xn = sized(&mut b.xn, n_out * d);
        rms_norm(&x[first * d..n * d], &self.output_norm, hp.rms_eps, xn);
        tap(taps, "result_norm", None, xn);
        st.logits.resize(n_out * hp.n_vocab, 0.0);
        linear(pool, f, &self.output, xn, n_out, &mut st.logits)?; // "result_output"
        Ok(())
    }
}

fn add_into(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
