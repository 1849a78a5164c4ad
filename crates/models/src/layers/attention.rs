//! Scaled dot-product attention with grouped-query heads over an f16 KV cache.

use std::ops::RangeInclusive;
use std::sync::Mutex;

use half::f16;
use sparetire_quant::ThreadPool;

use super::ggml_f32::{dot_f16, reduce8_softmax, v_expf};

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
/// Numerics follow llama.cpp's CPU flash attention (x86 AVX2 build), which
/// its default settings use, operation for operation so that our outputs are
/// bit-identical to its: batches of [`F32_PATH_MIN_TOKENS`] or more take its
/// tiled f32 path ([`attend_f32`]); smaller batches round `q` to f16 and
/// accumulate the weighted values in an f16 buffer with an online softmax
/// ([`attend_f16`]). The keys a query sees are the cells `lo..=p` of the
/// cache, which must be laid out like llama.cpp's (position `i` in cell `i`).
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
    let AttnShape {
        n_head,
        n_head_kv,
        head_dim,
        ..
    } = *shape;
    let q_dim = n_head * head_dim;
    let kv_dim = n_head_kv * head_dim;
    let group = n_head / n_head_kv;
    let n_items = n_tok * n_head;
    let n_threads = pool.n_threads().max(1);
    let per = n_items.div_ceil(n_threads);
    let f32_path = n_tok >= F32_PATH_MIN_TOKENS;
    // Each thread takes a contiguous range of (token, head) items, whose outputs are a contiguous range.
    let chunks: Vec<Mutex<&mut [f32]>> = out[..n_items * head_dim]
        .chunks_mut(per * head_dim)
        .map(Mutex::new)
        .collect();
    pool.run(|ti, _| {
        let Some(chunk) = chunks.get(ti) else { return };
        let mut chunk = chunk.lock().unwrap_or_else(|e| e.into_inner());
        let first = ti * per;
        let last = (first + per).min(n_items);
        let mut scratch = Scratch::new(head_dim);
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
    q16: Vec<f32>,
    k32: Vec<f32>,
    acc16: Vec<f16>,
    acc: Vec<f32>,
    weights: [f32; KV_TILE],
}

impl Scratch {
    fn new(head_dim: usize) -> Self {
        Scratch {
            q16: vec![0.0; head_dim],
            k32: vec![0.0; head_dim],
            acc16: vec![f16::ZERO; head_dim],
            acc: vec![0.0; head_dim],
            weights: [0.0; KV_TILE],
        }
    }
}

/// Keys per tile of llama.cpp's tiled path (`GGML_FA_TILE_KV`). Tiles start
/// at cell 0; the softmax is rescaled once per tile, so the tiling shows in
/// the rounding.
const KV_TILE: usize = 64;

/// One query head against keys `range`, all in f32, the way llama.cpp's
/// `ggml_compute_forward_flash_attn_ext_tiled` computes it: per 64-key tile,
/// scores as FMA chains over the head dimension, the tile's running max and
/// sum updated once, weights from ggml's fast [`v_expf`] summed 8 lanes at a
/// time into an f64, and the weighted values accumulated key by key with FMAs.
fn attend_f32(
    q: &[f32],
    kv: &KvHead,
    range: RangeInclusive<usize>,
    scale: f32,
    sc: &mut Scratch,
    out: &mut [f32],
) {
    let (lo, hi) = (*range.start(), *range.end());
    let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
    sc.acc.fill(0.0);
    let mut t0 = lo / KV_TILE * KV_TILE;
    while t0 <= hi {
        let w = &mut sc.weights;
        let mut tile_max = f32::NEG_INFINITY;
        for (jj, wj) in w.iter_mut().enumerate() {
            let j = t0 + jj;
            *wj = if (lo..=hi).contains(&j) {
                let dot = q
                    .iter()
                    .zip(kv.k(j))
                    .fold(0f32, |acc, (&a, b)| a.mul_add(b.to_f32(), acc));
                dot * scale
            } else {
                f32::NEG_INFINITY // masked
            };
            tile_max = tile_max.max(*wj);
        }
        let new_max = max.max(tile_max);
        if new_max > max {
            let ms = (max - new_max).exp();
            sc.acc.iter_mut().for_each(|a| *a *= ms);
            sum *= ms;
        }
        max = new_max;
        // why: ggml_vec_soft_max_f32 returns an f64 sum that is added to the f32 running sum in f64.
        let mut tile_sum = 0f64;
        for chunk in w.chunks_exact_mut(8) {
            chunk.iter_mut().for_each(|x| *x = v_expf(*x - max));
            tile_sum += reduce8_softmax((&*chunk).try_into().expect("8 lanes")) as f64;
        }
        sum = (sum as f64 + tile_sum) as f32;
        for (jj, &wj) in w.iter().enumerate() {
            if wj != 0.0 {
                // a zero weight (masked key) adds nothing to the FMA chain
                for (a, v) in sc.acc.iter_mut().zip(kv.v(t0 + jj)) {
                    *a = v.to_f32().mul_add(wj, *a);
                }
            }
        }
        t0 += KV_TILE;
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (o, &a) in out.iter_mut().zip(&sc.acc) {
        *o = a * inv;
    }
}

/// One query head against keys `range` the way llama.cpp's single-row flash
/// attention (`..._f16_one_chunk`) does it: `q` rounded to f16, scores by
/// `ggml_vec_dot_f16` ([`dot_f16`]), online softmax with libm `expf`, and the
/// weighted values accumulated in f16 (rounded after every key).
fn attend_f16(
    q: &[f32],
    kv: &KvHead,
    range: RangeInclusive<usize>,
    scale: f32,
    sc: &mut Scratch,
    out: &mut [f32],
) {
    for (d, &s) in sc.q16.iter_mut().zip(q) {
        *d = f16::from_f32(s).to_f32();
    }
    sc.acc16.fill(f16::ZERO);
    let mut sum = 0f32;
    let mut max = f32::NEG_INFINITY;
    for j in range {
        for (d, k) in sc.k32.iter_mut().zip(kv.k(j)) {
            *d = k.to_f32();
        }
        let s = dot_f16(&sc.k32, &sc.q16) * scale;
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
        // why: GCC contracts ggml's `S = S*ms + vs` into an FMA.
        sum = sum.mul_add(ms, vs);
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (o, a) in out.iter_mut().zip(&sc.acc16) {
        *o = a.to_f32() * inv;
    }
}
