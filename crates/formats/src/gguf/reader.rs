//! Parsing a GGUF file's header: metadata, tensor directory, data section.
//!
//! Layout (little-endian): magic `GGUF`, u32 version, u64 tensor count,
//! u64 metadata count, the metadata key/value pairs, the tensor infos
//! (name, n_dims, dims, type, offset), padding to `general.alignment`, then
//! the tensor data. Every count and length read from the file is checked
//! against the bytes that remain before anything is allocated for it.

use std::collections::HashMap;

use sparetire_quant::GgmlType;

use super::value::{type_id, Value};
use super::TensorInfo;
use crate::FormatError;

/// Deepest array nesting accepted (real files use 1).
const MAX_ARRAY_DEPTH: usize = 4;
/// Most tensor dimensions (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// The alignment used when a file does not say (`GGUF_DEFAULT_ALIGNMENT`).
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most entries reserved up front for a count read from the file. A count that fits in the
/// file can still promise ~30x its bytes in parsed form (a `Value` per `uint8`); beyond this,
/// vectors grow only as entries actually parse.
const MAX_PREALLOC: u64 = 4096;

/// Capacity to reserve for `count` entries a file announces.
fn prealloc(count: u64) -> usize {
    count.min(MAX_PREALLOC) as usize
}

/// The parsed header of a GGUF file (everything but the tensor data).
#[derive(Debug)]
pub(crate) struct Header {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
    pub alignment: u64,
    pub data_offset: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], FormatError> {
        if n > self.remaining() {
            return Err(FormatError::Truncated {
                what: what(),
                offset: self.pos as u64,
                need: n,
                have: self.remaining(),
            });
        }
        let n = n as usize; // fits: n <= remaining <= usize::MAX
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], FormatError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, FormatError> {
        let len = self.u64(&|| format!("{} (length)", what()))?;
        let start = self.pos as u64;
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(FormatError::InvalidUtf8 {
                what: what(),
                offset: start,
            }),
        }
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit in
    /// what is left of the file, before anything is allocated for them.
    fn check_count(
        &self,
        count: u64,
        min_size: u64,
        what: &dyn Fn() -> String,
    ) -> Result<(), FormatError> {
        if count
            .checked_mul(min_size)
            .is_none_or(|n| n > self.remaining())
        {
            return Err(FormatError::AbsurdCount {
                what: what(),
                count,
                remaining: self.remaining(),
            });
        }
        Ok(())
    }

    fn value(&mut self, key: &str, ty: u32, depth: usize) -> Result<Value, FormatError> {
        let what = || format!("value of metadata key {key:?}");
        Ok(match ty {
            type_id::U8 => Value::U8(self.array::<1>(&what)?[0]),
            type_id::I8 => Value::I8(self.array::<1>(&what)?[0] as i8),
            type_id::U16 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            type_id::I16 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            type_id::U32 => Value::U32(u32::from_le_bytes(self.array(&what)?)),
            type_id::I32 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            type_id::U64 => Value::U64(u64::from_le_bytes(self.array(&what)?)),
            type_id::I64 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            type_id::F32 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            type_id::F64 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            type_id::BOOL => match self.array::<1>(&what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(FormatError::BadKey {
                        key: key.to_owned(),
                        problem: format!("bool value is {b}, expected 0 or 1"),
                    })
                }
            },
            type_id::STRING => Value::String(self.string(&what)?),
            type_id::ARRAY => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(FormatError::NestingTooDeep {
                        key: key.to_owned(),
                        max: MAX_ARRAY_DEPTH,
                    });
                }
                let elem_ty = self.u32(&what)?;
                let min_size = match elem_ty {
                    type_id::U8 | type_id::I8 | type_id::BOOL => 1,
                    type_id::U16 | type_id::I16 => 2,
                    type_id::U32 | type_id::I32 | type_id::F32 => 4,
                    type_id::U64 | type_id::I64 | type_id::F64 | type_id::STRING => 8,
                    type_id::ARRAY => 12,
                    id => {
                        return Err(FormatError::UnknownValueType {
                            key: key.to_owned(),
                            id,
                        })
                    }
                };
                let count = self.u64(&what)?;
                self.check_count(count, min_size, &|| format!("array element (key {key:?})"))?;
                let mut items = Vec::with_capacity(prealloc(count));
                for _ in 0..count {
                    items.push(self.value(key, elem_ty, depth + 1)?);
                }
                Value::Array(items)
            }
            id => {
                return Err(FormatError::UnknownValueType {
                    key: key.to_owned(),
                    id,
                })
            }
        })
    }
}

/// Parses the header of a GGUF file held in `buf`, validating every tensor's
/// placement against the length of `buf`.
pub(crate) fn parse_header(buf: &[u8]) -> Result<Header, FormatError> {
    let mut c = Cursor { buf, pos: 0 };
    let magic: [u8; 4] = c.array(&|| "magic".into())?;
    if &magic != b"GGUF" {
        return Err(FormatError::BadMagic { found: magic });
    }
    let version = c.u32(&|| "version".into())?;
    if version != 2 && version != 3 {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let n_tensors = c.u64(&|| "tensor count".into())?;
    let n_kv = c.u64(&|| "metadata count".into())?;
    // A key/value pair takes at least 8 (key length) + 4 (type) + 1 bytes.
    c.check_count(n_kv, 13, &|| "metadata key/value".into())?;

    let mut metadata = Vec::with_capacity(prealloc(n_kv));
    let mut index = HashMap::with_capacity(prealloc(n_kv));
    for i in 0..n_kv {
        let key = c.string(&|| format!("metadata key #{i}"))?;
        let ty = c.u32(&|| format!("type of metadata key {key:?}"))?;
        let value = c.value(&key, ty, 0)?;
        if index.insert(key.clone(), metadata.len()).is_some() {
            return Err(FormatError::DuplicateKey(key));
        }
        metadata.push((key, value));
    }

    let alignment = match index.get("general.alignment").map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() => a,
            _ => return Err(FormatError::BadAlignment(v.to_string())),
        },
    };

    // A tensor info takes at least 8 (name length) + 4 + 8 + 4 + 8 bytes.
    c.check_count(n_tensors, 32, &|| "tensor info".into())?;
    let mut tensors = Vec::with_capacity(prealloc(n_tensors));
    let mut tensor_index = HashMap::with_capacity(prealloc(n_tensors));
    for i in 0..n_tensors {
        let name = c.string(&|| format!("name of tensor #{i}"))?;
        let what = || format!("info of tensor {name:?}");
        let n_dims = c.u32(&what)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(FormatError::BadShape {
                tensor: name,
                dims: vec![],
                reason: format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64(&what)?);
        }
        let type_id = c.u32(&what)?;
        let offset = c.u64(&what)?;
        let ty = GgmlType::from_id(type_id).ok_or_else(|| FormatError::UnknownTensorType {
            tensor: name.clone(),
            id: type_id,
        })?;
        let n_bytes = tensor_bytes(&name, ty, &dims)?;
        if offset % alignment != 0 {
            return Err(FormatError::Misaligned {
                tensor: name,
                offset,
                alignment,
            });
        }
        if tensor_index.insert(name.clone(), tensors.len()).is_some() {
            return Err(FormatError::DuplicateTensor(name));
        }
        tensors.push(TensorInfo {
            name,
            ty,
            dims,
            offset,
            n_bytes,
        });
    }

    let header_end = c.pos as u64;
    let data_offset = header_end.div_ceil(alignment) * alignment;
    check_placement(&tensors, data_offset, buf.len() as u64)?;

    Ok(Header {
        version,
        metadata,
        index,
        tensors,
        tensor_index,
        alignment,
        data_offset,
    })
}

/// The byte size of a tensor of type `ty` and shape `dims`, or why the shape is impossible.
fn tensor_bytes(name: &str, ty: GgmlType, dims: &[u64]) -> Result<u64, FormatError> {
    let bad = |reason: String| FormatError::BadShape {
        tensor: name.to_owned(),
        dims: dims.to_vec(),
        reason,
    };
    if dims.contains(&0) {
        return Err(bad("a dimension is zero".into()));
    }
    let n_elems = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| bad("element count overflows".into()))?;
    let block = ty.block_size() as u64;
    if !dims[0].is_multiple_of(block) {
        return Err(bad(format!(
            "row length {} is not a multiple of {}'s block size {block}",
            dims[0],
            ty.name()
        )));
    }
    (n_elems / block)
        .checked_mul(ty.type_size() as u64)
        .ok_or_else(|| bad("byte size overflows".into()))
}

/// Checks that every tensor's data lies inside the file and no two overlap.
fn check_placement(
    tensors: &[TensorInfo],
    data_offset: u64,
    file_len: u64,
) -> Result<(), FormatError> {
    let mut spans: Vec<(u64, u64, usize)> = Vec::with_capacity(tensors.len());
    for (i, t) in tensors.iter().enumerate() {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        match (start, end) {
            (Some(start), Some(end)) if end <= file_len => spans.push((start, end, i)),
            _ => {
                return Err(FormatError::TensorOutOfBounds {
                    tensor: t.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_len,
                })
            }
        }
    }
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(FormatError::TensorOverlap {
                a: tensors[w[0].2].name.clone(),
                b: tensors[w[1].2].name.clone(),
            });
        }
    }
    Ok(())
}
