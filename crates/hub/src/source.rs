//! Which hub, which repository, which file: `hf:ORG/REPO[:FILE_OR_QUANT]`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::HubError;

/// A model hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Hub {
    /// Hugging Face (`hf:`), or a mirror of it.
    HuggingFace,
    /// ModelScope (`ms:`), or a mirror of it.
    ModelScope,
}

impl Hub {
    /// The reference prefix: `hf` or `ms`.
    pub fn prefix(self) -> &'static str {
        match self {
            Hub::HuggingFace => "hf",
            Hub::ModelScope => "ms",
        }
    }

    /// The hub's own address.
    pub fn default_endpoint(self) -> &'static str {
        match self {
            Hub::HuggingFace => "https://huggingface.co",
            Hub::ModelScope => "https://www.modelscope.cn",
        }
    }

    /// The environment variable that points at a mirror (the hub's own tools use it too).
    pub fn endpoint_env(self) -> &'static str {
        match self {
            Hub::HuggingFace => "HF_ENDPOINT",
            Hub::ModelScope => "MODELSCOPE_DOMAIN",
        }
    }

    /// The environment variable that holds an access token.
    pub fn token_env(self) -> &'static str {
        match self {
            Hub::HuggingFace => "HF_TOKEN",
            Hub::ModelScope => "MODELSCOPE_API_TOKEN",
        }
    }

    /// The branch used when no revision is given.
    pub fn default_revision(self) -> &'static str {
        match self {
            Hub::HuggingFace => "main",
            Hub::ModelScope => "master",
        }
    }

    /// The endpoint to use: `given`, else the environment variable, else the hub itself.
    /// A bare host name gets `https://`; a trailing `/` is dropped.
    pub fn endpoint(self, given: Option<&str>) -> String {
        let raw = given
            .map(str::to_owned)
            .or_else(|| std::env::var(self.endpoint_env()).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.default_endpoint().to_owned());
        let with_scheme = if raw.contains("://") {
            raw
        } else {
            format!("https://{raw}")
        };
        with_scheme.trim_end_matches('/').to_owned()
    }

    /// The token to send: `given`, else the environment variable (empty means none).
    pub fn token(self, given: Option<&str>) -> Option<String> {
        given
            .map(str::to_owned)
            .or_else(|| std::env::var(self.token_env()).ok())
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    }
}

impl fmt::Display for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hub::HuggingFace => "Hugging Face",
            Hub::ModelScope => "ModelScope",
        })
    }
}

/// A model on a hub, as the user names it: `hf:Qwen/Qwen3-0.6B-GGUF:Q4_K_M`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRef {
    /// The hub.
    pub hub: Hub,
    /// `ORG/REPO`.
    pub repo: String,
    /// A file path, a file name, or a quant (`Q4_K_M`); None lets the repository decide
    /// (its only model, or its Q4_K_M).
    pub selector: Option<String>,
}

impl ModelRef {
    /// Whether `s` is meant as a hub reference (it starts with `hf:` or `ms:`).
    pub fn looks_like(s: &str) -> bool {
        s.starts_with("hf:") || s.starts_with("ms:")
    }

    /// Parses `hf:ORG/REPO[:FILE_OR_QUANT]` or `ms:ORG/REPO[:FILE_OR_QUANT]`.
    pub fn parse(input: &str) -> Result<ModelRef, HubError> {
        let bad = |reason: &str| HubError::BadReference {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let (hub, rest) = if let Some(r) = input.strip_prefix("hf:") {
            (Hub::HuggingFace, r)
        } else if let Some(r) = input.strip_prefix("ms:") {
            (Hub::ModelScope, r)
        } else {
            return Err(bad("it must start with hf: or ms:"));
        };
        let (repo, selector) = match rest.split_once(':') {
            Some((repo, sel)) => (repo, Some(sel)),
            None => (rest, None),
        };
        let (org, name) = repo
            .split_once('/')
            .ok_or_else(|| bad("the repository must be ORG/REPO"))?;
        let valid = |s: &str| {
            !s.is_empty()
                && !s.starts_with('.')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !valid(org) || !valid(name) {
            return Err(bad(
                "the repository must be ORG/REPO, each made of letters, digits, '-', '_' and '.'",
            ));
        }
        let selector = match selector {
            None => None,
            Some("") => return Err(bad("nothing after the second ':'")),
            Some(s) if s.split('/').any(|seg| seg.is_empty() || seg == "..") => {
                return Err(bad("the file path has an empty or '..' segment"));
            }
            Some(s) => Some(s.to_owned()),
        };
        Ok(ModelRef {
            hub,
            repo: repo.to_owned(),
            selector,
        })
    }

    /// The reference that names exactly `file` of this repository.
    pub fn for_file(&self, file: &str) -> ModelRef {
        ModelRef {
            hub: self.hub,
            repo: self.repo.clone(),
            selector: Some(file.to_owned()),
        }
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.hub.prefix(), self.repo)?;
        if let Some(s) = &self.selector {
            write!(f, ":{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_print_back() {
        for s in [
            "hf:Qwen/Qwen3-0.6B-GGUF",
            "hf:Qwen/Qwen3-0.6B-GGUF:Q4_K_M",
            "ms:unsloth/DeepSeek-R1-Distill-Qwen-1.5B-GGUF:sub/dir/model-Q8_0.gguf",
        ] {
            assert_eq!(ModelRef::parse(s).unwrap().to_string(), s);
        }
        let r = ModelRef::parse("ms:a/b:Q8_0").unwrap();
        assert_eq!(
            (r.hub, r.repo.as_str(), r.selector.as_deref()),
            (Hub::ModelScope, "a/b", Some("Q8_0"))
        );
    }

    #[test]
    fn bad_references_say_why() {
        for (s, why) in [
            ("gh:a/b", "hf: or ms:"),
            ("hf:justname", "ORG/REPO"),
            ("hf:a/b/c", "letters"),
            ("hf:a/b:", "nothing after"),
            ("hf:a/b:../../etc/passwd", "'..'"),
            ("hf:/b", "ORG/REPO"),
        ] {
            let e = ModelRef::parse(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn endpoints_get_a_scheme_and_lose_a_trailing_slash() {
        let hf = Hub::HuggingFace;
        assert_eq!(
            hf.endpoint(Some("mirror.example/")),
            "https://mirror.example"
        );
        assert_eq!(
            hf.endpoint(Some("http://127.0.0.1:9/")),
            "http://127.0.0.1:9"
        );
        assert_eq!(hf.token(Some("  ")), None);
    }
}
