//! `sparetire convert` on the tiny Hugging Face checkpoints in tests/data/hf (llama with two
//! shards, qwen2 with biases, qwen3 with Q/K norms and a tied output), against
//! tests/golden/convert: the same weights written to an F32 GGUF by gguf-py the way llama.cpp's
//! converter does (each tensor's sha256) and llama.cpp's tokens and logits for that file.
//! Regenerate with scripts/gen_hf_checkpoints.py.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use sparetire_formats::gguf::GgufFile;
use sparetire_models::{load, Logits};
use sparetire_quant::{GgmlType, ThreadPool};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sparetire(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparetire"))
        .args(args)
        .output()
        .expect("run sparetire")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[derive(Deserialize)]
struct Golden {
    tensor_sha256: std::collections::BTreeMap<String, String>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    prompt_tokens: Vec<u32>,
    greedy_tokens: Vec<u32>,
    teacher_top_ids: Vec<Vec<u32>>,
    teacher_top_logits: Vec<Vec<f32>>,
}

fn golden(name: &str) -> Golden {
    let p = root().join(format!("tests/golden/convert/{name}.json"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn convert(name: &str, out: &std::path::Path, extra: &[&str]) {
    let dir = root().join("tests/data/hf").join(name);
    let mut args = vec![
        "convert",
        dir.to_str().unwrap(),
        out.to_str().unwrap(),
        "-t",
        "2",
    ];
    args.extend_from_slice(extra);
    let o = sparetire(&args);
    assert!(o.status.success(), "convert {name}: {}", stderr(&o));
}

fn check(name: &str) {
    let g = golden(name);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(format!("{name}.gguf"));
    convert(name, &out, &["--type", "F32"]);
    let f = GgufFile::open(&out).unwrap();

    // The tensors: the same names, types and bytes as the reference converter's.
    let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names.len(),
        g.tensor_sha256.len(),
        "{name}: tensors {names:?}"
    );
    for (t, want) in &g.tensor_sha256 {
        let (info, data) = f.tensor_data_by_name(t).unwrap();
        assert_eq!(info.ty, GgmlType::F32, "{name} {t}");
        assert_eq!(
            &format!("{:x}", Sha256::digest(data)),
            want,
            "{name}: {t} differs"
        );
    }

    // The tokenizer: the vocabulary it came from (tiny-llama.gguf's), token for token.
    let src = GgufFile::open(root().join("tests/data/tiny-llama.gguf")).unwrap();
    for key in [
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.chat_template",
    ] {
        assert_eq!(f.get(key), src.get(key), "{name}: {key}");
    }
    for case in &g.cases {
        let o = sparetire(&[
            "tokenize",
            "-m",
            out.to_str().unwrap(),
            "--json",
            &case.prompt,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let ids: Vec<u32> = serde_json::from_value(v["tokens"].clone()).unwrap();
        assert_eq!(
            ids, case.prompt_tokens,
            "{name}: tokens of {:?}",
            case.prompt
        );
    }

    // The logits: llama.cpp's on the reference file, position by position.
    let model = load(Arc::new(f)).unwrap();
    let pool = ThreadPool::new(2);
    let n_vocab = model.hparams().n_vocab;
    let mut max_diff = 0f32;
    for case in &g.cases {
        let all: Vec<u32> = case
            .prompt_tokens
            .iter()
            .chain(&case.greedy_tokens)
            .copied()
            .collect();
        let mut st = model
            .new_state(256, sparetire_models::KvTypes::F16)
            .unwrap();
        model.forward(&pool, &mut st, &all, Logits::All).unwrap();
        let logits = st.logits();
        for (i, (ids, vals)) in case
            .teacher_top_ids
            .iter()
            .zip(&case.teacher_top_logits)
            .enumerate()
        {
            let row = &logits[i * n_vocab..(i + 1) * n_vocab];
            for (&id, &v) in ids.iter().zip(vals) {
                max_diff = max_diff.max((row[id as usize] - v).abs());
            }
        }
    }
    eprintln!("{name}: max |logit - llama.cpp's| over the top 10 = {max_diff}");
    assert!(
        max_diff < 2e-3,
        "{name}: logits differ from llama.cpp's by {max_diff}"
    );
}

#[test]
fn llama_two_shards_permuted_q_k() {
    check("llama");
}

#[test]
fn qwen2_with_biases() {
    check("qwen2");
}

#[test]
fn qwen3_q_k_norms_tied_output() {
    check("qwen3");
}

#[test]
fn default_and_quantized_types_run() {
    let dir = tempfile::tempdir().unwrap();
    // F16 checkpoint → F16 file by default; or straight to a quantization.
    for (extra, ty) in [
        (&[][..], GgmlType::F16),
        (&["--type", "Q8_0"][..], GgmlType::Q8_0),
    ] {
        let out = dir.path().join("m.gguf");
        convert("qwen3", &out, extra);
        let f = GgufFile::open(&out).unwrap();
        assert_eq!(f.tensor("blk.0.ffn_up.weight").unwrap().ty, ty);
        assert_eq!(
            f.tensor("blk.0.attn_norm.weight").unwrap().ty,
            GgmlType::F32
        );
        let o = sparetire(&[
            "run",
            "-m",
            out.to_str().unwrap(),
            "--raw",
            "-n",
            "3",
            "--temp",
            "0",
            "hi",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
}

#[test]
fn bad_checkpoints_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let out = out.to_str().unwrap();
    let o = sparetire(&["convert", "/nonexistent/ckpt", out]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));
    // A checkpoint of another architecture names what is supported.
    let ck = dir.path().join("gpt2");
    std::fs::create_dir(&ck).unwrap();
    std::fs::write(
        ck.join("config.json"),
        r#"{"architectures": ["GPT2LMHeadModel"]}"#,
    )
    .unwrap();
    std::fs::write(ck.join("model.safetensors"), b"").unwrap();
    let o = sparetire(&["convert", ck.to_str().unwrap(), out, "--type", "F16"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Qwen3ForCausalLM"), "{}", stderr(&o));
    // Missing tokenizer.json.
    let src = root().join("tests/data/hf/qwen3");
    let ck = dir.path().join("qwen3");
    std::fs::create_dir(&ck).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), ck.join(f)).unwrap();
    }
    let o = sparetire(&["convert", ck.to_str().unwrap(), out]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("tokenizer.json"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    assert!(!std::path::Path::new(out).exists());
}

/// The store's copy of a built-in model (`scripts/test.sh` pulls them).
fn store_model(name: &str) -> PathBuf {
    let home = std::env::var_os("SPARETIRE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                })
                .join("sparetire")
        });
    let p = home.join("models").join(format!("{name}.gguf"));
    assert!(
        p.exists(),
        "{} is missing: run `sparetire pull {name}`",
        p.display()
    );
    p
}

/// A safetensors file of F16 tensors (name, shape outermost first, values).
fn write_safetensors(path: &std::path::Path, tensors: &[(&str, Vec<u64>, Vec<f32>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        for v in values {
            data.extend_from_slice(&half_bits(*v).to_le_bytes());
        }
        header.insert(
            (*name).to_owned(),
            serde_json::json!({"dtype": "F16", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap();
}

fn half_bits(v: f32) -> u16 {
    let mut b = [0u8; 2];
    sparetire_quant::quantize_row(GgmlType::F16, &[v], &mut b).unwrap();
    u16::from_le_bytes(b)
}

/// SmolLM2's whole vocabulary (49152 tokens, 48900 merges, 17 special tokens) written as
/// Hugging Face tokenizer files comes back as SmolLM2's own GGUF tokenizer, key for key.
#[test]
fn smollm2_tokenizer_files_convert_to_its_gguf_tokenizer() {
    let src = GgufFile::open(store_model("smollm2")).unwrap();
    let tokens = src.get_str_array("tokenizer.ggml.tokens").unwrap();
    let types = src.get_i64_array("tokenizer.ggml.token_type").unwrap();
    let merges = src.get_str_array("tokenizer.ggml.merges").unwrap();
    let id = |k: &str| src.get_u64(k).unwrap() as usize;
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (i, (t, ty)) in tokens.iter().zip(&types).enumerate() {
        vocab.insert((*t).to_owned(), i.into());
        if *ty == 3 {
            added.push(
                serde_json::json!({"id": i, "content": t, "special": true, "normalized": false}),
            );
        }
    }
    let pairs: Vec<Vec<&str>> = merges.iter().map(|m| m.splitn(2, ' ').collect()).collect();
    let tokenizer = serde_json::json!({
        "added_tokens": added,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "model": {"type": "BPE", "vocab": vocab, "merges": pairs},
    });
    let tok_cfg = serde_json::json!({
        "bos_token": tokens[id("tokenizer.ggml.bos_token_id")],
        "eos_token": tokens[id("tokenizer.ggml.eos_token_id")],
        "unk_token": tokens[id("tokenizer.ggml.unknown_token_id")],
        "pad_token": tokens[id("tokenizer.ggml.padding_token_id")],
        "chat_template": src.get_str("tokenizer.chat_template").unwrap(),
    });
    let (d, ff, n_vocab) = (32u64, 64u64, tokens.len() as u64);
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "hidden_size": d, "intermediate_size": ff,
        "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 1,
        "vocab_size": n_vocab, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
        "rope_theta": 100000.0, "tie_word_embeddings": true,
    });
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("smollm2-tiny");
    std::fs::create_dir(&ck).unwrap();
    std::fs::write(ck.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    std::fs::write(ck.join("tokenizer_config.json"), tok_cfg.to_string()).unwrap();
    std::fs::write(ck.join("config.json"), config.to_string()).unwrap();
    let w = |rows: u64, cols: u64| -> Vec<f32> {
        (0..rows * cols)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-4)
            .collect()
    };
    let p = "model.layers.0.";
    let names: Vec<(String, Vec<u64>, Vec<f32>)> = vec![
        (
            "model.embed_tokens.weight".into(),
            vec![n_vocab, d],
            w(n_vocab, d),
        ),
        ("model.norm.weight".into(), vec![d], vec![1.0; d as usize]),
        (
            format!("{p}input_layernorm.weight"),
            vec![d],
            vec![1.0; d as usize],
        ),
        (
            format!("{p}post_attention_layernorm.weight"),
            vec![d],
            vec![1.0; d as usize],
        ),
        (format!("{p}self_attn.q_proj.weight"), vec![d, d], w(d, d)),
        (
            format!("{p}self_attn.k_proj.weight"),
            vec![d / 2, d],
            w(d / 2, d),
        ),
        (
            format!("{p}self_attn.v_proj.weight"),
            vec![d / 2, d],
            w(d / 2, d),
        ),
        (format!("{p}self_attn.o_proj.weight"), vec![d, d], w(d, d)),
        (format!("{p}mlp.gate_proj.weight"), vec![ff, d], w(ff, d)),
        (format!("{p}mlp.up_proj.weight"), vec![ff, d], w(ff, d)),
        (format!("{p}mlp.down_proj.weight"), vec![d, ff], w(d, ff)),
    ];
    let refs: Vec<(&str, Vec<u64>, Vec<f32>)> = names
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.clone(), v.clone()))
        .collect();
    write_safetensors(&ck.join("model.safetensors"), &refs);

    let out = dir.path().join("out.gguf");
    let o = sparetire(&["convert", ck.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let f = GgufFile::open(&out).unwrap();
    for key in [
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.chat_template",
    ] {
        assert_eq!(f.get(key), src.get(key), "{key}");
    }
    // And it tokenizes the way SmolLM2 does (chat markup included).
    let text = "<|im_start|>user\nHow many r's in strawberry? 12345 ...<|im_end|>";
    let ids = |m: &str| {
        let o = sparetire(&["tokenize", "-m", m, "--json", text]);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(ids(out.to_str().unwrap()), ids("smollm2"));
}
