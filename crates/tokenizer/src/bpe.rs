//! Byte-level BPE (`tokenizer.ggml.model = gpt2`): pre-tokenize, map bytes to GPT-2's printable
//! characters, then merge adjacent symbols by merge rank (lowest rank first, leftmost on ties).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::pretokenize::{byte_to_unicode, PreSettings, PreTokenizer};
use crate::vocab::Vocab;
use crate::TokenizerError;

/// The merge table and pre-tokenizer of a BPE vocabulary.
#[derive(Debug)]
pub(crate) struct Bpe {
    pre: PreTokenizer,
    ignore_merges: bool,
    /// Merge sides, interned: text → small id.
    sides: HashMap<String, u32>,
    /// (left side, right side) → rank.
    ranks: HashMap<(u32, u32), u32>,
    byte_chars: [char; 256],
    /// Inverse of `byte_chars`, indexed by code point.
    char_bytes: Vec<Option<u8>>,
}

/// One symbol of a word being merged: a byte range of the encoded word, linked to its neighbours.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

impl Bpe {
    /// Builds the merge table; returns the pre-tokenizer family's settings too.
    pub(crate) fn new(vocab: &Vocab) -> Result<(Bpe, PreSettings), TokenizerError> {
        let (pre, settings) = PreTokenizer::new(&vocab.pre)?;
        let mut sides: HashMap<String, u32> = HashMap::new();
        let mut ranks = HashMap::with_capacity(vocab.merges.len());
        let mut intern = |s: &str| -> u32 {
            let n = sides.len() as u32;
            *sides.entry(s.to_string()).or_insert(n)
        };
        for (rank, merge) in vocab.merges.iter().enumerate() {
            // The separator is the first space after the first byte; a merge without one is
            // recorded as ("", ""), as the reference does.
            let space = merge.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1);
            let (left, right) = match space {
                Some(p) => (&merge[..p], &merge[p + 1..]),
                None => ("", ""),
            };
            let key = (intern(left), intern(right));
            ranks.entry(key).or_insert(rank as u32);
        }
        let byte_chars = byte_to_unicode();
        let mut char_bytes = vec![None; 0x200];
        for (b, &c) in byte_chars.iter().enumerate() {
            if let Some(slot) = char_bytes.get_mut(c as usize) {
                *slot = Some(b as u8);
            }
        }
        let bpe = Bpe {
            pre,
            ignore_merges: settings.ignore_merges,
            sides,
            ranks,
            byte_chars,
            char_bytes,
        };
        Ok((bpe, settings))
    }

    fn rank(&self, left: &str, right: &str) -> Option<u32> {
        let l = *self.sides.get(left)?;
        let r = *self.sides.get(right)?;
        self.ranks.get(&(l, r)).copied()
    }

    /// Tokenizes raw text (no special tokens in it) and appends the ids to `out`.
    pub(crate) fn encode(
        &self,
        vocab: &Vocab,
        text: &str,
        out: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        let mut encoded = String::new();
        for word in self.pre.split(text)? {
            encoded.clear();
            encoded.extend(word.bytes().map(|b| self.byte_chars[b as usize]));
            self.encode_word(vocab, &encoded, out);
        }
        Ok(())
    }

    /// Merges one byte-encoded word.
    fn encode_word(&self, vocab: &Vocab, word: &str, out: &mut Vec<u32>) {
        if self.ignore_merges {
            if let Some(id) = vocab.id(word) {
                out.push(id);
                return;
            }
        }
        let mut symbols: Vec<Symbol> = Vec::with_capacity(word.len());
        for (i, (start, c)) in word.char_indices().enumerate() {
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: (start + c.len_utf8() < word.len()).then_some(i + 1),
            });
        }
        // Candidate merges: (rank, left index) orders them; the size detects stale entries.
        let mut queue: BinaryHeap<Reverse<(u32, usize, usize, usize)>> = BinaryHeap::new();
        let push = |queue: &mut BinaryHeap<_>,
                    symbols: &[Symbol],
                    left: Option<usize>,
                    right: Option<usize>| {
            let (Some(l), Some(r)) = (left, right) else {
                return;
            };
            let (a, b) = (symbols[l], symbols[r]);
            let left_text = &word[a.start..a.start + a.len];
            let right_text = &word[b.start..b.start + b.len];
            if let Some(rank) = self.rank(left_text, right_text) {
                queue.push(Reverse((rank, l, r, a.len + b.len)));
            }
        };
        for i in 1..symbols.len() {
            push(&mut queue, &symbols, Some(i - 1), Some(i));
        }
        while let Some(Reverse((_, l, r, size))) = queue.pop() {
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
        for s in symbols.iter().filter(|s| s.len > 0) {
            let piece = &word[s.start..s.start + s.len];
            match vocab.id(piece) {
                Some(id) => out.push(id),
                // Unknown piece: each ASCII byte that is itself a token (other bytes of the
                // encoded text cannot be), as the reference does.
                None => out.extend(
                    piece
                        .bytes()
                        .filter(u8::is_ascii)
                        .filter_map(|b| vocab.id(char::from(b).encode_utf8(&mut [0; 4]))),
                ),
            }
        }
    }

    /// Decodes a normal token's text back to bytes (GPT-2 characters → bytes). Characters outside
    /// the table are written the way the reference writes them.
    pub(crate) fn decode_text(&self, text: &str, out: &mut Vec<u8>) {
        for c in text.chars() {
            match self.char_bytes.get(c as usize).copied().flatten() {
                Some(b) => out.push(b),
                None => {
                    out.extend_from_slice(b"[UNK_BYTE_0x");
                    let mut buf = [0u8; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        out.extend_from_slice(format!("{byte:02x}").as_bytes());
                    }
                    out.extend_from_slice(text.as_bytes());
                    out.push(b']');
                }
            }
        }
    }
}
