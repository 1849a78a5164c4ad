//! HTTP for the hubs: one blocking agent, redirects followed by hand.
//!
//! Redirects are followed here rather than by the HTTP library for two reasons:
//! the first answer of a Hugging Face download (a 302 to its CDN) carries the
//! file's sha256 and size (`X-Linked-Etag`, `X-Linked-Size`), which the final
//! answer does not; and the token must only go to the endpoint's own host,
//! never to the CDN a redirect points at.

use std::time::Duration;

use ureq::http::{HeaderMap, Response};
use ureq::{Agent, Body};

use crate::source::Hub;
use crate::HubError;

/// How many redirects one request may follow.
const MAX_REDIRECTS: usize = 10;

/// A client for one hub endpoint, with an optional token.
pub(crate) struct Http {
    agent: Agent,
    /// The hub (for error messages).
    pub hub: Hub,
    /// `scheme://host[:port][/prefix]`, no trailing slash.
    pub endpoint: String,
    token: Option<String>,
}

/// A final (non-redirect) answer, with what the redirects said on the way.
pub(crate) struct Answer {
    /// The response; its body is unread.
    pub response: Response<Body>,
    /// The URL that gave it.
    pub url: String,
    /// `X-Linked-Etag` (else `ETag`) from the first answer, unquoted.
    pub linked_etag: Option<String>,
    /// `X-Linked-Size` from the first answer.
    pub linked_size: Option<u64>,
    hub: Hub,
    endpoint: String,
}

impl Answer {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    /// A header's value, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(self.response.headers(), name)
    }

    /// Whether the answer is an HTML page.
    pub fn is_html(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.to_ascii_lowercase().contains("text/html"))
    }

    /// What an error answer says: its status, the hub's error code and message.
    pub fn refusal(self) -> Refusal {
        let status = self.status();
        let code = self.header("x-error-code").map(str::to_owned);
        let header_msg = self.header("x-error-message").map(str::to_owned);
        let html = self.is_html();
        let url = self.url.clone();
        let body = self
            .read_body(64 * 1024)
            .map(|(b, _)| b)
            .unwrap_or_default();
        let from_json = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                ["error", "message", "Message"]
                    .iter()
                    .find_map(|k| v.get(k).and_then(|m| m.as_str()).map(str::to_owned))
            });
        let message = header_msg
            .or(from_json)
            .or_else(|| {
                let text = String::from_utf8_lossy(&body);
                let text = text.trim();
                (!html && !text.is_empty() && text.len() < 300).then(|| text.to_owned())
            })
            .unwrap_or_default();
        Refusal {
            status,
            url,
            message,
            code,
            html,
        }
    }

    /// Reads a small body (error messages, listings) up to `limit` bytes.
    pub fn read_body(self, limit: u64) -> Result<(Vec<u8>, String), HubError> {
        let url = self.url;
        let mut body = self.response.into_body();
        let bytes =
            body.with_config()
                .limit(limit)
                .read_to_vec()
                .map_err(|e| HubError::Network {
                    hub: self.hub,
                    endpoint: self.endpoint,
                    url: url.clone(),
                    detail: format!("reading the answer: {e}"),
                })?;
        Ok((bytes, url))
    }
}

/// An error answer, read.
pub(crate) struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// The URL that gave it.
    pub url: String,
    /// The hub's message (`X-Error-Message`, or the JSON's `error`/`message`), or a short text body.
    pub message: String,
    /// Hugging Face's `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `GatedRepo`…).
    pub code: Option<String>,
    /// Whether the body was an HTML page.
    pub html: bool,
}

impl Refusal {
    /// The generic error for a status nothing more specific applies to.
    pub fn into_error(self) -> HubError {
        HubError::Status {
            url: self.url,
            status: self.status,
            message: self.message,
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `"abc"` or `W/"abc"` → `abc`.
pub(crate) fn unquote_etag(etag: &str) -> String {
    etag.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_owned()
}

impl Http {
    /// A client for `endpoint`. Proxies come from the environment
    /// (`ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`) unless `proxy_from_env` is false.
    pub fn new(
        hub: Hub,
        endpoint: &str,
        token: Option<String>,
        proxy_from_env: bool,
    ) -> Result<Http, HubError> {
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            || origin(endpoint).is_none()
        {
            return Err(HubError::BadEndpoint {
                hub,
                endpoint: endpoint.to_owned(),
            });
        }
        let proxy = if proxy_from_env {
            ureq::Proxy::try_from_env()
        } else {
            None
        };
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(proxy)
            .timeout_connect(Some(Duration::from_secs(30)))
            // A stalled transfer fails (and is resumed) rather than hanging forever.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("sparetire/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Http {
            agent,
            hub,
            endpoint: endpoint.to_owned(),
            token,
        })
    }

    /// Whether a token is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// GETs `url` (with `Range: bytes=FROM-` if `range_from` is given), following
    /// redirects. The token goes only to the endpoint's own origin.
    pub fn get(&self, url: &str, range_from: Option<u64>) -> Result<Answer, HubError> {
        let home = origin(&self.endpoint);
        let mut url = url.to_owned();
        let mut linked_etag = None;
        let mut linked_size = None;
        for hop in 0..=MAX_REDIRECTS {
            let mut req = self.agent.get(&url).header("Accept-Encoding", "identity");
            if let Some(from) = range_from {
                req = req.header("Range", format!("bytes={from}-"));
            }
            if let Some(token) = &self.token {
                if origin(&url) == home {
                    req = req.header("Authorization", format!("Bearer {token}"));
                }
            }
            let response = req.call().map_err(|e| self.transport_error(&url, e))?;
            let headers = response.headers();
            if hop == 0 {
                linked_etag = header(headers, "x-linked-etag")
                    .or_else(|| header(headers, "etag"))
                    .map(unquote_etag);
                linked_size = header(headers, "x-linked-size").and_then(|s| s.trim().parse().ok());
            }
            let status = response.status().as_u16();
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                return Ok(Answer {
                    response,
                    url,
                    linked_etag,
                    linked_size,
                    hub: self.hub,
                    endpoint: self.endpoint.clone(),
                });
            }
            let Some(location) = header(headers, "location") else {
                return Err(HubError::Status {
                    url,
                    status,
                    message: "a redirect without a Location".into(),
                });
            };
            url = join(&url, location);
        }
        Err(HubError::Status {
            url,
            status: 310,
            message: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    fn transport_error(&self, url: &str, e: ureq::Error) -> HubError {
        let detail = match &e {
            ureq::Error::HostNotFound => "host not found (DNS)".to_owned(),
            ureq::Error::Io(io) => format!("{io}"),
            other => other.to_string(),
        };
        match e {
            ureq::Error::BadUri(_) => HubError::BadEndpoint {
                hub: self.hub,
                endpoint: url.to_owned(),
            },
            _ => HubError::Network {
                hub: self.hub,
                endpoint: self.endpoint.clone(),
                url: url.to_owned(),
                detail,
            },
        }
    }
}

/// `scheme://authority` of an absolute URL.
pub(crate) fn origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty() {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    Some(&url[..scheme.len() + 3 + end])
}

/// Resolves a `Location` against the URL that sent it.
pub(crate) fn join(base: &str, location: &str) -> String {
    let location = location.trim();
    if location.contains("://") {
        return location.to_owned();
    }
    let Some(root) = origin(base) else {
        return location.to_owned();
    };
    if let Some(rest) = location.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("https");
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{root}{location}");
    }
    // Relative to the base's directory (without its query).
    let path_end = base.find(['?', '#']).unwrap_or(base.len());
    let path = &base[..path_end];
    let dir = match path[root.len()..].rfind('/') {
        Some(i) => &path[..root.len() + i + 1],
        None => return format!("{root}/{location}"),
    };
    format!("{dir}{location}")
}

/// Percent-encodes `s` for a URL path or query value; `/` is kept when `keep_slash`.
pub(crate) fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_locations_resolve_like_a_browser() {
        let base = "https://hub.example/org/repo/resolve/main/a/b.gguf?x=1";
        assert_eq!(join(base, "https://cdn.example/x"), "https://cdn.example/x");
        assert_eq!(join(base, "//cdn.example/x"), "https://cdn.example/x");
        assert_eq!(join(base, "/api/x"), "https://hub.example/api/x");
        assert_eq!(
            join(base, "c.gguf"),
            "https://hub.example/org/repo/resolve/main/a/c.gguf"
        );
        assert_eq!(
            origin("http://127.0.0.1:8080/x?y"),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin("http://h"), Some("http://h"));
        assert_eq!(origin("nope"), None);
    }

    #[test]
    fn paths_and_etags() {
        assert_eq!(encode("a b/c+d.gguf", true), "a%20b/c%2Bd.gguf");
        assert_eq!(encode("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(unquote_etag("W/\"abc\""), "abc");
        assert_eq!(unquote_etag("\"abc\""), "abc");
    }
}
