//! `sparetire list` and `sparetire rm`: what the local model store holds.

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};
use sparetire_hub::{Entry, ModelFacts};

use crate::store;

/// `list` flags.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print a JSON array
    #[arg(long)]
    pub json: bool,
}

/// `rm` flags.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Store names of the models to remove (as `sparetire list` shows them)
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}

/// One row of `list`: a built-in model (pulled or not) or a model in the store.
fn row(
    name: &str,
    known: Option<&store::KnownModel>,
    entry: Option<&Entry>,
    path: &std::path::Path,
) -> Value {
    let manifest = entry.and_then(|e| e.manifest.as_ref());
    // Files stored before manifests existed: read the header instead.
    let facts = match (entry, manifest) {
        (Some(e), m) if m.is_none_or(|m| m.architecture.is_none()) => {
            ModelFacts::read(&e.path).unwrap_or_default()
        }
        (_, Some(m)) => ModelFacts {
            architecture: m.architecture.clone(),
            quant: m.quant.clone(),
        },
        _ => ModelFacts::default(),
    };
    let source = manifest
        .map(|m| m.source.clone())
        .or_else(|| known.map(store::pip_source));
    json!({
        "name": name,
        "description": known.map(|k| k.description).or(manifest.and_then(|m| m.description.as_deref())),
        "cached": entry.is_some(),
        "size": entry.map(|e| e.size),
        "path": path.display().to_string(),
        "default": name == store::DEFAULT_MODEL,
        "architecture": facts.architecture,
        "quant": facts.quant,
        "source": source,
        "sha256": manifest.map(|m| m.sha256.clone()),
        "pulled_at": manifest.map(|m| m.pulled_at),
    })
}

/// Runs `sparetire list`: the built-in models (pulled or not), then the store's others.
pub fn list(a: ListArgs) -> Result<()> {
    let st = store::store();
    let entries = st.entries()?;
    let mut rows: Vec<Value> = store::KNOWN
        .iter()
        .map(|k| {
            let entry = entries.iter().find(|e| e.name == k.name);
            row(k.name, Some(k), entry, &st.model_path(k.name))
        })
        .collect();
    for e in &entries {
        if !store::KNOWN.iter().any(|k| k.name == e.name) {
            rows.push(row(&e.name, None, Some(e), &e.path));
        }
    }
    if a.json {
        println!("{}", Value::Array(rows));
        return Ok(());
    }
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or("-").to_owned();
    let names: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{}{}",
                text(r, "name"),
                if r["default"] == true { "*" } else { "" }
            )
        })
        .collect();
    let width = names.iter().map(String::len).max().unwrap_or(4).max(4);
    println!(
        "{:<width$}  {:<9} {:<9} {:>9}  SOURCE",
        "NAME", "ARCH", "QUANT", "SIZE"
    );
    for (r, name) in rows.iter().zip(&names) {
        let size = r["size"]
            .as_u64()
            .map(|s| format!("{:.1} MB", s as f64 / 1e6))
            .unwrap_or_else(|| "-".into());
        let source = match (r["description"].as_str(), r["cached"] == true) {
            (Some(d), true) => format!("built-in: {d}"),
            (Some(d), false) => format!("built-in, not pulled yet: {d}"),
            (None, _) => text(r, "source"),
        };
        println!(
            "{name:<width$}  {:<9} {:<9} {size:>9}  {source}",
            text(r, "architecture"),
            text(r, "quant"),
        );
    }
    println!("\n* default model; store: {}", st.root().display());
    Ok(())
}

/// Runs `sparetire rm`: removes models (file and manifest) from the store.
pub fn rm(a: RmArgs) -> Result<()> {
    let st = store::store();
    for name in &a.names {
        let e = st.remove(name)?;
        eprintln!(
            "sparetire: removed {} ({:.1} MB): {}",
            e.name,
            e.size as f64 / 1e6,
            e.path.display()
        );
    }
    Ok(())
}
