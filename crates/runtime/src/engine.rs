//! The engine: a loaded model with its tokenizer and thread pool, and
//! sessions that generate text from it.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sparetire_formats::gguf::GgufFile;
use sparetire_models::{Arithmetic, KvTypes, Logits, Model, State};
use sparetire_quant::ThreadPool;
use sparetire_tokenizer::{ChatMessage, ChatTemplate, Tokenizer};

use crate::generator::{Generator, Step};
use crate::sampler::SamplerConfig;
use crate::RuntimeError;

/// Most tokens evaluated in one forward call while reading a prompt
/// (llama.cpp's default `n_batch`/`n_ubatch`, which its numerics depend on).
pub const PREFILL_CHUNK: usize = 512;

/// A model ready to run.
pub struct Engine {
    file: Arc<GgufFile>,
    model: Box<dyn Model>,
    tokenizer: Tokenizer,
    /// The chat template, or why the file's one does not compile (reported
    /// only when a chat is rendered, so raw completion still works).
    template: Result<ChatTemplate, String>,
    pool: ThreadPool,
    /// How sessions' KV caches store their rows.
    kv_types: KvTypes,
}

impl Engine {
    /// Opens the GGUF at `path` and prepares it to run on `n_threads` threads.
    pub fn load(path: &Path, n_threads: usize) -> Result<Engine, RuntimeError> {
        let file = Arc::new(GgufFile::open(path)?);
        let model = sparetire_models::load(file.clone())?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        if tokenizer.n_vocab() > model.hparams().n_vocab {
            return Err(RuntimeError::Invalid(format!(
                "the tokenizer has {} tokens but the model's embedding only {}",
                tokenizer.n_vocab(),
                model.hparams().n_vocab
            )));
        }
        let template = match tokenizer.chat_template() {
            Some(src) => {
                ChatTemplate::new(src).map_err(|e| format!("the model's chat template: {e}"))
            }
            None => Ok(ChatTemplate::builtin(&model.hparams().arch)),
        };
        Ok(Engine {
            file,
            model,
            tokenizer,
            template,
            pool: ThreadPool::new(n_threads.max(1)),
            kv_types: KvTypes::F16,
        })
    }

    /// The same engine with its model replaced by `f(model)` (e.g. wrapped to
    /// run across the ranks of a cluster).
    pub fn map_model(self, f: impl FnOnce(Box<dyn Model>) -> Box<dyn Model>) -> Engine {
        Engine {
            model: f(self.model),
            ..self
        }
    }

    /// [`Self::map_model`] with a step that can fail (the engine is dropped then).
    pub fn try_map_model<E>(
        self,
        f: impl FnOnce(Box<dyn Model>) -> Result<Box<dyn Model>, E>,
    ) -> Result<Engine, E> {
        Ok(Engine {
            model: f(self.model)?,
            ..self
        })
    }

    /// The model file.
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// The model.
    pub fn model(&self) -> &dyn Model {
        &*self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The thread pool.
    pub fn pool(&self) -> &ThreadPool {
        &self.pool
    }

    /// Sets how the KV caches of new sessions (and perplexity runs) store
    /// their rows (`--cache-type-k/-v`); fails with a clear error if the
    /// model's heads are not whole blocks of those types.
    pub fn set_kv_types(&mut self, types: KvTypes) -> Result<(), RuntimeError> {
        sparetire_models::kv_cache::check_types(self.model.hparams(), types)?;
        self.kv_types = types;
        Ok(())
    }

    /// How new sessions' KV caches store their rows.
    pub fn kv_types(&self) -> KvTypes {
        self.kv_types
    }

    /// Replaces the chat template (e.g. from `--chat-template FILE`).
    pub fn set_chat_template(&mut self, template: ChatTemplate) {
        self.template = Ok(template);
    }

    /// Renders a conversation with the model's chat template, ready for the assistant's turn.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, RuntimeError> {
        let piece = |id: Option<u32>| {
            id.and_then(|i| self.tokenizer.token_text(i))
                .unwrap_or("")
                .to_owned()
        };
        let template = self.template.as_ref().map_err(|e| {
            RuntimeError::Invalid(format!("{e} (use --raw, or --chat-template FILE)"))
        })?;
        Ok(template.render(
            messages,
            true,
            &piece(self.tokenizer.bos()),
            &piece(self.tokenizer.eos()),
        )?)
    }

    /// Tokenizes a chat-rendered prompt: special tokens parsed, BOS added only
    /// if the file asks for it and the template did not already write it.
    pub fn tokenize_chat(&self, rendered: &str) -> Result<Vec<u32>, RuntimeError> {
        let mut toks = self.tokenizer.encode(rendered, false, true)?;
        if let Some(bos) = self.tokenizer.bos() {
            if self.tokenizer.add_bos() && toks.first() != Some(&bos) {
                toks.insert(0, bos);
            }
        }
        Ok(toks)
    }

    /// Tokenizes raw text the way llama.cpp's completion tool does: BOS/EOS
    /// as the metadata says, special tokens in the text parsed.
    pub fn tokenize_raw(&self, text: &str) -> Result<Vec<u32>, RuntimeError> {
        Ok(self.tokenizer.encode(text, true, true)?)
    }

    /// A session holding up to `n_ctx` positions.
    pub fn session(&self, n_ctx: usize) -> Result<Session<'_>, RuntimeError> {
        if n_ctx == 0 {
            return Err(RuntimeError::Invalid(
                "context size must be at least 1".into(),
            ));
        }
        Ok(Session {
            engine: self,
            state: self.model.new_state(n_ctx, self.kv_types)?,
            tokens: Vec::new(),
        })
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenParams {
    /// Most tokens to generate (`None`: until end of generation or a full context).
    pub max_tokens: Option<usize>,
    /// How to pick tokens.
    pub sampler: SamplerConfig,
    /// Strings that end generation; they are not part of the output.
    pub stop: Vec<String>,
    /// Stop at the model's end-of-generation tokens (almost always wanted).
    pub stop_at_eog: bool,
    /// Record each generated token's log-probability with this many alternatives.
    pub logprobs: Option<usize>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    Eog,
    /// A stop string appeared.
    StopString,
    /// `max_tokens` were generated.
    Length,
    /// The context is full.
    ContextFull,
    /// The caller asked to stop.
    Cancelled,
}

impl StopReason {
    /// A short name for JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Eog => "eog",
            StopReason::StopString => "stop",
            StopReason::Length => "length",
            StopReason::ContextFull => "context",
            StopReason::Cancelled => "cancelled",
        }
    }
}

/// Time spent, in the shape llama.cpp reports it.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    /// Prompt tokens evaluated (a reused prefix is not counted).
    pub prompt_n: usize,
    /// Milliseconds spent on them.
    pub prompt_ms: f64,
    /// Tokens generated.
    pub predicted_n: usize,
    /// Milliseconds spent generating.
    pub predicted_ms: f64,
}

impl Timings {
    /// Prompt tokens per second.
    pub fn prompt_per_second(&self) -> f64 {
        per_second(self.prompt_n, self.prompt_ms)
    }
    /// Generated tokens per second.
    pub fn predicted_per_second(&self) -> f64 {
        per_second(self.predicted_n, self.predicted_ms)
    }
}

fn per_second(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 * 1000.0 / ms
    } else {
        0.0
    }
}

/// The result of one generation.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Generated token ids (the end-of-generation token that stopped it excluded).
    pub tokens: Vec<u32>,
    /// Generated text (a stop string excluded).
    pub text: String,
    /// Why it ended.
    pub stop_reason: StopReason,
    /// Log-probabilities of the generated tokens, when `GenParams::logprobs` asked for them.
    pub logprobs: Vec<crate::TokenLogprob>,
    /// Time spent.
    pub timings: Timings,
}

/// One sequence: its KV cache and the tokens in it. Successive calls to
/// [`Session::generate`] reuse the longest common prefix (a chat's history).
pub struct Session<'e> {
    engine: &'e Engine,
    state: State,
    tokens: Vec<u32>,
}

impl Session<'_> {
    /// Positions the session holds.
    pub fn n_ctx(&self) -> usize {
        self.state.kv.n_ctx()
    }

    /// The tokens currently in the KV cache.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Chooses how batched products compute this session's tokens
    /// ([`Arithmetic::PerToken`] computes exactly as the server does).
    pub fn set_arithmetic(&mut self, arithmetic: Arithmetic) {
        self.state.arithmetic = arithmetic;
    }

    /// Evaluates `prompt` (reusing what is already cached) and generates,
    /// calling `on_text` with each piece of text as it becomes final; it
    /// returns `false` to cancel.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, RuntimeError> {
        let eng = self.engine;
        let n_ctx = self.n_ctx();
        if prompt.is_empty() {
            return Err(RuntimeError::Invalid(
                "the prompt is empty (no tokens)".into(),
            ));
        }
        if prompt.len() >= n_ctx {
            return Err(RuntimeError::PromptTooLong {
                n_prompt: prompt.len(),
                n_ctx,
            });
        }
        params.sampler.validate().map_err(RuntimeError::Invalid)?;

        // Reuse the cached prefix, but always evaluate at least the last prompt token.
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        let reuse = common.min(prompt.len() - 1);
        self.state.truncate(reuse);
        self.tokens.truncate(reuse);

        let t0 = Instant::now();
        let mut timings = Timings::default();
        let rest = &prompt[reuse..];
        for chunk in rest.chunks(PREFILL_CHUNK) {
            eng.model
                .forward(&eng.pool, &mut self.state, chunk, Logits::Last)?;
            self.tokens.extend_from_slice(chunk);
        }
        timings.prompt_n = rest.len();
        timings.prompt_ms = t0.elapsed().as_secs_f64() * 1000.0;

        let t1 = Instant::now();
        let mut gen = Generator::new(params);
        let mut logprobs = Vec::new();
        let mut text = String::new();
        let mut emit = |s: &str, text: &mut String| -> bool {
            text.push_str(s);
            s.is_empty() || on_text(s)
        };
        let reason = loop {
            let step = gen.step(&eng.tokenizer, self.state.logits(), &self.tokens)?;
            logprobs.extend(gen.take_logprobs());
            match step {
                Step::Done { reason, text: last } => {
                    emit(&last, &mut text);
                    break reason;
                }
                Step::Next { token, text: piece } => {
                    if !emit(&piece, &mut text) {
                        break StopReason::Cancelled;
                    }
                    if self.tokens.len() >= n_ctx {
                        let last = gen.finish();
                        emit(&last, &mut text);
                        break StopReason::ContextFull;
                    }
                    eng.model
                        .forward(&eng.pool, &mut self.state, &[token], Logits::Last)?;
                    self.tokens.push(token);
                }
            }
        };
        let out_tokens = gen.tokens().to_vec();
        timings.predicted_n = out_tokens.len();
        timings.predicted_ms = t1.elapsed().as_secs_f64() * 1000.0;
        Ok(Generation {
            tokens: out_tokens,
            text,
            stop_reason: reason,
            logprobs,
            timings,
        })
    }
}
