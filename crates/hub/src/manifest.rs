//! The small JSON file beside each model in the store: where it came from and what it is.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize};

/// `models/NAME.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The store name (`-m NAME`).
    pub name: String,
    /// Where it came from: `hf:ORG/REPO:FILE`, `ms:ORG/REPO:FILE` (a reference that pulls
    /// exactly this file again), or `pip:REQUIREMENT#MEMBER` parts joined by ` + `.
    #[serde(deserialize_with = "one_or_many")]
    pub source: String,
    /// A human description (built-in models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The hub endpoint it was pulled from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The revision it was pulled at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The files it was made of (several for a split GGUF), as verified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<SourceFile>,
    /// sha256 of the stored file.
    pub sha256: String,
    /// Size of the stored file in bytes.
    pub size: u64,
    /// `general.architecture`.
    #[serde(default)]
    pub architecture: Option<String>,
    /// The quant (`Q4_K_M`).
    #[serde(default)]
    pub quant: Option<String>,
    /// When it was pulled (seconds since the Unix epoch).
    #[serde(default)]
    pub pulled_at: u64,
}

/// One file a model was made of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Its path in the repository (or the member of the package).
    pub path: String,
    /// Its size.
    pub size: u64,
    /// Its sha256, when known.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Seconds since the Unix epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Manifests written before hub support held `source` as a list of package members.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s,
        OneOrMany::Many(v) => v.join(" + "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_of_earlier_versions_still_read() {
        let old = r#"{"name":"gemma3-270m","description":"Gemma 3 270M","source":["pip:a==1#x","pip:b==1#y"],
                     "sha256":"ab","size":5,"pulled_at":7}"#;
        let m: Manifest = serde_json::from_str(old).unwrap();
        assert_eq!(m.source, "pip:a==1#x + pip:b==1#y");
        assert_eq!(
            (m.architecture.as_deref(), m.files.len(), m.pulled_at),
            (None, 0, 7)
        );
        let again: Manifest = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(again.source, m.source);
    }
}
