//! Pre-tokenization of byte-level BPE vocabularies: splitting text into words before merging.
//!
//! Each `tokenizer.ggml.pre` name selects an ordered list of split rules, exactly as the
//! reference (llama.cpp) chooses them. Every rule refines the current list of chunks: the text a
//! rule matches becomes a chunk, and so does the text between matches.
//!
//! Two kinds of rule reproduce the reference's behaviour:
//! - hand-written scanners for the GPT-2 and Llama-3/Qwen2 patterns (the reference runs its own
//!   scanners for these, whose results differ from a true regex engine at run ends, e.g. for
//!   `\s+(?!\S)` at the end of a chunk), and
//! - [`fancy_regex`] for the rest. A pattern that uses Unicode classes (`\p{L}`, …) runs on a
//!   *collapsed* copy of the chunk in which every non-ASCII code point is replaced by one stand-in
//!   character per category, so that categories come from the same Unicode tables the reference
//!   uses ([`crate::unicode_table`]) and not from the regex crate's Unicode version.

use std::ops::Range;

use fancy_regex::Regex;

use crate::unicode_table::{CATEGORY_RANGES, WHITESPACE};
use crate::TokenizerError;

const CAT_NUMBER: u8 = 0x02;
const CAT_LETTER: u8 = 0x04;
const CAT_MARK: u8 = 0x10;
const CAT_PUNCT: u8 = 0x20;
const CAT_SYMBOL: u8 = 0x40;

/// Category bits of a code point (0 for none; see [`CATEGORY_RANGES`]).
fn category(cp: u32) -> u8 {
    let idx = CATEGORY_RANGES.partition_point(|&(start, _)| start <= cp);
    if idx == 0 || cp > 0x10FFFF {
        return 0;
    }
    CATEGORY_RANGES[idx - 1].1
}

fn is_whitespace(cp: u32) -> bool {
    WHITESPACE.binary_search(&cp).is_ok()
}

/// What the scanners know of one position: outside the chunk every field is false.
#[derive(Clone, Copy, Default)]
struct Flags {
    inside: bool,
    cat: u8,
    space: bool,
}

impl Flags {
    fn of(c: char) -> Flags {
        Flags {
            inside: true,
            cat: category(c as u32),
            space: is_whitespace(c as u32),
        }
    }
    fn letter(self) -> bool {
        self.cat & CAT_LETTER != 0
    }
    fn number(self) -> bool {
        self.cat & CAT_NUMBER != 0
    }
    /// `[^\s\p{L}\p{N}]` inside the chunk.
    fn other(self) -> bool {
        self.inside && !(self.space || self.letter() || self.number())
    }
}

/// One split rule.
#[derive(Debug)]
enum Rule {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    Gpt2,
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    /// with N = 3 (Llama 3) or 1 (Qwen2).
    Llama3 { max_digits: usize },
    /// A general regex; `collapsed` when it was written against the collapsed text.
    Regex { re: Box<Regex>, collapsed: bool },
}

/// The pre-tokenizer of one `tokenizer.ggml.pre` family.
#[derive(Debug)]
pub(crate) struct PreTokenizer {
    rules: Vec<Rule>,
}

/// Pre-tokenizer names this crate knows, grouped by the rules they share.
const FAMILIES: &[(&[&str], Family)] = &[
    (&["default", ""], Family::Default),
    (
        &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
            "jina-v5-nano",
            "dbrx",
            "smaug-bpe",
        ],
        Family::Llama3,
    ),
    (
        &["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "stablelm2"],
        Family::Qwen2,
    ),
    (
        &["smollm", "starcoder", "refact", "command-r", "codeshell"],
        Family::Starcoder,
    ),
    (
        &[
            "gpt-2",
            "phi-2",
            "jina-es",
            "jina-de",
            "gigachat",
            "jina-v2-es",
            "jina-v2-de",
            "a.x-4.0",
            "mellum",
            "modern-bert",
            "mpt",
            "olmo",
        ],
        Family::Gpt2,
    ),
    (&["deepseek-llm"], Family::DeepseekLlm),
    (&["deepseek-v3"], Family::Deepseek3),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Family {
    Default,
    Llama3,
    Qwen2,
    Starcoder,
    Gpt2,
    DeepseekLlm,
    Deepseek3,
}

/// Per-family settings the vocabulary needs besides the split rules.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct PreSettings {
    /// A word that is itself a token skips merging (Llama 3 style).
    pub ignore_merges: bool,
    /// Default for `add_bos` before the GGUF key overrides it.
    pub add_bos: bool,
}

/// Names accepted by [`PreTokenizer::new`], for error messages.
pub(crate) fn supported_names() -> String {
    let names: Vec<&str> = FAMILIES
        .iter()
        .flat_map(|(n, _)| n.iter().copied())
        .filter(|n| !n.is_empty())
        .collect();
    names.join(", ")
}

/// The GPT-2 pattern [`Rule::Gpt2`] scans for (tests compare the scanner with it).
#[cfg(test)]
const GPT2_WORDS: &str =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const DEEPSEEK_LLM_LATIN: &str = "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+";

impl PreTokenizer {
    /// The pre-tokenizer for `tokenizer.ggml.pre` = `name`.
    pub(crate) fn new(name: &str) -> Result<(PreTokenizer, PreSettings), TokenizerError> {
        let family = FAMILIES
            .iter()
            .find(|(names, _)| names.contains(&name))
            .map(|&(_, f)| f)
            .ok_or_else(|| TokenizerError::UnknownPreTokenizer {
                name: name.to_string(),
                supported: supported_names(),
            })?;
        let mut settings = PreSettings::default();
        let rules = match family {
            Family::Default => vec![
                regex("[\\p{P}\\$\\+<=>\\^~\\|]+")?,
                Rule::Gpt2,
                regex("\\p{N}+")?,
                regex("[0-9][0-9][0-9]")?,
            ],
            Family::Llama3 => {
                // Only the names the reference lists with Llama 3 skip merges and add BOS.
                if !matches!(name, "dbrx" | "smaug-bpe") {
                    settings = PreSettings { ignore_merges: true, add_bos: true };
                }
                vec![Rule::Llama3 { max_digits: 3 }]
            }
            Family::Qwen2 => vec![Rule::Llama3 { max_digits: 1 }],
            Family::Starcoder => vec![regex("\\p{N}")?, Rule::Gpt2],
            Family::Gpt2 => vec![Rule::Gpt2],
            Family::DeepseekLlm => vec![
                regex("[\r\n]")?,
                regex(DEEPSEEK_LLM_LATIN)?,
                regex("\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+")?,
                regex("\\s+$")?,
                regex("[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+")?,
                regex("\\p{N}+")?,
            ],
            Family::Deepseek3 => vec![
                regex("\\p{N}{1,3}")?,
                regex("[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+")?,
                regex(
                    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
                )?,
            ],
        };
        Ok((PreTokenizer { rules }, settings))
    }

    /// Splits `text` into words (plain UTF-8; byte encoding is the caller's job).
    pub(crate) fn split<'t>(&self, text: &'t str) -> Result<Vec<&'t str>, TokenizerError> {
        let chars: Vec<char> = text.chars().collect();
        let mut chunks: Vec<usize> = if chars.is_empty() {
            Vec::new()
        } else {
            vec![chars.len()]
        };
        for rule in &self.rules {
            let mut next = Vec::with_capacity(chunks.len() * 2);
            let mut start = 0;
            for &len in &chunks {
                let range = start..start + len;
                match rule {
                    Rule::Gpt2 => split_gpt2(&chars, range, &mut next),
                    Rule::Llama3 { max_digits } => {
                        split_llama3(&chars, range, *max_digits, &mut next)
                    }
                    Rule::Regex { re, collapsed } => {
                        split_regex(re, *collapsed, &chars[range], &mut next)?
                    }
                }
                start += len;
            }
            chunks = next;
        }
        // Chunk lengths are in chars; turn them into slices of `text`.
        let mut words = Vec::with_capacity(chunks.len());
        let mut byte = 0;
        let mut char_iter = chars.iter();
        for len in chunks {
            let n: usize = char_iter.by_ref().take(len).map(|c| c.len_utf8()).sum();
            words.push(&text[byte..byte + n]);
            byte += n;
        }
        Ok(words)
    }
}

fn regex(pattern: &str) -> Result<Rule, TokenizerError> {
    let collapsed = UNICODE_CLASSES
        .iter()
        .any(|(name, _)| pattern.contains(name));
    let source = if collapsed {
        collapse_pattern(pattern)
    } else {
        pattern.to_string()
    };
    let re = Regex::new(&source).map_err(|e| TokenizerError::Regex {
        pattern: pattern.to_string(),
        reason: e.to_string(),
    })?;
    Ok(Rule::Regex {
        re: Box::new(re),
        collapsed,
    })
}

/// Stand-ins for non-ASCII code points in collapsed text, by category (others: `OTHER`).
const STAND_IN: [(u8, char); 5] = [
    (CAT_NUMBER, '\u{E0D1}'),
    (CAT_LETTER, '\u{E0D2}'),
    (CAT_PUNCT, '\u{E0D3}'),
    (CAT_MARK, '\u{E0D4}'),
    (CAT_SYMBOL, '\u{E0D5}'),
];
const OTHER: char = '\u{E0D0}';

/// Unicode classes a collapsed pattern may use, with the class body that replaces them: the
/// stand-in plus the ASCII members of the category.
const UNICODE_CLASSES: [(&str, &str); 10] = [
    ("\\p{N}", "\\x{E0D1}\\x{30}-\\x{39}"),
    ("\\p{L}", "\\x{E0D2}\\x{41}-\\x{5A}\\x{61}-\\x{7A}"),
    (
        "\\p{P}",
        "\\x{E0D3}\\x{21}-\\x{23}\\x{25}-\\x{2A}\\x{2C}-\\x{2F}\\x{3A}-\\x{3B}\\x{3F}-\\x{40}\\x{5B}-\\x{5D}\\x{5F}\\x{7B}\\x{7D}",
    ),
    ("\\p{M}", "\\x{E0D4}"),
    ("\\p{S}", "\\x{E0D5}\\x{24}\\x{2B}\\x{3C}-\\x{3E}\\x{5E}\\x{60}\\x{7C}\\x{7E}"),
    ("\\p{Lu}", "\\x{E0D2}\\x{41}-\\x{5A}\\x{61}-\\x{7A}"),
    ("\\p{Ll}", "\\x{E0D2}\\x{41}-\\x{5A}\\x{61}-\\x{7A}"),
    ("\\p{Lt}", "\\x{E0D2}\\x{41}-\\x{5A}\\x{61}-\\x{7A}"),
    ("\\p{Lm}", "\\x{E0D2}\\x{41}-\\x{5A}\\x{61}-\\x{7A}"),
    ("\\p{Lo}", "\\x{E0D2}\\x{41}-\\x{5A}\\x{61}-\\x{7A}"),
];

/// Rewrites `\p{..}` classes for collapsed text (wrapped in `[]` unless already in a class).
fn collapse_pattern(pattern: &str) -> String {
    let bytes = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len() * 4);
    let mut inside = false;
    let mut i = 0;
    while i < pattern.len() {
        let rest = &pattern[i..];
        let escaped = i > 0 && bytes[i - 1] == b'\\';
        if rest.starts_with('[') && !escaped {
            inside = true;
        } else if inside && rest.starts_with(']') && !escaped {
            inside = false;
        } else if let Some((name, body)) = UNICODE_CLASSES
            .iter()
            .filter(|(name, _)| rest.starts_with(name))
            .max_by_key(|(name, _)| name.len())
        {
            if inside {
                out.push_str(body);
            } else {
                out.push('[');
                out.push_str(body);
                out.push(']');
            }
            i += name.len();
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        out.push(c);
        i += c.len_utf8();
    }
    out
}

fn collapse_char(c: char) -> char {
    if c.is_ascii() {
        return c;
    }
    let cp = c as u32;
    if is_whitespace(cp) {
        return '\u{0B}';
    }
    let cat = category(cp);
    STAND_IN
        .iter()
        .find(|&&(bit, _)| bit == cat)
        .map_or(OTHER, |&(_, s)| s)
}

/// Splits one chunk with a regex; matches and the gaps between them become chunks.
fn split_regex(
    re: &Regex,
    collapsed: bool,
    chunk: &[char],
    out: &mut Vec<usize>,
) -> Result<(), TokenizerError> {
    // Non-ASCII whitespace becomes \x0B in both modes: the reference's regex engine only knows
    // ASCII whitespace.
    let haystack: String = if collapsed {
        chunk.iter().map(|&c| collapse_char(c)).collect()
    } else {
        chunk
            .iter()
            .map(|&c| {
                if !c.is_ascii() && is_whitespace(c as u32) {
                    '\u{0B}'
                } else {
                    c
                }
            })
            .collect()
    };
    // Matches are in bytes; count chars as we go (`pos` in chars, `byte` in bytes).
    let (mut pos, mut byte) = (0usize, 0usize);
    for m in re.find_iter(&haystack) {
        let m = m.map_err(|e| TokenizerError::Regex {
            pattern: re.as_str().to_string(),
            reason: e.to_string(),
        })?;
        if m.start() == m.end() {
            continue;
        }
        let start = pos + haystack[byte..m.start()].chars().count();
        let len = m.as_str().chars().count();
        if start > pos {
            out.push(start - pos);
        }
        out.push(len);
        pos = start + len;
        byte = m.end();
    }
    if pos < chunk.len() {
        out.push(chunk.len() - pos);
    }
    Ok(())
}

/// A view of one chunk for the hand-written scanners; positions are absolute.
struct Scan<'a> {
    chars: &'a [char],
    range: Range<usize>,
}

impl Scan<'_> {
    fn get(&self, pos: usize) -> Option<char> {
        if self.range.contains(&pos) {
            self.chars.get(pos).copied()
        } else {
            None
        }
    }
    fn flags(&self, pos: usize) -> Flags {
        self.get(pos).map(Flags::of).unwrap_or_default()
    }
    /// Length of a contraction (`'s`, `'re`, …) at `pos`, if any.
    fn contraction(&self, pos: usize, ignore_case: bool) -> Option<usize> {
        if self.get(pos) != Some('\'') {
            return None;
        }
        let lower = |c: Option<char>| {
            c.map(|c| {
                if ignore_case {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
        };
        let c1 = lower(self.get(pos + 1))?;
        if matches!(c1, 's' | 't' | 'm' | 'd') {
            return Some(2);
        }
        let c2 = lower(self.get(pos + 2))?;
        matches!((c1, c2), ('r', 'e') | ('v', 'e') | ('l', 'l')).then_some(3)
    }
    /// Length of the whitespace run at `pos` and the end of its last `\r`/`\n` (if any).
    fn whitespace_run(&self, pos: usize) -> (usize, Option<usize>) {
        let mut n = 0;
        let mut last_newline_end = None;
        while self.flags(pos + n).space {
            if matches!(self.get(pos + n), Some('\r' | '\n')) {
                last_newline_end = Some(pos + n + 1);
            }
            n += 1;
        }
        (n, last_newline_end)
    }
    /// `\s+(?!\S)|\s+` as the reference scans it: a run followed by more text gives back its
    /// last whitespace character (when it has more than one); a run at the chunk end is kept whole.
    fn whitespace_len(&self, pos: usize, n: usize) -> usize {
        if n > 1 && self.get(pos + n).is_some() {
            n - 1
        } else {
            n
        }
    }
}

/// The reference's GPT-2 scanner (see [`Rule::Gpt2`]).
fn split_gpt2(chars: &[char], range: Range<usize>, out: &mut Vec<usize>) {
    let scan = Scan {
        chars,
        range: range.clone(),
    };
    let mut pos = range.start;
    while pos < range.end {
        let len = gpt2_word(&scan, pos);
        out.push(len);
        pos += len;
    }
}

fn gpt2_word(scan: &Scan<'_>, pos: usize) -> usize {
    if let Some(len) = scan.contraction(pos, false) {
        return len;
    }
    let space = scan.get(pos) == Some(' ');
    let first = pos + usize::from(space);
    let f = scan.flags(first);
    let class: Option<fn(Flags) -> bool> = if f.letter() {
        Some(Flags::letter)
    } else if f.number() {
        Some(Flags::number)
    } else if f.other() {
        Some(Flags::other)
    } else {
        None
    };
    if let Some(class) = class {
        let mut end = first;
        while class(scan.flags(end)) {
            end += 1;
        }
        return end - pos;
    }
    let (n, _) = scan.whitespace_run(pos);
    if n > 0 {
        return scan.whitespace_len(pos, n);
    }
    1
}

/// The reference's Llama 3 / Qwen2 scanner (see [`Rule::Llama3`]).
fn split_llama3(chars: &[char], range: Range<usize>, max_digits: usize, out: &mut Vec<usize>) {
    let scan = Scan {
        chars,
        range: range.clone(),
    };
    let mut pos = range.start;
    while pos < range.end {
        if let Some(len) = scan.contraction(pos, true) {
            out.push(len);
            pos += len;
            continue;
        }
        let c = scan.get(pos);
        let f = scan.flags(pos);
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !matches!(c, Some('\r' | '\n'))
            && !f.number()
            && (f.letter() || scan.flags(pos + 1).letter())
        {
            let mut end = pos + 1;
            while scan.flags(end).letter() {
                end += 1;
            }
            out.push(end - pos);
            pos = end;
            continue;
        }
        // \p{N}{1,max_digits}
        if f.number() {
            let mut end = pos;
            while scan.flags(end).number() && end - pos < max_digits {
                end += 1;
            }
            out.push(end - pos);
            pos = end;
            continue;
        }
        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        let first = pos + usize::from(c == Some(' '));
        if scan.flags(first).other() {
            let mut end = first;
            while scan.flags(end).other() {
                end += 1;
            }
            while matches!(scan.get(end), Some('\r' | '\n')) {
                end += 1;
            }
            out.push(end - pos);
            pos = end;
            continue;
        }
        // \s*[\r\n]+ | \s+(?!\S) | \s+
        let (n, last_newline_end) = scan.whitespace_run(pos);
        let len = match last_newline_end {
            Some(end) => end - pos,
            None if n > 0 => scan.whitespace_len(pos, n),
            None => 1,
        };
        out.push(len);
        pos += len;
    }
}

/// GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to U+0100.. in order.
pub(crate) fn byte_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
        let cp = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(cp).unwrap_or('\u{FFFD}');
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(name: &str, text: &str) -> Vec<String> {
        let (pre, _) = PreTokenizer::new(name).expect("known pre-tokenizer");
        pre.split(text)
            .expect("split")
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn all_families_compile() {
        for (names, _) in FAMILIES {
            for name in *names {
                PreTokenizer::new(name).expect(name);
            }
        }
    }

    #[test]
    fn unknown_name_lists_supported() {
        let err = PreTokenizer::new("nope").expect_err("unknown");
        let msg = err.to_string();
        assert!(
            msg.contains("nope") && msg.contains("smollm") && msg.contains("llama-bpe"),
            "{msg}"
        );
    }

    #[test]
    fn gpt2_whitespace_runs() {
        assert_eq!(split("gpt-2", "a   b"), ["a", "  ", " b"]);
        assert_eq!(split("gpt-2", "a   "), ["a", "   "]);
        assert_eq!(split("gpt-2", "I'M you've"), ["I", "'", "M", " you", "'ve"]);
    }

    #[test]
    fn smollm_splits_digits() {
        assert_eq!(split("smollm", "x 1234"), ["x", " ", "1", "2", "3", "4"]);
    }

    #[test]
    fn llama3_digits_and_newlines() {
        assert_eq!(
            split("llama-bpe", "1234567 \n\nHi"),
            ["123", "456", "7", " \n\n", "Hi"]
        );
        assert_eq!(split("llama-bpe", "I'M"), ["I", "'M"]);
        assert_eq!(split("qwen2", "123"), ["1", "2", "3"]);
    }

    #[test]
    fn collapsed_classes_use_reference_tables() {
        assert_eq!(
            split("deepseek-v3", "价格是12345元"),
            ["价格是", "123", "45", "元"]
        );
    }

    /// Away from chunk ends the scanner agrees with a real regex engine.
    #[test]
    fn gpt2_scanner_agrees_with_regex() {
        let Rule::Regex { re, .. } = regex(GPT2_WORDS).expect("compiles") else {
            panic!()
        };
        for text in [
            "Hello world, it's 42!",
            "a  b\tc",
            "x'll 'd's",
            "tab\there  ok",
            "1 2  3",
        ] {
            let chars: Vec<char> = text.chars().collect();
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            split_gpt2(&chars, 0..chars.len(), &mut ours);
            split_regex(&re, true, &chars, &mut theirs).expect("split");
            assert_eq!(ours, theirs, "{text:?}");
        }
    }

    #[test]
    fn byte_table_is_a_bijection() {
        let t = byte_to_unicode();
        let mut seen = std::collections::HashSet::new();
        assert!(t.iter().all(|c| seen.insert(*c)));
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
    }
}
