//! `sparetire convert DIR OUT.gguf [--type T]`: a Hugging Face checkpoint directory (llama,
//! qwen2, qwen3) as a GGUF, with its tokenizer and chat template.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use sparetire_convert::QuantizeOptions;

/// `convert` flags.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The checkpoint directory: config.json, tokenizer.json, tokenizer_config.json,
    /// *.safetensors (or shards listed in model.safetensors.index.json)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The GGUF file to write
    #[arg(value_name = "OUT")]
    pub output: PathBuf,
    /// File type (see `sparetire quantize --help`; default: BF16 for a BF16 checkpoint, else F16)
    #[arg(long = "type", value_name = "T")]
    pub file_type: Option<String>,
    /// Threads that convert rows (default: the number of cores)
    #[arg(short = 't', long = "threads", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
}

/// Runs `sparetire convert`.
pub fn main(a: ConvertArgs) -> Result<()> {
    let file_type = match &a.file_type {
        Some(t) => crate::quantize::parse_type(t)?,
        None => sparetire_convert::hf::default_file_type(&a.dir)
            .with_context(|| format!("reading {}", a.dir.display()))?,
    };
    let threads = a
        .threads
        .map(usize::from)
        .unwrap_or_else(crate::args::default_threads);
    let opts = QuantizeOptions {
        file_type,
        threads,
        allow_requantize: false,
    };
    eprintln!(
        "sparetire: converting {} to {file_type} as {}",
        a.dir.display(),
        a.output.display()
    );
    let t0 = Instant::now();
    let s = sparetire_convert::hf::convert_dir(
        &a.dir,
        &a.output,
        &opts,
        &mut crate::quantize::print_progress,
    )
    .with_context(|| format!("converting {}", a.dir.display()))?;
    eprintln!(
        "sparetire: {} tensors, {:.2} MiB written in {:.1} s",
        s.n_tensors,
        s.file_size as f64 / (1024.0 * 1024.0),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
