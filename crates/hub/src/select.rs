//! Which GGUF of a repository the user means: a file, a quant, or the only model.
//!
//! A repository often holds one model in many quantizations (`…-Q4_K_M.gguf`,
//! `…-Q8_0.gguf`), vision projectors (`mmproj-…`), and large models split in parts
//! (`…-00001-of-00003.gguf`, llama.cpp's gguf-split naming), which count as one model.

use crate::listing::RemoteFile;
use crate::source::Hub;
use crate::HubError;

/// The file(s) of one model: a GGUF, or every part of a split one, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// The files; more than one for a split model, ordered by part number.
    pub parts: Vec<RemoteFile>,
    /// The quant its file name states (`Q4_K_M`), if any.
    pub quant: Option<String>,
    /// Why this model was chosen when the user did not say (shown to them).
    pub chosen_because: Option<String>,
}

impl Selection {
    /// The first (or only) file; None only for a hand-made selection without files.
    pub fn first(&self) -> Option<&RemoteFile> {
        self.parts.first()
    }
}

/// Quant names as llama.cpp and the usual uploaders spell them in file names.
const QUANTS: &[&str] = &[
    "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M",
    "IQ4_NL", "IQ4_XS", "Q2_K", "Q2_K_S", "Q2_K_L", "Q2_K_XL", "Q3_K_S", "Q3_K_M", "Q3_K_L",
    "Q3_K_XL", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M", "Q4_K_L", "Q4_K_XL", "Q4_0_4_4", "Q4_0_4_8",
    "Q4_0_8_8", "Q5_0", "Q5_1", "Q5_K_S", "Q5_K_M", "Q5_K_L", "Q5_K_XL", "Q6_K", "Q6_K_L",
    "Q6_K_XL", "Q8_0", "Q8_K_XL", "TQ1_0", "TQ2_0", "MXFP4", "F16", "BF16", "F32",
];

/// The quant a file name states (the longest one found), e.g. `Q4_K_M` in `Qwen3-8B-Q4_K_M.gguf`.
pub fn quant_in_name(name: &str) -> Option<&'static str> {
    QUANTS
        .iter()
        .filter(|q| contains_token(name, q))
        .max_by_key(|q| q.len())
        .copied()
}

/// Whether `needle` occurs in `hay` (ignoring case) as a whole token: preceded by the
/// start or one of `-._/`, followed by the end or one of `-./` (not `_`, so that `Q4_K`
/// does not match `Q4_K_M`).
fn contains_token(hay: &str, needle: &str) -> bool {
    let hay = hay.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    if needle.is_empty() {
        return false;
    }
    let bytes = hay.as_bytes();
    let mut from = 0;
    while let Some(i) = hay[from..].find(&needle) {
        let start = from + i;
        let end = start + needle.len();
        let before = start == 0 || matches!(bytes[start - 1], b'-' | b'.' | b'_' | b'/');
        let after = end == bytes.len() || matches!(bytes[end], b'-' | b'.' | b'/');
        if before && after {
            return true;
        }
        from = start + 1;
    }
    false
}

/// A part of a split GGUF: `STEM-00002-of-00005.gguf` → (`STEM`, 2, 5).
pub(crate) fn split_part(path: &str) -> Option<(&str, u32, u32)> {
    let stem = strip_gguf(path)?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (stem, no) = rest.rsplit_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(no) || !digits(count) || stem.is_empty() {
        return None;
    }
    let (no, count) = (no.parse().ok()?, count.parse().ok()?);
    (1..=count).contains(&no).then_some((stem, no, count))
}

fn strip_gguf(path: &str) -> Option<&str> {
    let n = path.len().checked_sub(5)?;
    (path.is_char_boundary(n) && path[n..].eq_ignore_ascii_case(".gguf")).then(|| &path[..n])
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// One model of the repository.
struct Model<'a> {
    /// The path without `.gguf` (and without the part suffix for split models).
    key: &'a str,
    /// Its files by part number (index 0 is part 1); None where a part is missing.
    parts: Vec<Option<&'a RemoteFile>>,
    /// A vision projector or similar helper, not a language model.
    aux: bool,
}

impl Model<'_> {
    fn first_path(&self) -> String {
        match self.parts.iter().flatten().next() {
            Some(f) if self.parts.len() == 1 => f.path.clone(),
            Some(f) => {
                let (stem, _, count) = split_part(&f.path).unwrap_or((self.key, 1, 1));
                format!("{stem}-{:05}-of-{count:05}.gguf", 1)
            }
            None => self.key.to_owned(),
        }
    }
}

fn models(files: &[RemoteFile]) -> Vec<Model<'_>> {
    let mut out: Vec<Model> = Vec::new();
    for f in files {
        let Some(stem) = strip_gguf(&f.path) else {
            continue;
        };
        let aux = basename(&f.path).to_ascii_lowercase().starts_with("mmproj");
        match split_part(&f.path) {
            Some((stem, no, count)) => {
                let i = match out
                    .iter()
                    .position(|m| m.key == stem && m.parts.len() == count as usize)
                {
                    Some(i) => i,
                    None => {
                        out.push(Model {
                            key: stem,
                            parts: vec![None; count as usize],
                            aux,
                        });
                        out.len() - 1
                    }
                };
                out[i].parts[no as usize - 1] = Some(f);
            }
            None => out.push(Model {
                key: stem,
                parts: vec![Some(f)],
                aux,
            }),
        }
    }
    out.sort_by(|a, b| a.key.cmp(b.key));
    out
}

/// Picks the model `selector` names among `files` of `repo`.
pub(crate) fn select(
    hub: Hub,
    repo: &str,
    files: &[RemoteFile],
    selector: Option<&str>,
) -> Result<Selection, HubError> {
    let all = models(files);
    if all.is_empty() {
        return Err(HubError::NoGguf {
            repo: repo.to_owned(),
            files: files.iter().map(|f| f.path.clone()).collect(),
        });
    }
    let primary: Vec<&Model> = if all.iter().all(|m| m.aux) {
        all.iter().collect()
    } else {
        all.iter().filter(|m| !m.aux).collect()
    };
    let names = |ms: &[&Model]| ms.iter().map(|m| m.first_path()).collect::<Vec<_>>();
    let ambiguous = |wanted: Option<&str>, ms: &[&Model]| HubError::Ambiguous {
        hub,
        repo: repo.to_owned(),
        wanted: wanted.map(str::to_owned),
        candidates: names(ms),
    };
    let Some(wanted) = selector else {
        if let [one] = primary.as_slice() {
            return finish(repo, one, None);
        }
        let q4: Vec<&Model> = primary
            .iter()
            .copied()
            .filter(|m| quant_in_name(m.key) == Some("Q4_K_M"))
            .collect();
        if let [one] = q4.as_slice() {
            let why = format!(
                "{repo} has {} GGUF models; taking its Q4_K_M (name another as {}:{repo}:QUANT or :FILE)",
                primary.len(),
                hub.prefix()
            );
            return finish(repo, one, Some(why));
        }
        return Err(ambiguous(None, &primary));
    };
    // A file: its path or its name; a part of a split model means the whole model.
    let by_file: Vec<&Model> = all
        .iter()
        .filter(|m| {
            m.parts
                .iter()
                .flatten()
                .any(|f| f.path == wanted || basename(&f.path) == wanted)
        })
        .collect();
    // A split model by its name without the part suffix.
    let wanted_stem = strip_gguf(wanted).unwrap_or(wanted);
    let by_stem: Vec<&Model> = all
        .iter()
        .filter(|m| {
            m.parts.len() > 1
                && (m.key.eq_ignore_ascii_case(wanted_stem)
                    || basename(m.key).eq_ignore_ascii_case(wanted_stem))
        })
        .collect();
    for found in [by_file, by_stem] {
        match found.as_slice() {
            [] => {}
            [one] => return finish(repo, one, None),
            many => return Err(ambiguous(Some(wanted), many)),
        }
    }
    // A quant, or any other whole token of the file name.
    let by_token: Vec<&Model> = primary
        .iter()
        .copied()
        .filter(|m| contains_token(m.key, wanted))
        .collect();
    match by_token.as_slice() {
        [one] => finish(repo, one, None),
        [] => Err(HubError::FileNotFound {
            repo: repo.to_owned(),
            wanted: wanted.to_owned(),
            available: names(&all.iter().collect::<Vec<_>>()),
        }),
        many => Err(ambiguous(Some(wanted), many)),
    }
}

fn finish(repo: &str, m: &Model, chosen_because: Option<String>) -> Result<Selection, HubError> {
    let missing: Vec<u32> = (1..=m.parts.len() as u32)
        .filter(|&no| m.parts[no as usize - 1].is_none())
        .collect();
    if !missing.is_empty() {
        return Err(HubError::IncompleteSplit {
            repo: repo.to_owned(),
            file: m.first_path(),
            missing,
            count: m.parts.len() as u32,
        });
    }
    Ok(Selection {
        parts: m.parts.iter().flatten().map(|f| (*f).clone()).collect(),
        quant: quant_in_name(m.key).map(str::to_owned),
        chosen_because,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(paths: &[&str]) -> Vec<RemoteFile> {
        paths
            .iter()
            .map(|p| RemoteFile {
                path: (*p).to_owned(),
                size: 1,
                sha256: None,
            })
            .collect()
    }

    fn pick(paths: &[&str], sel: Option<&str>) -> Result<Vec<String>, String> {
        select(Hub::HuggingFace, "o/r", &files(paths), sel)
            .map(|s| s.parts.into_iter().map(|f| f.path).collect())
            .map_err(|e| e.to_string())
    }

    const REPO: &[&str] = &[
        "README.md",
        "Qwen3-0.6B-Q4_K_M.gguf",
        "Qwen3-0.6B-Q8_0.gguf",
        "Qwen3-0.6B-IQ4_K_M.gguf",
        "mmproj-Qwen3-F16.gguf",
        "big/Qwen3-0.6B-BF16-00002-of-00002.gguf",
        "big/Qwen3-0.6B-BF16-00001-of-00002.gguf",
    ];

    #[test]
    fn quants_files_and_splits() {
        assert_eq!(pick(REPO, Some("Q8_0")).unwrap(), ["Qwen3-0.6B-Q8_0.gguf"]);
        // Q4_K_M does not match IQ4_K_M, nor Q4_K match Q4_K_M.
        assert_eq!(
            pick(REPO, Some("q4_k_m")).unwrap(),
            ["Qwen3-0.6B-Q4_K_M.gguf"]
        );
        assert!(pick(REPO, Some("Q4_K"))
            .unwrap_err()
            .contains("Q4_K_M.gguf"));
        // A split model by quant, by either part's name, or by its name: all parts, in order.
        let both = [
            "big/Qwen3-0.6B-BF16-00001-of-00002.gguf",
            "big/Qwen3-0.6B-BF16-00002-of-00002.gguf",
        ];
        for sel in [
            "BF16",
            "Qwen3-0.6B-BF16-00002-of-00002.gguf",
            "big/Qwen3-0.6B-BF16",
        ] {
            assert_eq!(pick(REPO, Some(sel)).unwrap(), both, "{sel}");
        }
        // A vision projector only when named.
        assert_eq!(
            pick(REPO, Some("mmproj-Qwen3-F16.gguf")).unwrap(),
            ["mmproj-Qwen3-F16.gguf"]
        );
        assert!(pick(REPO, Some("F16"))
            .unwrap_err()
            .contains("no GGUF file or quant"));
    }

    #[test]
    fn no_selector_takes_the_only_model_or_q4_k_m() {
        assert_eq!(
            pick(&["a.txt", "m-Q8_0.gguf", "mmproj-x.gguf"], None).unwrap(),
            ["m-Q8_0.gguf"]
        );
        let s = select(Hub::HuggingFace, "o/r", &files(REPO), None).unwrap();
        assert_eq!(s.parts[0].path, "Qwen3-0.6B-Q4_K_M.gguf");
        assert!(s.chosen_because.unwrap().contains("Q4_K_M"));
        let e = pick(&["m-Q8_0.gguf", "m-Q6_K.gguf"], None).unwrap_err();
        assert!(e.contains("name one") && e.contains("m-Q6_K.gguf"), "{e}");
    }

    #[test]
    fn missing_things_are_listed() {
        let e = pick(REPO, Some("Q2_K")).unwrap_err();
        assert!(
            e.contains("Qwen3-0.6B-Q8_0.gguf")
                && e.contains("big/Qwen3-0.6B-BF16-00001-of-00002.gguf"),
            "{e}"
        );
        let e = pick(&["README.md", "model.safetensors"], None).unwrap_err();
        assert!(
            e.contains("no GGUF") && e.contains("model.safetensors"),
            "{e}"
        );
        let e = pick(&["m-00001-of-00003.gguf", "m-00003-of-00003.gguf"], None).unwrap_err();
        assert!(e.contains("parts 2 of 3 are missing"), "{e}");
    }

    #[test]
    fn names_state_their_quant() {
        assert_eq!(quant_in_name("Qwen3-0.6B-Q4_K_M"), Some("Q4_K_M"));
        assert_eq!(quant_in_name("DeepSeek-R1-UD-Q4_K_XL"), Some("Q4_K_XL"));
        assert_eq!(quant_in_name("model.q8_0"), Some("Q8_0"));
        assert_eq!(quant_in_name("Qwen3-IQ4_XS-00001-of-00002"), Some("IQ4_XS"));
        assert_eq!(quant_in_name("model"), None);
        assert_eq!(split_part("a/m-00002-of-00003.gguf"), Some(("a/m", 2, 3)));
        assert_eq!(split_part("m-00004-of-00003.gguf"), None);
        assert_eq!(split_part("m.gguf"), None);
    }
}
