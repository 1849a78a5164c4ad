//! [`FileType`]: the quantization a whole file asks for (`Q4_K_M`, `Q8_0`, ...), as
//! llama.cpp's `llama_ftype` numbers and names it.

use sparetire_quant::GgmlType;

/// A whole-file quantization: the default tensor type plus, for the K-quant mixes, the rules
/// that give some tensors more bits (see [`crate::policy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)] // why: llama.cpp's names, which users type
pub enum FileType {
    /// Every 2-D weight in f32.
    F32,
    /// Every 2-D weight in f16.
    F16,
    /// Every 2-D weight in bf16.
    BF16,
    /// 4.5 bits per weight, legacy.
    Q4_0,
    /// 5 bits per weight, legacy.
    Q4_1,
    /// 5.5 bits per weight, legacy.
    Q5_0,
    /// 6 bits per weight, legacy.
    Q5_1,
    /// 8.5 bits per weight.
    Q8_0,
    /// Q2_K with Q3_K/Q4_K for the sensitive tensors.
    Q2_K,
    /// Q3_K throughout.
    Q3_K_S,
    /// Q3_K with Q4_K/Q5_K for attention V, output and feed-forward down.
    Q3_K_M,
    /// Q3_K with Q5_K for attention V, output and feed-forward down.
    Q3_K_L,
    /// Q4_K with Q5_K for the first attention V and feed-forward down layers.
    Q4_K_S,
    /// Q4_K with Q6_K for half of attention V and feed-forward down.
    Q4_K_M,
    /// Q5_K throughout.
    Q5_K_S,
    /// Q5_K with Q6_K for half of attention V and feed-forward down.
    Q5_K_M,
    /// Q6_K throughout.
    Q6_K,
}

impl FileType {
    /// Every file type, in the order `sparetire quantize --help` lists them.
    pub const ALL: [FileType; 17] = [
        FileType::Q4_0,
        FileType::Q4_1,
        FileType::Q5_0,
        FileType::Q5_1,
        FileType::Q8_0,
        FileType::Q2_K,
        FileType::Q3_K_S,
        FileType::Q3_K_M,
        FileType::Q3_K_L,
        FileType::Q4_K_S,
        FileType::Q4_K_M,
        FileType::Q5_K_S,
        FileType::Q5_K_M,
        FileType::Q6_K,
        FileType::F16,
        FileType::BF16,
        FileType::F32,
    ];

    /// The name users type and llama-quantize prints.
    pub fn name(self) -> &'static str {
        match self {
            FileType::F32 => "F32",
            FileType::F16 => "F16",
            FileType::BF16 => "BF16",
            FileType::Q4_0 => "Q4_0",
            FileType::Q4_1 => "Q4_1",
            FileType::Q5_0 => "Q5_0",
            FileType::Q5_1 => "Q5_1",
            FileType::Q8_0 => "Q8_0",
            FileType::Q2_K => "Q2_K",
            FileType::Q3_K_S => "Q3_K_S",
            FileType::Q3_K_M => "Q3_K_M",
            FileType::Q3_K_L => "Q3_K_L",
            FileType::Q4_K_S => "Q4_K_S",
            FileType::Q4_K_M => "Q4_K_M",
            FileType::Q5_K_S => "Q5_K_S",
            FileType::Q5_K_M => "Q5_K_M",
            FileType::Q6_K => "Q6_K",
        }
    }

    /// Parses a name, case-insensitively; `Q3_K`, `Q4_K` and `Q5_K` mean their `_M` mixes, as
    /// in llama-quantize.
    pub fn parse(s: &str) -> Option<FileType> {
        let up = s.trim().to_ascii_uppercase();
        let alias = match up.as_str() {
            "Q3_K" => "Q3_K_M",
            "Q4_K" => "Q4_K_M",
            "Q5_K" => "Q5_K_M",
            other => other,
        };
        FileType::ALL.into_iter().find(|t| t.name() == alias)
    }

    /// llama.cpp's `llama_ftype` number, stored as `general.file_type`.
    pub fn id(self) -> u32 {
        match self {
            FileType::F32 => 0,
            FileType::F16 => 1,
            FileType::Q4_0 => 2,
            FileType::Q4_1 => 3,
            FileType::Q8_0 => 7,
            FileType::Q5_0 => 8,
            FileType::Q5_1 => 9,
            FileType::Q2_K => 10,
            FileType::Q3_K_S => 11,
            FileType::Q3_K_M => 12,
            FileType::Q3_K_L => 13,
            FileType::Q4_K_S => 14,
            FileType::Q4_K_M => 15,
            FileType::Q5_K_S => 16,
            FileType::Q5_K_M => 17,
            FileType::Q6_K => 18,
            FileType::BF16 => 32,
        }
    }

    /// The tensor type most 2-D weights get.
    pub fn default_type(self) -> GgmlType {
        match self {
            FileType::F32 => GgmlType::F32,
            FileType::F16 => GgmlType::F16,
            FileType::BF16 => GgmlType::BF16,
            FileType::Q4_0 => GgmlType::Q4_0,
            FileType::Q4_1 => GgmlType::Q4_1,
            FileType::Q5_0 => GgmlType::Q5_0,
            FileType::Q5_1 => GgmlType::Q5_1,
            FileType::Q8_0 => GgmlType::Q8_0,
            FileType::Q2_K => GgmlType::Q2_K,
            FileType::Q3_K_S | FileType::Q3_K_M | FileType::Q3_K_L => GgmlType::Q3_K,
            FileType::Q4_K_S | FileType::Q4_K_M => GgmlType::Q4_K,
            FileType::Q5_K_S | FileType::Q5_K_M => GgmlType::Q5_K,
            FileType::Q6_K => GgmlType::Q6_K,
        }
    }

    /// Whether the default type is a quantized one (the mixes' rules apply only then).
    pub fn is_quantized(self) -> bool {
        !matches!(self, FileType::F32 | FileType::F16 | FileType::BF16)
    }

    /// All names, comma-separated, for error messages.
    pub fn names() -> String {
        FileType::ALL.map(FileType::name).join(", ")
    }
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `ty` is a block-quantized type (not a float type), as ggml's `ggml_is_quantized`.
pub(crate) fn is_quantized(ty: GgmlType) -> bool {
    !matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_aliases_pick_the_m_mixes() {
        for t in FileType::ALL {
            assert_eq!(FileType::parse(t.name()), Some(t));
            assert_eq!(FileType::parse(&t.name().to_lowercase()), Some(t));
        }
        assert_eq!(FileType::parse("q4_k"), Some(FileType::Q4_K_M));
        assert_eq!(FileType::parse("Q3_K"), Some(FileType::Q3_K_M));
        assert_eq!(FileType::parse("Q5_K"), Some(FileType::Q5_K_M));
        assert_eq!(FileType::parse("IQ2_XS"), None);
        assert_eq!(FileType::Q4_K_M.id(), 15);
        assert_eq!(FileType::BF16.id(), 32);
    }
}
