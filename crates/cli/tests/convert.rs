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
        let mut st = model.new_state(256).unwrap();
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
