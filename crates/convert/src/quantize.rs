//! `quantize_file`: a GGUF in, the same model in another file type out, written the way
//! llama-quantize writes it (same metadata order, tensor order, types and bytes).

use std::borrow::Cow;
use std::path::Path;

use sparetire_formats::gguf::{GgufFile, Value};

use crate::policy::{ModelShape, TensorDesc};
use crate::writer::{write_gguf, QuantizeOptions, QuantizeSummary, TensorReport, TensorSource};
use crate::ConvertError;

/// ggml's quantization format version (`GGML_QNT_VERSION`), stored as
/// `general.quantization_version`.
pub const QUANTIZATION_VERSION: u32 = 2;

/// Keys llama-quantize drops from the input (a split input becomes one file) or sets anew.
const REPLACED_KEYS: [&str; 5] = [
    "general.quantization_version",
    "general.file_type",
    "split.no",
    "split.count",
    "split.tensors.count",
];

struct GgufSource<'a> {
    file: &'a GgufFile,
    descs: Vec<TensorDesc>,
}

impl TensorSource for GgufSource<'_> {
    fn tensors(&self) -> &[TensorDesc] {
        &self.descs
    }

    fn data(&self, i: usize) -> Result<Cow<'_, [u8]>, ConvertError> {
        Ok(Cow::Borrowed(
            self.file.tensor_data(&self.file.tensors()[i]),
        ))
    }
}

/// What the type policy needs, read from a GGUF's metadata.
pub fn model_shape(file: &GgufFile) -> Result<ModelShape, ConvertError> {
    let arch = file
        .get_str("general.architecture")
        .ok_or_else(|| ConvertError::Metadata {
            key: "general.architecture".into(),
            problem: "missing (not a model file?)".into(),
        })?
        .to_owned();
    // A per-layer array (some architectures) counts by its first layer, as llama.cpp does.
    let first = |key: &str| -> Option<u64> {
        let v = file.get(key)?;
        v.as_u64()
            .or_else(|| v.as_array().and_then(|a| a.first()).and_then(Value::as_u64))
    };
    let n_layer = first(&format!("{arch}.block_count")).ok_or_else(|| ConvertError::Metadata {
        key: format!("{arch}.block_count"),
        problem: "missing".into(),
    })?;
    let n_head = first(&format!("{arch}.attention.head_count")).unwrap_or(0);
    let n_head_kv = first(&format!("{arch}.attention.head_count_kv")).unwrap_or(n_head);
    let n_expert = first(&format!("{arch}.expert_count")).unwrap_or(0);
    let small = |v: u64, key: &str| {
        u32::try_from(v).map_err(|_| ConvertError::Metadata {
            key: format!("{arch}.{key}"),
            problem: format!("{v} is out of range"),
        })
    };
    Ok(ModelShape {
        n_layer: small(n_layer, "block_count")?,
        n_head: small(n_head, "attention.head_count")?,
        n_head_kv: small(n_head_kv, "attention.head_count_kv")?,
        n_expert: small(n_expert, "expert_count")?,
        arch,
    })
}

/// Quantizes the GGUF at `input` into `output` (see [`write_gguf`]); `progress` hears of each
/// tensor as it is written.
pub fn quantize_file(
    input: &Path,
    output: &Path,
    opts: &QuantizeOptions,
    progress: &mut dyn FnMut(&TensorReport),
) -> Result<QuantizeSummary, ConvertError> {
    let file = GgufFile::open(input).map_err(|source| ConvertError::Input {
        path: input.to_owned(),
        error: source,
    })?;
    if file.get_u64("split.count").is_some_and(|n| n > 1) {
        return Err(ConvertError::Metadata {
            key: "split.count".into(),
            problem: format!(
                "{} is one part of a split model; join the parts first \
                 (`sparetire pull` joins them, as does llama-gguf-split --merge)",
                input.display()
            ),
        });
    }
    let shape = model_shape(&file)?;
    let mut metadata: Vec<(String, Value)> = file
        .metadata()
        .iter()
        .filter(|(k, _)| !REPLACED_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    metadata.push((
        "general.quantization_version".into(),
        Value::U32(QUANTIZATION_VERSION),
    ));
    metadata.push(("general.file_type".into(), Value::U32(opts.file_type.id())));
    let source = GgufSource {
        file: &file,
        descs: file
            .tensors()
            .iter()
            .map(|t| TensorDesc {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ty: t.ty,
            })
            .collect(),
    };
    write_gguf(&metadata, &shape, &source, opts, output, progress)
}
