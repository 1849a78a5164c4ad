//! How the KV cache stores its rows: [`KvType`] for keys or values, [`KvTypes`] for the pair.
//!
//! f16 is llama.cpp's default and ours. The quantized types (`--cache-type-k/-v q8_0`, …)
//! store each row as the weight blocks of that type, quantized as llama.cpp's CPU backend
//! quantizes a row written into its cache (`from_float`), so a quantized cache takes the same
//! arithmetic path as llama.cpp's: scores by the type's integer dot product against the query
//! quantized to the type's activation format, values widened to f32 before they are summed.
//! Quantization is per 32-element block, so a head's row must be a whole number of blocks.

use sparetire_quant::GgmlType;

use crate::ModelError;

/// The element type of cached key or value rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)] // why: llama.cpp's type names, as users type them
pub enum KvType {
    /// IEEE half floats (2 bytes an element): the default.
    #[default]
    F16,
    /// 8-bit quants with an f16 scale per 32 (34 bytes per 32: 53% of f16).
    Q8_0,
    /// 5-bit quants with an f16 scale and min per 32 (24 bytes per 32).
    Q5_1,
    /// 5-bit quants with an f16 scale per 32 (22 bytes per 32).
    Q5_0,
    /// 4-bit quants with an f16 scale and min per 32 (20 bytes per 32).
    Q4_1,
    /// 4-bit quants with an f16 scale per 32 (18 bytes per 32: 28% of f16).
    Q4_0,
}

impl KvType {
    /// Every cache type, widest first.
    pub const ALL: [KvType; 6] = [
        KvType::F16,
        KvType::Q8_0,
        KvType::Q5_1,
        KvType::Q5_0,
        KvType::Q4_1,
        KvType::Q4_0,
    ];

    /// The element type as ggml names it.
    pub fn ggml(self) -> GgmlType {
        match self {
            KvType::F16 => GgmlType::F16,
            KvType::Q8_0 => GgmlType::Q8_0,
            KvType::Q5_1 => GgmlType::Q5_1,
            KvType::Q5_0 => GgmlType::Q5_0,
            KvType::Q4_1 => GgmlType::Q4_1,
            KvType::Q4_0 => GgmlType::Q4_0,
        }
    }

    /// The lowercase name llama.cpp's `--cache-type-k` takes (`f16`, `q8_0`, …).
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
            KvType::Q5_1 => "q5_1",
            KvType::Q5_0 => "q5_0",
            KvType::Q4_1 => "q4_1",
            KvType::Q4_0 => "q4_0",
        }
    }

    /// Whether rows are stored as quant blocks (not floats).
    pub fn is_quantized(self) -> bool {
        self != KvType::F16
    }

    /// Elements per block (1 for f16).
    pub fn block_size(self) -> usize {
        self.ggml().block_size()
    }

    /// Bytes of a row of `n` elements; `None` if `n` is not a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        self.ggml().row_bytes(n)
    }

    /// Checks that rows of `head_dim` elements (one head) are whole blocks of this type.
    /// `what` names the rows ("keys", "values") for the error.
    pub fn check_head(self, head_dim: usize, what: &str) -> Result<(), ModelError> {
        if head_dim.is_multiple_of(self.block_size()) {
            return Ok(());
        }
        Err(ModelError::Invalid(format!(
            "a {} cache for {what} needs heads of a multiple of {} elements, but this model's \
             are {head_dim} wide; use f16",
            self.name(),
            self.block_size()
        )))
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KvType {
    type Err = ModelError;

    /// Parses a llama.cpp cache type name, in any case (`q8_0`, `Q8_0`, `f16`).
    fn from_str(s: &str) -> Result<KvType, ModelError> {
        let lower = s.to_ascii_lowercase();
        KvType::ALL
            .into_iter()
            .find(|t| t.name() == lower)
            .ok_or_else(|| {
                let names: Vec<&str> = KvType::ALL.iter().map(|t| t.name()).collect();
                ModelError::Invalid(format!(
                    "unknown KV cache type {s:?}; expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// The element types of cached keys and of cached values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KvTypes {
    /// Type of key rows.
    pub k: KvType,
    /// Type of value rows (ignored by latent attention, whose values are part of the keys).
    pub v: KvType,
}

impl KvTypes {
    /// f16 keys and values (llama.cpp's default).
    pub const F16: KvTypes = KvTypes {
        k: KvType::F16,
        v: KvType::F16,
    };

    /// Keys and values of the same type.
    pub fn both(t: KvType) -> KvTypes {
        KvTypes { k: t, v: t }
    }

    /// Whether both are f16.
    pub fn is_f16(self) -> bool {
        self == KvTypes::F16
    }
}

impl std::fmt::Display for KvTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "K {}, V {}", self.k, self.v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_sizes_are_ggml_blocks() {
        for t in KvType::ALL {
            assert_eq!(t.name().parse::<KvType>().unwrap(), t);
            assert_eq!(t.name().to_uppercase().parse::<KvType>().unwrap(), t);
        }
        assert_eq!(KvType::Q8_0.row_bytes(64), Some(68));
        assert_eq!(KvType::F16.row_bytes(64), Some(128));
        assert_eq!(KvType::Q4_0.row_bytes(64), Some(36));
        let err = "q3_k".parse::<KvType>().unwrap_err().to_string();
        assert!(err.contains("q3_k") && err.contains("q8_0"), "{err}");
    }

    #[test]
    fn heads_must_be_whole_blocks() {
        assert!(KvType::Q8_0.check_head(64, "keys").is_ok());
        assert!(KvType::F16.check_head(10, "keys").is_ok());
        let err = KvType::Q4_0
            .check_head(48, "values")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("48") && err.contains("32") && err.contains("values"),
            "{err}"
        );
    }
}
