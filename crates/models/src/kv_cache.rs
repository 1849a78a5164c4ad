//! The key/value cache of one sequence: f16 rows, one per position, per layer.

use half::f16;

use crate::ModelError;

/// Keys and values of every past position, every layer, stored as f16 like
/// llama.cpp's default cache type (halves memory against f32, and rounds the
/// same way the reference does).
///
/// Layout: `[layer][position][kv_dim]` for keys and for values.
pub struct KvCache {
    n_layer: usize,
    n_ctx: usize,
    kv_dim: usize,
    k: Vec<f16>,
    v: Vec<f16>,
}

impl KvCache {
    /// A cache for `n_ctx` positions. Fails cleanly if the size overflows.
    pub fn new(n_layer: usize, n_ctx: usize, kv_dim: usize) -> Result<KvCache, ModelError> {
        let n = n_layer
            .checked_mul(n_ctx)
            .and_then(|x| x.checked_mul(kv_dim))
            .filter(|&n| n <= isize::MAX as usize / 4)
            .ok_or_else(|| {
                ModelError::Invalid(format!("KV cache of {n_ctx} positions is too large"))
            })?;
        Ok(KvCache {
            n_layer,
            n_ctx,
            kv_dim,
            k: zeroed(n),
            v: zeroed(n),
        })
    }

    /// Positions the cache holds.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Bytes used by keys and values together.
    pub fn memory_bytes(&self) -> usize {
        (self.k.len() + self.v.len()) * 2
    }

    fn span(&self, layer: usize) -> std::ops::Range<usize> {
        let n = self.n_ctx * self.kv_dim;
        layer * n..(layer + 1) * n
    }

    /// Stores one position's key and value rows of `layer`.
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        debug_assert!(layer < self.n_layer && pos < self.n_ctx);
        let at = layer * self.n_ctx * self.kv_dim + pos * self.kv_dim;
        for (d, &s) in self.k[at..at + self.kv_dim].iter_mut().zip(k) {
            *d = f16::from_f32(s);
        }
        for (d, &s) in self.v[at..at + self.kv_dim].iter_mut().zip(v) {
            *d = f16::from_f32(s);
        }
    }

    /// Keys of `layer`: `n_ctx` rows of `kv_dim`.
    pub fn keys(&self, layer: usize) -> &[f16] {
        &self.k[self.span(layer)]
    }

    /// Values of `layer`: `n_ctx` rows of `kv_dim`.
    pub fn values(&self, layer: usize) -> &[f16] {
        &self.v[self.span(layer)]
    }
}

/// `n` zero f16 values, allocated zeroed (calloc): the OS hands out pages as
/// they are first written, so a large context costs memory only as it fills.
fn zeroed(n: usize) -> Vec<f16> {
    use half::vec::HalfBitsVecExt;
    vec![0u16; n].reinterpret_into()
}
