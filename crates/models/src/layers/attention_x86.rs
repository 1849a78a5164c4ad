//! x86 kernels of the attention, each with results bit-identical to its portable twin in
//! `attention_kernels.rs`:
//!
//! - [`attend_f32_group`]: the tiled f32 path of batches for several query heads that share a
//!   KV head, each key tile loaded once for all of them;
//! - [`attend_row_f16`]: the single-row flash-attention kernel for f16 caches in AVX2 + FMA +
//!   F16C, what every decoding step runs.
//!
//! About the second: It computes exactly what the portable [`attend_row`] computes for an
//! f16 cache — the same FMA lanes and horizontal sum for each score (`ggml_vec_dot_f16`), the
//! same f16 accumulator rounded after every key (`ggml_vec_mad_f16`) — so results are
//! bit-identical; it only keeps the accumulator in f16 storage, converts eight lanes per
//! instruction, and walks the cache's rows block by block instead of position by position.
//!
//! [`attend_row`]: super::attention_kernels::attend_row

// why: the kernel is an `unsafe fn` of pointer reads under the contract in its `# Safety`
// section; wrapping every load in its own block adds nothing.
#![allow(unsafe_op_in_unsafe_fn)]
#![allow(clippy::needless_range_loop)] // why: key and query indices address several arrays at once

use std::arch::x86_64::*;

use half::f16;

use super::attention_kernels::{tile_softmax, Partial, Scratch, WideKv, KV_TILE};
use super::kv_layer::KvHead;
use crate::kv_type::KvType;

/// Whether this CPU runs [`attend_row_f16`].
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// Whether [`attend_row_f16`] serves this head: f16 keys and values, key rows a multiple of 32
/// wide (no scalar tail in the dot product) and value rows a multiple of 8.
pub(crate) fn fits(kv: &KvHead) -> bool {
    let t = kv.kv.types();
    let v_type = if kv.values_in_keys { t.k } else { t.v };
    t.k == KvType::F16
        && v_type == KvType::F16
        && kv.head_dim.is_multiple_of(32)
        && kv.head_dim_v.is_multiple_of(8)
}

/// [`attend_row`](super::attention_kernels::attend_row) for a head that [`fits`]: query `q`
/// against keys `lo..=hi`, the weighted values (unnormalized) left in `sc.acc`.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C ([`available`]); [`fits`] holds for `kv`; `q` has
/// `kv.head_dim` elements; `sc` was made for this head's widths; every position `lo..=hi` is
/// stored in `kv`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn attend_row_f16(
    q: &[f32],
    kv: &KvHead,
    lo: usize,
    hi: usize,
    scale: f32,
    sc: &mut Scratch,
) -> Partial {
    let (hd, hdv) = (kv.head_dim, kv.head_dim_v);
    for (d, &s) in sc.q16.iter_mut().zip(q) {
        *d = f16::from_f32(s).to_f32();
    }
    let qp = sc.q16.as_ptr();
    // The f16 accumulator, in place.
    let acc = sc.acc16.as_mut_ptr().cast::<u16>();
    for i in (0..hdv).step_by(8) {
        _mm_storeu_si128(acc.add(i).cast(), _mm_setzero_si128());
    }
    let (k_units, v_units) = kv.kv.units();
    // Values: the head's own value rows, or the start of its key rows (latent attention).
    let (v_stride, v_off) = if kv.values_in_keys {
        (k_units, kv.offset)
    } else {
        (v_units, kv.v_offset)
    };
    let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
    let mut j = lo;
    while j <= hi {
        let n = kv.kv.run(j, hi + 1 - j);
        let krows = kv.kv.k_from(j);
        let vrows = if kv.values_in_keys {
            krows
        } else {
            kv.kv.v_from(j)
        };
        assert!(
            krows.len() >= (n - 1) * k_units + kv.offset + hd
                && vrows.len() >= (n - 1) * v_stride + v_off + hdv,
            "cache rows out of range"
        );
        for r in 0..n {
            let kp = krows.as_ptr().add(r * k_units + kv.offset);
            let s = dot_f16(kp, qp, hd) * scale;
            let vp = vrows.as_ptr().add(r * v_stride + v_off);
            let (mut ms, mut vs) = (1.0f32, 1.0f32);
            let new_max = s > max;
            if new_max {
                ms = (max - s).exp();
                max = s;
            } else {
                vs = (s - max).exp();
            }
            let (msv, vsv) = (_mm256_set1_ps(ms), _mm256_set1_ps(vs));
            for i in (0..hdv).step_by(8) {
                let mut a = _mm256_cvtph_ps(_mm_loadu_si128(acc.add(i).cast()));
                if new_max {
                    // V = V*ms, rounded to f16 (ggml_vec_scale_f16)
                    a = _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(
                        _mm256_mul_ps(a, msv),
                    ));
                }
                let v = _mm256_cvtph_ps(_mm_loadu_si128(vp.add(i).cast()));
                // V += v*vs, rounded to f16 (ggml_vec_mad_f16)
                let a = _mm256_fmadd_ps(v, vsv, a);
                _mm_storeu_si128(
                    acc.add(i).cast(),
                    _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(a),
                );
            }
            // why: GCC contracts ggml's `S = S*ms + vs` into an FMA.
            sum = sum.mul_add(ms, vs);
        }
        j += n;
    }
    let out = sc.acc.as_mut_ptr();
    for i in (0..hdv).step_by(8) {
        _mm256_storeu_ps(
            out.add(i),
            _mm256_cvtph_ps(_mm_loadu_si128(acc.add(i).cast())),
        );
    }
    Partial { max, sum }
}

/// `ggml_vec_dot_f16` of the f16 row at `k` with the f16-valued floats at `q` (`n` of each,
/// a multiple of 32): four 8-lane FMA accumulators, added as `GGML_F32x8_REDUCE` does.
///
/// # Safety
/// AVX2, FMA and F16C; `k` and `q` hold `n` elements.
#[inline(always)]
unsafe fn dot_f16(k: *const u16, q: *const f32, n: usize) -> f32 {
    let mut a = [_mm256_setzero_ps(); 4];
    for i in (0..n).step_by(32) {
        for (l, acc) in a.iter_mut().enumerate() {
            let kv = _mm256_cvtph_ps(_mm_loadu_si128(k.add(i + 8 * l).cast()));
            *acc = _mm256_fmadd_ps(kv, _mm256_loadu_ps(q.add(i + 8 * l)), *acc);
        }
    }
    let r = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
    let t = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps::<1>(r));
    let h = _mm_hadd_ps(t, t);
    _mm_cvtss_f32(_mm_hadd_ps(h, h))
}

/// Most query heads [`attend_f32_group`] takes at once.
pub(crate) const GROUP: usize = 4;

/// [`attend_f32`](super::attention_kernels::attend_f32) for `g` (1..=[`GROUP`]) query heads
/// that read the same KV head at the same position (so the same keys `lo..=hi`): their
/// queries `q` (`g` rows of `head_dim`, one after another) into `out` (`g` rows of
/// `head_dim_v`). Each key tile is loaded once for all of them: the scores of 16 keys × `g`
/// queries stay in registers across the head dimension. Per query the operations are the
/// portable kernel's, in its order, so the results are bit-identical to `g` separate calls.
///
/// # Safety
/// AVX2 and FMA; `1 <= g <= GROUP`; `q` has `g * head_dim` and `out` `g * head_dim_v`
/// elements, `acc` at least `g * head_dim_v`; `lo..=hi` are keys of `kv`.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)] // why: a kernel's operands
pub(crate) unsafe fn attend_f32_group(
    q: &[f32],
    g: usize,
    kv: &WideKv,
    kvh: usize,
    lo: usize,
    hi: usize,
    scale: f32,
    w: &mut [[f32; KV_TILE]; GROUP],
    acc: &mut [f32],
    out: &mut [f32],
) {
    match g {
        1 => group::<1>(q, kv, kvh, lo, hi, scale, w, acc, out),
        2 => group::<2>(q, kv, kvh, lo, hi, scale, w, acc, out),
        3 => group::<3>(q, kv, kvh, lo, hi, scale, w, acc, out),
        _ => group::<4>(q, kv, kvh, lo, hi, scale, w, acc, out),
    }
}

/// [`attend_f32_group`] for `G` queries.
///
/// # Safety
/// As [`attend_f32_group`] with `g = G`.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)] // why: a kernel's operands
unsafe fn group<const G: usize>(
    q: &[f32],
    kv: &WideKv,
    kvh: usize,
    lo: usize,
    hi: usize,
    scale: f32,
    w: &mut [[f32; KV_TILE]; GROUP],
    acc: &mut [f32],
    out: &mut [f32],
) {
    let (hd, hdv) = (kv.head_dim(), kv.head_dim_v());
    assert!(q.len() >= G * hd && out.len() >= G * hdv && acc.len() >= G * hdv);
    let (mut max, mut sum) = ([f32::NEG_INFINITY; G], [0f32; G]);
    acc[..G * hdv].fill(0.0);
    let qp = q.as_ptr();
    for tile in lo / KV_TILE..=hi / KV_TILE {
        let t0 = tile * KV_TILE;
        let kt = kv.k_tile(kvh, tile);
        assert!(kt.len() >= hd * KV_TILE);
        let kt = kt.as_ptr();
        // Scores: per query, FMA chains over the head dimension (`s = fma(q[d], k[d], s)`).
        for kb in (0..KV_TILE).step_by(16) {
            let mut a = [[_mm256_setzero_ps(); 2]; G];
            for d in 0..hd {
                let k0 = _mm256_loadu_ps(kt.add(d * KV_TILE + kb));
                let k1 = _mm256_loadu_ps(kt.add(d * KV_TILE + kb + 8));
                for (gi, ag) in a.iter_mut().enumerate() {
                    let qd = _mm256_broadcast_ss(&*qp.add(gi * hd + d));
                    ag[0] = _mm256_fmadd_ps(qd, k0, ag[0]);
                    ag[1] = _mm256_fmadd_ps(qd, k1, ag[1]);
                }
            }
            for (gi, ag) in a.iter().enumerate() {
                _mm256_storeu_ps(w[gi].as_mut_ptr().add(kb), ag[0]);
                _mm256_storeu_ps(w[gi].as_mut_ptr().add(kb + 8), ag[1]);
            }
        }
        for gi in 0..G {
            let a = &mut acc[gi * hdv..(gi + 1) * hdv];
            tile_softmax(&mut w[gi], t0, lo, hi, scale, &mut max[gi], &mut sum[gi], a);
        }
        // Values: each key's row once for every query that gives it weight.
        for jj in 0..KV_TILE {
            if (0..G).all(|gi| w[gi][jj] == 0.0) {
                continue;
            }
            let v = kv.v(kvh, t0 + jj);
            assert!(v.len() >= hdv);
            let vp = v.as_ptr();
            for gi in 0..G {
                let wj = w[gi][jj];
                if wj == 0.0 {
                    // a zero weight (masked key) adds nothing to the FMA chain
                    continue;
                }
                let (wv, ap) = (_mm256_set1_ps(wj), acc.as_mut_ptr().add(gi * hdv));
                let mut d = 0;
                while d + 8 <= hdv {
                    let x =
                        _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(d)), wv, _mm256_loadu_ps(ap.add(d)));
                    _mm256_storeu_ps(ap.add(d), x);
                    d += 8;
                }
                for d in d..hdv {
                    *ap.add(d) = (*vp.add(d)).mul_add(wj, *ap.add(d));
                }
            }
        }
    }
    for gi in 0..G {
        Partial {
            max: max[gi],
            sum: sum[gi],
        }
        .finish(
            &acc[gi * hdv..(gi + 1) * hdv],
            &mut out[gi * hdv..(gi + 1) * hdv],
        );
    }
}
