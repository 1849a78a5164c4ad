//! Scalar reference code: dequantization, quantization and dot products for every type.
//!
//! These follow llama.cpp's `dequantize_row_*`, `quantize_row_*_ref` and
//! `ggml_vec_dot_*_generic` (integer dot products of the quants, then the scales), so results
//! match llama.cpp bit for bit (conversions) or to float rounding (dot products). The SIMD kernels
//! in [`crate::simd`] are tested against these.

mod dequant;
mod dot;
mod paths;
mod quant;
mod quant_k;

use crate::{GgmlType, QuantError};

pub(crate) use dot::{dot_fn, DotFn};

/// The scalar specification of a llama.cpp matmul path other than `vec_dot` for weights of
/// `ty` ([`paths`]), or `None` where that path does not exist for `ty`.
pub(crate) fn path_dot_fn(ty: GgmlType, path: crate::matmul::Path) -> Option<DotFn> {
    use crate::matmul::Path;
    Some(match (ty, path) {
        (_, Path::VecDot) => return dot_fn(ty),
        (GgmlType::Q4_0, Path::RepackGemv | Path::RepackGemm) => paths::dot_q4_0_repack,
        (GgmlType::Q4_K, Path::RepackGemv) => paths::dot_q4_k_gemv,
        (GgmlType::Q4_K, Path::RepackGemm) => paths::dot_q4_k_gemm,
        (GgmlType::Q4_K, Path::Tiled) => paths::dot_q4_k_tiled,
        (GgmlType::Q5_K, Path::Tiled) => paths::dot_q5_k_tiled,
        (GgmlType::Q6_K, Path::Tiled) => paths::dot_q6_k_tiled,
        _ => return None,
    })
}

/// Quantizes a row to Q8_K as `ggml_quantize_mat_q8_K_4x8` (the activations of the repacked
/// GEMM) does; see [`quant::quantize_q8_k_4x8`]. `dst` holds `src.len() / 256` blocks.
pub(crate) fn quantize_q8_k_4x8(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    let bytes = checked_row_bytes(GgmlType::Q8_K, src.len())?;
    check_len("quantize_q8_k_4x8 dst", bytes, dst.len())?;
    quant::quantize_q8_k_4x8(src, dst);
    Ok(())
}

/// Checks that `n` is a whole number of `ty` blocks and returns the bytes a row of `n` takes.
pub(crate) fn checked_row_bytes(ty: GgmlType, n: usize) -> Result<usize, QuantError> {
    if !n.is_multiple_of(ty.block_size()) {
        return Err(QuantError::NotBlockMultiple {
            ty,
            n,
            block_size: ty.block_size(),
        });
    }
    ty.row_bytes(n).ok_or(QuantError::Overflow("row bytes"))
}

pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), QuantError> {
    if expected == got {
        Ok(())
    } else {
        Err(QuantError::BufferSize {
            what,
            expected,
            got,
        })
    }
}

/// Converts a row of `dst.len()` elements stored as `ty` in `src` to f32.
///
/// `src` must be exactly `ty.row_bytes(dst.len())` bytes. Bit-exact with llama.cpp's
/// `dequantize_row_*` (compiled without FMA contraction) and gguf-py's `dequantize`.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    let bytes = checked_row_bytes(ty, dst.len())?;
    check_len("dequantize_row src", bytes, src.len())?;
    dequant::dequantize(ty, src, dst);
    Ok(())
}

/// Quantizes a row of `src.len()` f32 values into `dst` as `ty`, exactly like llama.cpp's
/// `quantize_row_*_ref` (the deterministic path used to create model files).
///
/// `dst` must be exactly `ty.row_bytes(src.len())` bytes. All types are supported; the K-quants
/// use the reference (no importance matrix) algorithm.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    let bytes = checked_row_bytes(ty, src.len())?;
    check_len("quantize_row dst", bytes, dst.len())?;
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => quant::quantize_float(ty, src, dst),
        GgmlType::Q4_0 => quant::quantize_q4_0(src, dst),
        GgmlType::Q4_1 => quant::quantize_q4_1(src, dst),
        GgmlType::Q5_0 => quant::quantize_q5_0(src, dst),
        GgmlType::Q5_1 => quant::quantize_q5_1(src, dst),
        GgmlType::Q8_0 => quant::quantize_q8_0(src, dst, false),
        GgmlType::Q8_1 => quant::quantize_q8_1(src, dst, false),
        GgmlType::Q8_K => quant::quantize_q8_k(src, dst),
        GgmlType::Q2_K => quant_k::quantize_q2_k(src, dst),
        GgmlType::Q3_K => quant_k::quantize_q3_k(src, dst),
        GgmlType::Q4_K => quant_k::quantize_q4_k(src, dst),
        GgmlType::Q5_K => quant_k::quantize_q5_k(src, dst),
        GgmlType::Q6_K => quant_k::quantize_q6_k(src, dst),
    }
    Ok(())
}

/// Quantizes an activation row the way llama.cpp's CPU backend does before a dot product
/// (its `type_traits_cpu[ty].from_float`), which is what [`crate::matmul()`] uses.
///
/// This differs from [`quantize_row`] only for Q8_0 and Q8_1: llama.cpp's x86 (AVX/AVX2/AVX-512)
/// builds quantize activations with `id = 127 / amax` (not `1 / (amax / 127)`) and round half to
/// even (not half away from zero). Matching that is needed for logit parity with llama.cpp.
pub fn quantize_activation_row(
    ty: GgmlType,
    src: &[f32],
    dst: &mut [u8],
) -> Result<(), QuantError> {
    match ty {
        GgmlType::Q8_0 | GgmlType::Q8_1 => {
            let bytes = checked_row_bytes(ty, src.len())?;
            check_len("quantize_activation_row dst", bytes, dst.len())?;
            quant::quantize_q8_act(ty == GgmlType::Q8_1, src, dst);
            Ok(())
        }
        _ => quantize_row(ty, src, dst),
    }
}

/// Checks `vec_dot`'s arguments: `w` is one row of `n` `ty` elements, `act` one row of `n`
/// `ty.vec_dot_type()` elements.
pub(crate) fn check_vec_dot(
    ty: GgmlType,
    n: usize,
    w: &[u8],
    act: &[u8],
) -> Result<(), QuantError> {
    if ty == GgmlType::Q8_1 || ty == GgmlType::Q8_K {
        return Err(QuantError::Unsupported { ty, op: "vec_dot" });
    }
    let w_bytes = checked_row_bytes(ty, n)?;
    let a_bytes = checked_row_bytes(ty.vec_dot_type(), n)?;
    check_len("vec_dot weights", w_bytes, w.len())?;
    check_len("vec_dot activations", a_bytes, act.len())
}

/// Scalar dot product of a weight row `w` (`n` elements of `ty`) with an activation row `act`
/// (`n` elements of `ty.vec_dot_type()`), following `ggml_vec_dot_*_generic`.
///
/// Q8_1 and Q8_K are activation-only types and return [`QuantError::Unsupported`].
pub fn vec_dot(ty: GgmlType, n: usize, w: &[u8], act: &[u8]) -> Result<f32, QuantError> {
    check_vec_dot(ty, n, w, act)?;
    let f = dot_fn(ty).ok_or(QuantError::Unsupported { ty, op: "vec_dot" })?;
    Ok(f(n, w, act))
}
