//! The op parity harness: every Vulkan kernel against the CPU scalar
//! reference (`sparetire_vulkan::reference`), over odd shapes (rows, tokens
//! and widths that are not multiples of the workgroup, block or subgroup
//! size), with an NMSE tolerance per op. Both backends run the very same
//! [`Case`] code through the `Ops` trait.

mod common;

use std::sync::Arc;

use common::{gpu, nmse, Rng};
use sparetire_quant::GgmlType;
use sparetire_vulkan::kernels::{MatmulVariant, WType};
use sparetire_vulkan::ops::{Attention, Binary, Glu, HostWeight, Rope, BLOCK};
use sparetire_vulkan::reference::Reference;
use sparetire_vulkan::{Gpu, Ops, VkOps};

/// One op on given inputs; `run` returns its output.
trait Case {
    fn name(&self) -> String;
    /// Largest NMSE accepted.
    fn tol(&self) -> f64;
    fn run<O: Ops>(&self, ops: &mut O) -> Vec<f32>;
}

/// Runs `c` on the reference and on the device; asserts they agree.
fn check(g: &Arc<Gpu>, c: &impl Case) {
    check_with(g, c, None);
}

/// [`check`] with a given matrix-product variant (`None`: the device's own).
fn check_with(g: &Arc<Gpu>, c: &impl Case, variant: Option<MatmulVariant>) {
    let want = c.run(&mut Reference::default());
    let mut ops = match variant {
        Some(v) => VkOps::with_matmul(g, v).unwrap(),
        None => VkOps::new(g).unwrap(),
    };
    let got = c.run(&mut ops);
    let e = nmse(&got, &want);
    eprintln!("{:<48} NMSE {e:.3e} (tolerance {:.0e})", c.name(), c.tol());
    assert!(e <= c.tol(), "{}: NMSE {e:.3e} > {:.0e}", c.name(), c.tol());
    assert!(
        got.iter().all(|v| v.is_finite()),
        "{}: non-finite output",
        c.name()
    );
}

fn input<O: Ops>(ops: &mut O, v: &[f32]) -> O::Buf {
    let b = ops.buf(v.len()).unwrap();
    ops.write(&b, v).unwrap();
    b
}

fn read<O: Ops>(ops: &mut O, b: &O::Buf, len: usize) -> Vec<f32> {
    let out = ops.read(b, 0, len).unwrap();
    ops.finish().unwrap();
    out
}

fn quantized(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let src = Rng(seed).vec(rows * cols, 1.0);
    let mut out = vec![0u8; rows * ty.row_bytes(cols).unwrap()];
    sparetire_quant::quantize_row(ty, &src, &mut out).unwrap();
    out
}

/// Shapes `(rows, cols, tokens)` per weight type: rows and tokens that divide
/// nothing (the matmul tiles 8 tokens), a few blocks of columns (odd counts
/// for the float types).
fn shapes(t: WType) -> Vec<(usize, usize, usize)> {
    let cols = match t {
        WType::F32 | WType::F16 => [37, 200],
        WType::Q4K | WType::Q6K => [256, 768],
        _ => [32, 224],
    };
    vec![
        (1, cols[0], 1),
        (67, cols[1], 1),
        (13, cols[0], 3),
        (67, cols[1], 9),
        (131, cols[1], 17),
    ]
}

struct Matmul {
    t: WType,
    rows: usize,
    cols: usize,
    n: usize,
    data: Vec<u8>,
    x: Vec<f32>,
}

/// Where the product reads its input from (the output head reads from an offset).
const X_OFF: usize = 5;

impl Matmul {
    fn new(t: WType, rows: usize, cols: usize, n: usize) -> Matmul {
        Matmul {
            t,
            rows,
            cols,
            n,
            data: quantized(t.ggml(), rows, cols, 7 + rows as u64),
            x: Rng(3).vec(X_OFF + n * cols, 1.0),
        }
    }
}

impl Case for Matmul {
    fn name(&self) -> String {
        format!(
            "matmul {:?} {}x{} by {}",
            self.t, self.rows, self.cols, self.n
        )
    }
    fn tol(&self) -> f64 {
        // The same dequantized weights on both sides; only f32 summation order differs.
        1e-10
    }
    fn run<O: Ops>(&self, ops: &mut O) -> Vec<f32> {
        let hw = HostWeight {
            ty: self.t.ggml(),
            rows: self.rows,
            cols: self.cols,
            data: &self.data,
        };
        let w = ops.weight(&hw).unwrap();
        let x = input(ops, &self.x);
        let y = ops.buf(self.n * self.rows).unwrap();
        ops.matmul(&w, &x, X_OFF, self.n, &y).unwrap();
        read(ops, &y, self.n * self.rows)
    }
}

#[test]
fn matmul_every_weight_type_and_variant() {
    let Some(g) = gpu() else { return };
    for variant in [MatmulVariant::Groups, MatmulVariant::Rows] {
        for t in WType::ALL {
            for (rows, cols, n) in shapes(t) {
                eprint!("{variant:?}: ");
                check_with(&g, &Matmul::new(t, rows, cols, n), Some(variant));
            }
        }
    }
}

struct GetRows {
    t: WType,
    rows: usize,
    cols: usize,
    ids: Vec<u32>,
    data: Vec<u8>,
}

impl Case for GetRows {
    fn name(&self) -> String {
        format!(
            "get_rows {:?} {}x{} ids {:?}",
            self.t, self.rows, self.cols, self.ids
        )
    }
    fn tol(&self) -> f64 {
        1e-12
    }
    fn run<O: Ops>(&self, ops: &mut O) -> Vec<f32> {
        let hw = HostWeight {
            ty: self.t.ggml(),
            rows: self.rows,
            cols: self.cols,
            data: &self.data,
        };
        let w = ops.weight(&hw).unwrap();
        let ids = ops.ints(&self.ids).unwrap();
        let out = ops.buf(self.ids.len() * self.cols).unwrap();
        ops.get_rows(&w, ids, 1.5, &out).unwrap();
        read(ops, &out, self.ids.len() * self.cols)
    }
}

#[test]
fn get_rows_every_weight_type() {
    let Some(g) = gpu() else { return };
    for t in WType::ALL {
        let (rows, cols, _) = shapes(t)[3];
        check(
            &g,
            &GetRows {
                t,
                rows,
                cols,
                ids: vec![0, 66, 3, 3, 17],
                data: quantized(t.ggml(), rows, cols, 11),
            },
        );
    }
}

/// RMSNorm over rows of a width that is not a multiple of 64, in place and not.
struct RmsNorm {
    rows: usize,
    width: usize,
    in_place: bool,
}

impl Case for RmsNorm {
    fn name(&self) -> String {
        format!(
            "rms_norm {}x{} in place {}",
            self.rows, self.width, self.in_place
        )
    }
    fn tol(&self) -> f64 {
        1e-11
    }
    fn run<O: Ops>(&self, ops: &mut O) -> Vec<f32> {
        let n = self.rows * self.width;
        let x = input(ops, &Rng(5).vec(n, 3.0));
        let w = input(ops, &Rng(6).vec(self.width, 1.0));
        if self.in_place {
            ops.rms_norm(&x, &w, self.rows, self.width, 1e-6, &x)
                .unwrap();
            read(ops, &x, n)
        } else {
            let out = ops.buf(n).unwrap();
            ops.rms_norm(&x, &w, self.rows, self.width, 1e-6, &out)
                .unwrap();
            read(ops, &out, n)
        }
    }
}

#[test]
fn rms_norm() {
    let Some(g) = gpu() else { return };
    for (rows, width, in_place) in [
        (1, 576, false),
        (5, 67, true),
        (37, 64, true),
        (3, 640, false),
    ] {
        check(
            &g,
            &RmsNorm {
                rows,
                width,
                in_place,
            },
        );
    }
}

struct Softmax {
    rows: usize,
    width: usize,
}

impl Case for Softmax {
    fn name(&self) -> String {
        format!("softmax {}x{}", self.rows, self.width)
    }
    fn tol(&self) -> f64 {
        1e-11
    }
    fn run<O: Ops>(&self, ops: &mut O) -> Vec<f32> {
        let n = self.rows * self.width;
        let x = input(ops, &Rng(8).vec(n, 10.0));
        ops.softmax(&x, self.rows, self.width, 0.7).unwrap();
        read(ops, &x, n)
    }
}

#[test]
fn softmax() {
    let Some(g) = gpu() else { return };
    for (rows, width) in [(1, 1), (3, 1000), (7, 65)] {
        check(&g, &Softmax { rows, width });
    }
}

struct RopeCase(Rope);

impl Case for RopeCase {
    fn name(&self) -> String {
        let r = &self.0;
        format!(
            "rope {} neox {} {}x{}x{} rot {} at {}",
            r.base, r.neox, r.n, r.n_head, r.head_dim, r.n_rot, r.pos0
        )
    }
    fn tol(&self) -> f64 {
        // The device computes each angle with pow(); the CPU by repeated
        // multiplication, as llama.cpp does: angles agree to ~1e-6 relative.
        1e-9
    }
    fn run<O: Ops>(&self, ops: &mut O) -> Vec<f32> {
        let r = &self.0;
        let n = r.n * r.n_head * r.head_dim;
        let x = input(ops, &Rng(9).vec(n, 1.0));
        ops.rope(&x, r).unwrap();
        read(ops, &x, n)
    }
}

#[test]
fn rope_normal_and_neox() {
    let Some(g) = gpu() else { return };
    for neox in [false, true] {
        for (n, n_head, head_dim, n_rot, pos0, base) in [
            (1, 9, 64, 64, 0, 10000.0),
            (3, 5, 64, 32, 7, 10000.0),
            (11, 3, 256, 256, 1000, 1e6),
        ] {
            let r = Rope {
                n,
                n_head,
                head_dim,
                n_rot,
                pos0,
                base,
                neox,
            };
            check(&g, &RopeCase(r));
        }
    }
}

struct GluCase {
    kind: Glu,
    n: usize,
}

impl Case for GluCase {
    fn name(&self) -> String {
        format!("{:?} over {}", self.kind, self.n)
    }
    fn tol(&self) -> f64 {
        1e-10
    }
    fn run<O: Ops>(&self, ops: &mut O) -> Vec<f32> {
        let gate = input(ops, &Rng(10).vec(self.n, 12.0));
        let up = input(ops, &Rng(11).vec(self.n, 2.0));
        ops.glu(self.kind, &gate, &up, self.n).unwrap();
        read(ops, &gate, self.n)
    }
}

#[test]
fn swiglu_and_geglu() {
    let Some(g) = gpu() else { return };
    for kind in [Glu::SwiGlu, Glu::GeGlu] {
        for n in [1, 255, 1537] {
            check(&g, &GluCase { kind, n });
        }
    }
}

/// `op` 0: add, 1: mul, 2: scale; `b_len` < n broadcasts.
struct Eltwise {
    op: u8,
    n: usize,
    b_len: usize,
}

impl Case for Eltwise {
    fn name(&self) -> String {
        let op = ["add", "mul", "scale"][self.op as usize];
        format!("{op} over {} (b of {})", self.n, self.b_len)
    }
    fn tol(&self) -> f64 {
        0.0
    }
    fn run<O: Ops>(&self, ops: &mut O) -> Vec<f32> {
        let a = input(ops, &Rng(12).vec(self.n, 1.0));
        let b = input(ops, &Rng(13).vec(self.b_len, 1.0));
        let out = ops.buf(self.n).unwrap();
        match self.op {
            0 => ops.binary(Binary::Add, &a, &b, self.b_len, self.n, &out),
            1 => ops.binary(Binary::Mul, &a, &b, self.b_len, self.n, &a),
            _ => ops.scale(&a, 0.125, self.n, &a),
        }
        .unwrap();
        let which = if self.op == 0 { &out } else { &a };
        read(ops, which, self.n)
    }
}

#[test]
fn add_mul_scale() {
    let Some(g) = gpu() else { return };
    for op in 0..3 {
        for (n, b_len) in [(1, 1), (1001, 1001), (1001, 77)] {
            check(&g, &Eltwise { op, n, b_len });
        }
    }
}

/// Stores keys and values for positions `0 .. pos0 + n` of a sequence whose
/// blocks are scattered over the cache, copies one block, then attends with
/// the last `n` tokens as queries.
struct Attn {
    a: Attention,
    table: Vec<u32>,
}

impl Case for Attn {
    fn name(&self) -> String {
        let a = &self.a;
        format!(
            "attention {}x{}/{} hd {} at {} window {:?}",
            a.n, a.n_head, a.n_head_kv, a.head_dim, a.pos0, a.window
        )
    }
    fn tol(&self) -> f64 {
        // f16 keys and values on both sides; f32 against f64 sums; below 64 tokens the f16
        // accumulator may round a value one f16 step apart when the score sums differ by an ulp.
        1e-7
    }
    fn run<O: Ops>(&self, ops: &mut O) -> Vec<f32> {
        let a = &self.a;
        let kv_w = a.n_head_kv * a.head_dim;
        let total = a.pos0 + a.n;
        let n_blocks = *self.table.iter().max().unwrap() as usize + 2;
        let kc = ops.cache(n_blocks * BLOCK, kv_w).unwrap();
        let vc = ops.cache(n_blocks * BLOCK, kv_w).unwrap();
        // Block 0 of the sequence is first written to a spare block and copied into place.
        let spare = n_blocks as u32 - 1;
        let mut staged = self.table.clone();
        staged[0] = spare;
        let tab0 = ops.ints(&staged).unwrap();
        let k = input(ops, &Rng(14).vec(total * kv_w, 1.0));
        let v = input(ops, &Rng(15).vec(total * kv_w, 1.0));
        ops.kv_store(&k, total, kv_w, &kc, tab0, 0).unwrap();
        ops.kv_store(&v, total, kv_w, &vc, tab0, 0).unwrap();
        for c in [&kc, &vc] {
            ops.copy_rows(
                c,
                kv_w,
                spare as usize * BLOCK,
                self.table[0] as usize * BLOCK,
                BLOCK,
            )
            .unwrap();
        }
        let tab = ops.ints(&self.table).unwrap();
        let q = input(ops, &Rng(16).vec(a.n * a.n_head * a.head_dim, 1.0));
        let out = ops.buf(a.n * a.n_head * a.head_dim).unwrap();
        ops.attention(&q, &kc, &vc, tab, a, &out).unwrap();
        read(ops, &out, a.n * a.n_head * a.head_dim)
    }
}

#[test]
fn attention_causal_window_gqa() {
    let Some(g) = gpu() else { return };
    let cases: [(usize, usize, usize, usize, usize, Option<usize>); 7] = [
        // (n, n_head, n_head_kv, head_dim, pos0, window)
        (1, 9, 3, 64, 0, None),
        (1, 9, 3, 64, 100, None),
        (21, 9, 3, 64, 0, None),
        (19, 6, 2, 64, 45, None),
        (13, 4, 1, 256, 70, Some(9)),
        (1, 4, 1, 256, 150, Some(64)),
        (67, 2, 2, 32, 3, Some(80)),
    ];
    for (n, n_head, n_head_kv, head_dim, pos0, window) in cases {
        let blocks = (pos0 + n).div_ceil(BLOCK);
        // Blocks in reverse order with gaps, as a pool hands them out after reuse.
        let table: Vec<u32> = (0..blocks as u32).rev().map(|i| 2 * i + 1).collect();
        let a = Attention {
            n,
            n_head,
            n_head_kv,
            head_dim,
            pos0,
            scale: 1.0 / (head_dim as f32).sqrt(),
            window,
        };
        check(&g, &Attn { a, table });
    }
}
