//! A repository's files, through each hub's API.
//!
//! Hugging Face: `GET {endpoint}/api/models/{repo}/tree/{revision}?recursive=true`, a JSON
//! array of `{"type": "file", "path", "size", "oid", "lfs": {"oid": SHA256, "size"}}`,
//! paged with a `Link: <…>; rel="next"` header; files download from
//! `{endpoint}/{repo}/resolve/{revision}/{path}`.
//!
//! ModelScope: `GET {endpoint}/api/v1/models/{repo}/repo/files?Revision=…&Recursive=true`,
//! `{"Code": 200, "Data": {"Files": [{"Name", "Path", "Size", "Sha256", "Type"}]}}`; files
//! download from `{endpoint}/api/v1/models/{repo}/repo?Revision=…&FilePath={path}`.

use serde::Deserialize;

use crate::digest::sha256_hex;
use crate::http::{encode, join, origin, Http};
use crate::source::Hub;
use crate::HubError;

/// One file of a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// Its path in the repository.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256 (lowercase hex), when the hub publishes one (LFS files, ModelScope).
    pub sha256: Option<String>,
}

/// Most pages a listing may have (Hugging Face pages by 1000 files).
const MAX_PAGES: usize = 200;

/// Largest listing page read.
const MAX_PAGE_BYTES: u64 = 64 << 20;

/// Lists every file of `repo` at `revision`.
pub(crate) fn list(http: &Http, repo: &str, revision: &str) -> Result<Vec<RemoteFile>, HubError> {
    let mut url = match http.hub {
        Hub::HuggingFace => format!(
            "{}/api/models/{repo}/tree/{}?recursive=true",
            http.endpoint,
            encode(revision, false)
        ),
        Hub::ModelScope => format!(
            "{}/api/v1/models/{repo}/repo/files?Revision={}&Recursive=true",
            http.endpoint,
            encode(revision, false)
        ),
    };
    let mut files = Vec::new();
    for _ in 0..MAX_PAGES {
        let answer = http.get(&url, None)?;
        if answer.is_html() {
            return Err(html(http, answer.url));
        }
        if answer.status() != 200 {
            return Err(listing_refused(http, repo, revision, answer.refusal()));
        }
        let next = answer.header("link").and_then(next_page);
        let (body, page_url) = answer.read_body(MAX_PAGE_BYTES)?;
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<') {
            return Err(html(http, page_url));
        }
        match http.hub {
            Hub::HuggingFace => {
                files.extend(parse_hf_tree(&body).map_err(|detail| HubError::BadListing {
                    url: page_url.clone(),
                    detail,
                })?)
            }
            Hub::ModelScope => match parse_ms_files(&body) {
                Ok(Ok(page)) => files.extend(page),
                Ok(Err(message)) => {
                    return Err(HubError::Api {
                        url: page_url,
                        message,
                    })
                }
                Err(detail) => {
                    return Err(HubError::BadListing {
                        url: page_url,
                        detail,
                    })
                }
            },
        }
        match next {
            // A mirror may pass the hub's own links through: keep talking to the mirror.
            Some(next) => url = same_origin(&http.endpoint, &join(&page_url, &next)),
            None => return Ok(files),
        }
    }
    Err(HubError::BadListing {
        url,
        detail: format!("more than {MAX_PAGES} pages"),
    })
}

/// Where `path` of `repo` at `revision` downloads from.
pub(crate) fn file_url(http: &Http, repo: &str, revision: &str, path: &str) -> String {
    match http.hub {
        Hub::HuggingFace => format!(
            "{}/{repo}/resolve/{}/{}",
            http.endpoint,
            encode(revision, false),
            encode(path, true)
        ),
        Hub::ModelScope => format!(
            "{}/api/v1/models/{repo}/repo?Revision={}&FilePath={}",
            http.endpoint,
            encode(revision, false),
            encode(path, false)
        ),
    }
}

fn html(http: &Http, url: String) -> HubError {
    HubError::Html {
        hub: http.hub,
        endpoint: http.endpoint.clone(),
        url,
    }
}

fn listing_refused(http: &Http, repo: &str, revision: &str, r: crate::http::Refusal) -> HubError {
    if r.html {
        return html(http, r.url);
    }
    match (r.status, r.code.as_deref()) {
        (_, Some("RevisionNotFound")) => HubError::RevisionNotFound {
            repo: repo.to_owned(),
            revision: revision.to_owned(),
        },
        // Hugging Face answers 401 for a private repository as for a missing one.
        (404, _) | (401, _) | (403, _) | (_, Some("RepoNotFound")) => HubError::RepoNotFound {
            hub: http.hub,
            endpoint: http.endpoint.clone(),
            repo: repo.to_owned(),
            had_token: http.has_token(),
        },
        _ => r.into_error(),
    }
}

/// The `rel="next"` target of a `Link` header.
fn next_page(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_owned())
    })
}

/// `url` with its origin replaced by `endpoint`'s, when the endpoint has no path prefix.
fn same_origin(endpoint: &str, url: &str) -> String {
    match (origin(endpoint), origin(url)) {
        (Some(home), Some(there)) if home != there && home.len() == endpoint.len() => {
            format!("{home}{}", &url[there.len()..])
        }
        _ => url.to_owned(),
    }
}

#[derive(Deserialize)]
struct HfEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    lfs: Option<HfLfs>,
}

#[derive(Deserialize)]
struct HfLfs {
    oid: String,
    size: u64,
}

/// Parses a page of Hugging Face's tree API (folders are skipped).
pub(crate) fn parse_hf_tree(body: &[u8]) -> Result<Vec<RemoteFile>, String> {
    let entries: Vec<HfEntry> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(entries
        .into_iter()
        .filter(|e| e.kind == "file")
        .map(|e| match e.lfs {
            Some(lfs) => RemoteFile {
                path: e.path,
                size: lfs.size,
                sha256: sha256_hex(&lfs.oid),
            },
            None => RemoteFile {
                path: e.path,
                size: e.size,
                sha256: None,
            },
        })
        .collect())
}

#[derive(Deserialize)]
struct MsAnswer {
    #[serde(rename = "Code")]
    code: serde_json::Value,
    #[serde(rename = "Message", default)]
    message: Option<String>,
    #[serde(rename = "Data", default)]
    data: Option<MsData>,
}

#[derive(Deserialize)]
struct MsData {
    #[serde(rename = "Files", default)]
    files: Option<Vec<MsFile>>,
}

#[derive(Deserialize)]
struct MsFile {
    #[serde(rename = "Path")]
    path: String,
    #[serde(rename = "Size", default)]
    size: u64,
    #[serde(rename = "Sha256", default)]
    sha256: Option<String>,
    #[serde(rename = "Type", default)]
    kind: Option<String>,
}

/// Parses ModelScope's file listing: the files, or the API's own error message.
pub(crate) fn parse_ms_files(body: &[u8]) -> Result<Result<Vec<RemoteFile>, String>, String> {
    let answer: MsAnswer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if answer.code.as_u64() != Some(200) {
        return Ok(Err(answer
            .message
            .unwrap_or_else(|| format!("error code {}", answer.code))));
    }
    let files = answer
        .data
        .and_then(|d| d.files)
        .ok_or_else(|| "no Data.Files".to_owned())?;
    Ok(Ok(files
        .into_iter()
        .filter(|f| f.kind.as_deref() != Some("tree"))
        .map(|f| RemoteFile {
            sha256: f.sha256.as_deref().and_then(sha256_hex),
            path: f.path,
            size: f.size,
        })
        .collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugging_face_tree_pages() {
        let body = br#"[
          {"type":"directory","oid":"1","size":0,"path":"sub"},
          {"type":"file","oid":"2","size":120,"path":"README.md"},
          {"type":"file","oid":"3","size":135,"path":"sub/m-Q4_K_M.gguf",
           "lfs":{"oid":"ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789","size":999,"pointerSize":135}}
        ]"#;
        let files = parse_hf_tree(body).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].sha256, None);
        assert_eq!(files[1].size, 999);
        assert_eq!(
            files[1].sha256.as_deref(),
            Some("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
        );
        assert!(parse_hf_tree(b"{\"error\":\"x\"}").is_err());
        assert_eq!(
            next_page(r#"<https://h/api/models/a/b/tree/main?cursor=Zz>; rel="next""#).as_deref(),
            Some("https://h/api/models/a/b/tree/main?cursor=Zz")
        );
        assert_eq!(next_page(r#"<https://h/x>; rel="prev""#), None);
        assert_eq!(
            same_origin("http://127.0.0.1:5", "https://hub.example/api/x?c=1"),
            "http://127.0.0.1:5/api/x?c=1"
        );
    }

    #[test]
    fn modelscope_listing_and_its_errors() {
        let body = br#"{"Code":200,"Data":{"Files":[
          {"Name":"sub","Path":"sub","Size":0,"Sha256":"","Type":"tree"},
          {"Name":"m.gguf","Path":"sub/m.gguf","Size":7,"Sha256":"0000000000000000000000000000000000000000000000000000000000000001","Type":"blob"}
        ]},"Message":"success","Success":true}"#;
        let files = parse_ms_files(body).unwrap().unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!((files[0].path.as_str(), files[0].size), ("sub/m.gguf", 7));
        let err = parse_ms_files(br#"{"Code":10010205001,"Message":"model not exists"}"#)
            .unwrap()
            .unwrap_err();
        assert_eq!(err, "model not exists");
        assert!(parse_ms_files(b"[]").is_err());
    }
}
