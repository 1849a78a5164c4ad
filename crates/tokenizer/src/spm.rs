//! SentencePiece-style tokenization (`tokenizer.ggml.model = llama`, e.g. Gemma 3): spaces become
//! `▁`, then adjacent symbols merge greedily by the score of the token they form (highest first,
//! leftmost on ties); characters that never form a token fall back to `<0xNN>` byte tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::vocab::Vocab;

/// The SentencePiece space marker.
pub(crate) const SPACE: &str = "\u{2581}";

/// A candidate merge of two adjacent symbols.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Greater = merged first: higher score, then the leftmost. Scores compare like C floats
    /// (-0 == 0; NaN equal to everything), as in the reference.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then(other.left.cmp(&self.left))
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// Tokenizes one raw-text fragment. `text` must already carry the optional leading space.
pub(crate) fn encode(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let text = text.replace(' ', SPACE);
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (i, (start, c)) in text.char_indices().enumerate() {
        symbols.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: (start + c.len_utf8() < text.len()).then_some(i + 1),
        });
    }
    let mut queue = BinaryHeap::new();
    let push = |queue: &mut BinaryHeap<Bigram>,
                symbols: &[Symbol],
                left: Option<usize>,
                right: Option<usize>| {
        let (Some(l), Some(r)) = (left, right) else {
            return;
        };
        let (a, b) = (symbols[l], symbols[r]);
        let size = a.len + b.len;
        let Some(id) = text.get(a.start..a.start + size).and_then(|t| vocab.id(t)) else {
            return;
        };
        let score = vocab.scores.get(id as usize).copied().unwrap_or(0.0);
        queue.push(Bigram {
            score,
            left: l,
            right: r,
            size,
        });
    };
    for i in 1..symbols.len() {
        push(&mut queue, &symbols, Some(i - 1), Some(i));
    }
    while let Some(Bigram {
        left: l,
        right: r,
        size,
        ..
    }) = queue.pop()
    {
        let (a, b) = (symbols[l], symbols[r]);
        if a.len == 0 || b.len == 0 || a.len + b.len != size {
            continue;
        }
        symbols[l].len += b.len;
        symbols[r].len = 0;
        symbols[l].next = b.next;
        if let Some(n) = b.next {
            symbols[n].prev = Some(l);
        }
        push(&mut queue, &symbols, symbols[l].prev, Some(l));
        push(&mut queue, &symbols, Some(l), symbols[l].next);
    }
    // Merged symbols are always tokens; single characters may not be.
    let mut i = if symbols.is_empty() { None } else { Some(0) };
    while let Some(idx) = i {
        let s = symbols[idx];
        let piece = &text[s.start..s.start + s.len];
        match vocab.id(piece) {
            Some(id) => out.push(id),
            None => out.extend(piece.bytes().filter_map(|b| byte_token(vocab, b))),
        }
        i = s.next;
    }
}

/// The token for a raw byte: `<0xNN>`, else the byte itself as text, else the unknown token.
pub(crate) fn byte_token(vocab: &Vocab, b: u8) -> Option<u32> {
    vocab
        .id(&format!("<0x{b:02X}>"))
        .or_else(|| {
            if b.is_ascii() {
                vocab.id(char::from(b).encode_utf8(&mut [0; 4]))
            } else {
                None
            }
        })
        .or(vocab.special.unk)
}

/// The byte a `<0xNN>` token stands for (0 when the text is malformed, as `strtol` gives).
pub(crate) fn token_byte(text: &str) -> u8 {
    let hex = text.get(3..5).unwrap_or("");
    let digits: String = hex.chars().take_while(char::is_ascii_hexdigit).collect();
    u8::from_str_radix(&digits, 16).unwrap_or(0)
}
