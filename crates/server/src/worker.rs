//! The engine thread: it owns the model and its one session, and runs queued
//! requests one after another, streaming their text back over a channel.
//!
//! Requests wait in a bounded queue; a full queue is refused at once (429)
//! rather than left hanging. Consecutive requests reuse the KV cache of their
//! common prefix (a shared system prompt, a conversation's earlier turns).
//! Continuous batching across requests is future work (see the server issue).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use sparetire_runtime::{Engine, GenParams, RuntimeError, StopReason};
use sparetire_tokenizer::ChatMessage;
use tokio::sync::mpsc;

use crate::error::ApiError;

/// What to run.
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
}

/// What the engine thread reports about a job.
#[derive(Debug)]
pub enum Event {
    /// Generated text, in order.
    Text(String),
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
    /// Starts the engine thread; `load` runs on it. A model that fails to load ends the process.
    pub fn start(
        load: Box<dyn FnOnce() -> Result<(Engine, usize), String> + Send>,
        max_queue: usize,
    ) -> Worker {
        let (tx, rx) = sync_channel::<Job>(max_queue);
        let ready = Arc::new(AtomicBool::new(false));
        let queued = Arc::new(AtomicUsize::new(0));
        let (ready2, queued2) = (ready.clone(), queued.clone());
        std::thread::spawn(move || {
            let (engine, n_ctx) = match load() {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::exit(1);
                }
            };
            let mut session = match engine.session(n_ctx) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::exit(1);
                }
            };
            ready2.store(true, Ordering::Release);
            eprintln!("sparetire: model ready");
            for job in rx {
                queued2.fetch_sub(1, Ordering::AcqRel);
                let events = job.events.clone();
                let result = run(&engine, &mut session, n_ctx, job);
                if let Err(e) = result {
                    let _ = events.blocking_send(Event::Error(e));
                }
            }
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

    /// Requests waiting for the engine.
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

fn run(
    engine: &Engine,
    session: &mut sparetire_runtime::Session<'_>,
    n_ctx: usize,
    job: Job,
) -> Result<(), ApiError> {
    let internal = |e: RuntimeError| ApiError::Internal(e.to_string());
    let tokens = match &job.prompt {
        Prompt::Chat(msgs) => {
            let text = engine
                .render_chat(msgs)
                .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
            engine.tokenize_chat(&text).map_err(internal)?
        }
        Prompt::Text(t) => engine.tokenize_raw(t).map_err(internal)?,
    };
    if tokens.is_empty() {
        return Err(ApiError::invalid(
            "prompt",
            "the prompt is empty (no tokens)",
        ));
    }
    let field = match job.prompt {
        Prompt::Chat(_) => "messages",
        Prompt::Text(_) => "prompt",
    };
    let wanted = tokens.len() + job.params.max_tokens.unwrap_or(0);
    if tokens.len() >= n_ctx || wanted > n_ctx {
        return Err(ApiError::Invalid {
            message: format!(
                "this model's context holds {n_ctx} tokens, but the request needs {wanted} ({} in the prompt + {} to generate); shorten the prompt or lower max_tokens",
                tokens.len(),
                job.params.max_tokens.unwrap_or(0)
            ),
            param: Some(field.into()),
        });
    }
    let events = &job.events;
    let mut on_text = |s: &str| events.blocking_send(Event::Text(s.to_owned())).is_ok();
    let g = session
        .generate(&tokens, &job.params, &mut on_text)
        .map_err(internal)?;
    let finish_reason = match g.stop_reason {
        StopReason::Length | StopReason::ContextFull => "length",
        _ => "stop",
    };
    let _ = events.blocking_send(Event::Done {
        finish_reason,
        prompt_tokens: tokens.len(),
        completion_tokens: g.tokens.len(),
    });
    Ok(())
}
