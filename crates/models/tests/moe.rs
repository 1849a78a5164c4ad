//! Mixture-of-experts and latent-attention properties that the parity
//! goldens do not show: weight traffic per decoded token, the latent KV
//! cache's size, and typed errors for inconsistent files.

mod common;

use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;
use sparetire_models::kv_cache::BLOCK_SIZE;
use sparetire_models::{load, ModelError};

fn open(name: &str) -> Arc<GgufFile> {
    let path = common::repo_root().join(format!("tests/data/{name}.gguf"));
    Arc::new(GgufFile::open(path).unwrap())
}

/// The bytes a decoded token reads, computed from the file alone: every
/// tensor but the embedding (one row of it; all of it when it is also the
/// output), and of each stacked expert tensor only `used / count`.
fn expected_bytes(f: &GgufFile, arch: &str) -> (usize, usize) {
    let n_expert = f.get_u64(&format!("{arch}.expert_count")).unwrap() as usize;
    let used = f.get_u64(&format!("{arch}.expert_used_count")).unwrap() as usize;
    let (mut dense, mut unused) = (0, 0);
    for t in f.tensors() {
        let b = t.n_bytes as usize;
        if t.name == "token_embd.weight" {
            dense += b / t.dims[1] as usize;
            if f.tensor("output.weight").is_none() {
                dense += b;
            }
            continue;
        }
        dense += b;
        if t.name.ends_with("_exps.weight") {
            unused += b / n_expert * (n_expert - used);
        }
    }
    (dense - unused, dense)
}

#[test]
fn a_decoded_token_reads_only_its_experts() {
    for (name, arch) in [
        ("tiny-qwen3moe", "qwen3moe"),
        ("tiny-qwen2moe", "qwen2moe"),
        ("tiny-deepseek2", "deepseek2"),
        ("tiny-deepseek3", "deepseek2"),
    ] {
        let f = open(name);
        let (per_token, dense) = expected_bytes(&f, arch);
        let w = load(f).unwrap().weight_bytes().unwrap();
        assert_eq!((w.per_token, w.dense), (per_token, dense), "{name}");
        assert!(w.per_token < w.dense, "{name}");
        eprintln!(
            "{name}: {} bytes read per decoded token, {} for the dense equivalent ({:.0}%)",
            w.per_token,
            w.dense,
            100.0 * w.per_token as f64 / w.dense as f64
        );
    }
    // A dense model reads everything.
    let w = load(open("tiny-qwen3")).unwrap().weight_bytes().unwrap();
    assert_eq!(w.per_token, w.dense);
}

#[test]
fn the_latent_kv_cache_holds_kv_lora_plus_rope_per_token_and_layer() {
    for name in ["tiny-deepseek2", "tiny-deepseek3"] {
        let f = open(name);
        let kv_lora = f.get_u64("deepseek2.attention.kv_lora_rank").unwrap() as usize;
        let rope = f.get_u64("deepseek2.rope.dimension_count").unwrap() as usize;
        let k_mla = f.get_u64("deepseek2.attention.key_length_mla").unwrap() as usize;
        let v_mla = f.get_u64("deepseek2.attention.value_length_mla").unwrap() as usize;
        let model = load(f).unwrap();
        let hp = model.hparams().clone();
        let st = model.new_state(64, sparetire_models::KvTypes::F16).unwrap();
        let per_token = st.kv.pool().block_bytes() / BLOCK_SIZE;
        // f16: two bytes per value, one latent row per layer, no separate values.
        assert_eq!(per_token, hp.n_layer * (kv_lora + rope) * 2, "{name}");
        // The expanded keys and values it replaces: every head's.
        let expanded = hp.n_layer * hp.n_head * (k_mla + v_mla) * 2;
        assert!(
            per_token * 4 < expanded,
            "{name}: {per_token} vs {expanded}"
        );
    }
}

#[test]
fn inconsistent_expert_counts_are_errors_not_panics() {
    // expert_used_count above expert_count.
    let f = open("tiny-qwen3moe");
    let mut bytes =
        std::fs::read(common::repo_root().join("tests/data/tiny-qwen3moe.gguf")).unwrap();
    let key = b"qwen3moe.expert_used_count";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("key in the file");
    // The value follows the key: u32 type tag (4 bytes), then the u32.
    let v = at + key.len() + 4;
    assert_eq!(
        u32::from_le_bytes(bytes[v..v + 4].try_into().unwrap()),
        f.get_u64("qwen3moe.expert_used_count").unwrap() as u32
    );
    bytes[v..v + 4].copy_from_slice(&9u32.to_le_bytes());
    let bad = Arc::new(GgufFile::from_vec(bytes).unwrap());
    match load(bad) {
        Err(ModelError::BadHParam { key, .. }) => assert!(key.ends_with("expert_used_count")),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("loaded a model that uses 9 of 8 experts"),
    }
}
