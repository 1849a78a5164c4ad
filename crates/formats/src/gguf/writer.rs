//! Writing GGUF v3 files, in memory or streamed.

use std::io::Write;

use sparetire_quant::GgmlType;

use super::value::{type_id, Value};

/// Builds a GGUF v3 image in memory: metadata and tensors in insertion order,
/// tensor data aligned to `general.alignment` (32 unless set).
///
/// It writes what it is given: tests use it to write deliberately broken files
/// too (see [`GgufWriter::raw_tensor`]). Files too large to hold in memory are
/// streamed: declare tensors by size with [`GgufWriter::tensor_info`], write
/// [`GgufWriter::header`], then each tensor's bytes at the offsets it returns.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    data: Vec<u8>,
    /// Size of the data: `data.len()`, or the declared size of a streamed tensor.
    len: u64,
    offset: Option<u64>,
}

/// Where a streamed file's parts go: see [`GgufWriter::header`].
#[derive(Clone, Debug, PartialEq)]
pub struct DataLayout {
    /// Everything before the data section, padded up to where it starts.
    pub header: Vec<u8>,
    /// Each tensor's data offset from the start of the data section, in the order added.
    pub offsets: Vec<u64>,
    /// The data alignment: the file ends padded to a multiple of it.
    pub alignment: u64,
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata key.
    pub fn add(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.push((key.to_owned(), value));
        self
    }

    /// Adds a tensor; `dims` innermost first, `data` its bytes in type `ty`.
    pub fn tensor(&mut self, name: &str, ty: GgmlType, dims: &[u64], data: Vec<u8>) -> &mut Self {
        self.raw_tensor(name, ty.id(), dims, data, None)
    }

    /// Adds a tensor with an arbitrary type id and, optionally, a forced data
    /// offset (for writing invalid files in tests).
    pub fn raw_tensor(
        &mut self,
        name: &str,
        type_id: u32,
        dims: &[u64],
        data: Vec<u8>,
        offset: Option<u64>,
    ) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.to_owned(),
            dims: dims.to_vec(),
            type_id,
            len: data.len() as u64,
            data,
            offset,
        });
        self
    }

    /// Declares a tensor of `n_bytes` whose data the caller writes itself after the
    /// header, at the offset [`GgufWriter::header`] gives (for files too large to
    /// build in memory; [`GgufWriter::to_bytes`] fills its data with zeros).
    pub fn tensor_info(
        &mut self,
        name: &str,
        ty: GgmlType,
        dims: &[u64],
        n_bytes: u64,
    ) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.to_owned(),
            dims: dims.to_vec(),
            type_id: ty.id(),
            data: Vec::new(),
            len: n_bytes,
            offset: None,
        });
        self
    }

    /// The data alignment: `general.alignment` if set to a power of two, else 32.
    pub fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .filter(|a| a.is_power_of_two())
            .unwrap_or(super::DEFAULT_ALIGNMENT)
    }

    /// The header (magic, metadata, tensor directory, padding up to the data
    /// section) and where each tensor's data goes.
    pub fn header(&self) -> DataLayout {
        let align = self.alignment();
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            write_str(&mut out, k);
            out.extend_from_slice(&value_type(v).to_le_bytes());
            write_value(&mut out, v);
        }
        let mut next = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let off = t.offset.unwrap_or(next);
            offsets.push(off);
            next = off
                .saturating_add(t.len)
                .div_ceil(align)
                .saturating_mul(align);
            write_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.type_id.to_le_bytes());
            out.extend_from_slice(&off.to_le_bytes());
        }
        let data_start = (out.len() as u64).div_ceil(align) * align;
        out.resize(data_start as usize, 0);
        DataLayout {
            header: out,
            offsets,
            alignment: align,
        }
    }

    /// The complete file image.
    pub fn to_bytes(&self) -> Vec<u8> {
        let DataLayout {
            header: mut out,
            offsets,
            alignment: align,
        } = self.header();
        let data_start = out.len();
        for (t, off) in self.tensors.iter().zip(offsets) {
            if t.len == 0 {
                continue;
            }
            let at = data_start + off as usize;
            let end = at + t.len as usize;
            if out.len() < end {
                out.resize(end, 0);
            }
            out[at..at + t.data.len()].copy_from_slice(&t.data);
        }
        let end = (out.len() as u64).div_ceil(align) * align;
        out.resize(end as usize, 0);
        out
    }

    /// Writes the file image to `w`.
    pub fn write_to(&self, mut w: impl Write) -> std::io::Result<()> {
        w.write_all(&self.to_bytes())
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn value_type(v: &Value) -> u32 {
    match v {
        Value::U8(_) => type_id::U8,
        Value::I8(_) => type_id::I8,
        Value::U16(_) => type_id::U16,
        Value::I16(_) => type_id::I16,
        Value::U32(_) => type_id::U32,
        Value::I32(_) => type_id::I32,
        Value::U64(_) => type_id::U64,
        Value::I64(_) => type_id::I64,
        Value::F32(_) => type_id::F32,
        Value::F64(_) => type_id::F64,
        Value::Bool(_) => type_id::BOOL,
        Value::String(_) => type_id::STRING,
        Value::Array(_) => type_id::ARRAY,
    }
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            // An empty array's element type is arbitrary; use uint8.
            let elem = items.first().map(value_type).unwrap_or(type_id::U8);
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                write_value(out, it);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;

    #[test]
    fn streamed_file_equals_the_in_memory_one() {
        let tensors: [(&str, &[u64], Vec<u8>); 3] = [
            ("a", &[4, 2], (0..32).collect()),
            ("b", &[3], (0..12).map(|i| i * 3).collect()),
            ("c", &[5, 1], (0..20).rev().collect()),
        ];
        let mut whole = GgufWriter::new();
        let mut streamed = GgufWriter::new();
        for w in [&mut whole, &mut streamed] {
            w.add("general.architecture", Value::String("llama".into()))
                .add("general.alignment", Value::U32(64));
        }
        for (name, dims, data) in &tensors {
            whole.tensor(name, GgmlType::F32, dims, data.clone());
            streamed.tensor_info(name, GgmlType::F32, dims, data.len() as u64);
        }
        let layout = streamed.header();
        assert_eq!(layout.alignment, 64);
        let mut out = layout.header.clone();
        let start = out.len();
        for ((_, _, data), off) in tensors.iter().zip(&layout.offsets) {
            out.resize(start + *off as usize, 0);
            out.extend_from_slice(data);
        }
        out.resize(out.len().div_ceil(64) * 64, 0);
        assert_eq!(out, whole.to_bytes());
        let f = GgufFile::from_vec(out).unwrap();
        assert_eq!(f.tensor_data_by_name("b").unwrap().1, &tensors[1].2[..]);
    }
}
