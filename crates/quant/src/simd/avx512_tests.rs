//! The AVX-512 kernels against the AVX2 kernels (bit for bit) and the scalar reference: every
//! panel kernel on rows of random and extreme blocks (scales from the f16 extremes to zero,
//! quants all at their minimum or maximum, zeros), every row count of a panel and every token
//! count of a call; `matmul` on both ISAs over shapes that take every path; and the
//! `SPARETIRE_ISA` override. On a CPU without AVX-512 the comparisons are skipped (and say so).

use super::tests::{quantized, Rng};
use super::*;
use crate::matmul::{matmul_on, Arithmetic, Path, WeightView};
use crate::reference::{self, path_dot_fn};
use crate::ThreadPool;

/// Whether this CPU runs AVX-512; prints why a test does nothing otherwise.
fn have_avx512(test: &str) -> bool {
    let ok = Isa::available().contains(&Isa::Avx512);
    if !ok {
        eprintln!("{test}: skipped, this CPU has no AVX-512 (F, BW, VL, VNNI)");
    }
    ok
}

/// Every (type, path) with a panel kernel.
const PANEL_CASES: [(GgmlType, Path); 14] = [
    (GgmlType::Q4_0, Path::VecDot),
    (GgmlType::Q4_0, Path::RepackGemm),
    (GgmlType::Q4_1, Path::VecDot),
    (GgmlType::Q5_0, Path::VecDot),
    (GgmlType::Q5_1, Path::VecDot),
    (GgmlType::Q8_0, Path::VecDot),
    (GgmlType::Q4_K, Path::VecDot),
    (GgmlType::Q5_K, Path::VecDot),
    (GgmlType::Q6_K, Path::VecDot),
    (GgmlType::Q4_K, Path::RepackGemm),
    (GgmlType::Q4_K, Path::RepackGemv),
    (GgmlType::Q4_K, Path::Tiled),
    (GgmlType::Q5_K, Path::Tiled),
    (GgmlType::Q6_K, Path::Tiled),
];

/// Finite f16 scales from the extremes to zero: the largest, the smallest normal and
/// subnormal, negative ones, zero, ordinary ones.
const SCALES: [f32; 9] = [
    65504.0,
    -65504.0,
    6.103_515_6e-5,
    5.960_464_5e-8,
    -1.0,
    0.0,
    0.0123,
    1.5,
    -0.37,
];

/// Byte offsets of the f16 scale fields (`d`, and `m`/`dmin` where there is one) in a block.
fn scale_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q6_K => &[208],
        _ => unreachable!("{ty}"),
    }
}

/// Weight rows of `ty` in one of five patterns: random bytes everywhere, every quant byte
/// 0x00, every byte 0xFF (each quant at one end of its range; for Q8_0, -1), Q8_0's extremes
/// 0x80/0x7F alternating, all zeros; then (but for all zeros) each block's scale fields set
/// to values from [`SCALES`] in turn.
fn weight_rows(ty: GgmlType, rows: usize, cols: usize, pattern: usize, rng: &mut Rng) -> Vec<u8> {
    let rb = ty.row_bytes(cols).unwrap();
    let mut w: Vec<u8> = match pattern {
        0 => (0..rows * rb)
            .map(|_| (rng.f32() * 128.0 + 128.0) as u8)
            .collect(),
        1 => vec![0x00; rows * rb],
        2 => vec![0xFF; rows * rb],
        3 => (0..rows * rb)
            .map(|i| if i % 2 == 0 { 0x80 } else { 0x7F })
            .collect(),
        _ => return vec![0; rows * rb],
    };
    let bs = ty.type_size();
    for (b, block) in w.chunks_exact_mut(bs).enumerate() {
        for (f, &o) in scale_fields(ty).iter().enumerate() {
            let v = half::f16::from_f32(SCALES[(b * 3 + f) % SCALES.len()]);
            block[o..o + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    w
}

/// `n` activation rows of `cols` quantized to `vdt` from data in one of five patterns:
/// random, all equal and positive (every quant 127), all equal and negative (-127), zero, one
/// spike per row (the rest rounds to zero); scaled by 1e-30, 1 or 1e30 by row.
fn activation_rows(vdt: GgmlType, n: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    (0..n)
        .flat_map(|t| {
            let scale = [1.0f32, 1e-30, 1e30][t % 3];
            let x: Vec<f32> = (0..cols)
                .map(|i| match (t / 3) % 5 {
                    0 => rng.f32(),
                    1 => 0.75,
                    2 => -0.75,
                    3 => 0.0,
                    _ => {
                        if i == 5 {
                            100.0
                        } else {
                            rng.f32() * 1e-3
                        }
                    }
                })
                .map(|v| v * scale)
                .collect();
            quantized(vdt, &x, true)
        })
        .collect()
}

/// The AVX2 tile kernel a panel kernel's `run` (`rest == false`) or `run_rest` reproduces.
fn avx2_tile(ty: GgmlType, path: Path, rest: bool) -> TileFn {
    match (path, rest) {
        (Path::VecDot, _) => tile_for(Isa::Avx2, ty, false),
        (Path::RepackGemm, true) => path_tile_for(Isa::Avx2, ty, Path::RepackGemv),
        (p, _) => path_tile_for(Isa::Avx2, ty, p),
    }
    .expect("an AVX2 tile kernel")
}

#[test]
fn panel_kernels_equal_avx2_bit_for_bit_and_the_reference() {
    if !have_avx512("panel_kernels_equal_avx2_bit_for_bit_and_the_reference") {
        return;
    }
    let mut rng = Rng(0xa5a5_0123_4567_89ab);
    for (ty, path) in PANEL_CASES {
        let g = gemm_for(Isa::Avx512, ty, path, false).expect("a panel kernel");
        let vdt = ty.vec_dot_type();
        let per = ty.block_size().max(32);
        for (n_blocks, pattern) in [(1, 0), (3, 0), (5, 1), (2, 2), (3, 3), (1, 4), (7, 0)] {
            let cols = n_blocks * per;
            let (rb, a_row, s_row) = (
                ty.row_bytes(cols).unwrap(),
                vdt.row_bytes(cols).unwrap(),
                (g.side_bytes)(cols),
            );
            let w = weight_rows(ty, PANEL_ROWS, cols, pattern, &mut rng);
            let acts = activation_rows(vdt, GEMM_TOKENS, cols, &mut rng);
            let mut side = vec![0u8; GEMM_TOKENS * s_row];
            for t in 0..GEMM_TOKENS {
                let s = &mut side[t * s_row..(t + 1) * s_row];
                (g.prep)(cols, &acts[t * a_row..(t + 1) * a_row], s);
            }
            let mut panel = vec![0u8; (g.panel_bytes)(cols)];
            for n_rows in [1, 2, 5, 9, 15, 16] {
                (g.decode)(cols, &w, rb, n_rows, &mut panel);
                for (rest, run) in [(false, g.run), (true, g.run_rest)] {
                    let tile = avx2_tile(ty, path, rest);
                    let spec_path = match (path, rest) {
                        (Path::RepackGemm, true) => Path::RepackGemv,
                        (p, _) => p,
                    };
                    let spec = path_dot_fn(ty, spec_path).unwrap();
                    for nt in 1..=GEMM_TOKENS {
                        let mut out = vec![f32::NAN; nt * PANEL_ROWS];
                        run(cols, &panel, &acts, a_row, &side, s_row, nt, &mut out);
                        for r in 0..n_rows {
                            let wr = &w[r * rb..(r + 1) * rb];
                            let mut want = [0.0f32];
                            for t in 0..nt {
                                let a = &acts[t * a_row..(t + 1) * a_row];
                                tile(cols, wr, a, a_row, &mut want);
                                let got = out[t * PANEL_ROWS + r];
                                let what = format!(
                                    "{ty} {spec_path:?} cols={cols} pattern {pattern} \
                                     rows {n_rows} tokens {nt}: row {r} token {t}"
                                );
                                assert_eq!(
                                    got.to_bits(),
                                    want[0].to_bits(),
                                    "{what}: {got} vs AVX2 {}",
                                    want[0]
                                );
                                let scalar = spec(cols, wr, a);
                                if spec_path != Path::VecDot {
                                    // The path specifications are exact.
                                    assert_eq!(got.to_bits(), scalar.to_bits(), "{what}");
                                } else if got.is_finite() && scalar.is_finite() {
                                    let mag = magnitude(ty, wr, a, cols);
                                    assert!(
                                        (got - scalar).abs() <= 2e-5 * mag + 1e-6,
                                        "{what}: {got} vs scalar {scalar} (mag {mag})"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `Σ |w·a|` over the dequantized rows: the scale of a dot product's rounding error.
fn magnitude(ty: GgmlType, w: &[u8], a: &[u8], cols: usize) -> f32 {
    let (mut wd, mut ad) = (vec![0.0; cols], vec![0.0; cols]);
    crate::dequantize_row(ty, w, &mut wd).unwrap();
    crate::dequantize_row(ty.vec_dot_type(), a, &mut ad).unwrap();
    wd.iter().zip(&ad).map(|(p, q)| (p * q).abs()).sum()
}

#[test]
fn matmul_on_avx512_equals_avx2_bit_for_bit() {
    if !have_avx512("matmul_on_avx512_equals_avx2_bit_for_bit") {
        return;
    }
    let mut rng = Rng(0x0dd_5eed_2468_ace1);
    let pool = ThreadPool::new(2);
    let types = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];
    for ty in types {
        let cols = if ty.is_k_quant() { 512 } else { 96 };
        // Odd row counts (partial panels), multiples of 8 (the repacked paths), and token
        // counts below, at and above every threshold (4: panels; 8: tiled K-quants; groups of
        // four and the tokens after them; several groups of GEMM_TOKENS).
        for rows in [1, 7, 16, 24, 37] {
            let wf: Vec<f32> = rng.vec(rows * cols).iter().map(|v| v * 3.0).collect();
            let w = quantized_rows(ty, &wf, cols);
            let view = WeightView {
                ty,
                data: &w,
                rows,
                cols,
            };
            for n in [1, 3, 4, 5, 8, 9, 13, 21] {
                let x = rng.vec(n * cols);
                for arith in [Arithmetic::Reference, Arithmetic::PerToken] {
                    let mut y2 = vec![f32::NAN; n * rows];
                    let mut y5 = vec![f32::NAN; n * rows];
                    matmul_on(Isa::Avx2, &pool, &view, &x, n, &mut y2, arith).unwrap();
                    matmul_on(Isa::Avx512, &pool, &view, &x, n, &mut y5, arith).unwrap();
                    for (i, (a, b)) in y2.iter().zip(&y5).enumerate() {
                        assert_eq!(
                            a.to_bits(),
                            b.to_bits(),
                            "{ty} {rows}x{cols} n={n} {arith:?}: token {} row {}: AVX2 {a} vs \
                             AVX-512 {b}",
                            i / rows,
                            i % rows
                        );
                    }
                }
            }
        }
    }
}

fn quantized_rows(ty: GgmlType, x: &[f32], cols: usize) -> Vec<u8> {
    x.chunks_exact(cols)
        .flat_map(|r| quantized(ty, r, false))
        .collect()
}

#[test]
fn avx512_single_row_kernels_equal_avx2() {
    if !have_avx512("avx512_single_row_kernels_equal_avx2") {
        return;
    }
    let mut rng = Rng(0x1357_9bdf_0246_8ace);
    for ty in super::tests::WEIGHT_TYPES {
        assert_eq!(Isa::Avx512.has_kernel(ty), Isa::Avx2.has_kernel(ty), "{ty}");
        let n = 3 * ty.block_size().max(256);
        let w = quantized(ty, &rng.vec(n), false);
        let a = quantized(ty.vec_dot_type(), &rng.vec(n), true);
        let avx2 = vec_dot_with(Isa::Avx2, ty, n, &w, &a).unwrap();
        let avx512 = vec_dot_with(Isa::Avx512, ty, n, &w, &a).unwrap();
        assert_eq!(avx2.to_bits(), avx512.to_bits(), "{ty}");
        let scalar = reference::vec_dot(ty, n, &w, &a).unwrap();
        assert!(
            (avx512 - scalar).abs() <= 1e-3 * scalar.abs().max(1.0),
            "{ty}"
        );
    }
}

#[test]
fn isa_override_picks_named_isas_and_reports_bad_values() {
    let x86 = [Isa::Scalar, Isa::Avx2, Isa::Avx512];
    assert_eq!(Isa::choose(None, &x86), Ok(Isa::Avx512));
    assert_eq!(Isa::choose(Some(""), &x86), Ok(Isa::Avx512));
    assert_eq!(Isa::choose(Some("avx2"), &x86), Ok(Isa::Avx2));
    assert_eq!(Isa::choose(Some(" AVX512 "), &x86), Ok(Isa::Avx512));
    assert_eq!(Isa::choose(Some("scalar"), &x86), Ok(Isa::Scalar));
    let lacking = Isa::choose(Some("avx512"), &[Isa::Scalar, Isa::Avx2]).unwrap_err();
    assert!(
        lacking.contains("cannot run avx512") && lacking.contains("scalar, avx2"),
        "{lacking}"
    );
    let unknown = Isa::choose(Some("sse9"), &x86).unwrap_err();
    assert!(unknown.contains("not an instruction set"), "{unknown}");
    assert_eq!(Isa::choose(Some("neon"), &x86).map_err(|_| ()), Err(()));
    for isa in ALL_ISAS {
        assert_eq!(Isa::from_name(isa.name()), Some(isa));
    }
    // Whatever the environment says, the ISA in use is one this CPU runs.
    assert!(Isa::available().contains(&Isa::detect()));
}
