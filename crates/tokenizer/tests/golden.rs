//! Parity with llama.cpp: token ids (and pieces) for a corpus, from
//! `scripts/gen_tokenizer_goldens.py`, on the real models.

use std::path::PathBuf;

use serde_json::Value;
use sparetire_formats::gguf::GgufFile;
use sparetire_tokenizer::{StreamDecoder, Tokenizer};

/// `${SPARETIRE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/sparetire}/models/NAME.gguf`; a missing
/// model fails the test.
fn model(name: &str) -> Tokenizer {
    let home = std::env::var_os("SPARETIRE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                });
            cache.join("sparetire")
        });
    let path = home.join("models").join(format!("{name}.gguf"));
    assert!(
        path.exists(),
        "model {name} not found at {}: run `.ci/run` or `sparetire pull {name}` first",
        path.display()
    );
    let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    Tokenizer::from_gguf(&f).unwrap_or_else(|e| panic!("loading tokenizer of {name}: {e}"))
}

struct Case {
    text: String,
    add_special: bool,
    parse_special: bool,
    ids: Vec<u32>,
    pieces: Vec<Vec<u8>>,
}

fn goldens(name: &str) -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden/tokenizer")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).expect("golden JSON");
    let nums = |v: &Value| -> Vec<u64> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_u64().expect("number"))
            .collect()
    };
    json.as_array()
        .expect("list of cases")
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().expect("text").to_string(),
            add_special: c["add_special"].as_bool().expect("add_special"),
            parse_special: c["parse_special"].as_bool().expect("parse_special"),
            ids: nums(&c["ids"]).into_iter().map(|x| x as u32).collect(),
            pieces: c["pieces"]
                .as_array()
                .expect("pieces")
                .iter()
                .map(|p| nums(p).into_iter().map(|b| b as u8).collect())
                .collect(),
        })
        .collect()
}

fn check_goldens(name: &str) {
    let tok = model(name);
    let cases = goldens(name);
    assert!(
        cases.len() >= 100,
        "{name}: only {} golden cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for c in &cases {
        let ids = tok
            .encode(&c.text, c.add_special, c.parse_special)
            .expect("encode");
        if ids != c.ids {
            failures.push(format!(
                "{:?} add_special={} parse_special={}\n  want {:?}\n  got  {:?}",
                c.text, c.add_special, c.parse_special, c.ids, ids
            ));
        }
        for (&id, want) in c.ids.iter().zip(&c.pieces) {
            let got = tok.token_to_piece_special(id, true);
            if &got != want {
                failures.push(format!("piece of {id}: want {want:?} got {got:?}"));
            }
        }
    }
    let n_fail = failures.len();
    assert!(
        failures.is_empty(),
        "{name}: {n_fail} mismatches over {} cases:\n{}",
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{name}: {} cases match llama.cpp", cases.len());
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_goldens("smollm2");
}

#[test]
fn gemma3_matches_llama_cpp() {
    check_goldens("gemma3-270m");
}

#[test]
fn smollm2_pieces_round_trip_text() {
    let tok = model("smollm2");
    for c in goldens("smollm2") {
        let ids = tok.encode(&c.text, false, false).expect("encode");
        assert_eq!(tok.decode(&ids), c.text, "decode(encode(text))");
        let mut stream = StreamDecoder::new();
        let mut text: String = ids
            .iter()
            .map(|&id| stream.push(&tok.token_to_piece(id)))
            .collect();
        text.push_str(&stream.flush());
        assert_eq!(text, c.text, "streamed pieces");
    }
}

#[test]
fn smollm2_metadata() {
    let tok = model("smollm2");
    assert_eq!(tok.n_vocab(), 49152);
    assert!(!tok.add_bos());
    let im_end = tok.token_id("<|im_end|>").expect("<|im_end|>");
    let endoftext = tok.token_id("<|endoftext|>").expect("<|endoftext|>");
    assert!(tok.is_eog(im_end) && tok.is_eog(endoftext));
    assert!(!tok.is_eog(tok.token_id("Hello").expect("Hello")));
    assert!(tok.token_to_piece(im_end).is_empty());
    assert_eq!(tok.token_to_piece_special(im_end, true), b"<|im_end|>");
    assert!(tok
        .chat_template()
        .is_some_and(|t| t.contains("<|im_start|>")));
}

#[test]
fn gemma3_metadata() {
    let tok = model("gemma3-270m");
    assert_eq!(tok.n_vocab(), 262144);
    assert!(tok.add_bos());
    assert_eq!(tok.bos(), Some(2));
    assert_eq!(tok.eos(), Some(1));
    let eot = tok.token_id("<end_of_turn>").expect("<end_of_turn>");
    assert!(tok.is_eog(eot) && tok.is_eog(1));
    assert!(tok.chat_template().is_none());
    // Byte-fallback tokens decode to raw bytes.
    let b = tok.token_id("<0xE4>").expect("<0xE4>");
    assert_eq!(tok.token_to_piece(b), [0xE4]);
}

#[test]
fn smollm2_chat_template_from_gguf() {
    use sparetire_tokenizer::{ChatMessage, ChatTemplate};
    let tok = model("smollm2");
    let template = ChatTemplate::new(tok.chat_template().expect("template")).expect("compiles");
    let msgs = [
        ChatMessage::new("system", "You are terse."),
        ChatMessage::new("user", "Hi"),
        ChatMessage::new("assistant", "Hello."),
        ChatMessage::new("user", "2+2?"),
    ];
    let out = template.render(&msgs, true, "", "").expect("render");
    assert_eq!(
        out,
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    // Without a system turn the template supplies its default one.
    let out = template.render(&msgs[1..2], false, "", "").expect("render");
    assert!(
        out.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
        "{out}"
    );
    assert!(out.ends_with("<|im_start|>user\nHi<|im_end|>\n"), "{out}");
    // The rendered prompt tokenizes with its control tokens recognised.
    let ids = tok.encode(&out, false, true).expect("encode");
    let im_start = tok.token_id("<|im_start|>").expect("<|im_start|>");
    assert_eq!(ids.iter().filter(|&&id| id == im_start).count(), 2);
}

/// Arbitrary text never panics and, for byte-level BPE, always decodes back to itself.
#[test]
fn arbitrary_text_round_trips() {
    let smol = model("smollm2");
    let gemma = model("gemma3-270m");
    let alphabet: Vec<char> =
        " \t\n\r\u{0}aZ9'’-_.<|>▁Ġ\u{301}\u{200d}\u{fe0f}é漢字かな한😀👍🏽\u{10ffff}\u{e0d2}"
            .chars()
            .collect();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in 0..400 {
        let text: String = (0..len % 40)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                alphabet[(seed % alphabet.len() as u64) as usize]
            })
            .collect();
        for (add, parse) in [(true, true), (false, false)] {
            let ids = smol.encode(&text, add, parse).expect("smollm2 encode");
            if !parse {
                assert_eq!(smol.decode(&ids), text);
            }
            let ids = gemma.encode(&text, add, parse).expect("gemma encode");
            assert!(ids.iter().all(|&id| (id as usize) < gemma.n_vocab()));
        }
    }
}
