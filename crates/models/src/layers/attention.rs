//! Scaled dot-product attention with grouped-query heads over an f16 KV cache.

use std::sync::Mutex;

use half::f16;
use sparetire_quant::ThreadPool;

/// The shape of one attention layer.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (each serves `n_head / n_head_kv` query heads).
    pub n_head_kv: usize,
    /// Width of each head.
    pub head_dim: usize,
    /// Multiplier of `q·k` before the softmax (usually `1/sqrt(head_dim)`).
    pub scale: f32,
    /// If set, a query at position `p` sees only keys at `p - window + 1 ..= p`.
    pub window: Option<usize>,
}

/// Batches of at least this many tokens take llama.cpp's tiled f32 path;
/// smaller ones (every decode step) its f16 one (`GGML_FA_TILE_Q`).
pub const F32_PATH_MIN_TOKENS: usize = 64;

/// Causal attention for `n_tok` new tokens at positions `pos0..pos0 + n_tok`
/// whose keys and values are already stored in the cache.
///
/// `q`: `(n_tok, n_head * head_dim)`; `keys`, `values`: `(n_ctx, n_head_kv * head_dim)`;
/// `out`: `(n_tok, n_head * head_dim)`.
///
/// Numerics follow llama.cpp's CPU flash attention, which its default
/// settings use, so that our logits track the reference closely: batches of
/// [`F32_PATH_MIN_TOKENS`] or more are computed in f32 throughout; smaller
/// batches round `q` to f16 and accumulate the weighted values in an f16
/// buffer with an online softmax ([`attend_f16`]).
#[allow(clippy::too_many_arguments)] // why: the shapes are the interface; a struct would only rename them
pub fn attention(
    pool: &ThreadPool,
    shape: &AttnShape,
    q: &[f32],
    keys: &[f16],
    values: &[f16],
    pos0: usize,
    n_tok: usize,
    out: &mut [f32],
) {
    let AttnShape { n_head, n_head_kv, head_dim, .. } = *shape;
    let q_dim = n_head * head_dim;
    let kv_dim = n_head_kv * head_dim;
    let group = n_head / n_head_kv;
    let n_items = n_tok * n_head;
    let n_threads = pool.n_threads().max(1);
    let per = n_items.div_ceil(n_threads);
    let f32_path = n_tok >= F32_PATH_MIN_TOKENS;
    // Each thread takes a contiguous range of (token, head) items, whose outputs are a contiguous range.
    let chunks: Vec<Mutex<&mut [f32]>> = out[..n_items * head_dim].chunks_mut(per * head_dim).map(Mutex::new).collect();
    pool.run(|ti, _| {
        let Some(chunk) = chunks.get(ti) else { return };
        let mut chunk = chunk.lock().unwrap_or_else(|e| e.into_inner());
        let first = ti * per;
        let last = (first + per).min(n_items);
        let mut scratch = Scratch::new(head_dim, pos0 + n_tok);
        for item in first..last {
            let (t, h) = (item / n_head, item % n_head);
            let p = pos0 + t;
            let lo = shape.window.map_or(0, |w| (p + 1).saturating_sub(w));
            let kv = KvHead {
                keys,
                values,
                offset: (h / group) * head_dim,
                stride: kv_dim,
                head_dim,
            };
            let qrow = &q[t * q_dim + h * head_dim..][..head_dim];
            let o = &mut chunk[(item - first) * head_dim..][..head_dim];
            if f32_path {
                attend_f32(qrow, &kv, lo..=p, shape.scale, &mut scratch, o);
            } else {
                attend_f16(qrow, &kv, lo..=p, shape.scale, &mut scratch, o);
            }
        }
    });
}

/// One KV head's rows inside the cache of a layer.
pub struct KvHead<'a> {
    keys: &'a [f16],
    values: &'a [f16],
    offset: usize,
    stride: usize,
    head_dim: usize,
}

impl KvHead<'_> {
    fn k(&self, j: usize) -> &[f16] {
        &self.keys[j * self.stride + self.offset..][..self.head_dim]
    }
    fn v(&self, j: usize) -> &[f16] {
        &self.values[j * self.stride + self.offset..][..self.head_dim]
    }
}

/// Per-thread buffers of the attention kernels.
pub struct Scratch {
    q16: Vec<f16>,
    acc16: Vec<f16>,
    acc: Vec<f32>,
    scores: Vec<f32>,
}

impl Scratch {
    fn new(head_dim: usize, n_pos: usize) -> Self {
        Scratch {
            q16: vec![f16::ZERO; head_dim],
            acc16: vec![f16::ZERO; head_dim],
            acc: vec![0.0; head_dim],
            scores: Vec::with_capacity(n_pos),
        }
    }
}

/// One query head against keys `range`, all in f32 (llama.cpp's tiled path).
fn attend_f32(q: &[f32], kv: &KvHead, range: std::ops::RangeInclusive<usize>, scale: f32, sc: &mut Scratch, out: &mut [f32]) {
    let lo = *range.start();
    sc.scores.clear();
    let mut max = f32::NEG_INFINITY;
    for j in range {
        let dot: f32 = q.iter().zip(kv.k(j)).map(|(&a, b)| a * b.to_f32()).sum();
        let s = dot * scale;
        max = max.max(s);
        sc.scores.push(s);
    }
    let mut sum = 0f32;
    for s in sc.scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    sc.acc.fill(0.0);
    for (jj, &w) in sc.scores.iter().enumerate() {
        for (a, v) in sc.acc.iter_mut().zip(kv.v(lo + jj)) {
            *a += w * v.to_f32();
        }
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (o, &a) in out.iter_mut().zip(&sc.acc) {
        *o = a * inv;
    }
}

/// One query head against keys `range` the way llama.cpp's single-row flash
/// attention does it: `q` rounded to f16, online softmax, and the weighted
/// values accumulated in f16 (rounded after every key).
fn attend_f16(q: &[f32], kv: &KvHead, range: std::ops::RangeInclusive<usize>, scale: f32, sc: &mut Scratch, out: &mut [f32]) {
    for (d, &s) in sc.q16.iter_mut().zip(q) {
        *d = f16::from_f32(s);
    }
    sc.acc16.fill(f16::ZERO);
    let mut sum = 0f32;
    let mut max = f32::NEG_INFINITY;
    for j in range {
        let dot: f32 = sc.q16.iter().zip(kv.k(j)).map(|(a, b)| a.to_f32() * b.to_f32()).sum();
        let s = dot * scale;
        let (mut ms, mut vs) = (1.0f32, 1.0f32);
        if s > max {
            ms = (max - s).exp();
            max = s;
            for a in sc.acc16.iter_mut() {
                *a = f16::from_f32(a.to_f32() * ms);
            }
        } else {
            vs = (s - max).exp();
        }
        for (a, v) in sc.acc16.iter_mut().zip(kv.v(j)) {
            *a = f16::from_f32(v.to_f32().mul_add(vs, a.to_f32()));
        }
        sum = sum * ms + vs;
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (o, a) in out.iter_mut().zip(&sc.acc16) {
        *o = a.to_f32() * inv;
    }
}
