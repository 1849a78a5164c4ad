//! Malformed GGUF files: each gives an error that names the problem, never a panic.

use sparetire_formats::gguf::{GgufFile, GgufWriter, Value};
use sparetire_formats::FormatError;
use sparetire_quant::GgmlType;

fn good() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("llama".into()))
        .add("llama.block_count", Value::U32(1))
        .add(
            "tokenizer.ggml.tokens",
            Value::Array(vec![Value::String("a".into()), Value::String("b".into())]),
        )
        .tensor("a", GgmlType::F32, &[4, 2], vec![0u8; 32])
        .tensor("b", GgmlType::Q8_0, &[32], vec![0u8; 34]);
    w
}

fn err(bytes: Vec<u8>) -> FormatError {
    match GgufFile::from_vec(bytes) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

#[test]
fn good_file_round_trips() {
    let f = GgufFile::from_vec(good().to_bytes()).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.get_str("general.architecture"), Some("llama"));
    assert_eq!(f.get_u64("llama.block_count"), Some(1));
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens"),
        Some(vec!["a", "b"])
    );
    let (info, data) = f.tensor_data_by_name("b").unwrap();
    assert_eq!(info.ty, GgmlType::Q8_0);
    assert_eq!(data.len(), 34);
    assert_eq!(f.tensor("a").unwrap().rows_cols(), (2, 4));
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = good().to_bytes();
    for len in 0..bytes.len() - 1 {
        // Trailing padding after the last tensor may be cut without harm.
        if let Err(e) = GgufFile::from_vec(bytes[..len].to_vec()) {
            let msg = e.to_string();
            assert!(!msg.is_empty());
        } else {
            assert!(
                len >= bytes.len() - 32,
                "truncated to {len} bytes but accepted"
            );
        }
    }
    assert!(matches!(
        err(bytes[..10].to_vec()),
        FormatError::Truncated { .. }
    ));
}

#[test]
fn wrong_magic() {
    let mut b = good().to_bytes();
    b[0] = b'X';
    let e = err(b);
    assert!(matches!(e, FormatError::BadMagic { .. }), "{e}");
    assert!(e.to_string().contains("not a GGUF file"));
}

#[test]
fn unknown_version() {
    let mut b = good().to_bytes();
    b[4..8].copy_from_slice(&7u32.to_le_bytes());
    assert!(matches!(err(b.clone()), FormatError::UnsupportedVersion(7)));
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(err(b).to_string().contains("big-endian"));
}

#[test]
fn absurd_counts_do_not_allocate() {
    let mut b = good().to_bytes();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(err(b), FormatError::AbsurdCount { .. }));
    let mut b = good().to_bytes();
    b[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(err(b), FormatError::AbsurdCount { .. }));
}

#[test]
fn absurd_string_length() {
    let mut b = good().to_bytes();
    // First key's length field.
    b[24..32].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
    let e = err(b);
    assert!(matches!(e, FormatError::Truncated { .. }), "{e}");
}

#[test]
fn absurd_array_length() {
    let mut w = GgufWriter::new();
    w.add("x", Value::Array(vec![Value::U32(1)]));
    let mut b = w.to_bytes();
    // magic4 ver4 nt8 nkv8 keylen8 'x'1 type4 elemtype4 count8
    let at = 4 + 4 + 8 + 8 + 8 + 1 + 4 + 4;
    b[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let e = err(b);
    assert!(matches!(e, FormatError::AbsurdCount { .. }), "{e}");
    assert!(e.to_string().contains("\"x\""));
}

#[test]
fn unknown_value_type_names_the_key() {
    let mut w = GgufWriter::new();
    w.add("some.key", Value::U32(1));
    let mut b = w.to_bytes();
    let at = 4 + 4 + 8 + 8 + 8 + "some.key".len();
    b[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    let e = err(b);
    assert!(
        matches!(e, FormatError::UnknownValueType { id: 99, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("some.key"));
}

#[test]
fn invalid_utf8_key() {
    let mut w = GgufWriter::new();
    w.add("kk", Value::U32(1));
    let mut b = w.to_bytes();
    b[32] = 0xff;
    assert!(matches!(err(b), FormatError::InvalidUtf8 { .. }));
}

#[test]
fn deep_nesting() {
    let mut v = Value::U8(1);
    for _ in 0..10 {
        v = Value::Array(vec![v]);
    }
    let mut w = GgufWriter::new();
    w.add("deep", v);
    assert!(matches!(
        err(w.to_bytes()),
        FormatError::NestingTooDeep { .. }
    ));
}

#[test]
fn duplicate_key_and_tensor() {
    let mut w = good();
    w.add("llama.block_count", Value::U32(2));
    assert!(matches!(err(w.to_bytes()), FormatError::DuplicateKey(k) if k == "llama.block_count"));
    let mut w = good();
    w.tensor("a", GgmlType::F32, &[8], vec![0u8; 32]);
    assert!(matches!(err(w.to_bytes()), FormatError::DuplicateTensor(t) if t == "a"));
}

#[test]
fn bad_alignment() {
    let mut w = good();
    w.add("general.alignment", Value::U32(24));
    assert!(matches!(err(w.to_bytes()), FormatError::BadAlignment(_)));
    let mut w = good();
    w.add("general.alignment", Value::String("x".into()));
    assert!(matches!(err(w.to_bytes()), FormatError::BadAlignment(_)));
}

#[test]
fn unknown_tensor_type_names_the_tensor() {
    let mut w = good();
    w.raw_tensor("weird", 77, &[32], vec![0; 32], None);
    let e = err(w.to_bytes());
    assert!(
        matches!(e, FormatError::UnknownTensorType { id: 77, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("weird"));
}

#[test]
fn bad_shapes() {
    let mut w = good();
    w.tensor("zero", GgmlType::F32, &[0, 4], vec![]);
    assert!(matches!(err(w.to_bytes()), FormatError::BadShape { .. }));
    let mut w = good();
    w.tensor("q", GgmlType::Q4_0, &[33], vec![0; 36]);
    let e = err(w.to_bytes());
    assert!(e.to_string().contains("not a multiple"), "{e}");
    let mut w = good();
    w.tensor("big", GgmlType::F32, &[1 << 40, 1 << 40], vec![]);
    assert!(matches!(err(w.to_bytes()), FormatError::BadShape { .. }));
    let mut w = good();
    w.tensor("5d", GgmlType::F32, &[1, 1, 1, 1, 1], vec![0; 4]);
    assert!(matches!(err(w.to_bytes()), FormatError::BadShape { .. }));
}

#[test]
fn tensor_past_end() {
    let mut w = good();
    w.raw_tensor("far", GgmlType::F32.id(), &[8], vec![], Some(1 << 20));
    let e = err(w.to_bytes());
    assert!(matches!(e, FormatError::TensorOutOfBounds { .. }), "{e}");
    let mut w = good();
    w.raw_tensor(
        "wrap",
        GgmlType::F32.id(),
        &[8],
        vec![],
        Some(u64::MAX - 31),
    );
    assert!(matches!(
        err(w.to_bytes()),
        FormatError::TensorOutOfBounds { .. }
    ));
}

#[test]
fn overlapping_and_misaligned_tensors() {
    let mut w = good();
    w.raw_tensor("over", GgmlType::F32.id(), &[8], vec![0; 32], Some(0));
    assert!(matches!(
        err(w.to_bytes()),
        FormatError::TensorOverlap { .. }
    ));
    let mut w = good();
    w.raw_tensor("mis", GgmlType::F32.id(), &[8], vec![0; 32], Some(100));
    assert!(matches!(err(w.to_bytes()), FormatError::Misaligned { .. }));
}

#[test]
fn bad_bool() {
    let mut w = GgufWriter::new();
    w.add("flag", Value::Bool(true));
    let mut b = w.to_bytes();
    let n = b.len();
    // The bool byte is the last header byte before alignment padding.
    let at = 4 + 4 + 8 + 8 + 8 + 4 + 4;
    assert!(at < n);
    b[at] = 7;
    assert!(matches!(err(b), FormatError::BadKey { .. }));
}

#[test]
fn missing_file_and_directory() {
    let e = GgufFile::open("/nonexistent/model.gguf").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/model.gguf"));
    let e = GgufFile::open("/").unwrap_err();
    assert!(e.to_string().contains("directory"));
}
