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

/// The per-sequence state of generation.
pub struct Generator {
    sampler: Sampler,
    stops: StopMatcher,
    utf8: StreamDecoder,
    tokens: Vec<u32>,
    max_tokens: Option<usize>,
    stop_at_eog: bool,
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
