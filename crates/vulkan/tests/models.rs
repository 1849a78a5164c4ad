//! The shipped models on the Vulkan device: greedy output against llama.cpp's
//! goldens (tests/golden/models, with the near-tie rule of the CPU parity
//! tests) and perplexity within 1% of the CPU path.
//!
//! Sized for CI, which runs them on Mesa's software device (lavapipe) on two
//! cores: the first prompts of each golden file for 16 greedy tokens, and two
//! 128-token windows of the perplexity text. That is enough to catch a wrong
//! kernel (which derails greedy output within a few tokens and moves
//! perplexity by far more than 1%) in a few minutes; on a real GPU set
//! `SPARETIRE_VULKAN_FULL=1` to run every prompt to its end.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use sha2::Digest;
use sparetire_formats::gguf::GgufFile;
use sparetire_models::Logits;
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
    assert_eq!(digest, golden.file_sha256, "{} is not the goldens' file", path.display());
    let model = dev.model();
    let (n_cases, n_steps) = if full() { (usize::MAX, usize::MAX) } else { (n_cases, n_steps) };
    let mut failed = Vec::new();
    let (mut identical, mut near) = (0, 0);
    for case in golden.cases.iter().take(n_cases) {
        let mut st = model.new_state(512).unwrap();
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
            model.forward(dev.pool(), &mut st, &[got], Logits::Last).unwrap();
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
    eprintln!("{name} on Vulkan: greedy {identical} identical, {near} near-tie divergences, {} failed", failed.len());
    assert!(failed.is_empty(), "greedy parity failures: {failed:#?}");
    assert!(identical > 0, "no prompt decoded identically");
}

/// Perplexity over the first windows of tests/data/ppl/text.txt, device against CPU.
fn ppl_within_1pct(name: &str, gpu_layers: Option<usize>) {
    let Some((dev, cpu)) = engines(name, gpu_layers) else {
        return;
    };
    let text = std::fs::read_to_string(repo().join("tests/data/ppl/text.txt")).unwrap();
    let chunks = if full() { None } else { Some(2) };
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
    eprintln!("{name}: perplexity on Vulkan {g:.4}, CPU {c:.4} ({:.3}% apart)", 100.0 * rel);
    assert!(rel < 0.01, "{name}: perplexity {g:.4} on Vulkan vs {c:.4} on the CPU");
}

#[test]
fn smollm2_greedy_matches_llama_cpp() {
    greedy("smollm2", "smollm2.json", 3, 16, None);
}

#[test]
fn gemma3_greedy_matches_llama_cpp() {
    greedy("gemma3-270m", "gemma3-270m.json", 2, 16, None);
}

#[test]
fn smollm2_perplexity_within_1pct_of_cpu() {
    ppl_within_1pct("smollm2", None);
}

#[test]
fn gemma3_perplexity_within_1pct_of_cpu() {
    ppl_within_1pct("gemma3-270m", None);
}

#[test]
#[ignore]
fn diag_logits() {
    let Some((dev, cpu)) = engines("smollm2", None) else { return };
    let toks: Vec<u32> = vec![3575, 282, 4649, 314, 504];
    for (name, e) in [("dev", &dev), ("cpu", &cpu)] {
        let m = e.model();
        let mut st = m.new_state(128).unwrap();
        m.forward(e.pool(), &mut st, &toks, Logits::All).unwrap();
        let l = st.logits().to_vec();
        let nv = m.hparams().n_vocab;
        for t in 0..5 {
            let r = &l[t * nv..(t + 1) * nv];
            eprintln!("{name} t{t}: argmax {} {:?}", argmax(r), &r[..4]);
        }
    }
}

#[test]
#[ignore]
fn diag_reference_net() {
    use sparetire_vulkan::net::{Net, Step};
    use sparetire_vulkan::reference::Reference;
    let path = store_model("smollm2");
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let dec = sparetire_models::arch::llama::load(file).unwrap();
    let parts = dec.parts();
    let mut ops = Reference::default();
    let net = Net::upload(&mut ops, &parts, parts.hp.n_layer, true).unwrap();
    let kv = net.kv(&mut ops, 4).unwrap();
    let s = net.scratch(&mut ops, 8).unwrap();
    let toks: Vec<u32> = vec![504, 3575, 282, 4649, 314];
    let l = net
        .forward(&mut ops, &s, &kv, &Step { tokens: &toks, pos0: 0, table: &[0, 1, 2, 3], copies: &[], first_logit: 0 })
        .unwrap();
    let nv = parts.hp.n_vocab;
    for t in 0..toks.len() {
        let r = &l[t * nv..(t + 1) * nv];
        eprintln!("ref t{t}: argmax {} {:?}", argmax(r), &r[..4]);
    }
}

#[test]
#[ignore]
fn diag_layer0() {
    use sparetire_vulkan::ops::{Attention, Rope};
    use sparetire_vulkan::reference::Reference;
    use sparetire_vulkan::Ops;
    use std::sync::Mutex;
    let path = store_model("smollm2");
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let dec = sparetire_models::arch::llama::load(file.clone()).unwrap();
    let parts = dec.parts();
    let hp = parts.hp.clone();
    let toks: Vec<u32> = vec![504, 3575, 282, 4649, 314];
    let n = toks.len();
    let taps: Arc<Mutex<Vec<(String, Vec<f32>)>>> = Arc::new(Mutex::new(vec![]));
    let t2 = taps.clone();
    let cpu = sparetire_models::load(file.clone()).unwrap();
    let mut st = cpu.new_state(64).unwrap();
    st.set_tap(Some(Box::new(move |name: &str, layer: Option<usize>, x: &[f32]| {
        if layer == Some(0) {
            t2.lock().unwrap().push((name.to_string(), x.to_vec()));
        }
    })));
    let pool = sparetire_quant::ThreadPool::new(2);
    cpu.forward(&pool, &mut st, &toks, Logits::Last).unwrap();
    let get = |name: &str| taps.lock().unwrap().iter().find(|(n, _)| n == name).unwrap().1.clone();
    let mut ops = Reference::default();
    let sparetire_models::decoder::Attn::Gqa(g) = &parts.blocks[0].attn else { panic!() };
    fn hw<'a>(w: &'a sparetire_models::weights::Weight, file: &'a GgufFile) -> sparetire_vulkan::ops::HostWeight<'a> { sparetire_vulkan::ops::HostWeight { ty: w.ty, rows: w.rows, cols: w.cols, data: w.bytes(file) } }
    let (d, qd, kvd) = (hp.n_embd, hp.q_dim(), hp.kv_dim());
    let xn = ops.buf(n * d).unwrap();
    ops.write(&xn, &get("attn_norm")).unwrap();
    let q = ops.buf(n * qd).unwrap();
    let k = ops.buf(n * kvd).unwrap();
    let v = ops.buf(n * kvd).unwrap();
    let wq = ops.weight(&hw(&g.wq, &file)).unwrap();
    let wk = ops.weight(&hw(&g.wk, &file)).unwrap();
    let wv = ops.weight(&hw(&g.wv, &file)).unwrap();
    ops.matmul(&wq, &xn, 0, n, &q).unwrap();
    ops.matmul(&wk, &xn, 0, n, &k).unwrap();
    ops.matmul(&wv, &xn, 0, n, &v).unwrap();
    let r = |nh| Rope { n, n_head: nh, head_dim: hp.head_dim, n_rot: hp.n_rot, pos0: 0, base: parts.blocks[0].cfg.rope_base, neox: false };
    ops.rope(&q, &r(hp.n_head)).unwrap();
    ops.rope(&k, &r(hp.n_head_kv)).unwrap();
    let e = |a: &[f32], b: &[f32]| common::nmse(a, b);
    eprintln!("Qcur {:.3e}", e(&ops.read(&q, 0, n * qd).unwrap(), &get("Qcur")));
    eprintln!("Kcur {:.3e}", e(&ops.read(&k, 0, n * kvd).unwrap(), &get("Kcur")));
    eprintln!("Vcur {:.3e}", e(&ops.read(&v, 0, n * kvd).unwrap(), &get("Vcur")));
    let kc = ops.cache(16, kvd).unwrap();
    let vc = ops.cache(16, kvd).unwrap();
    let tab = ops.ints(&[0]).unwrap();
    ops.write(&q, &get("Qcur")).unwrap();
    ops.write(&k, &get("Kcur")).unwrap();
    ops.write(&v, &get("Vcur")).unwrap();
    ops.kv_store(&k, n, kvd, &kc, tab, 0).unwrap();
    ops.kv_store(&v, n, kvd, &vc, tab, 0).unwrap();
    let o = ops.buf(n * qd).unwrap();
    let a = Attention { n, n_head: hp.n_head, n_head_kv: hp.n_head_kv, head_dim: hp.head_dim, pos0: 0, scale: 1.0 / (hp.head_dim as f32).sqrt(), window: None };
    ops.attention(&q, &kc, &vc, tab, &a, &o).unwrap();
    let mine = ops.read(&o, 0, n * qd).unwrap();
    let want = get("kqv_out");
    eprintln!("kqv_out {:.3e}", e(&mine, &want));
    for t in 0..n { eprintln!("t{t} kqv {:.3e}", e(&mine[t*qd..(t+1)*qd], &want[t*qd..(t+1)*qd])); }
}
