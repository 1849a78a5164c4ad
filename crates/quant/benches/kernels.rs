//! Micro-benchmarks of the hot kernels: dot products on every ISA this CPU
//! has (the scalar reference included), single-token and batched products of
//! model-sized matrices on every ISA, activation quantization, and the thread
//! pool's cost per parallel operation.
//!
//! `cargo bench -p sparetire-quant --bench kernels` (docs/PERFORMANCE.md
//! shows a run).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sparetire_quant::simd::{vec_dot_with, Isa};
use sparetire_quant::{
    matmul_on, quantize_activation_row, quantize_row, Arithmetic, GgmlType, ThreadPool, WeightView,
};

/// The weight types the shipped models use.
const TYPES: [GgmlType; 6] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
];

fn noise(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1 << 24) as f32 - 0.5
        })
        .collect()
}

fn quantized(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut q = vec![0u8; ty.row_bytes(x.len()).expect("whole blocks")];
    quantize_row(ty, x, &mut q).expect("a weight type");
    q
}

fn activation(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let act = ty.vec_dot_type();
    let mut q = vec![0u8; act.row_bytes(x.len()).expect("whole blocks")];
    quantize_activation_row(act, x, &mut q).expect("an activation type");
    q
}

/// One 4096-element dot product per type and ISA (GB/s of weight bytes).
fn dot(c: &mut Criterion) {
    let n = 4096;
    let (w, x) = (noise(n, 1), noise(n, 2));
    let mut g = c.benchmark_group("vec_dot_4096");
    for ty in TYPES {
        let (wq, aq) = (quantized(ty, &w), activation(ty, &x));
        g.throughput(Throughput::Bytes(wq.len() as u64));
        for isa in Isa::available() {
            g.bench_with_input(
                BenchmarkId::new(ty.name(), format!("{isa:?}")),
                &isa,
                |b, &isa| {
                    b.iter(|| vec_dot_with(isa, ty, n, black_box(&wq), black_box(&aq)).unwrap())
                },
            );
        }
    }
    g.finish();
}

/// SmolLM2's feed-forward up projection (1536 × 576 Q4_1), Gemma 3's gate/up
/// projection (2048 × 640 Q5_0) and down projection (640 × 2048, Q4_K and
/// Q6_K), for 1 token (decode), 4 (a small batch) and 64 (prefill), one
/// thread, on every ISA.
fn products(c: &mut Criterion) {
    let pool = ThreadPool::new(1);
    let mut g = c.benchmark_group("matmul");
    g.sample_size(10);
    for (ty, rows, cols) in [
        (GgmlType::Q4_1, 1536, 576),
        (GgmlType::Q5_0, 2048, 640),
        (GgmlType::Q4_K, 640, 2048),
        (GgmlType::Q6_K, 640, 2048),
    ] {
        let wq = quantized(ty, &noise(rows * cols, 3));
        let w = WeightView {
            ty,
            data: &wq,
            rows,
            cols,
        };
        for n in [1usize, 4, 64] {
            let x = noise(n * cols, 4);
            let mut y = vec![0f32; n * rows];
            g.throughput(Throughput::Bytes(wq.len() as u64));
            for isa in Isa::available() {
                g.bench_function(
                    BenchmarkId::new(
                        format!("{}_{rows}x{cols}_{n}tok", ty.name()),
                        format!("{isa:?}"),
                    ),
                    |b| {
                        b.iter(|| {
                            matmul_on(
                                isa,
                                &pool,
                                &w,
                                black_box(&x),
                                n,
                                &mut y,
                                Arithmetic::Reference,
                            )
                            .unwrap()
                        })
                    },
                );
            }
        }
    }
    g.finish();
}

/// Quantizing one 4096-wide activation row.
fn quantize(c: &mut Criterion) {
    let x = noise(4096, 5);
    let mut g = c.benchmark_group("quantize_activation_4096");
    for act in [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K] {
        let mut q = vec![0u8; act.row_bytes(x.len()).unwrap()];
        g.bench_function(act.name(), |b| {
            b.iter(|| quantize_activation_row(act, black_box(&x), &mut q).unwrap())
        });
    }
    g.finish();
}

/// What one parallel operation costs the pool with nothing to do: the
/// synchronisation every product of a decode step pays.
fn pool_sync(c: &mut Criterion) {
    let mut g = c.benchmark_group("thread_pool_empty_run");
    for n in [1usize, 2] {
        let pool = ThreadPool::new(n);
        g.bench_function(format!("{n}_threads"), |b| {
            b.iter(|| {
                pool.run(|i, _| {
                    black_box(i);
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, dot, products, quantize, pool_sync);
criterion_main!(benches);
