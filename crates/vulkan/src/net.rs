//! The decoder's forward pass over an [`Ops`] backend: [`Net`] holds a
//! `llama`/`gemma3` decoder's weights on the backend (all layers or the first
//! few), [`Scratch`] the activations of a batch, [`KvLayers`] a paged KV cache.
//!
//! ```text
//! x = get_rows(embd, tokens) [* sqrt(n_embd)]             (n, d)
//! per layer:
//!   xn = rms_norm(x) ; q, k, v = xn·Wq, xn·Wk, xn·Wv [+ b]  (n, q_dim) (n, kv_dim) (n, kv_dim)
//!   q, k = rms_norm per head (gemma3) ; rope(q, k)
//!   cache[pos0 ..] = k, v ; attn = attention(q [* q_scale], cache)   (n, q_dim)
//!   out = attn·Wo [rms_norm] ; x += out
//!   xn = rms_norm(x) ; gate, up = xn·Wg, xn·Wu              (n, ff)
//!   out = glu(gate, up)·Wd [rms_norm] ; x += out
//! logits = rms_norm(x)·Wout for the rows asked for         (rows, n_vocab)
//! ```

use sparetire_models::decoder::{Activation, Attn, DecoderParts, Ffn};
use sparetire_models::layers::rope::RopeStyle;
use sparetire_models::weights::Weight;
use sparetire_models::HParams;

use crate::error::VulkanError;
use crate::ops::{Attention, Binary, Glu, HostWeight, Ops, Rope, BLOCK};

/// One block's weights on the backend.
pub struct NetBlock<O: Ops> {
    attn_norm: O::Buf,
    wq: O::Weight,
    wk: O::Weight,
    wv: O::Weight,
    wo: O::Weight,
    bqkv: Option<[O::Buf; 3]>,
    qk_norm: Option<[O::Buf; 2]>,
    attn_post_norm: Option<O::Buf>,
    ffn_norm: O::Buf,
    gate: O::Weight,
    up: O::Weight,
    down: O::Weight,
    ffn_post_norm: Option<O::Buf>,
    rope_base: f32,
    window: Option<usize>,
}

/// The final norm and output projection (`None`: the embedding, tied).
struct Head<O: Ops> {
    norm: O::Buf,
    output: Option<O::Weight>,
}

/// A decoder's weights on a backend.
pub struct Net<O: Ops> {
    hp: HParams,
    rope_neox: bool,
    embd_scale: f32,
    q_scale: Option<f32>,
    glu: Glu,
    embd: O::Weight,
    blocks: Vec<NetBlock<O>>,
    head: Option<Head<O>>,
}

/// Activation buffers for batches of up to `cap` tokens.
pub struct Scratch<O: Ops> {
    cap: usize,
    x: O::Buf,
    xn: O::Buf,
    q: O::Buf,
    k: O::Buf,
    v: O::Buf,
    attn: O::Buf,
    gate: O::Buf,
    up: O::Buf,
    out: O::Buf,
    /// Rows of logits computed at once (a buffer must fit one binding).
    logit_rows: usize,
    logits: Option<O::Buf>,
}

impl<O: Ops> Scratch<O> {
    /// Most tokens a batch may have.
    pub fn cap(&self) -> usize {
        self.cap
    }
}

/// The keys and values of every layer on the backend, in blocks of 16
/// positions that sequences address through their block tables.
pub struct KvLayers<O: Ops> {
    k: Vec<O::Cache>,
    v: Vec<O::Cache>,
    n_blocks: usize,
    width: usize,
}

impl<O: Ops> KvLayers<O> {
    /// Blocks it holds.
    pub fn n_blocks(&self) -> usize {
        self.n_blocks
    }
}

/// What one forward call of one sequence computes.
pub struct Step<'a> {
    /// The tokens, at positions `pos0 ..`.
    pub tokens: &'a [u32],
    /// Position of the first token.
    pub pos0: usize,
    /// The sequence's block table (block ids of its positions, 16 per block).
    pub table: &'a [u32],
    /// Blocks to copy first, `(from, to)`, in every layer (a shared block
    /// the sequence is about to write into).
    pub copies: &'a [(u32, u32)],
    /// First row whose logits are wanted (`tokens.len()` for none); ignored
    /// when the network has no head.
    pub first_logit: usize,
}

/// Why a decoder cannot run on this backend, if it cannot.
pub fn unsupported(p: &DecoderParts<'_>) -> Option<String> {
    let hp = p.hp;
    if hp.arch != "llama" && hp.arch != "gemma3" {
        return Some(format!(
            "architecture {:?} (the Vulkan backend runs llama and gemma3)",
            hp.arch
        ));
    }
    if hp.head_dim > 512 || !hp.head_dim.is_multiple_of(2) || hp.n_rot > hp.head_dim {
        return Some(format!("heads of {} dimensions", hp.head_dim));
    }
    if hp.n_head_kv == 0 || !hp.n_head.is_multiple_of(hp.n_head_kv) {
        return Some(format!(
            "{} heads over {} KV heads",
            hp.n_head, hp.n_head_kv
        ));
    }
    for b in p.blocks {
        if !matches!(b.attn, Attn::Gqa(_)) || !matches!(b.ffn, Ffn::Dense(_)) {
            return Some("latent attention or mixture-of-experts layers".into());
        }
    }
    None
}

fn host<'a>(p: &DecoderParts<'a>, w: &'a Weight) -> HostWeight<'a> {
    HostWeight {
        ty: w.ty,
        rows: w.rows,
        cols: w.cols,
        data: w.bytes(p.file),
    }
}

fn vector<O: Ops>(ops: &mut O, v: &[f32]) -> Result<O::Buf, VulkanError> {
    let b = ops.buf(v.len())?;
    ops.write(&b, v)?;
    Ok(b)
}

fn opt_vector<O: Ops>(ops: &mut O, v: &Option<Vec<f32>>) -> Result<Option<O::Buf>, VulkanError> {
    v.as_deref().map(|v| vector(ops, v)).transpose()
}

impl<O: Ops> Net<O> {
    /// Uploads the embedding, the first `n_layers` blocks and, if `head`, the
    /// final norm and output projection of the decoder `p`.
    pub fn upload(
        ops: &mut O,
        p: &DecoderParts<'_>,
        n_layers: usize,
        head: bool,
    ) -> Result<Net<O>, VulkanError> {
        if let Some(why) = unsupported(p) {
            return Err(VulkanError::Unsupported(why));
        }
        let mut blocks = Vec::with_capacity(n_layers);
        for b in &p.blocks[..n_layers.min(p.blocks.len())] {
            let (Attn::Gqa(g), Ffn::Dense(m)) = (&b.attn, &b.ffn) else {
                return Err(VulkanError::Unsupported("a non-dense block".into()));
            };
            let bqkv = match &b.bqkv {
                Some([q, k, v]) => Some([vector(ops, q)?, vector(ops, k)?, vector(ops, v)?]),
                None => None,
            };
            let qk_norm = match &b.qk_norm {
                Some([q, k]) => Some([vector(ops, q)?, vector(ops, k)?]),
                None => None,
            };
            blocks.push(NetBlock {
                attn_norm: vector(ops, &b.attn_norm)?,
                wq: ops.weight(&host(p, &g.wq))?,
                wk: ops.weight(&host(p, &g.wk))?,
                wv: ops.weight(&host(p, &g.wv))?,
                wo: ops.weight(&host(p, &g.wo))?,
                bqkv,
                qk_norm,
                attn_post_norm: opt_vector(ops, &b.attn_post_norm)?,
                ffn_norm: vector(ops, &b.ffn_norm)?,
                gate: ops.weight(&host(p, &m.gate))?,
                up: ops.weight(&host(p, &m.up))?,
                down: ops.weight(&host(p, &m.down))?,
                ffn_post_norm: opt_vector(ops, &b.ffn_post_norm)?,
                rope_base: b.cfg.rope_base,
                window: b.cfg.window,
            });
        }
        let head = if head {
            Some(Head {
                norm: vector(ops, p.output_norm)?,
                // A tied output is the embedding, uploaded once.
                output: if p.output.name == p.tok_embd.name {
                    None
                } else {
                    Some(ops.weight(&host(p, p.output))?)
                },
            })
        } else {
            None
        };
        Ok(Net {
            hp: p.hp.clone(),
            rope_neox: p.cfg.rope_style == RopeStyle::Neox,
            embd_scale: p.cfg.embd_scale.unwrap_or(1.0),
            q_scale: p.cfg.q_scale,
            glu: match p.cfg.activation {
                Activation::SwiGlu => Glu::SwiGlu,
                Activation::GeGlu => Glu::GeGlu,
            },
            embd: ops.weight(&host(p, p.tok_embd))?,
            blocks,
            head,
        })
    }

    /// Layers on the backend.
    pub fn n_layers(&self) -> usize {
        self.blocks.len()
    }

    /// Whether the final norm and output projection are on the backend.
    pub fn has_head(&self) -> bool {
        self.head.is_some()
    }

    /// A KV cache of `n_blocks` blocks for the layers on the backend.
    pub fn kv(&self, ops: &mut O, n_blocks: usize) -> Result<KvLayers<O>, VulkanError> {
        let width = self.hp.kv_dim();
        let rows = n_blocks * BLOCK;
        let mut k = Vec::with_capacity(self.blocks.len());
        let mut v = Vec::with_capacity(self.blocks.len());
        for _ in &self.blocks {
            k.push(ops.cache(rows, width)?);
            v.push(ops.cache(rows, width)?);
        }
        Ok(KvLayers {
            k,
            v,
            n_blocks,
            width,
        })
    }

    /// Activation buffers for batches of up to `cap` tokens.
    pub fn scratch(&self, ops: &mut O, cap: usize) -> Result<Scratch<O>, VulkanError> {
        let hp = &self.hp;
        let cap = cap.max(1);
        let (d, q_dim, kv_dim, ff) = (hp.n_embd, hp.q_dim(), hp.kv_dim(), hp.n_ff);
        let logit_rows = (ops.max_values() / hp.n_vocab.max(1)).clamp(1, cap);
        let logits = match &self.head {
            Some(_) => Some(ops.buf(logit_rows * hp.n_vocab)?),
            None => None,
        };
        Ok(Scratch {
            cap,
            x: ops.buf(cap * d)?,
            xn: ops.buf(cap * d)?,
            q: ops.buf(cap * q_dim)?,
            k: ops.buf(cap * kv_dim)?,
            v: ops.buf(cap * kv_dim)?,
            attn: ops.buf(cap * q_dim)?,
            gate: ops.buf(cap * ff)?,
            up: ops.buf(cap * ff)?,
            out: ops.buf(cap * d)?,
            logit_rows,
            logits,
        })
    }

    /// Runs `step` through the layers on the backend. Returns the logits of
    /// rows `first_logit ..` (`(rows, n_vocab)`) when the network has its
    /// head, else the hidden states of every row (`(n, n_embd)`) for the CPU
    /// to continue from.
    pub fn forward(
        &self,
        ops: &mut O,
        s: &Scratch<O>,
        kv: &KvLayers<O>,
        step: &Step<'_>,
    ) -> Result<Vec<f32>, VulkanError> {
        let hp = &self.hp;
        let n = step.tokens.len();
        if n > s.cap {
            return Err(VulkanError::Invalid(format!(
                "a batch of {n} tokens in scratch for {}",
                s.cap
            )));
        }
        let (d, hd) = (hp.n_embd, hp.head_dim);
        let (q_dim, kv_dim, ff) = (hp.q_dim(), hp.kv_dim(), hp.n_ff);
        let eps = hp.rms_eps;
        let rows = BLOCK;
        for &(from, to) in step.copies {
            for c in kv.k.iter().chain(&kv.v) {
                ops.copy_rows(c, kv.width, from as usize * rows, to as usize * rows, rows)?;
            }
        }
        let ids = ops.ints(step.tokens)?;
        let table = ops.ints(step.table)?;
        ops.get_rows(&self.embd, ids, self.embd_scale, &s.x)?;
        for (il, b) in self.blocks.iter().enumerate() {
            // attention
            ops.rms_norm(&s.x, &b.attn_norm, n, d, eps, &s.xn)?;
            ops.matmul(&b.wq, &s.xn, 0, n, &s.q)?;
            ops.matmul(&b.wk, &s.xn, 0, n, &s.k)?;
            ops.matmul(&b.wv, &s.xn, 0, n, &s.v)?;
            if let Some([bq, bk, bv]) = &b.bqkv {
                ops.binary(Binary::Add, &s.q, bq, q_dim, n * q_dim, &s.q)?;
                ops.binary(Binary::Add, &s.k, bk, kv_dim, n * kv_dim, &s.k)?;
                ops.binary(Binary::Add, &s.v, bv, kv_dim, n * kv_dim, &s.v)?;
            }
            if let Some([nq, nk]) = &b.qk_norm {
                ops.rms_norm(&s.q, nq, n * hp.n_head, hd, eps, &s.q)?;
                ops.rms_norm(&s.k, nk, n * hp.n_head_kv, hd, eps, &s.k)?;
            }
            let rope = |n_head| Rope {
                n,
                n_head,
                head_dim: hd,
                n_rot: hp.n_rot,
                pos0: step.pos0,
                base: b.rope_base,
                neox: self.rope_neox,
            };
            ops.rope(&s.q, &rope(hp.n_head))?;
            ops.rope(&s.k, &rope(hp.n_head_kv))?;
            ops.kv_store(&s.k, n, kv_dim, &kv.k[il], table, step.pos0)?;
            ops.kv_store(&s.v, n, kv_dim, &kv.v[il], table, step.pos0)?;
            let scale = match self.q_scale {
                Some(qs) => {
                    ops.scale(&s.q, qs, n * q_dim, &s.q)?;
                    1.0
                }
                None => 1.0 / (hd as f32).sqrt(),
            };
            let a = Attention {
                n,
                n_head: hp.n_head,
                n_head_kv: hp.n_head_kv,
                head_dim: hd,
                pos0: step.pos0,
                scale,
                window: b.window,
            };
            ops.attention(&s.q, &kv.k[il], &kv.v[il], table, &a, &s.attn)?;
            ops.matmul(&b.wo, &s.attn, 0, n, &s.out)?;
            if let Some(w) = &b.attn_post_norm {
                ops.rms_norm(&s.out, w, n, d, eps, &s.out)?;
            }
            ops.binary(Binary::Add, &s.x, &s.out, n * d, n * d, &s.x)?;
            // feed-forward
            ops.rms_norm(&s.x, &b.ffn_norm, n, d, eps, &s.xn)?;
            ops.matmul(&b.gate, &s.xn, 0, n, &s.gate)?;
            ops.matmul(&b.up, &s.xn, 0, n, &s.up)?;
            ops.glu(self.glu, &s.gate, &s.up, n * ff)?;
            ops.matmul(&b.down, &s.gate, 0, n, &s.out)?;
            if let Some(w) = &b.ffn_post_norm {
                ops.rms_norm(&s.out, w, n, d, eps, &s.out)?;
            }
            ops.binary(Binary::Add, &s.x, &s.out, n * d, n * d, &s.x)?;
        }
        let (Some(h), Some(logits)) = (&self.head, &s.logits) else {
            let hidden = ops.read(&s.x, 0, n * d)?;
            ops.finish()?;
            return Ok(hidden);
        };
        let nv = hp.n_vocab;
        let first = step.first_logit.min(n);
        let mut out = Vec::with_capacity((n - first) * nv);
        if first < n {
            ops.rms_norm(&s.x, &h.norm, n, d, eps, &s.xn)?;
        }
        let mut r = first;
        while r < n {
            let m = s.logit_rows.min(n - r);
            ops.matmul(
                h.output.as_ref().unwrap_or(&self.embd),
                &s.xn,
                r * d,
                m,
                logits,
            )?;
            out.extend(ops.read(logits, 0, m * nv)?);
            r += m;
        }
        ops.finish()?;
        Ok(out)
    }
}
