//! Hugging Face tensor names → GGUF names, and the Q/K row permutation llama.cpp's `llama`
//! architecture needs.

use super::config::Arch;

/// What happens to a checkpoint tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mapped {
    /// Written under this GGUF name; `permute_heads` is the head count whose rows are reordered
    /// from Hugging Face's rotate-half RoPE layout to llama.cpp's interleaved one.
    Tensor {
        /// The GGUF name.
        name: String,
        /// Heads to permute the rows of (`None`: rows stay as they are).
        permute_heads: Option<u32>,
    },
    /// Not part of the GGUF (RoPE caches, a tied output head).
    Skip,
}

/// Maps one Hugging Face tensor name; `None` for names this converter does not know.
pub fn map_name(hf: &str, arch: Arch, n_head: u32, n_head_kv: u32, tied: bool) -> Option<Mapped> {
    let plain = |name: &str| Mapped::Tensor {
        name: name.to_owned(),
        permute_heads: None,
    };
    match hf {
        "model.embed_tokens.weight" => return Some(plain("token_embd.weight")),
        "model.norm.weight" => return Some(plain("output_norm.weight")),
        "lm_head.weight" if tied => return Some(Mapped::Skip),
        "lm_head.weight" => return Some(plain("output.weight")),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: u32 = layer.parse().ok()?;
    if rest == "self_attn.rotary_emb.inv_freq" {
        return Some(Mapped::Skip);
    }
    let (module, suffix) = rest.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let gguf = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" if arch == Arch::Qwen3 => "attn_q_norm",
        "self_attn.k_norm" if arch == Arch::Qwen3 => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    let permute_heads = match (arch, gguf) {
        (Arch::Llama, "attn_q") => Some(n_head),
        (Arch::Llama, "attn_k") => Some(n_head_kv),
        _ => None,
    };
    Some(Mapped::Tensor {
        name: format!("blk.{layer}.{gguf}.{suffix}"),
        permute_heads,
    })
}

/// Reorders the rows of a `[rows, row_bytes]` projection whose rows are `n_head` heads, each
/// stored as two halves (rotate-half RoPE), into pairs (interleaved RoPE): within a head, row
/// `i * half + j` moves to `2 * j + i`. A bias is the case `row_bytes` = one element.
pub fn permute_rows(data: &[u8], rows: usize, row_bytes: usize, n_head: usize) -> Option<Vec<u8>> {
    if n_head == 0 || !rows.is_multiple_of(n_head) || data.len() != rows * row_bytes {
        return None;
    }
    let head = rows / n_head;
    if !head.is_multiple_of(2) {
        return None;
    }
    let half = head / 2;
    let mut out = vec![0u8; data.len()];
    for h in 0..n_head {
        for i in 0..2 {
            for j in 0..half {
                let src = h * head + i * half + j;
                let dst = h * head + 2 * j + i;
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_like_llama_cpp() {
        let m = |n: &str| map_name(n, Arch::Llama, 4, 2, false);
        assert_eq!(
            m("model.layers.3.self_attn.k_proj.weight"),
            Some(Mapped::Tensor {
                name: "blk.3.attn_k.weight".into(),
                permute_heads: Some(2)
            })
        );
        assert_eq!(
            map_name(
                "model.layers.0.self_attn.q_norm.weight",
                Arch::Qwen3,
                4,
                2,
                true
            ),
            Some(Mapped::Tensor {
                name: "blk.0.attn_q_norm.weight".into(),
                permute_heads: None
            })
        );
        assert_eq!(
            map_name("lm_head.weight", Arch::Qwen3, 4, 2, true),
            Some(Mapped::Skip)
        );
        assert_eq!(m("model.layers.0.mlp.experts.0.w1.weight"), None);
    }

    #[test]
    fn permute_interleaves_the_halves_of_each_head() {
        // 2 heads of 4 rows, one byte per row: [a0 a1 b0 b1] → [a0 b0 a1 b1].
        let rows: Vec<u8> = vec![0, 1, 2, 3, 10, 11, 12, 13];
        assert_eq!(
            permute_rows(&rows, 8, 1, 2).unwrap(),
            vec![0, 2, 1, 3, 10, 12, 11, 13]
        );
        assert_eq!(permute_rows(&rows, 8, 1, 3), None);
    }
}
