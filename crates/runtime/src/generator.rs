//! Turning logits into tokens and text, one step at a time: sampling, the
//! end-of-generation and length limits, stop strings and UTF-8 streaming.
//! [`crate::Session::generate`] drives one of these; the server drives one
//! per sequence of its batch.

use sparetire_tokenizer::{StreamDecoder, Tokenizer};

use crate::sampler::Sampler;
use crate::stop::{StopCheck, StopMatcher};
use crate::{GenParams, RuntimeError, StopReason};

/// What one step decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Feed `token` next; `text` may be shown now.
    Next {
        /// The sampled token.
        token: u32,
        /// Text that became final.
        text: String,
    },
    /// Generation is over; `text` is the last of it.
    Done {
        /// Why.
        reason: StopReason,
        /// The final text.
        text: String,
    },
}

/// The log-probability of one generated token, with the most likely alternatives.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    /// The token id.
    pub token: u32,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its natural-log probability under the model.
    pub logprob: f32,
    /// The most likely tokens at this step (id, bytes, logprob), best first.
    pub top: Vec<(u32, Vec<u8>, f32)>,
}

/// The per-sequence state of generation.
pub struct Generator {
    sampler: Sampler,
    stops: StopMatcher,
    utf8: StreamDecoder,
    tokens: Vec<u32>,
    max_tokens: Option<usize>,
    stop_at_eog: bool,
    /// Report log-probabilities with this many alternatives.
    logprobs: Option<usize>,
    pending_logprobs: Vec<TokenLogprob>,
}

impl Generator {
    /// A generator for `params`.
    pub fn new(params: &GenParams) -> Generator {
        Generator {
            sampler: Sampler::new(params.sampler.clone()),
            stops: StopMatcher::new(&params.stop),
            utf8: StreamDecoder::new(),
            tokens: Vec::new(),
            max_tokens: params.max_tokens,
            stop_at_eog: params.stop_at_eog,
            logprobs: params.logprobs,
            pending_logprobs: Vec::new(),
        }
    }

    /// Tokens generated so far (an end-of-generation token excluded).
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    fn at_limit(&self) -> bool {
        self.max_tokens.is_some_and(|m| self.tokens.len() >= m)
    }

    /// Samples the next token from `logits`; `history` is what the sequence
    /// holds so far (for the repetition penalty).
    pub fn step(
        &mut self,
        tok: &Tokenizer,
        logits: &[f32],
        history: &[u32],
    ) -> Result<Step, RuntimeError> {
        if self.at_limit() {
            return Ok(Step::Done {
                reason: StopReason::Length,
                text: self.finish(),
            });
        }
        if !logits.iter().any(|x| x.is_finite()) {
            return Err(RuntimeError::Invalid(
                "the model produced no finite logits (NaN or infinite weights in the file?)".into(),
            ));
        }
        let token = self.sampler.sample(logits, history);
        if self.stop_at_eog && tok.is_eog(token) {
            return Ok(Step::Done {
                reason: StopReason::Eog,
                text: self.finish(),
            });
        }
        self.tokens.push(token);
        if let Some(n_top) = self.logprobs {
            self.pending_logprobs
                .push(token_logprob(tok, logits, token, n_top));
        }
        let piece = self.utf8.push(&tok.token_to_piece(token));
        match self.stops.push(&piece) {
            StopCheck::Stop(text) => Ok(Step::Done {
                reason: StopReason::StopString,
                text,
            }),
            StopCheck::Continue(mut text) if self.at_limit() => {
                text.push_str(&self.finish());
                Ok(Step::Done {
                    reason: StopReason::Length,
                    text,
                })
            }
            StopCheck::Continue(text) => Ok(Step::Next { token, text }),
        }
    }

    /// The log-probabilities of the tokens generated since the last call (when asked for).
    pub fn take_logprobs(&mut self) -> Vec<TokenLogprob> {
        std::mem::take(&mut self.pending_logprobs)
    }

    /// Ends generation early (context full, cancelled): the text still held back.
    pub fn finish(&mut self) -> String {
        let tail = self.utf8.flush();
        let mut last = match self.stops.push(&tail) {
            StopCheck::Continue(s) | StopCheck::Stop(s) => s,
        };
        last.push_str(&self.stops.flush());
        last
    }
}

/// Log-softmax of `logits` at `token`, and the `n_top` best tokens.
fn token_logprob(tok: &Tokenizer, logits: &[f32], token: u32, n_top: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = logits
        .iter()
        .map(|&l| ((l - max) as f64).exp())
        .sum::<f64>()
        .ln() as f32
        + max;
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(n_top + 1);
    if n_top > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if top.len() < n_top || l > top[top.len() - 1].1 {
                let at = top.partition_point(|&(_, x)| x >= l);
                top.insert(at, (i as u32, l));
                top.truncate(n_top);
            }
        }
    }
    TokenLogprob {
        token,
        bytes: tok.token_to_piece(token),
        logprob: logits[token as usize] - lse,
        top: top
            .into_iter()
            .map(|(id, l)| (id, tok.token_to_piece(id), l - lse))
            .collect(),
    }
}
