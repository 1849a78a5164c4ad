//! Saved log-probabilities of a perplexity run, for KL-divergence comparisons.
//!
//! Format (little-endian): magic `SPTLOGP1`, u32 `n_ctx`, u32 `n_vocab`,
//! u32 `n_chunks`, the `n_chunks * n_ctx` token ids as u32, then for every
//! scored position (chunk by chunk, `n_ctx - 1 - n_ctx/2` per chunk) its
//! `n_vocab` log-probabilities as f16 (half the size of f32; the rounding
//! error, under 0.1% relative, is far below the divergences measured).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use half::f16;

use crate::RuntimeError;

const MAGIC: &[u8; 8] = b"SPTLOGP1";

fn io_err(path: &Path, what: &str, e: std::io::Error) -> RuntimeError {
    RuntimeError::Invalid(format!("{}: {what}: {e}", path.display()))
}

/// Writes a logits file.
pub struct LogitsWriter {
    path: PathBuf,
    out: BufWriter<File>,
    buf: Vec<u8>,
}

impl LogitsWriter {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> Result<LogitsWriter, RuntimeError> {
        let f = File::create(path).map_err(|e| io_err(path, "creating", e))?;
        Ok(LogitsWriter {
            path: path.to_owned(),
            out: BufWriter::new(f),
            buf: Vec::new(),
        })
    }

    pub(crate) fn begin(
        &mut self,
        n_ctx: usize,
        n_vocab: usize,
        n_chunks: usize,
        tokens: &[u32],
    ) -> Result<(), RuntimeError> {
        let mut h = Vec::with_capacity(20 + tokens.len() * 4);
        h.extend_from_slice(MAGIC);
        for v in [n_ctx, n_vocab, n_chunks] {
            h.extend_from_slice(&(v as u32).to_le_bytes());
        }
        for t in tokens {
            h.extend_from_slice(&t.to_le_bytes());
        }
        self.out
            .write_all(&h)
            .map_err(|e| io_err(&self.path, "writing", e))
    }

    pub(crate) fn write_row(&mut self, logprobs: &[f32]) -> Result<(), RuntimeError> {
        self.buf.clear();
        for &l in logprobs {
            self.buf.extend_from_slice(&f16::from_f32(l).to_le_bytes());
        }
        self.out
            .write_all(&self.buf)
            .map_err(|e| io_err(&self.path, "writing", e))
    }

    pub(crate) fn finish(&mut self) -> Result<(), RuntimeError> {
        self.out
            .flush()
            .map_err(|e| io_err(&self.path, "writing", e))
    }
}

/// Reads a logits file written by [`LogitsWriter`].
pub struct LogitsReader {
    path: PathBuf,
    input: BufReader<File>,
    n_ctx: usize,
    n_vocab: usize,
    tokens: Vec<u32>,
    buf: Vec<u8>,
}

impl LogitsReader {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<LogitsReader, RuntimeError> {
        let f = File::open(path).map_err(|e| io_err(path, "opening", e))?;
        let len = f.metadata().map_err(|e| io_err(path, "reading", e))?.len();
        let mut input = BufReader::new(f);
        let mut head = [0u8; 20];
        input.read_exact(&mut head).map_err(|_| {
            RuntimeError::Invalid(format!(
                "{}: not a sparetire logits file (too short)",
                path.display()
            ))
        })?;
        if &head[..8] != MAGIC {
            return Err(RuntimeError::Invalid(format!(
                "{}: not a sparetire logits file (write one with `perplexity --save-logits`)",
                path.display()
            )));
        }
        let word =
            |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]) as u64;
        let (n_ctx, n_vocab, n_chunks) = (word(8), word(12), word(16));
        let n_tokens = n_ctx * n_chunks;
        let rows = n_chunks * (n_ctx.saturating_sub(1 + n_ctx / 2));
        let expected = 20 + n_tokens * 4 + rows * n_vocab * 2;
        if n_ctx == 0 || n_vocab == 0 || expected != len {
            return Err(RuntimeError::Invalid(format!(
                "{}: corrupt logits file: header says {n_chunks} chunks of {n_ctx} tokens over {n_vocab} tokens ({expected} bytes) but the file has {len} bytes",
                path.display()
            )));
        }
        let mut raw = vec![0u8; n_tokens as usize * 4];
        input
            .read_exact(&mut raw)
            .map_err(|e| io_err(path, "reading", e))?;
        let tokens = raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(LogitsReader {
            path: path.to_owned(),
            input,
            n_ctx: n_ctx as usize,
            n_vocab: n_vocab as usize,
            tokens,
            buf: Vec::new(),
        })
    }

    pub(crate) fn check(
        &self,
        n_ctx: usize,
        n_vocab: usize,
        tokens: &[u32],
    ) -> Result<(), RuntimeError> {
        let p = self.path.display();
        if self.n_ctx != n_ctx {
            return Err(RuntimeError::Invalid(format!(
                "{p}: saved with a context of {} but this run uses {n_ctx}",
                self.n_ctx
            )));
        }
        if self.n_vocab != n_vocab {
            return Err(RuntimeError::Invalid(format!(
                "{p}: saved from a model with {} tokens in its vocabulary, this one has {n_vocab}",
                self.n_vocab
            )));
        }
        if self.tokens.len() < tokens.len() || self.tokens[..tokens.len()] != *tokens {
            return Err(RuntimeError::Invalid(format!(
                "{p}: saved over different tokens (another text, tokenizer or chunk count)"
            )));
        }
        Ok(())
    }

    pub(crate) fn read_row(&mut self, out: &mut [f32]) -> Result<(), RuntimeError> {
        self.buf.resize(self.n_vocab * 2, 0);
        self.input
            .read_exact(&mut self.buf)
            .map_err(|e| io_err(&self.path, "reading", e))?;
        for (o, c) in out.iter_mut().zip(self.buf.chunks_exact(2)) {
            *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
        }
        Ok(())
    }
}
