//! Incremental UTF-8 decoding of generated tokens.

/// Turns the bytes of generated tokens into text as soon as it is valid UTF-8.
///
/// A token may end in the middle of a multi-byte character (byte-level BPE splits emoji and CJK
/// across tokens); [`StreamDecoder::push`] holds such an incomplete tail until the next bytes
/// complete it. Bytes that can never become valid UTF-8 come out as U+FFFD.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// A decoder with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `bytes` (e.g. one token's piece) and returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // `valid` is valid UTF-8 by `valid_up_to`, so this copies it unchanged.
                    out.push_str(&String::from_utf8_lossy(valid));
                    match e.error_len() {
                        // An incomplete sequence at the end: wait for more bytes.
                        None => {
                            rest = after;
                            break;
                        }
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// Returns whatever is still pending (an incomplete sequence becomes U+FFFD) and resets.
    pub fn flush(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }

    /// Whether bytes of an incomplete character are being held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::StreamDecoder;

    #[test]
    fn holds_incomplete_sequences() {
        let mut d = StreamDecoder::new();
        let smile = "😀".as_bytes();
        assert_eq!(d.push(b"a"), "a");
        assert_eq!(d.push(&smile[..1]), "");
        assert_eq!(d.push(&smile[1..3]), "");
        assert!(d.has_pending());
        assert_eq!(d.push(&[smile[3], b'b']), "😀b");
        assert!(!d.has_pending());
    }

    #[test]
    fn invalid_bytes_become_replacement() {
        let mut d = StreamDecoder::new();
        assert_eq!(d.push(&[b'x', 0xFF, b'y']), "x\u{FFFD}y");
        assert_eq!(d.push(&[0xE4, 0xB8]), "");
        assert_eq!(d.flush(), "\u{FFFD}");
        assert_eq!(d.push(b"z"), "z");
    }
}
