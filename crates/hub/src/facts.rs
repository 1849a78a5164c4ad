//! What the store shows about a model: its architecture and quant, from the GGUF header.

use std::collections::HashMap;
use std::path::Path;

use sparetire_formats::gguf::GgufFile;
use sparetire_quant::GgmlType;

use crate::HubError;

/// A model file's architecture and quantization.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelFacts {
    /// `general.architecture` (`llama`, `qwen3`…).
    pub architecture: Option<String>,
    /// The quant: `general.file_type` by llama.cpp's name (`Q4_K_M`), else the type
    /// holding most of the quantized weight bytes.
    pub quant: Option<String>,
}

impl ModelFacts {
    /// Reads (and validates) the header of the GGUF file at `path`.
    pub fn read(path: &Path) -> Result<ModelFacts, HubError> {
        let file = GgufFile::open(path).map_err(|source| HubError::Format {
            file: path.display().to_string(),
            source,
        })?;
        Ok(ModelFacts::of(&file))
    }

    /// The facts of an open file.
    pub fn of(file: &GgufFile) -> ModelFacts {
        let quant = file
            .get_u64("general.file_type")
            .and_then(file_type_name)
            .map(str::to_owned)
            .or_else(|| {
                let mut bytes: HashMap<GgmlType, u64> = HashMap::new();
                for t in file.tensors() {
                    if t.ty != GgmlType::F32 {
                        *bytes.entry(t.ty).or_default() += t.n_bytes;
                    }
                }
                bytes
                    .into_iter()
                    .max_by_key(|&(ty, n)| (n, ty.id()))
                    .map(|(ty, _)| ty.name().to_owned())
            });
        ModelFacts {
            architecture: file.get_str("general.architecture").map(str::to_owned),
            quant,
        }
    }
}

/// llama.cpp's name for a `general.file_type` (its `llama_ftype`; 4–6 and 33–35 were removed).
pub fn file_type_name(ftype: u64) -> Option<&'static str> {
    Some(match ftype {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparetire_formats::gguf::{GgufWriter, Value};

    #[test]
    fn file_type_or_the_dominant_tensor_type() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data");
        let f = ModelFacts::read(&root.join("tiny-qwen3.gguf")).unwrap();
        assert_eq!(f.architecture.as_deref(), Some("qwen3"));
        assert_eq!(f.quant.as_deref(), Some("Q4_K_M"));
        let mut w = GgufWriter::new();
        w.add("general.architecture", Value::String("llama".into()))
            .tensor("n", GgmlType::F32, &[64], vec![0; 256])
            .tensor("a", GgmlType::Q8_0, &[32], vec![0; 34])
            .tensor("b", GgmlType::Q8_0, &[32], vec![0; 34])
            .tensor("c", GgmlType::F16, &[32], vec![0; 64]);
        let facts = ModelFacts::of(&GgufFile::from_vec(w.to_bytes()).unwrap());
        assert_eq!(facts.quant.as_deref(), Some("Q8_0"));
    }
}
