//! Expert parallelism (and tensor parallelism with experts spread over the
//! ranks) in one process: ranks are threads joined by an in-process
//! all-gather, and every rank's logits must equal one process's bit for bit.

mod common;

use std::sync::{Arc, Barrier, Mutex};

use sparetire_formats::gguf::GgufFile;
use sparetire_models::tensor_parallel::{Gathered, Gatherer};
use sparetire_models::{load, Logits, Model};
use sparetire_quant::ThreadPool;

/// An all-gather among threads: each deposits its part, all wait, each reads all.
struct LocalGather {
    rank: usize,
    parts: Arc<Mutex<Vec<Vec<f32>>>>,
    barrier: Arc<Barrier>,
}

impl Gatherer for LocalGather {
    fn all_gather(
        &self,
        mine: &[f32],
        counts: &[usize],
        _rows: usize,
        _what: Gathered,
    ) -> Result<Vec<f32>, String> {
        if mine.len() != counts[self.rank] {
            return Err(format!(
                "rank {}: {} values, announced {}",
                self.rank,
                mine.len(),
                counts[self.rank]
            ));
        }
        self.parts.lock().unwrap()[self.rank] = mine.to_vec();
        self.barrier.wait();
        let all = self.parts.lock().unwrap().concat();
        self.barrier.wait(); // nobody overwrites a part before everyone has read it
        Ok(all)
    }
}

fn gatherers(size: usize) -> Vec<Arc<dyn Gatherer>> {
    let parts = Arc::new(Mutex::new(vec![Vec::new(); size]));
    let barrier = Arc::new(Barrier::new(size));
    (0..size)
        .map(|rank| {
            Arc::new(LocalGather {
                rank,
                parts: parts.clone(),
                barrier: barrier.clone(),
            }) as Arc<dyn Gatherer>
        })
        .collect()
}

/// Logits of a 40-token prompt (all positions), then of two decode steps.
fn drive(model: &dyn Model) -> Vec<f32> {
    let pool = ThreadPool::new(1);
    let prompt: Vec<u32> = (0..40u32).map(|i| 10 + i * 53 % 1000).collect();
    let mut st = model
        .new_state(128, sparetire_models::KvTypes::F16)
        .unwrap();
    model.forward(&pool, &mut st, &prompt, Logits::All).unwrap();
    let mut out = st.logits().to_vec();
    for t in [7u32, 300] {
        model.forward(&pool, &mut st, &[t], Logits::Last).unwrap();
        out.extend_from_slice(st.logits());
    }
    out
}

fn split_like_one_process(name: &str, tensor: bool) {
    let path = common::repo_root().join(format!("tests/data/{name}.gguf"));
    let file = Arc::new(GgufFile::open(path).unwrap());
    let want = drive(&*load(file.clone()).unwrap());
    for size in 1..=3 {
        let got: Vec<Vec<f32>> = std::thread::scope(|s| {
            let handles: Vec<_> = gatherers(size)
                .into_iter()
                .enumerate()
                .map(|(rank, g)| {
                    let file = file.clone();
                    s.spawn(move || {
                        let m = load(file).unwrap();
                        let m = if tensor {
                            m.into_tensor_parallel(rank, size, g).unwrap()
                        } else {
                            m.into_expert_parallel(rank, size, g).unwrap()
                        };
                        drive(&*m)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (rank, g) in got.iter().enumerate() {
            assert!(
                g == &want,
                "{name}: rank {rank} of {size} differs from one process"
            );
        }
    }
}

#[test]
fn expert_parallel_ranks_give_one_process_logits() {
    for name in [
        "tiny-qwen3moe",
        "tiny-qwen2moe",
        "tiny-deepseek2",
        "tiny-deepseek3",
    ] {
        split_like_one_process(name, false);
    }
}

/// Tensor parallelism on MoE models: attention cut by heads (grouped-query
/// or latent: each rank caches the whole latent and runs its query heads),
/// the experts spread.
#[test]
fn tensor_parallel_attention_with_spread_experts_gives_one_process_logits() {
    for name in [
        "tiny-qwen3moe",
        "tiny-qwen2moe",
        "tiny-deepseek2",
        "tiny-deepseek3",
    ] {
        split_like_one_process(name, true);
    }
}

#[test]
fn models_without_experts_refuse_expert_parallelism_clearly() {
    let open = |n: &str| {
        let p = common::repo_root().join(format!("tests/data/{n}.gguf"));
        load(Arc::new(GgufFile::open(p).unwrap())).unwrap()
    };
    let g = gatherers(1).remove(0);
    let e = open("tiny-qwen3")
        .into_expert_parallel(0, 1, g.clone())
        .err()
        .unwrap();
    assert!(e.to_string().contains("no experts"), "{e}");
    drop(g);
}
