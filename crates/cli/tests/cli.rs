//! The real binary, run the way a user runs it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sparetire"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny() -> String {
    root()
        .join("tests/data/tiny-llama.gguf")
        .display()
        .to_string()
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run sparetire")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok_json(args: &[&str]) -> Value {
    let o = run(args);
    assert!(
        o.status.success(),
        "sparetire {args:?} failed: {}",
        stderr(&o)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout of {args:?} is not JSON ({e}): {}", stdout(&o)))
}

/// `sparetire chat ARGS` with `input` on stdin; it must succeed.
fn chat(args: &[&str], input: &[u8]) -> Output {
    let mut child = bin()
        .arg("chat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

fn no_panic(o: &Output) {
    let e = stderr(o);
    assert!(!e.contains("panicked"), "sparetire panicked: {e}");
}

#[derive(serde::Deserialize)]
struct GoldenCase {
    prompt: String,
    prompt_tokens: Vec<u32>,
    greedy_tokens: Vec<u32>,
    greedy_margins: Vec<f32>,
}

#[derive(serde::Deserialize)]
struct Golden {
    cases: Vec<GoldenCase>,
}

#[test]
fn greedy_run_matches_llama_cpp_on_the_tiny_model() {
    let g: Golden = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/golden/models/tiny-llama.json")).unwrap(),
    )
    .unwrap();
    for case in &g.cases {
        let v = ok_json(&[
            "run",
            "-m",
            &tiny(),
            "--raw",
            "--temp",
            "0",
            "-n",
            "64",
            "--json",
            "-p",
            &case.prompt,
        ]);
        let prompt: Vec<u32> = serde_json::from_value(v["prompt_tokens"].clone()).unwrap();
        let tokens: Vec<u32> = serde_json::from_value(v["tokens"].clone()).unwrap();
        assert_eq!(
            prompt, case.prompt_tokens,
            "prompt tokens of {:?}",
            case.prompt
        );
        // Identical, or first differing where llama.cpp's own top-2 margin was a near-tie (< 0.25).
        if let Some(step) = tokens
            .iter()
            .zip(&case.greedy_tokens)
            .position(|(a, b)| a != b)
        {
            assert!(
                case.greedy_margins[step] < 0.25,
                "greedy continuation of {:?} differs at step {step} (margin {})",
                case.prompt,
                case.greedy_margins[step]
            );
        } else {
            assert_eq!(tokens.len(), case.greedy_tokens.len(), "{:?}", case.prompt);
        }
        assert!(v["timings"]["predicted_per_second"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn default_model_answers_a_chat_prompt() {
    let o = run(&["run", "--temp", "0", "-n", "40", "Why is the sky blue?"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    // llama-completion -no-cnv --temp 0 on the same chat-templated prompt writes exactly this.
    let llama_cpp =
        "The answer to this question lies in the intricate dance of atmospheric molecules \
                     and the human perception of light.";
    assert!(text.starts_with(llama_cpp), "answer: {text}");
    assert!(stderr(&o).contains("tok/s"));
}

#[test]
fn same_seed_same_output_and_stop_strings() {
    let args = [
        "run",
        "-m",
        &tiny(),
        "--raw",
        "--temp",
        "0.9",
        "-n",
        "24",
        "--json",
        "-s",
        "42",
        "Once upon a time",
    ];
    let a = ok_json(&args);
    let b = ok_json(&args);
    assert_eq!(a["tokens"], b["tokens"]);
    let mut other = args.to_vec();
    other[10] = "43";
    let c = ok_json(&other);
    assert_ne!(
        a["tokens"], c["tokens"],
        "different seeds gave the same 24 tokens"
    );

    // Stop at a string that the greedy continuation contains: the text ends just before it.
    let full = ok_json(&[
        "run",
        "-m",
        &tiny(),
        "--raw",
        "--temp",
        "0",
        "-n",
        "40",
        "--json",
        "The quick brown fox",
    ]);
    let text = full["text"].as_str().unwrap();
    let stop: String = text.chars().skip(10).take(3).collect();
    let cut = ok_json(&[
        "run",
        "-m",
        &tiny(),
        "--raw",
        "--temp",
        "0",
        "-n",
        "40",
        "--json",
        "--stop",
        &stop,
        "The quick brown fox",
    ]);
    let expect = &text[..text.find(&stop).unwrap()];
    assert_eq!(cut["text"].as_str().unwrap(), expect);
    assert_eq!(cut["stop_reason"], "stop");
}

#[test]
fn tokenize_json_matches_the_tokenizer_golden() {
    let v = ok_json(&["tokenize", "--json", "Hello world! <|im_start|>user"]);
    let ids: Vec<u32> = serde_json::from_value(v["tokens"].clone()).unwrap();
    assert_eq!(ids[0], 19556); // "Hello"
    assert!(ids.contains(&1), "special token parsed: {ids:?}");
    let o = run(&["tokenize", "-m", "smollm2", "Hello"]);
    assert!(stdout(&o).contains("19556"));
}

#[test]
fn inspect_describes_the_file() {
    let v = ok_json(&["inspect", "-m", &tiny(), "--json"]);
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["hparams"]["block_count"], 3);
    assert_eq!(v["tokenizer"]["model"], "gpt2");
    assert!(v["n_tensors"].as_u64().unwrap() > 20);
    let o = run(&["inspect", "-m", &tiny()]);
    assert!(stdout(&o).contains("architecture:  llama"));
}

#[test]
fn chat_keeps_a_conversation() {
    let o = chat(
        &["--temp", "0", "-n", "24"],
        b"My name is Ada.\nWhat is my name?\n",
    );
    let out = stdout(&o);
    let answers: Vec<&str> = out.split('\n').filter(|l| !l.trim().is_empty()).collect();
    assert!(answers.len() >= 2, "expected two answers: {out}");
    assert!(
        out.contains("Ada"),
        "the second answer should remember the name: {out}"
    );
}

#[test]
fn list_and_unknown_models() {
    // An empty store: only the built-in names, not yet pulled.
    let home = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["list", "--json"])
        .env("SPARETIRE_HOME", home.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.as_array().unwrap().iter().all(|r| r["cached"] == false));
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["smollm2", "gemma3-270m"]);
    let o = run(&["run", "-m", "nosuchmodel", "hi"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("smollm2"), "{}", stderr(&o));
    let o = run(&["run", "-m", "/no/such/file.gguf", "hi"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["run"],
        vec!["run", "hi", "--top-p", "3"],
        vec!["run", "hi", "-n", "-5"],
        vec!["run", "hi", "-t", "0"],
        vec!["bogus"],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        no_panic(&o);
    }
}

#[test]
fn bad_model_files_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(root().join("tests/data/tiny-llama.gguf")).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.gguf", vec![], "truncated"),
        (
            "magic.gguf",
            b"GGUX\x03\0\0\0".iter().copied().chain([0u8; 32]).collect(),
            "not a GGUF file",
        ),
        ("half.gguf", good[..good.len() / 2].to_vec(), "past the end"),
        ("header.gguf", good[..300].to_vec(), "only 276 bytes left"),
    ];
    for (name, bytes, want) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        for cmd in [&["run", "-m"][..], &["inspect", "-m"][..]] {
            let mut args = cmd.to_vec();
            let ps = p.display().to_string();
            args.push(&ps);
            args.push("hello");
            if cmd[0] == "inspect" {
                args.pop();
            }
            let o = run(&args);
            assert_eq!(o.status.code(), Some(1), "{args:?}");
            no_panic(&o);
            assert!(
                stderr(&o).contains(want),
                "{name}: expected {want:?} in: {}",
                stderr(&o)
            );
        }
    }
}

#[test]
fn prompt_longer_than_context_is_an_error() {
    let o = run(&[
        "run",
        "-m",
        &tiny(),
        "--raw",
        "-c",
        "8",
        "one two three four five six seven eight nine ten",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("context holds 8"), "{}", stderr(&o));
}

/// `sparetire perplexity` against what llama-perplexity printed for the same
/// model, text and context (tests/golden/perplexity, scripts/gen_ppl_goldens.sh).
fn check_perplexity(model: &str, golden: &str) {
    let g: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/golden/perplexity").join(golden)).unwrap(),
    )
    .unwrap();
    let text = root().join("tests/data/ppl/text.txt").display().to_string();
    let n_ctx = g["n_ctx"].as_u64().unwrap().to_string();
    let v = ok_json(&[
        "perplexity",
        "-m",
        model,
        "-f",
        &text,
        "-c",
        &n_ctx,
        "--json",
    ]);
    assert_eq!(v["chunks"], g["n_chunks"]);
    assert_eq!(v["n_tokens"], g["n_tokens"]);
    assert_eq!(v["n_scored"], g["n_scored"]);
    let (ours, theirs) = (v["ppl"].as_f64().unwrap(), g["ppl"].as_f64().unwrap());
    let rel = (ours / theirs - 1.0).abs();
    eprintln!(
        "{model}: PPL {ours:.4} vs llama.cpp {theirs:.4} ({:.4}% apart)",
        rel * 100.0
    );
    assert!(rel < 0.01, "{model}: PPL {ours} vs llama.cpp {theirs}");
    let sd = v["ppl_sd"].as_f64().unwrap();
    assert!(
        (sd / g["ppl_sd"].as_f64().unwrap() - 1.0).abs() < 0.02,
        "± {sd}"
    );
}

#[test]
fn perplexity_matches_llama_cpp_smollm2() {
    check_perplexity("smollm2", "smollm2.json");
}

#[test]
fn perplexity_matches_llama_cpp_gemma3() {
    check_perplexity("gemma3-270m", "gemma3-270m.json");
}

/// Mean KL divergence of a `-ctk q8_0 -ctv q8_0` run of `model` from its f16-cache run (and the
/// two JSON results), over `tests/data/ppl/text.txt` at `-c 256`.
fn q8_0_kv_kl(model: &str) -> (f64, Value, Value) {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("f16.logits").display().to_string();
    let text = root().join("tests/data/ppl/text.txt").display().to_string();
    let args = [
        "perplexity",
        "-m",
        model,
        "-f",
        &text,
        "-c",
        "256",
        "--json",
    ];
    let f16 = ok_json(&[&args[..], &["--save-logits", base.as_str()]].concat());
    let q8 = ok_json(
        &[
            &args[..],
            &[
                "-ctk",
                "q8_0",
                "--cache-type-v",
                "q8_0",
                "--kl-base",
                base.as_str(),
            ],
        ]
        .concat(),
    );
    (q8["kl"]["mean"].as_f64().unwrap(), f16, q8)
}

/// `-ctk q8_0 -ctv q8_0` on a shipped model: llama-perplexity's result with the same cache (its
/// rows rotated and quantized the same way: the same digits), 34/64 of the f16 cache's bytes,
/// and a mean KL divergence from the f16 cache's logits below `max_kl`.
fn check_quantized_kv_cache(model: &str, golden: &str, max_kl: f64) {
    let g: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/golden/perplexity").join(golden)).unwrap(),
    )
    .unwrap();
    assert_eq!(g["n_ctx"], 256);
    assert_eq!(
        (g["cache_type_k"].as_str(), g["cache_type_v"].as_str()),
        (Some("q8_0"), Some("q8_0"))
    );
    let (kl, f16, q8) = q8_0_kv_kl(model);
    let (ours, theirs) = (q8["ppl"].as_f64().unwrap(), g["ppl"].as_f64().unwrap());
    eprintln!(
        "{model} q8_0 KV: PPL {ours:.4} vs llama.cpp {theirs:.4}; f16 {:.4}; {}",
        f16["ppl"], q8["kl"]
    );
    assert!(
        (ours / theirs - 1.0).abs() < 1e-4,
        "{model}: PPL {ours} vs llama.cpp {theirs}"
    );
    assert!(kl > 0.0 && kl < max_kl, "{model}: mean KL {kl}");
    assert_eq!(q8["kv_cache"]["type_k"], "q8_0");
    assert_eq!(f16["kv_cache"]["type_v"], "f16");
    let bytes = |v: &Value| v["kv_cache"]["bytes"].as_f64().unwrap();
    assert_eq!(
        bytes(&q8) / bytes(&f16),
        34.0 / 64.0,
        "q8_0 stores 34 bytes per 32 values"
    );
}

#[test]
fn quantized_kv_cache_matches_llama_cpp_smollm2() {
    check_quantized_kv_cache("smollm2", "smollm2-c256-q8_0.json", 0.01);
}

/// Gemma 3's shipped file is at its noise floor here: any perturbation of its activations, down
/// to one ulp of the attention output, moves the 8-bit activation rounding of every later
/// product and costs a KL of about 0.010 on this short text (docs/QUANTIZATION.md, "The KV
/// cache"; on a larger text at `-c 512` q8_0 measures 0.0084), so the KV cache's own cost is
/// measured on F32 weights below.
#[test]
fn quantized_kv_cache_matches_llama_cpp_gemma3() {
    check_quantized_kv_cache("gemma3-270m", "gemma3-270m-c256-q8_0.json", 0.02);
}

/// The q8_0 cache's own cost, on each model's F32 expansion (`quantize --type F32`): F32
/// weights take f32 activations, so nothing but the cache perturbs the logits.
#[test]
fn quantized_kv_cache_costs_under_0_01_kl_on_f32_weights() {
    let dir = tempfile::tempdir().unwrap();
    for model in ["smollm2", "gemma3-270m"] {
        let f32 = dir.path().join(format!("{model}-f32.gguf"));
        let f32 = f32.to_str().unwrap();
        let o = run(&[
            "quantize",
            model,
            f32,
            "--type",
            "F32",
            "--allow-requantize",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let (kl, _, q8) = q8_0_kv_kl(f32);
        eprintln!("{model} (F32 weights) q8_0 KV: {}", q8["kl"]);
        assert!(kl < 0.005, "{model}: mean KL {kl}");
        assert!(q8["kl"]["top1_agreement"].as_f64().unwrap() > 0.97);
        std::fs::remove_file(f32).unwrap();
    }
}

#[test]
fn a_kv_cache_type_the_heads_do_not_fit_is_a_clear_error() {
    // tiny-llama's heads are 16 wide: not a whole 32-element block.
    let o = run(&["run", "-m", &tiny(), "-ctk", "q8_0", "-n", "1", "hi"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("q8_0") && e.contains("16") && e.contains("32"),
        "{e}"
    );
    no_panic(&o);
    let o = run(&["run", "-m", &tiny(), "--cache-type-v", "q3_k", "hi"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("q8_0"),
        "the valid types are listed: {}",
        stderr(&o)
    );
}

#[test]
fn perplexity_kl_against_itself_is_zero() {
    let dir = tempfile::tempdir().unwrap();
    let text = root().join("tests/data/ppl/text.txt").display().to_string();
    let logits = dir.path().join("base.logits").display().to_string();
    let a = ok_json(&[
        "perplexity",
        "-m",
        &tiny(),
        "-f",
        &text,
        "-c",
        "64",
        "--chunks",
        "3",
        "--json",
        "--save-logits",
        &logits,
    ]);
    let b = ok_json(&[
        "perplexity",
        "-m",
        &tiny(),
        "-f",
        &text,
        "-c",
        "64",
        "--chunks",
        "3",
        "--json",
        "--kl-base",
        &logits,
    ]);
    assert_eq!(a["ppl"], b["ppl"]);
    let kl = &b["kl"];
    assert!(kl["mean"].as_f64().unwrap().abs() < 1e-4, "{kl}");
    assert_eq!(kl["top1_agreement"], 1.0);
    // A different model's logits: the file says so.
    let o = run(&[
        "perplexity",
        "-m",
        "smollm2",
        "-f",
        &text,
        "-c",
        "64",
        "--chunks",
        "3",
        "--kl-base",
        &logits,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("vocabulary"), "{}", stderr(&o));
}

#[test]
fn unknown_architecture_lists_the_supported_ones() {
    use sparetire_formats::gguf::{GgufWriter, Value};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mamba.gguf");
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("mamba".into()));
    std::fs::write(&p, w.to_bytes()).unwrap();
    let o = run(&["run", "-m", p.to_str().unwrap(), "hi"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("\"mamba\"") && e.contains("llama, qwen2, qwen3, gemma3"),
        "{e}"
    );
    no_panic(&o);
}

#[test]
fn gemma3_chat_uses_its_turn_format() {
    // The file has no chat template: the built-in Gemma one applies (BOS once, <start_of_turn> = 105).
    let v = ok_json(&[
        "run",
        "-m",
        "gemma3",
        "--temp",
        "0",
        "-n",
        "4",
        "--json",
        "--system",
        "Be brief.",
        "Hi",
    ]);
    let ids: Vec<u32> = serde_json::from_value(v["prompt_tokens"].clone()).unwrap();
    assert_eq!(&ids[..2], &[2, 105], "{ids:?}");
    assert_eq!(
        ids.iter().filter(|&&t| t == 2).count(),
        1,
        "one BOS: {ids:?}"
    );
    assert_eq!(
        &ids[ids.len() - 3..],
        &[105, 4368, 107],
        "ends with <start_of_turn>model\\n: {ids:?}"
    );
    let o = chat(
        &["-m", "gemma3", "--temp", "0", "-n", "8"],
        b"Hello there.\nAnd again.\n",
    );
    no_panic(&o);
}

#[test]
fn missing_python_says_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["run", "-m", "gemma3", "hi"])
        .env("SPARETIRE_HOME", home.path())
        .env("SPARETIRE_PYTHON", "/nonexistent/python3")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("install Python 3 and pip") && e.contains("-m"),
        "{e}"
    );
    // Nothing half-written is left in the store.
    let models = home.path().join("models");
    let left: Vec<_> = std::fs::read_dir(&models)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn plan_predicts_both_layouts_and_checks_its_input() {
    let v = ok_json(&["plan", "-m", &tiny(), "--nodes", "1,2", "--json"]);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["split"], "pp");
    assert_eq!(rows[3]["split"], "tp");
    // One node: no network; two tensor-parallel nodes each hold half the weights.
    assert_eq!(rows[0]["network_s"], 0.0);
    let w = |i: usize| rows[i]["weights_per_node"].as_f64().unwrap();
    assert_eq!(w(2) * 2.0, w(0));
    assert_eq!(w(3) * 2.0, w(0));
    // A described model: 671B parameters do not fit one 64 GiB node, they fit eight.
    let big = [
        "plan",
        "--params",
        "671e9",
        "--active-params",
        "37e9",
        "--layers",
        "61",
        "--width",
        "7168",
        "--vocab",
        "129280",
        "--ff",
        "18432",
        "--mem-gib",
        "64",
        "--nodes",
        "1,8",
        "--json",
    ];
    let v = ok_json(&big);
    assert_eq!(v[0]["fits"], false);
    assert_eq!(v[2]["fits"], true);
    // A mixture of experts reads only its chosen experts per token (one node, pp: memory time
    // = bytes read / (20 GB/s × 0.5)); latent attention (tiny-deepseek3) loads too.
    for name in ["tiny-qwen3moe", "tiny-deepseek3"] {
        let path = root().join(format!("tests/data/{name}.gguf"));
        let v = ok_json(&[
            "plan",
            "-m",
            path.to_str().unwrap(),
            "--nodes",
            "1",
            "--json",
        ]);
        let read = v[0]["compute_s"].as_f64().unwrap() * 20e9 * 0.5;
        let all = v[0]["weights_per_node"].as_f64().unwrap();
        assert!(
            read < 0.8 * all,
            "{name}: {read} bytes read per token of {all}"
        );
    }
    // And says where expert parallelism puts the experts.
    let path = root().join("tests/data/tiny-qwen3moe.gguf");
    let o = run(&["plan", "-m", path.to_str().unwrap(), "--nodes", "1,2,3"]);
    let text = stdout(&o);
    assert!(
        text.contains("experts: 8 per MoE layer, 2 used per token"),
        "{text}"
    );
    assert!(
        text.contains("--split ep on 2: 4 experts per layer per rank"),
        "{text}"
    );
    assert!(
        text.contains("--split ep on 3: 2–3 experts per layer per rank"),
        "{text}"
    );
    let o = run(&["plan", "--params", "1e9"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run(&["plan", "-m", &tiny(), "--mem-bw", "-3"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// `bench --json`: one row per cache type and test, with llama-bench's field names.
#[test]
fn bench_rows_follow_llama_bench_for_each_cache_type() {
    let qwen3 = root()
        .join("tests/data/tiny-qwen3.gguf")
        .display()
        .to_string();
    let rows = ok_json(&[
        "bench", "-m", &qwen3, "-p", "8", "-n", "4", "-r", "2", "-t", "1", "-ctk", "f16,q8_0",
        "--json",
    ]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    for (row, (k, np, ng)) in
        rows.iter()
            .zip([("f16", 8, 0), ("f16", 0, 4), ("q8_0", 8, 0), ("q8_0", 0, 4)])
    {
        assert_eq!(row["type_k"], k);
        assert_eq!(row["type_v"], "f16");
        assert_eq!(
            (row["n_prompt"].as_u64(), row["n_gen"].as_u64()),
            (Some(np), Some(ng))
        );
        assert_eq!(row["n_threads"], 1);
        assert!(row["avg_ts"].as_f64().unwrap() > 0.0);
        assert_eq!(row["samples_ts"].as_array().unwrap().len(), 2);
    }
}
