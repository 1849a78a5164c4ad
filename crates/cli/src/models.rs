//! `sparetire pull` and `sparetire list`: the local model store.

use anyhow::Result;
use clap::Args;

use crate::store;

/// `pull` flags.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// Model name (default: smollm2); a unique prefix works
    pub name: Option<String>,
}

/// `list` flags.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print a JSON array
    #[arg(long)]
    pub json: bool,
}

/// Runs `sparetire pull`: prints the model's path on stdout.
pub fn pull(a: PullArgs) -> Result<()> {
    let known = store::find_known(a.name.as_deref().unwrap_or(store::DEFAULT_MODEL))?;
    let path = store::pull(known)?;
    println!("{}", path.display());
    Ok(())
}

/// Runs `sparetire list`.
pub fn list(a: ListArgs) -> Result<()> {
    let rows: Vec<serde_json::Value> = store::KNOWN
        .iter()
        .map(|m| {
            let p = store::model_path(m.name);
            let size = std::fs::metadata(&p).ok().map(|md| md.len());
            serde_json::json!({
                "name": m.name,
                "description": m.description,
                "cached": size.is_some(),
                "size": size,
                "path": p.display().to_string(),
                "default": m.name == store::DEFAULT_MODEL,
            })
        })
        .collect();
    if a.json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    println!("{:<14} {:<8} {:>9}  DESCRIPTION", "NAME", "CACHED", "SIZE");
    for r in rows {
        let size = r["size"]
            .as_u64()
            .map(|s| format!("{:.1} MB", s as f64 / 1e6))
            .unwrap_or_else(|| "-".into());
        let name = format!(
            "{}{}",
            r["name"].as_str().unwrap_or(""),
            if r["default"] == true { "*" } else { "" }
        );
        println!(
            "{:<14} {:<8} {:>9}  {}",
            name,
            if r["cached"] == true { "yes" } else { "no" },
            size,
            r["description"].as_str().unwrap_or("")
        );
    }
    println!("\n* default model; store: {}", store::home().display());
    Ok(())
}
