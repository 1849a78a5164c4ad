//! Run-time dispatch to the best dot-product kernel this CPU supports.
//!
//! [`Isa::detect`] probes the CPU once (cached); [`vec_dot`] uses the detected ISA, and
//! [`vec_dot_with`] runs a chosen one so tests can compare every variant with the scalar
//! reference. Types without a kernel for an ISA fall back to the scalar code.
//!
//! One file per ISA: `x86_avx2.rs` (x86_64 AVX2 + FMA + F16C, bit-exact with llama.cpp's AVX2
//! build, plus `x86_avx2/paths.rs` for its other matmul paths), `x86_avx512.rs` (AVX-512 with
//! VNNI: the same results bit for bit, computed with 512-bit integer dot products and, for
//! batches, blocked matrix-matrix kernels, [`Isa::Avx512`]) and `aarch64_neon.rs` (aarch64
//! NEON, with and without the `dotprod` extension: [`Isa::Neon`], [`Isa::NeonDotprod`]; exact
//! integer sums, floats close to the scalar reference). Detection is at run time only, so a
//! binary built for the baseline target still picks the best kernels; `SPARETIRE_ISA`
//! (`scalar`, `avx2`, `avx512`, `neon`, `neon-dotprod`) overrides the choice ([`Isa::detect`]).

#[cfg(target_arch = "aarch64")]
mod aarch64_neon;
#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;

use crate::reference::{check_vec_dot, dot_fn, DotFn};
use crate::{GgmlType, QuantError};
use std::sync::OnceLock;

/// Most activation rows a tile kernel takes at once.
pub(crate) const MAX_TILE: usize = 4;

/// A tile kernel: `f(cols, w_row, acts, a_stride, out)` sets `out[t]` (`1 <= out.len() <=
/// MAX_TILE`) to the dot product of the weight row with activation row `t`, which starts at
/// byte `t * a_stride` of `acts`. Each output is computed exactly as the single-row kernel would
/// (or, for F32/F16 when asked, as llamafile's batched sgemm would); the tile only shares the
/// decoding of each weight block. Panics on short buffers.
pub(crate) type TileFn = fn(usize, &[u8], &[u8], usize, &mut [f32]);

/// A chunk kernel: `f(cols, w, w_row, acts, a_stride, nt, out)` runs the tile kernel of the
/// same type on each of `out.len() / nt` weight rows (row `r` starts at byte `r * w_row` of `w`)
/// against the `nt` (`1..=MAX_TILE`) activation rows of `acts`, setting `out[r * nt + t]`.
/// Lengths are checked once for the whole chunk; per output the arithmetic is the tile's.
/// Panics on short buffers.
pub(crate) type ChunkFn = fn(usize, &[u8], usize, &[u8], usize, usize, &mut [f32]);

/// Weight rows a [`Gemm`] panel holds (one per lane of a 512-bit register).
pub(crate) const PANEL_ROWS: usize = 16;

/// Most tokens one [`Gemm::run`] call takes.
pub(crate) const GEMM_TOKENS: usize = 8;

/// `run(cols, panel, acts, a_stride, side, side_stride, nt, out)`: the products of the
/// [`PANEL_ROWS`] decoded rows of `panel` with the `nt` (`1..=GEMM_TOKENS`) activation rows of
/// `acts` (row `t` at byte `t * a_stride`, its side data at byte `t * side_stride` of `side`),
/// setting `out[t * PANEL_ROWS + r]`, padding rows included. Panics on short buffers.
pub(crate) type GemmRunFn = fn(usize, &[u8], &[u8], usize, &[u8], usize, usize, &mut [f32]);

/// A blocked matrix-matrix kernel for one weight type and matmul path: a chunk of up to
/// [`PANEL_ROWS`] weight rows is decoded once into a *panel* (the rows interleaved so that one
/// register lane holds one row), each activation row once into *side data* (its scales and
/// the sums an offset encoding needs), and then every group of up to [`GEMM_TOKENS`] tokens
/// runs against the whole panel. Per output the float operations are those of the path's
/// single-row kernel, in the same order, so the results are bit-identical to it.
#[derive(Clone, Copy)]
pub(crate) struct Gemm {
    /// Side-data bytes per activation row of `cols` columns.
    pub(crate) side_bytes: fn(usize) -> usize,
    /// `prep(cols, act_row, side_row)`: one activation row's side data. Panics on short buffers.
    pub(crate) prep: fn(usize, &[u8], &mut [u8]),
    /// Panel bytes for rows of `cols` columns.
    pub(crate) panel_bytes: fn(usize) -> usize,
    /// `decode(cols, w, w_row, n_rows, panel)`: decodes `n_rows` (`1..=PANEL_ROWS`) weight rows
    /// (row `r` at byte `r * w_row` of `w`) into `panel`, zero rows after them. Panics on short
    /// buffers.
    pub(crate) decode: fn(usize, &[u8], usize, usize, &mut [u8]),
    /// The products, with the arithmetic of the path (for the repacked GEMM: a group of four).
    pub(crate) run: GemmRunFn,
    /// The products of tokens outside the repacked GEMM's groups of four (its GEMV arithmetic);
    /// the same as `run` on every other path.
    pub(crate) run_rest: GemmRunFn,
    /// Fewest tokens for which this beats the tile kernels, which decode each weight block in
    /// registers for the few tokens at hand instead of once into a panel (measured; see
    /// docs/PERFORMANCE.md).
    pub(crate) min_tokens: usize,
}

/// An instruction-set level the kernels are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable scalar code ([`crate::reference`]).
    Scalar,
    /// x86_64 AVX2 + FMA.
    Avx2,
    /// x86_64 AVX-512 (F, BW, VL) with VNNI (`vpdpbusd`), on top of AVX2 + FMA + F16C: the
    /// results of [`Isa::Avx2`] bit for bit, from 512-bit integer dot products.
    Avx512,
    /// aarch64 NEON (Advanced SIMD, every Armv8 CPU): integer dot products by widening
    /// multiplies (`SMULL` + `SADALP`).
    Neon,
    /// aarch64 NEON with the `dotprod` extension (Armv8.2+: Cortex-A55/A76 and later, Neoverse,
    /// Apple M): integer dot products by `SDOT`. Same integer sums and float steps as
    /// [`Isa::Neon`], so the two give identical results.
    NeonDotprod,
}

/// Every ISA, in the order [`Isa::available`] lists them.
const ALL_ISAS: [Isa; 5] = [
    Isa::Scalar,
    Isa::Avx2,
    Isa::Avx512,
    Isa::Neon,
    Isa::NeonDotprod,
];

impl Isa {
    /// The ISA the kernels run on: the best this CPU supports, unless the environment variable
    /// `SPARETIRE_ISA` names another one it supports (`scalar`, `avx2`, `avx512`, `neon`,
    /// `neon-dotprod`; for A/B measurements, or to keep a CPU out of its AVX-512 clock
    /// states). Read once and cached. A value that is not an ISA, or names one this CPU
    /// lacks, is reported on stderr and the best ISA is used.
    pub fn detect() -> Isa {
        static CHOSEN: OnceLock<Isa> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let var = std::env::var("SPARETIRE_ISA").ok();
            match Isa::choose(var.as_deref(), &Isa::available()) {
                Ok(isa) => isa,
                Err(msg) => {
                    let best = Isa::best();
                    eprintln!("warning: {msg}; using {}", best.name());
                    best
                }
            }
        })
    }

    /// The best ISA this CPU supports, whatever `SPARETIRE_ISA` says.
    pub fn best() -> Isa {
        Isa::available().into_iter().last().unwrap_or(Isa::Scalar)
    }

    /// The ISA a value of `SPARETIRE_ISA` asks for, given the ISAs this CPU runs (worst first):
    /// the best of them when unset or empty, an error message when the value names no ISA or
    /// one not available.
    pub fn choose(var: Option<&str>, available: &[Isa]) -> Result<Isa, String> {
        let best = available.last().copied().unwrap_or(Isa::Scalar);
        let Some(v) = var.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(best);
        };
        let names = || {
            available
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match Isa::from_name(v) {
            Some(isa) if available.contains(&isa) => Ok(isa),
            Some(isa) => Err(format!(
                "SPARETIRE_ISA={v}: this CPU cannot run {} (it runs {})",
                isa.name(),
                names()
            )),
            None => Err(format!(
                "SPARETIRE_ISA={v} is not an instruction set (this CPU runs {})",
                names()
            )),
        }
    }

    /// The ISA called `name` ([`Isa::name`], case ignored), if there is one.
    pub fn from_name(name: &str) -> Option<Isa> {
        ALL_ISAS
            .into_iter()
            .find(|i| i.name().eq_ignore_ascii_case(name))
    }

    /// Whether this ISA's kernels compute bit for bit what llama.cpp's x86 AVX2 build does
    /// (the golden tests' reference): [`Isa::Avx2`] and [`Isa::Avx512`].
    pub fn matches_llama_cpp_avx2(self) -> bool {
        matches!(self, Isa::Avx2 | Isa::Avx512)
    }

    /// Every ISA this CPU can run, worst first (always starts with [`Isa::Scalar`]).
    pub fn available() -> Vec<Isa> {
        let mut out = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        if x86_avx2::available() {
            out.push(Isa::Avx2);
        }
        #[cfg(target_arch = "x86_64")]
        if x86_avx512::available() {
            out.push(Isa::Avx512);
        }
        #[cfg(target_arch = "aarch64")]
        {
            if aarch64_neon::available() {
                out.push(Isa::Neon);
            }
            if aarch64_neon::dotprod_available() {
                out.push(Isa::NeonDotprod);
            }
        }
        out
    }

    /// A short lowercase name (`"scalar"`, `"avx2"`, `"avx512"`, `"neon"`, `"neon-dotprod"`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
            Isa::NeonDotprod => "neon-dotprod",
        }
    }

    /// Whether this ISA has its own kernel for weights of `ty` (otherwise scalar code runs).
    pub fn has_kernel(self, ty: GgmlType) -> bool {
        match self {
            Isa::Scalar => dot_fn(ty).is_some(),
            _ => isa_kernel(self, ty).is_some(),
        }
    }
}

fn isa_kernel(isa: Isa, ty: GgmlType) -> Option<DotFn> {
    match isa {
        Isa::Scalar => dot_fn(ty),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86_avx2::kernel(ty),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86_avx512::kernel(ty),
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 | Isa::Avx512 => None,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDotprod => aarch64_neon::kernel(isa == Isa::NeonDotprod, ty),
        #[cfg(not(target_arch = "aarch64"))]
        Isa::Neon | Isa::NeonDotprod => None,
    }
}

/// The kernel `isa` would run for `ty` (falling back to scalar), or `None` for types with no
/// dot product (Q8_1, Q8_K). Callers must have checked lengths with [`check_vec_dot`].
pub(crate) fn kernel_for(isa: Isa, ty: GgmlType) -> Option<DotFn> {
    isa_kernel(isa, ty).or_else(|| dot_fn(ty))
}

/// The kernel for `ty` on the detected ISA, cached per type.
pub(crate) fn best_kernel(ty: GgmlType) -> Option<DotFn> {
    static TABLE: OnceLock<Vec<(GgmlType, Option<DotFn>)>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let isa = Isa::detect();
        GgmlType::ALL
            .iter()
            .map(|&t| (t, kernel_for(isa, t)))
            .collect()
    });
    table.iter().find(|(t, _)| *t == ty).and_then(|(_, f)| *f)
}

/// The tile kernel for `ty` on `isa`, if it has one. `sgemm` asks for llamafile's batched
/// accumulation order, which differs from `vec_dot`'s only for F32 and F16.
pub(crate) fn tile_for(isa: Isa, ty: GgmlType, sgemm: bool) -> Option<TileFn> {
    match isa {
        Isa::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86_avx2::tile(ty, sgemm),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86_avx512::tile(ty, sgemm),
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 | Isa::Avx512 => None,
        #[cfg(target_arch = "aarch64")]
        isa @ (Isa::Neon | Isa::NeonDotprod) => {
            aarch64_neon::tile(isa == Isa::NeonDotprod, ty, sgemm)
        }
        #[cfg(not(target_arch = "aarch64"))]
        Isa::Neon | Isa::NeonDotprod => None,
    }
}

/// The chunk kernel for `ty` on `isa` (same arithmetic as [`tile_for`]).
pub(crate) fn chunk_for(isa: Isa, ty: GgmlType, sgemm: bool) -> Option<ChunkFn> {
    match isa {
        Isa::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86_avx2::chunk(ty, sgemm),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86_avx512::chunk(ty, sgemm),
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 | Isa::Avx512 => None,
        #[cfg(target_arch = "aarch64")]
        isa @ (Isa::Neon | Isa::NeonDotprod) => {
            aarch64_neon::chunk(isa == Isa::NeonDotprod, ty, sgemm)
        }
        #[cfg(not(target_arch = "aarch64"))]
        Isa::Neon | Isa::NeonDotprod => None,
    }
}

/// The tile kernel for `ty` on matmul path `path` (other than `VecDot`) on `isa`. Only the x86
/// ISAs have them: they reproduce llama.cpp's x86 matmul paths, which `matmul::plan` takes only
/// on x86_64.
pub(crate) fn path_tile_for(isa: Isa, ty: GgmlType, path: crate::matmul::Path) -> Option<TileFn> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86_avx2::path_tile(ty, path),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86_avx512::path_tile(ty, path),
        _ => {
            let _ = (ty, path);
            None
        }
    }
}

/// The chunk kernel for `ty` on matmul path `path` (other than `VecDot`) on `isa` (same
/// arithmetic as [`path_tile_for`]).
pub(crate) fn path_chunk_for(isa: Isa, ty: GgmlType, path: crate::matmul::Path) -> Option<ChunkFn> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86_avx2::path_chunk(ty, path),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86_avx512::path_chunk(ty, path),
        _ => {
            let _ = (ty, path);
            None
        }
    }
}

/// The blocked matrix-matrix kernel for `ty` on matmul path `path` (`VecDot` included) on
/// `isa`, if it has one (AVX-512 only). `sgemm` as for [`tile_for`].
pub(crate) fn gemm_for(
    isa: Isa,
    ty: GgmlType,
    path: crate::matmul::Path,
    sgemm: bool,
) -> Option<Gemm> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86_avx512::gemm(ty, path, sgemm),
        _ => {
            let _ = (ty, path, sgemm);
            None
        }
    }
}

/// Dot product of a weight row `w` (`n` elements of `ty`) with an activation row `act`
/// (`n` elements of `ty.vec_dot_type()`; f32 bytes for F32 weights), on the best kernel this CPU
/// supports.
pub fn vec_dot(ty: GgmlType, n: usize, w: &[u8], act: &[u8]) -> Result<f32, QuantError> {
    check_vec_dot(ty, n, w, act)?;
    let f = best_kernel(ty).ok_or(QuantError::Unsupported { ty, op: "vec_dot" })?;
    Ok(f(n, w, act))
}

/// A dot-product kernel: `f(n, w, act)` is the dot product of a weight row of `n` elements with
/// an activation row of `n` elements of the weight type's `vec_dot_type()`, exactly as
/// [`vec_dot`] computes it. It does not check lengths (it panics on short buffers).
pub type VecDotFn = fn(usize, &[u8], &[u8]) -> f32;

/// The kernel [`vec_dot`] runs for weights of `ty` on this CPU, for callers that take many dot
/// products of rows whose lengths they have checked once (attention over a quantized KV cache).
pub fn vec_dot_kernel(ty: GgmlType) -> Result<VecDotFn, QuantError> {
    if ty == GgmlType::Q8_1 || ty == GgmlType::Q8_K {
        return Err(QuantError::Unsupported { ty, op: "vec_dot" });
    }
    best_kernel(ty).ok_or(QuantError::Unsupported { ty, op: "vec_dot" })
}

/// [`vec_dot`] on a chosen ISA; [`QuantError::Unsupported`] if this CPU cannot run it.
pub fn vec_dot_with(
    isa: Isa,
    ty: GgmlType,
    n: usize,
    w: &[u8],
    act: &[u8],
) -> Result<f32, QuantError> {
    check_vec_dot(ty, n, w, act)?;
    if !Isa::available().contains(&isa) {
        return Err(QuantError::Unsupported {
            ty,
            op: "vec_dot on an ISA this CPU lacks",
        });
    }
    let f = kernel_for(isa, ty).ok_or(QuantError::Unsupported { ty, op: "vec_dot" })?;
    Ok(f(n, w, act))
}

#[cfg(test)]
mod tests;

#[cfg(all(test, target_arch = "x86_64"))]
mod avx512_tests;

#[cfg(all(test, target_arch = "aarch64"))]
mod aarch64_tests;
