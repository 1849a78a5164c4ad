//! The pipeline over the in-process transport: every rank a thread, the same
//! model file, logits bit-identical to one process for 1 to 4 ranks.

use std::path::PathBuf;
use std::sync::Arc;

use sparetire_cluster::dist::{follow, DistModel, Layout};
use sparetire_cluster::local::LocalComm;
use sparetire_cluster::pipeline::split_layers;
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
    let mut st = model.new_state(64).unwrap();
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
    let mut other = model.new_state(64).unwrap();
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

#[test]
fn pipelines_of_one_to_four_ranks_give_one_process_logits() {
    let file = Arc::new(GgufFile::open(model_path()).unwrap());
    let single = load(file.clone()).unwrap();
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
        assert_eq!(got, want, "{ranks} ranks, stages {stages:?}");
    }
}

/// Tensor parallelism over 1 to 5 ranks (including more ranks than KV heads, and splits of a
/// KV group) stays within rounding of one process: the partial sums are added in another order.
#[test]
fn tensor_parallel_ranks_stay_within_rounding_of_one_process() {
    use sparetire_cluster::comm::CommReducer;

    let file = Arc::new(GgufFile::open(model_path()).unwrap());
    let single = load(file.clone()).unwrap();
    let pool = ThreadPool::new(1);
    let want = drive(&*single, &pool);
    let hp = single.hparams().clone();
    for ranks in 1..=5 {
        let comms: Vec<Arc<dyn Comm>> = LocalComm::group(ranks)
            .into_iter()
            .map(|c| Arc::new(c) as Arc<dyn Comm>)
            .collect();
        let shard = |r: usize, c: &Arc<dyn Comm>| {
            load(file.clone())
                .unwrap()
                .into_tensor_parallel(r, ranks, Arc::new(CommReducer(c.clone())))
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
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.len(), w.len());
            let max = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            let scale = w.iter().map(|a| a.abs()).fold(0f32, f32::max);
            // f32 sums in another order: relative rounding, far below any real disagreement.
            assert!(
                max <= 1e-4 * scale,
                "{ranks} ranks ({} heads): max |Δlogit| {max} at logits up to {scale}",
                hp.n_head
            );
            for (gr, wr) in g.chunks(hp.n_vocab).zip(w.chunks(hp.n_vocab)) {
                assert_eq!(argmax(gr), argmax(wr), "{ranks} ranks: greedy token differs");
            }
        }
    }
}
