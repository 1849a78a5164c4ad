//! The shipped models on the Vulkan device: greedy output against llama.cpp's
//! goldens (tests/golden/models, with the near-tie rule of the CPU parity
//! tests) and perplexity within 1% of the CPU path.
//!
//! Sized for CI, which runs them on Mesa's software device (lavapipe) on two
//! cores, where they take a few minutes: the golden prompts for their first 8
//! greedy tokens, and a few 128-token windows of the perplexity text. That is enough to catch a wrong
//! kernel (which derails greedy output within a few tokens and moves
//! perplexity by far more than 1%) in a few minutes; on a real GPU set
//! `SPARETIRE_VULKAN_FULL=1` to run every prompt to its end.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use sha2::Digest;
use sparetire_formats::gguf::GgufFile;
use sparetire_models::{KvTypes, Logits};
use sparetire_runtime::{perplexity, Engine, PplParams};
use sparetire_vulkan::VulkanModel;

/// A greedy step where llama.cpp's own top-2 logits differ by less than this
/// is a near-tie: choosing differently there is not a failure (as in
/// crates/models/tests/parity.rs; the Vulkan path sums in another order, so
/// it is not bit-exact and may flip near-ties).
const NEAR_TIE: f32 = 0.25;

#[derive(Deserialize)]
struct Golden {
    file_sha256: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    prompt_tokens: Vec<u32>,
    greedy_tokens: Vec<u32>,
    greedy_margins: Vec<f32>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A model `sparetire pull NAME` put in the store (the test data of `.ci/run`).
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
        "test model {} is missing: run `sparetire pull {name}` first",
        p.display()
    );
    p
}

/// The model on the device (`gpu_layers` of its layers, or all), and on the CPU.
fn engines(name: &str, gpu_layers: Option<usize>) -> Option<(Engine, Engine)> {
    let gpu = common::gpu()?;
    let path = store_model(name);
    let cpu = Engine::load(&path, 2).unwrap();
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let dev = Engine::load(&path, 2)
        .unwrap()
        .try_map_model(|m| {
            VulkanModel::load(file, gpu, gpu_layers, m)
                .map(|v| Box::new(v) as Box<dyn sparetire_models::Model>)
                .map_err(|e| e.error)
        })
        .unwrap();
    Some((dev, cpu))
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn full() -> bool {
    std::env::var("SPARETIRE_VULKAN_FULL").as_deref() == Ok("1")
}

/// Greedy decoding of the first `n_cases` golden prompts for `n_steps` tokens.
fn greedy(name: &str, golden: &str, n_cases: usize, n_steps: usize, gpu_layers: Option<usize>) {
    let Some((dev, _)) = engines(name, gpu_layers) else {
        return;
    };
    let path = store_model(name);
    let golden: Golden = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/golden/models").join(golden)).unwrap(),
    )
    .unwrap();
    let digest: String = sha2::Sha256::digest(std::fs::read(&path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest,
        golden.file_sha256,
        "{} is not the goldens' file",
        path.display()
    );
    let model = dev.model();
    let (n_cases, n_steps) = if full() {
        (usize::MAX, usize::MAX)
    } else {
        (n_cases, n_steps)
    };
    let mut failed = Vec::new();
    let (mut identical, mut near) = (0, 0);
    for case in golden.cases.iter().take(n_cases) {
        let mut st = model.new_state(512, KvTypes::F16).unwrap();
        model
            .forward(dev.pool(), &mut st, &case.prompt_tokens, Logits::Last)
            .unwrap();
        let mut outcome = None;
        for (step, &want) in case.greedy_tokens.iter().take(n_steps).enumerate() {
            let got = argmax(st.logits());
            if got != want {
                outcome = Some((step, got, want));
                break;
            }
            model
                .forward(dev.pool(), &mut st, &[got], Logits::Last)
                .unwrap();
        }
        match outcome {
            None => identical += 1,
            Some((step, got, want)) if case.greedy_margins[step] < NEAR_TIE => {
                near += 1;
                eprintln!(
                    "{:?}: diverged at step {step} (got {got}, llama.cpp {want}) at a near-tie (margin {:.4})",
                    case.prompt, case.greedy_margins[step]
                );
            }
            Some((step, got, want)) => failed.push(format!(
                "{:?}: diverged at step {step}: got {got}, llama.cpp {want}, margin {:.4}",
                case.prompt, case.greedy_margins[step]
            )),
        }
    }
    eprintln!(
        "{name} on Vulkan: greedy {identical} identical, {near} near-tie divergences, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "greedy parity failures: {failed:#?}");
    assert!(identical > 0, "no prompt decoded identically");
}

/// Perplexity over the first `chunks` windows of tests/data/ppl/text.txt, device against CPU.
fn ppl_within_1pct(name: &str, chunks: usize, gpu_layers: Option<usize>) {
    let Some((dev, cpu)) = engines(name, gpu_layers) else {
        return;
    };
    let text = std::fs::read_to_string(repo().join("tests/data/ppl/text.txt")).unwrap();
    let chunks = if full() { None } else { Some(chunks) };
    let run = |e: &Engine| {
        let p = PplParams {
            n_ctx: 128,
            max_chunks: chunks,
            save: None,
            base: None,
        };
        perplexity(e, &text, p, &mut |_, _| {}).unwrap().stats.ppl()
    };
    let (g, c) = (run(&dev), run(&cpu));
    let rel = (g - c).abs() / c;
    eprintln!(
        "{name}: perplexity on Vulkan {g:.4}, CPU {c:.4} ({:.3}% apart)",
        100.0 * rel
    );
    assert!(
        rel < 0.01,
        "{name}: perplexity {g:.4} on Vulkan vs {c:.4} on the CPU"
    );
}

#[test]
fn smollm2_greedy_matches_llama_cpp() {
    greedy("smollm2", "smollm2.json", usize::MAX, 8, None);
}

/// Three prompts: every Gemma step multiplies by its 262144-row output matrix.
#[test]
fn gemma3_greedy_matches_llama_cpp() {
    greedy("gemma3-270m", "gemma3-270m.json", 3, 8, None);
}

/// `--gpu-layers`: the first 12 of SmolLM2's 30 layers on the device, the
/// rest and the output on the CPU, the hidden states crossing once per call.
/// Four steps: the mixed path is neither the CPU's bit-exact arithmetic nor
/// the device's, and later steps drift into margins of 0.3–0.4.
#[test]
fn smollm2_split_layers_greedy_matches_llama_cpp() {
    greedy("smollm2", "smollm2.json", 3, 4, Some(12));
}

/// `--gpu-layers` perplexity: two windows, within 1% of the CPU.
#[test]
fn smollm2_split_layers_perplexity_within_1pct_of_cpu() {
    ppl_within_1pct("smollm2", 2, Some(12));
}

/// Four windows (252 scored tokens): with two, the perplexities of two
/// implementations that are not bit-identical can be 1% apart by chance.
#[test]
fn smollm2_perplexity_within_1pct_of_cpu() {
    ppl_within_1pct("smollm2", 4, None);
}

/// Two windows: Gemma's 262144-entry vocabulary makes every scored row's
/// logits the costliest part on a software device.
#[test]
fn gemma3_perplexity_within_1pct_of_cpu() {
    ppl_within_1pct("gemma3-270m", 2, None);
}
