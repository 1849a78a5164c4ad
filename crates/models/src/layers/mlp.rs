//! Gated feed-forward networks and their activations.

use sparetire_formats::gguf::GgufFile;
use sparetire_quant::ThreadPool;

#[cfg(target_arch = "x86_64")]
use super::ggml_f32::has_avx2_fma;
use super::ggml_f32::v_expf;
use crate::state::sized;
use crate::weights::Weight;
use crate::{linear, Arithmetic, ModelError};

/// A SwiGLU feed-forward network (`down(silu(gate(x)) * up(x))`).
#[derive(Clone, Debug)]
pub struct Mlp {
    /// Gate projection `(n_ff, n_embd)`.
    pub gate: Weight,
    /// Up projection `(n_ff, n_embd)`.
    pub up: Weight,
    /// Down projection `(n_embd, n_ff)`.
    pub down: Weight,
}

impl Mlp {
    /// Hidden width.
    pub fn n_ff(&self) -> usize {
        self.gate.rows
    }

    /// Bytes of its three matrices.
    pub fn n_bytes(&self) -> usize {
        self.gate.n_bytes() + self.up.n_bytes() + self.down.n_bytes()
    }

    /// `out (n, n_embd) = down(silu(gate(x)) * up(x))` for `x (n, n_embd)`,
    /// with `g`, `u` as scratch.
    #[allow(clippy::too_many_arguments)] // why: the buffers are the caller's, to be reused
    pub fn forward(
        &self,
        pool: &ThreadPool,
        f: &GgufFile,
        arith: Arithmetic,
        x: &[f32],
        n: usize,
        g: &mut Vec<f32>,
        u: &mut Vec<f32>,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let ff = self.n_ff();
        let (g, u) = (sized(g, n * ff), sized(u, n * ff));
        linear(pool, f, arith, &self.gate, x, n, g)?;
        linear(pool, f, arith, &self.up, x, n, u)?;
        swiglu(g, u, ff);
        linear(pool, f, arith, &self.down, g, n, out)
    }
}

/// SiLU: `x * sigmoid(x)`, computed as `x / (1 + exp(-x))` with libm's `expf`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// SwiGLU in place over rows of `width`: `gate = silu(gate) * up`.
///
/// why: llama.cpp's `ggml_vec_swiglu_f32` computes whole 8-lane chunks of
/// each row with its fast [`v_expf`] (`x / (1 + v_expf(0 - x))`) and only the
/// tail of a row with [`silu`]; we do the same so that the values the down
/// projection quantizes are bit-identical.
pub fn swiglu(gate: &mut [f32], up: &[f32], width: usize) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA.
        unsafe { swiglu_avx2_fma(gate, up, width) };
        return;
    }
    swiglu_body(gate, up, width);
}

/// [`swiglu_body`] compiled with AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn swiglu_avx2_fma(gate: &mut [f32], up: &[f32], width: usize) {
    swiglu_body(gate, up, width);
}

#[inline(always)]
fn swiglu_body(gate: &mut [f32], up: &[f32], width: usize) {
    let n8 = width / 8 * 8;
    for (g, u) in gate.chunks_exact_mut(width).zip(up.chunks_exact(width)) {
        for (x, &y) in g[..n8].iter_mut().zip(&u[..n8]) {
            *x = *x / (1.0 + v_expf(0.0 - *x)) * y;
        }
        for (x, &y) in g[n8..].iter_mut().zip(&u[n8..]) {
            *x = silu(*x) * y;
        }
    }
}

/// GELU, tanh approximation, as llama.cpp's `ggml_gelu_f32` computes it
/// (GCC fuses `1 + c*x*x` into an FMA).
#[inline]
pub fn gelu(x: f32) -> f32 {
    const GELU_COEF_A: f32 = 0.044715;
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (GELU_COEF_A * x).mul_add(x, 1.0)).tanh())
}

/// `gelu(h)` rounded to f16 for every f16 value `h`: llama.cpp's CPU backend
/// evaluates GELU through this table (`GGML_GELU_FP16`), so we do too.
fn gelu_table() -> &'static [half::f16] {
    static TABLE: std::sync::OnceLock<Vec<half::f16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| {
                let y = gelu(half::f16::from_bits(bits).to_f32());
                if y.is_nan() {
                    // why: ggml fills the table with its software f32→f16
                    // conversion, which turns every NaN into a quiet NaN with
                    // the sign kept and the payload dropped
                    half::f16::from_bits(if y.is_sign_negative() { 0xfe00 } else { 0x7e00 })
                } else {
                    half::f16::from_f32(y)
                }
            })
            .collect()
    })
}

/// GeGLU in place: `gate = gelu(gate) * up`, with GELU looked up in
/// [`gelu_table`] for inputs in (-10, 10) exactly like `ggml_vec_geglu_f32`:
/// the input is rounded to f16 and the table's f16 result widened.
pub fn geglu(gate: &mut [f32], up: &[f32]) {
    let table = gelu_table();
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        *g = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x * u
        } else {
            table[half::f16::from_f32(x).to_bits() as usize].to_f32() * u
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(2.0) - 1.761_594_2).abs() < 1e-6);
        assert!((gelu(1.0) - 0.841_192).abs() < 1e-5);
        let mut g = [1.0f32, -1.0];
        swiglu(&mut g, &[2.0, 3.0], 2);
        assert!((g[0] - 2.0 * silu(1.0)).abs() < 1e-7);
        let mut g = [1.0f32, -20.0, 12.0];
        geglu(&mut g, &[2.0, 2.0, 0.5]);
        assert!((g[0] - 2.0 * gelu(1.0)).abs() < 2e-3);
        assert_eq!(g[1], 0.0);
        assert_eq!(g[2], 6.0);
        let mut g: Vec<f32> = (0..20).map(|i| i as f32 * 0.5 - 5.0).collect();
        let want: Vec<f32> = g.iter().map(|&x| silu(x) * 2.0).collect();
        swiglu(&mut g, &[2.0; 20], 10);
        for (a, b) in g.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    /// All 65536 entries equal llama.cpp's `ggml_table_gelu_f16`, read out of
    /// the reference `libggml-cpu.so` after `ggml_cpu_init` (GCC 12, znver3:
    /// `1 + A*x*x` fused into an FMA, glibc `tanhf`, NaNs canonical): FNV-1a 64
    /// of the table's little-endian bytes, plus a few entries (two of them NaN)
    /// to make a mismatch readable.
    #[test]
    fn gelu_table_is_llama_cpp_s() {
        let t = gelu_table();
        let spot = [
            (0x3c00, 0x3abb),
            (0xbc00, 0xb115),
            (0x4000, 0x3fd2),
            (0x3800, 0x3588),
            (0x1234, 0x0e35),
            (0xc500, 0x8005),
        ];
        for (x, want) in spot {
            assert_eq!(t[x].to_bits(), want, "gelu(f16 {x:#06x})");
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in t.iter().flat_map(|v| v.to_bits().to_le_bytes()) {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        assert_eq!(h, 0xab04_4edb_a0ed_200c);
    }
}
