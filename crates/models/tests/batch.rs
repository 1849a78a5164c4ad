//! A batch of sequences gives each sequence what it would get alone.

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
        let mut st = model.new_state(64).unwrap();
        model.forward(&pool, &mut st, p, Logits::Last).unwrap();
        model.forward(&pool, &mut st, &[42], Logits::Last).unwrap();
        alone.push(st.logits().to_vec());
    }
    // Together: the three prompts in one batch, then the three decode steps in one batch.
    let mut states: Vec<_> = (0..3).map(|_| model.new_state(64).unwrap()).collect();
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
