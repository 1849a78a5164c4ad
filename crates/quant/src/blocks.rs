//! `#[repr(C)]` block layouts, byte-for-byte as ggml's `ggml-common.h` defines them.
//!
//! GGUF tensor data is a packed array of these blocks. Every field type is plain old data (any
//! bit pattern is a valid value), which is what lets [`read_block`] copy one out of a byte slice.

use half::f16;
use std::mem::size_of;

/// Elements per legacy block (Q4_0 … Q8_1).
pub const QK: usize = 32;
/// Elements per K-quant super-block.
pub const QK_K: usize = 256;
/// Bytes of packed 6-bit scales and mins in Q3_K/Q4_K/Q5_K.
pub const K_SCALE_SIZE: usize = 12;

/// Q4_0: `x = d * (q - 8)`; `qs[j]` holds element `j` (low nibble) and `j + 16` (high nibble).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Packed nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18);

/// Q4_1: `x = d * q + m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (offset).
    pub m: f16,
    /// Packed nibbles, laid out as in Q4_0.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_1>() == 20);

/// Q5_0: `x = d * (q - 16)`; bit `j` of `qh` (little-endian u32) is bit 4 of element `j`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: f16,
    /// Fifth bits.
    pub qh: [u8; 4],
    /// Low four bits, laid out as in Q4_0.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_0>() == 22);

/// Q5_1: `x = d * q + m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (offset).
    pub m: f16,
    /// Fifth bits.
    pub qh: [u8; 4],
    /// Low four bits.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_1>() == 24);

/// Q8_0: `x = d * q`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quants.
    pub qs: [i8; QK],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34);

/// Q8_1: `x = d * q`, with `s = d * sum(q)` precomputed for the Q4_1/Q5_1 dot products.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_1 {
    /// Scale.
    pub d: f16,
    /// `d * sum(qs)`.
    pub s: f16,
    /// Quants.
    pub qs: [i8; QK],
}
const _: () = assert!(size_of::<BlockQ8_1>() == 36);

/// Q2_K: 16 groups of 16; `x = d * (scales & 15) * q - dmin * (scales >> 4)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ2K {
    /// Per-group 4-bit scale (low nibble) and min (high nibble).
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale for the scales.
    pub d: f16,
    /// Super-block scale for the mins.
    pub dmin: f16,
}
const _: () = assert!(size_of::<BlockQ2K>() == 84);

/// Q3_K: 16 groups of 16; `x = d * (scale - 32) * (q - 4 * !hbit)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ3K {
    /// High bits of the quants.
    pub hmask: [u8; QK_K / 8],
    /// Low two bits of the quants.
    pub qs: [u8; QK_K / 4],
    /// 6-bit scales, packed.
    pub scales: [u8; K_SCALE_SIZE],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(size_of::<BlockQ3K>() == 110);

/// Q4_K: 8 groups of 32; `x = d * sc * q - dmin * m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4K {
    /// Super-block scale for the scales.
    pub d: f16,
    /// Super-block scale for the mins.
    pub dmin: f16,
    /// 6-bit scales and mins, packed (see [`scale_min_k4`]).
    pub scales: [u8; K_SCALE_SIZE],
    /// 4-bit quants.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ4K>() == 144);

/// Q5_K: 8 groups of 32; `x = d * sc * q - dmin * m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ5K {
    /// Super-block scale for the scales.
    pub d: f16,
    /// Super-block scale for the mins.
    pub dmin: f16,
    /// 6-bit scales and mins, packed as in Q4_K.
    pub scales: [u8; K_SCALE_SIZE],
    /// Fifth bits.
    pub qh: [u8; QK_K / 8],
    /// Low four bits.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ5K>() == 176);

/// Q6_K: 16 groups of 16; `x = d * scale * (q - 32)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ6K {
    /// Low four bits.
    pub ql: [u8; QK_K / 2],
    /// High two bits.
    pub qh: [u8; QK_K / 4],
    /// 8-bit signed scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(size_of::<BlockQ6K>() == 210);

/// Q8_K: activations for the K-quant dot products; `x = d * q`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8K {
    /// Scale (f32, unlike the other blocks).
    pub d: f32,
    /// Quants.
    pub qs: [i8; QK_K],
    /// Sums of each 16 quants.
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(size_of::<BlockQ8K>() == 292);

/// Marker for the block structs above: `#[repr(C)]`, no padding, every bit pattern valid.
///
/// # Safety
/// Implementors must be `#[repr(C)]` structs of integer, `f16` or `f32` fields (or arrays of
/// them) with no padding bytes, so that any `size_of::<Self>()` bytes are a valid value.
pub unsafe trait Block: Copy {
    /// Elements one block holds.
    const ELEMS: usize;
}

macro_rules! impl_block {
    ($($t:ty => $n:expr),* $(,)?) => {$(
        // SAFETY: each listed type is #[repr(C)] with only POD fields, and its const size
        // assertion above equals the sum of its fields, so it has no padding.
        unsafe impl Block for $t { const ELEMS: usize = $n; }
    )*};
}
impl_block!(
    BlockQ4_0 => QK, BlockQ4_1 => QK, BlockQ5_0 => QK, BlockQ5_1 => QK,
    BlockQ8_0 => QK, BlockQ8_1 => QK, BlockQ2K => QK_K, BlockQ3K => QK_K,
    BlockQ4K => QK_K, BlockQ5K => QK_K, BlockQ6K => QK_K, BlockQ8K => QK_K,
);

/// Copies block `i` out of a packed byte array; `None` if `bytes` is too short.
pub fn read_block<T: Block>(bytes: &[u8], i: usize) -> Option<T> {
    let start = i.checked_mul(size_of::<T>())?;
    let chunk = bytes.get(start..start.checked_add(size_of::<T>())?)?;
    // SAFETY: `chunk` holds exactly size_of::<T>() readable bytes, read_unaligned needs no
    // alignment, and `Block` guarantees any bit pattern is a valid `T`.
    Some(unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast::<T>()) })
}

/// Iterates over the whole blocks in `bytes` (a trailing partial block is ignored).
pub fn iter_blocks<T: Block>(bytes: &[u8]) -> impl Iterator<Item = T> + '_ {
    bytes.chunks_exact(size_of::<T>()).map(|chunk| {
        // SAFETY: as in `read_block`: chunks_exact yields size_of::<T>() bytes.
        unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast::<T>()) }
    })
}

/// Writes `block` over the first `size_of::<T>()` bytes of `dst`; `dst` must be that long.
pub fn write_block<T: Block>(block: &T, dst: &mut [u8]) {
    let dst = &mut dst[..size_of::<T>()];
    // SAFETY: `dst` has size_of::<T>() writable bytes; `T` has no padding (Block's contract), so
    // every source byte is initialized; the regions cannot overlap (one is borrowed mutably).
    unsafe {
        std::ptr::copy_nonoverlapping(
            (block as *const T).cast::<u8>(),
            dst.as_mut_ptr(),
            dst.len(),
        )
    }
}

/// The 6-bit scale and min of group `j` (0..8) from Q4_K/Q5_K packed `scales`.
#[inline]
pub fn scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The 16 signed scales of a Q3_K block (already minus 32).
#[inline]
pub fn q3k_scales(packed: &[u8; K_SCALE_SIZE]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 {
            packed[j] & 0xF
        } else {
            packed[j - 8] >> 4
        };
        let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = ((low | (high << 4)) as i8) - 32;
    }
    out
}
