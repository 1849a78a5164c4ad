//! Scaled dot-product attention with grouped-query heads over the KV cache
//! (f16 rows, or quant blocks for a quantized cache): [`attention`] splits the
//! work over threads the way llama.cpp's CPU flash attention does and runs
//! the kernels of `attention_kernels.rs` (and, on x86, `attention_x86.rs`).

use std::sync::Mutex;

use sparetire_quant::ThreadPool;

#[cfg(target_arch = "x86_64")]
use super::attention_kernels::KV_TILE;
use super::attention_kernels::{attend_f32, attend_row, Partial, Scratch, WideKv};
#[cfg(target_arch = "x86_64")]
use super::attention_x86;
#[cfg(target_arch = "x86_64")]
use super::ggml_f32::has_avx2_fma;
use super::kv_layer::KvHead;
pub use super::kv_layer::KvLayer;

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
    let n_keys = pos0 + n_tok;
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
    if !per_token && n_tok == 1 && kv.types().is_f16() && split_cells(n_keys) >= SPLIT_MIN_CELLS {
        return job.split_keys(pool, split_cells(n_keys), out);
    }
    // Each thread takes a contiguous range of (token, head) items, whose outputs are a contiguous range.
    let per = n_items.div_ceil(pool.n_threads().max(1));
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

/// A single query against this many cache cells or more has its keys split
/// among the threads, each thread's part of every head reduced afterwards
/// (llama.cpp's `use_split_kv_path`, for f16 caches).
const SPLIT_MIN_CELLS: usize = 512;

/// llama.cpp's default `n_ubatch`: its sliding-window cache holds
/// `n_swa + n_ubatch` cells (padded), the positions of a window plus a batch.
const SWA_CACHE_UBATCH: usize = 512;

/// The cells llama.cpp's attention spans when `n_keys` positions are stored:
/// its KV view is padded to a multiple of 256 cells (at least 256); the
/// padding cells are masked, but they place the split path's chunk bounds.
fn split_cells(n_keys: usize) -> usize {
    n_keys.next_multiple_of(256).max(256)
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
    /// same either way; without it `mul_add` is a slow library call), and the
    /// vectorized f16 kernel where it applies (identical results).
    fn run(&self, items: std::ops::Range<usize>, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU supports the features `run_fma` is compiled for.
            unsafe { self.run_fma(items, out) };
            return;
        }
        self.run_body(items, out, false);
    }

    /// [`Self::run_body`] compiled with AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_fma(&self, items: std::ops::Range<usize>, out: &mut [f32]) {
        self.run_body(items, out, attention_x86::available());
    }

    /// The KV head query head `h` reads (and its index), and the range of
    /// keys query `t` sees.
    #[inline(always)]
    fn head(&self, t: usize, h: usize) -> (KvHead<'_>, usize, usize, usize) {
        let s = self.shape;
        let off = s.offsets;
        let group = if off.group > 0 {
            off.group
        } else {
            s.n_head / s.n_head_kv
        };
        let kvh = (off.q0 + h) / group - off.kv0;
        let p = self.pos0 + t;
        let lo = s.window.map_or(0, |w| (p + 1).saturating_sub(w));
        let kv = KvHead {
            kv: self.kv,
            offset: kvh * s.head_dim,
            head_dim: s.head_dim,
            v_offset: kvh * s.head_dim_v,
            head_dim_v: s.head_dim_v,
            values_in_keys: s.values_in_keys,
        };
        (kv, kvh, lo, p)
    }

    /// The single-row kernel over keys `lo..=hi` (the vectorized one if
    /// `fast` and the head suits it), the weighted values left in `sc.acc`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // why: a kernel's operands
    fn row(
        &self,
        qrow: &[f32],
        kv: &KvHead,
        lo: usize,
        hi: usize,
        sc: &mut Scratch,
        fast: bool,
    ) -> Partial {
        #[cfg(target_arch = "x86_64")]
        if fast && attention_x86::fits(kv) {
            // SAFETY: `fast` is only set where `attention_x86::available()` holds; `fits`
            // holds; `qrow` is one head's query; `sc` was made for this shape; the cache
            // stores every position up to the last query's (the caller's contract).
            return unsafe {
                attention_x86::attend_row_f16(qrow, kv, lo, hi, self.shape.scale, sc)
            };
        }
        let _ = fast;
        attend_row(qrow, kv, lo, hi, self.shape.scale, sc)
    }

    #[inline(always)]
    fn run_body(&self, items: std::ops::Range<usize>, out: &mut [f32], fast: bool) {
        let AttnShape {
            n_head,
            head_dim,
            head_dim_v,
            scale,
            ..
        } = *self.shape;
        let q_dim = n_head * head_dim;
        let mut sc = Scratch::new(head_dim, head_dim_v, self.kv.types().k);
        #[cfg(target_arch = "x86_64")]
        let mut group = self.wide.filter(|_| fast).map(|_| {
            (
                [[0f32; KV_TILE]; attention_x86::GROUP],
                vec![0f32; attention_x86::GROUP * head_dim_v],
            )
        });
        let first = items.start;
        let mut item = first;
        while item < items.end {
            let (t, h) = (item / n_head, item % n_head);
            let (kv, kvh, lo, p) = self.head(t, h);
            let qrow = &self.q[t * q_dim + h * head_dim..][..head_dim];
            let o = &mut out[(item - first) * head_dim_v..][..head_dim_v];
            match self.wide {
                #[cfg(target_arch = "x86_64")]
                Some(wide) if group.is_some() => {
                    // The following heads of this token that read the same KV head.
                    let mut g = 1;
                    while g < attention_x86::GROUP
                        && item + g < items.end
                        && h + g < n_head
                        && self.head(t, h + g).1 == kvh
                    {
                        g += 1;
                    }
                    let (w, acc) = group.as_mut().expect("checked above");
                    let qs = &self.q[t * q_dim + h * head_dim..][..g * head_dim];
                    let os = &mut out[(item - first) * head_dim_v..][..g * head_dim_v];
                    // SAFETY: `fast` means AVX2 and FMA are present; 1 <= g <= GROUP; `qs`,
                    // `os` and `acc` hold `g` rows; `lo..=p` are keys `wide` was made with.
                    unsafe {
                        attention_x86::attend_f32_group(qs, g, wide, kvh, lo, p, scale, w, acc, os)
                    };
                    item += g;
                    continue;
                }
                Some(wide) => attend_f32(qrow, wide, kvh, lo, p, scale, &mut sc, o),
                None => self.row(qrow, &kv, lo, p, &mut sc, fast).finish(&sc.acc, o),
            }
            item += 1;
        }
    }

    /// One query against `cells` cache cells the way llama.cpp's split path
    /// does it: thread `i` of `n` runs every head over cells `i·c..(i+1)·c`
    /// (`c = ⌈cells / n⌉`, the visible ones of them), then each thread merges
    /// the parts of heads `i, i + n, …` in cell order.
    ///
    /// A sliding-window layer whose keys outgrow llama.cpp's window cache
    /// (`n_swa + n_ubatch` cells, reused in a ring from then on, so that no
    /// cell order could match it) splits its visible keys evenly instead of
    /// leaving all of them to the last thread.
    fn split_keys(&self, pool: &ThreadPool, cells: usize, out: &mut [f32]) {
        let (n_head, hdv) = (self.shape.n_head, self.shape.head_dim_v);
        let nth = pool.n_threads().max(1);
        let p = self.pos0;
        let (base, cells) = match self.shape.window {
            Some(w) if p + 1 > split_cells(w + SWA_CACHE_UBATCH) => {
                let lo = (p + 1).saturating_sub(w);
                (lo, p + 1 - lo)
            }
            _ => (0, cells),
        };
        let chunk = cells.div_ceil(nth);
        // Per thread, per head: [max, sum, acc...].
        let width = 2 + hdv;
        let parts: Vec<Mutex<Vec<f32>>> = (0..nth)
            .map(|_| Mutex::new(vec![0f32; n_head * width]))
            .collect();
        pool.run(|ti, _| {
            let Some(part) = parts.get(ti) else { return };
            let mut part = part.lock().unwrap_or_else(|e| e.into_inner());
            let (c0, c1) = (base + ti * chunk, base + ((ti + 1) * chunk).min(cells));
            self.split_part(c0, c1, &mut part);
        });
        let parts: Vec<Vec<f32>> = parts
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let outs: Vec<Mutex<&mut [f32]>> = out[..n_head * hdv]
            .chunks_mut(hdv)
            .map(Mutex::new)
            .collect();
        pool.run(|ti, n| {
            for h in (ti..n_head).step_by(n.max(1)) {
                let mut o = outs[h].lock().unwrap_or_else(|e| e.into_inner());
                let chunk_parts = parts
                    .iter()
                    .enumerate()
                    .filter(|(c, _)| c * chunk < cells)
                    .map(|(_, p)| &p[h * width..(h + 1) * width]);
                merge_parts(chunk_parts, &mut o);
            }
        });
    }

    /// Every head of the query over cells `c0..c1` into `part` (see [`Self::split_keys`]).
    fn split_part(&self, c0: usize, c1: usize, part: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU supports the features `split_part_fma` is compiled for.
            unsafe { self.split_part_fma(c0, c1, part) };
            return;
        }
        self.split_part_body(c0, c1, part, false);
    }

    /// [`Self::split_part_body`] compiled with AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn split_part_fma(&self, c0: usize, c1: usize, part: &mut [f32]) {
        self.split_part_body(c0, c1, part, attention_x86::available());
    }

    #[inline(always)]
    fn split_part_body(&self, c0: usize, c1: usize, part: &mut [f32], fast: bool) {
        let s = self.shape;
        let mut sc = Scratch::new(s.head_dim, s.head_dim_v, self.kv.types().k);
        let width = 2 + s.head_dim_v;
        for (h, slot) in part.chunks_exact_mut(width).enumerate().take(s.n_head) {
            let (kv, _, lo, p) = self.head(0, h);
            // Cells past the query's position are masked, as are those before its window.
            let (from, to) = (c0.max(lo), c1.min(p + 1));
            let qrow = &self.q[h * s.head_dim..][..s.head_dim];
            let r = if from < to {
                self.row(qrow, &kv, from, to - 1, &mut sc, fast)
            } else {
                sc.acc.fill(0.0);
                Partial {
                    max: f32::NEG_INFINITY,
                    sum: 0.0,
                }
            };
            slot[0] = r.max;
            slot[1] = r.sum;
            slot[2..].copy_from_slice(&sc.acc);
        }
    }
}

/// Merges one head's parts `[max, sum, acc...]`, in cell order, into `out`
/// (`ggml_flash_attn_ext_reduce_partials`): parts without weight are skipped,
/// each rescales the running values to the new maximum, and the result is
/// divided by the total sum.
fn merge_parts<'p>(parts: impl Iterator<Item = &'p [f32]>, out: &mut [f32]) {
    let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
    out.fill(0.0);
    for p in parts {
        let (m, s, acc) = (p[0], p[1], &p[2..]);
        if s == 0.0 {
            continue;
        }
        let new_max = max.max(m);
        let (scale_old, scale_new) = ((max - new_max).exp(), (m - new_max).exp());
        for (o, &a) in out.iter_mut().zip(acc) {
            // why: GCC contracts `o*scale_old + a*scale_new` into fma(o, scale_old, a*scale_new).
            *o = o.mul_add(scale_old, a * scale_new);
        }
        sum = sum.mul_add(scale_old, s * scale_new);
        max = new_max;
    }
    if sum != 0.0 {
        let inv = 1.0 / sum;
        out.iter_mut().for_each(|o| *o *= inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_type::{KvType, KvTypes};
    use half::f16;
    use sparetire_quant::quantize_activation_row;

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
            job.run_body(0..n_tok * shape.n_head, &mut portable, false);
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

    /// A single query over 512+ cells splits its keys among the threads and
    /// merges the parts; the result is still attention over every visible key
    /// (with a window inside and beyond llama.cpp's window cache), on 1–3 threads.
    #[test]
    fn split_keys_decode_matches_naive_attention() {
        for (pos, window) in [
            (700, None),
            (1300, None),
            (700, Some(300)),
            (1300, Some(300)),
        ] {
            let shape = AttnShape {
                n_head: 3,
                n_head_kv: 1,
                head_dim: 64,
                head_dim_v: 64,
                values_in_keys: false,
                scale: 0.125,
                window,
                offsets: HeadOffsets::default(),
            };
            let n_keys = pos + 1;
            let kv_dim = shape.head_dim;
            let q: Vec<f32> = pseudo(3 * 64, 11).iter().map(|x| x * 4.0).collect();
            let k16: Vec<f16> = pseudo(n_keys * kv_dim, 12)
                .iter()
                .map(|&x| f16::from_f32(x * 2.0))
                .collect();
            let v16: Vec<f16> = pseudo(n_keys * kv_dim, 13)
                .iter()
                .map(|&x| f16::from_f32(x))
                .collect();
            let kv = KvLayer::contiguous(&k16, &v16, kv_dim);
            let k32: Vec<f32> = k16.iter().map(|x| x.to_f32()).collect();
            let v32: Vec<f32> = v16.iter().map(|x| x.to_f32()).collect();
            let lo = window.map_or(0, |w| (pos + 1).saturating_sub(w));
            for threads in 1..=3 {
                let pool = ThreadPool::new(threads);
                let mut out = vec![0f32; 3 * 64];
                attention(&pool, &shape, &q, kv, pos, 1, false, &mut out);
                for h in 0..3 {
                    let want = naive(&q[h * 64..][..64], &k32, &v32, &shape, h, lo, pos);
                    for (g, w) in out[h * 64..][..64].iter().zip(&want) {
                        assert!(
                            (*g as f64 - w).abs() < 2e-3,
                            "pos {pos} window {window:?} threads {threads} head {h}: {g} vs {w}"
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
