//! [`VkOps`]: the [`Ops`] of a Vulkan device. Every op is recorded into one
//! command buffer (with a barrier after it) and runs when the results are read
//! or [`Ops::finish`] is called.

use std::sync::Arc;

use crate::buffer::Buffer;
use crate::device::{Gpu, Place};
use crate::error::VulkanError;
use crate::kernels::{act_kind, Kernel, MatmulVariant, WType, MATMUL_TOKENS};
use crate::ops::{Attention, Binary, Glu, HostWeight, Ints, Ops, Rope, F16_ATTENTION_BELOW};
use crate::recorder::Recorder;

/// `u32`s the upload area for ids and block tables holds per submission.
const INTS_CAP: usize = 1 << 20;

/// Bytes of the staging buffer uploads and reads go through.
const STAGING: u64 = 64 << 20;

/// A buffer of f32 values in device memory.
pub struct DeviceBuf {
    buf: Buffer,
    len: usize,
}

impl DeviceBuf {
    /// Values it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A weight matrix in device memory, in parts of whole rows that each fit
/// one binding (`maxStorageBufferRange`).
pub struct DeviceWeight {
    ty: WType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    /// (buffer, first row, rows)
    parts: Vec<(Buffer, usize, usize)>,
}

impl DeviceWeight {
    /// Bytes on the device.
    pub fn n_bytes(&self) -> u64 {
        self.parts.iter().map(|(b, _, _)| b.size()).sum()
    }
}

/// f16 rows of one layer of a KV cache in device memory.
pub struct DeviceCache {
    buf: Buffer,
    rows: usize,
    width: usize,
}

/// The operations of one Vulkan device.
pub struct VkOps {
    gpu: Arc<Gpu>,
    rec: Recorder,
    ints: Buffer,
    ints_used: usize,
    staging: Buffer,
    /// Rounded activations of the product being recorded (see
    /// [`crate::kernels::act_kind`]) and their block sums.
    xq: Option<(DeviceBuf, DeviceBuf)>,
    /// Buffers replaced while recording, kept until the work that uses them ran.
    retired: Vec<(DeviceBuf, DeviceBuf)>,
    matmul: MatmulVariant,
}

/// Workgroups for `n` linear groups: x up to 65535, the rest in y.
fn grid(n: usize) -> [u32; 3] {
    const X: usize = 65535;
    if n <= X {
        [n as u32, 1, 1]
    } else {
        [X as u32, n.div_ceil(X) as u32, 1]
    }
}

fn f(x: f32) -> u32 {
    x.to_bits()
}

fn u(x: usize) -> Result<u32, VulkanError> {
    u32::try_from(x).map_err(|_| VulkanError::Invalid(format!("{x} does not fit a shader index")))
}

impl VkOps {
    /// The ops of `gpu`, with the matrix products it runs best (see [`MatmulVariant`]).
    pub fn new(gpu: &Arc<Gpu>) -> Result<VkOps, VulkanError> {
        let variant = if gpu.info().kind == crate::instance::KIND_CPU {
            MatmulVariant::Rows
        } else {
            MatmulVariant::Groups
        };
        VkOps::with_matmul(gpu, variant)
    }

    /// The ops of `gpu` with the given matrix-product variant (the parity harness runs both).
    pub fn with_matmul(gpu: &Arc<Gpu>, matmul: MatmulVariant) -> Result<VkOps, VulkanError> {
        Ok(VkOps {
            gpu: gpu.clone(),
            rec: Recorder::new(gpu)?,
            ints: Buffer::new(
                gpu,
                4 * INTS_CAP as u64,
                Place::Device,
                "ids and block tables",
            )?,
            ints_used: 0,
            staging: Buffer::new(gpu, STAGING, Place::Host, "staging")?,
            xq: None,
            retired: Vec::new(),
            matmul,
        })
    }

    /// The device.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    fn device_buffer(&self, bytes: u64, what: &str) -> Result<Buffer, VulkanError> {
        if bytes > self.gpu.max_binding() {
            return Err(VulkanError::Unsupported(format!(
                "{what} needs a buffer of {bytes} bytes; the device binds at most {}",
                self.gpu.max_binding()
            )));
        }
        Buffer::new(&self.gpu, bytes, Place::Device, what)
    }

    /// Copies `data` into `dst` at byte `off` through the staging buffer.
    fn upload(&mut self, dst: &Buffer, off: u64, data: &[u8]) -> Result<(), VulkanError> {
        self.rec.submit()?;
        let mut at = 0usize;
        while at < data.len() {
            let n = (data.len() - at).min(STAGING as usize);
            self.staging.host()[..n].copy_from_slice(&data[at..at + n]);
            // Copies are in whole words; the tail of the staging word is padding.
            let n4 = (n as u64)
                .next_multiple_of(4)
                .min(dst.size() - off - at as u64);
            self.rec.copy(&self.staging, 0, dst, off + at as u64, n4)?;
            self.rec.submit()?;
            at += n;
        }
        Ok(())
    }

    fn check_len(what: &str, have: usize, need: usize) -> Result<(), VulkanError> {
        if need > have {
            return Err(VulkanError::Invalid(format!(
                "{what}: {need} values needed, the buffer holds {have}"
            )));
        }
        Ok(())
    }
}

impl Ops for VkOps {
    type Buf = DeviceBuf;
    type Weight = DeviceWeight;
    type Cache = DeviceCache;

    fn name(&self) -> String {
        format!(
            "vulkan:{} ({})",
            self.gpu.info().index,
            self.gpu.info().name
        )
    }

    fn max_values(&self) -> usize {
        (self.gpu.max_binding() / 4) as usize
    }

    fn buf(&mut self, len: usize) -> Result<DeviceBuf, VulkanError> {
        Ok(DeviceBuf {
            buf: self.device_buffer(4 * len as u64, "an activation buffer")?,
            len,
        })
    }

    fn write(&mut self, dst: &DeviceBuf, data: &[f32]) -> Result<(), VulkanError> {
        Self::check_len("write", dst.len, data.len())?;
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.upload(&dst.buf, 0, &bytes)
    }

    fn read(&mut self, src: &DeviceBuf, off: usize, len: usize) -> Result<Vec<f32>, VulkanError> {
        Self::check_len("read", src.len, off + len)?;
        let mut out = Vec::with_capacity(len);
        let per = STAGING as usize / 4;
        let mut at = 0;
        while at < len {
            let n = (len - at).min(per);
            self.rec.copy(
                &src.buf,
                4 * (off + at) as u64,
                &self.staging,
                0,
                4 * n as u64,
            )?;
            self.rec.submit()?;
            let host = self.staging.host();
            out.extend(
                host[..4 * n]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            at += n;
        }
        Ok(out)
    }

    fn weight(&mut self, w: &HostWeight<'_>) -> Result<DeviceWeight, VulkanError> {
        let ty = WType::of(w.ty).ok_or_else(|| {
            VulkanError::Unsupported(format!("weights of type {} on Vulkan", w.ty.name()))
        })?;
        let row_bytes =
            w.ty.row_bytes(w.cols)
                .filter(|&rb| rb * w.rows == w.data.len())
                .ok_or_else(|| {
                    VulkanError::Invalid(format!(
                        "a {}x{} {} weight of {} bytes",
                        w.rows,
                        w.cols,
                        w.ty.name(),
                        w.data.len()
                    ))
                })?;
        let per_part = (self.gpu.max_binding() as usize / row_bytes.max(1)).max(1);
        let mut parts = Vec::new();
        let mut r0 = 0;
        while r0 < w.rows {
            let rows = per_part.min(w.rows - r0);
            let bytes = &w.data[r0 * row_bytes..(r0 + rows) * row_bytes];
            let buf = self.device_buffer(bytes.len() as u64, "a weight matrix")?;
            self.upload(&buf, 0, bytes)?;
            parts.push((buf, r0, rows));
            r0 += rows;
        }
        Ok(DeviceWeight {
            ty,
            rows: w.rows,
            cols: w.cols,
            row_bytes,
            parts,
        })
    }

    fn cache(&mut self, rows: usize, width: usize) -> Result<DeviceCache, VulkanError> {
        if !width.is_multiple_of(2) {
            return Err(VulkanError::Invalid(format!(
                "cache rows of odd width {width}"
            )));
        }
        Ok(DeviceCache {
            buf: self.device_buffer(2 * (rows * width) as u64, "the KV cache")?,
            rows,
            width,
        })
    }

    fn ints(&mut self, data: &[u32]) -> Result<Ints, VulkanError> {
        let off = self.ints_used;
        if off + data.len() > INTS_CAP {
            return Err(VulkanError::Invalid(format!(
                "more than {INTS_CAP} ids and block-table entries in one submission"
            )));
        }
        for (i, chunk) in data.chunks(16384).enumerate() {
            let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
            let at = 4 * (off + i * 16384) as u64;
            self.rec.update(&self.ints, at, &bytes)?;
        }
        self.ints_used += data.len();
        Ok(Ints {
            off,
            len: data.len(),
        })
    }

    fn finish(&mut self) -> Result<(), VulkanError> {
        self.rec.submit()?;
        self.ints_used = 0;
        self.retired.clear();
        Ok(())
    }

    fn get_rows(
        &mut self,
        w: &DeviceWeight,
        ids: Ints,
        scale: f32,
        out: &DeviceBuf,
    ) -> Result<(), VulkanError> {
        Self::check_len("get_rows", out.len, ids.len * w.cols)?;
        for (buf, r0, rows) in &w.parts {
            let push = [
                u(w.cols)?,
                u(ids.len)?,
                u(w.row_bytes)?,
                u(*r0)?,
                u(*rows)?,
                f(scale),
                u(ids.off)?,
            ];
            let groups = [u(w.cols.div_ceil(8).div_ceil(64))?, u(ids.len)?, 1];
            self.rec.dispatch(
                Kernel::GetRows(w.ty),
                &[buf, &self.ints, &out.buf],
                &push,
                groups,
            )?;
        }
        Ok(())
    }

    fn matmul(
        &mut self,
        w: &DeviceWeight,
        x: &DeviceBuf,
        x_off: usize,
        n: usize,
        y: &DeviceBuf,
    ) -> Result<(), VulkanError> {
        Self::check_len("matmul input", x.len, x_off + n * w.cols)?;
        Self::check_len("matmul output", y.len, n * w.rows)?;
        let count = n * w.cols;
        let (x, x_off) = match act_kind(w.ty.ggml()) {
            None => (x, x_off),
            Some(kind) => {
                if self.xq.as_ref().is_none_or(|(b, _)| b.len < count) {
                    let grown = (self.buf(count)?, self.buf(count.div_ceil(32))?);
                    if let Some(old) = self.xq.replace(grown) {
                        self.retired.push(old);
                    }
                }
                let Some((xq, sums)) = self.xq.as_ref() else {
                    return Err(VulkanError::Invalid("no activation buffer".into()));
                };
                let bs = if kind == 1 { 256 } else { 32 };
                let push = [u(count)?, u(x_off)?, kind];
                self.rec.dispatch(
                    Kernel::QuantAct,
                    &[&x.buf, &xq.buf, &sums.buf],
                    &push,
                    grid(count.div_ceil(bs)),
                )?;
                (xq, 0)
            }
        };
        for (buf, r0, rows) in &w.parts {
            let push = [
                u(*rows)?,
                u(w.cols)?,
                u(n)?,
                u(w.row_bytes)?,
                u(x_off)?,
                0,
                u(w.rows)?,
                u(*r0)?,
                u32::from(x_off.is_multiple_of(4) && w.cols.is_multiple_of(4)),
            ];
            let tiles = u(n.div_ceil(MATMUL_TOKENS))?;
            let (kernel, groups) = match self.matmul {
                MatmulVariant::Groups => (
                    Kernel::Matmul(w.ty),
                    [u((*rows).min(65535))?, tiles, u(rows.div_ceil(65535))?],
                ),
                MatmulVariant::Rows => {
                    (Kernel::MatmulRows(w.ty), [u(rows.div_ceil(64))?, tiles, 1])
                }
            };
            let sums = self.xq.as_ref().map_or(&x.buf, |(_, s)| &s.buf);
            self.rec
                .dispatch(kernel, &[buf, &x.buf, &y.buf, sums], &push, groups)?;
        }
        Ok(())
    }

    fn rms_norm(
        &mut self,
        x: &DeviceBuf,
        w: &DeviceBuf,
        rows: usize,
        width: usize,
        eps: f32,
        out: &DeviceBuf,
    ) -> Result<(), VulkanError> {
        Self::check_len("rms_norm", x.len.min(out.len), rows * width)?;
        Self::check_len("rms_norm weight", w.len, width)?;
        let push = [u(width)?, u(rows)?, f(eps)];
        self.rec.dispatch(
            Kernel::RmsNorm,
            &[&x.buf, &w.buf, &out.buf],
            &push,
            grid(rows),
        )
    }

    fn softmax(
        &mut self,
        x: &DeviceBuf,
        rows: usize,
        width: usize,
        scale: f32,
    ) -> Result<(), VulkanError> {
        Self::check_len("softmax", x.len, rows * width)?;
        let push = [u(width)?, u(rows)?, f(scale)];
        self.rec
            .dispatch(Kernel::Softmax, &[&x.buf], &push, grid(rows))
    }

    fn rope(&mut self, x: &DeviceBuf, r: &Rope) -> Result<(), VulkanError> {
        Self::check_len("rope", x.len, r.n * r.n_head * r.head_dim)?;
        let push = [
            u(r.n)?,
            u(r.n_head)?,
            u(r.head_dim)?,
            u(r.n_rot)?,
            u(r.pos0)?,
            f(r.base),
            u32::from(r.neox),
        ];
        let groups = [u((r.n_rot / 2).div_ceil(64))?, u(r.n_head)?, u(r.n)?];
        self.rec.dispatch(Kernel::Rope, &[&x.buf], &push, groups)
    }

    fn glu(
        &mut self,
        kind: Glu,
        gate: &DeviceBuf,
        up: &DeviceBuf,
        n: usize,
    ) -> Result<(), VulkanError> {
        Self::check_len("glu", gate.len.min(up.len), n)?;
        let push = [u(n)?, u32::from(kind == Glu::GeGlu)];
        self.rec.dispatch(
            Kernel::Glu,
            &[&gate.buf, &up.buf],
            &push,
            grid(n.div_ceil(256)),
        )
    }

    fn binary(
        &mut self,
        op: Binary,
        a: &DeviceBuf,
        b: &DeviceBuf,
        b_len: usize,
        n: usize,
        out: &DeviceBuf,
    ) -> Result<(), VulkanError> {
        Self::check_len("binary", a.len.min(out.len), n)?;
        Self::check_len("binary operand", b.len, b_len.min(n))?;
        let code = match op {
            Binary::Add => 0,
            Binary::Mul => 1,
        };
        let push = [u(n)?, code, u(b_len.max(1))?, 0];
        self.rec.dispatch(
            Kernel::Eltwise,
            &[&a.buf, &b.buf, &out.buf],
            &push,
            grid(n.div_ceil(256)),
        )
    }

    fn scale(
        &mut self,
        a: &DeviceBuf,
        s: f32,
        n: usize,
        out: &DeviceBuf,
    ) -> Result<(), VulkanError> {
        Self::check_len("scale", a.len.min(out.len), n)?;
        let push = [u(n)?, 2, 1, f(s)];
        self.rec.dispatch(
            Kernel::Eltwise,
            &[&a.buf, &a.buf, &out.buf],
            &push,
            grid(n.div_ceil(256)),
        )
    }

    fn kv_store(
        &mut self,
        src: &DeviceBuf,
        rows: usize,
        width: usize,
        dst: &DeviceCache,
        table: Ints,
        pos0: usize,
    ) -> Result<(), VulkanError> {
        Self::check_len("kv_store", src.len, rows * width)?;
        if width != dst.width || (pos0 + rows).div_ceil(crate::ops::BLOCK) > table.len {
            return Err(VulkanError::Invalid(format!(
                "kv_store: rows of {width} into a cache of {}, positions up to {} with {} blocks",
                dst.width,
                pos0 + rows,
                table.len
            )));
        }
        let push = [u(rows)?, u(width)?, u(pos0)?, u(table.off)?];
        self.rec.dispatch(
            Kernel::KvStore,
            &[&src.buf, &dst.buf, &self.ints],
            &push,
            grid((rows * width / 2).div_ceil(256)),
        )
    }

    fn copy_rows(
        &mut self,
        cache: &DeviceCache,
        width: usize,
        from: usize,
        to: usize,
        n: usize,
    ) -> Result<(), VulkanError> {
        if width != cache.width || from.max(to) + n > cache.rows {
            return Err(VulkanError::Invalid(format!(
                "copy_rows {from}..{} to {to} of a cache of {} rows",
                from + n,
                cache.rows
            )));
        }
        let rb = 2 * width as u64;
        self.rec.copy(
            &cache.buf,
            from as u64 * rb,
            &cache.buf,
            to as u64 * rb,
            n as u64 * rb,
        )
    }

    fn attention(
        &mut self,
        q: &DeviceBuf,
        k: &DeviceCache,
        v: &DeviceCache,
        table: Ints,
        a: &Attention,
        out: &DeviceBuf,
    ) -> Result<(), VulkanError> {
        let width = a.n_head * a.head_dim;
        Self::check_len("attention", q.len.min(out.len), a.n * width)?;
        if a.head_dim > 512
            || !a.head_dim.is_multiple_of(2)
            || a.n_head_kv == 0
            || !a.n_head.is_multiple_of(a.n_head_kv)
            || k.width != a.n_head_kv * a.head_dim
            || v.width != k.width
        {
            return Err(VulkanError::Unsupported(format!(
                "attention with {} heads of {} over {} KV heads (cache rows of {})",
                a.n_head, a.head_dim, a.n_head_kv, k.width
            )));
        }
        let push = [
            u(a.n)?,
            u(a.n_head)?,
            u(a.n_head_kv)?,
            u(a.head_dim)?,
            u(a.pos0)?,
            f(a.scale),
            u(a.window.unwrap_or(0))?,
            u(table.off)?,
            u32::from(a.n < F16_ATTENTION_BELOW),
        ];
        self.rec.dispatch(
            Kernel::Attention,
            &[&q.buf, &k.buf, &v.buf, &out.buf, &self.ints],
            &push,
            [u(a.n_head)?, u(a.n)?, 1],
        )
    }
}
