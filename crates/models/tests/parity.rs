//! Parity with llama.cpp: teacher-forced logits and greedy continuations
//! against the goldens in tests/golden/models (written by
//! scripts/gen_model_goldens.py from the pinned llama.cpp).

mod common;

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use sha2::Digest;
use sparetire_formats::gguf::GgufFile;
use sparetire_models::{load, KvType, KvTypes, Logits};
use sparetire_quant::ThreadPool;

#[derive(Deserialize)]
struct Golden {
    file_sha256: String,
    /// The context the goldens ran in (their KV cache's size).
    n_ctx: usize,
    #[serde(default)]
    settings: Settings,
    cases: Vec<Case>,
}

/// The llama.cpp context settings the goldens record (only what changes our side).
#[derive(Deserialize, Default)]
struct Settings {
    /// KV cache types (`-ctk`/`-ctv`); absent in goldens of the default f16 cache.
    cache_type_k: Option<String>,
    cache_type_v: Option<String>,
}

impl Settings {
    fn kv_types(&self) -> KvTypes {
        let t = |s: &Option<String>| s.as_deref().map_or(KvType::F16, |s| s.parse().unwrap());
        KvTypes {
            k: t(&self.cache_type_k),
            v: t(&self.cache_type_v),
        }
    }
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    prompt_tokens: Vec<u32>,
    greedy_tokens: Vec<u32>,
    greedy_margins: Vec<f32>,
    teacher_top_ids: Vec<Vec<u32>>,
    teacher_top_logits: Vec<Vec<f32>>,
}

/// A greedy step where llama.cpp's own top-2 logits differ by less than this
/// is a near-tie: a different choice there is not a parity failure.
const NEAR_TIE: f32 = 0.25;

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

struct Report {
    positions: usize,
    argmax_agree: usize,
    top10_abs_diff_sum: f64,
    top10_max_abs_diff: f64,
    top10_count: usize,
    greedy_identical: usize,
    greedy_near_tie: usize,
    greedy_failed: Vec<String>,
}

fn check_model(model_path: &Path, golden: &str) -> Report {
    let golden: Golden = serde_json::from_str(&std::fs::read_to_string(golden).unwrap()).unwrap();
    let bytes = std::fs::read(model_path).unwrap();
    let digest: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest,
        golden.file_sha256,
        "{} is not the file the goldens were made from (regenerate them or fetch the right model)",
        model_path.display()
    );
    let file = Arc::new(GgufFile::open(model_path).unwrap());
    let model = load(file).unwrap();
    let pool = ThreadPool::new(2);
    let kv = golden.settings.kv_types();
    let n_vocab = model.hparams().n_vocab;
    let mut r = Report {
        positions: 0,
        argmax_agree: 0,
        top10_abs_diff_sum: 0.0,
        top10_max_abs_diff: 0.0,
        top10_count: 0,
        greedy_identical: 0,
        greedy_near_tie: 0,
        greedy_failed: vec![],
    };
    for case in &golden.cases {
        // Teacher forcing: the whole sequence in one batch, logits everywhere.
        let all: Vec<u32> = case
            .prompt_tokens
            .iter()
            .chain(&case.greedy_tokens)
            .copied()
            .collect();
        let mut st = model.new_state(golden.n_ctx, kv).unwrap();
        model.forward(&pool, &mut st, &all, Logits::All).unwrap();
        let logits = st.logits();
        assert_eq!(case.teacher_top_ids.len(), all.len());
        for (i, (ids, vals)) in case
            .teacher_top_ids
            .iter()
            .zip(&case.teacher_top_logits)
            .enumerate()
        {
            let row = &logits[i * n_vocab..(i + 1) * n_vocab];
            r.positions += 1;
            if argmax(row) == ids[0] {
                r.argmax_agree += 1;
            }
            for (&id, &v) in ids.iter().zip(vals) {
                let d = (row[id as usize] - v).abs() as f64;
                r.top10_abs_diff_sum += d;
                r.top10_max_abs_diff = r.top10_max_abs_diff.max(d);
                r.top10_count += 1;
            }
        }
        // Greedy: prompt as one batch, then one token at a time.
        let mut st = model.new_state(golden.n_ctx, kv).unwrap();
        model
            .forward(&pool, &mut st, &case.prompt_tokens, Logits::Last)
            .unwrap();
        let mut outcome = None;
        for (step, &want) in case.greedy_tokens.iter().enumerate() {
            let got = argmax(st.logits());
            if got != want {
                outcome = Some((step, got, want));
                break;
            }
            model.forward(&pool, &mut st, &[got], Logits::Last).unwrap();
        }
        match outcome {
            None => r.greedy_identical += 1,
            Some((step, got, want)) => {
                let margin = case.greedy_margins[step];
                if margin < NEAR_TIE {
                    r.greedy_near_tie += 1;
                    eprintln!("{:?}: diverged at step {step} (got {got}, llama.cpp {want}) at a near-tie (margin {margin:.4})", case.prompt);
                } else {
                    r.greedy_failed.push(format!(
                        "{:?}: diverged at step {step}: got {got}, llama.cpp {want}, margin {margin:.4}",
                        case.prompt
                    ));
                }
            }
        }
    }
    eprintln!(
        "{}: teacher-forced argmax agreement {}/{} = {:.2}%, mean |Δ top-10 logit| = {:.4} (max {:.2e}); greedy: {} identical, {} diverged at near-ties, {} failed",
        model_path.display(),
        r.argmax_agree,
        r.positions,
        100.0 * r.argmax_agree as f64 / r.positions as f64,
        r.top10_abs_diff_sum / r.top10_count as f64,
        r.top10_max_abs_diff,
        r.greedy_identical,
        r.greedy_near_tie,
        r.greedy_failed.len()
    );
    r
}

fn assert_parity(r: &Report, max_mean_abs: f64) {
    assert!(
        r.greedy_failed.is_empty(),
        "greedy parity failures: {:#?}",
        r.greedy_failed
    );
    let agree = r.argmax_agree as f64 / r.positions as f64;
    assert!(
        agree >= 0.99,
        "teacher-forced argmax agreement {agree:.4} < 0.99"
    );
    let mad = r.top10_abs_diff_sum / r.top10_count as f64;
    assert!(
        mad <= max_mean_abs,
        "mean |Δ top-10 logit| {mad:.4} > {max_mean_abs}"
    );
    // On x86 with AVX2+FMA every op (each matmul path, RMSNorm, RoPE, both
    // flash-attention paths, SwiGLU/GeGLU) reproduces the llama.cpp build the
    // goldens come from bit for bit, so logits equal the goldens up to their
    // 5-decimal rounding. A larger difference means some op lost exactness
    // (find it with `diag_dump` / tests/replay.rs), or the goldens came from a
    // differently compiled llama.cpp (e.g. with AVX-512). Other CPUs run other
    // kernels, and only the tolerances above apply to them.
    #[cfg(target_arch = "x86_64")]
    let exact_kernels = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    let exact_kernels = false;
    assert!(
        !exact_kernels || (r.top10_max_abs_diff < 1e-4 && r.greedy_near_tie == 0),
        "no longer bit-exact with llama.cpp: max |Δ top-10 logit| {:.2e}, {} greedy near-tie divergences",
        r.top10_max_abs_diff,
        r.greedy_near_tie
    );
}

/// A random-weight model in tests/data and its goldens.
fn tiny(name: &str) -> Report {
    check_model(
        &common::repo_root().join(format!("tests/data/{name}.gguf")),
        &golden_path(name),
    )
}

fn golden_path(name: &str) -> String {
    common::repo_root()
        .join(format!("tests/golden/models/{name}.json"))
        .display()
        .to_string()
}

#[test]
fn tiny_llama_matches_llama_cpp() {
    assert_parity(&tiny("tiny-llama"), 0.01);
}

#[test]
fn smollm2_matches_llama_cpp() {
    let r = check_model(&common::store_model("smollm2"), &golden_path("smollm2"));
    assert_parity(&r, 0.05);
}

/// A q8_0 KV cache: its rows rotated (Walsh–Hadamard over each 64-wide head), quantized, and
/// attended to through the single-row path, as llama.cpp does.
#[test]
fn smollm2_with_q8_0_kv_cache_matches_llama_cpp() {
    let r = check_model(
        &common::store_model("smollm2"),
        &golden_path("smollm2-q8_0"),
    );
    assert_parity(&r, 0.05);
}

/// q8_0 keys and q4_0 values on 32-wide heads (too narrow for llama.cpp's rotation).
#[test]
fn tiny_qwen3_with_quantized_kv_cache_matches_llama_cpp() {
    let r = check_model(
        &common::repo_root().join("tests/data/tiny-qwen3.gguf"),
        &golden_path("tiny-qwen3-q8_0-q4_0"),
    );
    assert_parity(&r, 0.01);
}

/// Latent attention with a 64-wide latent row, with the default cache and with a q8_0 one
/// (llama.cpp quantizes the latent rows and reads the values out of them as q8_0 too).
#[test]
fn tiny_deepseek2_latent64_matches_llama_cpp_with_f16_and_q8_0_caches() {
    assert_parity(&tiny("tiny-deepseek2-latent64"), 0.01);
    let r = check_model(
        &common::repo_root().join("tests/data/tiny-deepseek2-latent64.gguf"),
        &golden_path("tiny-deepseek2-latent64-q8_0"),
    );
    assert_parity(&r, 0.01);
}

/// A 704-token prompt, then greedy steps: each step's single query sees 705+ cells, so
/// llama.cpp splits the keys among its threads and merges the parts (its split-KV path, 2
/// threads like ours here), and the prompt's batch takes the tiled path over 11 key tiles.
#[test]
fn smollm2_long_prompt_matches_llama_cpp() {
    let r = check_model(
        &common::store_model("smollm2"),
        &golden_path("smollm2-long"),
    );
    assert_parity(&r, 0.05);
}

/// The same on Gemma 3, whose sliding-window layers mask keys older than 512 positions.
#[test]
fn gemma3_long_prompt_matches_llama_cpp() {
    let r = check_model(
        &common::store_model("gemma3-270m"),
        &golden_path("gemma3-270m-long"),
    );
    assert_parity(&r, 0.05);
}

#[test]
fn tiny_qwen2_matches_llama_cpp() {
    assert_parity(&tiny("tiny-qwen2"), 0.01);
}

#[test]
fn tiny_qwen3_matches_llama_cpp() {
    assert_parity(&tiny("tiny-qwen3"), 0.01);
}

#[test]
fn tiny_qwen3moe_matches_llama_cpp() {
    assert_parity(&tiny("tiny-qwen3moe"), 0.01);
}

#[test]
fn tiny_qwen2moe_matches_llama_cpp() {
    assert_parity(&tiny("tiny-qwen2moe"), 0.01);
}

#[test]
fn tiny_deepseek2_matches_llama_cpp() {
    assert_parity(&tiny("tiny-deepseek2"), 0.01);
}

#[test]
fn tiny_deepseek3_matches_llama_cpp() {
    assert_parity(&tiny("tiny-deepseek3"), 0.01);
}

/// Gemma 3 with a q8_0 KV cache: keys rotated over whole 256-wide heads, values in 64s.
#[test]
fn gemma3_with_q8_0_kv_cache_matches_llama_cpp() {
    let r = check_model(
        &common::store_model("gemma3-270m"),
        &golden_path("gemma3-270m-q8_0"),
    );
    assert_parity(&r, 0.05);
}

#[test]
// Every op is bit-exact on Gemma 3 (see tests/replay.rs), including its Q4_K
// matmuls (llama.cpp's repacked q4_K_8x8 GEMV/GEMM) and Q6_K batches of 8+
// tokens (its tiled K-quant matmul).
fn gemma3_matches_llama_cpp() {
    let r = check_model(
        &common::store_model("gemma3-270m"),
        &golden_path("gemma3-270m"),
    );
    assert_parity(&r, 0.05);
}

#[test]
#[ignore] // why: a diagnostic, run by hand
fn diag_per_position() {
    let root = common::repo_root();
    let golden: Golden = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/golden/models/smollm2.json")).unwrap(),
    )
    .unwrap();
    let file = Arc::new(GgufFile::open(common::store_model("smollm2")).unwrap());
    let model = load(file).unwrap();
    let pool = ThreadPool::new(2);
    let nv = model.hparams().n_vocab;
    let case = &golden.cases[0];
    let all: Vec<u32> = case
        .prompt_tokens
        .iter()
        .chain(&case.greedy_tokens)
        .copied()
        .collect();
    let mut st = model
        .new_state(512, sparetire_models::KvTypes::F16)
        .unwrap();
    model.forward(&pool, &mut st, &all, Logits::All).unwrap();
    for i in 0..all.len() {
        let row = &st.logits()[i * nv..(i + 1) * nv];
        let d: f32 = case.teacher_top_ids[i]
            .iter()
            .zip(&case.teacher_top_logits[i])
            .map(|(&id, &v)| (row[id as usize] - v).abs())
            .sum::<f32>()
            / 10.0;
        eprintln!(
            "pos {i}: mean abs diff {d:.4}  ours top1 {} theirs {}",
            argmax(row),
            case.teacher_top_ids[i][0]
        );
    }
}

#[test]
#[ignore] // why: a diagnostic, run by hand
fn diag_incremental() {
    let root = common::repo_root();
    let golden: Golden = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/golden/models/smollm2.json")).unwrap(),
    )
    .unwrap();
    let file = Arc::new(GgufFile::open(common::store_model("smollm2")).unwrap());
    let model = load(file).unwrap();
    let pool = ThreadPool::new(2);
    let case = &golden.cases[0];
    let all: Vec<u32> = case
        .prompt_tokens
        .iter()
        .chain(&case.greedy_tokens)
        .copied()
        .collect();
    let mut st = model
        .new_state(512, sparetire_models::KvTypes::F16)
        .unwrap();
    for (i, &t) in all[..10].iter().enumerate() {
        model.forward(&pool, &mut st, &[t], Logits::Last).unwrap();
        let row = st.logits();
        let ids = &case.teacher_top_ids[i];
        eprintln!(
            "inc {i}: {:?}",
            ids[..2]
                .iter()
                .map(|&id| (id, row[id as usize]))
                .collect::<Vec<_>>()
        );
    }
    let mut st = model
        .new_state(512, sparetire_models::KvTypes::F16)
        .unwrap();
    model
        .forward(&pool, &mut st, &all[..8], Logits::All)
        .unwrap();
    for i in 0..8 {
        let row = &st.logits()[i * model.hparams().n_vocab..];
        let ids = &case.teacher_top_ids[i];
        eprintln!(
            "b8 {i}: {:?}",
            ids[..3]
                .iter()
                .map(|&id| (id, row[id as usize]))
                .collect::<Vec<_>>()
        );
    }
}

/// Writes our intermediate activations for the first case of each model's
/// goldens (prompt + greedy tokens), to `$TMPDIR/sparetire-dump/{model}/{mode}/`
/// as `{step}_{name}-{layer}.bin` (raw f32), for a layer-by-layer comparison
/// with llama.cpp's `cb_eval` dumps. Step 0 is a batch of the first `n_batch`
/// tokens, the next `n_decode` steps one token each:
/// - `inc`: the first 4 tokens one at a time (llama.cpp's f16 attention path);
/// - `batch`: every token in one batch (its tiled f32 path when 64 or more);
/// - `prompt` (Gemma 3): the prompt as one batch, then 3 decode steps.
#[test]
#[ignore] // why: a diagnostic, run by hand
fn diag_dump() {
    let root = common::repo_root();
    let all = usize::MAX;
    let tiny = root.join("tests/data/tiny-llama.gguf");
    dump_activations("tiny-llama", &tiny, &[("inc", 1, 3), ("batch", all, 0)]);
    let smollm2 = common::store_model("smollm2");
    dump_activations("smollm2", &smollm2, &[("inc", 1, 3), ("batch", all, 0)]);
    let gemma3 = common::store_model("gemma3-270m");
    let n_prompt = golden_cases("gemma3-270m")[0].prompt_tokens.len();
    let modes = [("prompt", n_prompt, 3), ("batch", all, 0)];
    dump_activations("gemma3-270m", &gemma3, &modes);
}

fn golden_cases(name: &str) -> Vec<Case> {
    let path = common::repo_root().join(format!("tests/golden/models/{name}.json"));
    let golden: Golden = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    golden.cases
}

/// `modes`: `(directory, n_batch, n_decode)`, see [`diag_dump`].
fn dump_activations(name: &str, model_path: &Path, modes: &[(&str, usize, usize)]) {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let case = &golden_cases(name)[0];
    let all: Vec<u32> = case
        .prompt_tokens
        .iter()
        .chain(&case.greedy_tokens)
        .copied()
        .collect();
    let model = load(Arc::new(GgufFile::open(model_path).unwrap())).unwrap();
    let pool = ThreadPool::new(2);
    let root = std::env::temp_dir().join("sparetire-dump").join(name);
    for &(mode, n_batch, n_decode) in modes {
        let dir = root.join(mode);
        std::fs::create_dir_all(&dir).unwrap();
        let step = Arc::new(AtomicUsize::new(0));
        let mut st = model
            .new_state(512, sparetire_models::KvTypes::F16)
            .unwrap();
        let s2 = step.clone();
        st.set_tap(Some(Box::new(move |name, layer, x| {
            let l = layer.map_or(String::new(), |l| format!("-{l}"));
            let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(
                dir.join(format!("{}_{name}{l}.bin", s2.load(Relaxed))),
                bytes,
            )
            .unwrap();
        })));
        let n_batch = n_batch.min(all.len());
        model
            .forward(&pool, &mut st, &all[..n_batch], Logits::All)
            .unwrap();
        for (i, &t) in all[n_batch..].iter().take(n_decode).enumerate() {
            step.store(i + 1, Relaxed);
            model.forward(&pool, &mut st, &[t], Logits::Last).unwrap();
        }
    }
    eprintln!("{name}: {} tokens, dumped to {}", all.len(), root.display());
}
