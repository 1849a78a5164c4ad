//! `sparetire quantize` through the real binary: byte-identical to llama-quantize's output for
//! every file type (the goldens in tests/golden/quantize hold llama-quantize's sha256s, made by
//! scripts/check_quantize_llamacpp.sh), and clear errors for bad input.
//!
//! The inputs are generated here, deterministically, so no large file is committed:
//! `cargo test --release -p sparetire --test quantize -- --ignored write_inputs` writes them to
//! `$SPARETIRE_QUANT_INPUTS` for the script.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use sparetire_formats::gguf::{GgufFile, GgufWriter, Value};
use sparetire_quant::GgmlType;

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

/// A deterministic stream of roughly normal numbers (xorshift; sum of four uniforms).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }

    fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.uniform()).sum::<f32>() - 2.0
    }
}

/// One generated test model.
struct Spec {
    name: &'static str,
    n_layer: usize,
    d: usize,
    ff: usize,
    n_head: usize,
    n_head_kv: usize,
    tied: bool,
    weight_type: GgmlType,
}

/// 8 layers with K-quant-friendly rows (every mix rule fires), F16 weights, separate output;
/// and 4 layers of 320-wide rows (fallbacks everywhere, like Gemma 3's 640), BF16, tied output,
/// 5 query heads per KV head.
const SPECS: [Spec; 2] = [
    Spec {
        name: "k-f16",
        n_layer: 8,
        d: 256,
        ff: 512,
        n_head: 4,
        n_head_kv: 2,
        tied: false,
        weight_type: GgmlType::F16,
    },
    Spec {
        name: "odd-bf16",
        n_layer: 4,
        d: 320,
        ff: 640,
        n_head: 5,
        n_head_kv: 1,
        tied: true,
        weight_type: GgmlType::BF16,
    },
];

fn encode(ty: GgmlType, v: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; ty.row_bytes(v.len()).unwrap()];
    sparetire_quant::quantize_row(ty, v, &mut out).unwrap();
    out
}

/// The GGUF image of `s`: llama metadata, tiny-llama.gguf's tokenizer, random weights.
fn model_bytes(s: &Spec) -> Vec<u8> {
    let tok = GgufFile::open(root().join("tests/data/tiny-llama.gguf")).unwrap();
    let n_vocab = tok.get_array("tokenizer.ggml.tokens").unwrap().len();
    let head_dim = s.d / s.n_head;
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("llama".into()))
        .add(
            "general.name",
            Value::String(format!("quantize test {}", s.name)),
        )
        .add("llama.block_count", Value::U32(s.n_layer as u32))
        .add("llama.context_length", Value::U32(256))
        .add("llama.embedding_length", Value::U32(s.d as u32))
        .add("llama.feed_forward_length", Value::U32(s.ff as u32))
        .add("llama.attention.head_count", Value::U32(s.n_head as u32))
        .add(
            "llama.attention.head_count_kv",
            Value::U32(s.n_head_kv as u32),
        )
        .add("llama.rope.freq_base", Value::F32(10000.0))
        .add("llama.rope.dimension_count", Value::U32(head_dim as u32))
        .add("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .add("llama.vocab_size", Value::U32(n_vocab as u32))
        .add(
            "general.file_type",
            Value::U32(if s.weight_type == GgmlType::F16 {
                1
            } else {
                32
            }),
        );
    for (k, v) in tok.metadata() {
        if k.starts_with("tokenizer.") {
            w.add(k, v.clone());
        }
    }
    w.add("general.quantization_version", Value::U32(2));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ s.d as u64);
    let mut weight = |w: &mut GgufWriter, name: &str, cols: usize, rows: usize| {
        let mut v: Vec<f32> = (0..cols * rows).map(|_| 0.05 * rng.normal()).collect();
        // A few outliers, as real weights have.
        for i in (0..v.len()).step_by(997) {
            v[i] *= 8.0;
        }
        w.tensor(
            name,
            s.weight_type,
            &[cols as u64, rows as u64],
            encode(s.weight_type, &v),
        );
    };
    let norm = |w: &mut GgufWriter, name: &str, n: usize| {
        let v: Vec<f32> = (0..n).map(|i| 1.0 + 0.01 * (i % 7) as f32).collect();
        w.tensor(name, GgmlType::F32, &[n as u64], encode(GgmlType::F32, &v));
    };
    let kv = s.n_head_kv * head_dim;
    weight(&mut w, "token_embd.weight", s.d, n_vocab);
    for l in 0..s.n_layer {
        norm(&mut w, &format!("blk.{l}.attn_norm.weight"), s.d);
        weight(&mut w, &format!("blk.{l}.attn_q.weight"), s.d, s.d);
        weight(&mut w, &format!("blk.{l}.attn_k.weight"), s.d, kv);
        weight(&mut w, &format!("blk.{l}.attn_v.weight"), s.d, kv);
        weight(&mut w, &format!("blk.{l}.attn_output.weight"), s.d, s.d);
        norm(&mut w, &format!("blk.{l}.ffn_norm.weight"), s.d);
        weight(&mut w, &format!("blk.{l}.ffn_gate.weight"), s.d, s.ff);
        weight(&mut w, &format!("blk.{l}.ffn_up.weight"), s.d, s.ff);
        weight(&mut w, &format!("blk.{l}.ffn_down.weight"), s.ff, s.d);
    }
    norm(&mut w, "output_norm.weight", s.d);
    if !s.tied {
        weight(&mut w, "output.weight", s.d, n_vocab);
    }
    w.to_bytes()
}

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    format!("{:x}", Sha256::digest(&bytes))
}

fn golden() -> Json {
    let p = root().join("tests/golden/quantize/llamacpp.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

/// Writes the inputs for scripts/check_quantize_llamacpp.sh.
#[test]
#[ignore = "run by scripts/check_quantize_llamacpp.sh"]
fn write_inputs() {
    let dir =
        PathBuf::from(std::env::var("SPARETIRE_QUANT_INPUTS").expect("set SPARETIRE_QUANT_INPUTS"));
    std::fs::create_dir_all(&dir).unwrap();
    for s in &SPECS {
        std::fs::write(dir.join(format!("{}.gguf", s.name)), model_bytes(s)).unwrap();
    }
}

#[test]
fn every_type_is_byte_identical_to_llama_quantize() {
    let g = golden();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for s in &SPECS {
        let input = dir.path().join(format!("{}.gguf", s.name));
        std::fs::write(&input, model_bytes(s)).unwrap();
        let want_in = g["inputs"][s.name]["sha256"].as_str().unwrap();
        assert_eq!(
            sha256(&input),
            want_in,
            "generated input {} changed: rerun the script",
            s.name
        );
        let outputs = g["outputs"][s.name].as_object().unwrap();
        for (ty, want) in outputs {
            let out = dir.path().join(format!("{}-{ty}.gguf", s.name));
            let o = sparetire(&[
                "quantize",
                input.to_str().unwrap(),
                out.to_str().unwrap(),
                "--type",
                ty,
                "-t",
                "2",
            ]);
            assert!(
                o.status.success(),
                "quantize {} {ty}: {}",
                s.name,
                stderr(&o)
            );
            let f = GgufFile::open(&out).unwrap();
            // Tensor types first: a clearer message than a hash when the policy differs.
            for (name, t) in want["tensor_types"].as_object().unwrap() {
                let got = f
                    .tensor(name)
                    .unwrap_or_else(|| panic!("{name} missing"))
                    .ty;
                assert_eq!(
                    got.name(),
                    t.as_str().unwrap(),
                    "{} {ty}: type of {name}",
                    s.name
                );
            }
            assert_eq!(
                sha256(&out),
                want["sha256"].as_str().unwrap(),
                "{} {ty}: bytes differ from llama-quantize's",
                s.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 2 * 14, "only {checked} outputs in the goldens");
}

#[test]
fn quantized_input_needs_allow_requantize() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.gguf");
    let tiny = root().join("tests/data/tiny-llama.gguf");
    let args = [
        "quantize",
        tiny.to_str().unwrap(),
        out.to_str().unwrap(),
        "--type",
        "Q4_0",
    ];
    let o = sparetire(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--allow-requantize"), "{}", stderr(&o));
    assert!(!out.exists(), "a refused run must not leave a file");
    let mut args = args.to_vec();
    args.push("--allow-requantize");
    let o = sparetire(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    // The result runs.
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

#[test]
fn bad_arguments_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.gguf");
    let out = out.to_str().unwrap();
    let tiny = root().join("tests/data/tiny-llama.gguf");
    let tiny = tiny.to_str().unwrap();
    // Unknown type: a usage error listing the valid ones.
    let o = sparetire(&["quantize", tiny, out, "--type", "Q9_K"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("Q4_K_M") && stderr(&o).contains("Q8_0"),
        "{}",
        stderr(&o)
    );
    // Missing input.
    let o = sparetire(&["quantize", "/nonexistent/in.gguf", out, "--type", "Q8_0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    // Not a GGUF.
    let not_gguf = dir.path().join("x.gguf");
    std::fs::write(&not_gguf, b"hello, world, not a model file at all").unwrap();
    let o = sparetire(&[
        "quantize",
        not_gguf.to_str().unwrap(),
        out,
        "--type",
        "Q8_0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a GGUF"), "{}", stderr(&o));
    // Output directory missing.
    let o = sparetire(&[
        "quantize",
        tiny,
        "/nonexistent/dir/q.gguf",
        "--type",
        "Q8_0",
        "--allow-requantize",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/dir"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn json_summary_and_progress() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.gguf");
    std::fs::write(&input, model_bytes(&SPECS[1])).unwrap();
    let out = dir.path().join("q.gguf");
    let o = sparetire(&[
        "quantize",
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        "--type",
        "Q4_K_M",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["type"], "Q4_K_M");
    assert_eq!(
        v["file_size"].as_u64().unwrap(),
        std::fs::metadata(&out).unwrap().len()
    );
    assert!(v["n_fallback"].as_u64().unwrap() > 0);
    let err = stderr(&o);
    assert!(err.contains("[  38/  38]"), "{err}");
    assert!(err.contains("BF16 -> Q5_0"), "{err}");
}

#[test]
fn thread_count_does_not_change_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.gguf");
    std::fs::write(&input, model_bytes(&SPECS[0])).unwrap();
    let mut hashes = Vec::new();
    for t in ["1", "3"] {
        let out = dir.path().join(format!("q{t}.gguf"));
        let o = sparetire(&[
            "quantize",
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            "--type",
            "Q4_K_M",
            "-t",
            t,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        hashes.push(sha256(&out));
    }
    assert_eq!(hashes[0], hashes[1]);
}
