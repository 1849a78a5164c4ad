//! The pipeline over the in-process transport: every rank a thread, the same
//! model file, logits bit-identical to one process for 1 to 4 ranks.

use std::path::PathBuf;
use std::sync::Arc;

use sparetire_cluster::comm::CommGatherer;
use sparetire_cluster::dist::{follow, DistModel, Layout};
use sparetire_cluster::local::LocalComm;
use sparetire_cluster::pipeline::split_layers;
use sparetire_cluster::wire::WireType;
use sparetire_cluster::Comm;
use sparetire_formats::gguf::GgufFile;
use sparetire_models::{load, Logits, Model};
use sparetire_quant::ThreadPool;

fn model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/tiny-llama.gguf")
}

/// Prefill, a few greedy steps, a truncation (prefix reuse) and a batch of two
/// sequences; returns every logits vector rank 0 saw.
fn drive(model: &dyn Model, pool: &ThreadPool) -> Vec<Vec<f32>> {
    let mut seen = Vec::new();
    let mut st = model.new_state(64, sparetire_models::KvTypes::F16).unwrap();
    model
        .forward(pool, &mut st, &[1, 20, 30, 40, 50], Logits::Last)
        .unwrap();
    seen.push(st.logits().to_vec());
    for _ in 0..4 {
        let next = argmax(st.logits());
        model.forward(pool, &mut st, &[next], Logits::Last).unwrap();
        seen.push(st.logits().to_vec());
    }
    st.truncate(3);
    model.forward(pool, &mut st, &[7, 8], Logits::All).unwrap();
    seen.push(st.logits().to_vec());
    let mut other = model.new_state(64, sparetire_models::KvTypes::F16).unwrap();
    let mut seqs = [
        sparetire_models::Seq {
            state: &mut st,
            tokens: &[9],
            logits: Logits::Last,
        },
        sparetire_models::Seq {
            state: &mut other,
            tokens: &[3, 4, 5],
            logits: Logits::All,
        },
    ];
    model.forward_batch(pool, &mut seqs).unwrap();
    seen.push(st.logits().to_vec());
    seen.push(other.logits().to_vec());
    seen
}

fn argmax(x: &[f32]) -> u32 {
    x.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as u32)
        .unwrap()
}

/// tiny-llama has its own output matrix (the last stage computes the
/// logits); tiny-qwen2 ties it to the embeddings (rank 0 computes them from
/// the last stage's hidden states).
#[test]
fn pipelines_of_one_to_four_ranks_give_one_process_logits() {
    for name in ["tiny-llama.gguf", "tiny-qwen2.gguf"] {
        let path = model_path().with_file_name(name);
        let file = Arc::new(GgufFile::open(path).unwrap());
        let single = load(file.clone()).unwrap();
        assert_eq!(single.tied_output(), name == "tiny-qwen2.gguf");
        let pool = ThreadPool::new(1);
        let want = drive(&*single, &pool);
        let n_layer = single.hparams().n_layer;
        for ranks in 1..=4 {
            let stages = split_layers(n_layer, &vec![1.0; ranks]);
            let comms: Vec<Arc<dyn Comm>> = LocalComm::group(ranks)
                .into_iter()
                .map(|c| Arc::new(c) as Arc<dyn Comm>)
                .collect();
            let got = std::thread::scope(|s| {
                for c in comms.iter().skip(1) {
                    let (file, stages, c) = (file.clone(), stages.clone(), c.clone());
                    s.spawn(move || {
                        let m = load(file).unwrap();
                        follow(&*m, &*c, &Layout::Pipeline(stages), &ThreadPool::new(1)).unwrap();
                    });
                }
                let dist = DistModel::new(
                    load(file.clone()).unwrap(),
                    comms[0].clone(),
                    Layout::Pipeline(stages.clone()),
                );
                drive(&dist, &ThreadPool::new(1))
                // `dist` drops here and tells the followers to stop.
            });
            assert_eq!(got, want, "{name}: {ranks} ranks, stages {stages:?}");
            if ranks > 1 && name == "tiny-qwen2.gguf" {
                // The last stage sent hidden states, not logits: at most n_embd a row.
                let sent = comms[ranks - 1].bytes_sent();
                let vocab_row = single.hparams().n_vocab as u64 * 4;
                assert!(sent < 2 * vocab_row, "last rank sent {sent} bytes");
            }
        }
    }
}

/// Runs `drive` on `ranks` tensor-parallel ranks (threads) whose activations
/// travel as `wire`; returns rank 0's logits and the bytes each rank sent.
fn tensor_parallel(ranks: usize, wire: WireType) -> (Vec<Vec<f32>>, Vec<u64>) {
    let file = Arc::new(GgufFile::open(model_path()).unwrap());
    let comms: Vec<Arc<dyn Comm>> = LocalComm::group(ranks)
        .into_iter()
        .map(|c| Arc::new(c) as Arc<dyn Comm>)
        .collect();
    let shard = |r: usize, c: &Arc<dyn Comm>| {
        load(file.clone())
            .unwrap()
            .into_tensor_parallel(r, ranks, Arc::new(CommGatherer::new(c.clone(), wire)))
            .unwrap()
    };
    let got = std::thread::scope(|s| {
        for (r, c) in comms.iter().enumerate().skip(1) {
            let m = shard(r, c);
            let c = c.clone();
            s.spawn(move || follow(&*m, &*c, &Layout::Tensor, &ThreadPool::new(1)).unwrap());
        }
        let dist = DistModel::new(shard(0, &comms[0]), comms[0].clone(), Layout::Tensor);
        drive(&dist, &ThreadPool::new(1))
    });
    (got, comms.iter().map(|c| c.bytes_sent()).collect())
}

/// Tensor parallelism over 1 to 5 ranks (more ranks than KV heads, split KV groups, ranks
/// with no heads): every output element is computed whole by one rank, so the logits are
/// bit-identical to one process's.
#[test]
fn tensor_parallel_ranks_give_one_process_logits() {
    let file = Arc::new(GgufFile::open(model_path()).unwrap());
    let want = drive(&*load(file).unwrap(), &ThreadPool::new(1));
    for ranks in 1..=5 {
        let (got, _) = tensor_parallel(ranks, WireType::F32);
        assert_eq!(got, want, "{ranks} tensor-parallel ranks");
    }
}

/// With 8-bit product inputs the ranks send about half the bytes and the
/// logits stay (almost) exactly one process's; with f16 results too, even
/// fewer bytes and close logits.
#[test]
fn eight_bit_transfers_send_fewer_bytes_and_stay_close() {
    let file = Arc::new(GgufFile::open(model_path()).unwrap());
    let want = drive(&*load(file).unwrap(), &ThreadPool::new(1));
    let (exact, exact_sent) = tensor_parallel(2, WireType::F32);
    assert_eq!(exact, want);
    let close = |got: &[Vec<f32>], tol: f32| {
        for (g, w) in got.iter().zip(&want) {
            let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = g.iter().zip(w).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst <= tol * scale,
                "max |Δlogit| {worst} vs scale {scale}"
            );
        }
    };
    let (q8, q8_sent) = tensor_parallel(2, WireType::Q8);
    assert_eq!(q8, want, "8-bit product inputs should change nothing");
    let (q8f16, q8f16_sent) = tensor_parallel(2, WireType::Q8F16);
    assert_ne!(q8f16, want, "f16 results should change the last bits");
    close(&q8f16, 0.05);
    // Follower traffic is all activations; rank 0 also broadcasts the step plans.
    assert!(
        q8_sent[1] * 10 < exact_sent[1] * 7 && q8f16_sent[1] * 2 < exact_sent[1],
        "rank 1 sent {} (q8) and {} (q8-f16) bytes vs {} with f32",
        q8_sent[1],
        q8f16_sent[1],
        exact_sent[1]
    );
}
