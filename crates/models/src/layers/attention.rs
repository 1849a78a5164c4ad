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

/// Causal attention for `n_tok` new tokens at positions `pos0..pos0 + n_tok`
/// whose keys and values are already stored in the cache.
///
/// `q`: `(n_tok, n_head * head_dim)`; `keys`, `values`: `(n_ctx, n_head_kv * head_dim)`;
/// `out`: `(n_tok, n_head * head_dim)`.
///
/// Numerics follow llama.cpp's default (non flash-attention) CPU path: `q` is
/// rounded to f16 before `q·k` (the K cache's dot type), the softmax is f32,
/// and the probabilities are rounded to f16 before they weight the values.
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
    let group = n_head / n_head_kv;
    let n_items = n_tok * n_head;
    let n_threads = pool.n_threads().max(1);
    let per = n_items.div_ceil(n_threads);
    // Each thread takes a contiguous range of (token, head) items, whose outputs are a contiguous range.
    let chunks: Vec<Mutex<&mut [f32]>> = out[..n_items * head_dim].chunks_mut(per * head_dim).map(Mutex::new).collect();
    pool.run(|ti, _| {
        let Some(chunk) = chunks.get(ti) else { return };
        let mut chunk = chunk.lock().unwrap_or_else(|e| e.into_inner());
        let first = ti * per;
        let last = (first + per).min(n_items);
        let mut qh = vec![f16::ZERO; head_dim];
        let mut scores: Vec<f32> = Vec::with_capacity(pos0 + n_tok);
        let mut acc = vec![0f32; head_dim];
        for item in first..last {
            let (t, h) = (item / n_head, item % n_head);
            let p = pos0 + t;
            let kvh = h / group;
            let qrow = &q[t * q_dim + h * head_dim..][..head_dim];
            for (d, &s) in qh.iter_mut().zip(qrow) {
                *d = f16::from_f32(s);
            }
            let lo = shape.window.map_or(0, |w| (p + 1).saturating_sub(w));
            scores.clear();
            let mut max = f32::NEG_INFINITY;
            for j in lo..=p {
                let krow = &keys[j * n_head_kv * head_dim + kvh * head_dim..][..head_dim];
                let dot: f32 = qh.iter().zip(krow).map(|(a, b)| a.to_f32() * b.to_f32()).sum();
                let s = dot * shape.scale;
                max = max.max(s);
                scores.push(s);
            }
            let mut sum = 0f64;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s as f64;
            }
            let inv = (1.0 / sum) as f32;
            acc.fill(0.0);
            for (jj, &s) in scores.iter().enumerate() {
                let w = f16::from_f32(s * inv).to_f32();
                let vrow = &values[(lo + jj) * n_head_kv * head_dim + kvh * head_dim..][..head_dim];
                for (a, v) in acc.iter_mut().zip(vrow) {
                    *a += w * v.to_f32();
                }
            }
            let o = &mut chunk[(item - first) * head_dim..][..head_dim];
            o.copy_from_slice(&acc);
        }
    });
}
