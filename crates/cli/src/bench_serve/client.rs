//! A streaming client for the OpenAI completions endpoint: one keep-alive HTTP/1.1 connection
//! ([`Client`], on hyper) that sends requests back to back and times the server-sent events of
//! each answer ([`SseParser`], [`StreamState`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use super::stats::Outcome;

/// Where requests go: `http://HOST:PORT[/BASE]`, whose `/v1/completions` is the endpoint.
#[derive(Clone, Debug)]
pub struct Target {
    /// `HOST:PORT` to connect to (also the `Host` header).
    authority: String,
    /// Path of the completions endpoint.
    path: String,
    /// Sent as `Authorization: Bearer KEY`.
    api_key: Option<String>,
}

impl Target {
    /// Parses a server URL (`http://127.0.0.1:8080`, `localhost:8080`, `http://h:1/v1`);
    /// the error says what is wrong with it.
    pub fn parse(url: &str, api_key: Option<String>) -> Result<Target, String> {
        let full = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let uri: Uri = full
            .parse()
            .map_err(|e| format!("--url {url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            s => {
                return Err(format!(
                    "--url {url:?}: only http:// is supported, not {}://",
                    s.unwrap_or("")
                ))
            }
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("--url {url:?} has no host"))?;
        let authority = match authority.port_u16() {
            Some(_) => authority.as_str().to_owned(),
            None => format!("{}:80", authority.host()),
        };
        let base = uri.path().trim_end_matches('/');
        let path = if base.ends_with("/v1") {
            format!("{base}/completions")
        } else {
            format!("{base}/v1/completions")
        };
        Ok(Target {
            authority,
            path,
            api_key,
        })
    }

    /// The endpoint, for messages.
    pub fn endpoint(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }

    fn request(&self, body: Bytes) -> Result<Request<Full<Bytes>>, String> {
        let mut req = Request::post(self.path.as_str())
            .header("host", self.authority.as_str())
            .header("content-type", "application/json")
            .header("accept", "text/event-stream");
        if let Some(key) = &self.api_key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        req.body(Full::new(body))
            .map_err(|e| format!("building the request: {e}"))
    }
}

/// One client: a connection opened on first use, kept alive between requests and reopened
/// when the server closes it.
pub struct Client {
    target: Arc<Target>,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    /// A client of `target` that gives up on a request after `timeout`.
    pub fn new(target: Arc<Target>, timeout: Duration) -> Client {
        Client {
            target,
            timeout,
            sender: None,
        }
    }

    /// Sends one streaming completion request with this JSON body and times its answer.
    pub async fn complete(&mut self, body: Bytes) -> Outcome {
        let t0 = Instant::now();
        match tokio::time::timeout(self.timeout, self.exchange(body, t0)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                self.sender = None;
                Outcome::failed(e, t0.elapsed())
            }
            Err(_) => {
                self.sender = None;
                Outcome::failed(
                    format!("no complete answer within {} s", self.timeout.as_secs_f64()),
                    t0.elapsed(),
                )
            }
        }
    }

    async fn exchange(&mut self, body: Bytes, t0: Instant) -> Result<Outcome, String> {
        let (mut sender, reused) = self.ready_sender().await?;
        let resp = match sender
            .send_request(self.target.request(body.clone())?)
            .await
        {
            Ok(r) => r,
            // A kept-alive connection the server closed just as we used it: the request never
            // reached it, so it is sent again once on a new connection.
            Err(e) if reused && (e.is_canceled() || e.is_incomplete_message()) => {
                sender = connect(&self.target).await?;
                sender
                    .send_request(self.target.request(body)?)
                    .await
                    .map_err(|e| format!("sending the request: {e}"))?
            }
            Err(e) => return Err(format!("sending the request: {e}")),
        };
        let status = resp.status();
        let mut body = resp.into_body();
        if status != StatusCode::OK {
            let text = body
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            return Err(format!("HTTP {status}: {}", snippet(&text)));
        }
        let mut sse = SseParser::default();
        let mut state = StreamState::default();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the stream: {e}"))?;
            if let Some(data) = frame.data_ref() {
                for event in sse.push(data) {
                    state.event(&event, t0.elapsed())?;
                }
            }
        }
        let outcome = state.finish(t0.elapsed())?;
        self.sender = Some(sender);
        Ok(outcome)
    }

    /// The kept connection if it can take a request, else a new one; and whether it was kept.
    async fn ready_sender(&mut self) -> Result<(SendRequest<Full<Bytes>>, bool), String> {
        if let Some(mut s) = self.sender.take() {
            if s.ready().await.is_ok() {
                return Ok((s, true));
            }
        }
        Ok((connect(&self.target).await?, false))
    }
}

async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>, String> {
    let tcp = TcpStream::connect(&target.authority)
        .await
        .map_err(|e| format!("connecting to {}: {e}", target.authority))?;
    // Small SSE writes must not wait for Nagle on our side either.
    tcp.set_nodelay(true)
        .map_err(|e| format!("setting TCP_NODELAY: {e}"))?;
    let (sender, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP handshake with {}: {e}", target.authority))?;
    // The connection task ends when the sender is dropped or the server closes.
    tokio::spawn(conn);
    Ok(sender)
}

fn snippet(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_owned(),
    }
}

/// Splits a byte stream into the data of server-sent events (`data:` lines up to a blank line),
/// whatever the network's chunking.
#[derive(Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds bytes; returns the data of each event they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let line = String::from_utf8_lossy(&self.line).into_owned();
            self.line.clear();
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                events.extend(self.data.take());
            } else if let Some(d) = line.strip_prefix("data:") {
                let d = d.strip_prefix(' ').unwrap_or(d);
                match &mut self.data {
                    Some(acc) => {
                        acc.push('\n');
                        acc.push_str(d);
                    }
                    None => self.data = Some(d.to_owned()),
                }
            }
            // Comments (`:`), `event:`, `id:` and `retry:` lines carry nothing we time.
        }
        events
    }
}

/// What the events of one answer have shown so far.
#[derive(Default, Debug)]
pub struct StreamState {
    done: bool,
    ttft: Option<Duration>,
    last_text: Option<Duration>,
    text_chunks: u64,
    usage_tokens: Option<u64>,
}

impl StreamState {
    /// Takes in one event's data, received `at` after the request was sent; an error event is
    /// an error.
    pub fn event(&mut self, data: &str, at: Duration) -> Result<(), String> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| format!("an event is not JSON ({e}): {}", snippet(data)))?;
        if let Some(err) = v.get("error") {
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| err.to_string(), str::to_owned);
            return Err(format!("error event: {}", snippet(&msg)));
        }
        let choice = &v["choices"][0];
        // Completions carry `text`; chat completions `delta.content`.
        let text = choice["text"]
            .as_str()
            .or_else(|| choice["delta"]["content"].as_str())
            .unwrap_or("");
        if !text.is_empty() {
            self.text_chunks += 1;
            self.ttft.get_or_insert(at);
            self.last_text = Some(at);
        }
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            self.usage_tokens = Some(n);
        }
        Ok(())
    }

    /// The outcome of a stream that ended `at`; an error if it ended before `[DONE]`.
    pub fn finish(self, at: Duration) -> Result<Outcome, String> {
        if !self.done {
            return Err("the stream ended before `data: [DONE]`".into());
        }
        Ok(Outcome {
            error: None,
            ttft: self.ttft,
            last_text: self.last_text,
            latency: at,
            tokens: self.usage_tokens.unwrap_or(self.text_chunks),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_completions_endpoint() {
        let t = Target::parse("http://127.0.0.1:8080", None).unwrap();
        assert_eq!(t.endpoint(), "http://127.0.0.1:8080/v1/completions");
        let t = Target::parse("localhost:9000/", None).unwrap();
        assert_eq!(t.endpoint(), "http://localhost:9000/v1/completions");
        let t = Target::parse("http://h/v1/", None).unwrap();
        assert_eq!(t.endpoint(), "http://h:80/v1/completions");
        let e = Target::parse("https://h:1", None).unwrap_err();
        assert!(e.contains("only http://"), "{e}");
        assert!(Target::parse("not a url", None).is_err());
    }

    #[test]
    fn events_survive_any_chunking() {
        let stream = b"data: {\"a\":1}\r\n\r\n: comment\n\ndata:[DONE]\n\n";
        for split in 0..stream.len() {
            let mut p = SseParser::default();
            let mut got = p.push(&stream[..split]);
            got.extend(p.push(&stream[split..]));
            assert_eq!(got, ["{\"a\":1}", "[DONE]"], "split at {split}");
        }
        let mut p = SseParser::default();
        assert_eq!(p.push(b"data: a\ndata: b\n\n"), ["a\nb"]);
    }

    #[test]
    fn usage_wins_over_counted_chunks() {
        let ms = Duration::from_millis;
        let mut s = StreamState::default();
        s.event(r#"{"choices":[{"text":"Hel"}]}"#, ms(10)).unwrap();
        s.event(r#"{"choices":[{"text":""}]}"#, ms(15)).unwrap();
        s.event(r#"{"choices":[{"delta":{"content":"lo"}}]}"#, ms(20))
            .unwrap();
        s.event("[DONE]", ms(21)).unwrap();
        let o = s.finish(ms(22)).unwrap();
        assert_eq!(
            (o.ttft, o.last_text, o.tokens),
            (Some(ms(10)), Some(ms(20)), 2)
        );
        assert_eq!(o.latency, ms(22));

        let mut s = StreamState::default();
        s.event(r#"{"choices":[{"text":"Hello"}]}"#, ms(10))
            .unwrap();
        s.event(
            r#"{"choices":[{"text":"","finish_reason":"length"}],"usage":{"completion_tokens":3}}"#,
            ms(25),
        )
        .unwrap();
        s.event("[DONE]", ms(26)).unwrap();
        assert_eq!(s.finish(ms(27)).unwrap().tokens, 3);
    }

    #[test]
    fn errors_and_cut_streams_fail() {
        let mut s = StreamState::default();
        let e = s
            .event(r#"{"error":{"message":"boom"}}"#, Duration::ZERO)
            .unwrap_err();
        assert!(e.contains("boom"), "{e}");
        assert!(s.event("{oops", Duration::ZERO).is_err());
        let mut s = StreamState::default();
        s.event(r#"{"choices":[{"text":"a"}]}"#, Duration::ZERO)
            .unwrap();
        assert!(s.finish(Duration::ZERO).unwrap_err().contains("[DONE]"));
    }
}
