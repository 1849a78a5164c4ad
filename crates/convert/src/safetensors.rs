//! Reading safetensors files: an 8-byte header length, a JSON header naming each tensor's
//! dtype, shape and byte range, then the data. Files are memory-mapped; the header is checked
//! against the file size before any tensor is handed out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sparetire_quant::GgmlType;

use crate::ConvertError;

/// One tensor's entry in a safetensors header.
#[derive(Clone, Debug, PartialEq)]
pub struct StTensor {
    /// Its element type (F32, F16 or BF16).
    pub ty: GgmlType,
    /// Its shape, outermost first (PyTorch order; reverse it for GGUF).
    pub shape: Vec<u64>,
    /// Byte range within the file.
    pub range: std::ops::Range<usize>,
}

/// A memory-mapped safetensors file with a validated header.
pub struct SafetensorsFile {
    path: PathBuf,
    map: memmap2::Mmap,
    tensors: BTreeMap<String, StTensor>,
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("path", &self.path)
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

impl SafetensorsFile {
    /// Maps `path` and parses its header.
    pub fn open(path: &Path) -> Result<SafetensorsFile, ConvertError> {
        let bad = |problem: String| ConvertError::Safetensors {
            path: path.to_owned(),
            problem,
        };
        let file = std::fs::File::open(path).map_err(|source| ConvertError::Io {
            path: path.to_owned(),
            error: source,
        })?;
        // SAFETY: the map is read-only and private to this process; like every memory-mapped
        // model file, it assumes nobody truncates the file while it is open.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| ConvertError::Io {
            path: path.to_owned(),
            error: source,
        })?;
        let bytes: &[u8] = &map;
        let len_bytes: [u8; 8] = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("shorter than the 8-byte header length".into()))?;
        let header_len = u64::from_le_bytes(len_bytes);
        let data_start = 8u64
            .checked_add(header_len)
            .filter(|&e| e <= bytes.len() as u64)
            .ok_or_else(|| bad(format!("header length {header_len} exceeds the file")))?
            as usize;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..data_start])
                .map_err(|e| bad(format!("header is not a JSON object: {e}")))?;
        let data_len = (bytes.len() - data_start) as u64;
        let mut tensors = BTreeMap::new();
        for (name, v) in header {
            if name == "__metadata__" {
                continue;
            }
            let e: RawEntry = serde_json::from_value(v)
                .map_err(|e| bad(format!("tensor {name}: bad header entry: {e}")))?;
            let ty = match e.dtype.as_str() {
                "F32" => GgmlType::F32,
                "F16" => GgmlType::F16,
                "BF16" => GgmlType::BF16,
                other => {
                    return Err(bad(format!(
                        "tensor {name}: dtype {other} is not supported (F32, F16, BF16)"
                    )))
                }
            };
            let [start, end] = e.data_offsets;
            let n: Option<u64> = e
                .shape
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .and_then(|n| n.checked_mul(ty.type_size() as u64));
            if start > end || end > data_len || n != Some(end - start) {
                return Err(bad(format!(
                    "tensor {name}: byte range {start}..{end} does not fit its shape {:?} \
                     ({}) or the file's {data_len} data bytes",
                    e.shape, e.dtype
                )));
            }
            tensors.insert(
                name,
                StTensor {
                    ty,
                    shape: e.shape,
                    range: data_start + start as usize..data_start + end as usize,
                },
            );
        }
        Ok(SafetensorsFile {
            path: path.to_owned(),
            map,
            tensors,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor, by name.
    pub fn tensors(&self) -> &BTreeMap<String, StTensor> {
        &self.tensors
    }

    /// A tensor's bytes (in range: checked when the file was opened).
    pub fn data(&self, t: &StTensor) -> &[u8] {
        &self.map[t.range.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, header: &str, data: &[u8]) -> PathBuf {
        let p = dir.join("m.safetensors");
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        std::fs::write(&p, b).unwrap();
        p
    }

    #[test]
    fn reads_tensors_and_rejects_bad_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}}"#,
            &[1, 0, 2, 0, 3, 0, 4, 0],
        );
        let f = SafetensorsFile::open(&p).unwrap();
        let a = &f.tensors()["a"];
        assert_eq!((a.ty, a.shape.clone()), (GgmlType::F16, vec![2, 2]));
        assert_eq!(f.data(a), &[1, 0, 2, 0, 3, 0, 4, 0]);
        let p = write(
            dir.path(),
            r#"{"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,8]}}"#,
            &[0; 8],
        );
        assert!(SafetensorsFile::open(&p)
            .unwrap_err()
            .to_string()
            .contains("does not fit"));
        let p = write(
            dir.path(),
            r#"{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#,
            &[0; 8],
        );
        assert!(SafetensorsFile::open(&p)
            .unwrap_err()
            .to_string()
            .contains("I64"));
        std::fs::write(dir.path().join("short"), b"abc").unwrap();
        assert!(SafetensorsFile::open(&dir.path().join("short")).is_err());
    }
}
