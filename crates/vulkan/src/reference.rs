//! [`Reference`]: the [`Ops`] computed at once on the CPU, in plain scalar
//! code: products by `sparetire_quant`'s scalar `vec_dot` against activations
//! quantized as the CPU quantizes them, norms and softmax sums in f64,
//! attention as llama.cpp's CPU kernels round it. What the parity harness
//! checks the Vulkan kernels against.

use std::cell::RefCell;

use half::f16;
use sparetire_models::layers::mlp::{geglu, silu};
use sparetire_models::layers::rope::{rope_apply, rope_table, RopeStyle};
use sparetire_quant::GgmlType;

use crate::error::VulkanError;
use crate::ops::{Attention, Binary, Glu, HostWeight, Ints, Ops, Rope, BLOCK, F16_ATTENTION_BELOW};

/// The CPU reference backend.
#[derive(Default)]
pub struct Reference {
    ints: Vec<u32>,
}

/// A reference weight: dequantized to f32, `(rows, cols)`.
pub struct RefWeight {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    /// Dequantized (for row lookups).
    w: Vec<f32>,
    /// The bytes (for products).
    data: Vec<u8>,
}

/// A reference cache: f16 rows.
pub struct RefCache {
    width: usize,
    rows: RefCell<Vec<f16>>,
}

impl Reference {
    fn ints_of(&self, i: Ints) -> &[u32] {
        &self.ints[i.off..i.off + i.len]
    }

    fn slot(table: &[u32], pos: usize) -> usize {
        table[pos / BLOCK] as usize * BLOCK + pos % BLOCK
    }
}

type Buf = RefCell<Vec<f32>>;

impl Ops for Reference {
    type Buf = Buf;
    type Weight = RefWeight;
    type Cache = RefCache;

    fn name(&self) -> String {
        "cpu reference".into()
    }

    fn max_values(&self) -> usize {
        usize::MAX
    }

    fn buf(&mut self, len: usize) -> Result<Buf, VulkanError> {
        Ok(RefCell::new(vec![0.0; len]))
    }

    fn write(&mut self, dst: &Buf, data: &[f32]) -> Result<(), VulkanError> {
        dst.borrow_mut()[..data.len()].copy_from_slice(data);
        Ok(())
    }

    fn read(&mut self, src: &Buf, off: usize, len: usize) -> Result<Vec<f32>, VulkanError> {
        Ok(src.borrow()[off..off + len].to_vec())
    }

    fn weight(&mut self, w: &HostWeight<'_>) -> Result<RefWeight, VulkanError> {
        let mut out = vec![0f32; w.rows * w.cols];
        sparetire_quant::dequantize_row(w.ty, w.data, &mut out)
            .map_err(|e| VulkanError::Invalid(e.to_string()))?;
        Ok(RefWeight {
            ty: w.ty,
            rows: w.rows,
            cols: w.cols,
            w: out,
            data: w.data.to_vec(),
        })
    }

    fn cache(&mut self, rows: usize, width: usize) -> Result<RefCache, VulkanError> {
        Ok(RefCache {
            width,
            rows: RefCell::new(vec![f16::ZERO; rows * width]),
        })
    }

    fn ints(&mut self, data: &[u32]) -> Result<Ints, VulkanError> {
        let off = self.ints.len();
        self.ints.extend_from_slice(data);
        Ok(Ints {
            off,
            len: data.len(),
        })
    }

    fn finish(&mut self) -> Result<(), VulkanError> {
        self.ints.clear();
        Ok(())
    }

    fn get_rows(
        &mut self,
        w: &RefWeight,
        ids: Ints,
        scale: f32,
        out: &Buf,
    ) -> Result<(), VulkanError> {
        let mut o = out.borrow_mut();
        for (t, &id) in self.ints_of(ids).iter().enumerate() {
            let row = &w.w[id as usize * w.cols..(id as usize + 1) * w.cols];
            for (d, &s) in o[t * w.cols..(t + 1) * w.cols].iter_mut().zip(row) {
                *d = s * scale;
            }
        }
        Ok(())
    }

    fn matmul(
        &mut self,
        w: &RefWeight,
        x: &Buf,
        x_off: usize,
        n: usize,
        y: &Buf,
    ) -> Result<(), VulkanError> {
        // ggml's scalar dot product of each weight row with the activation row
        // quantized to the weight type's activation format, as the CPU computes it.
        let err = |e: sparetire_quant::QuantError| VulkanError::Invalid(e.to_string());
        let xs = x.borrow()[x_off..x_off + n * w.cols].to_vec();
        let at = w.ty.vec_dot_type();
        let act_bytes = at
            .row_bytes(w.cols)
            .ok_or_else(|| VulkanError::Invalid(format!("{} values as {}", w.cols, at.name())))?;
        let row_bytes = w.data.len() / w.rows.max(1);
        let mut act = vec![0u8; act_bytes];
        let mut ys = y.borrow_mut();
        for t in 0..n {
            sparetire_quant::quantize_activation_row(
                at,
                &xs[t * w.cols..(t + 1) * w.cols],
                &mut act,
            )
            .map_err(err)?;
            for r in 0..w.rows {
                let wr = &w.data[r * row_bytes..(r + 1) * row_bytes];
                ys[t * w.rows + r] =
                    sparetire_quant::reference::vec_dot(w.ty, w.cols, wr, &act).map_err(err)?;
            }
        }
        Ok(())
    }

    fn rms_norm(
        &mut self,
        x: &Buf,
        w: &Buf,
        rows: usize,
        width: usize,
        eps: f32,
        out: &Buf,
    ) -> Result<(), VulkanError> {
        let xs = x.borrow()[..rows * width].to_vec();
        let ws = w.borrow()[..width].to_vec();
        let mut o = out.borrow_mut();
        for (xr, or) in xs.chunks_exact(width).zip(o.chunks_exact_mut(width)) {
            let ms: f64 = xr.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / width as f64;
            let s = 1.0 / (ms + eps as f64).sqrt();
            for ((d, &v), &g) in or.iter_mut().zip(xr).zip(&ws) {
                *d = (v as f64 * s) as f32 * g;
            }
        }
        Ok(())
    }

    fn softmax(
        &mut self,
        x: &Buf,
        rows: usize,
        width: usize,
        scale: f32,
    ) -> Result<(), VulkanError> {
        let mut xs = x.borrow_mut();
        for row in xs[..rows * width].chunks_exact_mut(width) {
            let m = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64 * scale as f64));
            let e: Vec<f64> = row
                .iter()
                .map(|&v| (v as f64 * scale as f64 - m).exp())
                .collect();
            let sum: f64 = e.iter().sum();
            for (d, v) in row.iter_mut().zip(e) {
                *d = (v / sum) as f32;
            }
        }
        Ok(())
    }

    fn rope(&mut self, x: &Buf, r: &Rope) -> Result<(), VulkanError> {
        let mut xs = x.borrow_mut();
        let half = r.n_rot / 2;
        let (mut cos, mut sin) = (vec![0f32; half], vec![0f32; half]);
        let width = r.n_head * r.head_dim;
        let style = if r.neox {
            RopeStyle::Neox
        } else {
            RopeStyle::Normal
        };
        for t in 0..r.n {
            rope_table(r.pos0 + t, r.n_rot, r.base, &mut cos, &mut sin);
            rope_apply(
                &mut xs[t * width..(t + 1) * width],
                r.head_dim,
                style,
                &cos,
                &sin,
            );
        }
        Ok(())
    }

    fn glu(&mut self, kind: Glu, gate: &Buf, up: &Buf, n: usize) -> Result<(), VulkanError> {
        let us = up.borrow()[..n].to_vec();
        let mut g = gate.borrow_mut();
        for (x, &u) in g[..n].iter_mut().zip(&us) {
            if kind == Glu::SwiGlu {
                *x = silu(*x) * u;
            }
        }
        if kind == Glu::GeGlu {
            geglu(&mut g[..n], &us);
        }
        Ok(())
    }

    fn binary(
        &mut self,
        op: Binary,
        a: &Buf,
        b: &Buf,
        b_len: usize,
        n: usize,
        out: &Buf,
    ) -> Result<(), VulkanError> {
        let (av, bv) = (
            a.borrow()[..n].to_vec(),
            b.borrow()[..b_len.min(n)].to_vec(),
        );
        let mut o = out.borrow_mut();
        for (i, d) in o[..n].iter_mut().enumerate() {
            let y = bv[i % bv.len()];
            *d = match op {
                Binary::Add => av[i] + y,
                Binary::Mul => av[i] * y,
            };
        }
        Ok(())
    }

    fn scale(&mut self, a: &Buf, s: f32, n: usize, out: &Buf) -> Result<(), VulkanError> {
        let av = a.borrow()[..n].to_vec();
        let mut o = out.borrow_mut();
        for (d, v) in o[..n].iter_mut().zip(av) {
            *d = v * s;
        }
        Ok(())
    }

    fn kv_store(
        &mut self,
        src: &Buf,
        rows: usize,
        width: usize,
        dst: &RefCache,
        table: Ints,
        pos0: usize,
    ) -> Result<(), VulkanError> {
        let table = self.ints_of(table).to_vec();
        let s = src.borrow();
        let mut c = dst.rows.borrow_mut();
        for t in 0..rows {
            let at = Self::slot(&table, pos0 + t) * width;
            for (d, &v) in c[at..at + width]
                .iter_mut()
                .zip(&s[t * width..(t + 1) * width])
            {
                *d = f16::from_f32(v);
            }
        }
        Ok(())
    }

    fn copy_rows(
        &mut self,
        cache: &RefCache,
        width: usize,
        from: usize,
        to: usize,
        n: usize,
    ) -> Result<(), VulkanError> {
        cache
            .rows
            .borrow_mut()
            .copy_within(from * width..(from + n) * width, to * width);
        Ok(())
    }

    fn attention(
        &mut self,
        q: &Buf,
        k: &RefCache,
        v: &RefCache,
        table: Ints,
        a: &Attention,
        out: &Buf,
    ) -> Result<(), VulkanError> {
        let table = self.ints_of(table).to_vec();
        let (qs, ks, vs) = (q.borrow(), k.rows.borrow(), v.rows.borrow());
        let mut o = out.borrow_mut();
        let (hd, width, kv_w) = (a.head_dim, a.n_head * a.head_dim, k.width);
        let group = a.n_head / a.n_head_kv;
        let f16acc = a.n < F16_ATTENTION_BELOW;
        for t in 0..a.n {
            let hi = a.pos0 + t;
            let lo = a.window.map_or(0, |w| (hi + 1).saturating_sub(w));
            for h in 0..a.n_head {
                let qr = &qs[t * width + h * hd..t * width + (h + 1) * hd];
                let kvo = (h / group) * hd;
                if f16acc {
                    let at = |p: usize| Self::slot(&table, p) * kv_w + kvo;
                    let o = &mut o[t * width + h * hd..t * width + (h + 1) * hd];
                    attend_f16(qr, &ks, &vs, lo, hi, &at, a.scale, o);
                    continue;
                }
                let scores: Vec<f64> = (lo..=hi)
                    .map(|p| {
                        let at = Self::slot(&table, p) * kv_w + kvo;
                        let dot: f64 = qr
                            .iter()
                            .zip(&ks[at..at + hd])
                            .map(|(&x, &y)| x as f64 * y.to_f64())
                            .sum();
                        dot * a.scale as f64
                    })
                    .collect();
                let m = scores.iter().fold(f64::NEG_INFINITY, |m, &s| m.max(s));
                let e: Vec<f64> = scores.iter().map(|&s| (s - m).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..hd {
                    let acc: f64 = (lo..=hi)
                        .zip(&e)
                        .map(|(p, &w)| w * vs[Self::slot(&table, p) * kv_w + kvo + d].to_f64())
                        .sum();
                    o[t * width + h * hd + d] = (acc / sum) as f32;
                }
            }
        }
        Ok(())
    }
}

/// One query head over keys `lo ..= hi` as llama.cpp's CPU flash attention
/// computes small batches: f16 query, keys one at a time with the running
/// maximum, the value accumulator rounded to f16 after every step.
#[allow(clippy::too_many_arguments)] // why: one head's inputs, named as the kernel names them
fn attend_f16(
    q: &[f32],
    ks: &[f16],
    vs: &[f16],
    lo: usize,
    hi: usize,
    at: &dyn Fn(usize) -> usize,
    scale: f32,
    out: &mut [f32],
) {
    let r16 = |x: f32| f16::from_f32(x).to_f32();
    let q16: Vec<f32> = q.iter().map(|&x| r16(x)).collect();
    let mut acc = vec![0f32; q.len()];
    let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
    for p in lo..=hi {
        let k = &ks[at(p)..at(p) + q.len()];
        let s: f32 = q16.iter().zip(k).map(|(&x, y)| x * y.to_f32()).sum::<f32>() * scale;
        let (mut ms, mut w) = (1f32, 1f32);
        if s > max {
            ms = (max - s).exp();
            max = s;
            acc.iter_mut().for_each(|a| *a = r16(*a * ms));
        } else {
            w = (s - max).exp();
        }
        for (a, v) in acc.iter_mut().zip(&vs[at(p)..at(p) + q.len()]) {
            *a = r16(v.to_f32().mul_add(w, *a));
        }
        sum = sum.mul_add(ms, w);
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (o, a) in out.iter_mut().zip(acc) {
        *o = a * inv;
    }
}
