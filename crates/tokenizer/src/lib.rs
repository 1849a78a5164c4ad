//! Tokenizers of GGUF models, matching llama.cpp token for token.
//!
//! - [`Tokenizer`] is built from a GGUF file's `tokenizer.*` metadata and turns text into token
//!   ids ([`Tokenizer::encode`], like `llama_tokenize`) and ids back into bytes
//!   ([`Tokenizer::token_to_piece`], like `llama_token_to_piece`). Two algorithms are supported:
//!   byte-level BPE (`gpt2`, e.g. SmolLM2, Llama 3, Qwen2; see `bpe.rs` and `pretokenize.rs`) and
//!   SentencePiece-style merging (`llama`, e.g. Gemma 3; see `spm.rs`).
//! - [`StreamDecoder`] turns the bytes of generated tokens into text as it becomes valid UTF-8.
//! - [`ChatTemplate`] renders a conversation with the model's Jinja chat template.
//!
//! Nothing here panics on malformed input or metadata: bad files give a [`TokenizerError`].
#![deny(missing_docs)]

mod bpe;
mod chat_template;
mod pretokenize;
mod spm;
mod stream;
#[rustfmt::skip]
mod unicode_table;
mod vocab;

use sparetire_formats::gguf::GgufFile;

pub use chat_template::{ChatMessage, ChatTemplate};
pub use stream::StreamDecoder;

use bpe::Bpe;
use vocab::{attr, partition, Fragment, Kind, Vocab};

/// Everything that can go wrong loading a tokenizer, tokenizing, or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required metadata key is absent.
    #[error("GGUF metadata has no `{0}`")]
    MissingKey(&'static str),
    /// A metadata key has the wrong type or an impossible value.
    #[error("GGUF metadata `{key}` is invalid: {reason}")]
    InvalidMetadata {
        /// The key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `tokenizer.ggml.model` names an algorithm this crate does not implement.
    #[error("unsupported tokenizer model `{0}` (tokenizer.ggml.model); supported: gpt2, llama")]
    UnsupportedModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not implement.
    #[error("unknown pre-tokenizer `{name}` (tokenizer.ggml.pre); supported: {supported}")]
    UnknownPreTokenizer {
        /// The name in the file.
        name: String,
        /// The names this crate supports, comma-separated.
        supported: String,
    },
    /// A pre-tokenizer regex failed to compile or to run (e.g. its backtracking limit).
    #[error("pre-tokenizer regex `{pattern}`: {reason}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// The regex engine's message.
        reason: String,
    },
    /// The metadata asks for a BOS/EOS token to be added but defines none.
    #[error("the model adds a {0} token but does not define one")]
    MissingSpecialToken(&'static str),
    /// A chat template failed to parse or to render.
    #[error("chat template: {0}")]
    Template(String),
}

/// A model's tokenizer: vocabulary, special tokens, and the algorithm its metadata names.
#[derive(Debug)]
pub struct Tokenizer {
    vocab: Vocab,
    /// Present for BPE vocabularies.
    bpe: Option<Bpe>,
}

impl Tokenizer {
    /// Loads the tokenizer from a GGUF file's metadata (`tokenizer.ggml.*`,
    /// `tokenizer.chat_template`), applying the defaults and fix-ups llama.cpp applies.
    pub fn from_gguf(f: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        let mut vocab = Vocab::from_gguf(f)?;
        let (bpe, default_add_bos) = match vocab.kind {
            Kind::Bpe => {
                let (bpe, settings) = Bpe::new(&vocab)?;
                (Some(bpe), settings.add_bos)
            }
            Kind::Spm => (None, true),
        };
        vocab.set_add_flags(f, default_add_bos);
        vocab.finish();
        Ok(Tokenizer { vocab, bpe })
    }

    /// Tokenizes `text` exactly as `llama_tokenize(vocab, text, add_special, parse_special)`:
    /// `add_special` adds BOS/EOS where the metadata says to; `parse_special` turns the text of
    /// control tokens (e.g. `<|im_start|>`) into those tokens. User-defined tokens are always
    /// recognised.
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let v = &self.vocab;
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && v.add_bos {
            out.push(
                v.special
                    .bos
                    .ok_or(TokenizerError::MissingSpecialToken("BOS"))?,
            );
        }
        // SentencePiece prefixes a space to text at the start and after each special token.
        let mut after_special = true;
        for fragment in partition(v, text, parse_special) {
            match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text { start, end } => {
                    let raw = text.get(start..end).unwrap_or("");
                    match &self.bpe {
                        Some(bpe) => bpe.encode(v, raw, &mut out)?,
                        None => {
                            let prefixed;
                            let raw = if v.add_space_prefix && after_special {
                                prefixed = format!(" {raw}");
                                prefixed.as_str()
                            } else {
                                raw
                            };
                            spm::encode(v, raw, &mut out);
                        }
                    }
                    after_special = false;
                }
            }
        }
        if add_special && v.add_eos {
            out.push(
                v.special
                    .eos
                    .ok_or(TokenizerError::MissingSpecialToken("EOS"))?,
            );
        }
        Ok(out)
    }

    /// The bytes a token stands for, as `llama_token_to_piece(.., special = false)`: control
    /// and unknown tokens give nothing. Unknown ids give nothing.
    pub fn token_to_piece(&self, id: u32) -> Vec<u8> {
        self.token_to_piece_special(id, false)
    }

    /// The bytes a token stands for; with `special`, control and unknown tokens give their text.
    /// BPE pieces are byte-decoded (GPT-2's byte-to-unicode map); SentencePiece pieces have `▁`
    /// turned into spaces and `<0xNN>` byte tokens turned into the raw byte.
    pub fn token_to_piece_special(&self, id: u32, special: bool) -> Vec<u8> {
        let v = &self.vocab;
        let (Some(text), a) = (v.text(id), v.attr(id)) else {
            return Vec::new();
        };
        if !special && a & (attr::UNKNOWN | attr::CONTROL) != 0 {
            return Vec::new();
        }
        if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
            return text.as_bytes().to_vec();
        }
        if a & attr::NORMAL != 0 {
            return match &self.bpe {
                Some(bpe) => {
                    let mut out = Vec::with_capacity(text.len());
                    bpe.decode_text(text, &mut out);
                    out
                }
                None => text.replace(spm::SPACE, " ").into_bytes(),
            };
        }
        if a & attr::BYTE != 0 {
            return vec![spm::token_byte(text)];
        }
        Vec::new()
    }

    /// The text of `ids` (pieces without control tokens), invalid UTF-8 replaced by U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.token_to_piece(id)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.vocab.texts.len()
    }

    /// The beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.vocab.special.bos
    }

    /// The end-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.vocab.special.eos
    }

    /// The padding token, if the model names one.
    pub fn pad(&self) -> Option<u32> {
        self.vocab.special.pad
    }

    /// The end-of-turn token, if the model has one (given or detected by its text).
    pub fn eot(&self) -> Option<u32> {
        self.vocab.special.eot
    }

    /// Whether generation should stop at `id`: EOS, EOT, EOM, and, like llama.cpp, tokens whose
    /// text marks an end (`<|im_end|>`, `<|endoftext|>`, `<end_of_turn>`, `<|eot_id|>`, …).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.contains(&id)
    }

    /// All end-of-generation tokens, ascending.
    pub fn eog_tokens(&self) -> Vec<u32> {
        self.vocab.eog.iter().copied().collect()
    }

    /// Whether a control token (not text; hidden by [`Tokenizer::token_to_piece`]).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.attr(id) & attr::CONTROL != 0
    }

    /// Whether [`Tokenizer::encode`] with `add_special` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }

    /// Whether [`Tokenizer::encode`] with `add_special` ends with EOS.
    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }

    /// The GGUF's Jinja chat template (`tokenizer.chat_template`), if it has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.vocab.chat_template.as_deref()
    }

    /// A token's text as stored in the vocabulary (`Ġ`/`▁` and all).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.text(id)
    }

    /// The id of the token whose vocabulary text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.id(text)
    }
}
