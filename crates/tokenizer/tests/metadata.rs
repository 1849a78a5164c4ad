//! Tokenizers built from small synthetic GGUF files: defaults, fix-ups, and malformed metadata
//! (which must give errors, never panics).

use sparetire_formats::gguf::{GgufFile, GgufWriter, Value};
use sparetire_tokenizer::{Tokenizer, TokenizerError};

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
}

fn load(keys: Vec<(&str, Value)>) -> Result<Tokenizer, TokenizerError> {
    let mut w = GgufWriter::new();
    for (k, v) in keys {
        w.add(k, v);
    }
    let f = GgufFile::from_vec(w.to_bytes()).expect("valid GGUF");
    Tokenizer::from_gguf(&f)
}

/// A tiny byte-level BPE vocabulary: "a", "b", "ab", "Ġ", "Ġab", and a control token.
fn tiny_bpe(pre: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String(pre.into())),
        (
            "tokenizer.ggml.tokens",
            strings(&["a", "b", "ab", "Ġ", "Ġab", "<|im_end|>", "Ċ"]),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array([1, 1, 1, 1, 1, 3, 1].map(Value::I32).to_vec()),
        ),
        ("tokenizer.ggml.merges", strings(&["a b", "Ġ ab"])),
    ]
}

#[test]
fn tiny_bpe_merges_by_rank() {
    let tok = load(tiny_bpe("gpt-2")).expect("loads");
    assert_eq!(tok.encode("ab ab", false, false).expect("encode"), [2, 4]);
    assert_eq!(
        tok.encode("ab<|im_end|>", false, true).expect("encode"),
        [2, 5]
    );
    assert_eq!(tok.decode(&[2, 4, 5]), "ab ab");
    // gpt2 vocabularies without BOS/EOS keys default to id 11, out of range here: none.
    assert_eq!(tok.bos(), None);
    assert!(tok.is_eog(5), "<|im_end|> ends generation");
    // A byte with no token is dropped, as llama.cpp drops it.
    assert_eq!(
        tok.encode("c", false, false).expect("encode"),
        Vec::<u32>::new()
    );
}

#[test]
fn unknown_pre_tokenizer_is_named() {
    let err = load(tiny_bpe("klingon")).expect_err("unknown pre");
    let msg = err.to_string();
    assert!(msg.contains("klingon") && msg.contains("smollm"), "{msg}");
}

#[test]
fn malformed_metadata_gives_errors() {
    let cases: Vec<Vec<(&str, Value)>> = vec![
        vec![],
        vec![("tokenizer.ggml.model", Value::String("bert".into()))],
        vec![("tokenizer.ggml.model", Value::String("llama".into()))],
        vec![
            ("tokenizer.ggml.model", Value::String("llama".into())),
            ("tokenizer.ggml.tokens", Value::Array(vec![Value::U32(1)])),
        ],
        vec![
            ("tokenizer.ggml.model", Value::String("llama".into())),
            ("tokenizer.ggml.tokens", strings(&["a", "b"])),
            ("tokenizer.ggml.scores", Value::Array(vec![Value::F32(0.0)])),
        ],
        vec![
            ("tokenizer.ggml.model", Value::String("llama".into())),
            ("tokenizer.ggml.tokens", strings(&[])),
        ],
        vec![
            ("tokenizer.ggml.model", Value::String("gpt2".into())),
            ("tokenizer.ggml.tokens", strings(&["a"])),
        ],
    ];
    for keys in cases {
        let desc = format!("{keys:?}");
        assert!(load(keys).is_err(), "{desc}");
    }
}

#[test]
fn odd_but_valid_metadata_does_not_panic() {
    // SentencePiece vocabulary without byte tokens, with out-of-range special ids, odd token
    // types, an empty token and a BOS it is told to add but cannot.
    let tok = load(vec![
        ("tokenizer.ggml.model", Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens",
            strings(&["▁a", "", "<0xZZ>", "▁", "a"]),
        ),
        (
            "tokenizer.ggml.scores",
            Value::Array([0.0, 1.0, f32::NAN, -1.0, 2.0].map(Value::F32).to_vec()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array([1, 9, 6, -4, 1].map(Value::I32).to_vec()),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(99)),
        ("tokenizer.ggml.eos_token_id", Value::I32(-1)),
    ])
    .expect("loads");
    assert_eq!(tok.bos(), Some(1), "out-of-range BOS keeps the default");
    assert_eq!(tok.encode("a a", false, false).expect("encode"), [0, 0]);
    assert_eq!(tok.token_to_piece(2), [0]);
    assert_eq!(tok.token_text(1), Some("[EMPTY_1]"));
    for id in [0, 1, 2, 3, 4, 5, u32::MAX] {
        let _ = tok.token_to_piece_special(id, true);
    }
    let _ = tok.encode("zzz ✓ 😀", true, true).expect("encode");
}
