//! `pull`: list the repository, pick the model, download its file(s) under a lock,
//! verify, join split parts, and install the result in the store.

use std::path::PathBuf;

use crate::download::{download, Wanted};
use crate::facts::ModelFacts;
use crate::http::Http;
use crate::listing::{self, RemoteFile};
use crate::lock::FileLock;
use crate::manifest::{now, Manifest, SourceFile};
use crate::merge::join_parts;
use crate::progress::Report;
use crate::select::select;
use crate::source::{Hub, ModelRef};
use crate::store::{base_name, Entry, Store};
use crate::HubError;

/// How to reach the hub.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// The endpoint (a mirror); None: the hub's environment variable, else the hub itself.
    pub endpoint: Option<String>,
    /// The access token; None: the hub's environment variable (`HF_TOKEN`…), if set;
    /// an empty string: none at all.
    pub token: Option<String>,
    /// Branch, tag or commit; None: the hub's default branch.
    pub revision: Option<String>,
    /// Names a hub model must not take (the built-in models').
    pub reserved: Vec<String>,
    /// Route through the proxy the environment names (`HTTPS_PROXY`…, `NO_PROXY`).
    pub proxy_from_env: bool,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            endpoint: None,
            token: None,
            revision: None,
            reserved: Vec::new(),
            proxy_from_env: true,
        }
    }
}

/// A model in the store after a pull.
#[derive(Clone, Debug)]
pub struct Pulled {
    /// Its manifest (its name is `manifest.name`).
    pub manifest: Manifest,
    /// Its GGUF file.
    pub path: PathBuf,
    /// False when it was already in the store, up to date.
    pub downloaded: bool,
}

/// Pulls `model` into `store`.
pub fn pull(
    store: &Store,
    model: &ModelRef,
    opts: &PullOptions,
    report: &dyn Report,
) -> Result<Pulled, HubError> {
    let hub = model.hub;
    let endpoint = hub.endpoint(opts.endpoint.as_deref());
    let revision = opts
        .revision
        .clone()
        .unwrap_or_else(|| hub.default_revision().to_owned());
    let http = Http::new(
        hub,
        &endpoint,
        hub.token(opts.token.as_deref()),
        opts.proxy_from_env,
    )?;
    let files = listing::list(&http, &model.repo, &revision)?;
    let selection = select(hub, &model.repo, &files, model.selector.as_deref())?;
    if let Some(why) = &selection.chosen_because {
        report.note(why);
    }
    let Some(first) = selection.first().cloned() else {
        return Err(HubError::NoGguf {
            repo: model.repo.clone(),
            files: Vec::new(),
        });
    };
    let source = model.for_file(&first.path).to_string();
    let listed: Vec<SourceFile> = selection.parts.iter().map(source_file).collect();
    if let Some(done) = up_to_date(store, &source, &listed) {
        return Ok(done);
    }
    let downloads = store.downloads_dir();
    let key = part_key(hub, &model.repo, &first);
    let _lock = FileLock::acquire(&downloads.join(format!("{key}.lock")), || {
        report.note(&format!(
            "another pull of {source} is running; waiting for it to finish"
        ))
    })?;
    // Whoever held the lock may have just installed it.
    if let Some(done) = up_to_date(store, &source, &listed) {
        return Ok(done);
    }
    let n = selection.parts.len();
    let mut partials = Vec::with_capacity(n);
    let mut verified = Vec::with_capacity(n);
    for (i, part) in selection.parts.iter().enumerate() {
        if n > 1 {
            report.note(&format!("part {}/{n}: {}", i + 1, part.path));
        }
        let partial = downloads.join(format!("{}.partial", part_key(hub, &model.repo, part)));
        let want = Wanted {
            repo: &model.repo,
            path: &part.path,
            url: listing::file_url(&http, &model.repo, &revision, &part.path),
            size: (part.size > 0).then_some(part.size),
            sha256: part.sha256.clone(),
        };
        let got = download(&http, &want, &partial, report)?;
        verified.push(SourceFile {
            path: part.path.clone(),
            size: got.size,
            sha256: Some(got.sha256),
        });
        partials.push(partial);
    }
    let (file, size, sha256) = if n == 1 {
        let only = &verified[0];
        (
            partials[0].clone(),
            only.size,
            only.sha256.clone().unwrap_or_default(),
        )
    } else {
        let joined = downloads.join(format!("{key}.joined.partial"));
        match join_parts(&partials, &first.path, &joined, report) {
            Ok((size, sha)) => (joined, size, sha),
            Err(e) => {
                let _ = std::fs::remove_file(&joined);
                return Err(e);
            }
        }
    };
    // A file with the published checksum can still be no GGUF at all: never install it.
    let facts = match ModelFacts::read(&file) {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&file);
            return Err(e);
        }
    };
    let name_quant = selection.quant.clone().or_else(|| facts.quant.clone());
    let manifest = Manifest {
        name: String::new(),
        source,
        description: None,
        endpoint: Some(endpoint),
        revision: Some(revision),
        files: verified,
        sha256,
        size,
        architecture: facts.architecture,
        quant: facts.quant.or(selection.quant),
        pulled_at: now(),
    };
    let base = base_name(&model.repo, name_quant.as_deref());
    let (manifest, path) = store.install_unique(&file, &base, &opts.reserved, manifest)?;
    if n > 1 {
        for p in &partials {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(Pulled {
        manifest,
        path,
        downloaded: true,
    })
}

/// The model of the store that `model` designates, found without the network: among the
/// models pulled from its repository, the one its file or quant selects.
pub fn stored(store: &Store, model: &ModelRef) -> Option<Entry> {
    let prefix = format!("{}:{}:", model.hub.prefix(), model.repo);
    let entries: Vec<Entry> = store
        .entries()
        .ok()?
        .into_iter()
        .filter(|e| {
            e.manifest
                .as_ref()
                .is_some_and(|m| m.source.starts_with(&prefix))
        })
        .collect();
    let files: Vec<RemoteFile> = entries
        .iter()
        .flat_map(|e| e.manifest.iter().flat_map(|m| &m.files))
        .map(|f| RemoteFile {
            path: f.path.clone(),
            size: f.size,
            sha256: f.sha256.clone(),
        })
        .collect();
    let selection = select(model.hub, &model.repo, &files, model.selector.as_deref()).ok()?;
    let source = model.for_file(&selection.first()?.path).to_string();
    entries
        .into_iter()
        .find(|e| e.manifest.as_ref().is_some_and(|m| m.source == source))
}

fn source_file(f: &RemoteFile) -> SourceFile {
    SourceFile {
        path: f.path.clone(),
        size: f.size,
        sha256: f.sha256.clone(),
    }
}

/// The store's model from `source`, if its files are the ones listed now.
fn up_to_date(store: &Store, source: &str, listed: &[SourceFile]) -> Option<Pulled> {
    let entry = store
        .entries()
        .ok()?
        .into_iter()
        .find(|e| e.manifest.as_ref().is_some_and(|m| m.source == source))?;
    let manifest = entry.manifest?;
    let same = manifest.files.len() == listed.len()
        && manifest.files.iter().zip(listed).all(|(have, now)| {
            have.path == now.path
                && (now.size == 0 || have.size == now.size)
                && (now.sha256.is_none() || have.sha256 == now.sha256)
        });
    (same && entry.size == manifest.size).then_some(Pulled {
        manifest,
        path: entry.path,
        downloaded: false,
    })
}

/// The name of a file's download: its sha256 when published (a resumed download is
/// then always of the same bytes), else its hub, repository and path.
fn part_key(hub: Hub, repo: &str, f: &RemoteFile) -> String {
    if let Some(sha) = &f.sha256 {
        return sha.clone();
    }
    let raw = format!("{}--{repo}--{}", hub.prefix(), f.path);
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}
