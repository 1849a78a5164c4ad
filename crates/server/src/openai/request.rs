//! Reading OpenAI request bodies field by field, so that every error names its field.

use serde_json::{Map, Value};
use sparetire_runtime::SamplerConfig;
use sparetire_tokenizer::ChatMessage;

use crate::error::ApiError;

/// What both endpoints accept besides the prompt.
#[derive(Debug, Clone)]
pub struct Common {
    /// `model`, if given.
    pub model: Option<String>,
    /// `max_tokens` / `max_completion_tokens`.
    pub max_tokens: Option<usize>,
    /// Sampling settings.
    pub sampler: SamplerConfig,
    /// `stop`: a string or up to 4 strings.
    pub stop: Vec<String>,
    /// `stream`.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// Log-probabilities asked for, with this many alternatives.
    pub logprobs: Option<usize>,
    /// Choices to generate (`n`).
    pub n: usize,
}

/// Parses a JSON body into an object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::Invalid {
        message: format!("the request body is not valid JSON: {e}"),
        param: None,
    })?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::Invalid {
            message: "the request body must be a JSON object".into(),
            param: None,
        }),
    }
}

fn number(m: &Map<String, Value>, key: &str, lo: f64, hi: f64) -> Result<Option<f64>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(Some(x)),
            _ => Err(ApiError::invalid(
                key,
                format!("`{key}` must be between {lo} and {hi}, got {n}"),
            )),
        },
        Some(other) => Err(ApiError::invalid(
            key,
            format!("`{key}` must be a number, got {other}"),
        )),
    }
}

fn integer(m: &Map<String, Value>, key: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(Some(x)),
            _ => Err(ApiError::invalid(
                key,
                format!("`{key}` must be an integer from {lo} to {hi}, got {n}"),
            )),
        },
        Some(other) => Err(ApiError::invalid(
            key,
            format!("`{key}` must be an integer, got {other}"),
        )),
    }
}

fn boolean(m: &Map<String, Value>, key: &str) -> Result<bool, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ApiError::invalid(
            key,
            format!("`{key}` must be true or false, got {other}"),
        )),
    }
}

/// A required string field.
pub fn string(m: &Map<String, Value>, key: &str) -> Result<String, ApiError> {
    match m.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(ApiError::invalid(key, format!("`{key}` is required"))),
        Some(other) => Err(ApiError::invalid(
            key,
            format!("`{key}` must be a string, got {other}"),
        )),
    }
}

/// The fields both endpoints share.
pub fn common(
    m: &Map<String, Value>,
    default_max_tokens: Option<usize>,
) -> Result<Common, ApiError> {
    let model = match m.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(ApiError::invalid(
                "model",
                format!("`model` must be a string, got {other}"),
            ))
        }
    };
    let max_tokens = match integer(m, "max_completion_tokens", 1, 1 << 30)? {
        Some(n) => Some(n as usize),
        None => integer(m, "max_tokens", 1, 1 << 30)?
            .map(|n| n as usize)
            .or(default_max_tokens),
    };
    let n = integer(m, "n", 1, 16)?.unwrap_or(1) as usize;
    let defaults = SamplerConfig::default();
    let seed = integer(m, "seed", i64::MIN, i64::MAX)?;
    let sampler = SamplerConfig {
        temperature: number(m, "temperature", 0.0, 2.0)?.map_or(defaults.temperature, |x| x as f32),
        top_p: match number(m, "top_p", 0.0, 1.0)? {
            Some(p) if p <= 0.0 => {
                return Err(ApiError::invalid("top_p", "`top_p` must be above 0"))
            }
            Some(p) => p as f32,
            None => defaults.top_p,
        },
        seed: seed.map_or_else(random_seed, |s| s as u64),
        presence_penalty: number(m, "presence_penalty", -2.0, 2.0)?.map_or(0.0, |x| x as f32),
        frequency_penalty: number(m, "frequency_penalty", -2.0, 2.0)?.map_or(0.0, |x| x as f32),
        ..defaults
    };
    let stop = match m.get("stop") {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.len() <= 4 => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::invalid("stop", "`stop` must be a string or an array of strings")
            })?,
        Some(_) => {
            return Err(ApiError::invalid(
                "stop",
                "`stop` must be a string or an array of up to 4 strings",
            ))
        }
    };
    let stream = boolean(m, "stream")?;
    let include_usage = match m.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => boolean(o, "include_usage").map_err(|_| {
            ApiError::invalid(
                "stream_options.include_usage",
                "`stream_options.include_usage` must be true or false",
            )
        })?,
        Some(_) => {
            return Err(ApiError::invalid(
                "stream_options",
                "`stream_options` must be an object",
            ))
        }
    };
    // Chat: `logprobs: true` plus `top_logprobs: 0..=20`; completions: `logprobs: 0..=5`.
    let logprobs = match m.get("logprobs") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(integer(m, "top_logprobs", 0, 20)?.unwrap_or(0) as usize),
        Some(Value::Number(_)) => integer(m, "logprobs", 0, 5)?.map(|n| n as usize),
        Some(other) => {
            return Err(ApiError::invalid(
                "logprobs",
                format!("`logprobs` must be a boolean or an integer, got {other}"),
            ))
        }
    };
    Ok(Common {
        n,
        logprobs,
        model,
        max_tokens,
        sampler,
        stop,
        stream,
        include_usage,
    })
}

/// `messages`: an array of `{role, content}` with string content (or text parts).
pub fn messages(m: &Map<String, Value>) -> Result<Vec<ChatMessage>, ApiError> {
    let Some(Value::Array(items)) = m.get("messages") else {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must be a non-empty array",
        ));
    };
    if items.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must be a non-empty array",
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let field = |f: &str| format!("messages[{i}].{f}");
            let Value::Object(o) = it else {
                return Err(ApiError::invalid(
                    &format!("messages[{i}]"),
                    "each message must be an object",
                ));
            };
            let role = match o.get("role") {
                Some(Value::String(r))
                    if ["system", "user", "assistant", "developer"].contains(&r.as_str()) =>
                {
                    if r == "developer" {
                        "system".to_owned()
                    } else {
                        r.clone()
                    }
                }
                _ => {
                    return Err(ApiError::invalid(
                        &field("role"),
                        "`role` must be system, user or assistant",
                    ))
                }
            };
            let content = match o.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Option<Vec<_>>>()
                    .map(|v| v.concat())
                    .ok_or_else(|| {
                        ApiError::invalid(
                            &field("content"),
                            "only text content parts are supported",
                        )
                    })?,
                Some(Value::Null) | None if role == "assistant" => String::new(),
                _ => {
                    return Err(ApiError::invalid(
                        &field("content"),
                        "`content` must be a string",
                    ))
                }
            };
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

fn random_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(s: &str) -> Map<String, Value> {
        object(s.as_bytes()).unwrap()
    }

    #[test]
    fn errors_name_the_field() {
        let e = common(&obj(r#"{"temperature": "hot"}"#), None).unwrap_err();
        assert!(e.body()["error"]["param"] == "temperature", "{}", e.body());
        let e = common(&obj(r#"{"max_tokens": -3}"#), None).unwrap_err();
        assert_eq!(e.body()["error"]["param"], "max_tokens");
        let e = messages(&obj(r#"{"messages": [{"role": "user", "content": 5}]}"#)).unwrap_err();
        assert_eq!(e.body()["error"]["param"], "messages[0].content");
        assert!(object(b"{not json").is_err());
        assert!(object(b"[1]").is_err());
    }

    #[test]
    fn defaults_and_values() {
        let c = common(&obj(r#"{"max_tokens": 7, "temperature": 0, "stop": ["a", "b"], "stream": true, "seed": 3}"#), None).unwrap();
        assert_eq!(c.max_tokens, Some(7));
        assert_eq!(c.sampler.temperature, 0.0);
        assert_eq!(c.sampler.seed, 3);
        assert_eq!(c.stop, ["a", "b"]);
        assert!(c.stream && !c.include_usage);
        let m = messages(&obj(
            r#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}"#,
        ))
        .unwrap();
        assert_eq!(m[0].content, "hi");
    }
}
