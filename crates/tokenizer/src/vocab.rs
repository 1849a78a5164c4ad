//! The vocabulary: token texts, scores and attributes, special-token ids, and the rules the
//! reference (llama.cpp) applies when it loads them from GGUF metadata.

use std::collections::{BTreeSet, HashMap};

use sparetire_formats::gguf::GgufFile;

use crate::TokenizerError;

/// Token attribute bits (the reference's `llama_token_attr`).
pub(crate) mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    pub const LSTRIP: u16 = 1 << 7;
    pub const RSTRIP: u16 = 1 << 8;
}

/// GGUF `token_type` value → attribute bits.
fn attr_of_type(token_type: i64) -> u16 {
    match token_type {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => 0,
    }
}

/// Which tokenizer algorithm the vocabulary is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `gpt2`: byte-level BPE with merges.
    Bpe,
    /// `llama`: SentencePiece-style score merging with byte fallback.
    Spm,
}

/// Token texts of end-of-turn tokens, in the reference's order of preference.
const EOT_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_NAMES: &[&str] = &["<|eom_id|>"];
const FIM_PRE_NAMES: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_NAMES: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_NAMES: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_NAMES: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_NAMES: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_NAMES: &[&str] = &["<|file_sep|>"];
/// Tokens that end generation wherever they appear (the reference matches them by text).
const EOG_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Special-token ids (None: the model has none).
#[derive(Clone, Debug, Default)]
pub(crate) struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

/// A loaded vocabulary.
#[derive(Debug)]
pub(crate) struct Vocab {
    pub kind: Kind,
    /// `tokenizer.ggml.pre` (BPE only; empty when absent).
    pub pre: String,
    pub texts: Vec<String>,
    pub scores: Vec<f32>,
    pub attrs: Vec<u16>,
    /// Text → id; for duplicate texts the last id wins, as in the reference.
    pub ids: HashMap<String, u32>,
    pub special: SpecialIds,
    pub eog: BTreeSet<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    /// Control, user-defined and unknown tokens, longest text first: the order in which they
    /// are split out of raw text.
    pub special_cache: Vec<u32>,
    /// `merges` (BPE only): "left right" strings in rank order.
    pub merges: Vec<String>,
    pub chat_template: Option<String>,
    /// `general.name`, lower-cased: the reference sets a few token attributes by model name.
    pub model_name: String,
}

const KEY_TOKENS: &str = "tokenizer.ggml.tokens";

impl Vocab {
    /// Reads the `tokenizer.*` metadata of a GGUF file.
    pub(crate) fn from_gguf(f: &GgufFile) -> Result<Vocab, TokenizerError> {
        let model = f
            .get_str("tokenizer.ggml.model")
            .ok_or(TokenizerError::MissingKey("tokenizer.ggml.model"))?;
        let kind = match model {
            "gpt2" => Kind::Bpe,
            "llama" => Kind::Spm,
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let pre = f.get_str("tokenizer.ggml.pre").unwrap_or("").to_string();
        let texts: Vec<String> = f
            .get_str_array(KEY_TOKENS)
            .ok_or(TokenizerError::MissingKey(KEY_TOKENS))?
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    format!("[EMPTY_{i}]")
                } else {
                    t.to_string()
                }
            })
            .collect();
        let n = texts.len();
        if n == 0 || u32::try_from(n).is_err() {
            return Err(invalid(KEY_TOKENS, format!("{n} tokens")));
        }
        let scores = match f.get("tokenizer.ggml.scores") {
            None => vec![0.0; n],
            Some(_) => {
                let s = f
                    .get_f32_array("tokenizer.ggml.scores")
                    .ok_or_else(|| invalid("tokenizer.ggml.scores", "not an array of numbers"))?;
                if s.len() < n {
                    return Err(invalid(
                        "tokenizer.ggml.scores",
                        format!("{} < {n} scores", s.len()),
                    ));
                }
                s
            }
        };
        let attrs = match f.get("tokenizer.ggml.token_type") {
            None => vec![attr::NORMAL; n],
            Some(_) => {
                let t = f
                    .get_i64_array("tokenizer.ggml.token_type")
                    .ok_or_else(|| {
                        invalid("tokenizer.ggml.token_type", "not an array of integers")
                    })?;
                if t.len() < n {
                    return Err(invalid(
                        "tokenizer.ggml.token_type",
                        format!("{} < {n} types", t.len()),
                    ));
                }
                t[..n].iter().map(|&t| attr_of_type(t)).collect()
            }
        };
        let merges = match kind {
            Kind::Bpe => f
                .get_str_array("tokenizer.ggml.merges")
                .ok_or(TokenizerError::MissingKey("tokenizer.ggml.merges"))?
                .into_iter()
                .map(str::to_string)
                .collect(),
            Kind::Spm => Vec::new(),
        };
        let ids = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut vocab = Vocab {
            kind,
            pre,
            texts,
            scores: scores[..n].to_vec(),
            attrs,
            ids,
            special: SpecialIds::default(),
            eog: BTreeSet::new(),
            add_bos: kind == Kind::Spm,
            add_eos: false,
            add_space_prefix: kind == Kind::Spm,
            special_cache: Vec::new(),
            merges,
            chat_template: f.get_str("tokenizer.chat_template").map(str::to_string),
            model_name: f.get_str("general.name").unwrap_or("").to_ascii_lowercase(),
        };
        vocab.read_special_ids(f);
        if let Some(v) = f.get_bool("tokenizer.ggml.add_space_prefix") {
            vocab.add_space_prefix = v;
        }
        if kind == Kind::Bpe {
            // BPE pre-tokenizers never prefix a space (the key is ignored for them).
            vocab.add_space_prefix = false;
        }
        Ok(vocab)
    }

    /// Applies the BPE family's default for `add_bos`, then the GGUF keys over it.
    pub(crate) fn set_add_flags(&mut self, f: &GgufFile, default_add_bos: bool) {
        if self.kind == Kind::Bpe {
            self.add_bos = default_add_bos;
        }
        if let Some(v) = f.get_bool("tokenizer.ggml.add_bos_token") {
            self.add_bos = v;
        }
        if let Some(v) = f.get_bool("tokenizer.ggml.add_eos_token") {
            self.add_eos = v;
        }
    }

    fn read_special_ids(&mut self, f: &GgufFile) {
        let n = self.texts.len() as u64;
        let in_range = |id: u64| (id < n).then_some(id as u32);
        let (bos, eos, unk) = match self.kind {
            Kind::Spm => (in_range(1), in_range(2), in_range(0)),
            Kind::Bpe => (in_range(11), in_range(11), None),
        };
        let read = |key: &str, default: Option<u32>| match f.get_u64(key) {
            Some(id) => in_range(id).or(default),
            None => default,
        };
        self.special = SpecialIds {
            bos: read("tokenizer.ggml.bos_token_id", bos),
            eos: read("tokenizer.ggml.eos_token_id", eos),
            eot: read("tokenizer.ggml.eot_token_id", None),
            eom: read("tokenizer.ggml.eom_token_id", None),
            unk: read("tokenizer.ggml.unknown_token_id", unk),
            pad: read("tokenizer.ggml.padding_token_id", None),
            fim_pre: read(
                "tokenizer.ggml.fim_pre_token_id",
                read("tokenizer.ggml.prefix_token_id", None),
            ),
            fim_suf: read(
                "tokenizer.ggml.fim_suf_token_id",
                read("tokenizer.ggml.suffix_token_id", None),
            ),
            fim_mid: read(
                "tokenizer.ggml.fim_mid_token_id",
                read("tokenizer.ggml.middle_token_id", None),
            ),
            fim_pad: read("tokenizer.ggml.fim_pad_token_id", None),
            fim_rep: read("tokenizer.ggml.fim_rep_token_id", None),
            fim_sep: read("tokenizer.ggml.fim_sep_token_id", None),
        };
    }

    /// Detects end-of-generation and FIM tokens by their text, marks them as control tokens,
    /// and builds the special-token cache — the reference's post-load fix-ups.
    pub(crate) fn finish(&mut self) {
        let mut sp = std::mem::take(&mut self.special);
        // Ids whose text names them; a text found earlier in a name list wins, lowest id on ties.
        let detect = |vocab: &mut Vocab, slot: &mut Option<u32>, names: &[&str]| {
            if slot.is_some() {
                return;
            }
            if let Some(id) = names.iter().find_map(|name| vocab.ids.get(*name).copied()) {
                *slot = Some(id);
                vocab.attrs[id as usize] |= attr::CONTROL;
            }
        };
        detect(self, &mut sp.eot, EOT_NAMES);
        detect(self, &mut sp.eom, EOM_NAMES);
        detect(self, &mut sp.fim_pre, FIM_PRE_NAMES);
        detect(self, &mut sp.fim_suf, FIM_SUF_NAMES);
        detect(self, &mut sp.fim_mid, FIM_MID_NAMES);
        detect(self, &mut sp.fim_pad, FIM_PAD_NAMES);
        detect(self, &mut sp.fim_rep, FIM_REP_NAMES);
        detect(self, &mut sp.fim_sep, FIM_SEP_NAMES);

        // Control tokens named "unused" are unused.
        for (text, a) in self.texts.iter().zip(self.attrs.iter_mut()) {
            if *a & attr::CONTROL != 0 && text.contains("unused") {
                *a |= attr::UNUSED;
            }
        }

        let mut eog: BTreeSet<u32> = [sp.fim_pad, sp.fim_rep, sp.fim_sep]
            .into_iter()
            .flatten()
            .collect();
        for name in EOG_NAMES {
            if let Some(&id) = self.ids.get(*name) {
                eog.insert(id);
                self.attrs[id as usize] |= attr::CONTROL;
            }
        }
        // gpt-oss: these are always rendered.
        for name in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(&id) = self.ids.get(name) {
                self.attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        eog.extend([sp.eos, sp.eot, sp.eom].into_iter().flatten());

        // "<|end|>" is not the end of generation where "<|return|>"/"<|call|>" (or
        // "<|calls|>"/"<|flush|>") exist; "</s>" is a normal token beside "<|tool_response>".
        let has = |eog: &BTreeSet<u32>, names: &[&str]| {
            eog.iter()
                .any(|&id| names.contains(&self.texts[id as usize].as_str()))
        };
        let end_id = eog
            .iter()
            .copied()
            .find(|&id| self.texts[id as usize] == "<|end|>");
        if let Some(end_id) = end_id {
            let call = has(&eog, &["<|call|>", "<|calls|>"]);
            if call && (has(&eog, &["<|return|>"]) || has(&eog, &["<|flush|>"])) {
                eog.remove(&end_id);
                self.attrs[end_id as usize] = attr::USER_DEFINED;
            }
        }
        let s_id = eog
            .iter()
            .copied()
            .find(|&id| self.texts[id as usize] == "</s>");
        if let Some(s_id) = s_id {
            if has(&eog, &["<|tool_response>", "<|plamo:eos|>"]) {
                eog.remove(&s_id);
                self.attrs[s_id as usize] = attr::NORMAL;
            }
        }

        let mut cache: Vec<u32> = (0..self.texts.len() as u32)
            .filter(|&id| {
                self.attrs[id as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        cache.sort_by_key(|&id| std::cmp::Reverse(self.texts[id as usize].len()));
        self.special_cache = cache;
        self.set_attrs_by_model_name();
        self.eog = eog;
        self.special = sp;
    }

    /// Per-model whitespace stripping around special tokens, which GGUF does not record.
    fn set_attrs_by_model_name(&mut self) {
        let (ids, attrs) = (&self.ids, &mut self.attrs);
        if self.model_name.contains("phi-3") || self.model_name.contains("phi3") {
            for &id in &self.special_cache {
                attrs[id as usize] |= attr::RSTRIP;
            }
        }
        let mut set = |text: &str, bit: u16, on: bool| {
            if let Some(&id) = ids.get(text) {
                let a = &mut attrs[id as usize];
                *a = if on { *a | bit } else { *a & !bit };
            }
        };
        if self.model_name.contains("phi-3") || self.model_name.contains("phi3") {
            set("</s>", attr::RSTRIP, true);
            for text in ["<unk>", "<s>", "<|endoftext|>"] {
                set(text, attr::RSTRIP, false);
            }
        } else if self.model_name.contains("modern-bert") {
            set("[MASK]", attr::LSTRIP, true);
        }
    }

    pub(crate) fn attr(&self, id: u32) -> u16 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }

    pub(crate) fn text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    pub(crate) fn id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> TokenizerError {
    TokenizerError::InvalidMetadata {
        key,
        reason: reason.into(),
    }
}

/// A piece of input after special tokens have been split out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// Byte range of raw text still to tokenize.
    Text { start: usize, end: usize },
    /// A special token found in the text.
    Token(u32),
}

/// Splits special tokens out of `text`, longest token first, each token taking all its
/// (non-overlapping, leftmost-first) occurrences in the text left by longer ones — the
/// reference's `tokenizer_st_partition`. Control and unknown tokens are only split out when
/// `parse_special`; user-defined tokens always are.
pub(crate) fn partition(vocab: &Vocab, text: &str, parse_special: bool) -> Vec<Fragment> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut fragments = vec![Fragment::Text {
        start: 0,
        end: text.len(),
    }];
    for &id in &vocab.special_cache {
        let a = vocab.attr(id);
        if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
            continue;
        }
        let needle = vocab.texts[id as usize].as_str();
        // Cheap rejection: most special tokens do not occur at all.
        if !text.contains(needle) {
            continue;
        }
        let mut next = Vec::with_capacity(fragments.len() + 2);
        for frag in fragments {
            let Fragment::Text { start, end } = frag else {
                next.push(frag);
                continue;
            };
            let mut from = start;
            while let Some(rel) = text.get(from..end).and_then(|t| t.find(needle)) {
                let at = from + rel;
                let mut left_end = at;
                if a & attr::LSTRIP != 0 {
                    while left_end > from && c_isspace(text.as_bytes()[left_end - 1]) {
                        left_end -= 1;
                    }
                }
                if left_end > from {
                    next.push(Fragment::Text {
                        start: from,
                        end: left_end,
                    });
                }
                next.push(Fragment::Token(id));
                from = at + needle.len();
                if a & attr::RSTRIP != 0 {
                    while from < end && c_isspace(text.as_bytes()[from]) {
                        from += 1;
                    }
                }
            }
            if from < end {
                next.push(Fragment::Text { start: from, end });
            }
        }
        fragments = next;
    }
    fragments
}

/// C's `isspace` in the "C" locale.
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}
