//! Joining an `mpirun` job: which layers this rank runs, and the follower loop.

use anyhow::{Context, Result};
use std::sync::Arc;

use sparetire_cluster::comm::CommGatherer;
use sparetire_cluster::dist::{follow, stage_weight_bytes, DistModel, Layout};
use sparetire_cluster::memory::{available_memory, resident_mib};
use sparetire_cluster::pipeline::split_layers;
use sparetire_cluster::wire::WireType;
use sparetire_runtime::Engine;

use crate::args::ModelArgs;
use crate::usage;

/// How the ranks of an `mpirun` job share a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    /// Pipeline: consecutive layers per rank, hidden states passed along.
    Pp,
    /// Tensor: every layer's heads and columns split across ranks (a
    /// mixture-of-experts model's experts spread over them).
    Tp,
    /// Experts: every mixture-of-experts layer's experts spread across
    /// ranks, the rest of the network run whole by every rank.
    Ep,
}

/// How tensor-parallel ranks send activations to each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Wire {
    /// Exact 32-bit floats (the logits equal one process's).
    F32,
    /// Product inputs as 8-bit blocks cut as the product quantizes them anyway: ~1.9x fewer bytes,
    /// the same results
    Q8,
    /// Also the products' results as f16: ~2.8x fewer bytes, at a cost in accuracy (measure it
    /// with perplexity --kl-base)
    #[value(name = "q8-f16")]
    Q8F16,
}

impl From<Wire> for WireType {
    fn from(w: Wire) -> WireType {
        match w {
            Wire::F32 => WireType::F32,
            Wire::Q8 => WireType::Q8,
            Wire::Q8F16 => WireType::Q8F16,
        }
    }
}

/// Outside `mpirun`, returns `engine` unchanged. Under it, rank 0 gets an
/// engine whose model runs across every rank; every other rank follows rank
/// 0's calls until it is done and then exits here (it never returns).
pub fn join(engine: Engine, a: &ModelArgs) -> Result<Engine> {
    join_as(engine, a.split, a.rank_weights.as_deref(), a.tp_wire)
}

/// [`join`] with the split and rank weights given directly.
pub fn join_as(
    engine: Engine,
    split: Split,
    rank_weights: Option<&[f64]>,
    wire: Wire,
) -> Result<Engine> {
    if wire != Wire::F32 && split != Split::Tp {
        return Err(usage("--tp-wire applies to --split tp only"));
    }
    let Some(comm) = sparetire_cluster::world()? else {
        return Ok(engine);
    };
    let (rank, size) = (comm.rank(), comm.size());
    if split != Split::Pp {
        return join_tensor(engine, comm, split, wire.into());
    }
    // Every rank contributes its weight; the sum hands everyone the list.
    let mut weights = vec![0.0f64; size];
    weights[rank] = match rank_weights {
        Some(w) if w.len() == size => w[rank],
        Some(w) => {
            return Err(usage(format!(
                "--rank-weights has {} values for {size} ranks",
                w.len()
            )))
        }
        None => available_memory().unwrap_or(1.0),
    };
    comm.all_reduce_sum(&mut weights)?;
    let n_layer = engine.model().hparams().n_layer;
    let stages = split_layers(n_layer, &weights);
    let mine = stages[rank].clone();
    let bytes = stage_weight_bytes(engine.file(), &mine, rank == 0, rank == size - 1);
    // One write, so the ranks' lines do not interleave in mpirun's output.
    let line = format!(
        "sparetire: rank {rank}/{size} (pid {}): layers {}..{} of {n_layer}, {:.1} MiB of weights\n",
        std::process::id(),
        mine.start,
        mine.end,
        bytes as f64 / (1 << 20) as f64
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    // Loading read every layer's norms, and the page cache maps whole large
    // folios around each read: let them go, so that this rank's resident
    // memory becomes the layers it runs.
    engine.file().release_pages();
    let layout = Layout::Pipeline(stages);
    if rank == 0 {
        return Ok(engine.map_model(|m| Box::new(DistModel::new(m, comm, layout))));
    }
    run_follower(engine, comm, &layout)
}

/// Tensor or expert parallelism: every rank keeps its share of every layer
/// (or of every layer's experts) and runs every forward call.
fn join_tensor(
    engine: Engine,
    comm: Arc<dyn sparetire_cluster::Comm>,
    split: Split,
    wire: WireType,
) -> Result<Engine> {
    let (rank, size) = (comm.rank(), comm.size());
    let reducer = Arc::new(CommGatherer::new(comm.clone(), wire));
    let engine = engine
        .try_map_model(|m| match split {
            Split::Ep => m.into_expert_parallel(rank, size, reducer),
            _ => m.into_tensor_parallel(rank, size, reducer),
        })
        .with_context(|| format!("rank {rank}: splitting the model"))?;
    let share = match split {
        Split::Ep => "expert-parallel share of every layer's experts",
        _ => "tensor-parallel share of every layer",
    };
    let line = format!(
        "sparetire: rank {rank}/{size} (pid {}): {share}, {:.1} MiB resident after loading\n",
        std::process::id(),
        resident_mib().unwrap_or(0.0)
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    if rank == 0 {
        return Ok(engine.map_model(|m| Box::new(DistModel::new(m, comm, Layout::Tensor))));
    }
    run_follower(engine, comm, &Layout::Tensor)
}

/// A follower's whole life after loading: it never returns.
fn run_follower(
    engine: Engine,
    comm: Arc<dyn sparetire_cluster::Comm>,
    layout: &Layout,
) -> Result<Engine> {
    let rank = comm.rank();
    ignore_stop_signals();
    let result = follow(engine.model(), &*comm, layout, engine.pool())
        .with_context(|| format!("rank {rank}"));
    drop(comm);
    drop(engine);
    sparetire_cluster::finish();
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1)
        }
    }
}

/// mpirun forwards SIGTERM and SIGINT to every rank; a follower leaves when
/// rank 0 (which drains its requests first) tells it to, not before.
fn ignore_stop_signals() {
    #[cfg(unix)]
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code and
        // touches no Rust state; `signal` is async-signal-safe and sound to call at any time.
        unsafe {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
}
