//! `sparetire serve`, started as a user starts it and spoken to over HTTP.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{json, request, spawn, start, tiny, Server};
use serde_json::Value;

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
    // The finish reason, then usage in a chunk of its own with no choices (OpenAI's shape).
    let (finish, last) = (&chunks[chunks.len() - 2], chunks.last().unwrap());
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    assert_eq!(last["choices"], serde_json::json!([]));
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
    // Oversized bodies are refused from the declared length, before they are
    // read: the request announces 5 MiB and sends none of it, so the answer
    // must come without the body (a server that waited would time out here).
    // A raw connection that has sent a completion request's head with `framing`.
    let post_head = |framing: &str| {
        let mut conn = std::net::TcpStream::connect(&s.addr).unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let head = format!(
            "POST /v1/completions HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\n{framing}\r\n{}\r\n\r\n",
            s.addr,
            auth.join("\r\n")
        );
        std::io::Write::write_all(&mut conn, head.as_bytes()).unwrap();
        conn
    };
    let mut conn = post_head(&format!("Content-Length: {}", 5 << 20));
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut conn, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("\"code\":413") && answer.contains("limit"),
        "{answer}"
    );
    // A body sent without a length is cut at the limit while it is read,
    // and refused with the same OpenAI-shaped 413.
    let mut conn = post_head("Transfer-Encoding: chunked");
    // 5 chunks of 1 MiB; the server may stop reading (and close) once it
    // has seen more than the limit, so write errors are expected.
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..5 {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if std::io::Write::write_all(&mut conn, &framed).is_err() {
            break;
        }
    }
    let _ = std::io::Write::write_all(&mut conn, b"0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut conn, &mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"code\":413"), "{answer}");
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
    // Its blocks went back at once (a finished request's cache is kept, as "cached").
    assert_eq!(metric(&s, "sparetire_kv_cache_blocks{state=\"held\"}"), 0.0);
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

/// A metric's value in a /metrics scrape.
fn metric(s: &Server, name: &str) -> f64 {
    let (st, text) = request(s, "GET", "/metrics", None, &[]);
    assert_eq!(st, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
        .parse()
        .unwrap()
}

/// The text of a greedy completion, non-streamed.
fn greedy(s: &Server, prompt: &str, max_tokens: usize) -> String {
    greedy_counted(s, prompt, max_tokens).0
}

/// The text of a greedy completion and its completion token count.
fn greedy_counted(s: &Server, prompt: &str, max_tokens: usize) -> (String, u64) {
    let (text, n, _) = greedy_logprobs(s, prompt, max_tokens);
    (text, n)
}

/// A greedy completion with the log-probability of every token (as JSON
/// numbers, which print f32 exactly): equal log-probabilities mean equal logits
/// to the bit, a far finer check than equal text.
fn greedy_logprobs(s: &Server, prompt: &str, max_tokens: usize) -> (String, u64, Value) {
    let body = serde_json::json!({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                                  "logprobs": 2})
    .to_string();
    let (st, resp) = request(s, "POST", "/v1/completions", Some(&body), &[]);
    assert_eq!(st, 200, "{resp}");
    let v = json(&resp);
    (
        v["choices"][0]["text"].as_str().unwrap().to_owned(),
        v["usage"]["completion_tokens"].as_u64().unwrap(),
        v["choices"][0]["logprobs"]["token_logprobs"].clone(),
    )
}

/// Streams a request; returns each choice's text (by index), the number of
/// content chunks, and the final chunk with usage (if any).
fn stream_texts(s: &Server, path: &str, body: &str) -> (Vec<String>, Option<Value>) {
    let (st, resp) = request(s, "POST", path, Some(body), &[]);
    assert_eq!(st, 200, "{resp}");
    let events: Vec<&str> = resp
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{resp}");
    let mut texts: Vec<String> = Vec::new();
    let mut usage = None;
    for e in &events[..events.len() - 1] {
        let v = json(e);
        if !v["usage"].is_null() {
            usage = Some(v.clone());
        }
        for c in v["choices"].as_array().unwrap() {
            let i = c["index"].as_u64().unwrap() as usize;
            if texts.len() <= i {
                texts.resize(i + 1, String::new());
            }
            let piece = c["text"].as_str().or(c["delta"]["content"].as_str());
            texts[i].push_str(piece.unwrap_or(""));
        }
    }
    (texts, usage)
}

/// Prompts that share long prefixes (so the prefix cache serves some of them).
fn sixteen_prompts() -> Vec<String> {
    let shared = "The following is a short story about a lighthouse keeper who lives alone on a rocky island far from the coast.";
    (0..16)
        .map(|i| match i % 4 {
            0 => format!("{shared} Chapter {i}:"),
            1 => format!("Question {i}: what is the capital of France? Answer:"),
            2 => format!("{shared} One stormy night, {i} ships"),
            _ => format!("List of {i} fruits:"),
        })
        .collect()
}

#[test]
fn sixteen_streaming_clients_get_their_solo_greedy_tokens() {
    let s = std::sync::Arc::new(start(&["-m", "smollm2", "--parallel", "16", "-c", "512"]));
    let prompts = sixteen_prompts();
    let solo: Vec<(String, u64)> = prompts.iter().map(|p| greedy_counted(&s, p, 16)).collect();
    let handles: Vec<_> = prompts
        .iter()
        .map(|p| {
            let s = s.clone();
            let body =
                serde_json::json!({"prompt": p, "max_tokens": 16, "temperature": 0, "stream": true,
                                          "stream_options": {"include_usage": true}})
                .to_string();
            std::thread::spawn(move || stream_texts(&s, "/v1/completions", &body))
        })
        .collect();
    for (i, (h, (want, n))) in handles.into_iter().zip(&solo).enumerate() {
        let (texts, usage) = h.join().unwrap();
        assert_eq!(
            texts,
            std::slice::from_ref(want),
            "client {i}: batched tokens differ from solo ones"
        );
        assert_eq!(usage.unwrap()["usage"]["completion_tokens"], *n);
    }
    // Every block is back: none held, nothing running; the shared prefixes were reused.
    assert_eq!(metric(&s, "sparetire_kv_cache_blocks{state=\"held\"}"), 0.0);
    assert_eq!(metric(&s, "sparetire_running_sequences"), 0.0);
    assert!(metric(&s, "sparetire_prompt_tokens_cached_total") >= 16.0);
}

#[test]
fn a_small_kv_cache_preempts_and_still_gives_solo_tokens() {
    // 4 MiB holds 11 blocks of SmolLM2 (176 positions): eight 48-token
    // sequences need 24, so some are preempted and recomputed.
    let s = std::sync::Arc::new(start(&[
        "-m",
        "smollm2",
        "--parallel",
        "8",
        "--kv-memory",
        "4",
    ]));
    let prompts: Vec<String> = sixteen_prompts().into_iter().skip(1).step_by(2).collect();
    let solo: Vec<_> = prompts.iter().map(|p| greedy_logprobs(&s, p, 32)).collect();
    let handles: Vec<_> = prompts
        .iter()
        .map(|p| {
            let (s, p) = (s.clone(), p.clone());
            std::thread::spawn(move || greedy_logprobs(&s, &p, 32))
        })
        .collect();
    for (h, want) in handles.into_iter().zip(&solo) {
        assert_eq!(
            &h.join().unwrap(),
            want,
            "a preempted sequence changed its logits"
        );
    }
    assert!(metric(&s, "sparetire_preemptions_total") > 0.0);
    assert_eq!(metric(&s, "sparetire_kv_cache_blocks{state=\"held\"}"), 0.0);
    // A request bigger than the whole cache is refused up front with the counts.
    let body = serde_json::json!({"prompt": "Hello", "max_tokens": 400}).to_string();
    let (st, resp) = request(&s, "POST", "/v1/completions", Some(&body), &[]);
    assert_eq!(st, 400, "{resp}");
    assert!(
        json(&resp)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("176"),
        "{resp}"
    );
}

/// `--cache-type-k/-v q8_0`: the same `--kv-memory` holds 64/34 as many positions, and
/// completions still equal `sparetire run --raw --batch-invariant` with the same cache.
#[test]
fn a_quantized_kv_cache_fits_more_and_serves_like_the_cli() {
    let prompt = "The history of the printing press begins in the fifteenth century, when";
    let kv = ["-ctk", "q8_0", "-ctv", "q8_0"];
    let o = Command::new(env!("CARGO_BIN_EXE_sparetire"))
        .args([
            "run",
            "-m",
            "smollm2",
            "--raw",
            "--temp",
            "0",
            "-n",
            "16",
            "--batch-invariant",
        ])
        .args(kv)
        .args(["-p", prompt])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = String::from_utf8(o.stdout).unwrap();
    let f16 = start(&["-m", "smollm2", "--kv-memory", "8"]);
    let q8 = start(&[&["-m", "smollm2", "--kv-memory", "8"][..], &kv[..]].concat());
    let cap = |s: &Server| metric(s, "sparetire_kv_cache_capacity_tokens");
    // 8 MiB: 22 f16 blocks of SmolLM2 (352 positions), 42 q8_0 ones (672).
    assert_eq!((cap(&f16), cap(&q8)), (352.0, 672.0));
    assert!(metric(&q8, "sparetire_kv_cache_bytes") <= 8.0 * 1048576.0);
    assert_eq!(greedy(&q8, prompt, 16), want.trim_end_matches('\n'));
}

/// `/v1/completions` computes exactly like `sparetire run --raw --batch-invariant`, also on
/// Gemma 3 (whose Q4_K/Q6_K weights and long prompts take batch-size-dependent kernels in
/// llama.cpp's routing), alone or batched with other requests.
#[test]
fn completions_equal_the_cli_greedy_run() {
    let prompt = "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined movable metal type, oil-based inks and a wooden press adapted from wine making. Within fifty years, presses were working in more than two hundred cities across Europe, and the price of books fell sharply, which";
    let cli = |model: &str, extra: &[&str]| -> String {
        let o = Command::new(env!("CARGO_BIN_EXE_sparetire"))
            .args([
                "run", "-m", model, "--raw", "--temp", "0", "-n", "12", "-p", prompt,
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout)
            .unwrap()
            .trim_end_matches('\n')
            .to_owned()
    };
    let want = cli("gemma3-270m", &["--batch-invariant"]);
    let s = std::sync::Arc::new(start(&[
        "-m",
        "gemma3-270m",
        "--parallel",
        "4",
        "-c",
        "512",
    ]));
    let alone = greedy_logprobs(&s, prompt, 12);
    assert_eq!(alone.0, want);
    // Batched with others, and again with its prefix cached: the same logits to the bit.
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                if i == 0 {
                    greedy_logprobs(&s, prompt, 12)
                } else {
                    greedy_logprobs(&s, &format!("Item {i} on the list is"), 20)
                }
            })
        })
        .collect();
    let outs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(outs[0], alone, "batched with others");
    drop(s);
    // SmolLM2 with a short prompt: the default arithmetic and the server's coincide.
    let s = start(&["-m", "smollm2", "-c", "512"]);
    let short = &prompt[..60];
    let o = Command::new(env!("CARGO_BIN_EXE_sparetire"))
        .args([
            "run", "-m", "smollm2", "--raw", "--temp", "0", "-n", "12", "-p", short,
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        greedy(&s, short, 12),
        String::from_utf8(o.stdout).unwrap().trim_end_matches('\n')
    );
}

#[test]
fn n_choices_stream_with_their_indices() {
    let s = start(&["-m", &tiny(), "--parallel", "3"]);
    let req =
        r#"{"prompt": "Once upon a time", "max_tokens": 6, "temperature": 1.0, "seed": 5, "n": 3}"#;
    let (st, body) = request(&s, "POST", "/v1/completions", Some(req), &[]);
    assert_eq!(st, 200);
    let whole: Vec<String> = json(&body)["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_owned())
        .collect();
    let sreq = req.replace(
        "\"n\": 3",
        "\"n\": 3, \"stream\": true, \"stream_options\": {\"include_usage\": true}",
    );
    let (texts, usage) = stream_texts(&s, "/v1/completions", &sreq);
    assert_eq!(texts, whole);
    let usage = usage.unwrap();
    assert_eq!(usage["choices"], serde_json::json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 18);
    // Chat too: every choice gets its role delta, content and finish reason.
    let chat = r#"{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "temperature": 1.0, "seed": 9, "n": 2, "stream": true}"#;
    let (st, body) = request(&s, "POST", "/v1/chat/completions", Some(chat), &[]);
    assert_eq!(st, 200);
    for i in 0..2 {
        let finished = body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|e| *e != "[DONE]")
            .map(json)
            .filter(|v| v["choices"][0]["index"] == i)
            .any(|v| !v["choices"][0]["finish_reason"].is_null());
        assert!(finished, "choice {i} never finished: {body}");
    }
}

#[test]
fn health_is_503_while_the_model_loads() {
    let s = spawn(
        &["-m", &tiny(), "-c", "256"],
        &[("SPARETIRE_TEST_LOAD_DELAY_MS", "1500")],
    );
    let (st, body) = request(&s, "GET", "/health", None, &[]);
    assert_eq!(st, 503, "{body}");
    assert_eq!(json(&body)["status"], "loading");
    let (st, body) = request(
        &s,
        "POST",
        "/v1/completions",
        Some(r#"{"prompt": "Hi", "max_tokens": 2}"#),
        &[],
    );
    assert_eq!(st, 503, "{body}");
    assert_eq!(json(&body)["error"]["type"], "server_error");
    let t0 = Instant::now();
    while request(&s, "GET", "/health", None, &[]).0 != 200 {
        assert!(t0.elapsed() < Duration::from_secs(30), "never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!greedy(&s, "Hi", 2).is_empty());
}

#[test]
fn sigterm_lets_running_streams_finish_then_exits_0() {
    let mut s = start(&["-m", "smollm2", "-c", "512"]);
    let mut conn = TcpStream::connect(&s.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = serde_json::json!({"prompt": "Once upon a time", "max_tokens": 64, "temperature": 0, "stream": true,
                                  "stream_options": {"include_usage": true}})
    .to_string();
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).unwrap();
    let mut first = [0u8; 256];
    assert!(conn.read(&mut first).unwrap() > 0);
    let killed = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).unwrap();
    let all = String::from_utf8_lossy(&first).into_owned() + &String::from_utf8_lossy(&rest);
    assert!(
        all.contains("data: [DONE]"),
        "the running stream was cut: {all}"
    );
    assert!(all.contains("\"completion_tokens\":64"), "{all}");
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the server did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    assert!(
        TcpStream::connect(&s.addr).is_err(),
        "still accepting connections"
    );
}
