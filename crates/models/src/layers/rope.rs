//! Rotary position embeddings (RoPE).

#[cfg(target_arch = "x86_64")]
use super::ggml_f32::has_avx2_fma;

/// How the rotated dimensions are paired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(x[2i], x[2i+1])` — llama.cpp's "normal" mode (`llama`).
    Normal,
    /// Halves `(x[i], x[i + n_rot/2])` — GPT-NeoX style (Qwen, Gemma).
    Neox,
}

/// The cos/sin table of one position: `theta_i = pos * base^(-2i/n_rot)`,
/// computed by repeated multiplication in f32 like llama.cpp's rope cache
/// (`powf`, `cosf`, `sinf` from libm, as ggml calls them).
pub fn rope_table(pos: usize, n_rot: usize, base: f32, cos: &mut [f32], sin: &mut [f32]) {
    let theta_scale = base.powf(-2.0 / n_rot as f32);
    let mut theta = pos as f32;
    for i in 0..n_rot / 2 {
        cos[i] = theta.cos();
        sin[i] = theta.sin();
        theta *= theta_scale;
    }
}

/// YaRN context extension as ggml applies it (`rope_yarn`): each
/// frequency is blended between the interpolated `freq_scale * theta` and
/// the original `theta` by a ramp over the dimensions
/// `corr_dims[0]..corr_dims[1]`, and cos/sin are scaled by a magnitude
/// factor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Yarn {
    /// `1 / rope.scaling.factor`.
    pub freq_scale: f32,
    /// Weight of the ramp (1 with YaRN scaling; 0 disables the blend).
    pub ext_factor: f32,
    /// Magnitude factor on cos and sin (before YaRN's own correction).
    pub attn_factor: f32,
    /// First and last dimension pair of the ramp.
    pub corr_dims: [f32; 2],
}

impl Yarn {
    /// The YaRN parameters of `n_rot` rotated dimensions trained at
    /// `n_ctx_orig` positions with RoPE base `base` (ggml's
    /// `ggml_rope_yarn_corr_dims`, with `beta_fast` 32 and `beta_slow` 1
    /// unless given).
    pub fn new(
        n_rot: usize,
        n_ctx_orig: usize,
        base: f32,
        freq_scale: f32,
        ext_factor: f32,
        attn_factor: f32,
        betas: [f32; 2],
    ) -> Yarn {
        let corr_dim = |beta: f32| {
            n_rot as f32 * (n_ctx_orig as f32 / (beta * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * base.ln())
        };
        let start = corr_dim(betas[0]).floor();
        let end = corr_dim(betas[1]).ceil();
        Yarn {
            freq_scale,
            ext_factor,
            attn_factor,
            corr_dims: [start.max(0.0), end.min(n_rot as f32 - 1.0)],
        }
    }
}

/// [`rope_table`] with YaRN scaling (cos and sin include the magnitude factor).
pub fn rope_table_yarn(
    pos: usize,
    n_rot: usize,
    base: f32,
    yarn: &Yarn,
    cos: &mut [f32],
    sin: &mut [f32],
) {
    let theta_scale = base.powf(-2.0 / n_rot as f32);
    let mut theta_extrap = pos as f32;
    let [low, high] = yarn.corr_dims;
    for i in 0..n_rot / 2 {
        let theta_interp = yarn.freq_scale * theta_extrap;
        let mut theta = theta_interp;
        let mut mscale = yarn.attn_factor;
        if yarn.ext_factor != 0.0 {
            let y = (i as f32 - low) / (high - low).max(0.001);
            let ramp = 1.0 - y.clamp(0.0, 1.0);
            let mix = ramp * yarn.ext_factor;
            // why: GCC contracts `a*b + c*d` in ggml's rope_yarn into fma(a, b, c*d)
            theta = theta_interp.mul_add(1.0 - mix, theta_extrap * mix);
            mscale *= 0.1f32.mul_add((1.0 / yarn.freq_scale).ln(), 1.0);
        }
        cos[i] = theta.cos() * mscale;
        sin[i] = theta.sin() * mscale;
        theta_extrap *= theta_scale;
    }
}

/// Rotates the first `cos.len() * 2` dimensions of each `head_dim`-wide head in `x`.
pub fn rope_apply(x: &mut [f32], head_dim: usize, style: RopeStyle, cos: &[f32], sin: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA.
        unsafe { rope_apply_avx2_fma(x, head_dim, style, cos, sin) };
        return;
    }
    rope_apply_body(x, head_dim, style, cos, sin);
}

/// [`rope_apply_body`] compiled with AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rope_apply_avx2_fma(
    x: &mut [f32],
    head_dim: usize,
    style: RopeStyle,
    cos: &[f32],
    sin: &[f32],
) {
    rope_apply_body(x, head_dim, style, cos, sin);
}

#[inline(always)]
fn rope_apply_body(x: &mut [f32], head_dim: usize, style: RopeStyle, cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    for head in x.chunks_exact_mut(head_dim) {
        match style {
            RopeStyle::Normal => {
                for i in 0..half {
                    let (a, b) = (head[2 * i], head[2 * i + 1]);
                    (head[2 * i], head[2 * i + 1]) = rotate(a, b, cos[i], sin[i]);
                }
            }
            RopeStyle::Neox => {
                for i in 0..half {
                    let (a, b) = (head[i], head[i + half]);
                    (head[i], head[i + half]) = rotate(a, b, cos[i], sin[i]);
                }
            }
        }
    }
}

/// Rotates the pair `(a, b)` by the angle whose cosine and sine are `c`, `s`.
///
/// why: llama.cpp's `rotate_pairs` writes `a*c - b*s` and `a*s + b*c`, which
/// GCC compiles (with FMA available, contraction on by default) into
/// `fma(a, c, -(b*s))` and `fma(a, s, b*c)`; rounding the same way keeps Q and
/// K bit-identical to the reference.
#[inline(always)]
fn rotate(a: f32, b: f32, c: f32, s: f32) -> (f32, f32) {
    (a.mul_add(c, -(b * s)), a.mul_add(s, b * c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_zero_is_identity_and_norm_is_kept() {
        let mut cos = [0f32; 4];
        let mut sin = [0f32; 4];
        rope_table(0, 8, 10000.0, &mut cos, &mut sin);
        let orig: Vec<f32> = (0..16).map(|i| i as f32 * 0.1 - 0.7).collect();
        let mut x = orig.clone();
        rope_apply(&mut x, 8, RopeStyle::Normal, &cos, &sin);
        assert_eq!(x, orig);
        rope_table(17, 8, 10000.0, &mut cos, &mut sin);
        for style in [RopeStyle::Normal, RopeStyle::Neox] {
            let mut x = orig.clone();
            rope_apply(&mut x, 8, style, &cos, &sin);
            let n0: f32 = orig.iter().map(|v| v * v).sum();
            let n1: f32 = x.iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-4);
            assert_ne!(x, orig);
        }
    }

    #[test]
    fn first_pair_rotates_by_pos() {
        let mut cos = [0f32; 1];
        let mut sin = [0f32; 1];
        rope_table(3, 2, 10000.0, &mut cos, &mut sin);
        let mut x = [1.0f32, 0.0];
        rope_apply(&mut x, 2, RopeStyle::Normal, &cos, &sin);
        assert!((x[0] - 3f32.cos()).abs() < 1e-6 && (x[1] - 3f32.sin()).abs() < 1e-6);
    }
}
