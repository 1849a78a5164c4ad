//! The paged key/value cache: a pool of fixed-size blocks of f16 rows shared
//! by many sequences, and each sequence's table of the blocks it uses.
//!
//! - [`KvPool`] owns the storage (`[layer][block][BLOCK_SIZE][kv_dim]` for
//!   keys and for values) and the [`BlockAllocator`].
//! - [`KvCache`] is one sequence's view: a block table mapping position `p`
//!   to row `p % BLOCK_SIZE` of block `table[p / BLOCK_SIZE]`, plus the
//!   tokens stored so far. Blocks are taken as the sequence grows and given
//!   back when it is truncated or dropped.
//! - Full blocks are published under a hash of the whole token prefix they
//!   end, so a later sequence that starts with the same tokens takes them
//!   instead of recomputing them ([`KvCache::reuse_prefix`]). Published or
//!   shared blocks are never written: a sequence that would write into one
//!   copies it first.
//!
//! A single sequence (`sparetire run`) gets a private pool just big enough
//! for its context; the server shares one pool, sized from `-c`, among all
//! running requests.
//!
//! Rows are f16 by default, or quant blocks ([`KvTypes`], `--cache-type-k/-v`):
//! storage is counted in 16-bit units (every block type is an even number of
//! bytes), so f16 rows stay aligned for reading as floats.

use std::sync::{Arc, Mutex, MutexGuard};

use half::f16;
use sha2::{Digest, Sha256};
use sparetire_quant::quantize_activation_row;

use crate::block_alloc::{BlockAllocator, BlockId, BlockKey, BlockStats};
use crate::kv_type::{KvType, KvTypes};
use crate::layers::attention::KvLayer;
use crate::ModelError;

/// Positions per block.
pub const BLOCK_SIZE: usize = 16;

/// Block storage and bookkeeping shared by the sequences of one model.
///
/// Keys and values are f16 by default, like llama.cpp's default cache type
/// (half the memory of f32, rounded the way the reference rounds), or the
/// quant blocks of [`KvPool::types`].
pub struct KvPool {
    n_layer: usize,
    kv_dim: usize,
    /// Whether value rows are stored (false: keys only, for latent attention).
    values: bool,
    types: KvTypes,
    /// 16-bit units of one key row and of one value row.
    k_units: usize,
    v_units: usize,
    n_blocks: usize,
    inner: Mutex<PoolInner>,
}

struct PoolInner {
    k: Vec<u16>,
    v: Vec<u16>,
    blocks: BlockAllocator,
}

impl KvPool {
    /// A pool of `n_blocks` blocks of f16 rows for a model with `n_layer`
    /// layers of `kv_dim` key (and value) features. Fails cleanly if the size
    /// overflows.
    pub fn new(n_layer: usize, kv_dim: usize, n_blocks: usize) -> Result<Arc<KvPool>, ModelError> {
        KvPool::with_values(n_layer, kv_dim, n_blocks, true, KvTypes::F16)
    }

    /// Like [`KvPool::new`] with rows of `types`, storing value rows only if
    /// `values` (without, each position costs one `kv_dim` key row per layer:
    /// multi-head latent attention caches the compressed latent and reads
    /// values out of it, as the key type). `kv_dim` must be a whole number of
    /// blocks of each type.
    pub fn with_values(
        n_layer: usize,
        kv_dim: usize,
        n_blocks: usize,
        values: bool,
        types: KvTypes,
    ) -> Result<Arc<KvPool>, ModelError> {
        let too_large = || {
            ModelError::Invalid(format!(
                "KV cache of {} positions is too large",
                n_blocks.saturating_mul(BLOCK_SIZE)
            ))
        };
        if n_blocks > BlockId::MAX as usize {
            return Err(too_large());
        }
        // Latent attention reads its values out of the key rows, as keys.
        let types = if values {
            types
        } else {
            KvTypes {
                k: types.k,
                v: types.k,
            }
        };
        let units = |t: KvType| -> Result<usize, ModelError> {
            t.check_head(kv_dim, "rows")?;
            Ok(t.row_bytes(kv_dim).ok_or_else(too_large)? / 2)
        };
        let (k_units, v_units) = (units(types.k)?, units(types.v)?);
        let slab = |units: usize| {
            n_layer
                .checked_mul(n_blocks)
                .and_then(|x| x.checked_mul(BLOCK_SIZE))
                .and_then(|x| x.checked_mul(units))
                .filter(|&n| n <= isize::MAX as usize / 4)
                .ok_or_else(too_large)
        };
        let (nk, nv) = (slab(k_units)?, slab(v_units)?);
        Ok(Arc::new(KvPool {
            n_layer,
            kv_dim,
            values,
            types,
            k_units,
            v_units,
            n_blocks,
            inner: Mutex::new(PoolInner {
                k: vec![0u16; nk],
                v: vec![0u16; if values { nv } else { 0 }],
                blocks: BlockAllocator::new(n_blocks),
            }),
        }))
    }

    /// An f16 pool holding at least `n_positions` positions.
    pub fn with_positions(
        n_layer: usize,
        kv_dim: usize,
        n_positions: usize,
    ) -> Result<Arc<KvPool>, ModelError> {
        KvPool::new(n_layer, kv_dim, n_positions.div_ceil(BLOCK_SIZE))
    }

    /// A pool of at least `n_positions` positions of `types` rows for a
    /// model of shape `hp` (every head; a tensor-parallel rank's pool is
    /// made by its model's `new_state`). Fails with a clear error if the
    /// model's heads are not whole blocks of the types.
    pub fn for_model(
        hp: &crate::HParams,
        n_positions: usize,
        types: KvTypes,
    ) -> Result<Arc<KvPool>, ModelError> {
        check_types(hp, types)?;
        KvPool::with_values(
            hp.n_layer,
            hp.kv_dim(),
            n_positions.div_ceil(BLOCK_SIZE),
            hp.kv_values,
            types,
        )
    }

    /// Whether value rows are stored apart from the keys.
    pub fn has_values(&self) -> bool {
        self.values
    }

    /// The element types of the key and value rows.
    pub fn types(&self) -> KvTypes {
        self.types
    }

    /// Whether the pool's rows fit a model of `n_layer` layers of `kv_dim` features.
    pub fn fits(&self, n_layer: usize, kv_dim: usize) -> bool {
        self.n_layer == n_layer && self.kv_dim == kv_dim
    }

    /// Blocks in the pool.
    pub fn n_blocks(&self) -> usize {
        self.n_blocks
    }

    /// Positions the pool holds in all.
    pub fn n_positions(&self) -> usize {
        self.n_blocks * BLOCK_SIZE
    }

    /// Bytes of one block (keys and values, every layer).
    pub fn block_bytes(&self) -> usize {
        let units = self.k_units + if self.values { self.v_units } else { 0 };
        self.n_layer * BLOCK_SIZE * units * 2
    }

    /// Bytes of one position's keys (every layer).
    pub fn k_bytes_per_position(&self) -> usize {
        self.n_layer * self.k_units * 2
    }

    /// Bytes of one position's values (every layer; 0 without value rows).
    pub fn v_bytes_per_position(&self) -> usize {
        if self.values {
            self.n_layer * self.v_units * 2
        } else {
            0
        }
    }

    /// Bytes of the whole pool (reserved; the OS commits pages as they are first written).
    pub fn memory_bytes(&self) -> usize {
        self.n_blocks * self.block_bytes()
    }

    /// Blocks by state (held, cached for reuse, free).
    pub fn stats(&self) -> BlockStats {
        self.lock().blocks.stats()
    }

    /// Blocks that can still be handed out (free or evictable).
    pub fn available(&self) -> usize {
        self.lock().blocks.available()
    }

    fn lock(&self) -> MutexGuard<'_, PoolInner> {
        // The data stays consistent even if a holder panicked: every update is
        // a plain store into rows or counters.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offset in units of row `row` (0..BLOCK_SIZE) of `block` in `layer`,
    /// for rows of `units` 16-bit units.
    fn at(&self, layer: usize, block: BlockId, row: usize, units: usize) -> usize {
        ((layer * self.n_blocks + block as usize) * BLOCK_SIZE + row) * units
    }

    /// Units of one layer's slab of rows of `units`.
    fn layer_len(&self, units: usize) -> usize {
        self.n_blocks * BLOCK_SIZE * units
    }
}

/// Checks that the heads of a model shaped `hp` are whole blocks of `types`
/// (latent attention: its cached row, whose values are read as keys).
pub fn check_types(hp: &crate::HParams, types: KvTypes) -> Result<(), ModelError> {
    types.k.check_head(hp.head_dim, "keys")?;
    if hp.kv_values {
        types.v.check_head(hp.head_dim_v, "values")
    } else {
        // The values are the leading features of the latent row, read as the key type.
        types.k.check_head(hp.head_dim_v, "the latent's values")
    }
}

/// Writes the f32 `src` row into the cache row `dst` as `ty`, the way
/// llama.cpp's CPU backend converts a row it copies into its cache.
fn encode_row(ty: KvType, src: &[f32], dst: &mut [u16]) {
    match ty {
        KvType::F16 => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = f16::from_f32(s).to_bits();
            }
        }
        _ => {
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(dst);
            // The row is whole blocks (checked when the pool was made).
            quantize_activation_row(ty.ggml(), src, bytes)
                .expect("KV rows are whole blocks of their type");
        }
    }
}

/// The key of the block that ends after `tokens` (one block's worth), given
/// the key of the block before it (`None` for the first).
fn chain_key(prev: Option<&BlockKey>, tokens: &[u32]) -> BlockKey {
    let mut h = Sha256::new();
    h.update(prev.map_or([0u8; 32], |k| *k));
    for t in tokens {
        h.update(t.to_le_bytes());
    }
    h.finalize().into()
}

/// Blocks to take before a sequence holding `table` and `from` positions can
/// write positions `..to`: new ones, plus a copy of a shared block that the
/// next position falls into.
fn needed(p: &PoolInner, table: &[BlockId], from: usize, to: usize) -> usize {
    let grow = to.div_ceil(BLOCK_SIZE).saturating_sub(table.len());
    let cow = !from.is_multiple_of(BLOCK_SIZE)
        && to > from
        && table
            .get(from / BLOCK_SIZE)
            .is_some_and(|&b| p.blocks.is_shared(b));
    grow + usize::from(cow)
}

/// One sequence's keys and values: its block table over a [`KvPool`].
pub struct KvCache {
    pool: Arc<KvPool>,
    /// Most positions this sequence may hold.
    n_ctx: usize,
    table: Vec<BlockId>,
    /// Token at each stored position (what published keys are made of).
    tokens: Vec<u32>,
    /// Keys of the leading full blocks (`keys.len() <= tokens.len() / BLOCK_SIZE`).
    keys: Vec<BlockKey>,
}

impl KvCache {
    /// A cache for `n_ctx` positions in a private pool of its own.
    pub fn new(n_layer: usize, n_ctx: usize, kv_dim: usize) -> Result<KvCache, ModelError> {
        let pool = KvPool::with_positions(n_layer, kv_dim, n_ctx)?;
        Ok(KvCache::in_pool(pool, n_ctx))
    }

    /// A cache for `n_ctx` positions of `types` rows of a model shaped `hp`
    /// in a private pool of its own.
    pub fn for_model(
        hp: &crate::HParams,
        n_ctx: usize,
        types: KvTypes,
    ) -> Result<KvCache, ModelError> {
        Ok(KvCache::in_pool(
            KvPool::for_model(hp, n_ctx, types)?,
            n_ctx,
        ))
    }

    /// An empty cache of up to `n_ctx` positions whose blocks come from `pool`.
    pub fn in_pool(pool: Arc<KvPool>, n_ctx: usize) -> KvCache {
        KvCache {
            pool,
            n_ctx,
            table: Vec::new(),
            tokens: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// Most positions this sequence may hold.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// The pool its blocks come from.
    pub fn pool(&self) -> &Arc<KvPool> {
        &self.pool
    }

    /// Tokens stored, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The blocks this sequence holds, in position order.
    pub fn blocks(&self) -> &[BlockId] {
        &self.table
    }

    /// Blocks this sequence holds.
    pub fn n_blocks(&self) -> usize {
        self.table.len()
    }

    /// Bytes of the blocks this sequence holds (shared blocks counted in full).
    pub fn memory_bytes(&self) -> usize {
        self.table.len() * self.pool.block_bytes()
    }

    /// Keeps the first `n` positions and gives back the blocks past them.
    pub fn truncate(&mut self, n: usize) {
        if n >= self.tokens.len() {
            return;
        }
        self.tokens.truncate(n);
        self.keys.truncate(n / BLOCK_SIZE);
        let keep = n.div_ceil(BLOCK_SIZE);
        if self.table.len() > keep {
            let mut p = self.pool.lock();
            for b in self.table.drain(keep..) {
                p.blocks.release(b);
            }
        }
    }

    /// Blocks still to take from the pool before positions `..to` can be
    /// written (counting a copy of a shared block that holds the next position).
    pub fn blocks_needed(&self, to: usize) -> usize {
        needed(&self.pool.lock(), &self.table, self.tokens.len(), to)
    }

    /// Makes positions `tokens().len() .. to` writable: copies a shared block
    /// that the next position falls into, and takes new blocks as needed.
    /// Fails with [`ModelError::KvFull`] when the pool has none left (the
    /// blocks taken so far stay with the sequence).
    pub fn prepare(&mut self, to: usize) -> Result<(), ModelError> {
        if to > self.n_ctx {
            return Err(ModelError::ContextFull {
                needed: to,
                n_ctx: self.n_ctx,
            });
        }
        let from = self.tokens.len();
        let pool = Arc::clone(&self.pool);
        let mut p = pool.lock();
        let full = |p: &PoolInner, table: &[BlockId]| ModelError::KvFull {
            needed: needed(p, table, from, to),
            available: p.blocks.available(),
        };
        if !from.is_multiple_of(BLOCK_SIZE) && to > from {
            let i = from / BLOCK_SIZE;
            let old = self.table[i];
            if p.blocks.is_shared(old) {
                let Some(new) = p.blocks.alloc() else {
                    return Err(full(&p, &self.table));
                };
                let rows = from % BLOCK_SIZE;
                let inner = &mut *p;
                for layer in 0..pool.n_layer {
                    let u = pool.k_units;
                    let (src, dst) = (pool.at(layer, old, 0, u), pool.at(layer, new, 0, u));
                    inner.k.copy_within(src..src + rows * u, dst);
                    if pool.values {
                        let u = pool.v_units;
                        let (src, dst) = (pool.at(layer, old, 0, u), pool.at(layer, new, 0, u));
                        inner.v.copy_within(src..src + rows * u, dst);
                    }
                }
                inner.blocks.release(old);
                self.table[i] = new;
            }
        }
        while self.table.len() * BLOCK_SIZE < to {
            let Some(b) = p.blocks.alloc() else {
                return Err(full(&p, &self.table));
            };
            self.table.push(b);
        }
        Ok(())
    }

    /// Stores the key and value rows of `layer` for positions `pos0..`, one
    /// row of `kv_dim` per position, converted to the pool's types. The
    /// positions must have been made writable by [`Self::prepare`]. Without
    /// value rows (latent attention) `v` is ignored and may be empty.
    pub fn store(&mut self, layer: usize, pos0: usize, k: &[f32], v: &[f32]) {
        let pool = &*self.pool;
        let kv_dim = pool.kv_dim;
        if kv_dim == 0 {
            return;
        }
        let (ku, vu) = (pool.k_units, pool.v_units);
        let mut p = pool.lock();
        let inner = &mut *p;
        for (i, kr) in k.chunks_exact(kv_dim).enumerate() {
            let pos = pos0 + i;
            let b = self.table[pos / BLOCK_SIZE];
            debug_assert!(!inner.blocks.is_shared(b), "write into a shared block");
            let at = pool.at(layer, b, pos % BLOCK_SIZE, ku);
            encode_row(pool.types.k, kr, &mut inner.k[at..at + ku]);
            if pool.values {
                let vr = &v[i * kv_dim..(i + 1) * kv_dim];
                let at = pool.at(layer, b, pos % BLOCK_SIZE, vu);
                encode_row(pool.types.v, vr, &mut inner.v[at..at + vu]);
            }
        }
    }

    /// Records that `tokens` now fill the positions after the stored ones (a
    /// forward pass wrote them), and publishes the blocks this completes.
    pub fn commit(&mut self, tokens: &[u32]) {
        self.tokens.extend_from_slice(tokens);
        let full = self.tokens.len() / BLOCK_SIZE;
        if self.keys.len() >= full {
            return;
        }
        let mut p = self.pool.lock();
        for i in self.keys.len()..full {
            let key = chain_key(
                self.keys.last(),
                &self.tokens[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE],
            );
            p.blocks.publish(self.table[i], key);
            self.keys.push(key);
        }
    }

    /// Takes blocks that the pool already holds for the next whole blocks of
    /// `prompt` (which must start with the stored tokens), up to `max`
    /// positions. Works from a block boundary: a partly filled last block is
    /// dropped first if a cached block can replace it. Returns the positions
    /// now stored (≥ the common prefix of the stored tokens and `prompt`,
    /// capped by `max`).
    pub fn reuse_prefix(&mut self, prompt: &[u32], max: usize) -> usize {
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(max);
        self.truncate(common);
        let mut p = self.pool.lock();
        let mut i = self.tokens.len() / BLOCK_SIZE;
        while (i + 1) * BLOCK_SIZE <= max.min(prompt.len()) {
            let block = &prompt[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE];
            let key = chain_key(i.checked_sub(1).map(|j| &self.keys[j]), block);
            // The stored tokens may already cover part of this block.
            let Some(b) = p.blocks.lookup(&key) else {
                break;
            };
            if self.table.len() > i {
                let old = std::mem::replace(&mut self.table[i], b);
                p.blocks.release(old);
            } else {
                self.table.push(b);
            }
            self.tokens.truncate(i * BLOCK_SIZE);
            self.tokens.extend_from_slice(block);
            self.keys.push(key);
            i += 1;
        }
        self.tokens.len()
    }

    /// Runs `f` on layer `layer`'s keys and values of this sequence.
    pub fn with_layer<R>(&self, layer: usize, f: impl FnOnce(KvLayer<'_>) -> R) -> R {
        let pool = &*self.pool;
        let p = pool.lock();
        let (kl, vl) = (pool.layer_len(pool.k_units), pool.layer_len(pool.v_units));
        let v_span = if pool.values {
            layer * vl..(layer + 1) * vl
        } else {
            0..0
        };
        f(KvLayer::raw(
            &p.k[layer * kl..(layer + 1) * kl],
            &p.v[v_span],
            Some(&self.table),
            BLOCK_SIZE,
            pool.kv_dim,
            pool.types,
        ))
    }
}

impl Drop for KvCache {
    fn drop(&mut self) {
        if self.table.is_empty() {
            return;
        }
        let mut p = self.pool.lock();
        for b in self.table.drain(..) {
            p.blocks.release(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(c: &mut KvCache, tokens: &[u32]) {
        let from = c.tokens().len();
        c.prepare(from + tokens.len()).unwrap();
        let kv_dim = c.pool.kv_dim;
        for layer in 0..c.pool.n_layer {
            let rows: Vec<f32> = tokens
                .iter()
                .flat_map(|&t| (0..kv_dim).map(move |d| (t * 10 + d as u32 + layer as u32) as f32))
                .collect();
            c.store(layer, from, &rows, &rows);
        }
        c.commit(tokens);
    }

    fn key_row(c: &KvCache, layer: usize, pos: usize) -> Vec<f32> {
        c.with_layer(layer, |l| l.k_f32(pos))
    }

    #[test]
    fn rows_land_in_their_blocks_and_come_back() {
        let pool = KvPool::new(2, 4, 8).unwrap();
        let mut c = KvCache::in_pool(pool.clone(), 100);
        let toks: Vec<u32> = (0..40).collect();
        filled(&mut c, &toks);
        assert_eq!(c.n_blocks(), 3);
        assert_eq!(pool.stats().held, 3);
        for pos in [0, 15, 16, 39] {
            assert_eq!(
                key_row(&c, 1, pos),
                vec![
                    (pos * 10 + 1) as f32,
                    (pos * 10 + 2) as f32,
                    (pos * 10 + 3) as f32,
                    (pos * 10 + 4) as f32
                ]
            );
        }
        c.truncate(17);
        assert_eq!((c.n_blocks(), c.tokens().len()), (2, 17));
        drop(c);
        let s = pool.stats();
        // Both full blocks were published and keep their 32-token prefix for reuse;
        // the partial third went back to the free list.
        assert_eq!((s.held, s.cached, s.free), (0, 2, 6));
    }

    #[test]
    fn a_shared_prefix_is_reused_and_copied_before_writing() {
        let pool = KvPool::new(1, 2, 8).unwrap();
        let prompt: Vec<u32> = (100..140).collect();
        let mut a = KvCache::in_pool(pool.clone(), 64);
        filled(&mut a, &prompt);
        let mut b = KvCache::in_pool(pool.clone(), 64);
        // Two full blocks (32 positions) are published; `max` keeps one token to evaluate.
        assert_eq!(b.reuse_prefix(&prompt, prompt.len() - 1), 32);
        assert_eq!(pool.stats().held, 3, "b shares a's two full blocks");
        assert_eq!(key_row(&b, 0, 31), key_row(&a, 0, 31));
        // A different continuation only reuses the matching blocks.
        let mut other = prompt[..20].to_vec();
        other.extend(500..520);
        let mut c = KvCache::in_pool(pool.clone(), 64);
        assert_eq!(c.reuse_prefix(&other, other.len() - 1), 16);
        // Writing into the middle of a shared block copies it first.
        let mut d = KvCache::in_pool(pool.clone(), 64);
        assert_eq!(d.reuse_prefix(&prompt, 39), 32);
        d.truncate(20);
        assert_eq!(d.blocks_needed(21), 1, "copy of the shared second block");
        filled(&mut d, &[7]);
        assert_ne!(d.table[1], a.table[1]);
        assert_eq!(key_row(&d, 0, 19), key_row(&a, 0, 19));
        assert_eq!(key_row(&d, 0, 20), vec![70.0, 71.0]);
        assert_eq!(
            key_row(&a, 0, 20),
            vec![1200.0, 1201.0],
            "a's block untouched"
        );
    }

    #[test]
    fn quantized_rows_are_smaller_and_come_back_close() {
        let (n_layer, kv_dim) = (2, 64);
        let f16_pool = KvPool::new(n_layer, kv_dim, 4).unwrap();
        for (ty, ratio) in [(KvType::Q8_0, 34.0 / 64.0), (KvType::Q4_0, 18.0 / 64.0)] {
            let pool = KvPool::with_values(n_layer, kv_dim, 4, true, KvTypes::both(ty)).unwrap();
            let r = pool.block_bytes() as f64 / f16_pool.block_bytes() as f64;
            assert!((r - ratio).abs() < 1e-12, "{ty}: {r}");
            assert_eq!(pool.k_bytes_per_position(), pool.v_bytes_per_position());
            let mut c = KvCache::in_pool(pool.clone(), 64);
            let rows: Vec<f32> = (0..20 * kv_dim)
                .map(|i| ((i * 7919) % 201) as f32 / 100.0 - 1.0)
                .collect();
            c.prepare(20).unwrap();
            for layer in 0..n_layer {
                c.store(layer, 0, &rows, &rows);
            }
            c.commit(&(0..20).collect::<Vec<u32>>());
            // A shared block is copied with its quantized rows.
            let mut d = KvCache::in_pool(pool.clone(), 64);
            assert_eq!(d.reuse_prefix(&(0..20).collect::<Vec<u32>>(), 19), 16);
            d.truncate(10);
            d.prepare(11).unwrap();
            // Q4_0 clips the side opposite its largest value at 7 of 8 steps (up to 1/8 off).
            let tol = if ty == KvType::Q8_0 { 0.01 } else { 0.13 };
            for pos in [0, 9, 15, 19] {
                let want = &rows[pos * kv_dim..(pos + 1) * kv_dim];
                let got = c.with_layer(1, |l| (l.k_f32(pos), l.v_f32(pos)));
                for (g, w) in got.0.iter().chain(&got.1).zip(want.iter().chain(want)) {
                    assert!((g - w).abs() < tol, "{ty} pos {pos}: {g} vs {w}");
                }
                if pos < 10 {
                    assert_eq!(d.with_layer(1, |l| l.k_f32(pos)), got.0, "copied block");
                }
            }
        }
        // Rows that are not whole blocks are refused, not truncated.
        let err = KvPool::with_values(1, 48, 4, true, KvTypes::both(KvType::Q8_0));
        assert!(err.is_err());
    }

    #[test]
    fn running_out_of_blocks_is_an_error_not_a_panic() {
        let pool = KvPool::new(1, 2, 2).unwrap();
        let mut a = KvCache::in_pool(pool.clone(), 1000);
        let err = a.prepare(40).unwrap_err();
        assert!(matches!(err, ModelError::KvFull { .. }), "{err}");
        assert!(matches!(
            a.prepare(2000),
            Err(ModelError::ContextFull { .. })
        ));
        drop(a);
        assert_eq!(pool.stats().free, 2);
    }
}
