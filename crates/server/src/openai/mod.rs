//! The OpenAI-compatible endpoints: `/v1/chat/completions`, `/v1/completions`,
//! `/v1/models`. Both completion endpoints share one path from request to
//! response; they differ only in how the prompt is given and how the result
//! is shaped ([`Kind`]).

pub mod request;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sparetire_runtime::{GenParams, TokenLogprob};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ApiError;
use crate::worker::{Event, Job, Prompt};
use crate::AppState;

/// Which endpoint.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

/// The body, or the error for one that could not be read: a body over the
/// limit (sent without a length, so the length check could not refuse it
/// first) is a 413 in OpenAI's shape, anything else a 400.
fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(crate::MAX_BODY_BYTES)
        } else {
            ApiError::Invalid {
                message: format!("could not read the request body: {}", e.body_text()),
                param: None,
            }
        }
    })
}

/// `POST /v1/chat/completions`
pub async fn chat(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(st, headers, body, Kind::Chat)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/completions`
pub async fn completions(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    handle(st, headers, body, Kind::Completion)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/models`
pub async fn models(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = st.check_key(&headers) {
        return e.into_response();
    }
    Json(json!({"object": "list", "data": [{
        "id": st.model_name, "object": "model", "created": st.started, "owned_by": "sparetire"
    }]}))
    .into_response()
}

async fn handle(
    st: Arc<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    kind: Kind,
) -> Result<Response, ApiError> {
    let body = body_or_error(body)?;
    st.check_key(&headers)?;
    let m = request::object(&body)?;
    let c = request::common(
        &m,
        if kind == Kind::Completion {
            Some(16)
        } else {
            None
        },
    )?;
    if let Some(model) = &c.model {
        if model != &st.model_name && !model.is_empty() {
            return Err(ApiError::UnknownModel(model.clone()));
        }
    }
    let prompt = match kind {
        Kind::Chat => Prompt::Chat(request::messages(&m)?),
        Kind::Completion => Prompt::Text(request::string(&m, "prompt")?),
    };
    // `n` choices are `n` sequences (batched together), seeds 0..n apart.
    let mut receivers = Vec::with_capacity(c.n);
    for i in 0..c.n {
        let (tx, rx) = mpsc::channel(64);
        let mut sampler = c.sampler.clone();
        sampler.seed = sampler.seed.wrapping_add(i as u64);
        let params = GenParams {
            max_tokens: c.max_tokens,
            sampler,
            stop: c.stop.clone(),
            stop_at_eog: true,
            logprobs: c.logprobs,
        };
        st.worker.submit(Job {
            prompt: prompt.clone(),
            params,
            events: tx,
            arrived: std::time::Instant::now(),
        })?;
        receivers.push(rx);
    }
    let meta = Meta {
        logprobs: c.logprobs.is_some(),
        id: format!(
            "{}-{}",
            if kind == Kind::Chat {
                "chatcmpl"
            } else {
                "cmpl"
            },
            st.next_id()
        ),
        created: now(),
        model: st.model_name.clone(),
        kind,
    };
    if c.stream {
        Ok(stream(meta, receivers, c.include_usage).into_response())
    } else {
        let mut choices = Vec::with_capacity(receivers.len());
        let (mut prompt_tokens, mut completion_tokens) = (0, 0);
        for (i, rx) in receivers.into_iter().enumerate() {
            let (mut choice, p, c) = collect(&meta, rx).await?;
            choice["index"] = json!(i);
            choices.push(choice);
            prompt_tokens = p;
            completion_tokens += c;
        }
        let v = meta.envelope(
            choices,
            Some(usage(prompt_tokens, completion_tokens)),
            false,
        );
        Ok(Json(v).into_response())
    }
}

struct Meta {
    /// Whether the request asked for log-probabilities.
    logprobs: bool,
    id: String,
    created: u64,
    model: String,
    kind: Kind,
}

impl Meta {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        }
    }

    /// A choice carrying `text` (a message, a delta, or completion text).
    fn choice(&self, text: Option<&str>, finish_reason: Option<&str>, chunk: bool) -> Value {
        match (self.kind, chunk) {
            (Kind::Chat, false) => {
                json!({"index": 0, "message": {"role": "assistant", "content": text.unwrap_or("")},
                                           "logprobs": null, "finish_reason": finish_reason})
            }
            (Kind::Chat, true) => {
                let delta = match text {
                    Some(t) => json!({"content": t}),
                    None if finish_reason.is_none() => json!({"role": "assistant", "content": ""}),
                    None => json!({}),
                };
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason})
            }
            (Kind::Completion, _) => {
                json!({"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish_reason})
            }
        }
    }

    fn envelope(&self, choices: Vec<Value>, usage: Option<Value>, chunk: bool) -> Value {
        let mut v = json!({"id": self.id, "object": self.object(chunk), "created": self.created,
                           "model": self.model, "choices": choices});
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    }
}

/// Log-probabilities in the endpoint's shape: chat's `{"content": [...]}`, or
/// completions' `{"tokens", "token_logprobs", "top_logprobs", "text_offset"}`.
fn logprobs_json(kind: Kind, lps: &[TokenLogprob], mut offset: usize) -> Value {
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match kind {
        Kind::Chat => json!({"content": lps.iter().map(|t| json!({
            "token": s(&t.bytes), "logprob": t.logprob, "bytes": t.bytes,
            "top_logprobs": t.top.iter().map(|(_, b, lp)| json!({"token": s(b), "logprob": lp, "bytes": b})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()}),
        Kind::Completion => {
            let mut offsets = Vec::with_capacity(lps.len());
            for t in lps {
                offsets.push(offset);
                offset += s(&t.bytes).len();
            }
            json!({
                "tokens": lps.iter().map(|t| s(&t.bytes)).collect::<Vec<_>>(),
                "token_logprobs": lps.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                "top_logprobs": lps.iter().map(|t| t.top.iter().map(|(_, b, lp)| (s(b), json!(lp))).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>(),
                "text_offset": offsets,
            })
        }
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// Waits for one whole choice; returns it with its prompt and completion token counts.
async fn collect(
    meta: &Meta,
    mut rx: mpsc::Receiver<Event>,
) -> Result<(Value, usize, usize), ApiError> {
    let mut text = String::new();
    let mut lps = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Text(t) => text.push_str(&t),
            Event::Logprobs(l) => lps.extend(l),
            Event::Error(e) => return Err(e),
            Event::Done {
                finish_reason,
                prompt_tokens,
                completion_tokens,
            } => {
                let mut choice = meta.choice(Some(&text), Some(finish_reason), false);
                if meta.logprobs {
                    choice["logprobs"] = logprobs_json(meta.kind, &lps, 0);
                }
                return Ok((choice, prompt_tokens, completion_tokens));
            }
        }
    }
    Err(ApiError::Internal(
        "the engine stopped before finishing the request".into(),
    ))
}

/// Server-sent events for `n` choices: one chunk per piece of text (its
/// `index` naming the choice), a chunk with each choice's finish reason, then,
/// if asked, one chunk with the whole request's usage and no choices (as
/// OpenAI sends it), then `data: [DONE]`. A client that disconnects drops the
/// stream, which ends the relay task and with it every choice's receiver,
/// which cancels the jobs.
fn stream(
    meta: Meta,
    receivers: Vec<mpsc::Receiver<Event>>,
    include_usage: bool,
) -> impl IntoResponse {
    let (tx, out) = mpsc::channel::<Result<SseEvent, Infallible>>(64);
    // Every choice's events, tagged with its index, through one channel.
    let (merged_tx, mut merged) = mpsc::channel::<(usize, Event)>(64);
    let n = receivers.len();
    for (i, mut rx) in receivers.into_iter().enumerate() {
        let merged_tx = merged_tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if merged_tx.send((i, ev)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(merged_tx);
    tokio::spawn(async move {
        let send = |v: &Value| Ok(SseEvent::default().data(v.to_string()));
        let with_index = |mut choice: Value, i: usize| {
            choice["index"] = json!(i);
            vec![choice]
        };
        if meta.kind == Kind::Chat {
            for i in 0..n {
                let first = meta.envelope(with_index(meta.choice(None, None, true), i), None, true);
                if tx.send(send(&first)).await.is_err() {
                    return;
                }
            }
        }
        let mut lps: Vec<Vec<TokenLogprob>> = vec![Vec::new(); n];
        let mut sent = vec![0usize; n]; // bytes of text sent per choice (completions' text_offset)
        let (mut prompt, mut completion, mut done) = (0, 0, 0);
        while let Some((i, ev)) = merged.recv().await {
            let mut data = match ev {
                Event::Logprobs(l) => {
                    lps[i].extend(l);
                    continue;
                }
                Event::Text(t) => {
                    meta.envelope(with_index(meta.choice(Some(&t), None, true), i), None, true)
                }
                Event::Done {
                    finish_reason,
                    prompt_tokens,
                    completion_tokens,
                } => {
                    prompt = prompt_tokens;
                    completion += completion_tokens;
                    done += 1;
                    meta.envelope(
                        with_index(meta.choice(None, Some(finish_reason), true), i),
                        None,
                        true,
                    )
                }
                Event::Error(e) => {
                    // One failed choice fails the request.
                    let _ = tx.send(send(&e.body())).await;
                    let _ = tx.send(Ok(SseEvent::default().data("[DONE]"))).await;
                    return;
                }
            };
            if meta.logprobs && !lps[i].is_empty() {
                data["choices"][0]["logprobs"] = logprobs_json(meta.kind, &lps[i], sent[i]);
                sent[i] += lps[i]
                    .iter()
                    .map(|t| String::from_utf8_lossy(&t.bytes).len())
                    .sum::<usize>();
                lps[i].clear();
            }
            if tx.send(send(&data)).await.is_err() {
                return;
            }
            if done == n {
                if include_usage {
                    let u = meta.envelope(Vec::new(), Some(usage(prompt, completion)), true);
                    if tx.send(send(&u)).await.is_err() {
                        return;
                    }
                }
                let _ = tx.send(Ok(SseEvent::default().data("[DONE]"))).await;
                return;
            }
        }
    });
    Sse::new(ReceiverStream::new(out))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
