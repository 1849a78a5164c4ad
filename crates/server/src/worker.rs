//! The engine thread: it owns the model, one shared paged KV cache and up to
//! `--parallel` running sequences, and runs them with continuous batching: at
//! every step, requests join and leave, and one forward pass carries every
//! running sequence's next token together with chunks of the prompts being
//! read ([`crate::scheduler::plan`]). Text streams back to each request over
//! its own channel.
//!
//! **KV cache.** One [`KvPool`] of fixed 16-position blocks, sized from the
//! context and `--parallel` (or `--kv-memory`), serves every sequence; a
//! sequence takes blocks as it grows and gives them back when it ends or its
//! client leaves. Full blocks stay published under their token prefix, so a
//! request that starts like an earlier one (a shared system prompt, a
//! conversation's earlier turns) takes those blocks instead of recomputing
//! them. When a step needs more blocks than are left, the youngest sequences
//! are preempted: their blocks go back (still findable by prefix) and they
//! are recomputed later, continuing exactly where they were.
//!
//! **Batch invariance.** Every sequence runs with
//! [`Arithmetic::PerToken`]: each token's matrix products and attention take
//! the arithmetic of a batch of one, whatever else shares the batch and
//! however the prompt was chunked or reused. So a request's greedy tokens
//! are the same alone or among many, after a preemption, and the same as
//! `sparetire run --batch-invariant` (whose tokenization `/v1/completions`
//! shares).
//!
//! Requests wait in a bounded queue; a full queue is refused at once (429)
//! rather than left hanging.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use sparetire_models::kv_cache::KvPool;
use sparetire_models::{Arithmetic, Logits, Seq, State};
use sparetire_runtime::{
    Engine, GenParams, Generator, RuntimeError, Step, StopReason, PREFILL_CHUNK,
};
use sparetire_tokenizer::ChatMessage;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::scheduler::{plan, Need};

/// What to run.
#[derive(Clone)]
pub enum Prompt {
    /// A conversation, rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
    /// Raw text, tokenized like llama.cpp's completion tool.
    Text(String),
}

/// One request for the engine thread.
pub struct Job {
    /// The prompt.
    pub prompt: Prompt,
    /// Sampling and limits.
    pub params: GenParams,
    /// Where the results go; dropping the receiver cancels the job.
    pub events: mpsc::Sender<Event>,
    /// When the request arrived (for time-to-first-token).
    pub arrived: Instant,
}

/// What the engine thread reports about a job.
#[derive(Debug)]
pub enum Event {
    /// Generated text, in order.
    Text(String),
    /// Log-probabilities of generated tokens (when asked for), sent before their text.
    Logprobs(Vec<sparetire_runtime::TokenLogprob>),
    /// The job finished.
    Done {
        /// `stop` or `length`.
        finish_reason: &'static str,
        /// Prompt tokens.
        prompt_tokens: usize,
        /// Generated tokens.
        completion_tokens: usize,
    },
    /// The job failed.
    Error(ApiError),
}

/// How big the shared KV cache is.
#[derive(Clone, Copy, Debug)]
pub enum KvBudget {
    /// Room for every sequence slot to hold a full context at once.
    FullContexts,
    /// At most this many bytes.
    Bytes(usize),
}

/// A handle to the engine thread.
pub struct Worker {
    /// `None` once dropping: the engine thread sees the queue close and ends.
    tx: Option<SyncSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    ready: Arc<AtomicBool>,
    closing: AtomicBool,
    queued: Arc<AtomicUsize>,
    max_queue: usize,
}

impl Worker {
    /// Starts the engine thread with up to `n_slots` running sequences and a
    /// KV cache of `budget`; `load` runs on it and returns the engine and the
    /// context size of one request. A model that fails to load ends the process.
    pub fn start(
        load: Box<dyn FnOnce() -> Result<(Engine, usize), String> + Send>,
        n_slots: usize,
        budget: KvBudget,
        max_queue: usize,
        metrics: Arc<Metrics>,
    ) -> Worker {
        let (tx, rx) = sync_channel::<Job>(max_queue);
        let ready = Arc::new(AtomicBool::new(false));
        let queued = Arc::new(AtomicUsize::new(0));
        let (ready2, queued2) = (ready.clone(), queued.clone());
        let thread = std::thread::spawn(move || {
            let fail = |e: String| -> ! {
                eprintln!("error: {e}");
                std::process::exit(1)
            };
            let (engine, n_ctx) = load().unwrap_or_else(|e| fail(e));
            let n_slots = n_slots.max(1);
            let hp = engine.model().hparams();
            let types = engine.kv_types();
            let pool = match budget {
                KvBudget::FullContexts => {
                    KvPool::for_model(hp, n_ctx.saturating_mul(n_slots), types)
                }
                KvBudget::Bytes(b) => {
                    let per_block = KvPool::for_model(hp, 1, types).map(|p| p.block_bytes());
                    per_block.and_then(|pb| {
                        sparetire_models::kv_cache::KvPool::with_values(
                            hp.n_layer,
                            hp.kv_dim(),
                            b / pb.max(1),
                            hp.kv_values,
                            types,
                        )
                    })
                }
            }
            .unwrap_or_else(|e| fail(e.to_string()));
            if pool.n_blocks() == 0 {
                fail("the KV cache budget is smaller than one block of 16 positions; raise --kv-memory".into());
            }
            // One request can use the whole pool, but no more than the context.
            let n_ctx = n_ctx.min(pool.n_positions());
            let slots = (0..n_slots)
                .map(|_| {
                    engine
                        .model()
                        .new_state_in(pool.clone(), n_ctx)
                        .map(|mut st| {
                            st.arithmetic = Arithmetic::PerToken;
                            Slot {
                                state: st,
                                active: None,
                                idle_since: 0,
                            }
                        })
                })
                .collect::<Result<Vec<_>, _>>()
                .unwrap_or_else(|e| fail(e.to_string()));
            metrics
                .kv_capacity
                .store(pool.n_positions() as u64, Ordering::Relaxed);
            metrics
                .kv_blocks_total
                .store(pool.n_blocks() as u64, Ordering::Relaxed);
            metrics
                .kv_blocks_free
                .store(pool.n_blocks() as u64, Ordering::Relaxed);
            metrics
                .kv_bytes
                .store(pool.memory_bytes() as u64, Ordering::Relaxed);
            ready2.store(true, Ordering::Release);
            eprintln!(
                "sparetire: model ready ({} parallel sequences of up to {n_ctx} tokens; KV cache {} blocks of {} = {} positions, {:.1} MiB, {})",
                slots.len(),
                pool.n_blocks(),
                sparetire_models::kv_cache::BLOCK_SIZE,
                pool.n_positions(),
                pool.memory_bytes() as f64 / (1 << 20) as f64,
                pool.types(),
            );
            Batcher {
                engine: &engine,
                n_ctx,
                pool,
                slots,
                rx,
                queued: queued2,
                arrivals: 0,
                metrics,
            }
            .run();
        });
        Worker {
            tx: Some(tx),
            thread: Some(thread),
            ready,
            closing: AtomicBool::new(false),
            queued,
            max_queue,
        }
    }

    /// Whether the model is loaded.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Requests waiting for a slot.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Refuses new jobs from now on (shutting down); running ones continue.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Queues a job, or refuses it at once when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(ApiError::ShuttingDown);
        }
        if !self.ready() {
            return Err(ApiError::Loading);
        }
        let Some(tx) = &self.tx else {
            return Err(ApiError::ShuttingDown);
        };
        self.queued.fetch_add(1, Ordering::AcqRel);
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                Err(ApiError::Overloaded(self.max_queue))
            }
            Err(TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                Err(ApiError::Internal("the engine thread has stopped".into()))
            }
        }
    }
}

impl Drop for Worker {
    /// Closes the queue and waits for the engine thread to finish its steps
    /// and drop the engine (under mpirun that tells the other ranks to stop).
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One running sequence's place: its state (block table into the shared
/// pool) and the request it serves.
struct Slot {
    state: State,
    active: Option<Active>,
    /// When its last request finished (its cache is kept for reuse until
    /// the blocks are needed; the oldest idle cache goes first).
    idle_since: u64,
}

/// The request a slot is serving.
struct Active {
    events: mpsc::Sender<Event>,
    /// Tokens that must be in the KV cache before the next decode step: the
    /// prompt, or after a preemption everything evaluated so far.
    input: Vec<u32>,
    /// Prompt tokens (for usage).
    n_prompt: usize,
    gen: Generator,
    /// The sampled token to feed next (decoding).
    next: Option<u32>,
    /// Whether its cache is still to be matched against published prefixes.
    fresh: bool,
    age: u64,
    arrived: Instant,
    /// When the first text went out.
    first_text: Option<Instant>,
}

impl Slot {
    fn need(&self) -> Need {
        match &self.active {
            None => Need::Idle,
            Some(a) if self.state.n_past < a.input.len() => Need::Prefill {
                pending: a.input.len() - self.state.n_past,
                age: a.age,
            },
            Some(a) if a.next.is_some() => Need::Decode,
            Some(_) => Need::Idle,
        }
    }

    /// Ends the request (if any) and gives its blocks back at once.
    fn release(&mut self) {
        self.active = None;
        self.state.truncate(0);
    }

    /// Ends a request that completed, keeping its cache: a later request that
    /// starts the same way (the next turn of the conversation, the same
    /// prompt again) reuses it to the token, not only whole published blocks.
    fn finish(&mut self, tick: u64) {
        self.active = None;
        self.idle_since = tick;
    }
}

struct Batcher<'e> {
    engine: &'e Engine,
    /// Most positions one request may use.
    n_ctx: usize,
    pool: Arc<KvPool>,
    slots: Vec<Slot>,
    rx: Receiver<Job>,
    queued: Arc<AtomicUsize>,
    arrivals: u64,
    metrics: Arc<Metrics>,
}

impl Batcher<'_> {
    fn run(mut self) {
        loop {
            // Admit waiting requests into free slots (block only when there is nothing to do).
            while self.slots.iter().any(|s| s.active.is_none()) {
                let job = if self.slots.iter().any(|s| s.active.is_some()) {
                    match self.rx.try_recv() {
                        Ok(j) => j,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return,
                    }
                } else {
                    self.publish_metrics();
                    match self.rx.recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    }
                };
                self.queued.fetch_sub(1, Ordering::AcqRel);
                let events = job.events.clone();
                if let Err(e) = self.admit(job) {
                    let _ = events.blocking_send(Event::Error(e));
                }
            }
            if let Err(e) = self.step() {
                // A failed forward pass fails every running request, not the server.
                for slot in &mut self.slots {
                    if let Some(a) = slot.active.take() {
                        let _ = a
                            .events
                            .blocking_send(Event::Error(ApiError::Internal(e.to_string())));
                    }
                    slot.release();
                }
            }
            self.publish_metrics();
        }
    }

    /// Tokenizes and checks a request, and gives it a free slot.
    fn admit(&mut self, job: Job) -> Result<(), ApiError> {
        let engine = self.engine;
        let internal = |e: RuntimeError| ApiError::Internal(e.to_string());
        let (prompt, field) = match &job.prompt {
            Prompt::Chat(msgs) => {
                let text = engine
                    .render_chat(msgs)
                    .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
                (engine.tokenize_chat(&text).map_err(internal)?, "messages")
            }
            Prompt::Text(t) => (engine.tokenize_raw(t).map_err(internal)?, "prompt"),
        };
        if prompt.is_empty() {
            return Err(ApiError::invalid(
                "prompt",
                "the prompt is empty (no tokens)",
            ));
        }
        let n_ctx = self.n_ctx;
        let wanted = prompt.len() + job.params.max_tokens.unwrap_or(0);
        if prompt.len() >= n_ctx || wanted > n_ctx {
            return Err(ApiError::Invalid {
                message: format!(
                    "this model's context holds {n_ctx} tokens, but the request needs {wanted} ({} in the prompt + {} to generate); shorten the prompt or lower max_tokens",
                    prompt.len(),
                    job.params.max_tokens.unwrap_or(0)
                ),
                param: Some(field.into()),
            });
        }
        // The free slot whose kept cache shares the longest prefix with the prompt; among
        // equals, the one idle longest (its cache is the least likely to be wanted).
        let common = |s: &Slot| {
            s.state
                .kv
                .tokens()
                .iter()
                .zip(&prompt)
                .take_while(|(a, b)| a == b)
                .count()
        };
        let Some(slot) = self
            .slots
            .iter_mut()
            .filter(|s| s.active.is_none())
            .max_by_key(|s| (common(s), std::cmp::Reverse(s.idle_since)))
        else {
            return Err(ApiError::Internal("no free slot".into()));
        };
        self.arrivals += 1;
        slot.active = Some(Active {
            events: job.events,
            gen: Generator::new(&job.params),
            n_prompt: prompt.len(),
            input: prompt,
            next: None,
            fresh: true,
            age: self.arrivals,
            arrived: job.arrived,
            first_text: None,
        });
        let cached = Self::match_prefix(slot);
        self.metrics
            .prompt_tokens_cached
            .fetch_add(cached as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Takes the published blocks that start a fresh sequence's input;
    /// returns the positions reused.
    fn match_prefix(slot: &mut Slot) -> usize {
        let Some(a) = slot.active.as_mut().filter(|a| a.fresh) else {
            return 0;
        };
        a.fresh = false;
        // Logits are needed at the end of the input unless the next token is already known.
        let max = a.input.len() - usize::from(a.next.is_none());
        slot.state.reuse_prefix(&a.input, max)
    }

    /// Takes sequence `i` out of the KV cache: its blocks go back to the pool
    /// (full ones stay findable by prefix) and it is recomputed later.
    fn preempt(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if let Some(a) = slot.active.as_mut() {
            let stored = slot.state.kv.tokens();
            if stored.len() > a.input.len() {
                a.input = stored.to_vec();
            }
            a.fresh = true;
        }
        slot.state.truncate(0);
        self.metrics.preemptions.fetch_add(1, Ordering::Relaxed);
    }

    /// One forward pass over every running sequence, then one sampling step for each that needs it.
    fn step(&mut self) -> Result<(), RuntimeError> {
        // Requests whose client went away stop here, even in the middle of their prompt,
        // and give their blocks back at once.
        for slot in &mut self.slots {
            if slot.active.as_ref().is_some_and(|a| a.events.is_closed()) {
                slot.release();
            }
        }
        for slot in &mut self.slots {
            Self::match_prefix(slot);
        }
        let needs: Vec<Need> = self.slots.iter().map(Slot::need).collect();
        let mut counts = plan(&needs, PREFILL_CHUNK);
        // Make room in the KV cache: preempt the youngest sequences until the step fits.
        loop {
            let needed: usize = self
                .slots
                .iter()
                .zip(&counts)
                .filter(|(_, &c)| c > 0)
                .map(|(s, &c)| s.state.kv.blocks_needed(s.state.n_past + c))
                .sum();
            if needed <= self.pool.available() {
                break;
            }
            // Kept caches of idle slots go first, the oldest first.
            if let Some(idle) = self
                .slots
                .iter_mut()
                .filter(|s| s.active.is_none() && s.state.kv.n_blocks() > 0)
                .min_by_key(|s| s.idle_since)
            {
                idle.release();
                continue;
            }
            let victim = self
                .slots
                .iter()
                .enumerate()
                .filter(|(i, s)| {
                    s.active.is_some() && (counts[*i] > 0 || s.state.kv.n_blocks() > 0)
                })
                .max_by_key(|(_, s)| s.active.as_ref().map_or(0, |a| a.age))
                .map(|(i, _)| i);
            let Some(v) = victim else { break };
            let was_alone = counts.iter().filter(|&&c| c > 0).count() == 1 && counts[v] > 0;
            if was_alone && self.slots[v].state.kv.n_blocks() == 0 {
                // Even alone it does not fit: cannot happen with admission's checks, but
                // fail the request rather than spin.
                if let Some(a) = self.slots[v].active.take() {
                    let _ = a.events.blocking_send(Event::Error(ApiError::Internal(
                        "the KV cache is too small for this request".into(),
                    )));
                }
                counts[v] = 0;
                continue;
            }
            self.preempt(v);
            counts[v] = 0;
        }
        if counts.iter().all(|&c| c == 0) {
            return Ok(());
        }
        // (slot, tokens, wants logits, is the pending decode token)
        let mut feeds: Vec<(usize, Vec<u32>, bool, bool)> = Vec::new();
        for (i, (slot, &count)) in self.slots.iter().zip(&counts).enumerate() {
            let Some(a) = &slot.active else { continue };
            if count == 0 {
                continue;
            }
            let from = slot.state.n_past;
            if from < a.input.len() {
                let to = from + count;
                let wants = to == a.input.len() && a.next.is_none();
                feeds.push((i, a.input[from..to].to_vec(), wants, false));
            } else if let Some(t) = a.next {
                feeds.push((i, vec![t], true, true));
            }
        }
        {
            let mut seqs: Vec<Seq> = Vec::with_capacity(feeds.len());
            let mut feed_iter = feeds.iter().peekable();
            for (i, slot) in self.slots.iter_mut().enumerate() {
                if let Some((_, tokens, wants, _)) = feed_iter.next_if(|f| f.0 == i) {
                    seqs.push(Seq {
                        state: &mut slot.state,
                        tokens,
                        logits: if *wants { Logits::Last } else { Logits::None },
                    });
                }
            }
            self.engine
                .model()
                .forward_batch(self.engine.pool(), &mut seqs)?;
        }
        let tok = self.engine.tokenizer();
        // Final events go out once the finished sequences' blocks are back and
        // the metrics say so (a client that reads /metrics next sees it).
        let mut finished = Vec::new();
        for (i, _, wants, decoded) in feeds {
            let slot = &mut self.slots[i];
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            if decoded {
                a.next = None;
            }
            if !wants {
                continue;
            }
            let step = a.gen.step(tok, slot.state.logits(), slot.state.kv.tokens());
            let lps = a.gen.take_logprobs();
            if !lps.is_empty() && a.events.blocking_send(Event::Logprobs(lps)).is_err() {
                slot.release();
                continue;
            }
            let (text, done) = match step {
                Err(e) => {
                    let _ = a
                        .events
                        .blocking_send(Event::Error(ApiError::Internal(e.to_string())));
                    slot.release();
                    continue;
                }
                Ok(Step::Next { token, text }) => {
                    if slot.state.n_past >= self.n_ctx {
                        let mut t = text;
                        t.push_str(&a.gen.finish());
                        (t, Some(StopReason::ContextFull))
                    } else {
                        a.next = Some(token);
                        (text, None)
                    }
                }
                Ok(Step::Done { reason, text }) => (text, Some(reason)),
            };
            if !text.is_empty() {
                if a.first_text.is_none() {
                    a.first_text = Some(Instant::now());
                    self.metrics.ttft.observe(a.arrived.elapsed().as_secs_f64());
                }
                if a.events.blocking_send(Event::Text(text)).is_err() {
                    // The client went away: free the slot and its blocks.
                    slot.release();
                    continue;
                }
            }
            if let Some(reason) = done {
                let finish_reason = match reason {
                    StopReason::Length | StopReason::ContextFull => "length",
                    _ => "stop",
                };
                let n_gen = a.gen.tokens().len();
                finished.push((
                    a.events.clone(),
                    Event::Done {
                        finish_reason,
                        prompt_tokens: a.n_prompt,
                        completion_tokens: n_gen,
                    },
                ));
                let m = &self.metrics;
                m.prompt_tokens
                    .fetch_add(a.n_prompt as u64, Ordering::Relaxed);
                m.generated_tokens
                    .fetch_add(n_gen as u64, Ordering::Relaxed);
                if let (Some(t), true) = (a.first_text, n_gen > 1) {
                    m.tpot
                        .observe(t.elapsed().as_secs_f64() / (n_gen - 1) as f64);
                }
                slot.finish(self.arrivals);
            }
        }
        if !finished.is_empty() {
            self.publish_metrics();
            for (events, done) in finished {
                let _ = events.blocking_send(done);
            }
        }
        Ok(())
    }

    /// Running sequences and KV-cache occupancy, for `/metrics`: blocks held
    /// by running sequences; cached ones (kept by idle slots, or published and
    /// held by nobody) that are given back when needed; free ones.
    fn publish_metrics(&self) {
        let m = &self.metrics;
        let running: Vec<&Slot> = self.slots.iter().filter(|s| s.active.is_some()).collect();
        let used: usize = running.iter().map(|s| s.state.n_past).sum();
        let held: std::collections::HashSet<u32> = running
            .iter()
            .flat_map(|s| s.state.kv.blocks().iter().copied())
            .collect();
        let b = self.pool.stats();
        m.running.store(running.len() as u64, Ordering::Relaxed);
        m.kv_used.store(used as u64, Ordering::Relaxed);
        m.kv_blocks_held.store(held.len() as u64, Ordering::Relaxed);
        let kept = b.held.saturating_sub(held.len());
        m.kv_blocks_cached
            .store((b.cached + kept) as u64, Ordering::Relaxed);
        m.kv_blocks_free.store(b.free as u64, Ordering::Relaxed);
    }
}
