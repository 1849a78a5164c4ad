//! A test utility (feature `test-server`): [`FakeHub`], a local HTTP/1.1 server that
//! speaks the hubs' APIs, so that no test reaches the internet.
//!
//! It serves repositories through Hugging Face's API (paged tree listing with `Link`
//! headers; `resolve` answering a 302 to a separate "CDN" port with `X-Linked-Etag`,
//! `X-Linked-Size`; 401/403 for gated repositories without the right token) and
//! ModelScope's (the `repo/files` listing, `repo?FilePath=` downloads), with byte ranges
//! (206/416), and the faults a client must survive: a connection dropped after N bytes,
//! corrupted bytes, a server that ignores ranges, a mirror that answers HTML pages, a
//! slow transfer. It also works as an HTTP proxy (CONNECT tunnels or absolute URLs) for
//! itself: point `HTTP_PROXY` at [`FakeHub::endpoint`]. Every request is logged.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::digest::hex;

/// A file of a fake repository.
#[derive(Clone, Debug)]
pub struct FakeFile {
    /// Its path in the repository.
    pub path: String,
    /// Its content.
    pub bytes: Arc<Vec<u8>>,
    /// Stored with Git LFS (published sha256, served through the CDN): `.gguf` files are.
    pub lfs: bool,
}

impl FakeFile {
    /// A file with `bytes`; GGUF files are LFS files.
    pub fn new(path: &str, bytes: Vec<u8>) -> FakeFile {
        FakeFile {
            path: path.to_owned(),
            lfs: path.ends_with(".gguf"),
            bytes: Arc::new(bytes),
        }
    }

    /// The sha256 of its content.
    pub fn sha256(&self) -> String {
        hex(&Sha256::digest(self.bytes.as_slice()))
    }
}

/// One request the server answered.
#[derive(Clone, Debug)]
pub struct Logged {
    /// Whether it came to the hub port (false: the CDN port).
    pub hub: bool,
    /// The request target (path and query).
    pub target: String,
    /// Its `Range` header.
    pub range: Option<String>,
    /// Its `Authorization` header.
    pub authorization: Option<String>,
    /// Whether it came through the server acting as a proxy (a CONNECT tunnel or
    /// `GET http://host/path`), which answers for the hub and the CDN.
    pub proxied: bool,
    /// The status answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    repos: HashMap<String, Vec<FakeFile>>,
    gated: HashMap<String, String>,
    drop_after: HashMap<String, (u64, u32)>,
    corrupt: HashMap<String, u32>,
    fail: HashMap<String, (u16, u32)>,
    ignore_range: bool,
    html: bool,
    page_size: usize,
    delay_per_64k: Duration,
    log: Vec<Logged>,
}

/// The fake hub: a hub port and a CDN port on 127.0.0.1, stopped when dropped.
pub struct FakeHub {
    hub: SocketAddr,
    cdn: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl FakeHub {
    /// Starts the server on two free ports.
    pub fn start() -> FakeHub {
        let state = Arc::new(Mutex::new(State {
            page_size: 2,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let hub_listener = TcpListener::bind("127.0.0.1:0").expect("binding the fake hub");
        let cdn_listener = TcpListener::bind("127.0.0.1:0").expect("binding the fake CDN");
        let hub = hub_listener.local_addr().expect("its address");
        let cdn = cdn_listener.local_addr().expect("its address");
        for (listener, is_hub) in [(hub_listener, true), (cdn_listener, false)] {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let state = state.clone();
                    std::thread::spawn(move || {
                        let _ = serve(conn, &state, is_hub, hub, cdn);
                    });
                }
            });
        }
        FakeHub {
            hub,
            cdn,
            state,
            stop,
        }
    }

    /// The endpoint to pull from: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.hub)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Adds (or replaces) repository `repo` (`ORG/NAME`), served by both hubs' APIs.
    pub fn add_repo(&self, repo: &str, files: Vec<FakeFile>) {
        self.state().repos.insert(repo.to_owned(), files);
    }

    /// Makes `repo` gated: its files need `Authorization: Bearer TOKEN`.
    pub fn gate(&self, repo: &str, token: &str) {
        self.state().gated.insert(repo.to_owned(), token.to_owned());
    }

    /// The next `times` downloads of `path` stop after `bytes` bytes of the body.
    pub fn drop_after(&self, path: &str, bytes: u64, times: u32) {
        self.state()
            .drop_after
            .insert(path.to_owned(), (bytes, times));
    }

    /// The next `times` downloads of `path` have one byte changed.
    pub fn corrupt(&self, path: &str, times: u32) {
        self.state().corrupt.insert(path.to_owned(), times);
    }

    /// The next `times` downloads of `path` answer HTTP `status` (e.g. 503) instead.
    pub fn fail(&self, path: &str, status: u16, times: u32) {
        self.state().fail.insert(path.to_owned(), (status, times));
    }

    /// Whether downloads ignore `Range` (answer 200 with the whole file).
    pub fn ignore_range(&self, on: bool) {
        self.state().ignore_range = on;
    }

    /// Whether every answer is an HTML page (a misconfigured mirror).
    pub fn html(&self, on: bool) {
        self.state().html = on;
    }

    /// Entries per page of the Hugging Face tree listing (2 by default, to exercise paging).
    pub fn page_size(&self, n: usize) {
        self.state().page_size = n.max(1);
    }

    /// Slows downloads down: a pause after every 64 KiB sent.
    pub fn delay_per_64k(&self, d: Duration) {
        self.state().delay_per_64k = d;
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.state().log.clone()
    }

    /// How many times the content of `path` was sent (from the first byte or a range).
    pub fn downloads(&self, path: &str) -> usize {
        let sha = {
            let st = self.state();
            st.repos
                .values()
                .flatten()
                .find(|f| f.path == path)
                .map(FakeFile::sha256)
        };
        self.requests()
            .iter()
            .filter(|r| matches!(r.status, 200 | 206))
            .filter(|r| {
                sha.as_ref()
                    .is_some_and(|s| r.target.starts_with(&format!("/cdn/{s}")))
                    || r.target.contains(&format!("FilePath={}", encode(path)))
                    || (r.target.contains("/resolve/") && r.target.ends_with(&format!("/{path}")))
            })
            .count()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loops so they see the flag.
        let _ = TcpStream::connect(self.hub);
        let _ = TcpStream::connect(self.cdn);
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

struct Request {
    path: String,
    query: HashMap<String, String>,
    target: String,
    headers: HashMap<String, String>,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many body bytes, then drop the connection.
    cut_at: Option<u64>,
    delay_per_64k: Duration,
}

impl Reply {
    fn new(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            cut_at: None,
            delay_per_64k: Duration::ZERO,
        }
    }

    fn json(status: u16, v: serde_json::Value) -> Reply {
        Reply::new(status, "application/json", v.to_string().into_bytes())
    }

    fn header(mut self, k: &str, v: impl Into<String>) -> Reply {
        self.headers.push((k.to_owned(), v.into()));
        self
    }
}

fn serve(
    conn: TcpStream,
    state: &Mutex<State>,
    is_hub: bool,
    hub: SocketAddr,
    cdn: SocketAddr,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let (method, raw, headers) = read_head(&mut reader)?;
    let (mut proxied, mut is_hub) = (false, is_hub);
    // As a proxy: a CONNECT tunnel to the hub or the CDN, then the request inside it.
    let (raw, headers) = if method == "CONNECT" {
        proxied = true;
        is_hub = raw != cdn.to_string();
        (&conn).write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        let (_, raw, headers) = read_head(&mut reader)?;
        (raw, headers)
    } else {
        (raw, headers)
    };
    // Or a request naming its target in full: `GET http://host:port/path`.
    let target = match raw.strip_prefix("http://") {
        Some(rest) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            proxied = true;
            is_hub = authority != cdn.to_string();
            format!("/{path}")
        }
        None => raw,
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target.as_str(), ""),
    };
    let req = Request {
        path: decode(path),
        query: query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (decode(k), decode(v)))
            .collect(),
        headers,
        target: target.clone(),
    };
    let reply = {
        let mut st = lock(state);
        let reply = if st.html {
            Reply::new(
                200,
                "text/html; charset=utf-8",
                b"<!doctype html><html><body>Welcome to our mirror</body></html>".to_vec(),
            )
        } else if is_hub {
            route_hub(&mut st, &req, hub, cdn)
        } else {
            route_cdn(&mut st, &req)
        };
        st.log.push(Logged {
            hub: is_hub,
            target: req.target.clone(),
            range: req.headers.get("range").cloned(),
            authorization: req.headers.get("authorization").cloned(),
            proxied,
            status: reply.status,
        });
        reply
    };
    send(conn, reply)
}

/// Reads a request line and headers: (method, target, lowercase headers).
fn read_head(
    reader: &mut BufReader<TcpStream>,
) -> std::io::Result<(String, String, HashMap<String, String>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("GET").to_owned();
    let target = words.next().unwrap_or("/").to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    Ok((method, target, headers))
}

fn send(mut conn: TcpStream, r: Reply) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        r.body.len()
    ));
    conn.write_all(head.as_bytes())?;
    let limit = r.cut_at.unwrap_or(u64::MAX).min(r.body.len() as u64) as usize;
    for chunk in r.body[..limit].chunks(64 * 1024) {
        conn.write_all(chunk)?;
        if !r.delay_per_64k.is_zero() {
            std::thread::sleep(r.delay_per_64k);
        }
    }
    conn.flush()?;
    if r.cut_at.is_some() {
        // Close without sending the rest: the client sees the body end early.
        let _ = conn.shutdown(Shutdown::Both);
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn route_hub(st: &mut State, req: &Request, hub: SocketAddr, cdn: SocketAddr) -> Reply {
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", "models", org, name, "tree", rev] => {
            hf_tree(st, &format!("{org}/{name}"), rev, req, hub)
        }
        ["api", "v1", "models", org, name, "repo", "files"] => {
            ms_files(st, &format!("{org}/{name}"))
        }
        ["api", "v1", "models", org, name, "repo"] => {
            let repo = format!("{org}/{name}");
            let path = req.query.get("FilePath").cloned().unwrap_or_default();
            match find(st, &repo, &path) {
                Err(reply) => reply,
                Ok(f) => match gate(st, &repo, req) {
                    Some(refused) => refused,
                    None => content(st, &f, req),
                },
            }
        }
        [org, name, "resolve", rev, path @ ..] => {
            let repo = format!("{org}/{name}");
            if *rev != "main" {
                return not_found("RevisionNotFound", "Invalid rev id");
            }
            let f = match find(st, &repo, &path.join("/")) {
                Ok(f) => f,
                Err(reply) => return reply,
            };
            if let Some(refused) = gate(st, &repo, req) {
                return refused;
            }
            if !f.lfs {
                return content(st, &f, req).header("ETag", format!("\"{}\"", &f.sha256()[..40]));
            }
            let sha = f.sha256();
            Reply::new(302, "text/plain", Vec::new())
                .header("Location", format!("http://{cdn}/cdn/{sha}?sig=fake"))
                .header("X-Linked-Etag", format!("\"{sha}\""))
                .header("X-Linked-Size", f.bytes.len().to_string())
                .header("ETag", format!("\"{}\"", &sha[..40]))
                .header("X-Repo-Commit", "0123456789abcdef0123456789abcdef01234567")
        }
        _ => not_found("EntryNotFound", "not found"),
    }
}

fn route_cdn(st: &mut State, req: &Request) -> Reply {
    let sha = req.path.trim_start_matches("/cdn/");
    let file = st
        .repos
        .values()
        .flatten()
        .find(|f| f.sha256() == sha)
        .cloned();
    match file {
        Some(f) => content(st, &f, req),
        None => Reply::new(404, "text/plain", b"no such object".to_vec()),
    }
}

fn not_found(code: &str, message: &str) -> Reply {
    Reply::json(404, serde_json::json!({ "error": message })).header("X-Error-Code", code)
}

fn find(st: &State, repo: &str, path: &str) -> Result<FakeFile, Reply> {
    let files = st
        .repos
        .get(repo)
        .ok_or_else(|| not_found("RepoNotFound", "Repository not found"))?;
    files
        .iter()
        .find(|f| f.path == path)
        .cloned()
        .ok_or_else(|| not_found("EntryNotFound", "Entry not found"))
}

fn gate(st: &State, repo: &str, req: &Request) -> Option<Reply> {
    let token = st.gated.get(repo)?;
    match req.headers.get("authorization") {
        Some(a) if *a == format!("Bearer {token}") => None,
        Some(_) => Some(
            Reply::json(403, serde_json::json!({"error": "Access to this repository is restricted"}))
                .header("X-Error-Code", "GatedRepo"),
        ),
        None => Some(
            Reply::json(401, serde_json::json!({"error": format!("Access to model {repo} is restricted. You must be authenticated.")}))
                .header("X-Error-Code", "GatedRepo"),
        ),
    }
}

/// A file's bytes, honouring `Range: bytes=N-` and the configured faults.
fn content(st: &mut State, f: &FakeFile, req: &Request) -> Reply {
    if let Some((status, n)) = st.fail.get_mut(&f.path).filter(|(_, n)| *n > 0) {
        *n -= 1;
        return Reply::new(*status, "text/plain", b"try again later".to_vec());
    }
    let mut bytes = f.bytes.as_ref().clone();
    if let Some(n) = st.corrupt.get_mut(&f.path).filter(|n| **n > 0) {
        *n -= 1;
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
    }
    let total = bytes.len() as u64;
    let start = req
        .headers
        .get("range")
        .filter(|_| !st.ignore_range)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<u64>().ok());
    let mut reply = match start {
        Some(s) if s >= total => {
            return Reply::new(416, "text/plain", Vec::new())
                .header("Content-Range", format!("bytes */{total}"))
        }
        Some(s) => Reply::new(
            206,
            "application/octet-stream",
            bytes[s as usize..].to_vec(),
        )
        .header(
            "Content-Range",
            format!("bytes {s}-{}/{total}", total.saturating_sub(1)),
        ),
        None => Reply::new(200, "application/octet-stream", bytes),
    };
    reply = reply.header("Accept-Ranges", "bytes");
    if let Some((after, n)) = st.drop_after.get_mut(&f.path).filter(|(_, n)| *n > 0) {
        *n -= 1;
        reply.cut_at = Some(*after);
    }
    reply.delay_per_64k = st.delay_per_64k;
    reply
}

fn hf_tree(st: &State, repo: &str, rev: &str, req: &Request, hub: SocketAddr) -> Reply {
    let Some(files) = st.repos.get(repo) else {
        return not_found("RepoNotFound", "Repository not found");
    };
    if rev != "main" {
        return not_found("RevisionNotFound", "Invalid rev id");
    }
    let mut entries = Vec::new();
    let mut dirs: Vec<String> = Vec::new();
    for f in files {
        let mut dir = String::new();
        for seg in f
            .path
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            dir = if dir.is_empty() {
                seg.to_owned()
            } else {
                format!("{dir}/{seg}")
            };
            if !dirs.contains(&dir) {
                dirs.push(dir.clone());
                entries.push(serde_json::json!({"type": "directory", "oid": "0".repeat(40), "size": 0, "path": dir}));
            }
        }
        let sha = f.sha256();
        entries.push(if f.lfs {
            serde_json::json!({"type": "file", "oid": &sha[..40], "size": 135, "path": f.path,
                               "lfs": {"oid": sha, "size": f.bytes.len(), "pointerSize": 135}})
        } else {
            serde_json::json!({"type": "file", "oid": &sha[..40], "size": f.bytes.len(), "path": f.path})
        });
    }
    let from: usize = req
        .query
        .get("cursor")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let to = (from + st.page_size).min(entries.len());
    let page = serde_json::Value::Array(entries[from.min(to)..to].to_vec());
    let mut reply = Reply::json(200, page);
    if to < entries.len() {
        reply = reply.header(
            "Link",
            format!("<http://{hub}/api/models/{repo}/tree/{rev}?recursive=true&cursor={to}>; rel=\"next\""),
        );
    }
    reply
}

fn ms_files(st: &State, repo: &str) -> Reply {
    let Some(files) = st.repos.get(repo) else {
        return Reply::json(
            404,
            serde_json::json!({"Code": 10010205001u64, "Message": "model not found", "Success": false}),
        );
    };
    let list: Vec<serde_json::Value> = files
        .iter()
        .map(|f| {
            serde_json::json!({
                "Name": f.path.rsplit('/').next().unwrap_or(&f.path),
                "Path": f.path,
                "Size": f.bytes.len(),
                "Sha256": f.sha256(),
                "Type": "blob",
                "Revision": "0123456789abcdef",
            })
        })
        .collect();
    Reply::json(
        200,
        serde_json::json!({"Code": 200, "Data": {"Files": list}, "Message": "success", "Success": true}),
    )
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(s: &str) -> String {
    crate::http::encode(s, false)
}
