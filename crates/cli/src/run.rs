//! `sparetire run`: one prompt in, streamed text out.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use sparetire_runtime::{GenParams, Generation};
use sparetire_tokenizer::ChatMessage;

use crate::args::{ModelArgs, SamplingArgs};
use crate::usage;

/// `run` flags.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The prompt (or use -p / -f)
    #[arg(value_name = "PROMPT")]
    pub prompt_pos: Option<String>,
    /// The prompt
    #[arg(short = 'p', long = "prompt", conflicts_with = "prompt_pos")]
    pub prompt: Option<String>,
    /// Read the prompt from a file
    #[arg(short = 'f', long = "file", conflicts_with_all = ["prompt", "prompt_pos"])]
    pub file: Option<std::path::PathBuf>,
    /// Tokens to generate (-1 = until the model stops or the context is full)
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    pub n_predict: i64,
    /// Feed the prompt as-is (no chat template), tokenized like llama.cpp's completion tool
    #[arg(long)]
    pub raw: bool,
    /// A system message for the chat template
    #[arg(long)]
    pub system: Option<String>,
    /// Compute every token as in a batch of one, as `serve` does (its greedy output is then
    /// identical to the server's; the default follows llama.cpp's batched arithmetic)
    #[arg(long = "batch-invariant")]
    pub batch_invariant: bool,
    /// Print one JSON object instead of streaming text
    #[arg(long)]
    pub json: bool,
    /// With --json: the N most likely tokens and their log-probabilities at every step
    #[arg(long = "top-logprobs", value_name = "N", requires = "json", value_parser = clap::value_parser!(u8).range(1..=20))]
    pub top_logprobs: Option<u8>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// Runs `sparetire run`.
pub fn main(a: RunArgs) -> Result<()> {
    let prompt = match (&a.prompt_pos, &a.prompt, &a.file) {
        (Some(p), _, _) | (_, Some(p), _) => p.clone(),
        (_, _, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading prompt file {}", f.display()))?,
        _ => {
            return Err(usage(
                "no prompt: give one as an argument, with -p PROMPT, or with -f FILE",
            ))
        }
    };
    if a.n_predict < -1 {
        return Err(usage(format!(
            "-n must be -1 (unlimited) or a count, got {}",
            a.n_predict
        )));
    }
    let sampler = a.sampling.config().map_err(|e| usage(e.to_string()))?;
    let (engine, load_ms) = a.model.load()?;
    let n_ctx = a.model.n_ctx(&engine);
    eprintln!("sparetire: {}", crate::args::kv_report(&engine, n_ctx));

    let tokens = if a.raw {
        engine.tokenize_raw(&prompt)?
    } else {
        let mut msgs = Vec::new();
        if let Some(s) = &a.system {
            msgs.push(ChatMessage::new("system", s.clone()));
        }
        msgs.push(ChatMessage::new("user", prompt.clone()));
        let rendered = engine
            .render_chat(&msgs)
            .context("applying the chat template")?;
        engine.tokenize_chat(&rendered)?
    };
    let params = GenParams {
        max_tokens: usize::try_from(a.n_predict).ok(),
        sampler,
        stop: a.sampling.stop.clone(),
        stop_at_eog: true,
        logprobs: a.top_logprobs.map(usize::from),
    };
    let mut session = engine.session(n_ctx)?;
    if a.batch_invariant {
        session.set_arithmetic(sparetire_runtime::Arithmetic::PerToken);
    }
    let stdout = std::io::stdout();
    let json = a.json;
    let mut on_text = |s: &str| {
        if !json {
            let mut out = stdout.lock();
            // A closed stdout (e.g. `| head`) ends generation quietly.
            return out
                .write_all(s.as_bytes())
                .and_then(|_| out.flush())
                .is_ok();
        }
        true
    };
    let g = session.generate(&tokens, &params, &mut on_text)?;
    if json {
        println!("{}", to_json(&tokens, &g, load_ms));
    } else {
        println!();
    }
    report(&g);
    Ok(())
}

/// The `--json` object: `{"prompt_tokens", "tokens", "text", "stop_reason", "timings"}`, plus
/// `"logprobs": [{"token", "logprob", "top": [[id, logprob], ...]}, ...]` with `--top-logprobs`.
pub fn to_json(prompt: &[u32], g: &Generation, load_ms: f64) -> serde_json::Value {
    let t = &g.timings;
    let mut v = serde_json::json!({
        "prompt_tokens": prompt,
        "tokens": g.tokens,
        "text": g.text,
        "stop_reason": g.stop_reason.as_str(),
        "timings": {
            "load_ms": load_ms,
            "prompt_n": t.prompt_n,
            "prompt_ms": t.prompt_ms,
            "prompt_per_second": t.prompt_per_second(),
            "predicted_n": t.predicted_n,
            "predicted_ms": t.predicted_ms,
            "predicted_per_second": t.predicted_per_second(),
        }
    });
    if !g.logprobs.is_empty() {
        v["logprobs"] = g
            .logprobs
            .iter()
            .map(|l| {
                serde_json::json!({
                    "token": l.token,
                    "logprob": l.logprob,
                    "top": l.top.iter().map(|(id, _, lp)| serde_json::json!([id, lp])).collect::<Vec<_>>(),
                })
            })
            .collect();
    }
    v
}

/// The one-line speed report on stderr.
pub fn report(g: &Generation) {
    let t = &g.timings;
    eprintln!(
        "sparetire: prompt {} tokens at {:.1} tok/s; generated {} tokens at {:.1} tok/s (stop: {})",
        t.prompt_n,
        t.prompt_per_second(),
        t.predicted_n,
        t.predicted_per_second(),
        g.stop_reason.as_str()
    );
}
