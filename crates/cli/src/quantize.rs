//! `sparetire quantize IN OUT --type T`: a GGUF in another file type, the way llama-quantize
//! makes it (same tensor types and, without an importance matrix, the same bytes).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use sparetire_convert::{FileType, QuantizeOptions, QuantizeSummary, TensorReport};

use crate::store;

/// `quantize` flags.
#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// The model to quantize: a GGUF file (F32/F16/BF16, or a quantized one with
    /// --allow-requantize) or a store name
    #[arg(value_name = "IN")]
    pub input: String,
    /// The GGUF file to write
    #[arg(value_name = "OUT")]
    pub output: PathBuf,
    /// File type: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S
    /// Q5_K_M Q6_K F16 BF16 F32 (Q3_K/Q4_K/Q5_K mean the _M mixes)
    #[arg(long = "type", value_name = "T")]
    pub file_type: String,
    /// Threads that convert rows (default: the number of cores)
    #[arg(short = 't', long = "threads", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Allow converting tensors that are already quantized (loses quality: quantization errors add up)
    #[arg(long = "allow-requantize")]
    pub allow_requantize: bool,
    /// Print a JSON summary on stdout
    #[arg(long)]
    pub json: bool,
}

/// Runs `sparetire quantize`.
pub fn main(a: QuantizeArgs) -> Result<()> {
    let file_type = parse_type(&a.file_type)?;
    let input = store::resolve(Some(&a.input))?;
    let threads = a
        .threads
        .map(usize::from)
        .unwrap_or_else(crate::args::default_threads);
    let opts = QuantizeOptions {
        file_type,
        threads,
        allow_requantize: a.allow_requantize,
    };
    let t0 = Instant::now();
    eprintln!(
        "sparetire: quantizing {} to {file_type} as {} ({threads} threads)",
        input.display(),
        a.output.display()
    );
    let summary = sparetire_convert::quantize_file(&input, &a.output, &opts, &mut print_progress)
        .with_context(|| format!("quantizing {}", input.display()))?;
    let secs = t0.elapsed().as_secs_f64();
    report(&summary, secs, file_type, &a)
}

/// The file type named `s`, or a usage error listing the valid ones.
pub fn parse_type(s: &str) -> Result<FileType> {
    FileType::parse(s).ok_or_else(|| {
        crate::usage(format!(
            "unknown type {s:?}; valid types: {}",
            FileType::names()
        ))
    })
}

/// One stderr line per tensor, like llama-quantize's.
pub fn print_progress(r: &TensorReport) {
    let dims: Vec<String> = r.dims.iter().map(u64::to_string).collect();
    let change = if r.from == r.to {
        format!("{:>6}", r.to.name())
    } else {
        format!("{:>6} -> {:<6}", r.from.name(), r.to.name())
    };
    eprintln!(
        "[{:>4}/{:>4}] {:<36} [{}] {change} {:>9.3} MiB -> {:>9.3} MiB{}",
        r.index,
        r.total,
        r.name,
        dims.join(", "),
        mib(r.bytes_in),
        mib(r.bytes_out),
        if r.fallback {
            " (row length does not fit the mix's type: fallback)"
        } else {
            ""
        }
    );
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn report(s: &QuantizeSummary, secs: f64, ft: FileType, a: &QuantizeArgs) -> Result<()> {
    let bpw = |b: u64| b as f64 * 8.0 / s.n_elements.max(1) as f64;
    eprintln!(
        "sparetire: {} tensors, {:.2} MiB ({:.2} BPW) -> {:.2} MiB ({:.2} BPW) in {secs:.1} s{}",
        s.n_tensors,
        mib(s.bytes_in),
        bpw(s.bytes_in),
        mib(s.bytes_out),
        bpw(s.bytes_out),
        if s.n_fallback > 0 {
            format!("; {} tensor(s) needed a fallback type", s.n_fallback)
        } else {
            String::new()
        }
    );
    if a.json {
        let v = serde_json::json!({
            "output": a.output.display().to_string(),
            "type": ft.name(),
            "n_tensors": s.n_tensors,
            "n_elements": s.n_elements,
            "bytes_in": s.bytes_in,
            "bytes_out": s.bytes_out,
            "n_fallback": s.n_fallback,
            "file_size": s.file_size,
            "seconds": secs,
        });
        println!("{v}");
    }
    Ok(())
}
