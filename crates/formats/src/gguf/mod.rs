//! GGUF, llama.cpp's model file format (versions 2 and 3).
//!
//! [`GgufFile::open`] memory-maps a file and parses its header; tensor data
//! stays in the map and is handed out as byte slices ([`GgufFile::tensor_data`]),
//! never copied. [`GgufWriter`] writes files (tests, the fuzzer's seeds, joining
//! multi-part downloads, and later the quantize command).

mod reader;
mod value;
mod writer;

use std::path::Path;

use sparetire_quant::GgmlType;

pub use reader::{DEFAULT_ALIGNMENT, MAX_DIMS};
pub use value::Value;
pub use writer::{DataLayout, GgufWriter};

use crate::mmap::Bytes;
use crate::FormatError;

/// One entry of the tensor directory.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Its element type.
    pub ty: GgmlType,
    /// Its dimensions, innermost first (`dims[0]` is the row length), as GGUF stores them.
    pub dims: Vec<u64>,
    /// Offset of its data from the start of the data section.
    pub offset: u64,
    /// Size of its data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Row length (`dims[0]`) and number of rows (the product of the other dims).
    pub fn rows_cols(&self) -> (usize, usize) {
        let cols = self.dims[0] as usize;
        let rows = self.dims[1..].iter().product::<u64>() as usize;
        (rows, cols)
    }
}

/// A parsed GGUF file whose tensor data is memory-mapped.
pub struct GgufFile {
    bytes: Bytes,
    header: reader::Header,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.header.version)
            .field("n_metadata", &self.header.metadata.len())
            .field("n_tensors", &self.header.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Opens and memory-maps `path`, parsing and validating its header.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, FormatError> {
        let bytes = Bytes::map(path.as_ref())?;
        Self::from_bytes(bytes)
    }

    /// Parses a GGUF image held in memory (tests and the fuzzer use this).
    pub fn from_vec(data: Vec<u8>) -> Result<GgufFile, FormatError> {
        Self::from_bytes(Bytes::Owned(data))
    }

    fn from_bytes(bytes: Bytes) -> Result<GgufFile, FormatError> {
        let header = reader::parse_header(bytes.as_slice())?;
        Ok(GgufFile { bytes, header })
    }

    /// Stops counting the file's mapped pages as this process's resident
    /// memory (`madvise(MADV_DONTNEED)` on the read-only map); the bytes stay
    /// readable and come back from the page cache on the next access. A no-op
    /// for in-memory images and off Unix.
    pub fn release_pages(&self) {
        self.bytes.release_pages();
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// The file's size in bytes.
    pub fn file_size(&self) -> u64 {
        self.bytes.as_slice().len() as u64
    }

    /// The data alignment (`general.alignment`, 32 by default).
    pub fn alignment(&self) -> u64 {
        self.header.alignment
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.header.data_offset
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.header.metadata
    }

    /// The value of a metadata key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.header
            .index
            .get(key)
            .map(|&i| &self.header.metadata[i].1)
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// A non-negative integer value of any integer type.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    /// A float value (either float type, or an integer).
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key).and_then(Value::as_f64).map(|v| v as f32)
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(Value::as_bool)
    }

    /// An array value.
    pub fn get_array(&self, key: &str) -> Option<&[Value]> {
        self.get(key).and_then(Value::as_array)
    }

    /// An array of strings (None if the key is missing or any element is not a string).
    pub fn get_str_array(&self, key: &str) -> Option<Vec<&str>> {
        self.get_array(key)?.iter().map(Value::as_str).collect()
    }

    /// An array of numbers as f32.
    pub fn get_f32_array(&self, key: &str) -> Option<Vec<f32>> {
        self.get_array(key)?
            .iter()
            .map(|v| v.as_f64().map(|x| x as f32))
            .collect()
    }

    /// An array of integers as i64.
    pub fn get_i64_array(&self, key: &str) -> Option<Vec<i64>> {
        self.get_array(key)?.iter().map(Value::as_i64).collect()
    }

    /// The tensor directory, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// A tensor's directory entry by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.header
            .tensor_index
            .get(name)
            .map(|&i| &self.header.tensors[i])
    }

    /// A tensor's data bytes by name.
    pub fn tensor_data_by_name(&self, name: &str) -> Result<(&TensorInfo, &[u8]), FormatError> {
        let info = self
            .tensor(name)
            .ok_or_else(|| FormatError::MissingTensor(name.to_owned()))?;
        Ok((info, self.tensor_data(info)))
    }

    /// `len` bytes at `offset` within the data section, if they are inside the file.
    pub fn data_span(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let start = self.header.data_offset.checked_add(offset)?;
        let end = start.checked_add(len)?;
        self.bytes.as_slice().get(start as usize..end as usize)
    }

    /// A tensor's data bytes. Placement was validated when the file was opened.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.header.data_offset + info.offset) as usize;
        let end = start + info.n_bytes as usize;
        &self.bytes.as_slice()[start..end]
    }
}
