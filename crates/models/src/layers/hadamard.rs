//! The Walsh–Hadamard rotation a quantized KV cache applies to queries, keys and values.
//!
//! Quantizing a key row block by block loses most where a few features are large. llama.cpp
//! (since its 2026 "attention rotation") multiplies queries and keys by an orthonormal
//! Walsh–Hadamard matrix `H` before a quantized key cache stores them: `H` spreads every
//! feature over all of them, and since `H·Hᵀ = I`, `(Hq)·(Hk) = q·k`. Values are rotated
//! before a quantized value cache stores them and the attention output is rotated back
//! (`H = Hᵀ = H⁻¹`). Rows are rotated in independent chunks of `n` features (a power of two).
//!
//! Which chunk sizes llama.cpp picks is [`key_rotation`] / [`value_rotation`]; the transform
//! itself ([`rotate`]) follows its CPU kernel step for step (scale first, then the butterflies
//! from stride 1 up), so the rotated rows are bit-identical to its.

use crate::kv_type::KvType;

/// Chunk size of the key (and query) rotation for heads of `head_dim` features cached as
/// `ty`, or `None` when keys are not rotated: llama.cpp rotates only quantized caches whose
/// heads are a multiple of 64, by the largest power of two (from 64) that divides the head.
pub fn key_rotation(ty: KvType, head_dim: usize) -> Option<usize> {
    if !ty.is_quantized() || head_dim == 0 || !head_dim.is_multiple_of(64) {
        return None;
    }
    let mut n = 64;
    while head_dim.is_multiple_of(n * 2) {
        n *= 2;
    }
    Some(n)
}

/// Chunk size of the value (and attention output) rotation: 64 for a quantized value cache
/// whose heads are a multiple of 64 (llama.cpp found the smallest rotation best for values).
pub fn value_rotation(ty: KvType, head_dim_v: usize) -> Option<usize> {
    (ty.is_quantized() && head_dim_v > 0 && head_dim_v.is_multiple_of(64)).then_some(64)
}

/// Rotates every chunk of `n` consecutive features of `x` by the orthonormal `n × n`
/// Walsh–Hadamard matrix (Sylvester order). `n` must be a power of two dividing `x.len()`.
pub fn rotate(x: &mut [f32], n: usize) {
    debug_assert!(n.is_power_of_two() && x.len().is_multiple_of(n));
    let scale = 1.0 / (n as f32).sqrt();
    for row in x.chunks_exact_mut(n) {
        row.iter_mut().for_each(|v| *v *= scale);
        let mut len = 1;
        while len < n {
            for pair in row.chunks_exact_mut(2 * len) {
                let (lo, hi) = pair.split_at_mut(len);
                for (u, v) in lo.iter_mut().zip(hi) {
                    let (a, b) = (*u, *v);
                    *u = a + b;
                    *v = a - b;
                }
            }
            len *= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Sylvester matrix built as llama.cpp's `ggml_gen_hadamard` builds it.
    fn matrix(n: usize) -> Vec<f32> {
        let mut h = vec![0f32; n * n];
        h[0] = 1.0 / (n as f32).sqrt();
        let mut s = 1;
        while s < n {
            for i in 0..s {
                for j in 0..s {
                    let v = h[i * n + j];
                    h[(i + s) * n + j] = v;
                    h[i * n + j + s] = v;
                    h[(i + s) * n + j + s] = -v;
                }
            }
            s *= 2;
        }
        h
    }

    #[test]
    fn rotation_is_the_hadamard_product_and_its_own_inverse() {
        let n = 64;
        let x: Vec<f32> = (0..2 * n)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3)
            .collect();
        let mut y = x.clone();
        rotate(&mut y, n);
        let h = matrix(n);
        for (c, chunk) in x.chunks(n).enumerate() {
            for i in 0..n {
                let want: f64 = (0..n).map(|j| h[i * n + j] as f64 * chunk[j] as f64).sum();
                assert!((y[c * n + i] as f64 - want).abs() < 1e-5, "{i}");
            }
        }
        rotate(&mut y, n);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn chunk_sizes_follow_llamacpp() {
        assert_eq!(key_rotation(KvType::Q8_0, 64), Some(64));
        assert_eq!(key_rotation(KvType::Q8_0, 256), Some(256));
        assert_eq!(key_rotation(KvType::Q8_0, 192), Some(64));
        assert_eq!(key_rotation(KvType::Q8_0, 32), None);
        assert_eq!(key_rotation(KvType::F16, 64), None);
        assert_eq!(value_rotation(KvType::Q4_0, 256), Some(64));
        assert_eq!(value_rotation(KvType::F16, 256), None);
    }
}
