//! `sparetire serve`, started as a user starts it and spoken to over HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tiny() -> String {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/tiny-llama.gguf")
        .display()
        .to_string()
}

/// Starts the server on a free port and waits until /health says ok.
fn start(extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sparetire"))
        .args(["serve", "--port", "0"])
        .args(if extra.contains(&"-c") {
            &[][..]
        } else {
            &["-c", "256"][..]
        })
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start sparetire serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(a) = line.strip_prefix("sparetire: listening on http://") {
            break a.to_owned();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let server = Server { child, addr };
    let t0 = Instant::now();
    while request(&server, "GET", "/health", None, &[]).0 != 200 {
        assert!(t0.elapsed() < Duration::from_secs(60), "server not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// One HTTP/1.1 request; returns (status, body).
fn request(
    s: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[&str],
) -> (u16, String) {
    let mut conn = TcpStream::connect(&s.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let body = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n", s.addr, body.len());
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    conn.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn chat_and_completions_in_openai_shapes() {
    let s = start(&["-m", &tiny()]);
    let (st, body) = request(&s, "GET", "/v1/models", None, &[]);
    assert_eq!(st, 200);
    assert_eq!(json(&body)["data"][0]["id"], "tiny-llama");

    let req = r#"{"model": "tiny-llama", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}], "max_tokens": 12, "temperature": 0}"#;
    let (st, body) = request(&s, "POST", "/v1/chat/completions", Some(req), &[]);
    assert_eq!(st, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 12);
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();

    // The same request streamed: the deltas add up to the same text.
    let sreq = req.replace(
        "\"temperature\": 0",
        "\"temperature\": 0, \"stream\": true, \"stream_options\": {\"include_usage\": true}",
    );
    let (st, body) = request(&s, "POST", "/v1/chat/completions", Some(&sreq), &[]);
    assert_eq!(st, 200);
    let events: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{body}");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| json(e)).collect();
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert_eq!(last["usage"]["completion_tokens"], 12);

    // Completions, with a stop string that the greedy text contains.
    let (st, body) = request(
        &s,
        "POST",
        "/v1/completions",
        Some(r#"{"prompt": "The quick brown fox", "max_tokens": 30, "temperature": 0}"#),
        &[],
    );
    assert_eq!(st, 200);
    let full = json(&body)["choices"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    let stop: String = full.chars().skip(8).take(3).collect();
    let sreq = serde_json::json!({"prompt": "The quick brown fox", "max_tokens": 30, "temperature": 0, "stop": [stop]}).to_string();
    let (_, body) = request(&s, "POST", "/v1/completions", Some(&sreq), &[]);
    let v = json(&body);
    assert_eq!(
        v["choices"][0]["text"].as_str().unwrap(),
        &full[..full.find(&stop).unwrap()]
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[test]
fn errors_are_openai_json_with_the_right_status() {
    let s = start(&["-m", &tiny(), "--api-key", "sekret"]);
    let auth = ["Authorization: Bearer sekret"];
    let cases: Vec<(&str, &str, &[&str], u16, &str)> = vec![
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "hi"}]}"#,
            &[],
            401,
            "",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "hi"}]}"#,
            &["Authorization: Bearer wrong"],
            401,
            "",
        ),
        ("/v1/chat/completions", "{not json", &auth, 400, ""),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}"#,
            &auth,
            400,
            "temperature",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "wizard", "content": "hi"}]}"#,
            &auth,
            400,
            "messages[0].role",
        ),
        (
            "/v1/chat/completions",
            r#"{"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}"#,
            &auth,
            404,
            "model",
        ),
        (
            "/v1/completions",
            r#"{"prompt": "hi", "max_tokens": 5000}"#,
            &auth,
            400,
            "prompt",
        ),
        (
            "/v1/completions",
            r#"{"max_tokens": 5}"#,
            &auth,
            400,
            "prompt",
        ),
        ("/v1/nothing", "{}", &auth, 404, ""),
    ];
    for (path, body, headers, status, param) in cases {
        let (st, resp) = request(&s, "POST", path, Some(body), headers);
        assert_eq!(st, status, "{path} {body}: {resp}");
        let v = json(&resp);
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{resp}"
        );
        if !param.is_empty() {
            assert_eq!(v["error"]["param"], param, "{resp}");
        }
    }
    // The context error gives the counts.
    let (_, resp) = request(
        &s,
        "POST",
        "/v1/completions",
        Some(r#"{"prompt": "hi", "max_tokens": 5000}"#),
        &auth,
    );
    assert!(resp.contains("256") && resp.contains("5000"), "{resp}");
    // Oversized bodies are refused.
    let big = format!(r#"{{"prompt": "{}"}}"#, "a".repeat(5 << 20));
    let (st, _) = request(&s, "POST", "/v1/completions", Some(&big), &auth);
    assert_eq!(st, 413);
}

#[test]
fn concurrent_requests_are_batched_and_agree_with_sequential_ones() {
    let s = start(&["-m", &tiny(), "--parallel", "4"]);
    let prompts = [
        "Once upon a time",
        "The quick brown fox",
        "Hello, world!",
        "We went to the market and",
    ];
    let body =
        |p: &str| serde_json::json!({"prompt": p, "max_tokens": 24, "temperature": 0}).to_string();
    let sequential: Vec<String> = prompts
        .iter()
        .map(|p| {
            json(&request(&s, "POST", "/v1/completions", Some(&body(p)), &[]).1)["choices"][0]
                ["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let s = std::sync::Arc::new(s);
    let handles: Vec<_> = prompts
        .iter()
        .map(|p| {
            let (s, b) = (s.clone(), body(p));
            std::thread::spawn(move || request(&s, "POST", "/v1/completions", Some(&b), &[]))
        })
        .collect();
    for (h, want) in handles.into_iter().zip(&sequential) {
        let (st, resp) = h.join().unwrap();
        assert_eq!(st, 200, "{resp}");
        let v = json(&resp);
        assert_eq!(v["usage"]["completion_tokens"], 24);
        assert_eq!(
            v["choices"][0]["text"].as_str().unwrap(),
            want,
            "batched output differs from the sequential one"
        );
    }
}

#[test]
fn metrics_count_requests_tokens_and_prefix_hits() {
    let s = start(&["-m", &tiny(), "--parallel", "1"]);
    let conv = |q: &str| {
        serde_json::json!({"messages": [{"role": "system", "content": "You are a helpful assistant who answers briefly."},
                                          {"role": "user", "content": q}], "max_tokens": 4, "temperature": 0})
        .to_string()
    };
    assert_eq!(
        request(
            &s,
            "POST",
            "/v1/chat/completions",
            Some(&conv("Hello")),
            &[]
        )
        .0,
        200
    );
    assert_eq!(
        request(
            &s,
            "POST",
            "/v1/chat/completions",
            Some(&conv("Goodbye")),
            &[]
        )
        .0,
        200
    );
    assert_eq!(
        request(&s, "POST", "/v1/chat/completions", Some("{"), &[]).0,
        400
    );
    let (st, text) = request(&s, "GET", "/metrics", None, &[]);
    assert_eq!(st, 200);
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
            .parse()
            .unwrap()
    };
    // Two completions, plus the /health polls of `start` (at least one) and this scrape is not counted yet.
    assert!(
        value("sparetire_requests_total{status=\"200\"}") >= 3.0,
        "{text}"
    );
    assert_eq!(value("sparetire_requests_total{status=\"400\"}"), 1.0);
    assert_eq!(value("sparetire_generated_tokens_total"), 8.0);
    assert_eq!(value("sparetire_time_to_first_token_seconds_count"), 2.0);
    // The second conversation shares the system prompt with the first: its prefix came from cache.
    assert!(
        value("sparetire_prompt_tokens_cached_total") >= 10.0,
        "{text}"
    );
    assert!(value("sparetire_prefix_cache_hit_ratio") > 0.0);
    assert_eq!(value("sparetire_queue_depth"), 0.0);
}

#[test]
fn logprobs_in_both_shapes() {
    let s = start(&["-m", &tiny()]);
    let req = r#"{"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 5, "temperature": 0, "logprobs": true, "top_logprobs": 3}"#;
    let (st, body) = request(&s, "POST", "/v1/chat/completions", Some(req), &[]);
    assert_eq!(st, 200, "{body}");
    let v = json(&body);
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 5);
    for t in content {
        let lp = t["logprob"].as_f64().unwrap();
        let top = t["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert!(
            (top[0]["logprob"].as_f64().unwrap() - lp).abs() < 1e-6 && lp <= 0.0,
            "{t}"
        );
        assert!(top[0]["logprob"].as_f64() >= top[1]["logprob"].as_f64());
    }
    let joined: String = content
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    assert_eq!(
        joined,
        v["choices"][0]["message"]["content"].as_str().unwrap()
    );

    let req = r#"{"prompt": "The quick brown fox", "max_tokens": 4, "temperature": 0, "logprobs": 2, "stream": true}"#;
    let (_, body) = request(&s, "POST", "/v1/completions", Some(req), &[]);
    let tokens: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(json)
        .filter_map(|c| {
            c["choices"][0]["logprobs"]["token_logprobs"]
                .as_array()
                .cloned()
        })
        .flatten()
        .collect();
    assert_eq!(tokens.len(), 4, "{body}");
    let (st, body) = request(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(
            r#"{"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 50}"#,
        ),
        &[],
    );
    assert_eq!(st, 400, "{body}");
    assert_eq!(json(&body)["error"]["param"], "top_logprobs");
}

#[test]
fn n_choices() {
    let s = start(&["-m", &tiny(), "--parallel", "3"]);
    let req =
        r#"{"prompt": "Once upon a time", "max_tokens": 6, "temperature": 1.0, "seed": 5, "n": 3}"#;
    let (st, body) = request(&s, "POST", "/v1/completions", Some(req), &[]);
    assert_eq!(st, 200, "{body}");
    let v = json(&body);
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
    }
    assert_eq!(v["usage"]["completion_tokens"], 18);
    let texts: std::collections::HashSet<&str> = choices
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert!(
        texts.len() > 1,
        "three samples at temperature 1 should not all agree: {texts:?}"
    );
    // The same request again gives the same choices (seeded).
    let (_, again) = request(&s, "POST", "/v1/completions", Some(req), &[]);
    assert_eq!(json(&again)["choices"], v["choices"]);
}

/// A streamed request whose client reads one chunk and hangs up.
fn start_and_abandon(s: &Server, max_tokens: usize) {
    let mut conn = TcpStream::connect(&s.addr).unwrap();
    let body = serde_json::json!({"prompt": "Once upon a time", "max_tokens": max_tokens, "temperature": 0, "stream": true}).to_string();
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = conn.read(&mut buf).unwrap();
    assert!(n > 0);
    drop(conn);
}

#[test]
fn disconnected_clients_free_their_sequence() {
    let s = start(&["-m", &tiny(), "--parallel", "1", "-c", "4096"]);
    start_and_abandon(&s, 3000);
    // The slot is freed: the next request is served at once, not after 3000 tokens.
    let t0 = Instant::now();
    let (st, _) = request(
        &s,
        "POST",
        "/v1/completions",
        Some(r#"{"prompt": "Hi", "max_tokens": 2}"#),
        &[],
    );
    assert_eq!(st, 200);
    let (_, m) = request(&s, "GET", "/metrics", None, &[]);
    let generated: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("sparetire_generated_tokens_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        generated < 1000.0,
        "the abandoned request kept generating ({generated} tokens, {:?})",
        t0.elapsed()
    );
}

#[test]
fn a_full_queue_answers_429_at_once() {
    let s = std::sync::Arc::new(start(&[
        "-m",
        &tiny(),
        "--parallel",
        "1",
        "--max-queue",
        "1",
        "-c",
        "4096",
    ]));
    let body = r#"{"prompt": "Once upon a time", "max_tokens": 2000, "temperature": 0}"#;
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let (st, resp) = request(&s, "POST", "/v1/completions", Some(body), &[]);
                (st, resp, t0.elapsed())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let refused: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert!(
        !refused.is_empty(),
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    for (_, resp, _) in &refused {
        assert_eq!(json(resp)["error"]["type"], "rate_limit_error");
    }
    assert!(results.iter().all(|r| r.0 == 200 || r.0 == 429));
}
