//! llama.cpp's own tokenizer tests (`models/ggml-vocab-*.gguf` with `.inp`/`.out`, as its
//! `test-tokenizer-0` reads them) for pre-tokenizers our two models do not cover (Llama 3, Qwen2,
//! DeepSeek, GPT-2, StarCoder, …).
//!
//! The vocab files are ~40 MB and live in the reference checkout, not in this repository, so the
//! test is `#[ignore]`d: run it with
//! `SPARETIRE_LLAMA_CPP=/path/to/llama.cpp cargo test -p sparetire-tokenizer --release -- --ignored`.

use std::path::{Path, PathBuf};

use sparetire_formats::gguf::GgufFile;
use sparetire_tokenizer::Tokenizer;

const VOCABS: &[&str] = &[
    "gpt-2",
    "llama-bpe",
    "qwen2",
    "deepseek-llm",
    "starcoder",
    "refact",
    "command-r",
    "mpt",
    "llama-spm",
    "phi-3",
];

fn run(dir: &Path, name: &str) -> Result<usize, String> {
    let base = dir.join("models").join(format!("ggml-vocab-{name}.gguf"));
    let f = GgufFile::open(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    let tok = Tokenizer::from_gguf(&f).map_err(|e| format!("{name}: {e}"))?;
    let read = |ext: &str| {
        let p = base.with_extension(format!("gguf.{ext}"));
        std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let (inp, out) = (read("inp")?, read("out")?);
    // As test-tokenizer-0 splits it: a separator at the very end starts no test.
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    if texts.last() == Some(&"") {
        texts.pop();
    }
    let expected: Vec<Vec<u32>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| t.parse().unwrap_or(u32::MAX))
                .collect()
        })
        .collect();
    if texts.len() != expected.len() {
        return Err(format!(
            "{name}: {} inputs, {} outputs",
            texts.len(),
            expected.len()
        ));
    }
    let mut cases: Vec<(String, bool, bool, Vec<u32>)> = texts
        .iter()
        .zip(expected)
        .map(|(t, ids)| (t.to_string(), false, false, ids))
        .collect();
    // Our corpus, run through llama.cpp itself by scripts/gen_tokenizer_goldens.py.
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../../tests/golden/tokenizer/ggml-vocab-{name}.json"
    ));
    if let Ok(json) = std::fs::read_to_string(&golden) {
        let json: serde_json::Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        for c in json.as_array().into_iter().flatten() {
            let ids = c["ids"].as_array().into_iter().flatten();
            cases.push((
                c["text"].as_str().unwrap_or_default().to_string(),
                c["add_special"].as_bool().unwrap_or_default(),
                c["parse_special"].as_bool().unwrap_or_default(),
                ids.map(|x| x.as_u64().unwrap_or(u64::MAX) as u32).collect(),
            ));
        }
    }
    let mut bad = Vec::new();
    for (text, add_special, parse_special, want) in &cases {
        let got = tok
            .encode(text, *add_special, *parse_special)
            .map_err(|e| e.to_string())?;
        if &got != want {
            bad.push(format!(
                "{name} {text:?} {add_special} {parse_special}\n  want {want:?}\n  got  {got:?}"
            ));
        }
    }
    if bad.is_empty() {
        Ok(cases.len())
    } else {
        Err(bad.join("\n"))
    }
}

#[test]
#[ignore = "needs a llama.cpp checkout: set SPARETIRE_LLAMA_CPP"]
fn llama_cpp_vocab_tests() {
    let dir = PathBuf::from(
        std::env::var_os("SPARETIRE_LLAMA_CPP")
            .expect("set SPARETIRE_LLAMA_CPP to a llama.cpp checkout"),
    );
    let mut failures = Vec::new();
    for name in VOCABS {
        match run(&dir, name) {
            Ok(n) => eprintln!("{name}: {n} cases match"),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
