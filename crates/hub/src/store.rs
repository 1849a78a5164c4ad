//! The local model store: one directory of models with their manifests.
//!
//! Layout under the root (`$SPARETIRE_HOME`, default `$XDG_CACHE_HOME/sparetire`, else
//! `~/.cache/sparetire`):
//!
//! ```text
//! models/NAME.gguf        a complete, verified model (only ever renamed into place)
//! models/NAME.json        its Manifest
//! models/.lock            held while a name is chosen, a model installed or removed
//! downloads/KEY.partial   a download in progress (KEY: the file's sha256 when published)
//! downloads/KEY.lock      held by the pull downloading KEY
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use crate::lock::FileLock;
use crate::manifest::Manifest;
use crate::HubError;

/// A store directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    root: PathBuf,
}

/// A model in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// Its GGUF file.
    pub path: PathBuf,
    /// The file's size.
    pub size: u64,
    /// Its manifest (None for files stored before manifests existed, or unreadable ones).
    pub manifest: Option<Manifest>,
}

impl Store {
    /// The store the environment names: `$SPARETIRE_HOME`, else `$XDG_CACHE_HOME/sparetire`,
    /// else `~/.cache/sparetire`.
    pub fn from_env() -> Store {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(home) = var("SPARETIRE_HOME") {
            return Store::at(home);
        }
        let cache = var("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(var("HOME").unwrap_or_else(|| ".".into())).join(".cache")
        });
        Store::at(cache.join("sparetire"))
    }

    /// The store rooted at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// Its root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the models live.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    /// Where downloads in progress live.
    pub fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// Where model `name`'s file is (or would be).
    pub fn model_path(&self, name: &str) -> PathBuf {
        self.models_dir().join(format!("{name}.gguf"))
    }

    /// Where model `name`'s manifest is (or would be).
    pub fn manifest_path(&self, name: &str) -> PathBuf {
        self.models_dir().join(format!("{name}.json"))
    }

    /// Model `name`'s manifest, if it has one.
    pub fn manifest(&self, name: &str) -> Result<Option<Manifest>, HubError> {
        if !valid_name(name) {
            return Ok(None);
        }
        let path = self.manifest_path(name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| HubError::Manifest { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HubError::io("reading", path, e)),
        }
    }

    /// The model called `name`, if its file is in the store.
    pub fn get(&self, name: &str) -> Option<Entry> {
        if !valid_name(name) {
            return None;
        }
        let path = self.model_path(name);
        let size = fs::metadata(&path).ok().filter(|m| m.is_file())?.len();
        Some(Entry {
            name: name.to_owned(),
            manifest: self.manifest(name).ok().flatten(),
            path,
            size,
        })
    }

    /// Every model in the store, by name.
    pub fn entries(&self) -> Result<Vec<Entry>, HubError> {
        let dir = self.models_dir();
        let read = match fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(HubError::io("reading", dir, e)),
        };
        let mut out: Vec<Entry> = read
            .flatten()
            .filter_map(|e| {
                let file_name = e.file_name();
                let name = file_name.to_str()?.strip_suffix(".gguf")?;
                self.get(name)
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Installs `file` as model `manifest.name`: the manifest is written, then the file
    /// renamed into place (both atomically), replacing a model of that name.
    pub fn install(&self, file: &Path, manifest: &Manifest) -> Result<PathBuf, HubError> {
        let _names = self.lock_names()?;
        self.install_locked(file, manifest)
    }

    fn install_locked(&self, file: &Path, manifest: &Manifest) -> Result<PathBuf, HubError> {
        if !valid_name(&manifest.name) {
            return Err(HubError::Io {
                op: "naming",
                path: self.model_path(&manifest.name),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a valid store name",
                ),
            });
        }
        let json_path = self.manifest_path(&manifest.name);
        let tmp = self.models_dir().join(format!(
            ".{}.json.{}.tmp",
            manifest.name,
            std::process::id()
        ));
        let json = serde_json::to_vec_pretty(manifest).map_err(|source| HubError::Manifest {
            path: json_path.clone(),
            source,
        })?;
        fs::write(&tmp, json).map_err(|e| HubError::write(&tmp, e))?;
        fs::rename(&tmp, &json_path).map_err(|e| HubError::io("renaming", &json_path, e))?;
        let dest = self.model_path(&manifest.name);
        fs::rename(file, &dest).map_err(|e| HubError::io("moving the model into", &dest, e))?;
        Ok(dest)
    }

    /// Writes (atomically) the manifest of a model already in the store, e.g. one
    /// stored before manifests existed.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<(), HubError> {
        let _names = self.lock_names()?;
        self.write_manifest_locked(manifest)
    }

    fn write_manifest_locked(&self, manifest: &Manifest) -> Result<(), HubError> {
        let json_path = self.manifest_path(&manifest.name);
        let tmp = self.models_dir().join(format!(
            ".{}.json.{}.tmp",
            manifest.name,
            std::process::id()
        ));
        let json = serde_json::to_vec_pretty(manifest).map_err(|source| HubError::Manifest {
            path: json_path.clone(),
            source,
        })?;
        fs::write(&tmp, json).map_err(|e| HubError::write(&tmp, e))?;
        fs::rename(&tmp, &json_path).map_err(|e| HubError::io("renaming", &json_path, e))
    }

    /// Installs `file` under `base`, or `base-2`, `base-3`… if that name belongs to a model
    /// from another source or is `reserved`; a model from the same source is replaced.
    /// Returns the manifest as written.
    pub(crate) fn install_unique(
        &self,
        file: &Path,
        base: &str,
        reserved: &[String],
        mut manifest: Manifest,
    ) -> Result<(Manifest, PathBuf), HubError> {
        let _names = self.lock_names()?;
        let mut n = 1;
        let name = loop {
            let candidate = if n == 1 {
                base.to_owned()
            } else {
                format!("{base}-{n}")
            };
            n += 1;
            if reserved.contains(&candidate) {
                continue;
            }
            match self.manifest(&candidate) {
                Ok(Some(m)) if m.source == manifest.source => break candidate,
                Ok(Some(_)) | Err(_) => continue,
                Ok(None) if self.model_path(&candidate).exists() => continue,
                Ok(None) => break candidate,
            }
        };
        manifest.name = name;
        let path = self.install_locked(file, &manifest)?;
        Ok((manifest, path))
    }

    /// Removes model `name` (its file and manifest).
    pub fn remove(&self, name: &str) -> Result<Entry, HubError> {
        let _names = self.lock_names()?;
        let unknown = || HubError::UnknownModel {
            name: name.to_owned(),
            store: self.root.clone(),
            known: self
                .entries()
                .map(|es| es.into_iter().map(|e| e.name).collect())
                .unwrap_or_default(),
        };
        if !valid_name(name) {
            return Err(unknown());
        }
        let json = self.manifest_path(name);
        let entry = match self.get(name) {
            Some(e) => e,
            // A manifest whose file is gone: clean it up, but say the model was not there.
            None => {
                if json.is_file() {
                    let _ = fs::remove_file(&json);
                }
                return Err(unknown());
            }
        };
        fs::remove_file(&entry.path).map_err(|e| HubError::io("removing", &entry.path, e))?;
        match fs::remove_file(&json) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(HubError::io("removing", json, e)),
        }
        Ok(entry)
    }

    /// The lock held while names are chosen and models installed or removed.
    fn lock_names(&self) -> Result<FileLock, HubError> {
        FileLock::acquire(&self.models_dir().join(".lock"), || {})
    }
}

/// Whether `name` can be a store name: letters, digits, `.`, `_`, `-`, not starting with `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A short, filesystem-safe name for a model of `repo` in `quant`:
/// `Qwen/Qwen3-0.6B-GGUF` + `Q4_K_M` → `qwen3-0.6b-q4_k_m`.
pub fn base_name(repo: &str, quant: Option<&str>) -> String {
    let mut s = repo.rsplit('/').next().unwrap_or(repo).to_ascii_lowercase();
    for suffix in ["-gguf", "_gguf", ".gguf"] {
        if let Some(stripped) = s.strip_suffix(suffix) {
            s = stripped.to_owned();
            break;
        }
    }
    if let Some(q) = quant {
        let q = q.to_ascii_lowercase();
        if !s.ends_with(&q) {
            s = format!("{s}-{q}");
        }
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '.' | '_') {
            c
        } else {
            '-'
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    let out: String = out.trim_matches(['-', '.']).chars().take(96).collect();
    if out.is_empty() {
        "model".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_repositories() {
        assert_eq!(
            base_name("Qwen/Qwen3-0.6B-GGUF", Some("Q4_K_M")),
            "qwen3-0.6b-q4_k_m"
        );
        assert_eq!(
            base_name("unsloth/DeepSeek-R1-Distill-Qwen-1.5B-GGUF", Some("Q8_0")),
            "deepseek-r1-distill-qwen-1.5b-q8_0"
        );
        assert_eq!(base_name("a/Model-Q8_0", Some("Q8_0")), "model-q8_0");
        assert_eq!(base_name("a/--GGUF", None), "model");
        assert_eq!(base_name("a/We!rd  name", None), "we-rd-name");
        assert!(valid_name(&base_name("x/.hidden", None)));
        assert!(!valid_name("../x") && !valid_name(".lock") && !valid_name("a/b"));
    }

    #[test]
    fn install_list_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        fs::create_dir_all(store.models_dir()).unwrap();
        let manifest = |source: &str| Manifest {
            name: String::new(),
            source: source.into(),
            description: None,
            endpoint: None,
            revision: None,
            files: vec![],
            sha256: "00".into(),
            size: 3,
            architecture: Some("llama".into()),
            quant: None,
            pulled_at: 1,
        };
        let put = |base: &str, source: &str| {
            let f = dir.path().join("incoming");
            fs::write(&f, b"abc").unwrap();
            store
                .install_unique(&f, base, &["smollm2".to_owned()], manifest(source))
                .unwrap()
                .0
                .name
        };
        assert_eq!(put("m", "hf:a/b:m.gguf"), "m");
        // Same source: the same name (an update); another source: a new name.
        assert_eq!(put("m", "hf:a/b:m.gguf"), "m");
        assert_eq!(put("m", "hf:c/d:m.gguf"), "m-2");
        assert_eq!(put("smollm2", "hf:e/f:x.gguf"), "smollm2-2");
        let names: Vec<String> = store
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["m", "m-2", "smollm2-2"]);
        assert_eq!(
            store.get("m-2").unwrap().manifest.unwrap().source,
            "hf:c/d:m.gguf"
        );
        store.remove("m").unwrap();
        assert!(!store.model_path("m").exists() && !store.manifest_path("m").exists());
        let e = store.remove("m").unwrap_err().to_string();
        assert!(
            e.contains("no model named \"m\"") && e.contains("m-2"),
            "{e}"
        );
        assert!(store.remove("../../etc/passwd").is_err());
    }
}
