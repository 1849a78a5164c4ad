//! `sparetire pull`: a built-in model (pip-backed), or any GGUF from Hugging Face
//! (`hf:ORG/REPO[:FILE_OR_QUANT]`) or ModelScope (`ms:…`).

use anyhow::{Context, Result};
use clap::Args;
use sparetire_hub::{ModelRef, PullOptions, Pulled, StderrReport};

use crate::{store, usage};

/// `pull` flags.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// A built-in model (smollm2, the default; gemma3-270m; a unique prefix works), a GGUF
    /// from a hub: hf:ORG/REPO[:FILE_OR_QUANT] (Hugging Face) or ms:ORG/REPO[:FILE_OR_QUANT]
    /// (ModelScope), e.g. hf:Qwen/Qwen3-0.6B-GGUF:Q8_0, or the store name of one pulled before
    /// (pulled again from where it came from: an update if it changed)
    pub name: Option<String>,
    /// Access token for gated or private repositories (default: $HF_TOKEN; $MODELSCOPE_API_TOKEN for ms:)
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// The hub's address, e.g. a mirror (default: $HF_ENDPOINT; $MODELSCOPE_DOMAIN for ms:; else the hub)
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Branch, tag or commit to pull (default: main on Hugging Face, master on ModelScope)
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    /// Print the model's manifest, with its "path", as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// Runs `sparetire pull`: prints the model's path on stdout (or its manifest with `--json`).
pub fn main(a: PullArgs) -> Result<()> {
    let query = a.name.as_deref().unwrap_or(store::DEFAULT_MODEL);
    // A hub model already in the store: pull its source again (an update, if it changed).
    let stored = store::store()
        .manifest(query)
        .ok()
        .flatten()
        .filter(|m| ModelRef::looks_like(&m.source));
    if let Some(m) = stored {
        let model = ModelRef::parse(&m.source)?;
        // The endpoint it came from, unless the flag or the environment names another.
        let env_endpoint = std::env::var_os(model.hub.endpoint_env()).filter(|v| !v.is_empty());
        let opts = PullOptions {
            endpoint: a.endpoint.or(m.endpoint.filter(|_| env_endpoint.is_none())),
            token: a.token,
            revision: a.revision.or(m.revision),
            ..PullOptions::default()
        };
        return report(pull_hub(&model, &opts)?, a.json);
    }
    if !ModelRef::looks_like(query) {
        if a.token.is_some() || a.endpoint.is_some() || a.revision.is_some() {
            return Err(usage(
                "--token, --endpoint and --revision are for hf:/ms: models, not the built-in ones",
            ));
        }
        let known = store::find_known(query)?;
        let path = store::pull(known)?;
        if a.json {
            let manifest = store::store().manifest(known.name).ok().flatten();
            let mut v = serde_json::to_value(manifest)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("path".into(), path.display().to_string().into());
            }
            println!("{v}");
        } else {
            println!("{}", path.display());
        }
        return Ok(());
    }
    let model = ModelRef::parse(query).map_err(|e| usage(e.to_string()))?;
    let opts = PullOptions {
        endpoint: a.endpoint,
        token: a.token,
        revision: a.revision,
        ..PullOptions::default()
    };
    report(pull_hub(&model, &opts)?, a.json)
}

/// Prints a pulled model's path, or its manifest with `--json`.
fn report(pulled: Pulled, json: bool) -> Result<()> {
    if json {
        let mut v = serde_json::to_value(&pulled.manifest)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("path".into(), pulled.path.display().to_string().into());
            o.insert("downloaded".into(), pulled.downloaded.into());
        }
        println!("{v}");
    } else {
        println!("{}", pulled.path.display());
    }
    Ok(())
}

/// Pulls `model` into the store, telling the user on stderr.
pub fn pull_hub(model: &ModelRef, opts: &PullOptions) -> Result<Pulled> {
    let store = store::store();
    let opts = PullOptions {
        reserved: store::reserved_names(),
        ..opts.clone()
    };
    let pulled = sparetire_hub::pull(&store, model, &opts, &StderrReport)
        .with_context(|| format!("pulling {model}"))?;
    let m = &pulled.manifest;
    eprintln!(
        "sparetire: {} {} as {} ({}, {}, {:.1} MB); use it with -m {}",
        m.source,
        if pulled.downloaded {
            "pulled"
        } else {
            "is already in the store"
        },
        m.name,
        m.architecture.as_deref().unwrap_or("unknown architecture"),
        m.quant.as_deref().unwrap_or("unknown quant"),
        m.size as f64 / 1e6,
        m.name
    );
    Ok(pulled)
}
