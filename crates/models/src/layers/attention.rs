//! Scaled dot-product attention with grouped-query heads over the KV cache
//! (f16 rows, or quant blocks for a quantized cache).

use std::sync::Mutex;

use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use sparetire_quant::{
    dequantize_row, quantize_activation_row, vec_dot_kernel, ThreadPool, VecDotFn,
};

use crate::kv_type::{KvType, KvTypes};

#[cfg(target_arch = "x86_64")]
use super::ggml_f32::has_avx2_fma;
use super::ggml_f32::{dot_f16, reduce8_softmax, v_expf};

/// The shape of one attention layer.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (each serves `n_head / n_head_kv` query heads).
    pub n_head_kv: usize,
    /// Width of each head's query and key rows.
    pub head_dim: usize,
    /// Width of each head's value rows and output (`head_dim` except in
    /// multi-head latent attention).
    pub head_dim_v: usize,
    /// Values are the first `head_dim_v` features of each KV head's key row
    /// (latent attention caches one row that serves as both), not rows of
    /// their own.
    pub values_in_keys: bool,
    /// Multiplier of `q·k` before the softmax (usually `1/sqrt(head_dim)`).
    pub scale: f32,
    /// If set, a query at position `p` sees only keys at `p - window + 1 ..= p`.
    pub window: Option<usize>,
    /// Where these heads sit in the whole layer (a tensor-parallel rank holds a slice).
    pub offsets: HeadOffsets,
}

/// Which key/value head a query head reads when a rank holds only some heads:
/// local query head `h` is global head `q0 + h`, which reads global KV head
/// `(q0 + h) / group`, stored locally at that minus `kv0`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadOffsets {
    /// Query heads per KV head in the whole layer (0: `n_head / n_head_kv` of the shape).
    pub group: usize,
    /// First global query head held.
    pub q0: usize,
    /// First global KV head held.
    pub kv0: usize,
}

/// Batches of at least this many tokens take llama.cpp's tiled f32 path;
/// smaller ones (every decode step) its f16 one (`GGML_FA_TILE_Q`).
pub const F32_PATH_MIN_TOKENS: usize = 64;

/// One layer's keys and values: rows of `n_head_kv * head_dim` elements, one
/// per position, either contiguous or in the blocks of a paged cache, stored
/// as f16 or as quant blocks ([`KvTypes`]) in 16-bit units.
#[derive(Clone, Copy)]
pub struct KvLayer<'a> {
    keys: &'a [u16],
    values: &'a [u16],
    /// Block table (position `p` is row `p % block` of block `table[p / block]`),
    /// or `None` for contiguous rows.
    table: Option<&'a [u32]>,
    block: usize,
    kv_dim: usize,
    types: KvTypes,
    /// 16-bit units of a key row and of a value row.
    k_units: usize,
    v_units: usize,
}

impl<'a> KvLayer<'a> {
    /// Contiguous f16 rows: position `p` at `p * kv_dim`.
    pub fn contiguous(keys: &'a [f16], values: &'a [f16], kv_dim: usize) -> Self {
        KvLayer::raw(
            keys.reinterpret_cast(),
            values.reinterpret_cast(),
            None,
            1,
            kv_dim,
            KvTypes::F16,
        )
    }

    /// f16 rows in blocks of `block` positions, `table` naming each block.
    pub fn paged(
        keys: &'a [f16],
        values: &'a [f16],
        table: &'a [u32],
        block: usize,
        kv_dim: usize,
    ) -> Self {
        KvLayer::raw(
            keys.reinterpret_cast(),
            values.reinterpret_cast(),
            Some(table),
            block,
            kv_dim,
            KvTypes::F16,
        )
    }

    /// Rows of `kv_dim` elements stored as `types` (`kv_dim` a whole number
    /// of their blocks), contiguous or paged by `table` in blocks of `block`.
    pub fn raw(
        keys: &'a [u16],
        values: &'a [u16],
        table: Option<&'a [u32]>,
        block: usize,
        kv_dim: usize,
        types: KvTypes,
    ) -> Self {
        let units = |t: KvType| t.row_bytes(kv_dim).unwrap_or(0) / 2;
        KvLayer {
            keys,
            values,
            table,
            block,
            kv_dim,
            types,
            k_units: units(types.k),
            v_units: units(types.v),
        }
    }

    /// The element types of the rows.
    pub fn types(&self) -> KvTypes {
        self.types
    }

    #[inline(always)]
    fn offset(&self, pos: usize, units: usize) -> usize {
        match self.table {
            None => pos * units,
            Some(t) => (t[pos / self.block] as usize * self.block + pos % self.block) * units,
        }
    }

    /// The stored key row of position `pos`.
    pub fn k_raw(&self, pos: usize) -> &'a [u16] {
        &self.keys[self.offset(pos, self.k_units)..][..self.k_units]
    }

    /// The stored value row of position `pos`.
    pub fn v_raw(&self, pos: usize) -> &'a [u16] {
        &self.values[self.offset(pos, self.v_units)..][..self.v_units]
    }

    /// The key row of position `pos` of an f16 key cache.
    pub fn k_row(&self, pos: usize) -> &'a [f16] {
        debug_assert_eq!(self.types.k, KvType::F16);
        self.k_raw(pos).reinterpret_cast()
    }

    /// The value row of position `pos` of an f16 value cache.
    pub fn v_row(&self, pos: usize) -> &'a [f16] {
        debug_assert_eq!(self.types.v, KvType::F16);
        self.v_raw(pos).reinterpret_cast()
    }

    /// The key row of position `pos` widened to f32, whatever its type.
    pub fn k_f32(&self, pos: usize) -> Vec<f32> {
        widen(self.types.k, self.k_raw(pos), self.kv_dim)
    }

    /// The value row of position `pos` widened to f32, whatever its type.
    pub fn v_f32(&self, pos: usize) -> Vec<f32> {
        widen(self.types.v, self.v_raw(pos), self.kv_dim)
    }
}

/// A stored row of `n` elements of `ty` as f32.
fn widen(ty: KvType, row: &[u16], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    match ty {
        KvType::F16 => {
            let row: &[f16] = row.reinterpret_cast();
            row.convert_to_f32_slice(&mut out)
        }
        _ => {
            // The row is whole blocks of its type (checked when the cache was made).
            dequantize_row(ty.ggml(), bytemuck::cast_slice(row), &mut out)
                .expect("cache rows are whole blocks")
        }
    }
    out
}

/// Causal attention for `n_tok` new tokens at positions `pos0..pos0 + n_tok`
/// whose keys and values are already stored in the cache.
///
/// `q`: `(n_tok, n_head * head_dim)`; `kv`: at least `pos0 + n_tok` positions;
/// `out`: `(n_tok, n_head * head_dim)`. With `per_token`, every query takes
/// the single-token (decode) arithmetic whatever the batch size, so a
/// token's output never depends on how many others share its batch.
///
/// Numerics follow llama.cpp's CPU flash attention (x86 AVX2 build), which
/// its default settings use, operation for operation so that our outputs are
/// bit-identical to its: batches of [`F32_PATH_MIN_TOKENS`] or more take its
/// tiled f32 path ([`attend_f32`]); smaller batches round `q` to f16 and
/// accumulate the weighted values in an f16 buffer with an online softmax
/// ([`attend_row`], which also serves quantized caches at every batch
/// size, as llama.cpp's does). The keys a query sees are the cells `lo..=p` of the
/// cache, which must be laid out like llama.cpp's (position `i` in cell `i`).
#[allow(clippy::too_many_arguments)] // why: the shapes are the interface; a struct would only rename them
pub fn attention(
    pool: &ThreadPool,
    shape: &AttnShape,
    q: &[f32],
    kv: KvLayer<'_>,
    pos0: usize,
    n_tok: usize,
    per_token: bool,
    out: &mut [f32],
) {
    let n_head = shape.n_head;
    let head_dim = shape.head_dim_v;
    let n_items = n_tok * n_head;
    let per = n_items.div_ceil(pool.n_threads().max(1));
    let n_keys = pos0 + n_tok;
    // The f32 path reads the keys of a tile transposed; widen and lay them out
    // once for all query rows (llama.cpp repacks per tile pair).
    // Keys before the first query's window are seen by no query of this batch.
    let visible_from = shape.window.map_or(0, |w| (pos0 + 1).saturating_sub(w));
    // llama.cpp tiles only f16 (or f32) caches; quantized ones always take the single-row path.
    let wide = (!per_token && n_tok >= F32_PATH_MIN_TOKENS && kv.types().is_f16())
        .then(|| WideKv::new(&kv, n_keys, shape, visible_from));
    let job = Job {
        shape,
        q,
        kv,
        wide: wide.as_ref(),
        pos0,
    };
    // Each thread takes a contiguous range of (token, head) items, whose outputs are a contiguous range.
    let chunks: Vec<Mutex<&mut [f32]>> = out[..n_items * head_dim]
        .chunks_mut(per * head_dim)
        .map(Mutex::new)
        .collect();
    pool.run(|ti, _| {
        let Some(chunk) = chunks.get(ti) else { return };
        let mut chunk = chunk.lock().unwrap_or_else(|e| e.into_inner());
        let first = ti * per;
        job.run(first..(first + per).min(n_items), &mut chunk);
    });
}

/// Everything the threads share in one [`attention`] call.
struct Job<'a> {
    shape: &'a AttnShape,
    q: &'a [f32],
    kv: KvLayer<'a>,
    /// Widened keys and values, for the f32 path.
    wide: Option<&'a WideKv>,
    pos0: usize,
}

impl Job<'_> {
    /// Computes the `(token, head)` items `items` into `out`, with the
    /// kernels compiled for FMA when the CPU has it (the arithmetic is the
    /// same either way; without it `mul_add` is a slow library call).
    fn run(&self, items: std::ops::Range<usize>, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU supports the features `run_fma` is compiled for.
            unsafe { self.run_fma(items, out) };
            return;
        }
        self.run_body(items, out);
    }

    /// [`Self::run_body`] compiled with AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_fma(&self, items: std::ops::Range<usize>, out: &mut [f32]) {
        self.run_body(items, out);
    }

    #[inline(always)]
    fn run_body(&self, items: std::ops::Range<usize>, out: &mut [f32]) {
        let AttnShape {
            n_head,
            n_head_kv,
            head_dim,
            head_dim_v,
            scale,
            window,
            values_in_keys,
            ..
        } = *self.shape;
        let q_dim = n_head * head_dim;
        let off = self.shape.offsets;
        let group = if off.group > 0 {
            off.group
        } else {
            n_head / n_head_kv
        };
        let mut sc = Scratch::new(head_dim, head_dim_v, self.kv.types().k);
        let first = items.start;
        for item in items {
            let (t, h) = (item / n_head, item % n_head);
            let p = self.pos0 + t;
            let lo = window.map_or(0, |w| (p + 1).saturating_sub(w));
            let kvh = (off.q0 + h) / group - off.kv0;
            let qrow = &self.q[t * q_dim + h * head_dim..][..head_dim];
            let o = &mut out[(item - first) * head_dim_v..][..head_dim_v];
            match self.wide {
                Some(wide) => attend_f32(qrow, wide, kvh, lo, p, scale, &mut sc, o),
                None => {
                    let kv = KvHead {
                        kv: self.kv,
                        offset: kvh * head_dim,
                        head_dim,
                        v_offset: kvh * head_dim_v,
                        head_dim_v,
                        values_in_keys,
                    };
                    attend_row(qrow, &kv, lo, p, scale, &mut sc, o);
                }
            }
        }
    }
}

/// One KV head's rows inside a layer's cache.
struct KvHead<'a> {
    kv: KvLayer<'a>,
    /// Where the head starts in a key row, in elements.
    offset: usize,
    head_dim: usize,
    /// Where the head's value row starts in a row of values.
    v_offset: usize,
    head_dim_v: usize,
    /// Values are the start of the key row (latent attention).
    values_in_keys: bool,
}

impl KvHead<'_> {
    /// The head's f16 key row at position `j`.
    fn k16(&self, j: usize) -> &[f16] {
        &self.kv.k_row(j)[self.offset..][..self.head_dim]
    }

    /// The head's quantized key row at position `j`, as bytes.
    fn kq(&self, j: usize) -> &[u8] {
        block_span(
            self.kv.types().k,
            self.kv.k_raw(j),
            self.offset,
            self.head_dim,
        )
    }

    /// The head's f16 value row at position `j`.
    fn v16(&self, j: usize) -> &[f16] {
        if self.values_in_keys {
            &self.kv.k_row(j)[self.offset..][..self.head_dim_v]
        } else {
            &self.kv.v_row(j)[self.v_offset..][..self.head_dim_v]
        }
    }

    /// The head's quantized value row at position `j`, as bytes.
    fn vq(&self, j: usize) -> &[u8] {
        if self.values_in_keys {
            block_span(
                self.kv.types().k,
                self.kv.k_raw(j),
                self.offset,
                self.head_dim_v,
            )
        } else {
            let ty = self.kv.types().v;
            block_span(ty, self.kv.v_raw(j), self.v_offset, self.head_dim_v)
        }
    }
}

/// The bytes of elements `start..start + len` of a stored row of quant blocks
/// (both whole blocks: heads are checked to be when the cache is made).
#[inline(always)]
fn block_span(ty: KvType, row: &[u16], start: usize, len: usize) -> &[u8] {
    let (bs, ts) = (ty.block_size(), ty.ggml().type_size());
    let bytes: &[u8] = bytemuck::cast_slice(row);
    &bytes[start / bs * ts..][..len / bs * ts]
}

/// Keys per tile of llama.cpp's tiled path (`GGML_FA_TILE_KV`). Tiles start
/// at cell 0; the softmax is rescaled once per tile, so the tiling shows in
/// the rounding.
const KV_TILE: usize = 64;

/// The keys and values of a layer widened to f32 for the tiled path.
struct WideKv {
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
    fn new(kv: &KvLayer<'_>, n_keys: usize, shape: &AttnShape, from: usize) -> WideKv {
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

    /// Tile `tile` of KV head `kvh`: `(head_dim, KV_TILE)`.
    fn k_tile(&self, kvh: usize, tile: usize) -> &[f32] {
        &self.kt[(kvh * self.n_tiles + tile) * self.head_dim * KV_TILE..][..self.head_dim * KV_TILE]
    }

    fn v(&self, kvh: usize, j: usize) -> &[f32] {
        &self.v[j * self.v_dim + kvh * self.head_dim_v..][..self.head_dim_v]
    }
}

/// Per-thread buffers of the attention kernels.
struct Scratch {
    q16: Vec<f32>,
    k32: Vec<f32>,
    v32: Vec<f32>,
    acc: Vec<f32>,
    acc16: Vec<f16>,
    weights: [f32; KV_TILE],
    /// The query quantized to the key type's activation format, and the key
    /// type's dot product (quantized key caches only).
    q_quant: Vec<u8>,
    k_dot: Option<VecDotFn>,
}

impl Scratch {
    fn new(head_dim: usize, head_dim_v: usize, k_type: KvType) -> Self {
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
fn attend_f32(
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
                for (a, &v) in sc.acc.iter_mut().zip(kv.v(kvh, t0 + jj)) {
                    *a = v.mul_add(wj, *a);
                }
            }
        }
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (o, &a) in out.iter_mut().zip(&sc.acc) {
        *o = a * inv;
    }
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
#[inline(always)]
#[allow(clippy::too_many_arguments)] // why: a kernel's operands
fn attend_row(
    q: &[f32],
    kv: &KvHead,
    lo: usize,
    hi: usize,
    scale: f32,
    sc: &mut Scratch,
    out: &mut [f32],
) {
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
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (o, &a) in out.iter_mut().zip(&sc.acc) {
        *o = a * inv;
    }
}

/// Rounds `x` to f16 precision (round to nearest even, as F16C's
/// `vcvtps2ph`), through the buffer `tmp`.
#[inline(always)]
fn round_to_f16(x: &mut [f32], tmp: &mut [f16]) {
    tmp.convert_from_f32_slice(x);
    tmp.convert_to_f32_slice(x);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain softmax attention in f64, for one (token, head).
    fn naive(
        q: &[f32],
        keys: &[f32],
        values: &[f32],
        shape: &AttnShape,
        h: usize,
        lo: usize,
        p: usize,
    ) -> Vec<f64> {
        let hd = shape.head_dim;
        let kv_dim = shape.n_head_kv * hd;
        let off = h / (shape.n_head / shape.n_head_kv) * hd;
        let s: Vec<f64> = (lo..=p)
            .map(|j| {
                q.iter()
                    .zip(&keys[j * kv_dim + off..][..hd])
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()
                    * shape.scale as f64
            })
            .collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = w.iter().sum();
        (0..hd)
            .map(|d| {
                (lo..=p)
                    .zip(&w)
                    .map(|(j, wj)| wj * values[j * kv_dim + off + d] as f64)
                    .sum::<f64>()
                    / z
            })
            .collect()
    }

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Both paths (f16 below 64 tokens, tiled f32 from 64) agree with plain
    /// attention, across tile boundaries and with a window; and the FMA-compiled
    /// kernels give bit-identical results to the portable ones.
    #[test]
    fn matches_naive_attention_and_fma_variant() {
        let pool = ThreadPool::new(2);
        for (n_tok, pos0, window) in [
            (1, 0, None),
            (3, 70, None),
            (64, 0, None),
            (100, 40, None),
            (80, 10, Some(50)),
            (80, 200, Some(50)), // keys before the first window are never widened
        ] {
            let shape = AttnShape {
                n_head: 4,
                n_head_kv: 2,
                head_dim: 40, // one 32-wide step of dot_f16 and an f64 tail
                head_dim_v: 40,
                values_in_keys: false,
                scale: 0.3,
                window,
                offsets: HeadOffsets::default(),
            };
            let n_keys = pos0 + n_tok;
            let kv_dim = shape.n_head_kv * shape.head_dim;
            let q_dim = shape.n_head * shape.head_dim;
            let q: Vec<f32> = pseudo(n_tok * q_dim, 1).iter().map(|x| x * 3.0).collect();
            let k16: Vec<f16> = pseudo(n_keys * kv_dim, 2)
                .iter()
                .map(|&x| f16::from_f32(x * 2.0))
                .collect();
            let v16: Vec<f16> = pseudo(n_keys * kv_dim, 3)
                .iter()
                .map(|&x| f16::from_f32(x))
                .collect();
            let kv = KvLayer::contiguous(&k16, &v16, kv_dim);
            let mut out = vec![0f32; n_tok * q_dim];
            attention(&pool, &shape, &q, kv, pos0, n_tok, false, &mut out);

            let k32: Vec<f32> = k16.iter().map(|x| x.to_f32()).collect();
            let v32: Vec<f32> = v16.iter().map(|x| x.to_f32()).collect();
            for t in 0..n_tok {
                for h in 0..shape.n_head {
                    let p = pos0 + t;
                    let lo = window.map_or(0, |w| (p + 1).saturating_sub(w));
                    let want = naive(
                        &q[t * q_dim + h * shape.head_dim..][..shape.head_dim],
                        &k32,
                        &v32,
                        &shape,
                        h,
                        lo,
                        p,
                    );
                    let got = &out[t * q_dim + h * shape.head_dim..][..shape.head_dim];
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (*g as f64 - w).abs() < 2e-3,
                            "n_tok {n_tok} t {t} h {h}: {g} vs {w}"
                        );
                    }
                }
            }

            let wide = (n_tok >= F32_PATH_MIN_TOKENS).then(|| WideKv::new(&kv, n_keys, &shape, 0));
            let job = Job {
                shape: &shape,
                q: &q,
                kv,
                wide: wide.as_ref(),
                pos0,
            };
            let mut portable = vec![0f32; n_tok * q_dim];
            job.run_body(0..n_tok * shape.n_head, &mut portable);
            assert_eq!(
                portable, out,
                "n_tok {n_tok}: portable and dispatched kernels differ"
            );
        }
    }

    /// Quantized caches (any key and value type, mixed with f16) agree with
    /// plain attention over the dequantized rows, at every batch size, and a
    /// batch is bit-identical to its queries one at a time (llama.cpp runs
    /// quantized caches through the single-row path only).
    #[test]
    fn quantized_caches_match_naive_attention_over_their_rows() {
        let pool = ThreadPool::new(2);
        let shape = AttnShape {
            n_head: 4,
            n_head_kv: 2,
            head_dim: 64,
            head_dim_v: 64,
            values_in_keys: false,
            scale: 0.125,
            window: Some(90),
            offsets: HeadOffsets::default(),
        };
        let (pos0, n_tok) = (20, 70);
        let n_keys = pos0 + n_tok;
        let kv_dim = shape.n_head_kv * shape.head_dim;
        let q_dim = shape.n_head * shape.head_dim;
        let q: Vec<f32> = pseudo(n_tok * q_dim, 7).iter().map(|x| x * 2.0).collect();
        let k = pseudo(n_keys * kv_dim, 8);
        let v = pseudo(n_keys * kv_dim, 9);
        let encode = |ty: KvType, rows: &[f32]| -> Vec<u16> {
            let units = ty.row_bytes(kv_dim).unwrap() / 2;
            let mut out = vec![0u16; n_keys * units];
            for (src, dst) in rows.chunks(kv_dim).zip(out.chunks_mut(units)) {
                match ty {
                    KvType::F16 => {
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d = f16::from_f32(s).to_bits();
                        }
                    }
                    _ => quantize_activation_row(ty.ggml(), src, bytemuck::cast_slice_mut(dst))
                        .unwrap(),
                }
            }
            out
        };
        for (kt, vt, tol) in [
            (KvType::Q8_0, KvType::Q8_0, 2e-2),
            (KvType::Q4_0, KvType::Q4_1, 6e-2),
            (KvType::F16, KvType::Q5_0, 2e-2),
            (KvType::Q5_1, KvType::F16, 3e-2),
        ] {
            let types = KvTypes { k: kt, v: vt };
            let (kr, vr) = (encode(kt, &k), encode(vt, &v));
            let kv = KvLayer::raw(&kr, &vr, None, 1, kv_dim, types);
            let k32: Vec<f32> = (0..n_keys).flat_map(|p| kv.k_f32(p)).collect();
            let v32: Vec<f32> = (0..n_keys).flat_map(|p| kv.v_f32(p)).collect();
            let mut out = vec![0f32; n_tok * q_dim];
            attention(&pool, &shape, &q, kv, pos0, n_tok, false, &mut out);
            for t in 0..n_tok {
                let p = pos0 + t;
                let lo = shape.window.map_or(0, |w| (p + 1).saturating_sub(w));
                let mut one = vec![0f32; q_dim];
                let qt = &q[t * q_dim..(t + 1) * q_dim];
                attention(&pool, &shape, qt, kv, p, 1, false, &mut one);
                assert_eq!(
                    &out[t * q_dim..(t + 1) * q_dim],
                    &one[..],
                    "{types} token {t}"
                );
                for h in 0..shape.n_head {
                    let hd = shape.head_dim;
                    let want = naive(&qt[h * hd..][..hd], &k32, &v32, &shape, h, lo, p);
                    for (g, w) in one[h * hd..][..hd].iter().zip(&want) {
                        assert!(
                            (*g as f64 - w).abs() < tol,
                            "{types} t {t} h {h}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    /// With `per_token`, a batch's outputs are bit-identical to evaluating its
    /// queries one at a time, and a paged layout reads the same rows as a
    /// contiguous one.
    #[test]
    fn per_token_batches_equal_single_queries_in_any_layout() {
        let pool = ThreadPool::new(2);
        let shape = AttnShape {
            n_head: 4,
            n_head_kv: 2,
            head_dim: 40,
            head_dim_v: 40,
            values_in_keys: false,
            scale: 0.3,
            window: Some(70),
            offsets: HeadOffsets::default(),
        };
        let (pos0, n_tok, block) = (30, 90, 16);
        let n_keys = pos0 + n_tok;
        let kv_dim = shape.n_head_kv * shape.head_dim;
        let q_dim = shape.n_head * shape.head_dim;
        let q = pseudo(n_tok * q_dim, 4);
        let k16: Vec<f16> = pseudo(n_keys * kv_dim, 5)
            .iter()
            .map(|&x| f16::from_f32(x))
            .collect();
        let v16: Vec<f16> = pseudo(n_keys * kv_dim, 6)
            .iter()
            .map(|&x| f16::from_f32(x))
            .collect();
        // The same rows in blocks laid out in reverse order.
        let n_blocks = n_keys.div_ceil(block);
        let table: Vec<u32> = (0..n_blocks as u32).rev().collect();
        let mut pk = vec![f16::ZERO; n_blocks * block * kv_dim];
        let mut pv = pk.clone();
        for p in 0..n_keys {
            let at = (table[p / block] as usize * block + p % block) * kv_dim;
            pk[at..at + kv_dim].copy_from_slice(&k16[p * kv_dim..][..kv_dim]);
            pv[at..at + kv_dim].copy_from_slice(&v16[p * kv_dim..][..kv_dim]);
        }
        let contiguous = KvLayer::contiguous(&k16, &v16, kv_dim);
        let paged = KvLayer::paged(&pk, &pv, &table, block, kv_dim);
        let mut batch = vec![0f32; n_tok * q_dim];
        attention(&pool, &shape, &q, paged, pos0, n_tok, true, &mut batch);
        for t in 0..n_tok {
            let mut one = vec![0f32; q_dim];
            let qt = &q[t * q_dim..(t + 1) * q_dim];
            attention(&pool, &shape, qt, contiguous, pos0 + t, 1, false, &mut one);
            assert_eq!(&batch[t * q_dim..(t + 1) * q_dim], &one[..], "token {t}");
        }
        let mut tiled_contiguous = vec![0f32; n_tok * q_dim];
        let mut tiled_paged = vec![0f32; n_tok * q_dim];
        attention(
            &pool,
            &shape,
            &q,
            contiguous,
            pos0,
            n_tok,
            false,
            &mut tiled_contiguous,
        );
        attention(
            &pool,
            &shape,
            &q,
            paged,
            pos0,
            n_tok,
            false,
            &mut tiled_paged,
        );
        assert_eq!(tiled_contiguous, tiled_paged);
    }
}
