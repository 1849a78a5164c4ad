//! `sparetire inspect`: what is inside a GGUF file.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Value as Json};
use sparetire_formats::gguf::{GgufFile, Value};

use crate::store;

/// `inspect` flags.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Model: a GGUF file or a store name (default: smollm2)
    #[arg(short = 'm', long = "model", value_name = "FILE|NAME")]
    pub model: Option<String>,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

/// Runs `sparetire inspect`. Works on any well-formed GGUF, supported architecture or not.
pub fn main(a: InspectArgs) -> Result<()> {
    let path = store::resolve(a.model.as_deref())?;
    let f = GgufFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let arch = f
        .get_str("general.architecture")
        .unwrap_or("unknown")
        .to_owned();
    let prefix = format!("{arch}.");
    let hparams: BTreeMap<String, Json> = f
        .metadata()
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(k, v)| (k[prefix.len()..].to_owned(), to_json(v)))
        .collect();

    let mut by_type: BTreeMap<&str, (usize, u64, u64)> = BTreeMap::new();
    let mut n_params = 0u64;
    for t in f.tensors() {
        let e = by_type.entry(t.ty.name()).or_default();
        e.0 += 1;
        e.1 += t.n_bytes;
        e.2 += t.n_elements();
        n_params += t.n_elements();
    }
    let tensors: BTreeMap<&str, Json> = by_type
        .iter()
        .map(|(ty, (n, bytes, elems))| {
            (*ty, json!({"count": n, "bytes": bytes, "elements": elems}))
        })
        .collect();
    let tok = json!({
        "model": f.get_str("tokenizer.ggml.model"),
        "pre": f.get_str("tokenizer.ggml.pre"),
        "n_tokens": f.get_array("tokenizer.ggml.tokens").map(|a| a.len()),
        "n_merges": f.get_array("tokenizer.ggml.merges").map(|a| a.len()),
        "bos_token_id": f.get_u64("tokenizer.ggml.bos_token_id"),
        "eos_token_id": f.get_u64("tokenizer.ggml.eos_token_id"),
        "add_bos_token": f.get_bool("tokenizer.ggml.add_bos_token"),
        "has_chat_template": f.get("tokenizer.chat_template").is_some(),
    });
    let doc = json!({
        "path": path.display().to_string(),
        "gguf_version": f.version(),
        "file_size": f.file_size(),
        "architecture": arch,
        "name": f.get_str("general.name"),
        "file_type": f.get_u64("general.file_type"),
        "n_params": n_params,
        "hparams": hparams,
        "tokenizer": tok,
        "n_tensors": f.tensors().len(),
        "tensors_by_type": tensors,
        "supported": sparetire_models::arch::SUPPORTED.contains(&arch.as_str()),
    });
    if a.json {
        println!("{doc}");
        return Ok(());
    }
    println!(
        "file:          {} ({:.1} MB, GGUF v{})",
        path.display(),
        f.file_size() as f64 / 1e6,
        f.version()
    );
    println!(
        "architecture:  {arch}{}",
        if doc["supported"] == true {
            ""
        } else {
            " (not supported by this sparetire)"
        }
    );
    if let Some(n) = f.get_str("general.name") {
        println!("name:          {n}");
    }
    println!("parameters:    {:.1} M", n_params as f64 / 1e6);
    println!("hyperparameters:");
    for (k, v) in &hparams {
        println!("  {k:<36} {v}");
    }
    println!("tokenizer:");
    for (k, v) in tok.as_object().into_iter().flatten() {
        println!("  {k:<36} {v}");
    }
    println!("tensors:       {}", f.tensors().len());
    for (ty, (n, bytes, _)) in &by_type {
        println!("  {ty:<8} {n:>5} tensors {:>10.1} MB", *bytes as f64 / 1e6);
    }
    Ok(())
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::Array(a) if a.len() > 16 => json!(format!("[{} items]", a.len())),
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::String(s) => json!(s),
        Value::Bool(b) => json!(b),
        Value::F32(x) => json!(x),
        Value::F64(x) => json!(x),
        other => other
            .as_i64()
            .map(|i| json!(i))
            .unwrap_or_else(|| json!(other.to_string())),
    }
}
