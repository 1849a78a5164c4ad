//! [`Ops`]: the few operations a decoder's forward pass needs, as a backend
//! provides them. [`crate::VkOps`] records them for a Vulkan device;
//! [`crate::reference::Reference`] computes them at once on the CPU with the
//! scalar reference kernels. The parity harness runs both through this trait,
//! and the forward pass ([`crate::net`]) is written against it.
//!
//! Operations may only be recorded: their results are there once
//! [`Ops::read`] or [`Ops::finish`] returns. Buffers hold f32 values; caches
//! hold f16 rows of a paged KV cache addressed by block tables (positions in
//! blocks of 16, like the CPU's `KvPool`).

use sparetire_quant::GgmlType;

use crate::error::VulkanError;

/// A weight matrix in ggml's layout: `rows` rows of `cols` elements of `ty`.
#[derive(Clone, Copy, Debug)]
pub struct HostWeight<'a> {
    /// Element type.
    pub ty: GgmlType,
    /// Rows (output features).
    pub rows: usize,
    /// Row length (input features).
    pub cols: usize,
    /// The bytes, `rows * ty.row_bytes(cols)`.
    pub data: &'a [u8],
}

/// A run of `u32`s handed to the backend for the ops recorded until the next
/// [`Ops::finish`] (token ids, block tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ints {
    /// Where they start in the backend's upload area.
    pub off: usize,
    /// How many.
    pub len: usize,
}

/// The gated activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Glu {
    /// `silu(gate) * up`.
    SwiGlu,
    /// `gelu(gate) * up` (tanh approximation).
    GeGlu,
}

/// Element-wise binary ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// `a + b`.
    Add,
    /// `a * b`.
    Mul,
}

/// Rotary embedding of `n` tokens' heads.
#[derive(Clone, Copy, Debug)]
pub struct Rope {
    /// Tokens.
    pub n: usize,
    /// Heads per token.
    pub n_head: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// Rotated dimensions of each head (even, ≤ head_dim).
    pub n_rot: usize,
    /// Position of the first token.
    pub pos0: usize,
    /// Frequency base.
    pub base: f32,
    /// Pair `(i, i + n_rot/2)` (NeoX) instead of `(2i, 2i+1)`.
    pub neox: bool,
}

/// Attention of `n` consecutive tokens of one sequence over its cache.
#[derive(Clone, Copy, Debug)]
pub struct Attention {
    /// Query tokens (positions `pos0 .. pos0 + n`).
    pub n: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (`n_head` is a multiple).
    pub n_head_kv: usize,
    /// Width of a head (≤ 512).
    pub head_dim: usize,
    /// Position of the first query token.
    pub pos0: usize,
    /// Multiplier of `q·k`.
    pub scale: f32,
    /// If set, a query at `p` sees only keys `p - window + 1 ..= p`.
    pub window: Option<usize>,
}

/// Batches of fewer tokens than this attend the way llama.cpp's CPU backend
/// does for them: query and value accumulator rounded to f16 (its
/// flash-attention kernel's `VKQ16`), keys taken one at a time. Larger
/// batches attend in f32. Following the reference's precision keeps greedy
/// output close to the goldens.
pub const F16_ATTENTION_BELOW: usize = 64;

/// Positions per block of a paged cache.
pub const BLOCK: usize = 16;

/// A backend's operations.
pub trait Ops {
    /// `len` f32 values.
    type Buf;
    /// An uploaded weight matrix.
    type Weight;
    /// f16 rows of one layer of keys or values.
    type Cache;

    /// A short description of the backend (the device name).
    fn name(&self) -> String;
    /// The most values one buffer may hold.
    fn max_values(&self) -> usize;
    /// A buffer of `len` values (contents undefined).
    fn buf(&mut self, len: usize) -> Result<Self::Buf, VulkanError>;
    /// Writes `data` at the start of `dst` (after the work recorded so far).
    fn write(&mut self, dst: &Self::Buf, data: &[f32]) -> Result<(), VulkanError>;
    /// Values `off .. off + len` of `src`, after everything recorded so far ran.
    fn read(&mut self, src: &Self::Buf, off: usize, len: usize) -> Result<Vec<f32>, VulkanError>;
    /// Uploads a weight matrix (once; weights stay on the device).
    fn weight(&mut self, w: &HostWeight<'_>) -> Result<Self::Weight, VulkanError>;
    /// A cache of `rows` rows of `width` f16 values (width even).
    fn cache(&mut self, rows: usize, width: usize) -> Result<Self::Cache, VulkanError>;
    /// Hands `data` to the backend for the ops recorded until the next finish.
    fn ints(&mut self, data: &[u32]) -> Result<Ints, VulkanError>;
    /// Runs everything recorded.
    fn finish(&mut self) -> Result<(), VulkanError>;

    /// `out (ids.len, cols) = w[ids] * scale`.
    fn get_rows(
        &mut self,
        w: &Self::Weight,
        ids: Ints,
        scale: f32,
        out: &Self::Buf,
    ) -> Result<(), VulkanError>;
    /// `y (n, rows) = x[x_off ..] (n, cols) · wᵀ`.
    fn matmul(
        &mut self,
        w: &Self::Weight,
        x: &Self::Buf,
        x_off: usize,
        n: usize,
        y: &Self::Buf,
    ) -> Result<(), VulkanError>;
    /// `out = x / rms(x) * w` over `rows` rows of `width` (`w` is `width` long; `out` may be `x`).
    fn rms_norm(
        &mut self,
        x: &Self::Buf,
        w: &Self::Buf,
        rows: usize,
        width: usize,
        eps: f32,
        out: &Self::Buf,
    ) -> Result<(), VulkanError>;
    /// Softmax of `x * scale` in place over `rows` rows of `width`.
    fn softmax(
        &mut self,
        x: &Self::Buf,
        rows: usize,
        width: usize,
        scale: f32,
    ) -> Result<(), VulkanError>;
    /// RoPE in place on `x` `(n, n_head * head_dim)`.
    fn rope(&mut self, x: &Self::Buf, r: &Rope) -> Result<(), VulkanError>;
    /// `gate = act(gate) * up` over `n` values (GELU through f16, as llama.cpp's CPU backend).
    fn glu(
        &mut self,
        kind: Glu,
        gate: &Self::Buf,
        up: &Self::Buf,
        n: usize,
    ) -> Result<(), VulkanError>;
    /// `out = a op b` over `n` values, `b` read modulo `b_len` (`out` may be `a`).
    fn binary(
        &mut self,
        op: Binary,
        a: &Self::Buf,
        b: &Self::Buf,
        b_len: usize,
        n: usize,
        out: &Self::Buf,
    ) -> Result<(), VulkanError>;
    /// `out = a * s` over `n` values (`out` may be `a`).
    fn scale(
        &mut self,
        a: &Self::Buf,
        s: f32,
        n: usize,
        out: &Self::Buf,
    ) -> Result<(), VulkanError>;
    /// Stores `rows` rows of `width` from `src` at positions `pos0 ..` of a
    /// sequence whose block table is `table`.
    fn kv_store(
        &mut self,
        src: &Self::Buf,
        rows: usize,
        width: usize,
        dst: &Self::Cache,
        table: Ints,
        pos0: usize,
    ) -> Result<(), VulkanError>;
    /// Copies cache rows `from .. from + n` to `to ..` (a shared block copied before a write).
    fn copy_rows(
        &mut self,
        cache: &Self::Cache,
        width: usize,
        from: usize,
        to: usize,
        n: usize,
    ) -> Result<(), VulkanError>;
    /// `out (n, n_head * head_dim)`: causal attention of `q` over the keys and
    /// values of positions `..= pos0 + t` of a sequence with block table `table`.
    fn attention(
        &mut self,
        q: &Self::Buf,
        k: &Self::Cache,
        v: &Self::Cache,
        table: Ints,
        a: &Attention,
        out: &Self::Buf,
    ) -> Result<(), VulkanError>;
}
