//! `sparetire chat`: an interactive conversation that keeps its history.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;
use clap::Args;
use sparetire_runtime::{GenParams, StopReason};
use sparetire_tokenizer::ChatMessage;

use crate::args::{ModelArgs, SamplingArgs};
use crate::usage;

/// `chat` flags.
#[derive(Args, Debug)]
pub struct ChatArgs {
    /// A system message that opens the conversation
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens per answer (-1 = until the model stops)
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    pub n_predict: i64,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

const HELP: &str = "commands: /reset (forget the conversation), /exit (or Ctrl-D)";

/// Runs `sparetire chat`: reads a user turn per line from stdin, streams answers to stdout.
pub fn main(a: ChatArgs) -> Result<()> {
    if a.n_predict < -1 {
        return Err(usage(format!(
            "-n must be -1 (unlimited) or a count, got {}",
            a.n_predict
        )));
    }
    let sampler = a.sampling.config().map_err(|e| usage(e.to_string()))?;
    let (engine, _) = a.model.load()?;
    let n_ctx = a.model.n_ctx(&engine);
    eprintln!("sparetire: {}", crate::args::kv_report(&engine, n_ctx));
    let params = GenParams {
        max_tokens: usize::try_from(a.n_predict).ok(),
        sampler,
        stop: a.sampling.stop.clone(),
        stop_at_eog: true,
        logprobs: None,
    };
    let mut session = engine.session(n_ctx)?;
    let opening: Vec<ChatMessage> = a
        .system
        .iter()
        .map(|s| ChatMessage::new("system", s.clone()))
        .collect();
    let mut messages = opening.clone();
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("sparetire: chatting; {HELP}");
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let text = line.trim();
        match text {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                messages = opening.clone();
                eprintln!("sparetire: conversation reset");
                continue;
            }
            "/help" => {
                eprintln!("{HELP}");
                continue;
            }
            _ => {}
        }
        messages.push(ChatMessage::new("user", text.to_owned()));
        let rendered = engine.render_chat(&messages)?;
        let tokens = engine.tokenize_chat(&rendered)?;
        if tokens.len() >= n_ctx {
            messages.pop();
            eprintln!(
                "sparetire: the conversation ({} tokens) no longer fits the context ({n_ctx}); /reset or use a larger -c",
                tokens.len()
            );
            continue;
        }
        let stdout = std::io::stdout();
        let mut on_text = |s: &str| {
            let mut out = stdout.lock();
            out.write_all(s.as_bytes())
                .and_then(|_| out.flush())
                .is_ok()
        };
        let g = session.generate(&tokens, &params, &mut on_text)?;
        println!();
        if g.stop_reason == StopReason::ContextFull {
            eprintln!("sparetire: context full; /reset to start over");
        }
        messages.push(ChatMessage::new("assistant", g.text));
    }
    Ok(())
}
