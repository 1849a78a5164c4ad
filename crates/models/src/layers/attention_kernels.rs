//! The portable attention kernels, each op for op as llama.cpp's CPU flash attention (x86 AVX2
//! build) computes it: the tiled f32 path of batches ([`attend_f32`] over [`WideKv`]) and the
//! single-row path of decoding and of quantized caches ([`attend_row`]). The x86 build also has
//! a vectorized single-row kernel for f16 caches (`attention_x86.rs`) with identical results.

use half::f16;
use half::slice::HalfFloatSliceExt;
use sparetire_quant::{dequantize_row, quantize_activation_row, vec_dot_kernel, VecDotFn};

use super::attention::AttnShape;
use super::ggml_f32::{dot_f16, reduce8_softmax, v_expf};
use super::kv_layer::{KvHead, KvLayer};
use crate::kv_type::KvType;

/// Keys per tile of llama.cpp's tiled path (`GGML_FA_TILE_KV`). Tiles start
/// at cell 0; the softmax is rescaled once per tile, so the tiling shows in
/// the rounding.
pub(crate) const KV_TILE: usize = 64;

/// The keys and values of a layer widened to f32 for the tiled path.
pub(crate) struct WideKv {
    /// `(n_head_kv, n_tiles, head_dim, KV_TILE)`: each tile's keys transposed,
    /// zero past the last key.
    kt: Vec<f32>,
    /// `(n_keys, n_head_kv * head_dim_v)`, as in the cache.
    v: Vec<f32>,
    head_dim: usize,
    head_dim_v: usize,
    v_dim: usize,
    n_tiles: usize,
}

impl WideKv {
    /// Widens keys and values from position `from` on; earlier ones are
    /// outside every query's sliding window and stay zero (never read), so a
    /// local layer's work is bounded by its window, not by the context.
    pub(crate) fn new(kv: &KvLayer<'_>, n_keys: usize, shape: &AttnShape, from: usize) -> WideKv {
        let (hd, hdv, nkv) = (shape.head_dim, shape.head_dim_v, shape.n_head_kv);
        let (kv_dim, v_dim) = (hd * nkv, hdv * nkv);
        let from = from.min(n_keys);
        let n_tiles = n_keys.div_ceil(KV_TILE);
        // Zeroed allocations: pages below `from` are never touched.
        let mut v = vec![0f32; n_keys * v_dim];
        for j in from..n_keys {
            let dst = &mut v[j * v_dim..(j + 1) * v_dim];
            if shape.values_in_keys {
                let k = kv.k_row(j);
                for (h, d) in dst.chunks_exact_mut(hdv).enumerate() {
                    k[h * hd..][..hdv].convert_to_f32_slice(d);
                }
            } else {
                kv.v_row(j).convert_to_f32_slice(dst);
            }
        }
        let mut row = vec![0f32; kv_dim];
        let mut kt = vec![0f32; nkv * n_tiles * hd * KV_TILE];
        for j in from..n_keys {
            kv.k_row(j).convert_to_f32_slice(&mut row);
            let (tile, jj) = (j / KV_TILE, j % KV_TILE);
            for (kvh, k) in row.chunks_exact(hd).enumerate() {
                let base = (kvh * n_tiles + tile) * hd * KV_TILE + jj;
                for (d, &x) in k.iter().enumerate() {
                    kt[base + d * KV_TILE] = x;
                }
            }
        }
        WideKv {
            kt,
            v,
            head_dim: hd,
            head_dim_v: hdv,
            v_dim,
            n_tiles,
        }
    }

    /// Width of a key row of one head.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // why: read by the x86 kernels
    pub(crate) fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Width of a value row of one head.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // why: read by the x86 kernels
    pub(crate) fn head_dim_v(&self) -> usize {
        self.head_dim_v
    }

    /// Tile `tile` of KV head `kvh`: `(head_dim, KV_TILE)`.
    pub(crate) fn k_tile(&self, kvh: usize, tile: usize) -> &[f32] {
        &self.kt[(kvh * self.n_tiles + tile) * self.head_dim * KV_TILE..][..self.head_dim * KV_TILE]
    }

    /// The value row of KV head `kvh` at position `j`.
    pub(crate) fn v(&self, kvh: usize, j: usize) -> &[f32] {
        &self.v[j * self.v_dim + kvh * self.head_dim_v..][..self.head_dim_v]
    }
}

/// Per-thread buffers of the attention kernels.
pub(crate) struct Scratch {
    pub(crate) q16: Vec<f32>,
    k32: Vec<f32>,
    v32: Vec<f32>,
    /// The weighted values of the last [`attend_row`] (unnormalized), or the f32 path's.
    pub(crate) acc: Vec<f32>,
    pub(crate) acc16: Vec<f16>,
    weights: [f32; KV_TILE],
    /// The query quantized to the key type's activation format, and the key
    /// type's dot product (quantized key caches only).
    q_quant: Vec<u8>,
    k_dot: Option<VecDotFn>,
}

impl Scratch {
    pub(crate) fn new(head_dim: usize, head_dim_v: usize, k_type: KvType) -> Self {
        let act = k_type.ggml().vec_dot_type();
        let (q_quant, k_dot) = match k_type {
            KvType::F16 => (Vec::new(), None),
            _ => (
                vec![0u8; act.row_bytes(head_dim).unwrap_or(0)],
                vec_dot_kernel(k_type.ggml()).ok(),
            ),
        };
        Scratch {
            q16: vec![0.0; head_dim],
            k32: vec![0.0; head_dim],
            v32: vec![0.0; head_dim_v],
            acc: vec![0.0; head_dim_v],
            acc16: vec![f16::ZERO; head_dim_v],
            weights: [0.0; KV_TILE],
            q_quant,
            k_dot,
        }
    }
}

/// One query head against keys `lo..=hi`, all in f32, the way llama.cpp's
/// `ggml_compute_forward_flash_attn_ext_tiled` computes it: per 64-key tile,
/// scores as FMA chains over the head dimension, the running max and sum
/// updated once per tile, weights from ggml's fast [`v_expf`] summed 8 lanes
/// at a time into an f64, and the weighted values accumulated key by key with
/// FMAs.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // why: a kernel's operands
pub(crate) fn attend_f32(
    q: &[f32],
    kv: &WideKv,
    kvh: usize,
    lo: usize,
    hi: usize,
    scale: f32,
    sc: &mut Scratch,
    out: &mut [f32],
) {
    let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
    sc.acc.fill(0.0);
    for tile in lo / KV_TILE..=hi / KV_TILE {
        let t0 = tile * KV_TILE;
        let w = &mut sc.weights;
        w.fill(0.0);
        for (&qd, kd) in q.iter().zip(kv.k_tile(kvh, tile).chunks_exact(KV_TILE)) {
            for (s, &k) in w.iter_mut().zip(kd) {
                *s = qd.mul_add(k, *s);
            }
        }
        tile_softmax(w, t0, lo, hi, scale, &mut max, &mut sum, &mut sc.acc);
        for (jj, &wj) in w.iter().enumerate() {
            if wj != 0.0 {
                // a zero weight (masked key) adds nothing to the FMA chain
                for (a, &v) in sc.acc.iter_mut().zip(kv.v(kvh, t0 + jj)) {
                    *a = v.mul_add(wj, *a);
                }
            }
        }
    }
    Partial { max, sum }.finish(&sc.acc, out);
}

/// The online-softmax step of the tiled path for one query and the tile of
/// keys from `t0`: `w` holds the raw scores; keys outside `lo..=hi` are
/// masked, the rest scaled; a new maximum rescales `acc` and `sum`; `w` then
/// holds the weights (ggml's [`v_expf`], summed 8 lanes at a time into an f64).
#[inline(always)]
#[allow(clippy::too_many_arguments)] // why: a kernel's operands
pub(crate) fn tile_softmax(
    w: &mut [f32; KV_TILE],
    t0: usize,
    lo: usize,
    hi: usize,
    scale: f32,
    max: &mut f32,
    sum: &mut f32,
    acc: &mut [f32],
) {
    let mut tile_max = f32::NEG_INFINITY;
    for (jj, s) in w.iter_mut().enumerate() {
        // keys outside lo..=hi are masked
        *s = if (lo..=hi).contains(&(t0 + jj)) {
            *s * scale
        } else {
            f32::NEG_INFINITY
        };
        tile_max = tile_max.max(*s);
    }
    let new_max = max.max(tile_max);
    if new_max > *max {
        let ms = (*max - new_max).exp();
        acc.iter_mut().for_each(|a| *a *= ms);
        *sum *= ms;
    }
    *max = new_max;
    // why: ggml_vec_soft_max_f32 returns an f64 sum that is added to the f32 running sum in f64.
    let mut tile_sum = 0f64;
    for chunk in w.chunks_exact_mut(8) {
        chunk.iter_mut().for_each(|x| *x = v_expf(*x - *max));
        tile_sum += reduce8_softmax((&*chunk).try_into().expect("8 lanes")) as f64;
    }
    *sum = (*sum as f64 + tile_sum) as f32;
}

/// One query head against keys `lo..=hi` the way llama.cpp's single-row
/// flash attention (`..._f16_one_chunk`) does it, for every cache type:
///
/// - scores: with f16 keys, `q` rounded to f16 and `ggml_vec_dot_f16`
///   ([`dot_f16`]); with quantized keys, `q` quantized to the key type's
///   activation format (Q8_0 or Q8_1) and the type's integer dot product;
/// - online softmax with libm `expf`;
/// - values: with f16 values, accumulated in an f16 buffer (rounded after
///   every key); with quantized values, widened to f32 and accumulated in f32.
///
/// Leaves the weighted values, not yet divided by the sum, in `sc.acc`
/// (finish with [`Partial::finish`]); no keys (`lo > hi`) leave zeros.
#[inline(always)]
pub(crate) fn attend_row(
    q: &[f32],
    kv: &KvHead,
    lo: usize,
    hi: usize,
    scale: f32,
    sc: &mut Scratch,
) -> Partial {
    let types = kv.kv.types();
    let v_type = if kv.values_in_keys { types.k } else { types.v };
    let v_f16 = v_type == KvType::F16;
    let k_dot = match types.k {
        KvType::F16 => {
            for (d, &s) in sc.q16.iter_mut().zip(q) {
                *d = f16::from_f32(s).to_f32();
            }
            None
        }
        kt => {
            // The query row is whole blocks (heads are checked when the cache is made).
            quantize_activation_row(kt.ggml().vec_dot_type(), q, &mut sc.q_quant)
                .expect("query heads are whole blocks");
            sc.k_dot
        }
    };
    // With f16 values `acc` always holds the f16 accumulator's values, widened.
    sc.acc.fill(0.0);
    let mut sum = 0f32;
    let mut max = f32::NEG_INFINITY;
    for j in lo..=hi {
        let s = match k_dot {
            None => {
                kv.k16(j).convert_to_f32_slice(&mut sc.k32);
                dot_f16(&sc.k32, &sc.q16)
            }
            Some(dot) => dot(kv.head_dim, kv.kq(j), &sc.q_quant),
        } * scale;
        let (mut ms, mut vs) = (1.0f32, 1.0f32);
        if s > max {
            ms = (max - s).exp();
            max = s;
            sc.acc.iter_mut().for_each(|a| *a *= ms);
            if v_f16 {
                round_to_f16(&mut sc.acc, &mut sc.acc16);
            }
        } else {
            vs = (s - max).exp();
        }
        if v_f16 {
            kv.v16(j).convert_to_f32_slice(&mut sc.v32);
        } else {
            dequantize_row(v_type.ggml(), kv.vq(j), &mut sc.v32)
                .expect("value heads are whole blocks");
        }
        for (a, &v) in sc.acc.iter_mut().zip(&sc.v32) {
            *a = v.mul_add(vs, *a);
        }
        if v_f16 {
            round_to_f16(&mut sc.acc, &mut sc.acc16);
        }
        // why: GCC contracts ggml's `S = S*ms + vs` into an FMA.
        sum = sum.mul_add(ms, vs);
    }
    Partial { max, sum }
}

/// Where one query's online softmax over some keys stands: the largest score
/// seen and the sum of `exp(score - max)`; the weighted values go beside it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Partial {
    pub(crate) max: f32,
    pub(crate) sum: f32,
}

impl Partial {
    /// `out = acc / sum` (zeros when no key had weight), as ggml finishes a row.
    #[inline(always)]
    pub(crate) fn finish(self, acc: &[f32], out: &mut [f32]) {
        let inv = if self.sum == 0.0 { 0.0 } else { 1.0 / self.sum };
        for (o, &a) in out.iter_mut().zip(acc) {
            *o = a * inv;
        }
    }
}

/// Rounds `x` to f16 precision (round to nearest even, as F16C's
/// `vcvtps2ph`), through the buffer `tmp`.
#[inline(always)]
pub(crate) fn round_to_f16(x: &mut [f32], tmp: &mut [f16]) {
    tmp.convert_from_f32_slice(x);
    tmp.convert_to_f32_slice(x);
}
