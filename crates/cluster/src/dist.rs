//! Pipeline parallelism: rank 0's [`DistModel`] and the other ranks' [`follow`] loop.
//!
//! Every forward call on rank 0 is broadcast as a [`Msg::Forward`]; then each
//! rank runs its consecutive layers ([`Model::forward_stage`]), receiving the
//! hidden states from the rank before and sending its own to the rank after;
//! the last rank computes the logits and sends them to rank 0 — or, when the
//! output projection is the (tied) token embedding matrix rank 0 holds
//! anyway, sends rank 0 the final hidden states of the rows whose logits are
//! wanted, and rank 0 computes them (n_embd values a row instead of n_vocab). Each layer is
//! computed whole on one rank, so the logits are bit-identical to one
//! process's. Each rank keeps the KV cache of its own layers only.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;
use sparetire_models::{HParams, KvTypes, Logits, Model, ModelError, Seq, State};
use sparetire_quant::ThreadPool;

use crate::protocol::{Msg, SeqPlan};
use crate::{ClusterError, Comm};

/// How the ranks share the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Pipeline: rank `r` runs layers `stages[r]` whole.
    Pipeline(Vec<Range<usize>>),
    /// Tensor: every rank runs every layer on its shard (the model was made
    /// with [`Model::into_tensor_parallel`]); rank 0 alone computes logits.
    Tensor,
}

/// Rank 0's model: forwards every call to all ranks.
pub struct DistModel {
    inner: Box<dyn Model>,
    comm: Arc<dyn Comm>,
    layout: Layout,
}

impl DistModel {
    /// Wraps rank 0's `inner` (already sharded for [`Layout::Tensor`]).
    pub fn new(inner: Box<dyn Model>, comm: Arc<dyn Comm>, layout: Layout) -> DistModel {
        DistModel {
            inner,
            comm,
            layout,
        }
    }

    /// The model's own checks, made before the call is broadcast, so a bad
    /// request never leaves the other ranks waiting.
    fn check(&self, seqs: &[Seq<'_>]) -> Result<(), ModelError> {
        seqs.iter().try_for_each(|s| {
            sparetire_models::check_batch(self.inner.hparams(), s.state, s.tokens)
        })
    }
}

impl Drop for DistModel {
    fn drop(&mut self) {
        // Let the other ranks leave their loops and finish cleanly.
        let _ = self.comm.broadcast(0, &mut Msg::Stop.encode());
        report_traffic(&*self.comm);
    }
}

impl Model for DistModel {
    fn hparams(&self) -> &HParams {
        self.inner.hparams()
    }

    fn new_state(&self, n_ctx: usize, kv: KvTypes) -> Result<State, ModelError> {
        self.inner.new_state(n_ctx, kv)
    }

    fn new_state_in(
        &self,
        pool: Arc<sparetire_models::kv_cache::KvPool>,
        n_ctx: usize,
    ) -> Result<State, ModelError> {
        self.inner.new_state_in(pool, n_ctx)
    }

    fn forward(
        &self,
        pool: &ThreadPool,
        state: &mut State,
        tokens: &[u32],
        logits: Logits,
    ) -> Result<(), ModelError> {
        self.forward_batch(
            pool,
            &mut [Seq {
                state,
                tokens,
                logits,
            }],
        )
    }

    fn forward_batch(&self, pool: &ThreadPool, seqs: &mut [Seq<'_>]) -> Result<(), ModelError> {
        self.check(seqs)?;
        let plan: Vec<SeqPlan> = seqs
            .iter()
            .map(|s| SeqPlan {
                id: s.state.id,
                n_ctx: s.state.kv.n_ctx(),
                n_past: s.state.n_past,
                tokens: s.tokens.to_vec(),
                logits: s.logits,
                arithmetic: s.state.arithmetic,
                kv_types: s.state.kv.pool().types(),
            })
            .collect();
        let fatal = |e: ClusterError| -> ! {
            // The other ranks are mid-call: stopping the job is the only clean way out
            // (mpirun ends every rank when one exits with an error).
            eprintln!("error: {e}");
            std::process::exit(1)
        };
        self.comm
            .broadcast(0, &mut Msg::Forward(plan).encode())
            .unwrap_or_else(|e| fatal(e));
        run_step(&*self.inner, &*self.comm, &self.layout, pool, seqs).unwrap_or_else(|e| fatal(e));
        Ok(())
    }
}

/// Rows of logits a sequence gets.
fn logit_rows(s: &Seq<'_>) -> usize {
    match s.logits {
        Logits::All => s.tokens.len(),
        Logits::Last => 1,
        Logits::None => 0,
    }
}

/// This rank's part of one forward call.
fn run_step(
    model: &dyn Model,
    comm: &dyn Comm,
    layout: &Layout,
    pool: &ThreadPool,
    seqs: &mut [Seq<'_>],
) -> Result<(), ClusterError> {
    match layout {
        Layout::Pipeline(stages) => run_stage(model, comm, stages, pool, seqs),
        Layout::Tensor => {
            if comm.rank() != 0 {
                // Only rank 0 samples: the others skip the output head.
                for s in seqs.iter_mut() {
                    s.logits = Logits::None;
                }
            }
            model
                .forward_batch(pool, seqs)
                .map_err(|source| ClusterError::Model {
                    rank: comm.rank(),
                    source,
                })
        }
    }
}

/// Each sequence's rows in the batch and how many of its last rows want logits.
fn logit_spans(seqs: &[Seq<'_>]) -> Vec<(Range<usize>, usize)> {
    let mut at = 0;
    seqs.iter()
        .map(|s| {
            let span = at..at + s.tokens.len();
            at = span.end;
            (span, logit_rows(s))
        })
        .collect()
}

/// This rank's pipeline stage of one forward call.
fn run_stage(
    model: &dyn Model,
    comm: &dyn Comm,
    stages: &[Range<usize>],
    pool: &ThreadPool,
    seqs: &mut [Seq<'_>],
) -> Result<(), ClusterError> {
    let (r, last) = (comm.rank(), stages.len() - 1);
    let hp = model.hparams();
    let n: usize = seqs.iter().map(|s| s.tokens.len()).sum();
    let model_err = |source| ClusterError::Model { rank: r, source };
    let hidden_in = if r == 0 {
        None
    } else {
        Some(comm.recv(r - 1, n * hp.n_embd)?)
    };
    // With tied embeddings rank 0 holds the output projection anyway (as its
    // token embeddings): the last stage sends it the final hidden states of
    // the rows whose logits are wanted (n_embd values a row) instead of their
    // logits (n_vocab a row).
    let head_first = model.tied_output() && last > 0;
    let (d, nv) = (hp.n_embd, hp.n_vocab);
    let rows: usize = seqs.iter().map(logit_rows).sum();
    if r < last || head_first {
        let mut out = Vec::new();
        model
            .forward_stage(
                pool,
                seqs,
                stages[r].clone(),
                hidden_in.as_deref(),
                Some(&mut out),
            )
            .map_err(model_err)?;
        if r < last {
            comm.send(r + 1, &out)?;
        } else if rows > 0 {
            let mut wanted = Vec::with_capacity(rows * d);
            for (span, k) in logit_spans(seqs) {
                wanted.extend_from_slice(&out[(span.end - k) * d..span.end * d]);
            }
            comm.send(0, &wanted)?;
        }
    } else {
        model
            .forward_stage(pool, seqs, stages[r].clone(), hidden_in.as_deref(), None)
            .map_err(model_err)?;
    }
    if last == 0 || rows == 0 {
        return Ok(());
    }
    if head_first {
        if r == 0 {
            let wanted = comm.recv(last, rows * d)?;
            // Rows whose logits are not wanted are never read: zeros.
            let mut hidden = vec![0f32; n * d];
            let mut at = 0;
            for (span, k) in logit_spans(seqs) {
                hidden[(span.end - k) * d..span.end * d].copy_from_slice(&wanted[at..at + k * d]);
                at += k * d;
            }
            model
                .output_logits(pool, seqs, &hidden)
                .map_err(model_err)?;
        }
        return Ok(());
    }
    if r == last {
        let mut all = Vec::with_capacity(rows * nv);
        for s in seqs.iter() {
            let k = logit_rows(s) * nv;
            all.extend_from_slice(&s.state.logits()[..k]);
        }
        comm.send(0, &all)?;
    }
    if r == 0 {
        let all = comm.recv(last, rows * nv)?;
        let mut at = 0;
        for s in seqs.iter_mut() {
            let k = logit_rows(s) * nv;
            if k > 0 {
                s.state.set_logits(&all[at..at + k]);
            }
            at += k;
        }
    }
    Ok(())
}

/// The loop of every rank but 0: run each forward call rank 0 broadcasts,
/// until it says stop.
pub fn follow(
    model: &dyn Model,
    comm: &dyn Comm,
    layout: &Layout,
    pool: &ThreadPool,
) -> Result<(), ClusterError> {
    let r = comm.rank();
    let mut states: HashMap<u64, State> = HashMap::new();
    loop {
        let mut buf = Vec::new();
        comm.broadcast(0, &mut buf)?;
        match Msg::decode(&buf, r)? {
            Msg::Stop => {
                report_traffic(comm);
                return Ok(());
            }
            Msg::Drop(id) => {
                states.remove(&id);
            }
            Msg::Forward(plans) => {
                let mut taken = Vec::with_capacity(plans.len());
                for p in &plans {
                    let mut st = match states.remove(&p.id) {
                        Some(st) => st,
                        None => model
                            .new_state(p.n_ctx, p.kv_types)
                            .map_err(|source| ClusterError::Model { rank: r, source })?,
                    };
                    if st.n_past < p.n_past {
                        return Err(ClusterError::Protocol {
                            rank: r,
                            what: format!(
                                "sequence {} holds {} positions here but {} on rank 0",
                                p.id, st.n_past, p.n_past
                            ),
                        });
                    }
                    st.truncate(p.n_past);
                    st.arithmetic = p.arithmetic;
                    taken.push(st);
                }
                {
                    let mut seqs: Vec<Seq<'_>> = taken
                        .iter_mut()
                        .zip(&plans)
                        .map(|(state, p)| Seq {
                            state,
                            tokens: &p.tokens,
                            logits: p.logits,
                        })
                        .collect();
                    run_step(model, comm, layout, pool, &mut seqs)?;
                }
                for (st, p) in taken.into_iter().zip(&plans) {
                    states.insert(p.id, st);
                }
            }
        }
    }
}

/// One stderr line: what this rank sent (for measuring a layout's traffic)
/// and its resident memory now and at its peak.
pub fn report_traffic(comm: &dyn Comm) {
    let line = format!(
        "sparetire: rank {}/{}: sent {:.2} MiB; resident {:.1} MiB, peak {:.1} MiB\n",
        comm.rank(),
        comm.size(),
        comm.bytes_sent() as f64 / (1 << 20) as f64,
        crate::memory::resident_mib().unwrap_or(0.0),
        crate::memory::peak_resident_mib().unwrap_or(0.0)
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

/// Bytes of the weights rank `rank` reads: its layers' tensors, plus the
/// token embeddings on the first rank and the output head on the last (on
/// the first when it is tied to the embeddings).
pub fn stage_weight_bytes(file: &GgufFile, layers: &Range<usize>, first: bool, last: bool) -> u64 {
    let mut total = 0u64;
    let has_output = file.tensors().iter().any(|t| t.name == "output.weight");
    for t in file.tensors() {
        let name = t.name.as_str();
        let mine = match name.strip_prefix("blk.") {
            Some(rest) => rest
                .split('.')
                .next()
                .and_then(|i| i.parse::<usize>().ok())
                .is_some_and(|i| layers.contains(&i)),
            // The head (final norm and projection) runs where its matrix is:
            // on the first rank when it is the tied token embedding matrix.
            None if has_output => {
                (first && name == "token_embd.weight") || (last && name.starts_with("output"))
            }
            None => first && (name == "token_embd.weight" || name.starts_with("output")),
        };
        if mine {
            total += t.n_bytes;
        }
    }
    total
}
