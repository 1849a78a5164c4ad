//! A batch of sequences gives each sequence what it would get alone.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;
use sparetire_models::{load, Logits, Seq};
use sparetire_quant::ThreadPool;

#[test]
fn forward_batch_matches_one_sequence_at_a_time() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/tiny-llama.gguf");
    let model = load(Arc::new(GgufFile::open(path).unwrap())).unwrap();
    let pool = ThreadPool::new(2);
    let prompts: [&[u32]; 3] = [
        &[1, 50, 60, 70, 80],
        &[300, 301],
        &[7, 8, 9, 10, 11, 12, 13, 14, 15],
    ];
    // Alone: prompt, then one decode step each.
    let mut alone = Vec::new();
    for p in prompts {
        let mut st = model.new_state(64, sparetire_models::KvTypes::F16).unwrap();
        model.forward(&pool, &mut st, p, Logits::Last).unwrap();
        model.forward(&pool, &mut st, &[42], Logits::Last).unwrap();
        alone.push(st.logits().to_vec());
    }
    // Together: the three prompts in one batch, then the three decode steps in one batch.
    let mut states: Vec<_> = (0..3)
        .map(|_| model.new_state(64, sparetire_models::KvTypes::F16).unwrap())
        .collect();
    {
        let mut seqs: Vec<Seq> = states
            .iter_mut()
            .zip(prompts)
            .map(|(state, tokens)| Seq {
                state,
                tokens,
                logits: Logits::Last,
            })
            .collect();
        model.forward_batch(&pool, &mut seqs).unwrap();
    }
    let step = [42u32];
    let mut seqs: Vec<Seq> = states
        .iter_mut()
        .map(|state| Seq {
            state,
            tokens: &step,
            logits: Logits::Last,
        })
        .collect();
    model.forward_batch(&pool, &mut seqs).unwrap();
    drop(seqs);
    for (i, st) in states.iter().enumerate() {
        assert_eq!(st.n_past, prompts[i].len() + 1);
        let (a, b) = (&alone[i], st.logits());
        assert_eq!(a.len(), b.len());
        // Larger batches may take other (equally exact) kernel paths: allow rounding-level differences.
        let max = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(max < 1e-2, "sequence {i}: max |Δlogit| {max}");
    }
}

/// With per-token arithmetic, on Gemma 3 (repacked Q4_K, Q6_K, Q5_0 and Q8_0 weights, sliding
/// windows): a 100-token prompt in one batch, in uneven chunks next to another sequence, and
/// token by token all leave bit-identical logits and KV; and reusing published prefix blocks
/// from a shared pool changes nothing either.
#[test]
fn per_token_arithmetic_is_batch_invariant_on_gemma3() {
    let path = common::store_model("gemma3-270m");
    let prompt: Vec<u32> = (0..100u32).map(|i| 1000 + i * 37 % 5000).collect();
    let other: Vec<u32> = (0..40u32).map(|i| 9000 + i).collect();
    let (model, want) = per_token_invariance(&path, &prompt, &other);
    // The reference arithmetic does depend on the batch here (which is why the server does not use it).
    let pool = ThreadPool::new(2);
    let mut reference = model
        .new_state(256, sparetire_models::KvTypes::F16)
        .unwrap();
    model
        .forward(&pool, &mut reference, &prompt, Logits::Last)
        .unwrap();
    model
        .forward(&pool, &mut reference, &[5], Logits::Last)
        .unwrap();
    assert_ne!(reference.logits(), &want[..]);
}

/// The same for the mixture-of-experts and latent-attention families (what the server runs):
/// tokens grouped by expert, or attending to latent rows in a keys-only shared pool, still get
/// exactly what they get alone.
#[test]
fn per_token_arithmetic_is_batch_invariant_on_moe_and_mla() {
    let prompt: Vec<u32> = (0..100u32).map(|i| 10 + i * 37 % 1000).collect();
    let other: Vec<u32> = (0..40u32).map(|i| 500 + i).collect();
    for name in [
        "tiny-qwen3moe",
        "tiny-qwen2moe",
        "tiny-deepseek2",
        "tiny-deepseek3",
    ] {
        let path = common::repo_root().join(format!("tests/data/{name}.gguf"));
        per_token_invariance(&path, &prompt, &other);
    }
}

/// Runs `prompt` and one decode step with per-token arithmetic in one batch, token by token,
/// in uneven chunks batched with `other`, and after taking published prefix blocks from a
/// shared pool; asserts all four give bit-identical logits and returns them.
fn per_token_invariance(
    path: &std::path::Path,
    prompt: &[u32],
    other: &[u32],
) -> (Box<dyn sparetire_models::Model>, Vec<f32>) {
    use sparetire_models::kv_cache::KvPool;
    use sparetire_models::Arithmetic;
    let model = load(Arc::new(GgufFile::open(path).unwrap())).unwrap();
    let pool = ThreadPool::new(2);
    let new = || {
        let mut st = model
            .new_state(256, sparetire_models::KvTypes::F16)
            .unwrap();
        st.arithmetic = Arithmetic::PerToken;
        st
    };
    // One batch of 100 tokens, then a decode step.
    let mut whole = new();
    model
        .forward(&pool, &mut whole, prompt, Logits::Last)
        .unwrap();
    model
        .forward(&pool, &mut whole, &[5], Logits::Last)
        .unwrap();
    let want = whole.logits().to_vec();
    let name = path.display();
    // Token by token.
    let mut single = new();
    for &t in prompt {
        model
            .forward(&pool, &mut single, &[t], Logits::Last)
            .unwrap();
    }
    model
        .forward(&pool, &mut single, &[5], Logits::Last)
        .unwrap();
    assert_eq!(single.logits(), &want[..], "{name}: token by token");
    // Uneven chunks, batched with another sequence.
    let mut chunked = new();
    let mut companion = new();
    for (i, chunk) in prompt.chunks(33).enumerate() {
        let side = &other[(i * 9).min(other.len() - 9)..][..9];
        let mut seqs = [
            Seq {
                state: &mut companion,
                tokens: side,
                logits: Logits::All,
            },
            Seq {
                state: &mut chunked,
                tokens: chunk,
                logits: Logits::Last,
            },
        ];
        model.forward_batch(&pool, &mut seqs).unwrap();
    }
    model
        .forward(&pool, &mut chunked, &[5], Logits::Last)
        .unwrap();
    assert_eq!(chunked.logits(), &want[..], "{name}: chunked and batched");
    // Prefix blocks published by one sequence and taken by another in a shared pool.
    let kv = KvPool::for_model(model.hparams(), 512, sparetire_models::KvTypes::F16).unwrap();
    let mut first = model.new_state_in(kv.clone(), 256).unwrap();
    first.arithmetic = Arithmetic::PerToken;
    model
        .forward(&pool, &mut first, prompt, Logits::Last)
        .unwrap();
    let mut second = model.new_state_in(kv.clone(), 256).unwrap();
    second.arithmetic = Arithmetic::PerToken;
    assert_eq!(second.reuse_prefix(prompt, prompt.len() - 1), 96);
    model
        .forward(&pool, &mut second, &prompt[96..], Logits::Last)
        .unwrap();
    model
        .forward(&pool, &mut second, &[5], Logits::Last)
        .unwrap();
    assert_eq!(second.logits(), &want[..], "{name}: with a reused prefix");
    drop((first, second, single, chunked, companion, whole));
    (model, want)
}

/// Pipeline stages run one after another (each with its own states, as separate ranks hold
/// them) give bit-identical logits to the whole network, for prefill and decode.
#[test]
fn pipeline_stages_compose_to_the_whole_network() {
    let path = common::store_model("smollm2");
    let model = load(Arc::new(GgufFile::open(path).unwrap())).unwrap();
    let pool = ThreadPool::new(2);
    let n_layer = model.hparams().n_layer;
    let prompt: Vec<u32> = (0..40u32).map(|i| 100 + i * 7).collect();
    let mut whole = model
        .new_state(128, sparetire_models::KvTypes::F16)
        .unwrap();
    model
        .forward(&pool, &mut whole, &prompt, Logits::Last)
        .unwrap();
    let want_prefill = whole.logits().to_vec();
    model
        .forward(&pool, &mut whole, &[9], Logits::Last)
        .unwrap();
    let want_decode = whole.logits().to_vec();
    let cuts = [0, 7, 19, n_layer];
    let mut states: Vec<_> = (0..3)
        .map(|_| {
            model
                .new_state(128, sparetire_models::KvTypes::F16)
                .unwrap()
        })
        .collect();
    for (tokens, want) in [(&prompt[..], &want_prefill), (&[9u32][..], &want_decode)] {
        let mut hidden: Option<Vec<f32>> = None;
        for (k, st) in states.iter_mut().enumerate() {
            let last = k == 2;
            let mut out = Vec::new();
            let mut seqs = [Seq {
                state: st,
                tokens,
                logits: Logits::Last,
            }];
            model
                .forward_stage(
                    &pool,
                    &mut seqs,
                    cuts[k]..cuts[k + 1],
                    hidden.as_deref(),
                    (!last).then_some(&mut out),
                )
                .unwrap();
            hidden = Some(out);
        }
        assert_eq!(states[2].logits(), &want[..]);
    }
    assert!(states.iter().all(|s| s.n_past == prompt.len() + 1));
}
