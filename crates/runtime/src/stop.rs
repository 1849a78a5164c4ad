//! Stop strings over streamed text: text is released only once it can no
//! longer be the start of a stop string, and a stop string itself is never
//! released.

/// Watches generated text for stop strings.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    text: String,
    released: usize,
}

/// What the matcher decided after new text arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum StopCheck {
    /// Keep going; this text may be shown now.
    Continue(String),
    /// A stop string was found: show this last text (the part before it) and stop.
    Stop(String),
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> StopMatcher {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            text: String::new(),
            released: 0,
        }
    }

    /// Adds generated text.
    pub fn push(&mut self, piece: &str) -> StopCheck {
        self.text.push_str(piece);
        // A stop string may straddle what was already released only if it started in the held-back tail.
        let mut found: Option<usize> = None;
        for s in &self.stops {
            let from = floor_char_boundary(&self.text, self.released.saturating_sub(s.len()));
            if let Some(p) = self.text[from..].find(s.as_str()) {
                let at = from + p;
                found = Some(found.map_or(at, |f: usize| f.min(at)));
            }
        }
        if let Some(at) = found {
            let at = at.max(self.released);
            let out = self.text[self.released..at].to_owned();
            self.text.truncate(at);
            self.released = at;
            return StopCheck::Stop(out);
        }
        let hold = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.text[self.released..], s))
            .max()
            .unwrap_or(0);
        let end = self.text.len() - hold;
        let out = self.text[self.released..end].to_owned();
        self.released = end;
        StopCheck::Continue(out)
    }

    /// Text held back at the end (generation ended without a stop string).
    pub fn flush(&mut self) -> String {
        let out = self.text[self.released..].to_owned();
        self.released = self.text.len();
        out
    }

    /// All text accepted so far (stop string excluded).
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = (stop.len() - 1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n)
                && stop
                    .as_bytes()
                    .starts_with(&text.as_bytes()[text.len() - n..])
        })
        .unwrap_or(0)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        for p in pieces {
            match m.push(p) {
                StopCheck::Continue(s) => out.push_str(&s),
                StopCheck::Stop(s) => {
                    out.push_str(&s);
                    return (out, true);
                }
            }
        }
        out.push_str(&m.flush());
        (out, false)
    }

    #[test]
    fn stops_across_pieces_and_excludes_the_stop() {
        assert_eq!(
            run(&["\n\n"], &["Hello", " world", "\n", "\nmore"]),
            ("Hello world".into(), true)
        );
        assert_eq!(run(&["END"], &["abcE", "N", "Dxyz"]), ("abc".into(), true));
        assert_eq!(run(&["END"], &["abcEN", "d"]), ("abcENd".into(), false));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
        assert_eq!(run(&["x", "yz"], &["ayz"]), ("a".into(), true));
    }

    #[test]
    fn holds_back_only_possible_prefixes() {
        let mut m = StopMatcher::new(&["</s>".to_string()]);
        assert_eq!(m.push("ab<"), StopCheck::Continue("ab".into()));
        assert_eq!(m.push("p"), StopCheck::Continue("<p".into()));
    }

    #[test]
    fn multibyte_text() {
        assert_eq!(run(&["。"], &["你好", "。再见"]), ("你好".into(), true));
        assert_eq!(run(&["é!"], &["caf", "é", "?"]), ("café?".into(), false));
    }
}
