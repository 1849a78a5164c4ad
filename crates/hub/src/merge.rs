//! Joining a split GGUF into one file, so that `-m NAME` loads it like any other.
//!
//! llama.cpp's split format (`gguf-split`, `convert_hf_to_gguf.py --split-max-tensors`):
//! every part is a valid GGUF file holding some of the tensors; the first holds all
//! the metadata, and each part says where it belongs with `split.no` (0-based),
//! `split.count` and (first part) `split.tensors.count`. The joined file has the first
//! part's metadata without the `split.*` keys and every tensor in part order; tensor
//! bytes are streamed from the memory-mapped parts, never held in memory.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use sparetire_formats::gguf::{GgufFile, GgufWriter};

use crate::digest::hex;
use crate::progress::Report;
use crate::HubError;

/// Joins `parts` (in order) into `out`; returns the joined file's size and sha256.
/// `label` names the model in messages.
pub(crate) fn join_parts(
    parts: &[PathBuf],
    label: &str,
    out: &Path,
    report: &dyn Report,
) -> Result<(u64, String), HubError> {
    let bad = |reason: String| HubError::Split {
        file: label.to_owned(),
        reason,
    };
    if parts.is_empty() {
        return Err(bad("no parts".into()));
    }
    let files = parts
        .iter()
        .map(|p| {
            GgufFile::open(p).map_err(|source| HubError::Format {
                file: p.display().to_string(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let n = files.len() as u64;
    for (i, f) in files.iter().enumerate() {
        let (no, count) = (f.get_u64("split.no"), f.get_u64("split.count"));
        if no != Some(i as u64) || count != Some(n) {
            let show =
                |v: Option<u64>, plus: u64| v.map_or("?".to_owned(), |v| (v + plus).to_string());
            return Err(bad(format!(
                "part {} of {n} says it is part {} of {} (split.no, split.count)",
                i + 1,
                show(no, 1),
                show(count, 0)
            )));
        }
    }
    let n_tensors: u64 = files.iter().map(|f| f.tensors().len() as u64).sum();
    let declared = files[0].get_u64("split.tensors.count");
    if declared.is_some_and(|d| d != n_tensors) {
        return Err(bad(format!(
            "the first part announces {} tensors, the parts hold {n_tensors}",
            declared.unwrap_or(0)
        )));
    }
    let mut w = GgufWriter::new();
    for (key, value) in files[0].metadata() {
        if !key.starts_with("split.") {
            w.add(key, value.clone());
        }
    }
    let mut names = HashSet::new();
    let mut data_bytes = 0u64;
    for f in &files {
        for t in f.tensors() {
            if !names.insert(t.name.as_str()) {
                return Err(bad(format!("tensor {:?} is in two parts", t.name)));
            }
            w.tensor_info(&t.name, t.ty, &t.dims, t.n_bytes);
            data_bytes += t.n_bytes;
        }
    }
    let layout = w.header();
    let file = File::create(out).map_err(|e| HubError::io("creating", out, e))?;
    let mut sink = Sink {
        out: BufWriter::with_capacity(1 << 20, file),
        path: out,
        hasher: Sha256::new(),
        pos: 0,
    };
    let mut transfer = report.transfer(&format!("joining {n} parts"), Some(data_bytes));
    sink.write(&layout.header)?;
    let data_start = sink.pos;
    let mut written = 0u64;
    let mut offsets = layout.offsets.iter();
    for f in &files {
        for t in f.tensors() {
            let off = offsets.next().copied().unwrap_or(0);
            sink.pad_to(data_start + off)?;
            sink.write(f.tensor_data(t))?;
            written += t.n_bytes;
            transfer.position(written);
        }
    }
    sink.pad_to(sink.pos.div_ceil(layout.alignment) * layout.alignment)?;
    transfer.finish();
    let Sink {
        out: buffered,
        hasher,
        pos,
        ..
    } = sink;
    let file = buffered
        .into_inner()
        .map_err(|e| HubError::write(out, e.into_error()))?;
    file.sync_all().map_err(|e| HubError::write(out, e))?;
    Ok((pos, hex(&hasher.finalize())))
}

/// The output file: written, hashed and counted.
struct Sink<'a> {
    out: BufWriter<File>,
    path: &'a Path,
    hasher: Sha256,
    pos: u64,
}

impl Sink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), HubError> {
        self.out
            .write_all(bytes)
            .map_err(|e| HubError::write(self.path, e))?;
        self.hasher.update(bytes);
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad_to(&mut self, target: u64) -> Result<(), HubError> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while self.pos < target {
            let n = (target - self.pos).min(ZEROS.len() as u64) as usize;
            self.write(&ZEROS[..n])?;
        }
        Ok(())
    }
}
