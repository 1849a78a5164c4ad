//! [`KvLayer`]: one layer's cached keys and values as attention reads them (contiguous or
//! paged, f16 or quant blocks), and [`KvHead`], one KV head's slice of its rows.

use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use sparetire_quant::dequantize_row;

use crate::kv_type::{KvType, KvTypes};

/// One layer's keys and values: rows of `n_head_kv * head_dim` elements, one
/// per position, either contiguous or in the blocks of a paged cache, stored
/// as f16 or as quant blocks ([`KvTypes`]) in 16-bit units.
#[derive(Clone, Copy)]
pub struct KvLayer<'a> {
    keys: &'a [u16],
    values: &'a [u16],
    /// Block table (position `p` is row `p % block` of block `table[p / block]`),
    /// or `None` for contiguous rows.
    table: Option<&'a [u32]>,
    block: usize,
    kv_dim: usize,
    types: KvTypes,
    /// 16-bit units of a key row and of a value row.
    k_units: usize,
    v_units: usize,
}

impl<'a> KvLayer<'a> {
    /// Contiguous f16 rows: position `p` at `p * kv_dim`.
    pub fn contiguous(keys: &'a [f16], values: &'a [f16], kv_dim: usize) -> Self {
        KvLayer::raw(
            keys.reinterpret_cast(),
            values.reinterpret_cast(),
            None,
            1,
            kv_dim,
            KvTypes::F16,
        )
    }

    /// f16 rows in blocks of `block` positions, `table` naming each block.
    pub fn paged(
        keys: &'a [f16],
        values: &'a [f16],
        table: &'a [u32],
        block: usize,
        kv_dim: usize,
    ) -> Self {
        KvLayer::raw(
            keys.reinterpret_cast(),
            values.reinterpret_cast(),
            Some(table),
            block,
            kv_dim,
            KvTypes::F16,
        )
    }

    /// Rows of `kv_dim` elements stored as `types` (`kv_dim` a whole number
    /// of their blocks), contiguous or paged by `table` in blocks of `block`.
    pub fn raw(
        keys: &'a [u16],
        values: &'a [u16],
        table: Option<&'a [u32]>,
        block: usize,
        kv_dim: usize,
        types: KvTypes,
    ) -> Self {
        let units = |t: KvType| t.row_bytes(kv_dim).unwrap_or(0) / 2;
        KvLayer {
            keys,
            values,
            table,
            block,
            kv_dim,
            types,
            k_units: units(types.k),
            v_units: units(types.v),
        }
    }

    /// The element types of the rows.
    pub fn types(&self) -> KvTypes {
        self.types
    }

    /// How many rows from position `pos` on (at most `n`) lie one after
    /// another in memory: to the end of `pos`'s block in a paged cache.
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // why: read by the x86 kernels
    pub(crate) fn run(&self, pos: usize, n: usize) -> usize {
        match self.table {
            None => n,
            Some(_) => n.min(self.block - pos % self.block),
        }
    }

    /// Units of a stored key row and of a stored value row.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // why: read by the x86 kernels
    pub(crate) fn units(&self) -> (usize, usize) {
        (self.k_units, self.v_units)
    }

    /// The stored key rows from position `pos` on, to the end of the layer's
    /// storage (rows lie `units().0` apart for [`Self::run`] of them).
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // why: read by the x86 kernels
    pub(crate) fn k_from(&self, pos: usize) -> &'a [u16] {
        &self.keys[self.offset(pos, self.k_units)..]
    }

    /// The stored value rows from position `pos` on (see [`Self::k_from`]).
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // why: read by the x86 kernels
    pub(crate) fn v_from(&self, pos: usize) -> &'a [u16] {
        &self.values[self.offset(pos, self.v_units)..]
    }

    #[inline(always)]
    fn offset(&self, pos: usize, units: usize) -> usize {
        match self.table {
            None => pos * units,
            Some(t) => (t[pos / self.block] as usize * self.block + pos % self.block) * units,
        }
    }

    /// The stored key row of position `pos`.
    pub fn k_raw(&self, pos: usize) -> &'a [u16] {
        &self.keys[self.offset(pos, self.k_units)..][..self.k_units]
    }

    /// The stored value row of position `pos`.
    pub fn v_raw(&self, pos: usize) -> &'a [u16] {
        &self.values[self.offset(pos, self.v_units)..][..self.v_units]
    }

    /// The key row of position `pos` of an f16 key cache.
    pub fn k_row(&self, pos: usize) -> &'a [f16] {
        debug_assert_eq!(self.types.k, KvType::F16);
        self.k_raw(pos).reinterpret_cast()
    }

    /// The value row of position `pos` of an f16 value cache.
    pub fn v_row(&self, pos: usize) -> &'a [f16] {
        debug_assert_eq!(self.types.v, KvType::F16);
        self.v_raw(pos).reinterpret_cast()
    }

    /// The key row of position `pos` widened to f32, whatever its type.
    pub fn k_f32(&self, pos: usize) -> Vec<f32> {
        widen(self.types.k, self.k_raw(pos), self.kv_dim)
    }

    /// The value row of position `pos` widened to f32, whatever its type.
    pub fn v_f32(&self, pos: usize) -> Vec<f32> {
        widen(self.types.v, self.v_raw(pos), self.kv_dim)
    }
}

/// A stored row of `n` elements of `ty` as f32.
fn widen(ty: KvType, row: &[u16], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    match ty {
        KvType::F16 => {
            let row: &[f16] = row.reinterpret_cast();
            row.convert_to_f32_slice(&mut out)
        }
        _ => {
            // The row is whole blocks of its type (checked when the cache was made).
            dequantize_row(ty.ggml(), bytemuck::cast_slice(row), &mut out)
                .expect("cache rows are whole blocks")
        }
    }
    out
}

/// One KV head's rows inside a layer's cache.
pub(crate) struct KvHead<'a> {
    pub(crate) kv: KvLayer<'a>,
    /// Where the head starts in a key row, in elements.
    pub(crate) offset: usize,
    pub(crate) head_dim: usize,
    /// Where the head's value row starts in a row of values.
    pub(crate) v_offset: usize,
    pub(crate) head_dim_v: usize,
    /// Values are the start of the key row (latent attention).
    pub(crate) values_in_keys: bool,
}

impl KvHead<'_> {
    /// The head's f16 key row at position `j`.
    pub(crate) fn k16(&self, j: usize) -> &[f16] {
        &self.kv.k_row(j)[self.offset..][..self.head_dim]
    }

    /// The head's quantized key row at position `j`, as bytes.
    pub(crate) fn kq(&self, j: usize) -> &[u8] {
        block_span(
            self.kv.types().k,
            self.kv.k_raw(j),
            self.offset,
            self.head_dim,
        )
    }

    /// The head's f16 value row at position `j`.
    pub(crate) fn v16(&self, j: usize) -> &[f16] {
        if self.values_in_keys {
            &self.kv.k_row(j)[self.offset..][..self.head_dim_v]
        } else {
            &self.kv.v_row(j)[self.v_offset..][..self.head_dim_v]
        }
    }

    /// The head's quantized value row at position `j`, as bytes.
    pub(crate) fn vq(&self, j: usize) -> &[u8] {
        if self.values_in_keys {
            block_span(
                self.kv.types().k,
                self.kv.k_raw(j),
                self.offset,
                self.head_dim_v,
            )
        } else {
            let ty = self.kv.types().v;
            block_span(ty, self.kv.v_raw(j), self.v_offset, self.head_dim_v)
        }
    }
}

/// The bytes of elements `start..start + len` of a stored row of quant blocks
/// (both whole blocks: heads are checked to be when the cache is made).
#[inline(always)]
fn block_span(ty: KvType, row: &[u16], start: usize, len: usize) -> &[u8] {
    let (bs, ts) = (ty.block_size(), ty.ggml().type_size());
    let bytes: &[u8] = bytemuck::cast_slice(row);
    &bytes[start / bs * ts..][..len / bs * ts]
}
