//! Named, shape-checked views of the weight tensors in a GGUF file.

use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;
use sparetire_quant::{GgmlType, WeightView};

use crate::ModelError;

/// A weight matrix (or vector) inside the memory-mapped file: where its bytes
/// are, its type and its shape. The bytes are never copied.
#[derive(Clone, Debug)]
pub struct Weight {
    /// Tensor name, for errors and dumps.
    pub name: String,
    /// Element type.
    pub ty: GgmlType,
    /// Number of rows (output features; product of dims\[1..\]).
    pub rows: usize,
    /// Row length (input features; dims\[0\]).
    pub cols: usize,
    /// Offset of the bytes from the start of the file's data section.
    offset: u64,
    len: u64,
    /// Bytes held in memory instead of the file (a column slice for tensor parallelism).
    owned: Option<Arc<Vec<u8>>>,
}

/// Loads the weights of a model, checking each tensor's presence and shape.
pub struct WeightLoader {
    file: Arc<GgufFile>,
}

impl WeightLoader {
    /// A loader over `file`.
    pub fn new(file: Arc<GgufFile>) -> Self {
        WeightLoader { file }
    }

    /// The file.
    pub fn file(&self) -> &Arc<GgufFile> {
        &self.file
    }

    /// Tensor `name` with shape `dims` (innermost first). Trailing 1-dims may be omitted in the file.
    pub fn get(&self, name: &str, dims: &[usize]) -> Result<Weight, ModelError> {
        self.try_get(name, dims)?
            .ok_or_else(|| ModelError::MissingTensor(name.to_owned()))
    }

    /// Like [`WeightLoader::get`], but `Ok(None)` if the tensor is absent.
    pub fn try_get(&self, name: &str, dims: &[usize]) -> Result<Option<Weight>, ModelError> {
        let Some(info) = self.file.tensor(name) else {
            return Ok(None);
        };
        let mut found: Vec<u64> = info.dims.clone();
        while found.len() > dims.len() && found.last() == Some(&1) {
            found.pop();
        }
        let expected: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
        if found != expected {
            return Err(ModelError::ShapeMismatch {
                tensor: name.to_owned(),
                found: info.dims.clone(),
                expected,
            });
        }
        let (rows, cols) = info.rows_cols();
        let start = info.offset;
        Ok(Some(Weight {
            name: name.to_owned(),
            ty: info.ty,
            rows,
            cols,
            offset: start,
            len: info.n_bytes,
            owned: None,
        }))
    }

    /// A stacked 3-D tensor of `n` matrices of `(rows, cols)` (GGUF shape
    /// `[cols, rows, n]`, e.g. `ffn_up_exps`), as `n` row slices of it.
    pub fn stacked(
        &self,
        name: &str,
        cols: usize,
        rows: usize,
        n: usize,
    ) -> Result<Vec<Weight>, ModelError> {
        let all = self.get(name, &[cols, rows, n])?;
        (0..n)
            .map(|e| all.row_slice(e * rows..(e + 1) * rows))
            .collect()
    }

    /// A 1-D tensor that must be F32 (norm weights, biases), copied out as f32.
    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
        let w = self.get(name, &[n])?;
        to_f32(&self.file, &w)
    }

    /// Like [`WeightLoader::vector`] but optional.
    pub fn try_vector(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>, ModelError> {
        match self.try_get(name, &[n])? {
            None => Ok(None),
            Some(w) => Ok(Some(to_f32(&self.file, &w)?)),
        }
    }
}

fn to_f32(file: &GgufFile, w: &Weight) -> Result<Vec<f32>, ModelError> {
    let mut out = vec![0f32; w.rows * w.cols];
    sparetire_quant::dequantize_row(w.ty, w.bytes(file), &mut out)?;
    Ok(out)
}

impl Weight {
    /// The tensor's bytes in `file` (the file it was loaded from).
    pub fn bytes<'a>(&'a self, file: &'a GgufFile) -> &'a [u8] {
        match &self.owned {
            Some(b) => b,
            // The span was validated when the file was parsed; a Weight is only
            // made from a tensor of that file, so this cannot fail.
            None => file.data_span(self.offset, self.len).unwrap_or(&[]),
        }
    }

    /// Bytes of the tensor (what one pass over it reads).
    pub fn n_bytes(&self) -> usize {
        self.len as usize
    }

    /// Rows `rows` of this matrix (a view into the same bytes).
    pub fn row_slice(&self, rows: std::ops::Range<usize>) -> Result<Weight, ModelError> {
        let rb = self.row_bytes()? as u64;
        if rows.start > rows.end || rows.end > self.rows {
            return Err(ModelError::Invalid(format!(
                "{}: rows {rows:?} of {}",
                self.name, self.rows
            )));
        }
        let (start, n) = (rows.start as u64 * rb, rows.len() as u64 * rb);
        Ok(Weight {
            rows: rows.len(),
            offset: self.offset + start,
            len: n,
            owned: self
                .owned
                .as_ref()
                .map(|b| Arc::new(b[start as usize..(start + n) as usize].to_vec())),
            ..self.clone()
        })
    }

    /// The same weight with its bytes copied out of `file` into memory of its
    /// own, so the process no longer needs the file's pages for it (a
    /// tensor-parallel rank keeps only its slices resident this way).
    pub fn into_owned(self, file: &GgufFile) -> Weight {
        if self.owned.is_some() {
            return self;
        }
        let bytes = self.bytes(file).to_vec();
        Weight {
            owned: Some(Arc::new(bytes)),
            ..self
        }
    }

    fn row_bytes(&self) -> Result<usize, ModelError> {
        self.ty
            .row_bytes(self.cols)
            .ok_or_else(|| ModelError::Invalid(format!("{}: bad row length", self.name)))
    }

    /// A matmul view of the weight.
    pub fn view<'f>(&'f self, file: &'f GgufFile) -> WeightView<'f> {
        WeightView {
            ty: self.ty,
            data: self.bytes(file),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// One row, dequantized into `out` (embedding lookup).
    pub fn row_into(&self, file: &GgufFile, row: usize, out: &mut [f32]) -> Result<(), ModelError> {
        let row_bytes = self
            .ty
            .row_bytes(self.cols)
            .ok_or_else(|| ModelError::Invalid(format!("{}: bad row length", self.name)))?;
        let data = self.bytes(file);
        let src = &data[row * row_bytes..(row + 1) * row_bytes];
        sparetire_quant::dequantize_row(self.ty, src, out)?;
        Ok(())
    }
}
