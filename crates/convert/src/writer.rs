//! Writing a GGUF from any tensor source: every tensor in the type [`crate::policy`] chooses,
//! converted on several threads and streamed to disk.

use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sparetire_formats::gguf::{GgufWriter, Value};
use sparetire_quant::GgmlType;

use crate::file_type::is_quantized;
use crate::policy::{self, Choice, ModelShape, TensorDesc};
use crate::{ConvertError, FileType};

/// Where the tensors of the file being written come from (a GGUF, a safetensors checkpoint).
pub trait TensorSource: Sync {
    /// Every tensor, in any order.
    fn tensors(&self) -> &[TensorDesc];
    /// The bytes of tensor `i` (in its type `tensors()[i].ty`).
    fn data(&self, i: usize) -> Result<Cow<'_, [u8]>, ConvertError>;
}

/// How to write the file.
#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    /// The file type to produce.
    pub file_type: FileType,
    /// Threads that convert rows (at least 1).
    pub threads: usize,
    /// Whether quantized input tensors may be converted to another quantized type.
    pub allow_requantize: bool,
}

/// One tensor written, for progress lines.
#[derive(Clone, Debug)]
pub struct TensorReport<'a> {
    /// 1-based position in the output.
    pub index: usize,
    /// Number of tensors.
    pub total: usize,
    /// The tensor's name.
    pub name: &'a str,
    /// Its dimensions, innermost first.
    pub dims: &'a [u64],
    /// Its type in the input.
    pub from: GgmlType,
    /// Its type in the output.
    pub to: GgmlType,
    /// Whether its row length forced `to` to differ from what the mix asked for.
    pub fallback: bool,
    /// Its size in the input.
    pub bytes_in: u64,
    /// Its size in the output.
    pub bytes_out: u64,
}

/// What a whole conversion did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuantizeSummary {
    /// Tensors written.
    pub n_tensors: usize,
    /// Weights (elements) in all tensors.
    pub n_elements: u64,
    /// Tensor bytes in the input.
    pub bytes_in: u64,
    /// Tensor bytes in the output.
    pub bytes_out: u64,
    /// Tensors whose row length forced another type.
    pub n_fallback: usize,
    /// The output file's size.
    pub file_size: u64,
}

/// Rows converted per work item: about 16k elements, as llama.cpp hands them to its threads.
const CHUNK_ELEMENTS: usize = 32 * 512;

/// Writes `metadata` and every tensor of `source` to `out` as a GGUF of `opts.file_type`.
///
/// The file is written under a temporary name next to `out` and renamed into place when
/// complete, so `out` is never a half-written file.
pub fn write_gguf(
    metadata: &[(String, Value)],
    shape: &ModelShape,
    source: &dyn TensorSource,
    opts: &QuantizeOptions,
    out: &Path,
    progress: &mut dyn FnMut(&TensorReport),
) -> Result<QuantizeSummary, ConvertError> {
    let descs = source.tensors();
    let mut order: Vec<usize> = (0..descs.len()).collect();
    order.sort_by(|&a, &b| policy::tensor_order(&descs[a].name, &descs[b].name));
    let sorted: Vec<TensorDesc> = order.iter().map(|&i| descs[i].clone()).collect();
    let choices = policy::plan(shape, &sorted, opts.file_type);

    if !opts.allow_requantize {
        for (t, c) in sorted.iter().zip(&choices) {
            if is_quantized(t.ty) && c.ty != t.ty {
                return Err(ConvertError::Requantize {
                    tensor: t.name.clone(),
                    ty: t.ty,
                    to: c.ty,
                });
            }
        }
    }

    let mut w = GgufWriter::new();
    for (k, v) in metadata {
        w.add(k, v.clone());
    }
    let mut out_sizes = Vec::with_capacity(sorted.len());
    for (t, c) in sorted.iter().zip(&choices) {
        let n = out_bytes(t, c.ty)?;
        out_sizes.push(n);
        w.tensor_info(&t.name, c.ty, &t.dims, n);
    }
    let layout = w.header();

    let tmp = temp_path(out);
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        let mut f = BufWriter::with_capacity(1 << 20, file);
        f.write_all(&layout.header).map_err(|e| io_err(&tmp, e))?;
        let mut written = 0u64;
        let mut summary = QuantizeSummary {
            n_tensors: sorted.len(),
            ..Default::default()
        };
        for (k, &src_i) in order.iter().enumerate() {
            let t = &sorted[k];
            let Choice { ty: to, fallback } = choices[k];
            pad_to(&mut f, &mut written, layout.offsets[k], &tmp)?;
            let data = source.data(src_i)?;
            let converted = convert_tensor(t, &data, to, opts.threads)?;
            debug_assert_eq!(converted.len() as u64, out_sizes[k]);
            f.write_all(&converted).map_err(|e| io_err(&tmp, e))?;
            written += converted.len() as u64;
            summary.n_elements += t.dims.iter().product::<u64>();
            summary.bytes_in += data.len() as u64;
            summary.bytes_out += converted.len() as u64;
            summary.n_fallback += usize::from(fallback);
            progress(&TensorReport {
                index: k + 1,
                total: sorted.len(),
                name: &t.name,
                dims: &t.dims,
                from: t.ty,
                to,
                fallback,
                bytes_in: data.len() as u64,
                bytes_out: converted.len() as u64,
            });
        }
        let end = written.div_ceil(layout.alignment) * layout.alignment;
        pad_to(&mut f, &mut written, end, &tmp)?;
        f.flush().map_err(|e| io_err(&tmp, e))?;
        summary.file_size = layout.header.len() as u64 + written;
        Ok(summary)
    })();
    match result {
        Ok(s) => {
            std::fs::rename(&tmp, out).map_err(|e| io_err(out, e))?;
            Ok(s)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn io_err(path: &Path, source: std::io::Error) -> ConvertError {
    ConvertError::Io {
        path: path.to_owned(),
        error: source,
    }
}

/// `.NAME.partial` next to `out`.
fn temp_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out.gguf".into());
    out.with_file_name(format!(".{name}.partial"))
}

fn pad_to(
    f: &mut impl Write,
    written: &mut u64,
    target: u64,
    path: &Path,
) -> Result<(), ConvertError> {
    if target > *written {
        let zeros = vec![0u8; (target - *written) as usize];
        f.write_all(&zeros).map_err(|e| io_err(path, e))?;
        *written = target;
    }
    Ok(())
}

fn rows_cols(t: &TensorDesc) -> (usize, usize) {
    let cols = t.dims.first().copied().unwrap_or(1) as usize;
    let rows = t.dims.iter().skip(1).product::<u64>() as usize;
    (rows, cols)
}

fn out_bytes(t: &TensorDesc, ty: GgmlType) -> Result<u64, ConvertError> {
    let (rows, cols) = rows_cols(t);
    ty.row_bytes(cols)
        .and_then(|r| r.checked_mul(rows))
        .map(|n| n as u64)
        .ok_or_else(|| ConvertError::Quant {
            tensor: t.name.clone(),
            error: sparetire_quant::QuantError::NotBlockMultiple {
                ty,
                n: cols,
                block_size: ty.block_size(),
            },
        })
}

/// Converts a whole tensor from `t.ty` to `to`, rows spread over `threads` threads.
fn convert_tensor(
    t: &TensorDesc,
    data: &[u8],
    to: GgmlType,
    threads: usize,
) -> Result<Vec<u8>, ConvertError> {
    let (rows, cols) = rows_cols(t);
    let quant_err = |error| ConvertError::Quant {
        tensor: t.name.clone(),
        error,
    };
    let in_row = t.ty.row_bytes(cols).ok_or_else(|| {
        quant_err(sparetire_quant::QuantError::NotBlockMultiple {
            ty: t.ty,
            n: cols,
            block_size: t.ty.block_size(),
        })
    })?;
    if data.len() != in_row * rows {
        return Err(quant_err(sparetire_quant::QuantError::BufferSize {
            what: "input tensor",
            expected: in_row * rows,
            got: data.len(),
        }));
    }
    if to == t.ty {
        return Ok(data.to_vec());
    }
    let out_row = to.row_bytes(cols).unwrap_or(0);
    let mut out = vec![0u8; out_row * rows];
    if rows == 0 || cols == 0 {
        return Ok(out);
    }
    let rows_per_chunk = CHUNK_ELEMENTS.div_ceil(cols).max(1);
    let work: Vec<(usize, &[u8], &mut [u8])> = data
        .chunks(in_row * rows_per_chunk)
        .zip(out.chunks_mut(out_row * rows_per_chunk))
        .enumerate()
        .map(|(i, (a, b))| (i * rows_per_chunk, a, b))
        .collect();
    let n_threads = threads.clamp(1, work.len());
    let queue = Mutex::new(work.into_iter());
    let first_error: Mutex<Option<ConvertError>> = Mutex::new(None);
    let worker = || {
        let mut row = vec![0f32; cols];
        loop {
            let item = queue.lock().map(|mut q| q.next()).unwrap_or(None);
            let Some((first_row, src, dst)) = item else {
                return;
            };
            let res = src
                .chunks(in_row)
                .zip(dst.chunks_mut(out_row))
                .enumerate()
                .try_for_each(|(r, (s, d))| {
                    sparetire_quant::dequantize_row(t.ty, s, &mut row).map_err(quant_err)?;
                    if row.iter().any(|x| !x.is_finite()) {
                        return Err(ConvertError::NonFinite {
                            tensor: t.name.clone(),
                            row: first_row + r,
                        });
                    }
                    sparetire_quant::quantize_row(to, &row, d).map_err(quant_err)
                });
            if let Err(e) = res {
                if let Ok(mut slot) = first_error.lock() {
                    slot.get_or_insert(e);
                }
                if let Ok(mut q) = queue.lock() {
                    q.by_ref().for_each(drop);
                }
                return;
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..n_threads {
            s.spawn(worker);
        }
        worker();
    });
    match first_error.into_inner().ok().flatten() {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
