//! `sparetire perplexity`: how well a model predicts a text, measured like llama-perplexity.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use sparetire_runtime::{perplexity, LogitsReader, LogitsWriter, PplParams};

use crate::args::ModelArgs;
use crate::usage;

/// `perplexity` flags.
#[derive(Args, Debug)]
pub struct PerplexityArgs {
    /// The text file to score
    #[arg(short = 'f', long = "file")]
    pub file: std::path::PathBuf,
    /// Evaluate at most this many chunks
    #[arg(long = "chunks")]
    pub chunks: Option<usize>,
    /// Save each scored position's log-probabilities here (for a later --kl-base)
    #[arg(long = "save-logits", value_name = "FILE")]
    pub save_logits: Option<std::path::PathBuf>,
    /// Report KL divergence and top-1 agreement against logits saved by another run
    #[arg(long = "kl-base", value_name = "FILE")]
    pub kl_base: Option<std::path::PathBuf>,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Runs `sparetire perplexity`. `-c` is the window size (default 512, as llama-perplexity).
pub fn main(a: PerplexityArgs) -> Result<()> {
    if a.chunks == Some(0) {
        return Err(usage("--chunks must be at least 1"));
    }
    let mut text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    // llama-perplexity drops one trailing newline of the file; so do we, to score the same tokens.
    if text.ends_with('\n') {
        text.pop();
    }
    let (engine, _) = a.model.load()?;
    let n_ctx = a.model.ctx_size.map(|c| c as usize).unwrap_or(512);
    eprintln!("sparetire: {}", crate::args::kv_report(&engine, n_ctx));
    let mut save = a
        .save_logits
        .as_deref()
        .map(LogitsWriter::create)
        .transpose()?;
    let mut base = a.kl_base.as_deref().map(LogitsReader::open).transpose()?;
    let json = a.json;
    let mut progress = |i: usize, ppl: f64| {
        if !json {
            print!("[{i}]{ppl:.4},");
            let _ = std::io::stdout().flush();
        }
    };
    let r = perplexity(
        &engine,
        &text,
        PplParams {
            n_ctx,
            max_chunks: a.chunks,
            save: save.as_mut(),
            base: base.as_mut(),
        },
        &mut progress,
    )?;
    let mut doc = serde_json::json!({
        "ppl": r.stats.ppl(),
        "ppl_sd": r.stats.ppl_sd(),
        "chunks": r.n_chunks,
        "n_ctx": n_ctx,
        "n_tokens": r.n_tokens,
        "n_scored": r.stats.count,
        "chunk_ppls": r.running,
        "kv_cache": crate::args::kv_json(&engine, n_ctx),
    });
    if let Some(k) = &r.kl {
        doc["kl"] = serde_json::json!({
            "mean": k.mean(),
            "mean_sd": k.mean_sd(),
            "top1_agreement": k.top1_agreement(),
            "base_ppl": k.base.ppl(),
            "base_ppl_sd": k.base.ppl_sd(),
            "count": k.count,
        });
    }
    if json {
        println!("{doc}");
    } else {
        println!();
        println!(
            "Final estimate: PPL = {:.4} +/- {:.5}",
            r.stats.ppl(),
            r.stats.ppl_sd()
        );
        if let Some(k) = &r.kl {
            println!(
                "Base PPL     = {:.4} +/- {:.5}",
                k.base.ppl(),
                k.base.ppl_sd()
            );
            println!("Mean KLD     = {:.6} +/- {:.6}", k.mean(), k.mean_sd());
            println!("Same top p   = {:.3} %", 100.0 * k.top1_agreement());
        }
    }
    Ok(())
}
