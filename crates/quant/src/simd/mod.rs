//! Run-time dispatch to the best dot-product kernel this CPU supports.
//!
//! [`Isa::detect`] probes the CPU once (cached); [`vec_dot`] uses the detected ISA, and
//! [`vec_dot_with`] runs a chosen one so tests can compare every variant with the scalar
//! reference. Types without a kernel for an ISA fall back to the scalar code.
//!
//! One file per ISA: `x86_avx2.rs` (x86_64 AVX2 + FMA + F16C, bit-exact with llama.cpp's AVX2
//! build, plus `x86_avx2/paths.rs` for its other matmul paths) and `aarch64_neon.rs` (aarch64
//! NEON, with and without the `dotprod` extension: [`Isa::Neon`], [`Isa::NeonDotprod`]; exact
//! integer sums, floats close to the scalar reference). Detection is at run time only, so a
//! binary built for the baseline target still picks the best kernels.

#[cfg(target_arch = "aarch64")]
mod aarch64_neon;
#[cfg(target_arch = "x86_64")]
mod x86_avx2;

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

/// An instruction-set level the kernels are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable scalar code ([`crate::reference`]).
    Scalar,
    /// x86_64 AVX2 + FMA.
    Avx2,
    /// aarch64 NEON (Advanced SIMD, every Armv8 CPU): integer dot products by widening
    /// multiplies (`SMULL` + `SADALP`).
    Neon,
    /// aarch64 NEON with the `dotprod` extension (Armv8.2+: Cortex-A55/A76 and later, Neoverse,
    /// Apple M): integer dot products by `SDOT`. Same integer sums and float steps as
    /// [`Isa::Neon`], so the two give identical results.
    NeonDotprod,
}

impl Isa {
    /// The best ISA this CPU supports, probed once and cached.
    pub fn detect() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| Isa::available().into_iter().last().unwrap_or(Isa::Scalar))
    }

    /// Every ISA this CPU can run, worst first (always starts with [`Isa::Scalar`]).
    pub fn available() -> Vec<Isa> {
        let mut out = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        if x86_avx2::available() {
            out.push(Isa::Avx2);
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

    /// A short lowercase name (`"scalar"`, `"avx2"`, `"neon"`, `"neon-dotprod"`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Neon => "neon",
            Isa::NeonDotprod => "neon-dotprod",
        }
    }

    /// Whether this ISA has its own kernel for weights of `ty` (otherwise scalar code runs).
    pub fn has_kernel(self, ty: GgmlType) -> bool {
        match self {
            Isa::Scalar => dot_fn(ty).is_some(),
            Isa::Avx2 | Isa::Neon | Isa::NeonDotprod => isa_kernel(self, ty).is_some(),
        }
    }
}

fn isa_kernel(isa: Isa, ty: GgmlType) -> Option<DotFn> {
    match isa {
        Isa::Scalar => dot_fn(ty),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86_avx2::kernel(ty),
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 => None,
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

/// The tile kernel for `ty` on the detected ISA, if it has one. `sgemm` asks for llamafile's
/// batched accumulation order, which differs from `vec_dot`'s only for F32 and F16.
pub(crate) fn best_tile(ty: GgmlType, sgemm: bool) -> Option<TileFn> {
    match Isa::detect() {
        Isa::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86_avx2::tile(ty, sgemm),
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 => None,
        #[cfg(target_arch = "aarch64")]
        isa @ (Isa::Neon | Isa::NeonDotprod) => {
            aarch64_neon::tile(isa == Isa::NeonDotprod, ty, sgemm)
        }
        #[cfg(not(target_arch = "aarch64"))]
        Isa::Neon | Isa::NeonDotprod => None,
    }
}

/// The chunk kernel for `ty` on the detected ISA (same arithmetic as [`best_tile`]).
pub(crate) fn best_chunk(ty: GgmlType, sgemm: bool) -> Option<ChunkFn> {
    match Isa::detect() {
        Isa::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86_avx2::chunk(ty, sgemm),
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 => None,
        #[cfg(target_arch = "aarch64")]
        isa @ (Isa::Neon | Isa::NeonDotprod) => {
            aarch64_neon::chunk(isa == Isa::NeonDotprod, ty, sgemm)
        }
        #[cfg(not(target_arch = "aarch64"))]
        Isa::Neon | Isa::NeonDotprod => None,
    }
}

/// The tile kernel for `ty` on matmul path `path` (other than `VecDot`) on the detected ISA.
/// Only AVX2 has them: they reproduce llama.cpp's x86 matmul paths, which `matmul::plan` takes
/// only on x86_64.
pub(crate) fn best_path_tile(ty: GgmlType, path: crate::matmul::Path) -> Option<TileFn> {
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() == Isa::Avx2 {
        return x86_avx2::path_tile(ty, path);
    }
    let _ = (ty, path);
    None
}

/// The chunk kernel for `ty` on matmul path `path` (other than `VecDot`) on the detected ISA
/// (same arithmetic as [`best_path_tile`]).
pub(crate) fn best_path_chunk(ty: GgmlType, path: crate::matmul::Path) -> Option<ChunkFn> {
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() == Isa::Avx2 {
        return x86_avx2::path_chunk(ty, path);
    }
    let _ = (ty, path);
    None
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

#[cfg(all(test, target_arch = "aarch64"))]
mod aarch64_tests;
