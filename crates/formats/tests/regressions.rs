//! Regression tests for what fuzzing found, and the fuzz targets' code paths run over the seed
//! corpus and hand-made hostile files, so that `cargo test` keeps them honest without a fuzzer.
//!
//! The harness is `fuzz/src/lib.rs`, included here as a module: these tests call the same
//! `parse` and `load` functions the `gguf_parse` and `gguf_load` targets call. See
//! `fuzz/README.md` for how to run the fuzzer itself.
//!
//! A file must never make the reader allocate much more than it holds, so this test binary
//! counts the largest single allocation each test thread makes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sparetire_formats::gguf::{GgufFile, GgufWriter, Value};
use sparetire_formats::FormatError;
use sparetire_quant::GgmlType;

#[path = "../../../fuzz/src/lib.rs"]
mod harness;

use harness::seeds;

/// The global allocator of this test binary: the system's, recording per thread the largest
/// single allocation requested.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: allocations during thread teardown must not panic.
    let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
}

// SAFETY: every method forwards to `System` with the same arguments; recording a size neither
// allocates nor touches the memory.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (every allocation goes through it) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as for `dealloc`; `new_size` is the caller's, under `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// The largest single allocation `f` makes on this thread.
fn largest_allocation(f: impl FnOnce()) -> usize {
    LARGEST.with(|m| m.set(0));
    f();
    LARGEST.with(Cell::get)
}

fn tiny_llama() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/tiny-llama.gguf"
    );
    std::fs::read(path).expect("tests/data/tiny-llama.gguf")
}

/// The `gguf_load` seed with a SentencePiece vocabulary, split into text and image.
fn spm_seed() -> Vec<u8> {
    let seeds = seeds::load_seeds();
    let (_, input) = seeds.iter().find(|(n, _)| *n == "spm").expect("spm seed");
    harness::split_load_input(input).1.to_vec()
}

/// Runs `bytes` through the reader, asserting that no allocation exceeds `limit` bytes.
fn parse_within(bytes: Vec<u8>, limit: usize) -> Result<GgufFile, FormatError> {
    let mut result = None;
    let largest = largest_allocation(|| result = Some(GgufFile::from_vec(bytes)));
    assert!(
        largest <= limit,
        "a {largest}-byte allocation (limit {limit})"
    );
    result.expect("ran")
}

/// Overwrites the little-endian u32 value of metadata key `key` in a GGUF image.
fn set_u32(image: &mut [u8], key: &str, value: u32) {
    let mut pat = (key.len() as u64).to_le_bytes().to_vec();
    pat.extend_from_slice(key.as_bytes());
    pat.extend_from_slice(&4u32.to_le_bytes()); // type uint32
    let at = image
        .windows(pat.len())
        .position(|w| w == pat)
        .unwrap_or_else(|| panic!("{key} is not a uint32 key of the image"))
        + pat.len();
    image[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

// --- The seed corpus, through both targets' code -------------------------------------------

#[test]
fn parse_seeds_parse_and_walk() {
    let mut all = seeds::parse_seeds();
    all.push(("tiny-llama", tiny_llama()));
    for (name, bytes) in all {
        assert!(
            harness::parse(&bytes).is_some(),
            "seed {name} does not parse"
        );
    }
}

#[test]
fn load_seeds_reach_the_tokenizer_and_the_model() {
    let mut all = seeds::load_seeds();
    all.push((
        "tiny-llama",
        harness::join_load_input("Hello <|im_start|>world 123", &tiny_llama()),
    ));
    for (name, input) in all {
        let reached = harness::load(&input);
        let all_stages = harness::Reached {
            parsed: true,
            tokenized: true,
            loaded: true,
        };
        assert_eq!(reached, all_stages, "seed {name}");
        // The parse target must accept the image too.
        assert!(harness::parse(harness::split_load_input(&input).1).is_some());
    }
}

/// A few thousand deterministic mutations of the seeds: byte flips, overwritten little-endian
/// integers (counts, lengths, ids) and truncations, through both targets' code.
#[test]
fn mutated_seeds_never_panic() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let interesting = [
        0u64,
        1,
        2,
        255,
        0xffff,
        1 << 24,
        1 << 31,
        u32::MAX as u64,
        1 << 40,
        u64::MAX,
    ];
    let mut inputs: Vec<(bool, Vec<u8>)> = seeds::parse_seeds()
        .into_iter()
        .map(|(_, b)| (false, b))
        .collect();
    inputs.extend(seeds::load_seeds().into_iter().map(|(_, b)| (true, b)));
    for (is_load, seed) in inputs {
        // Mutations land in the header, where they matter; tensor data is arbitrary anyway.
        let (prefix, image) = if is_load {
            let image = harness::split_load_input(&seed).1;
            (seed.len() - image.len(), image)
        } else {
            (0, &seed[..])
        };
        let data_offset =
            GgufFile::from_vec(image.to_vec()).map_or(image.len() as u64, |f| f.data_offset());
        let header_len = (prefix + data_offset as usize).clamp(1, seed.len());
        for _ in 0..150 {
            let mut b = seed.clone();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % header_len.min(b.len());
                match next() % 3 {
                    0 => b[at] ^= 1 << (next() % 8),
                    1 => {
                        let v = interesting[(next() as usize) % interesting.len()].to_le_bytes();
                        let n = [1, 2, 4, 8][(next() % 4) as usize].min(b.len() - at);
                        b[at..at + n].copy_from_slice(&v[..n]);
                    }
                    _ => b.truncate(at.max(1)),
                }
            }
            let limit = 64 * b.len() + (1 << 20);
            let largest = largest_allocation(|| {
                if is_load {
                    harness::load(&b);
                } else {
                    harness::parse(&b);
                }
            });
            assert!(
                largest <= limit,
                "a {largest}-byte allocation from a {}-byte input",
                b.len()
            );
        }
    }
}

// --- Hand-made hostile files --------------------------------------------------------------

/// An array whose count fits the file, but whose first element is invalid: nothing may be
/// allocated for the claimed count before elements actually parse.
#[test]
fn array_count_does_not_preallocate() {
    let n = 1 << 20;
    for (elem_ty, first_bad) in [(7u32, vec![9u8]), (8, u64::MAX.to_le_bytes().to_vec())] {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes()); // tensors
        b.extend_from_slice(&1u64.to_le_bytes()); // metadata
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(b'a');
        b.extend_from_slice(&9u32.to_le_bytes()); // array
        b.extend_from_slice(&elem_ty.to_le_bytes());
        b.extend_from_slice(&(n as u64 / 16).to_le_bytes());
        b.extend_from_slice(&first_bad);
        b.resize(n, 0);
        // A `Value` is 32 bytes: preallocating the claimed count took 2 MiB here.
        let e = parse_within(b, 512 << 10).unwrap_err();
        assert!(
            matches!(
                e,
                FormatError::BadKey { .. } | FormatError::Truncated { .. }
            ),
            "{e}"
        );
    }
}

/// Metadata and tensor counts that fit the file but are not backed by entries.
#[test]
fn header_counts_do_not_preallocate() {
    let n = 1 << 20;
    for (n_tensors, n_kv) in [(0u64, n as u64 / 16), (n as u64 / 64, 0)] {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&n_tensors.to_le_bytes());
        b.extend_from_slice(&n_kv.to_le_bytes());
        b.extend_from_slice(&u64::MAX.to_le_bytes()); // first key's (or name's) length
        b.resize(n, 0);
        let e = parse_within(b, 512 << 10).unwrap_err();
        assert!(matches!(e, FormatError::Truncated { .. }), "{e}");
    }
}

/// Found by fuzzing `gguf_load` (libFuzzer: `out-of-memory (malloc(8321499136))` in
/// `sparetire_models::load`): `llama.block_count` was accepted up to 2^24 and the loader
/// reserved room for that many blocks before finding the first one missing. The count is now
/// checked against the tensors the file has.
#[test]
fn huge_block_count_does_not_preallocate_layers() {
    for n_layer in [3, 1000, 1 << 24] {
        let mut image = spm_seed();
        set_u32(&mut image, "llama.block_count", n_layer);
        let file = std::sync::Arc::new(GgufFile::from_vec(image).unwrap());
        let mut result = None;
        let largest = largest_allocation(|| result = Some(sparetire_models::load(file)));
        let e = result.unwrap().err().expect("the seed has 2 layers");
        assert!(
            e.to_string().contains("blk.2.") || e.to_string().contains("block_count"),
            "{e}"
        );
        assert!(largest < 1 << 20, "a {largest}-byte allocation");
    }
}

#[test]
fn hostile_hyperparameters_are_errors() {
    let cases: &[(&str, u32)] = &[
        ("llama.block_count", 0),
        ("llama.block_count", u32::MAX),
        ("llama.embedding_length", 0),
        ("llama.embedding_length", 1 << 24),
        ("llama.feed_forward_length", u32::MAX),
        ("llama.attention.head_count", 0),
        ("llama.attention.head_count", 1 << 24),
        ("llama.attention.head_count_kv", 0),
        ("llama.attention.head_count_kv", 3),
        ("llama.context_length", 0),
    ];
    for &(key, value) in cases {
        let mut image = spm_seed();
        set_u32(&mut image, key, value);
        let input = harness::join_load_input("hi", &image);
        let reached = harness::load(&input);
        assert!(
            reached.parsed && reached.tokenized && !reached.loaded,
            "{key} = {value}"
        );
    }
}

#[test]
fn hostile_tokenizer_metadata_is_handled() {
    let vocab: Vec<Value> = ["<unk>", "<s>", "</s>", "a", "▁a", ""]
        .iter()
        .map(|t| Value::String((*t).into()))
        .collect();
    let cases: Vec<(&str, Value)> = vec![
        ("tokenizer.ggml.bos_token_id", Value::U64(u64::MAX)),
        ("tokenizer.ggml.eos_token_id", Value::I32(-1)),
        ("tokenizer.ggml.unknown_token_id", Value::U32(1 << 30)),
        (
            "tokenizer.ggml.scores",
            Value::Array(vec![Value::F32(f32::NAN); 6]),
        ),
        ("tokenizer.ggml.scores", Value::Array(vec![Value::F32(1.0)])),
        ("tokenizer.ggml.scores", Value::String("x".into())),
        (
            "tokenizer.ggml.token_type",
            Value::Array(vec![Value::I64(i64::MIN); 6]),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(vec![Value::I32(3); 6]),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(vec![Value::U64(u64::MAX); 6]),
        ),
        ("tokenizer.ggml.add_bos_token", Value::U8(1)),
    ];
    for (key, value) in cases {
        for model in ["llama", "gpt2"] {
            let mut w = GgufWriter::new();
            w.add("tokenizer.ggml.model", Value::String(model.into()))
                .add("tokenizer.ggml.tokens", Value::Array(vocab.clone()))
                .add(
                    "tokenizer.ggml.merges",
                    Value::Array(vec![
                        Value::String(" ".into()),
                        Value::String("a a a".into()),
                    ]),
                )
                .add("tokenizer.ggml.add_eos_token", Value::Bool(true))
                .add(key, value.clone());
            let input = harness::join_load_input("a a <s></s> ▁a\u{0}", &w.to_bytes());
            assert!(harness::load(&input).parsed, "{model}: {key}");
        }
    }
}

#[test]
fn tensor_of_every_type_dequantizes_from_garbage() {
    let mut w = GgufWriter::new();
    for ty in [
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
    ] {
        let bytes = ty.row_bytes(256).unwrap();
        w.tensor(ty.name(), ty, &[256], vec![0xff; bytes]);
    }
    assert!(harness::parse(&w.to_bytes()).is_some());
}
