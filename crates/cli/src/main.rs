//! `sparetire`: run open-weight LLMs on your own machines.
//!
//! Each subcommand lives in its own file; this one parses the command line
//! and maps errors to exit codes (0 success, 1 runtime error, 2 usage error).

mod args;
mod bench;
mod bench_serve;
mod chat;
mod cluster;
mod convert;
mod device;
mod inspect;
mod models;
mod perplexity;
mod plan;
mod pull;
mod quantize;
mod run;
mod serve;
mod store;
mod tokenize;

use clap::{Parser, Subcommand};

/// sparetire — an LLM inference engine for the machines you have.
#[derive(Parser)]
#[command(name = "sparetire", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate text from a prompt (wrapped in the model's chat template unless --raw)
    Run(run::RunArgs),
    /// Speed of prompt processing and generation, like llama-bench; `bench serve` measures a server
    Bench(bench::BenchArgs),
    /// Interactive chat that keeps the conversation's history
    Chat(chat::ChatArgs),
    /// Print the token ids of a text
    Tokenize(tokenize::TokenizeArgs),
    /// Perplexity of a text (llama-perplexity's method); KL divergence against saved logits
    Perplexity(perplexity::PerplexityArgs),
    /// OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions, /v1/models)
    Serve(serve::ServeArgs),
    /// Describe a model file: architecture, hyperparameters, tokenizer, tensors
    Inspect(inspect::InspectArgs),
    /// Predicted layout, memory per node and decode speed of a model on a cluster
    Plan(plan::PlanArgs),
    /// Write a GGUF in another quantization (Q4_0 … Q8_0, Q2_K … Q6_K, Q4_K_M, F16 …), like llama-quantize
    Quantize(quantize::QuantizeArgs),
    /// Import a Hugging Face checkpoint directory (llama, qwen2, qwen3) as a GGUF
    Convert(convert::ConvertArgs),
    /// Fetch a model into the local store: a built-in one, or hf:ORG/REPO[:QUANT] / ms:ORG/REPO[:QUANT]
    Pull(pull::PullArgs),
    /// List the models in the store (and the built-in ones not pulled yet)
    List(models::ListArgs),
    /// Remove models from the store
    Rm(models::RmArgs),
    /// List the Vulkan devices (name, driver, memory, subgroup size) for --device vulkan:N
    Devices(device::DevicesArgs),
}

fn main() {
    let cli = Cli::parse_from(args::expand_short_flags(std::env::args_os()));
    let result = match cli.command {
        Cmd::Run(a) => run::main(a),
        Cmd::Chat(a) => chat::main(a),
        Cmd::Bench(a) => bench::main(a),
        Cmd::Tokenize(a) => tokenize::main(a),
        Cmd::Inspect(a) => inspect::main(a),
        Cmd::Perplexity(a) => perplexity::main(a),
        Cmd::Serve(a) => serve::main(a),
        Cmd::Plan(a) => plan::main(a),
        Cmd::Quantize(a) => quantize::main(a),
        Cmd::Convert(a) => convert::main(a),
        Cmd::Pull(a) => pull::main(a),
        Cmd::List(a) => models::list(a),
        Cmd::Rm(a) => models::rm(a),
        Cmd::Devices(a) => device::devices(a),
    };
    sparetire_cluster::finish();
    device::print_memory();
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        let code = if e.downcast_ref::<UsageError>().is_some() {
            2
        } else {
            1
        };
        std::process::exit(code);
    }
}

/// A mistake in how the command was called (exit code 2, like clap's own).
#[derive(Debug)]
pub struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error with this message.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}
