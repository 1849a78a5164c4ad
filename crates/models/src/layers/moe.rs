//! Mixture-of-experts feed-forward block: a router picks `n_expert_used` of
//! `n_expert` SwiGLU experts per token, their outputs are summed with the
//! router's weights, and an optional shared expert runs on every token.
//!
//! ```text
//! logits = h · Wrouter                                  (n, n_expert)   ffn_moe_logits
//! probs  = softmax(logits) | sigmoid(logits)                            ffn_moe_probs
//! sel    = probs [+ bias], groups outside the best n_group_used masked  (DeepSeek-V3)
//! top    = the n_expert_used largest sel, in descending order           ffn_moe_topk
//! w      = probs[top] [/ sum] [* scale]                                 ffn_moe_weights
//! out    = Σ_slot w[slot] · down_e(silu(gate_e(h)) * up_e(h))          ffn_moe_out
//! out   += [sigmoid(h · Wsh_gate) *] shared(h)                          ffn_out
//! ```
//!
//! Expert weights stay in the stacked 3-D tensors of the file
//! (`ffn_{gate,up,down}_exps`, `n_expert` matrices back to back): each
//! expert is a row slice of them, and only the slices of experts that some
//! token of the batch selected are read. Tokens are grouped by expert, so
//! each selected expert's matrices are multiplied once per batch over all
//! of its tokens (llama.cpp's `mul_mat_id` does the same).

use sparetire_formats::gguf::GgufFile;
use sparetire_quant::{GgmlType, ThreadPool};

use super::ggml_f32::{reduce8_softmax, v_expf};
use super::mlp::{swiglu, Mlp};
use crate::expert_parallel::ExpertParallel;
use crate::state::{sized, tap, Tap};
use crate::weights::Weight;
use crate::{linear, Arithmetic, ModelError};

/// How router logits become expert probabilities (`{arch}.expert_gating_func`:
/// 1 softmax, 2 sigmoid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gating {
    /// Softmax over all experts (Qwen MoE, DeepSeek-V2).
    Softmax,
    /// Independent sigmoids (DeepSeek-V3).
    Sigmoid,
}

/// How a token's experts are chosen and weighted.
#[derive(Clone, Debug, PartialEq)]
pub struct Routing {
    /// Experts in the layer.
    pub n_expert: usize,
    /// Experts each token uses.
    pub n_expert_used: usize,
    /// Softmax or sigmoid.
    pub gating: Gating,
    /// Divide the chosen weights by their sum.
    pub norm: bool,
    /// Multiply the chosen weights by this (0 or 1: leave them).
    pub scale: f32,
    /// Group-limited routing: `(n_group, n_group_used)`; experts are split
    /// into `n_group` equal groups, each scored by the sum of its two best
    /// experts, and only the best `n_group_used` groups stay selectable.
    pub groups: Option<(usize, usize)>,
}

/// The shared expert every token runs through (Qwen2-MoE, DeepSeek).
#[derive(Clone, Debug)]
pub struct SharedExpert {
    /// Its feed-forward network.
    pub mlp: Mlp,
    /// Qwen2-MoE: a `(1, n_embd)` projection whose sigmoid scales the
    /// shared expert's output per token.
    pub gate_inp: Option<Weight>,
}

/// One layer's mixture of experts.
#[derive(Clone, Debug)]
pub struct Moe {
    /// Router `(n_expert, n_embd)` (`ffn_gate_inp`).
    pub router: Weight,
    /// Selection bias added to the probabilities before choosing (DeepSeek-V3 `exp_probs_b`).
    pub bias: Option<Vec<f32>>,
    /// How experts are chosen and weighted.
    pub routing: Routing,
    /// Each expert's matrices: slices of the stacked tensors.
    pub experts: Vec<Mlp>,
    /// The shared expert, if any.
    pub shared: Option<SharedExpert>,
}

/// Scratch buffers of [`Moe::forward`], kept between calls.
#[derive(Default)]
pub struct MoeBuffers {
    logits: Vec<f32>,
    probs: Vec<f32>,
    /// `(n, n_expert_used)` chosen experts and their weights.
    chosen: Vec<usize>,
    weights: Vec<f32>,
    /// Inputs of one expert's tokens, gathered.
    xe: Vec<f32>,
    g: Vec<f32>,
    u: Vec<f32>,
    ye: Vec<f32>,
    /// `(n, n_expert_used, n_embd)` each slot's expert output.
    slots: Vec<f32>,
    shared: Vec<f32>,
}

impl Moe {
    /// Checks that the routing fits the tensors.
    pub fn validate(&self) -> Result<(), ModelError> {
        let r = &self.routing;
        let bad = |problem: String| ModelError::BadHParam {
            key: "expert_used_count".into(),
            problem,
        };
        if r.n_expert == 0 || r.n_expert_used == 0 || r.n_expert_used > r.n_expert {
            return Err(bad(format!(
                "{} experts used of {}: need 1 ≤ used ≤ count",
                r.n_expert_used, r.n_expert
            )));
        }
        if let Some((g, used)) = r.groups {
            if g == 0 || !r.n_expert.is_multiple_of(g) || used == 0 || used > g {
                return Err(ModelError::BadHParam {
                    key: "expert_group_count".into(),
                    problem: format!(
                        "{g} groups ({used} used) do not split {} experts",
                        r.n_expert
                    ),
                });
            }
            if r.n_expert / g < 2 || used * (r.n_expert / g) < r.n_expert_used {
                return Err(ModelError::BadHParam {
                    key: "expert_group_used_count".into(),
                    problem: format!(
                        "{used} groups of {} experts cannot hold {} chosen experts",
                        r.n_expert / g,
                        r.n_expert_used
                    ),
                });
            }
        }
        if self.experts.len() != r.n_expert || self.router.rows != r.n_expert {
            return Err(bad(format!(
                "{} expert matrices and {} router rows for {} experts",
                self.experts.len(),
                self.router.rows,
                r.n_expert
            )));
        }
        Ok(())
    }

    /// Bytes of weights one token reads: the router, `n_expert_used`
    /// experts (the largest, to be safe: they are all the same size) and
    /// the shared expert.
    pub fn active_bytes(&self) -> usize {
        let expert = self.experts.iter().map(Mlp::n_bytes).max().unwrap_or(0);
        self.router.n_bytes()
            + self.bias.as_ref().map_or(0, |b| 4 * b.len())
            + self.routing.n_expert_used * expert
            + self.shared.as_ref().map_or(0, shared_bytes)
    }

    /// Bytes of all its weights (what a dense layer of the same parameters reads per token).
    pub fn total_bytes(&self) -> usize {
        self.router.n_bytes()
            + self.bias.as_ref().map_or(0, |b| 4 * b.len())
            + self.experts.iter().map(Mlp::n_bytes).sum::<usize>()
            + self.shared.as_ref().map_or(0, shared_bytes)
    }

    /// `out (n, n_embd)` = the mixture applied to `x (n, n_embd)`.
    #[allow(clippy::too_many_arguments)] // why: model context, input, output, the debugging tap and the ranks
    pub fn forward(
        &self,
        pool: &ThreadPool,
        f: &GgufFile,
        arith: Arithmetic,
        x: &[f32],
        n: usize,
        b: &mut MoeBuffers,
        out: &mut [f32],
        taps: &mut Option<Tap>,
        il: usize,
        ep: Option<&ExpertParallel>,
    ) -> Result<(), ModelError> {
        let r = &self.routing;
        let (ne, k) = (r.n_expert, r.n_expert_used);
        let d = x.len() / n.max(1);
        let logits = sized(&mut b.logits, n * ne); // (n, n_expert)
        linear(pool, f, arith, &self.router, x, n, logits)?;
        tap(taps, "ffn_moe_logits", Some(il), logits);
        let probs = sized(&mut b.probs, n * ne);
        probs.copy_from_slice(logits);
        for row in probs.chunks_exact_mut(ne) {
            match r.gating {
                Gating::Softmax => soft_max(row),
                Gating::Sigmoid => row.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            }
        }
        tap(taps, "ffn_moe_probs", Some(il), probs);
        b.chosen.resize(n * k, 0);
        b.weights.resize(n * k, 0.0);
        let mut sel = vec![0f32; ne];
        for t in 0..n {
            let p = &probs[t * ne..(t + 1) * ne];
            sel.copy_from_slice(p);
            if let Some(bias) = &self.bias {
                sel.iter_mut().zip(bias).for_each(|(s, &b)| *s += b);
            }
            if let Some((g, used)) = r.groups {
                mask_groups(&mut sel, g, used);
            }
            let chosen = &mut b.chosen[t * k..(t + 1) * k];
            top_k(&sel, chosen);
            let w = &mut b.weights[t * k..(t + 1) * k];
            for (w, &e) in w.iter_mut().zip(chosen.iter()) {
                *w = p[e];
            }
            if r.norm {
                // why: ggml sums rows in f64 and clamps the sum to the smallest normal f16.
                let sum = w.iter().map(|&v| v as f64).sum::<f64>() as f32;
                let sum = sum.max(6.103_515_6e-5);
                w.iter_mut().for_each(|v| *v /= sum);
            }
            if r.scale != 0.0 && r.scale != 1.0 {
                w.iter_mut().for_each(|v| *v *= r.scale);
            }
        }
        tap(taps, "ffn_moe_weights", Some(il), &b.weights);

        // Each chosen expert once, over the tokens that chose it (in token order).
        let slots = sized(&mut b.slots, n * k * d); // (n, k, d)
        let mut rows: Vec<(usize, usize)> = Vec::new(); // (token, slot)
        for (e, mlp) in self.experts.iter().enumerate() {
            if ep.is_some_and(|ep| !ep.owns(e, ne)) {
                continue; // another rank's expert
            }
            rows.clear();
            for t in 0..n {
                if let Some(s) = b.chosen[t * k..(t + 1) * k].iter().position(|&c| c == e) {
                    rows.push((t, s));
                }
            }
            if rows.is_empty() {
                continue;
            }
            let m = rows.len();
            let xe = sized(&mut b.xe, m * d);
            for (i, &(t, _)) in rows.iter().enumerate() {
                xe[i * d..(i + 1) * d].copy_from_slice(&x[t * d..(t + 1) * d]);
            }
            let ye = sized(&mut b.ye, m * d);
            // Each matrix with the arithmetic mul_mat_id picks for its own type.
            let ff = mlp.n_ff();
            let (g, u) = (sized(&mut b.g, m * ff), sized(&mut b.u, m * ff));
            linear(
                pool,
                f,
                expert_arithmetic(&mlp.gate, arith),
                &mlp.gate,
                xe,
                m,
                g,
            )?;
            linear(
                pool,
                f,
                expert_arithmetic(&mlp.up, arith),
                &mlp.up,
                xe,
                m,
                u,
            )?;
            swiglu(g, u, ff);
            linear(
                pool,
                f,
                expert_arithmetic(&mlp.down, arith),
                &mlp.down,
                g,
                m,
                ye,
            )?;
            for (i, &(t, s)) in rows.iter().enumerate() {
                slots[(t * k + s) * d..(t * k + s + 1) * d]
                    .copy_from_slice(&ye[i * d..(i + 1) * d]);
            }
        }
        if let Some(ep) = ep {
            ep.share(&b.chosen, ne, k, d, slots)?;
        }
        // Weighted sum in slot order, as ggml adds the weighted views.
        for t in 0..n {
            let o = &mut out[t * d..(t + 1) * d];
            for s in 0..k {
                let w = b.weights[t * k + s];
                let y = &slots[(t * k + s) * d..(t * k + s + 1) * d];
                if s == 0 {
                    o.iter_mut().zip(y).for_each(|(o, &y)| *o = y * w);
                } else {
                    o.iter_mut().zip(y).for_each(|(o, &y)| *o += y * w);
                }
            }
        }
        tap(taps, "ffn_moe_out", Some(il), out);

        if let Some(sh) = &self.shared {
            let ys = sized(&mut b.shared, n * d);
            sh.mlp
                .forward(pool, f, arith, x, n, &mut b.g, &mut b.u, ys)?;
            tap(taps, "ffn_shexp", Some(il), ys);
            if let Some(gw) = &sh.gate_inp {
                let gl = sized(&mut b.xe, n); // (n, 1)
                linear(pool, f, arith, gw, x, n, gl)?;
                for (row, &g) in ys.chunks_exact_mut(d).zip(gl.iter()) {
                    // why: llama.cpp writes this sigmoid as silu(g) / g
                    let gate = (g / (1.0 + (-g).exp())) / g;
                    row.iter_mut().for_each(|v| *v *= gate);
                }
            }
            out.iter_mut().zip(ys.iter()).for_each(|(o, &y)| *o += y);
        }
        Ok(())
    }
}

fn shared_bytes(s: &SharedExpert) -> usize {
    s.mlp.n_bytes() + s.gate_inp.as_ref().map_or(0, Weight::n_bytes)
}

/// The arithmetic llama.cpp's `mul_mat_id` uses for an expert's tokens: the
/// same routing as a matmul of that many tokens, except that F32/F16/BF16
/// weights never take llamafile's sgemm, and repacked Q4_0/Q4_K weights
/// take one GEMV per token.
fn expert_arithmetic(w: &Weight, arith: Arithmetic) -> Arithmetic {
    let per_token = match w.ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q4_0 => true,
        GgmlType::Q4_K => w.rows.is_multiple_of(8),
        _ => false,
    };
    if per_token {
        Arithmetic::PerToken
    } else {
        arith
    }
}

/// Softmax of one row in place, the way ggml's `soft_max` computes it
/// (AVX2 build): 8-lane chunks through its fast `exp` and summed in f64,
/// the tail with libm's `expf`, then one multiplication by `1/sum`.
pub fn soft_max(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0f64;
    let n8 = x.len() / 8 * 8;
    for c in x[..n8].chunks_exact_mut(8) {
        c.iter_mut().for_each(|v| *v = v_expf(*v - max));
        let lanes: &[f32; 8] = (&*c).try_into().unwrap_or(&[0.0; 8]);
        sum += reduce8_softmax(lanes) as f64;
    }
    for v in &mut x[n8..] {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// Writes the indices of the `k = out.len()` largest values of `x` into
/// `out`, largest first (ties: lower index first).
pub fn top_k(x: &[f32], out: &mut [usize]) {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[b].total_cmp(&x[a]).then(a.cmp(&b)));
    out.copy_from_slice(&idx[..out.len()]);
}

/// Group-limited routing: keeps the `used` groups (of `n_group` equal
/// groups) whose two best scores sum highest and sets the others to -∞.
fn mask_groups(sel: &mut [f32], n_group: usize, used: usize) {
    let per = sel.len() / n_group;
    let scores: Vec<f32> = sel
        .chunks_exact(per)
        .map(|g| {
            let mut best = [0usize; 2];
            top_k(g, &mut best);
            g[best[0]] + g[best[1]]
        })
        .collect();
    let mut keep = vec![0usize; used];
    top_k(&scores, &mut keep);
    for (gi, g) in sel.chunks_exact_mut(per).enumerate() {
        if !keep.contains(&gi) {
            g.fill(f32::NEG_INFINITY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_top_k_orders() {
        let mut x: Vec<f32> = (0..11).map(|i| (i as f32 * 0.7).sin()).collect();
        let orig = x.clone();
        soft_max(&mut x);
        let s: f32 = x.iter().sum();
        assert!((s - 1.0).abs() < 1e-5);
        let mut top = [0usize; 3];
        top_k(&orig, &mut top);
        assert!(orig[top[0]] >= orig[top[1]] && orig[top[1]] >= orig[top[2]]);
        assert!(orig.iter().filter(|&&v| v > orig[top[2]]).count() == 2);
    }

    #[test]
    fn group_mask_keeps_the_best_groups() {
        // 4 groups of 2; group scores 0.3, 1.5, 0.9, 0.2: keep groups 1 and 2.
        let mut sel = vec![0.1, 0.2, 1.0, 0.5, 0.4, 0.5, 0.1, 0.1];
        mask_groups(&mut sel, 4, 2);
        assert_eq!(sel[0], f32::NEG_INFINITY);
        assert_eq!(&sel[2..6], &[1.0, 0.5, 0.4, 0.5]);
        assert_eq!(sel[7], f32::NEG_INFINITY);
    }
}
