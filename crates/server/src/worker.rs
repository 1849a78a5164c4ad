//! The engine thread: it owns the model and `--parallel` sequence slots, and
//! runs them with continuous batching: at every step, requests join and
//! leave, and one forward pass carries every running sequence's next token
//! together with chunks of the prompts being read ([`crate::scheduler::plan`]).
//! Text streams back to each request over its own channel.
//!
//! Requests wait in a bounded queue; a full queue is refused at once (429)
//! rather than left hanging. A new request takes the free slot whose cache
//! shares the longest prefix with its prompt (a shared system prompt, a
//! conversation's earlier turns) and evaluates only the rest.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use sparetire_models::{Logits, Seq, State};
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

/// A handle to the engine thread.
pub struct Worker {
    tx: SyncSender<Job>,
    ready: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
    max_queue: usize,
}

impl Worker {
    /// Starts the engine thread with `n_slots` sequence slots; `load` runs on
    /// it and returns the engine and the context size of each slot. A model
    /// that fails to load ends the process.
    pub fn start(
        load: Box<dyn FnOnce() -> Result<(Engine, usize), String> + Send>,
        n_slots: usize,
        max_queue: usize,
        metrics: Arc<Metrics>,
    ) -> Worker {
        let (tx, rx) = sync_channel::<Job>(max_queue);
        let ready = Arc::new(AtomicBool::new(false));
        let queued = Arc::new(AtomicUsize::new(0));
        let (ready2, queued2) = (ready.clone(), queued.clone());
        std::thread::spawn(move || {
            let fail = |e: String| -> ! {
                eprintln!("error: {e}");
                std::process::exit(1)
            };
            let (engine, n_ctx) = load().unwrap_or_else(|e| fail(e));
            let slots = (0..n_slots.max(1))
                .map(|_| engine.model().new_state(n_ctx).map(Slot::new))
                .collect::<Result<Vec<_>, _>>()
                .unwrap_or_else(|e| fail(e.to_string()));
            metrics
                .kv_capacity
                .store((slots.len() * n_ctx) as u64, Ordering::Relaxed);
            ready2.store(true, Ordering::Release);
            eprintln!(
                "sparetire: model ready ({} parallel sequences of {n_ctx} tokens)",
                slots.len()
            );
            Batcher {
                engine: &engine,
                n_ctx,
                slots,
                rx,
                queued: queued2,
                arrivals: 0,
                metrics,
            }
            .run();
        });
        Worker {
            tx,
            ready,
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

    /// Queues a job, or refuses it at once when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        if !self.ready() {
            return Err(ApiError::Loading);
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(job) {
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

/// One sequence slot: its KV cache, the tokens in it, and the request it serves.
struct Slot {
    state: State,
    /// Tokens in the KV cache, in order.
    tokens: Vec<u32>,
    active: Option<Active>,
}

/// The request a slot is serving.
struct Active {
    events: mpsc::Sender<Event>,
    prompt: Vec<u32>,
    gen: Generator,
    /// The sampled token to feed next (decoding).
    next: Option<u32>,
    age: u64,
    arrived: Instant,
    /// When the first text went out.
    first_text: Option<Instant>,
}

impl Slot {
    fn new(state: State) -> Slot {
        Slot {
            state,
            tokens: Vec::new(),
            active: None,
        }
    }

    fn need(&self) -> Need {
        match &self.active {
            None => Need::Idle,
            Some(a) if a.next.is_some() => Need::Decode,
            Some(a) => Need::Prefill {
                pending: a.prompt.len() - self.tokens.len(),
                age: a.age,
            },
        }
    }
}

struct Batcher<'e> {
    engine: &'e Engine,
    n_ctx: usize,
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
                    slot.state.truncate(0);
                    slot.tokens.clear();
                }
            }
        }
    }

    /// Tokenizes and checks a request, and gives it the free slot that already holds most of its prompt.
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
        let common = |s: &Slot| {
            s.tokens
                .iter()
                .zip(&prompt)
                .take_while(|(a, b)| a == b)
                .count()
        };
        let Some(slot) = self
            .slots
            .iter_mut()
            .filter(|s| s.active.is_none())
            .max_by_key(|s| common(s))
        else {
            return Err(ApiError::Internal("no free slot".into()));
        };
        // Reuse the cached prefix, but always evaluate at least the last prompt token.
        let reuse = common(slot).min(prompt.len() - 1);
        slot.state.truncate(reuse);
        slot.tokens.truncate(reuse);
        self.metrics
            .prompt_tokens_cached
            .fetch_add(reuse as u64, Ordering::Relaxed);
        self.arrivals += 1;
        slot.active = Some(Active {
            events: job.events,
            gen: Generator::new(&job.params),
            prompt,
            next: None,
            age: self.arrivals,
            arrived: job.arrived,
            first_text: None,
        });
        Ok(())
    }

    /// One forward pass over every running sequence, then one sampling step for each that needs it.
    fn step(&mut self) -> Result<(), RuntimeError> {
        // Requests whose client went away stop here, even in the middle of their prompt.
        for slot in &mut self.slots {
            if slot.active.as_ref().is_some_and(|a| a.events.is_closed()) {
                slot.active = None;
            }
        }
        let needs: Vec<Need> = self.slots.iter().map(Slot::need).collect();
        let counts = plan(&needs, PREFILL_CHUNK);
        if counts.iter().all(|&c| c == 0) {
            return Ok(());
        }
        let mut feeds: Vec<(usize, Vec<u32>, bool)> = Vec::new(); // (slot, tokens, wants logits)
        for (i, (slot, &count)) in self.slots.iter().zip(&counts).enumerate() {
            let Some(a) = &slot.active else { continue };
            if count == 0 {
                continue;
            }
            match a.next {
                Some(t) => feeds.push((i, vec![t], true)),
                None => {
                    let from = slot.tokens.len();
                    let to = from + count;
                    feeds.push((i, a.prompt[from..to].to_vec(), to == a.prompt.len()));
                }
            }
        }
        {
            let mut seqs: Vec<Seq> = Vec::with_capacity(feeds.len());
            let mut feed_iter = feeds.iter().peekable();
            for (i, slot) in self.slots.iter_mut().enumerate() {
                if let Some((_, tokens, wants)) = feed_iter.next_if(|f| f.0 == i) {
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
        for (i, tokens, wants) in feeds {
            let slot = &mut self.slots[i];
            slot.tokens.extend_from_slice(&tokens);
            if !wants {
                continue;
            }
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            let step = a.gen.step(tok, slot.state.logits(), &slot.tokens);
            let lps = a.gen.take_logprobs();
            if !lps.is_empty() && a.events.blocking_send(Event::Logprobs(lps)).is_err() {
                slot.active = None;
                continue;
            }
            let (text, done) = match step {
                Err(e) => {
                    let _ = a
                        .events
                        .blocking_send(Event::Error(ApiError::Internal(e.to_string())));
                    slot.active = None;
                    continue;
                }
                Ok(Step::Next { token, text }) => {
                    if slot.tokens.len() >= self.n_ctx {
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
                    // The client went away: free the slot.
                    slot.active = None;
                    continue;
                }
            }
            if let Some(reason) = done {
                let finish_reason = match reason {
                    StopReason::Length | StopReason::ContextFull => "length",
                    _ => "stop",
                };
                let n_gen = a.gen.tokens().len();
                let _ = a.events.blocking_send(Event::Done {
                    finish_reason,
                    prompt_tokens: a.prompt.len(),
                    completion_tokens: n_gen,
                });
                let m = &self.metrics;
                m.prompt_tokens
                    .fetch_add(a.prompt.len() as u64, Ordering::Relaxed);
                m.generated_tokens
                    .fetch_add(n_gen as u64, Ordering::Relaxed);
                if let (Some(t), true) = (a.first_text, n_gen > 1) {
                    m.tpot
                        .observe(t.elapsed().as_secs_f64() / (n_gen - 1) as f64);
                }
                slot.active = None;
            }
        }
        let running = self.slots.iter().filter(|s| s.active.is_some()).count();
        let used: usize = self.slots.iter().map(|s| s.tokens.len()).sum();
        self.metrics
            .running
            .store(running as u64, Ordering::Relaxed);
        self.metrics.kv_used.store(used as u64, Ordering::Relaxed);
        Ok(())
    }
}
