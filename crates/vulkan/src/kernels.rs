//! The compute shaders: their SPIR-V (compiled from `shaders/*.comp` by
//! `scripts/gen_spirv.sh` and shipped in the crate), bindings and push constants.

use sparetire_quant::GgmlType;

/// Weight types the matrix kernels read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WType {
    /// 32-bit floats.
    F32,
    /// 16-bit floats.
    F16,
    /// 4-bit blocks of 32 with a scale.
    Q4_0,
    /// 4-bit blocks of 32 with a scale and a minimum.
    Q4_1,
    /// 5-bit blocks of 32 with a scale.
    Q5_0,
    /// 8-bit blocks of 32 with a scale.
    Q8_0,
    /// 4-bit super-blocks of 256 with 6-bit sub-block scales and minimums.
    Q4K,
    /// 6-bit super-blocks of 256 with 8-bit sub-block scales.
    Q6K,
}

impl WType {
    /// Every type, in the order the parity harness runs them.
    pub const ALL: [WType; 8] = [
        WType::F32,
        WType::F16,
        WType::Q4_0,
        WType::Q4_1,
        WType::Q5_0,
        WType::Q8_0,
        WType::Q4K,
        WType::Q6K,
    ];

    /// The kernel type for a ggml type, if there is one.
    pub fn of(ty: GgmlType) -> Option<WType> {
        Some(match ty {
            GgmlType::F32 => WType::F32,
            GgmlType::F16 => WType::F16,
            GgmlType::Q4_0 => WType::Q4_0,
            GgmlType::Q4_1 => WType::Q4_1,
            GgmlType::Q5_0 => WType::Q5_0,
            GgmlType::Q8_0 => WType::Q8_0,
            GgmlType::Q4_K => WType::Q4K,
            GgmlType::Q6_K => WType::Q6K,
            _ => return None,
        })
    }

    /// The ggml type.
    pub fn ggml(self) -> GgmlType {
        match self {
            WType::F32 => GgmlType::F32,
            WType::F16 => GgmlType::F16,
            WType::Q4_0 => GgmlType::Q4_0,
            WType::Q4_1 => GgmlType::Q4_1,
            WType::Q5_0 => GgmlType::Q5_0,
            WType::Q8_0 => GgmlType::Q8_0,
            WType::Q4K => GgmlType::Q4_K,
            WType::Q6K => GgmlType::Q6_K,
        }
    }
}

/// One compute pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// `matmul.comp` for a weight type: W, X, Y, block sums of X (Q4_1).
    Matmul(WType),
    /// `matmul.comp` with `ROW_PER_THREAD` (for CPU-based devices): the same bindings.
    MatmulRows(WType),
    /// `get_rows.comp` for a weight type: W, ids, OUT.
    GetRows(WType),
    /// `rms_norm.comp`: X, weight, OUT.
    RmsNorm,
    /// `softmax.comp`: X.
    Softmax,
    /// `rope.comp`: X.
    Rope,
    /// `glu.comp`: gate, up.
    Glu,
    /// `eltwise.comp`: A, B, OUT.
    Eltwise,
    /// `kv_store.comp`: SRC, cache, block table.
    KvStore,
    /// `attention.comp`: Q, K cache, V cache, OUT, block table.
    Attention,
    /// `quant_act.comp`: X, OUT, block sums.
    QuantAct,
}

macro_rules! spv {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/spv/",
            $name,
            ".spv"
        ))
    };
}

impl Kernel {
    /// Its SPIR-V.
    pub fn spirv(self) -> &'static [u8] {
        use WType::*;
        match self {
            Kernel::Matmul(t) => match t {
                F32 => spv!("matmul_f32"),
                F16 => spv!("matmul_f16"),
                Q4_0 => spv!("matmul_q4_0"),
                Q4_1 => spv!("matmul_q4_1"),
                Q5_0 => spv!("matmul_q5_0"),
                Q8_0 => spv!("matmul_q8_0"),
                Q4K => spv!("matmul_q4_k"),
                Q6K => spv!("matmul_q6_k"),
            },
            Kernel::MatmulRows(t) => match t {
                F32 => spv!("matmul_rows_f32"),
                F16 => spv!("matmul_rows_f16"),
                Q4_0 => spv!("matmul_rows_q4_0"),
                Q4_1 => spv!("matmul_rows_q4_1"),
                Q5_0 => spv!("matmul_rows_q5_0"),
                Q8_0 => spv!("matmul_rows_q8_0"),
                Q4K => spv!("matmul_rows_q4_k"),
                Q6K => spv!("matmul_rows_q6_k"),
            },
            Kernel::GetRows(t) => match t {
                F32 => spv!("get_rows_f32"),
                F16 => spv!("get_rows_f16"),
                Q4_0 => spv!("get_rows_q4_0"),
                Q4_1 => spv!("get_rows_q4_1"),
                Q5_0 => spv!("get_rows_q5_0"),
                Q8_0 => spv!("get_rows_q8_0"),
                Q4K => spv!("get_rows_q4_k"),
                Q6K => spv!("get_rows_q6_k"),
            },
            Kernel::RmsNorm => spv!("rms_norm"),
            Kernel::Softmax => spv!("softmax"),
            Kernel::Rope => spv!("rope"),
            Kernel::Glu => spv!("glu"),
            Kernel::Eltwise => spv!("eltwise"),
            Kernel::KvStore => spv!("kv_store"),
            Kernel::Attention => spv!("attention"),
            Kernel::QuantAct => spv!("quant_act"),
        }
    }

    /// How many storage buffers it binds (bindings 0 ..).
    pub fn n_buffers(self) -> u32 {
        match self {
            Kernel::Softmax | Kernel::Rope => 1,
            Kernel::Glu => 2,
            Kernel::Matmul(_) | Kernel::MatmulRows(_) => 4,
            Kernel::QuantAct
            | Kernel::GetRows(_)
            | Kernel::RmsNorm
            | Kernel::Eltwise
            | Kernel::KvStore => 3,
            Kernel::Attention => 5,
        }
    }
}

/// How a weight type's products round their activations first, as llama.cpp's
/// CPU backend does (its `vec_dot_type`): `quant_act.comp`'s `kind`, or
/// `None` for f32 activations.
pub fn act_kind(ty: GgmlType) -> Option<u32> {
    match ty.vec_dot_type() {
        GgmlType::Q8_0 => Some(0),
        GgmlType::Q8_1 => Some(3),
        GgmlType::Q8_K => Some(1),
        GgmlType::F16 => Some(2),
        _ => None,
    }
}

/// How the matrix products spread their work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulVariant {
    /// A workgroup per weight row, its threads splitting the row (GPUs).
    Groups,
    /// A thread per weight row (CPU-based devices such as lavapipe, where
    /// workgroup barriers are costly).
    Rows,
}

/// Bytes of push constants every pipeline layout reserves (the minimum every device offers).
pub const PUSH_BYTES: u32 = 128;

/// Tokens one matmul workgroup computes (`NT` in `matmul.comp`).
pub const MATMUL_TOKENS: usize = 8;
