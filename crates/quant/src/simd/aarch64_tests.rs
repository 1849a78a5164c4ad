//! The NEON kernels (both variants) against the scalar reference and each other (aarch64 only;
//! `scripts/test_aarch64.sh` runs them under qemu, with and without `dotprod`).
//!
//! On x86 the AVX2 kernels must equal llama.cpp bit for bit; here llama.cpp's own NEON kernels
//! sum in another order, so what is demanded is: exact integer sums (checked bit for bit on rows
//! whose every partial sum is an exactly representable integer), results within a tight relative
//! tolerance of the reference elsewhere, the plain and `dotprod` variants bit-identical, and tiles
//! and chunks bit-identical to the single-row kernel.

use super::aarch64_neon;
use super::tests::{quantized, Rng, WEIGHT_TYPES};
use super::*;
use crate::{dequantize_row, reference, GgmlType};
use half::f16;

/// The NEON ISAs, plain first.
const NEON: [Isa; 2] = [Isa::Neon, Isa::NeonDotprod];

/// An integer in `lo..=hi`.
fn int_in(rng: &mut Rng, lo: i32, hi: i32) -> i32 {
    let u = rng.f32() * 0.5 + 0.5; // [0, 1)
    (lo + (u * (hi - lo + 1) as f32) as i32).min(hi)
}

fn put_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

/// Byte offsets of a weight block's f16 scale fields (`d`, and `m` or `dmin`).
fn scale_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        _ => &[],
    }
}

/// `nb` weight blocks of random bytes (every quant and packed-scale bit pattern), their f16
/// scale fields set to `d`; Q6_K's signed 8-bit scales drawn from `-q6k_scale..=q6k_scale`.
fn raw_weights(ty: GgmlType, nb: usize, rng: &mut Rng, d: f32, q6k_scale: i32) -> Vec<u8> {
    let bs = ty.type_size();
    let mut w: Vec<u8> = (0..nb * bs).map(|_| int_in(rng, 0, 255) as u8).collect();
    for block in w.chunks_exact_mut(bs) {
        for &at in scale_fields(ty) {
            put_f16(block, at, d);
        }
        if ty == GgmlType::Q6_K {
            for s in &mut block[192..208] {
                *s = int_in(rng, -q6k_scale, q6k_scale) as i8 as u8;
            }
        }
    }
    w
}

/// An activation row of `n` elements of `vdt` (Q8_0, Q8_1 or Q8_K) with scale `d` and quants
/// drawn from `-amax..=amax`, its derived fields (Q8_1's `s`, Q8_K's `bsums`) consistent.
fn raw_acts(vdt: GgmlType, n: usize, rng: &mut Rng, d: f32, amax: i32) -> Vec<u8> {
    let qk = vdt.block_size();
    let mut out = Vec::with_capacity(vdt.row_bytes(n).unwrap());
    for _ in 0..n / qk {
        let qs: Vec<i8> = (0..qk).map(|_| int_in(rng, -amax, amax) as i8).collect();
        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
        match vdt {
            GgmlType::Q8_0 => out.extend(f16::from_f32(d).to_le_bytes()),
            GgmlType::Q8_1 => {
                out.extend(f16::from_f32(d).to_le_bytes());
                out.extend(f16::from_f32(d * sum as f32).to_le_bytes());
            }
            GgmlType::Q8_K => out.extend(d.to_le_bytes()),
            _ => unreachable!("{vdt} is not a Q8 activation type"),
        }
        out.extend(qs.iter().map(|&q| q as u8));
        if vdt == GgmlType::Q8_K {
            for g in qs.chunks_exact(16) {
                let bsum: i32 = g.iter().map(|&q| q as i32).sum();
                out.extend((bsum as i16).to_le_bytes());
            }
        }
    }
    assert_eq!(out.len(), vdt.row_bytes(n).unwrap());
    out
}

fn quantized_types() -> impl Iterator<Item = GgmlType> {
    WEIGHT_TYPES
        .into_iter()
        .filter(|t| !matches!(t, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16))
}

/// Σ|w·a| over the dequantized rows: the scale of a dot product's rounding error.
fn magnitude(ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut wd = vec![0.0; n];
    let mut ad = vec![0.0; n];
    dequantize_row(ty, w, &mut wd).unwrap();
    dequantize_row(ty.vec_dot_type(), a, &mut ad).unwrap();
    wd.iter().zip(&ad).map(|(p, q)| (p * q).abs()).sum()
}

/// Also, when `SPARETIRE_EXPECT_ISA` is set (`scripts/test_aarch64.sh` sets it for each emulated
/// CPU), the detected ISA must have that name: proof that both variants were really exercised.
#[test]
fn available_lists_what_this_cpu_has() {
    let isas = Isa::available();
    eprintln!("ISAs: {isas:?}");
    if let Ok(want) = std::env::var("SPARETIRE_EXPECT_ISA") {
        assert_eq!(Isa::detect().name(), want, "SPARETIRE_EXPECT_ISA");
    }
    let neon = std::arch::is_aarch64_feature_detected!("neon");
    let dotprod = neon && std::arch::is_aarch64_feature_detected!("dotprod");
    assert_eq!(isas[0], Isa::Scalar);
    assert!(!isas.contains(&Isa::Avx2));
    assert_eq!(isas.contains(&Isa::Neon), neon);
    assert_eq!(isas.contains(&Isa::NeonDotprod), dotprod);
    assert_eq!(Isa::detect(), *isas.last().unwrap());
    assert_eq!(Isa::Neon.name(), "neon");
    assert_eq!(Isa::NeonDotprod.name(), "neon-dotprod");
}

#[test]
fn neon_kernels_cover_every_weight_type() {
    let isas = Isa::available();
    for isa in NEON {
        let dp = isa == Isa::NeonDotprod;
        if !isas.contains(&isa) {
            // A variant the CPU cannot run is never handed out.
            assert!(WEIGHT_TYPES.iter().all(|&t| !isa.has_kernel(t)), "{isa:?}");
            assert!(aarch64_neon::tile(dp, GgmlType::Q4_0, false).is_none());
            assert!(vec_dot_with(isa, GgmlType::Q4_0, 32, &[0; 18], &[0; 34]).is_err());
            eprintln!(
                "{} not on this CPU: only checked that it is refused",
                isa.name()
            );
            continue;
        }
        for ty in WEIGHT_TYPES {
            assert!(isa.has_kernel(ty), "{} {ty}", isa.name());
        }
        for ty in [GgmlType::Q8_1, GgmlType::Q8_K] {
            assert!(!isa.has_kernel(ty));
        }
        for ty in quantized_types() {
            assert!(aarch64_neon::tile(dp, ty, false).is_some(), "{ty}");
            assert!(aarch64_neon::chunk(dp, ty, true).is_some(), "{ty}");
        }
        for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
            assert!(aarch64_neon::tile(dp, ty, true).is_none(), "{ty}");
        }
    }
}

/// Rows whose scales are all 1 and whose quants are small enough that every partial sum, in any
/// order, is an integer below 2^24 (exact in f32): every kernel must then return the exact dot
/// product of the integer quants, bit for bit. Weight quants and packed scales are random bytes
/// (every bit pattern); activations lie in ±16 (legacy) or ±8 (K-quants), and Q6_K's scales in
/// ±16, which bounds the worst case (Q5_K, three superblocks: 3 · 256 · 31 · 8 · 63 plus the
/// mins) below 2^24.
#[test]
fn neon_integer_sums_are_exact() {
    let mut rng = Rng(0x0dd5_eed5_1234_5678);
    for ty in quantized_types() {
        let vdt = ty.vec_dot_type();
        let (blocks, amax): (&[usize], i32) = if ty.is_k_quant() {
            (&[1, 2, 3], 8)
        } else {
            (&[1, 2, 3, 8], 16)
        };
        for &nb in blocks {
            let n = nb * ty.block_size();
            for trial in 0..8 {
                let w = raw_weights(ty, nb, &mut rng, 1.0, 16);
                let a = raw_acts(vdt, n, &mut rng, 1.0, amax);
                let mut wd = vec![0.0f32; n];
                let mut ad = vec![0.0f32; n];
                dequantize_row(ty, &w, &mut wd).unwrap();
                dequantize_row(vdt, &a, &mut ad).unwrap();
                assert!(wd.iter().chain(&ad).all(|v| v.fract() == 0.0));
                let exact: i64 = wd.iter().zip(&ad).map(|(p, q)| *p as i64 * *q as i64).sum();
                let want = exact as f32;
                assert_eq!(want as i64, exact, "{ty}: the exact sum itself must fit");
                for isa in Isa::available() {
                    let got = vec_dot_with(isa, ty, n, &w, &a).unwrap();
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{ty} n={n} trial {trial} {}: got {got}, exact {exact}",
                        isa.name()
                    );
                }
            }
        }
    }
}

/// Random bytes for every quant and scale (Q6_K's scales over their whole i8 range), activations
/// over the whole i8 range (-128 included): nothing overflows or saturates, so each variant stays
/// within float rounding of the reference.
#[test]
fn neon_full_range_quants_match_scalar_reference() {
    let mut rng = Rng(0xfeed_f00d_0bad_cafe);
    let isas: Vec<Isa> = NEON
        .into_iter()
        .filter(|i| Isa::available().contains(i))
        .collect();
    for ty in quantized_types() {
        let vdt = ty.vec_dot_type();
        for nb in [1, 2, 5] {
            let n = nb * ty.block_size();
            for trial in 0..6 {
                let d = [1.0, 0.03125, 0.5, 2.0, 0.0078125, 1.5][trial];
                let w = raw_weights(ty, nb, &mut rng, d, 128);
                let a = raw_acts(vdt, n, &mut rng, 0.25, 128);
                let want = reference::vec_dot(ty, n, &w, &a).unwrap();
                let mag = magnitude(ty, n, &w, &a);
                for &isa in &isas {
                    let got = vec_dot_with(isa, ty, n, &w, &a).unwrap();
                    assert!(
                        (got - want).abs() <= 2e-5 * mag + 1e-6,
                        "{ty} n={n} trial {trial} {}: got {got}, scalar {want} (mag {mag})",
                        isa.name()
                    );
                }
            }
        }
    }
}

/// Quantized rows of several lengths and scales: each NEON variant within float rounding of the
/// scalar reference, and the two variants bit-identical.
#[test]
fn neon_variants_match_scalar_reference_and_each_other() {
    let mut rng = Rng(0x1234_5678_9abc_def0);
    let isas: Vec<Isa> = NEON
        .into_iter()
        .filter(|i| Isa::available().contains(i))
        .collect();
    assert!(!isas.is_empty(), "every aarch64 Linux CPU has NEON");
    for ty in WEIGHT_TYPES {
        let bs = ty.block_size().max(ty.vec_dot_type().block_size()).max(32);
        let mut lens: Vec<usize> = [1, 2, 3, 4, 7, 16].iter().map(|k| k * bs).collect();
        if matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
            lens.extend([1, 5, 15, 17, 33, 100, 1000]);
        }
        for n in lens {
            for scale in [1.0f32, 0.01, 30.0] {
                let xw: Vec<f32> = rng.vec(n).iter().map(|v| v * scale).collect();
                let xa = rng.vec(n);
                let w = quantized(ty, &xw, false);
                let a = quantized(ty.vec_dot_type(), &xa, true);
                let want = reference::vec_dot(ty, n, &w, &a).unwrap();
                let mag = magnitude(ty, n, &w, &a);
                let got: Vec<f32> = isas
                    .iter()
                    .map(|&isa| vec_dot_with(isa, ty, n, &w, &a).unwrap())
                    .collect();
                for (&isa, &got) in isas.iter().zip(&got) {
                    assert!(
                        (got - want).abs() <= 2e-5 * mag + 1e-6,
                        "{ty} n={n} scale {scale} {}: got {got}, scalar {want} (mag {mag})",
                        isa.name()
                    );
                }
                assert!(
                    got.iter().all(|g| g.to_bits() == got[0].to_bits()),
                    "{ty} n={n} scale {scale}: the variants differ: {got:?}"
                );
            }
        }
    }
}

/// Tiles (up to four activation rows) and chunks (many weight rows) give each output exactly the
/// bits of the single-row kernel, in both variants, so a batched matmul equals per-token ones.
#[test]
fn neon_tiles_and_chunks_equal_the_single_row_kernel() {
    let mut rng = Rng(0xabad_1dea_5eed_0042);
    for dp in [false, true] {
        if dp && !aarch64_neon::dotprod_available() {
            eprintln!("no dotprod on this CPU: only the plain variant's tiles are checked");
            continue;
        }
        for ty in quantized_types() {
            let kernel = aarch64_neon::kernel(dp, ty).unwrap();
            let tile = aarch64_neon::tile(dp, ty, false).unwrap();
            let chunk = aarch64_neon::chunk(dp, ty, false).unwrap();
            let vdt = ty.vec_dot_type();
            let n = 3 * ty.block_size();
            let (w_row, a_row) = (ty.row_bytes(n).unwrap(), vdt.row_bytes(n).unwrap());
            let rows = 5;
            let w: Vec<u8> = (0..rows)
                .flat_map(|_| quantized(ty, &rng.vec(n), false))
                .collect();
            let acts: Vec<u8> = (0..MAX_TILE)
                .flat_map(|_| quantized(vdt, &rng.vec(n), true))
                .collect();
            for nt in 1..=MAX_TILE {
                let mut by_tile = vec![0.0f32; rows * nt];
                for (r, out) in by_tile.chunks_exact_mut(nt).enumerate() {
                    let wr = &w[r * w_row..(r + 1) * w_row];
                    tile(n, wr, &acts, a_row, out);
                    for (t, &got) in out.iter().enumerate() {
                        let want = kernel(n, wr, &acts[t * a_row..(t + 1) * a_row]);
                        assert_eq!(got.to_bits(), want.to_bits(), "{ty} dp={dp} tile {nt}");
                    }
                }
                let mut by_chunk = vec![f32::NAN; rows * nt];
                chunk(n, &w, w_row, &acts, a_row, nt, &mut by_chunk);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&by_chunk), bits(&by_tile), "{ty} dp={dp} chunk {nt}");
            }
        }
    }
}
