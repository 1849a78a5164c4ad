//! Shared helpers of the model tests: where models and goldens are.
#![allow(dead_code)] // why: each test binary uses a different subset

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A model fetched into the store by `.ci/run` (`sparetire pull NAME`).
/// Missing models fail the test: they are part of the test data.
pub fn store_model(name: &str) -> PathBuf {
    let home = std::env::var_os("SPARETIRE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                });
            cache.join("sparetire")
        });
    let p = home.join("models").join(format!("{name}.gguf"));
    assert!(
        p.exists(),
        "test model {} is missing: run `.ci/run` or `sparetire pull {name}` first",
        p.display()
    );
    p
}
