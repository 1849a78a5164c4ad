//! What the fuzz targets run, and the seed files they start from.
//!
//! This file is also compiled into `crates/formats/tests/regressions.rs` (as a module, through
//! `#[path]`), so the regression tests drive exactly the code paths the fuzzer drove. Keep it
//! free of crate-level attributes and of anything that needs libFuzzer.
//!
//! - [`parse`]: `GgufFile::from_vec`, then every accessor over every key and tensor, and a
//!   dequantization of every tensor's rows (the quant kernels read file-controlled bytes).
//! - [`load`]: a fuzz input is `[text length][text][GGUF image]`; the image is parsed, the
//!   tokenizer built from it encodes the text, and the model is loaded (no forward pass).
//! - [`seeds`]: small valid files built with `GgufWriter` for both targets.

use std::sync::Arc;

use sparetire_formats::gguf::{GgufFile, Value};

/// Largest tensor (in elements) [`parse`] dequantizes; bigger ones only cost time.
const MAX_DEQUANT_ELEMENTS: u64 = 1 << 16;

/// Parses `data` as a GGUF image and walks everything the file handle offers. Returns the
/// file when it parsed. Panics only if the reader breaks one of its own promises.
pub fn parse(data: &[u8]) -> Option<GgufFile> {
    let file = match GgufFile::from_vec(data.to_vec()) {
        Ok(f) => f,
        Err(e) => {
            // Error messages quote file contents; rendering them must not panic either.
            assert!(!e.to_string().is_empty());
            return None;
        }
    };
    walk(&file);
    Some(file)
}

/// Every accessor of a parsed file, with the invariants the reader promises.
pub fn walk(file: &GgufFile) {
    assert!(matches!(file.version(), 2 | 3));
    assert!(file.alignment().is_power_of_two());
    assert_eq!(file.data_offset() % file.alignment(), 0);
    let _ = format!("{file:?}");

    for (key, value) in file.metadata() {
        let got = file.get(key).expect("every metadata key can be looked up");
        assert!(
            std::ptr::eq(got, value),
            "duplicate key {key:?} survived parsing"
        );
        walk_value(value);
        let _ = file.get_str(key);
        let _ = file.get_u64(key);
        let _ = file.get_f32(key);
        let _ = file.get_bool(key);
        if let Some(items) = file.get_array(key) {
            if let Some(strs) = file.get_str_array(key) {
                assert_eq!(strs.len(), items.len());
            }
            if let Some(fs) = file.get_f32_array(key) {
                assert_eq!(fs.len(), items.len());
            }
            if let Some(is) = file.get_i64_array(key) {
                assert_eq!(is.len(), items.len());
            }
        }
    }

    for info in file.tensors() {
        let by_name = file
            .tensor(&info.name)
            .expect("every tensor can be looked up");
        assert!(
            std::ptr::eq(by_name, info),
            "duplicate tensor {:?} survived parsing",
            info.name
        );
        let data = file.tensor_data(info);
        assert_eq!(data.len() as u64, info.n_bytes);
        let (_, named) = file
            .tensor_data_by_name(&info.name)
            .expect("tensor by name");
        assert_eq!(named.as_ptr(), data.as_ptr());
        assert_eq!(
            file.data_span(info.offset, info.n_bytes).map(<[u8]>::len),
            Some(data.len())
        );
        let n = info.n_elements();
        let block = info.ty.block_size() as u64;
        assert_eq!(n % block, 0);
        assert_eq!(n / block * info.ty.type_size() as u64, info.n_bytes);
        let (rows, cols) = info.rows_cols();
        assert_eq!(rows as u64 * cols as u64, n);
        if n <= MAX_DEQUANT_ELEMENTS {
            dequantize(info.ty, data, rows, cols);
        }
    }
    let _ = file.data_span(u64::MAX, 1);
    let _ = file.tensor_data_by_name("no such tensor");
}

fn walk_value(v: &Value) {
    let _ = (v.as_u64(), v.as_i64(), v.as_f64(), v.as_bool(), v.as_str());
    let _ = (v.type_name(), v.to_string(), v.to_json());
    if let Some(items) = v.as_array() {
        items.iter().for_each(walk_value);
    }
}

fn dequantize(ty: sparetire_quant::GgmlType, data: &[u8], rows: usize, cols: usize) {
    let row_bytes = ty.row_bytes(cols).expect("row length was validated");
    let mut out = vec![0f32; cols];
    for row in data.chunks_exact(row_bytes).take(rows) {
        sparetire_quant::dequantize_row(ty, row, &mut out).expect("dequantize a validated row");
    }
}

/// Splits a `gguf_load` input into the text to tokenize and the GGUF image: the first byte is
/// the text's length (its bytes are read as lossy UTF-8), the rest is the file.
pub fn split_load_input(data: &[u8]) -> (String, &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return (String::new(), data);
    };
    let n = (n as usize).min(rest.len());
    let (text, image) = rest.split_at(n);
    (String::from_utf8_lossy(text).into_owned(), image)
}

/// Builds a `gguf_load` input from its parts (for seeds and regression tests).
pub fn join_load_input(text: &str, image: &[u8]) -> Vec<u8> {
    let text = &text.as_bytes()[..text.len().min(255)];
    let mut out = Vec::with_capacity(1 + text.len() + image.len());
    out.push(text.len() as u8);
    out.extend_from_slice(text);
    out.extend_from_slice(image);
    out
}

/// What [`load`] got through, for tests that want to know a path was reached.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reached {
    /// The image parsed.
    pub parsed: bool,
    /// A tokenizer was built and the text encoded.
    pub tokenized: bool,
    /// A model was loaded.
    pub loaded: bool,
}

/// Parses a `gguf_load` input, builds the tokenizer and encodes its text, then loads the model.
pub fn load(data: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let (text, image) = split_load_input(data);
    let Ok(file) = GgufFile::from_vec(image.to_vec()) else {
        return reached;
    };
    reached.parsed = true;
    let file = Arc::new(file);

    match sparetire_tokenizer::Tokenizer::from_gguf(&file) {
        Ok(tok) => {
            let n_vocab = tok.n_vocab();
            for (add_special, parse_special) in [(true, true), (false, false)] {
                let Ok(ids) = tok.encode(&text, add_special, parse_special) else {
                    continue;
                };
                reached.tokenized = true;
                assert!(
                    ids.iter().all(|&id| (id as usize) < n_vocab),
                    "id out of range"
                );
                let _ = tok.decode(&ids);
                for &id in &ids {
                    let _ = tok.token_to_piece_special(id, true);
                }
            }
            for id in [tok.bos(), tok.eos(), tok.eot(), tok.pad()]
                .into_iter()
                .flatten()
            {
                assert!((id as usize) < n_vocab);
                let _ = (
                    tok.token_to_piece_special(id, true),
                    tok.is_eog(id),
                    tok.is_control(id),
                );
            }
            let _ = tok.token_to_piece(u32::MAX);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }

    match sparetire_models::load(file) {
        Ok(model) => {
            reached.loaded = true;
            let hp = model.hparams();
            assert!(hp.n_vocab > 0 && hp.n_layer > 0 && hp.n_embd > 0);
            // A small cache only: its size is the caller's choice times the file's dimensions.
            let _ = model.new_state(4, sparetire_models::KvTypes::F16);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    reached
}

/// Small valid files to start fuzzing from.
pub mod seeds {
    use sparetire_formats::gguf::{GgufWriter, Value};
    use sparetire_quant::GgmlType;

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    fn strs(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|t| s(t)).collect())
    }

    /// Files that exercise the reader: every value type, nesting, every tensor type.
    pub fn parse_seeds() -> Vec<(&'static str, Vec<u8>)> {
        let mut out = vec![("empty", GgufWriter::new().to_bytes())];

        let mut w = GgufWriter::new();
        w.add("u8", Value::U8(1))
            .add("i8", Value::I8(-1))
            .add("u16", Value::U16(2))
            .add("i16", Value::I16(-2))
            .add("u32", Value::U32(3))
            .add("i32", Value::I32(-3))
            .add("u64", Value::U64(4))
            .add("i64", Value::I64(-4))
            .add("f32", Value::F32(0.5))
            .add("f64", Value::F64(-0.25))
            .add("bool", Value::Bool(true))
            .add("str", s("text \"quoted\"\n"))
            .add("strs", strs(&["a", "", "ü"]))
            .add(
                "nested",
                Value::Array(vec![
                    Value::Array(vec![Value::I16(7)]),
                    Value::Array(vec![]),
                ]),
            );
        out.push(("values", w.to_bytes()));

        let mut w = GgufWriter::new();
        w.add("general.alignment", Value::U32(64));
        for ty in [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::BF16,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q8_0,
            GgmlType::Q8_1,
            GgmlType::Q2_K,
            GgmlType::Q3_K,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
            GgmlType::Q8_K,
        ] {
            let cols = ty.block_size() as u64;
            let bytes = ty.row_bytes(cols as usize).unwrap_or(0) * 2;
            // Nonzero bytes so scales and quants are not all zero.
            let data = (0..bytes).map(|i| (i * 37 % 251) as u8).collect();
            w.tensor(ty.name(), ty, &[cols, 2], data);
        }
        w.tensor("4d", GgmlType::F32, &[1, 2, 1, 2], vec![0; 16]);
        out.push(("tensors", w.to_bytes()));
        out
    }

    /// A tiny `llama` model: hyperparameters and every tensor the loader asks for (F32 and
    /// Q8_0), without a tokenizer.
    fn llama(w: &mut GgufWriter, n_vocab: u64) {
        let (d, ff, n_layer) = (32u64, 64u64, 2u32);
        w.add("general.architecture", s("llama"))
            .add("general.name", s("fuzz seed"))
            .add("llama.block_count", Value::U32(n_layer))
            .add("llama.context_length", Value::U32(64))
            .add("llama.embedding_length", Value::U32(d as u32))
            .add("llama.feed_forward_length", Value::U32(ff as u32))
            .add("llama.attention.head_count", Value::U32(4))
            .add("llama.attention.head_count_kv", Value::U32(2))
            .add("llama.rope.freq_base", Value::F32(10000.0))
            .add("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
        let f32s = |n: u64| vec![0x3cu8; n as usize * 4];
        let q8 = |cols: u64, rows: u64| vec![0x11u8; (cols / 32 * 34 * rows) as usize];
        let kv = d / 4 * 2;
        w.tensor(
            "token_embd.weight",
            GgmlType::Q8_0,
            &[d, n_vocab],
            q8(d, n_vocab),
        );
        for i in 0..n_layer {
            let n = |t: &str| format!("blk.{i}.{t}.weight");
            w.tensor(&n("attn_norm"), GgmlType::F32, &[d], f32s(d))
                .tensor(&n("attn_q"), GgmlType::Q8_0, &[d, d], q8(d, d))
                .tensor(&n("attn_k"), GgmlType::Q8_0, &[d, kv], q8(d, kv))
                .tensor(&n("attn_v"), GgmlType::F32, &[d, kv], f32s(d * kv))
                .tensor(&n("attn_output"), GgmlType::Q8_0, &[d, d], q8(d, d))
                .tensor(&n("ffn_norm"), GgmlType::F32, &[d], f32s(d))
                .tensor(&n("ffn_gate"), GgmlType::Q8_0, &[d, ff], q8(d, ff))
                .tensor(&n("ffn_up"), GgmlType::Q8_0, &[d, ff], q8(d, ff))
                .tensor(&n("ffn_down"), GgmlType::Q8_0, &[ff, d], q8(ff, d));
        }
        w.tensor("output_norm.weight", GgmlType::F32, &[d], f32s(d));
    }

    /// A byte-level BPE vocabulary: the 256 GPT-2 byte characters, a few merged tokens and
    /// special tokens.
    fn bpe(w: &mut GgufWriter, pre: &str) -> u64 {
        let mut tokens: Vec<String> = vec![
            "<|endoftext|>".into(),
            "<|im_start|>".into(),
            "<|im_end|>".into(),
        ];
        let printable = |b: u32| {
            (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
        };
        let mut shifted = 0;
        for b in 0..256u32 {
            let c = if printable(b) {
                b
            } else {
                shifted += 1;
                255 + shifted
            };
            tokens.push(char::from_u32(c).unwrap_or('?').to_string());
        }
        let merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "1 2"];
        for m in merges {
            tokens.push(m.replace(' ', ""));
        }
        let types: Vec<Value> = (0..tokens.len())
            .map(|i| Value::I32(if i < 3 { 3 } else { 1 }))
            .collect();
        let n = tokens.len() as u64;
        w.add("tokenizer.ggml.model", s("gpt2"))
            .add("tokenizer.ggml.pre", s(pre))
            .add(
                "tokenizer.ggml.tokens",
                Value::Array(tokens.into_iter().map(Value::String).collect()),
            )
            .add("tokenizer.ggml.token_type", Value::Array(types))
            .add("tokenizer.ggml.merges", strs(&merges))
            .add("tokenizer.ggml.bos_token_id", Value::U32(1))
            .add("tokenizer.ggml.eos_token_id", Value::U32(2))
            .add(
                "tokenizer.chat_template",
                s("{% for m in messages %}{{ m.content }}{% endfor %}"),
            );
        n
    }

    /// A SentencePiece (`llama`) vocabulary with byte-fallback tokens and scores.
    fn spm(w: &mut GgufWriter) -> u64 {
        let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
        let mut types = vec![2, 3, 3];
        for b in 0..256 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
        }
        for t in [
            "▁",
            "▁t",
            "he",
            "▁the",
            "▁a",
            "in",
            "<start_of_turn>",
            "<end_of_turn>",
        ] {
            tokens.push(t.into());
            types.push(if t.starts_with('<') { 3 } else { 1 });
        }
        let scores: Vec<Value> = (0..tokens.len()).map(|i| Value::F32(-(i as f32))).collect();
        let n = tokens.len() as u64;
        w.add("tokenizer.ggml.model", s("llama"))
            .add(
                "tokenizer.ggml.tokens",
                Value::Array(tokens.into_iter().map(Value::String).collect()),
            )
            .add("tokenizer.ggml.scores", Value::Array(scores))
            .add(
                "tokenizer.ggml.token_type",
                Value::Array(types.into_iter().map(Value::I32).collect()),
            )
            .add("tokenizer.ggml.add_bos_token", Value::Bool(true))
            .add("tokenizer.ggml.add_eos_token", Value::Bool(true))
            .add("tokenizer.ggml.add_space_prefix", Value::Bool(true));
        n
    }

    /// `gguf_load` inputs (text prefix included): models with each tokenizer family.
    pub fn load_seeds() -> Vec<(&'static str, Vec<u8>)> {
        let text = "Hello world, the 1234 <|im_start|>user\n <end_of_turn> ü 🎉\t\r\n  x";
        let mut out = Vec::new();
        for (name, pre) in [
            ("bpe-smollm", "smollm"),
            ("bpe-llama3", "llama-bpe"),
            ("bpe-qwen2", "qwen2"),
            ("bpe-gpt2", "gpt-2"),
            ("bpe-default", "default"),
            ("bpe-deepseek3", "deepseek-v3"),
        ] {
            let mut w = GgufWriter::new();
            let n_vocab = bpe(&mut w, pre);
            llama(&mut w, n_vocab);
            out.push((name, super::join_load_input(text, &w.to_bytes())));
        }
        let mut w = GgufWriter::new();
        let n_vocab = spm(&mut w);
        llama(&mut w, n_vocab);
        out.push(("spm", super::join_load_input(text, &w.to_bytes())));
        out
    }
}
