//! Perplexity over a text, chunked exactly like llama.cpp's `llama-perplexity`,
//! and KL divergence against the saved log-probabilities of another run.
//!
//! The text is tokenized once (BOS as the metadata says, special-token text
//! treated as plain text) and cut into `n_chunk = n_tokens / n_ctx` windows of
//! `n_ctx` tokens. Each window is evaluated from an empty cache, with its
//! first token replaced by BOS when the model adds one, and only its second
//! half is scored: the logits at positions `n_ctx/2 .. n_ctx-1` predict the
//! tokens after them, so every scored token has at least `n_ctx/2` tokens of
//! context.

use sparetire_models::Logits;

use crate::logits_file::{LogitsReader, LogitsWriter};
use crate::{Engine, RuntimeError, PREFILL_CHUNK};

/// Running sums of one measurement.
#[derive(Clone, Debug, Default)]
pub struct PplStats {
    /// Scored tokens.
    pub count: usize,
    /// Sum of negative log-likelihoods.
    pub nll: f64,
    /// Sum of their squares.
    pub nll2: f64,
}

impl PplStats {
    /// exp(mean nll).
    pub fn ppl(&self) -> f64 {
        (self.nll / self.count.max(1) as f64).exp()
    }

    /// The ± llama-perplexity prints: `ppl * sqrt(var(nll) / (count - 1))`.
    pub fn ppl_sd(&self) -> f64 {
        let n = self.count as f64;
        let mean = self.nll / n;
        let var = self.nll2 / n - mean * mean;
        if var > 0.0 && self.count > 1 {
            (var / (n - 1.0)).sqrt() * self.ppl()
        } else {
            0.0
        }
    }
}

/// KL divergence and agreement against a base run.
#[derive(Clone, Debug, Default)]
pub struct KlStats {
    /// Positions compared.
    pub count: usize,
    /// Sum of KL(base || this).
    pub kl: f64,
    /// Sum of squares of the per-position KL.
    pub kl2: f64,
    /// Positions where both runs' most likely token is the same.
    pub same_top: usize,
    /// The base run's perplexity on the same positions.
    pub base: PplStats,
}

impl KlStats {
    /// Mean KL divergence.
    pub fn mean(&self) -> f64 {
        self.kl / self.count.max(1) as f64
    }
    /// Standard error of the mean KL divergence.
    pub fn mean_sd(&self) -> f64 {
        let n = self.count as f64;
        let var = self.kl2 / n - self.mean() * self.mean();
        if var > 0.0 && self.count > 1 {
            (var / (n - 1.0)).sqrt()
        } else {
            0.0
        }
    }
    /// Fraction of positions whose top token agrees.
    pub fn top1_agreement(&self) -> f64 {
        self.same_top as f64 / self.count.max(1) as f64
    }
}

/// Settings of a perplexity run.
pub struct PplParams<'a> {
    /// Window size.
    pub n_ctx: usize,
    /// Evaluate at most this many windows.
    pub max_chunks: Option<usize>,
    /// Write each scored position's log-probabilities here.
    pub save: Option<&'a mut LogitsWriter>,
    /// Compare with log-probabilities saved by an earlier run.
    pub base: Option<&'a mut LogitsReader>,
}

/// The result of a perplexity run.
#[derive(Clone, Debug)]
pub struct PplResult {
    /// Windows evaluated.
    pub n_chunks: usize,
    /// Tokens in the text.
    pub n_tokens: usize,
    /// The totals.
    pub stats: PplStats,
    /// Perplexity after each window.
    pub running: Vec<f64>,
    /// KL divergence against the base run, if one was given.
    pub kl: Option<KlStats>,
}

/// Runs the perplexity measurement over `text`, calling `progress(chunk, running_ppl)` after each window.
pub fn perplexity(
    engine: &Engine,
    text: &str,
    params: PplParams<'_>,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<PplResult, RuntimeError> {
    let PplParams {
        n_ctx,
        max_chunks,
        mut save,
        mut base,
    } = params;
    if n_ctx < 4 {
        return Err(RuntimeError::Invalid(format!(
            "perplexity needs a context of at least 4 tokens, got {n_ctx}"
        )));
    }
    let tok = engine.tokenizer();
    let tokens = tok.encode(text, true, false)?;
    if tokens.len() < 2 * n_ctx {
        return Err(RuntimeError::Invalid(format!(
            "the text tokenizes to {} tokens; a context of {n_ctx} needs at least {} (use a smaller -c or a longer text)",
            tokens.len(),
            2 * n_ctx
        )));
    }
    let n_chunks = (tokens.len() / n_ctx)
        .min(max_chunks.unwrap_or(usize::MAX))
        .max(1);
    let model = engine.model();
    let n_vocab = model.hparams().n_vocab;
    let first = n_ctx / 2;
    let bos = if tok.add_bos() { tok.bos() } else { None };

    if let Some(b) = base.as_deref_mut() {
        b.check(n_ctx, n_vocab, &tokens[..n_chunks * n_ctx])?;
    }
    if let Some(w) = save.as_deref_mut() {
        w.begin(n_ctx, n_vocab, n_chunks, &tokens[..n_chunks * n_ctx])?;
    }

    let mut stats = PplStats::default();
    let mut kl = base.as_ref().map(|_| KlStats::default());
    let mut running = Vec::with_capacity(n_chunks);
    let mut logprobs = vec![0f32; n_vocab];
    let mut base_lp = vec![0f32; n_vocab];
    let mut state = model.new_state(n_ctx, engine.kv_types())?;
    for chunk in 0..n_chunks {
        let window = &tokens[chunk * n_ctx..(chunk + 1) * n_ctx];
        let mut input = window.to_vec();
        if let Some(b) = bos {
            input[0] = b;
        }
        state.truncate(0);
        let mut logits: Vec<f32> = Vec::with_capacity((n_ctx - first) * n_vocab);
        let mut pos = 0;
        for piece in input.chunks(PREFILL_CHUNK) {
            model.forward(engine.pool(), &mut state, piece, Logits::All)?;
            // Keep only the rows whose logits are scored.
            for (i, row) in state.logits().chunks_exact(n_vocab).enumerate() {
                if pos + i >= first {
                    logits.extend_from_slice(row);
                }
            }
            pos += piece.len();
        }
        for j in first..n_ctx - 1 {
            let row = &logits[(j - first) * n_vocab..(j - first + 1) * n_vocab];
            let target = window[j + 1] as usize;
            let lp = log_softmax(row, &mut logprobs, target);
            stats.nll -= lp;
            stats.nll2 += lp * lp;
            stats.count += 1;
            if let Some(w) = save.as_deref_mut() {
                w.write_row(&logprobs)?;
            }
            if let (Some(b), Some(k)) = (base.as_deref_mut(), kl.as_mut()) {
                b.read_row(&mut base_lp)?;
                let mut d = 0f64;
                for (&bl, &l) in base_lp.iter().zip(&logprobs) {
                    let p = (bl as f64).exp();
                    if p > 0.0 {
                        d += p * (bl as f64 - l as f64);
                    }
                }
                k.kl += d;
                k.kl2 += d * d;
                k.count += 1;
                if argmax(&base_lp) == argmax(&logprobs) {
                    k.same_top += 1;
                }
                let blp = base_lp[target] as f64;
                k.base.nll -= blp;
                k.base.nll2 += blp * blp;
                k.base.count += 1;
            }
        }
        running.push(stats.ppl());
        progress(chunk + 1, stats.ppl());
    }
    if let Some(w) = save {
        w.finish()?;
    }
    Ok(PplResult {
        n_chunks,
        n_tokens: tokens.len(),
        stats,
        running,
        kl,
    })
}

/// `out = log_softmax(logits)`; returns the log-probability of `target` in
/// f64, computed like llama-perplexity: `expf` of each float difference,
/// summed in a double.
fn log_softmax(logits: &[f32], out: &mut [f32], target: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| (l - max).exp() as f64).sum();
    let lse = sum.ln();
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = ((l - max) as f64 - lse) as f32;
    }
    (logits[target] - max) as f64 - lse
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_normalizes() {
        let mut out = [0f32; 3];
        let lp = log_softmax(&[1.0, 2.0, 3.0], &mut out, 2);
        assert!((lp - out[2] as f64).abs() < 1e-6);
        let s: f32 = out.iter().map(|x| x.exp()).sum();
        assert!((s - 1.0).abs() < 1e-6);
        assert!(out[2] > out[1] && out[1] > out[0]);
    }

    #[test]
    fn stats_match_llama_perplexity_formula() {
        let lps = [-1.0f64, -2.0, -0.5, -3.0];
        let mut s = PplStats::default();
        for lp in lps {
            s.nll -= lp;
            s.nll2 += lp * lp;
            s.count += 1;
        }
        let mean: f64 = 6.5 / 4.0;
        assert!((s.ppl() - mean.exp()).abs() < 1e-12);
        let var = (1.0 + 4.0 + 0.25 + 9.0) / 4.0 - mean * mean;
        assert!((s.ppl_sd() - (var / 3.0f64).sqrt() * s.ppl()).abs() < 1e-12);
    }
}
