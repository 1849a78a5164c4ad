//! Importing a Hugging Face checkpoint directory (config.json, tokenizer.json,
//! tokenizer_config.json, `*.safetensors` or shards listed in model.safetensors.index.json) of a
//! llama, qwen2 or qwen3 model as a GGUF, the way llama.cpp's `convert_hf_to_gguf.py` does:
//! its key names, tensor names, F32 norms and biases, Q/K rows permuted for the `llama`
//! architecture, the tied output head left out.

pub mod config;
pub mod tensors;
pub mod tokenizer;

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::Path;

use sparetire_formats::gguf::Value;
use sparetire_quant::GgmlType;

use crate::policy::{ModelShape, TensorDesc};
use crate::safetensors::{SafetensorsFile, StTensor};
use crate::writer::{write_gguf, QuantizeOptions, QuantizeSummary, TensorReport, TensorSource};
use crate::{ConvertError, FileType};
pub use config::{Arch, HfConfig};

/// One GGUF tensor and where its data lives in the checkpoint.
struct Planned {
    file: usize,
    st: StTensor,
    permute_heads: Option<u32>,
}

struct CheckpointSource {
    files: Vec<SafetensorsFile>,
    descs: Vec<TensorDesc>,
    planned: Vec<Planned>,
}

impl TensorSource for CheckpointSource {
    fn tensors(&self) -> &[TensorDesc] {
        &self.descs
    }

    fn data(&self, i: usize) -> Result<Cow<'_, [u8]>, ConvertError> {
        let p = &self.planned[i];
        let d = &self.descs[i];
        let raw = self.files[p.file].data(&p.st);
        let mut data = Cow::Borrowed(raw);
        if d.ty != p.st.ty {
            // 1-D tensors (norms, biases) become F32, as llama.cpp's converter writes them.
            let mut f = vec![0f32; raw.len() / p.st.ty.type_size()];
            sparetire_quant::dequantize_row(p.st.ty, raw, &mut f).map_err(|source| {
                ConvertError::Quant {
                    tensor: d.name.clone(),
                    error: source,
                }
            })?;
            data = Cow::Owned(f.iter().flat_map(|x| x.to_le_bytes()).collect());
        }
        if let Some(heads) = p.permute_heads {
            let rows = d.dims.iter().skip(1).product::<u64>().max(1) as usize;
            let rows = if d.dims.len() == 1 {
                d.dims[0] as usize
            } else {
                rows
            };
            let row_bytes = data.len() / rows.max(1);
            data = Cow::Owned(
                tensors::permute_rows(&data, rows, row_bytes, heads as usize).ok_or_else(|| {
                    ConvertError::Checkpoint(format!(
                        "{}: {rows} rows do not split into {heads} heads of an even size",
                        d.name
                    ))
                })?,
            );
        }
        Ok(data)
    }
}

fn read(path: &Path) -> Result<String, ConvertError> {
    std::fs::read_to_string(path).map_err(|source| ConvertError::Io {
        path: path.to_owned(),
        error: source,
    })
}

fn read_optional(path: &Path) -> Result<Option<String>, ConvertError> {
    if path.is_file() {
        read(path).map(Some)
    } else {
        Ok(None)
    }
}

/// The safetensors files of a checkpoint: the shards model.safetensors.index.json lists, else
/// every `*.safetensors` in the directory.
fn safetensors_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, ConvertError> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let v: serde_json::Value = serde_json::from_str(&read(&index)?).map_err(|e| {
            ConvertError::Checkpoint(format!("{}: not valid JSON: {e}", index.display()))
        })?;
        let map = v
            .get("weight_map")
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| {
                ConvertError::Checkpoint(format!("{}: no weight_map", index.display()))
            })?;
        let names: BTreeSet<&str> = map.values().filter_map(serde_json::Value::as_str).collect();
        return Ok(names.into_iter().map(|n| dir.join(n)).collect());
    }
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|source| ConvertError::Io {
            path: dir.to_owned(),
            error: source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ConvertError::Checkpoint(format!(
            "{}: no *.safetensors files (PyTorch .bin checkpoints are not supported)",
            dir.display()
        )));
    }
    Ok(files)
}

/// Converts the checkpoint in `dir` to a GGUF at `out` in `opts.file_type` (F16, BF16, F32 or
/// any quantization); `progress` hears of each tensor as it is written.
pub fn convert_dir(
    dir: &Path,
    out: &Path,
    opts: &QuantizeOptions,
    progress: &mut dyn FnMut(&TensorReport),
) -> Result<QuantizeSummary, ConvertError> {
    check_dir(dir)?;
    let cfg = HfConfig::parse(&read(&dir.join("config.json"))?)?;
    let tok_json = read(&dir.join("tokenizer.json"))?;
    let tok_cfg = read_optional(&dir.join("tokenizer_config.json"))?;
    let template = read_optional(&dir.join("chat_template.jinja"))?;

    let files: Vec<SafetensorsFile> = safetensors_files(dir)?
        .iter()
        .map(|p| SafetensorsFile::open(p))
        .collect::<Result<_, _>>()?;
    let mut descs = Vec::new();
    let mut planned = Vec::new();
    for (fi, f) in files.iter().enumerate() {
        for (name, st) in f.tensors() {
            let mapped = tensors::map_name(name, cfg.arch, cfg.n_head, cfg.n_head_kv, cfg.tied)
                .ok_or_else(|| {
                    ConvertError::Checkpoint(format!(
                        "{}: tensor {name} is not one a {} model has",
                        f.path().display(),
                        cfg.arch.gguf_name()
                    ))
                })?;
            let tensors::Mapped::Tensor {
                name: gguf,
                permute_heads,
            } = mapped
            else {
                continue;
            };
            let dims: Vec<u64> = st.shape.iter().rev().copied().collect();
            let one_d = dims.iter().filter(|&&d| d > 1).count() <= 1;
            let ty = if one_d { GgmlType::F32 } else { st.ty };
            descs.push(TensorDesc {
                name: gguf,
                dims,
                ty,
            });
            planned.push(Planned {
                file: fi,
                st: st.clone(),
                permute_heads,
            });
        }
    }
    check_complete(&cfg, &descs)?;

    let arch = cfg.arch.gguf_name();
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| arch.to_owned());
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.type".into(), Value::String("model".into())),
        ("general.name".into(), Value::String(name)),
    ];
    metadata.extend(cfg.metadata());
    metadata.push(("general.file_type".into(), Value::U32(opts.file_type.id())));
    metadata.push((
        "general.quantization_version".into(),
        Value::U32(crate::quantize::QUANTIZATION_VERSION),
    ));
    let files_text = tokenizer::TokenizerFiles {
        tokenizer: &tok_json,
        config: tok_cfg.as_deref(),
        chat_template: template.as_deref(),
    };
    metadata.extend(tokenizer::metadata(&files_text, &cfg.raw, cfg.n_vocab)?);

    let shape = ModelShape {
        arch: arch.into(),
        n_layer: cfg.n_layer,
        n_head: cfg.n_head,
        n_head_kv: cfg.n_head_kv,
        n_expert: 0,
    };
    let source = CheckpointSource {
        files,
        descs,
        planned,
    };
    // Checkpoint weights are never "requantized": they are float.
    let opts = QuantizeOptions {
        allow_requantize: true,
        ..opts.clone()
    };
    write_gguf(&metadata, &shape, &source, &opts, out, progress)
}

fn check_dir(dir: &Path) -> Result<(), ConvertError> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(ConvertError::Checkpoint(format!(
            "{} is not a directory (convert takes a Hugging Face checkpoint directory)",
            dir.display()
        )))
    }
}

/// Every tensor a model of this configuration needs is there, once, with the right shape.
fn check_complete(cfg: &HfConfig, descs: &[TensorDesc]) -> Result<(), ConvertError> {
    let (d, ff, v) = (cfg.n_embd as u64, cfg.n_ff as u64, cfg.n_vocab as u64);
    let q = (cfg.n_head * cfg.head_dim) as u64;
    let kv = (cfg.n_head_kv * cfg.head_dim) as u64;
    let mut want: Vec<(String, Vec<u64>)> = vec![
        ("token_embd.weight".into(), vec![d, v]),
        ("output_norm.weight".into(), vec![d]),
    ];
    if !cfg.tied {
        want.push(("output.weight".into(), vec![d, v]));
    }
    for l in 0..cfg.n_layer {
        let b = |s: &str| format!("blk.{l}.{s}");
        want.extend([
            (b("attn_norm.weight"), vec![d]),
            (b("ffn_norm.weight"), vec![d]),
            (b("attn_q.weight"), vec![d, q]),
            (b("attn_k.weight"), vec![d, kv]),
            (b("attn_v.weight"), vec![d, kv]),
            (b("attn_output.weight"), vec![q, d]),
            (b("ffn_gate.weight"), vec![d, ff]),
            (b("ffn_up.weight"), vec![d, ff]),
            (b("ffn_down.weight"), vec![ff, d]),
        ]);
        if cfg.arch == Arch::Qwen3 {
            let hd = cfg.head_dim as u64;
            want.push((b("attn_q_norm.weight"), vec![hd]));
            want.push((b("attn_k_norm.weight"), vec![hd]));
        }
    }
    let mut seen = BTreeSet::new();
    for t in descs {
        if !seen.insert(t.name.as_str()) {
            return Err(ConvertError::Checkpoint(format!(
                "{} appears twice in the checkpoint",
                t.name
            )));
        }
    }
    for (name, dims) in want {
        match descs.iter().find(|t| t.name == name) {
            None => {
                return Err(ConvertError::Checkpoint(format!(
                    "the checkpoint has no tensor for {name}"
                )))
            }
            Some(t) if t.dims != dims => {
                return Err(ConvertError::Checkpoint(format!(
                    "{name} has shape {:?}, config.json implies {dims:?}",
                    t.dims
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The file type `convert` writes when none is asked for: BF16 for a BF16 checkpoint, else F16
/// (llama.cpp's converter's `auto`).
pub fn default_file_type(dir: &Path) -> Result<FileType, ConvertError> {
    check_dir(dir)?;
    let first = safetensors_files(dir)?
        .first()
        .map(|p| SafetensorsFile::open(p))
        .transpose()?;
    let bf16 = first.is_some_and(|f| f.tensors().values().any(|t| t.ty == GgmlType::BF16));
    Ok(if bf16 { FileType::BF16 } else { FileType::F16 })
}
