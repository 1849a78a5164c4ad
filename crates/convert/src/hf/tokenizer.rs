//! tokenizer.json (+ tokenizer_config.json, config.json) of a byte-level BPE tokenizer → the
//! `tokenizer.*` GGUF keys llama.cpp reads: tokens, token types, merges, the pre-tokenizer's
//! name, special token ids, whether BOS/EOS are added, and the chat template.

use std::collections::HashMap;

use serde_json::Value as Json;
use sparetire_formats::gguf::Value;

use crate::ConvertError;

/// llama.cpp's token types.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

fn err(file: &str, problem: impl Into<String>) -> ConvertError {
    ConvertError::Metadata {
        key: file.into(),
        problem: problem.into(),
    }
}

/// The texts of a checkpoint's tokenizer files (`None` when a file is absent).
pub struct TokenizerFiles<'a> {
    /// tokenizer.json.
    pub tokenizer: &'a str,
    /// tokenizer_config.json.
    pub config: Option<&'a str>,
    /// chat_template.jinja.
    pub chat_template: Option<&'a str>,
}

/// The pre-tokenizer name (`tokenizer.ggml.pre`) for a tokenizer.json `pre_tokenizer`.
///
/// llama.cpp's converter recognizes tokenizers by hashing their output on a test text, which
/// needs the Python tokenizers library; here the configuration itself is matched instead.
pub fn pre_tokenizer_name(pre: &Json) -> Option<&'static str> {
    let parts: Vec<&Json> = match pre.get("type").and_then(Json::as_str) {
        Some("Sequence") => pre.get("pretokenizers")?.as_array()?.iter().collect(),
        Some(_) => vec![pre],
        None => return None,
    };
    fn kind(p: &Json) -> &str {
        p.get("type").and_then(Json::as_str).unwrap_or("")
    }
    let byte_level_regex = |p: &Json| {
        kind(p) == "ByteLevel" && p.get("use_regex").and_then(Json::as_bool).unwrap_or(true)
    };
    match parts.as_slice() {
        [b] if byte_level_regex(b) => Some("gpt-2"),
        [d, b]
            if kind(d) == "Digits"
                && d.get("individual_digits").and_then(Json::as_bool) == Some(true)
                && byte_level_regex(b) =>
        {
            Some("smollm")
        }
        [s, b] if kind(s) == "Split" && kind(b) == "ByteLevel" => {
            let re = s.get("pattern")?.get("Regex")?.as_str()?;
            let llama3_like = re.contains("(?i:'s|'t|'re|'ve|'m|'ll|'d)")
                && re.contains("[^\\r\\n\\p{L}\\p{N}]?\\p{L}+");
            if llama3_like && re.contains("\\p{N}{1,3}") {
                Some("llama-bpe")
            } else if llama3_like && re.contains("\\p{N}|") {
                Some("qwen2")
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A special token given as a string or `{"content": …}`.
fn token_content(v: &Json) -> Option<&str> {
    v.as_str()
        .or_else(|| v.get("content").and_then(Json::as_str))
}

/// The `tokenizer.*` keys for these files; `n_vocab` is the model's embedding rows (the token
/// list is padded to it with unused `[PAD{i}]` tokens, as llama.cpp's converter does).
pub fn metadata(
    files: &TokenizerFiles,
    model_config: &Json,
    n_vocab: u32,
) -> Result<Vec<(String, Value)>, ConvertError> {
    const TJ: &str = "tokenizer.json";
    let tok: Json = serde_json::from_str(files.tokenizer)
        .map_err(|e| err(TJ, format!("not valid JSON: {e}")))?;
    let model = tok.get("model").ok_or_else(|| err(TJ, "no \"model\""))?;
    let kind = model.get("type").and_then(Json::as_str).unwrap_or("");
    if kind != "BPE" {
        return Err(err(
            TJ,
            format!("model type {kind:?} is not supported (byte-level BPE only)"),
        ));
    }
    let vocab = model
        .get("vocab")
        .and_then(Json::as_object)
        .ok_or_else(|| err(TJ, "model.vocab is missing"))?;
    let mut by_id: HashMap<u64, &str> = HashMap::new();
    for (text, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| err(TJ, format!("vocab id of {text:?} is not an integer")))?;
        by_id.insert(id, text);
    }
    // Added tokens: (content, special) by id.
    let mut added: HashMap<u64, (&str, bool)> = HashMap::new();
    for a in tok
        .get("added_tokens")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let (Some(id), Some(content)) = (
            a.get("id").and_then(Json::as_u64),
            a.get("content").and_then(Json::as_str),
        ) else {
            return Err(err(TJ, format!("added token {a} has no id or content")));
        };
        let special = a.get("special").and_then(Json::as_bool).unwrap_or(false);
        added.insert(id, (content, special));
        by_id.insert(id, content);
    }
    if let Some(max) = by_id.keys().max() {
        if *max >= u64::from(n_vocab) {
            return Err(err(
                TJ,
                format!("token id {max} is outside the model's vocab_size {n_vocab}"),
            ));
        }
    }
    let mut tokens = Vec::with_capacity(n_vocab as usize);
    let mut types = Vec::with_capacity(n_vocab as usize);
    for i in 0..u64::from(n_vocab) {
        match (by_id.get(&i), added.get(&i)) {
            (_, Some(&(content, special))) => {
                let looks_special = content.starts_with("<|") && content.ends_with("|>");
                tokens.push(Value::String(content.to_owned()));
                types.push(Value::I32(if special || looks_special {
                    CONTROL
                } else {
                    USER_DEFINED
                }));
            }
            (Some(text), None) => {
                tokens.push(Value::String((*text).to_owned()));
                types.push(Value::I32(NORMAL));
            }
            (None, None) => {
                tokens.push(Value::String(format!("[PAD{i}]")));
                types.push(Value::I32(UNUSED));
            }
        }
    }
    let merges: Vec<Value> = match model.get("merges").and_then(Json::as_array) {
        None => Vec::new(),
        Some(ms) => ms
            .iter()
            .map(|m| match m {
                Json::String(s) => Ok(Value::String(s.clone())),
                // The newer pair form; spaces inside a part become the byte-level 'Ġ'.
                Json::Array(pair) if pair.len() == 2 => {
                    let part =
                        |p: &Json| -> Option<String> { Some(p.as_str()?.replace(' ', "\u{120}")) };
                    match (part(&pair[0]), part(&pair[1])) {
                        (Some(a), Some(b)) => Ok(Value::String(format!("{a} {b}"))),
                        _ => Err(err(TJ, format!("bad merge {m}"))),
                    }
                }
                _ => Err(err(TJ, format!("bad merge {m}"))),
            })
            .collect::<Result<_, _>>()?,
    };
    let pre = tok
        .get("pre_tokenizer")
        .and_then(pre_tokenizer_name)
        .ok_or_else(|| {
            err(
                TJ,
                format!(
                    "pre_tokenizer {} is not one convert recognizes (GPT-2, SmolLM, Llama 3, Qwen2)",
                    tok.get("pre_tokenizer").unwrap_or(&Json::Null)
                ),
            )
        })?;

    let mut m: Vec<(String, Value)> = vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens)),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
    ];
    if !merges.is_empty() {
        m.push(("tokenizer.ggml.merges".into(), Value::Array(merges)));
    }

    let cfg: Json = match files.config {
        Some(t) => serde_json::from_str(t)
            .map_err(|e| err("tokenizer_config.json", format!("not valid JSON: {e}")))?,
        None => Json::Null,
    };
    // Special tokens: tokenizer_config.json names them (looked up among the added tokens);
    // config.json's `*_token_id` fills the rest.
    let mut add_flags: Vec<(String, Value)> = Vec::new();
    for typ in ["bos", "eos", "unk", "sep", "pad"] {
        let from_cfg = cfg
            .get(format!("{typ}_token"))
            .and_then(token_content)
            .and_then(|c| {
                added
                    .iter()
                    .filter(|(_, (content, _))| *content == c)
                    .map(|(id, _)| *id)
                    .min()
            });
        let id = from_cfg.or_else(|| {
            model_config
                .get(format!("{typ}_token_id"))
                .and_then(Json::as_u64)
        });
        if let Some(id) = id.filter(|&id| id < u64::from(n_vocab)) {
            let key = if typ == "unk" {
                "tokenizer.ggml.unknown_token_id".to_string()
            } else if typ == "pad" {
                "tokenizer.ggml.padding_token_id".to_string()
            } else {
                format!("tokenizer.ggml.{typ}_token_id")
            };
            m.push((key, Value::U32(id as u32)));
        }
    }
    // Whether BOS/EOS are added: the post-processor decides, tokenizer_config.json otherwise.
    let mut add: HashMap<&str, bool> = HashMap::new();
    if let Some(pp) = tok.get("post_processor").filter(|p| !p.is_null()) {
        let procs: Vec<&Json> = match pp.get("processors").and_then(Json::as_array) {
            Some(a) => a.iter().collect(),
            None => vec![pp],
        };
        for p in procs {
            match p.get("type").and_then(Json::as_str) {
                Some("ByteLevel") => {
                    add.entry("bos").or_insert(false);
                    add.entry("eos").or_insert(false);
                }
                Some("TemplateProcessing") => {
                    let single = p.get("single").and_then(Json::as_array);
                    let special = |t: Option<&Json>| {
                        t.and_then(|t| t.get("SpecialToken"))
                            .and_then(|s| s.get("id"))
                            .and_then(Json::as_str)
                            .map(str::to_owned)
                    };
                    if let Some(single) = single.filter(|s| s.len() > 1) {
                        let bos = cfg.get("bos_token").and_then(token_content);
                        let eos = cfg.get("eos_token").and_then(token_content);
                        if let Some(first) = special(single.first()) {
                            add.insert("bos", Some(first.as_str()) == bos);
                        }
                        if let Some(last) = special(single.last()) {
                            add.insert("eos", Some(last.as_str()) == eos);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for typ in ["bos", "eos"] {
        if let Some(b) = cfg.get(format!("add_{typ}_token")).and_then(Json::as_bool) {
            add.entry(typ).or_insert(b);
        }
        if let Some(&b) = add.get(typ) {
            add_flags.push((format!("tokenizer.ggml.add_{typ}_token"), Value::Bool(b)));
        }
    }
    m.extend(add_flags);
    let template = match cfg.get("chat_template") {
        Some(Json::String(s)) => Some(s.clone()),
        // A list of named templates: the default one.
        Some(Json::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(Json::as_str)
            .map(str::to_owned),
        _ => files.chat_template.map(str::to_owned),
    };
    if let Some(t) = template {
        m.push(("tokenizer.chat_template".into(), Value::String(t)));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_the_common_pre_tokenizers() {
        let smollm: Json = serde_json::from_str(
            r#"{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},
                {"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}]}"#,
        )
        .unwrap();
        assert_eq!(pre_tokenizer_name(&smollm), Some("smollm"));
        let qwen: Json = serde_json::json!({"type":"Sequence","pretokenizers":[
            {"type":"Split","pattern":{"Regex":"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},
            {"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}]});
        assert_eq!(pre_tokenizer_name(&qwen), Some("qwen2"));
        let llama3: Json = serde_json::json!({"type":"Sequence","pretokenizers":[
            {"type":"Split","pattern":{"Regex":"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},
            {"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]});
        assert_eq!(pre_tokenizer_name(&llama3), Some("llama-bpe"));
        assert_eq!(
            pre_tokenizer_name(&serde_json::json!({"type":"Whitespace"})),
            None
        );
    }

    #[test]
    fn builds_tokens_types_merges_and_special_ids() {
        let tj = r#"{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]]},
            "added_tokens":[{"id":3,"content":"<|im_end|>","special":true}],
            "pre_tokenizer":{"type":"ByteLevel","use_regex":true},
            "post_processor":{"type":"ByteLevel"}}"#;
        let cfg = r#"{"eos_token":"<|im_end|>","chat_template":"{{ messages }}"}"#;
        let files = TokenizerFiles {
            tokenizer: tj,
            config: Some(cfg),
            chat_template: None,
        };
        let m = metadata(&files, &serde_json::json!({"bos_token_id": 0}), 5).unwrap();
        let get = |k: &str| m.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let tokens = get("tokenizer.ggml.tokens").unwrap();
        assert_eq!(
            tokens.as_array().unwrap()[4],
            Value::String("[PAD4]".into())
        );
        let types = get("tokenizer.ggml.token_type").unwrap();
        assert_eq!(types.as_array().unwrap()[3], Value::I32(CONTROL));
        assert_eq!(
            get("tokenizer.ggml.merges").unwrap().as_array().unwrap()[0],
            Value::String("a b".into())
        );
        assert_eq!(get("tokenizer.ggml.eos_token_id"), Some(Value::U32(3)));
        assert_eq!(get("tokenizer.ggml.bos_token_id"), Some(Value::U32(0)));
        assert_eq!(
            get("tokenizer.ggml.add_bos_token"),
            Some(Value::Bool(false))
        );
        assert_eq!(
            get("tokenizer.ggml.pre"),
            Some(Value::String("gpt-2".into()))
        );
        assert!(get("tokenizer.chat_template").is_some());
    }
}
