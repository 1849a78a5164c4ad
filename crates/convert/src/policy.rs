//! Which type each tensor gets: llama.cpp's `llama_model_quantize` policy without an
//! importance matrix, rewritten from its rules.
//!
//! - Only tensors with two or more dimensions whose name ends in `weight` are converted; norms,
//!   biases, router (`ffn_gate_inp`) and position tables keep their type.
//! - `output.weight` (or `token_embd.weight` when the output is tied to it) gets Q6_K, or Q8_0
//!   when its rows do not fit the file type's blocks.
//! - The `_M`/`_L`/`_S` mixes give attention V, feed-forward down and attention output more
//!   bits on chosen layers ([`use_more_bits`]).
//! - A row length that is not a multiple of the chosen type's block falls back to a type whose
//!   block fits (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, Q2_K/Q3_K → Q4_0), else F16.
//!
//! Tensors are visited in [`tensor_order`] (llama.cpp's), because the mixes count attention V
//! tensors in visiting order.

use std::cmp::Ordering;

use sparetire_quant::GgmlType;

use crate::file_type::{is_quantized, FileType};

/// What the policy needs to know about the model (from its metadata).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelShape {
    /// `general.architecture`.
    pub arch: String,
    /// Transformer blocks (`{arch}.block_count`).
    pub n_layer: u32,
    /// Query heads of the first layer.
    pub n_head: u32,
    /// Key/value heads of the first layer.
    pub n_head_kv: u32,
    /// Experts per MoE layer (0 for dense models).
    pub n_expert: u32,
}

impl ModelShape {
    fn n_gqa(&self) -> u32 {
        self.n_head.checked_div(self.n_head_kv).unwrap_or(0)
    }

    /// llama.cpp calls an 80-layer llama with grouped-query attention "70B" and gives its
    /// attention V more bits.
    fn is_70b(&self) -> bool {
        self.arch == "llama" && self.n_layer == 80 && self.n_head != self.n_head_kv
    }
}

/// One tensor as the policy sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorDesc {
    /// Its GGUF name.
    pub name: String,
    /// Its dimensions, innermost (row length) first.
    pub dims: Vec<u64>,
    /// Its type in the input.
    pub ty: GgmlType,
}

/// The policy's decision for one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The type it is written in.
    pub ty: GgmlType,
    /// Whether its row length forced a different type than the mix asked for.
    pub fallback: bool,
}

/// The order llama.cpp writes and visits tensors in: by layer number (`blk.N.`; other tensors
/// first), then by name, byte-wise.
pub fn tensor_order(a: &str, b: &str) -> Ordering {
    layer_of(a).cmp(&layer_of(b)).then_with(|| a.cmp(b))
}

/// The layer number of a `blk.N.…` name, -1 for other names (as `sscanf("blk.%d.")`).
fn layer_of(name: &str) -> i64 {
    let Some(rest) = name.strip_prefix("blk.") else {
        return -1;
    };
    let (sign, digits) = match rest.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, rest.strip_prefix('+').unwrap_or(rest)),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    if end == 0 {
        return -1;
    }
    digits[..end].parse::<i64>().map(|n| sign * n).unwrap_or(-1)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    AttnQ,
    AttnV,
    AttnK,
    AttnQkv,
    AttnKvB,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

fn category(name: &str) -> Category {
    if name == "output.weight" {
        return Category::Output;
    }
    if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        return Category::TokenEmbd;
    }
    let rules = [
        ("attn_qkv.weight", Category::AttnQkv),
        ("attn_kv_b.weight", Category::AttnKvB),
        ("attn_v.weight", Category::AttnV),
        ("attn_k.weight", Category::AttnK),
        ("attn_q.weight", Category::AttnQ),
        ("attn_output.weight", Category::AttnOutput),
        ("ffn_up", Category::FfnUp),
        ("ffn_gate", Category::FfnGate),
        ("ffn_down", Category::FfnDown),
    ];
    rules
        .into_iter()
        .find(|(pat, _)| name.contains(pat))
        .map_or(Category::Other, |(_, c)| c)
}

fn is_attn_v_like(c: Category) -> bool {
    matches!(c, Category::AttnV | Category::AttnQkv | Category::AttnKvB)
}

/// Dimensions as ggml counts them: trailing dimensions of size 1 do not count.
fn n_dims(dims: &[u64]) -> usize {
    dims.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1)
}

/// Whether a tensor may be converted at all (otherwise it is copied as it is).
pub fn allows_quantization(name: &str, dims: &[u64]) -> bool {
    if n_dims(dims) < 2 || !name.ends_with("weight") {
        return false;
    }
    const KEEP_CONTAINING: [&str; 31] = [
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
    ];
    const KEEP_EXACT: [&str; 2] = ["position_embd.weight", "token_types.weight"];
    !KEEP_CONTAINING.iter().any(|p| name.contains(p))
        && !KEEP_EXACT.contains(&name)
        && !["sam.pos_embd", "sam.neck.", "sam.net_", "mm.a.code_embd"]
            .iter()
            .any(|p| name.contains(p))
}

/// llama.cpp's choice of layers that get more bits in the `_M` mixes: the first and last
/// eighth, and every third layer between.
pub fn use_more_bits(i_layer: i64, n_layer: i64) -> bool {
    i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 || (i_layer - n_layer / 8) % 3 == 2
}

/// Chooses every tensor's type for `ftype`. `tensors` must be in [`tensor_order`]; the result is
/// in the same order.
pub fn plan(shape: &ModelShape, tensors: &[TensorDesc], ftype: FileType) -> Vec<Choice> {
    let mut st = State {
        shape,
        ftype,
        n_attention_wv: tensors
            .iter()
            .filter(|t| is_attn_v_like(category(&t.name)))
            .count() as i64,
        i_attention_wv: 0,
        i_ffn_down: 0,
        tied: !tensors.iter().any(|t| t.name == "output.weight"),
    };
    tensors.iter().map(|t| st.choose(t)).collect()
}

struct State<'a> {
    shape: &'a ModelShape,
    ftype: FileType,
    n_attention_wv: i64,
    i_attention_wv: i64,
    i_ffn_down: i64,
    tied: bool,
}

impl State<'_> {
    fn choose(&mut self, t: &TensorDesc) -> Choice {
        let keep = Choice {
            ty: t.ty,
            fallback: false,
        };
        if !allows_quantization(&t.name, &t.dims) {
            return keep;
        }
        let default = self.ftype.default_type();
        if !is_quantized(default) {
            return Choice {
                ty: default,
                fallback: false,
            };
        }
        let wanted = self.mix(t, default);
        let cols = t.dims.first().copied().unwrap_or(0);
        fallback(wanted, cols)
    }

    /// The mix's type for `t` (before the row-length fallback).
    fn mix(&mut self, t: &TensorDesc, default: GgmlType) -> GgmlType {
        use FileType as F;
        use GgmlType as G;
        let cat = category(&t.name);
        let ft = self.ftype;
        let shape = self.shape;
        let n_expert = shape.n_expert;
        if cat == Category::Output || (self.tied && cat == Category::TokenEmbd) {
            let cols = t.dims.first().copied().unwrap_or(0);
            let block = default.block_size() as u64;
            return if shape.arch == "falcon" || !cols.is_multiple_of(block) {
                G::Q8_0
            } else if default != G::Q8_0 {
                G::Q6_K
            } else {
                default
            };
        }
        let mut ty = default;
        if cat == Category::TokenEmbd {
            return ty;
        }
        if is_attn_v_like(cat) {
            let (i, n) = (self.i_attention_wv, self.n_attention_wv);
            match ft {
                F::Q2_K => ty = if shape.n_gqa() >= 4 { G::Q4_K } else { G::Q3_K },
                F::Q3_K_M => ty = if i < 2 { G::Q5_K } else { G::Q4_K },
                F::Q3_K_L => ty = G::Q5_K,
                F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n) => ty = G::Q6_K,
                F::Q4_K_S if i < 4 => ty = G::Q5_K,
                _ => {}
            }
            if shape.is_70b() && matches!(ty, G::Q3_K | G::Q4_K) {
                ty = G::Q5_K;
            }
            if n_expert == 8 {
                ty = G::Q8_0;
            }
            self.i_attention_wv += 1;
            return ty;
        }
        match cat {
            Category::AttnK if n_expert == 8 => G::Q8_0,
            Category::FfnDown => {
                let n_layer = shape.n_layer as i64;
                let i = if n_expert > 1 {
                    layer_of(&t.name)
                } else {
                    self.i_ffn_down
                };
                let falcon = shape.arch == "falcon";
                match ft {
                    F::Q2_K => ty = G::Q3_K,
                    F::Q3_K_M => {
                        ty = if i < n_layer / 16 {
                            G::Q5_K
                        } else if !falcon || use_more_bits(i, n_layer) {
                            G::Q4_K
                        } else {
                            G::Q3_K
                        }
                    }
                    F::Q3_K_L => ty = if falcon { G::Q4_K } else { G::Q5_K },
                    F::Q4_K_M if falcon => {
                        ty = if i < n_layer / 16 {
                            G::Q6_K
                        } else if use_more_bits(i, n_layer) {
                            G::Q5_K
                        } else {
                            G::Q4_K
                        }
                    }
                    F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n_layer) => ty = G::Q6_K,
                    F::Q4_K_S if !falcon && i < n_layer / 8 => ty = G::Q5_K,
                    _ => {}
                }
                self.i_ffn_down += 1;
                ty
            }
            Category::AttnOutput if shape.arch != "falcon" => {
                if n_expert == 8 {
                    if matches!(ft, F::Q2_K | F::Q3_K_S | F::Q3_K_M | F::Q4_K_S | F::Q4_K_M) {
                        ty = G::Q5_K;
                    }
                } else {
                    match ft {
                        F::Q2_K => ty = G::Q3_K,
                        F::Q3_K_M => ty = G::Q4_K,
                        F::Q3_K_L => ty = G::Q5_K,
                        _ => {}
                    }
                }
                ty
            }
            Category::AttnOutput if ft == F::Q3_K_L => G::Q4_K,
            Category::AttnQkv => match ft {
                F::Q3_K_M | F::Q3_K_L => G::Q4_K,
                F::Q4_K_M => G::Q5_K,
                F::Q5_K_M => G::Q6_K,
                _ => ty,
            },
            _ => ty,
        }
    }
}

/// The type a row of `cols` elements can take when `wanted`'s blocks do not divide it.
fn fallback(wanted: GgmlType, cols: u64) -> Choice {
    use GgmlType as G;
    let fits = |t: GgmlType| cols.is_multiple_of(t.block_size() as u64);
    if fits(wanted) {
        return Choice {
            ty: wanted,
            fallback: false,
        };
    }
    let mut ty = match wanted {
        G::Q2_K | G::Q3_K => G::Q4_0,
        G::Q4_K => G::Q5_0,
        G::Q5_K => G::Q5_1,
        G::Q6_K => G::Q8_0,
        other => other,
    };
    if !fits(ty) {
        ty = G::F16;
    }
    Choice { ty, fallback: true }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(n_layer: u32) -> ModelShape {
        ModelShape {
            arch: "llama".into(),
            n_layer,
            n_head: 9,
            n_head_kv: 3,
            n_expert: 0,
        }
    }

    fn desc(name: &str, dims: &[u64]) -> TensorDesc {
        TensorDesc {
            name: name.into(),
            dims: dims.to_vec(),
            ty: GgmlType::F32,
        }
    }

    #[test]
    fn order_is_by_layer_then_name() {
        let mut names = vec![
            "blk.10.attn_q.weight",
            "blk.2.ffn_up.weight",
            "token_embd.weight",
            "blk.2.attn_k.weight",
            "output_norm.weight",
        ];
        names.sort_by(|a, b| tensor_order(a, b));
        assert_eq!(
            names,
            [
                "output_norm.weight",
                "token_embd.weight",
                "blk.2.attn_k.weight",
                "blk.2.ffn_up.weight",
                "blk.10.attn_q.weight"
            ]
        );
    }

    #[test]
    fn norms_and_vectors_keep_their_type() {
        assert!(!allows_quantization("blk.0.attn_norm.weight", &[576, 1]));
        assert!(!allows_quantization("blk.0.attn_q.bias", &[576, 576]));
        assert!(!allows_quantization("blk.0.ffn_gate_inp.weight", &[576, 8]));
        assert!(allows_quantization("blk.0.attn_q.weight", &[576, 576]));
    }

    #[test]
    fn q4_k_m_bumps_v_and_down_on_chosen_layers_and_falls_back_on_odd_rows() {
        // 8 layers: use_more_bits picks layers 0, 3, 6, 7.
        let more: Vec<i64> = (0..8).filter(|&i| use_more_bits(i, 8)).collect();
        assert_eq!(more, [0, 3, 6, 7]);
        let mut ts = vec![desc("token_embd.weight", &[256, 1000])];
        for l in 0..8 {
            ts.push(desc(&format!("blk.{l}.attn_v.weight"), &[256, 128]));
            ts.push(desc(&format!("blk.{l}.ffn_down.weight"), &[640, 256]));
        }
        ts.sort_by(|a, b| tensor_order(&a.name, &b.name));
        let c = plan(&shape(8), &ts, FileType::Q4_K_M);
        let by_name = |n: &str| c[ts.iter().position(|t| t.name == n).unwrap()];
        // Tied embedding → Q6_K.
        assert_eq!(by_name("token_embd.weight").ty, GgmlType::Q6_K);
        assert_eq!(by_name("blk.0.attn_v.weight").ty, GgmlType::Q6_K);
        assert_eq!(by_name("blk.1.attn_v.weight").ty, GgmlType::Q4_K);
        assert_eq!(by_name("blk.3.attn_v.weight").ty, GgmlType::Q6_K);
        // 640-wide rows: Q6_K → Q8_0, Q4_K → Q5_0.
        assert_eq!(
            by_name("blk.0.ffn_down.weight"),
            Choice {
                ty: GgmlType::Q8_0,
                fallback: true
            }
        );
        assert_eq!(by_name("blk.1.ffn_down.weight").ty, GgmlType::Q5_0);
    }

    #[test]
    fn legacy_types_put_the_output_in_q6_k_or_q8_0() {
        let ts = vec![
            desc("output.weight", &[576, 100]),
            desc("token_embd.weight", &[576, 100]),
        ];
        let c = plan(&shape(30), &ts, FileType::Q4_0);
        // 576 = 2.25 × 256: Q6_K does not fit, so Q8_0 (counted as a fallback).
        assert_eq!(c[0].ty, GgmlType::Q8_0);
        assert_eq!(c[1].ty, GgmlType::Q4_0);
        let c = plan(&shape(30), &ts, FileType::Q8_0);
        assert_eq!(c[0].ty, GgmlType::Q8_0);
        let c = plan(&shape(30), &ts, FileType::F16);
        assert_eq!((c[0].ty, c[1].ty), (GgmlType::F16, GgmlType::F16));
    }
}
