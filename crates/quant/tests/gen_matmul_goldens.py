#!/usr/bin/env python3
"""Regenerate crates/quant/tests/golden_matmul/*.bin: llama.cpp's own CPU matmul results.

Each case builds a one-op ggml graph (`ggml_mul_mat`) through ctypes on a llama.cpp build and
computes it with the CPU backend, the weights placed where llama.cpp's model loader puts them:
in the CPU_REPACK buffer (so Q4_0/Q4_K with rows % 8 == 0 are repacked to 8x8 and take the
`ggml_gemm_*`/`ggml_gemv_*` kernels), or in the plain CPU buffer for the rest (where K-quants
with 8+ tokens take the tiled matmul). Weights are quantized by `ggml_quantize_chunk`.

File layout (little-endian): b"SPQM", u32 version (1), u32 ggml type id, u32 rows, u32 cols,
u32 n_tokens, [n_tokens*cols f32 activations], [rows row-bytes weights], [n_tokens*rows f32 y].

usage: python3 crates/quant/tests/gen_matmul_goldens.py [LLAMA_BUILD_BIN]
(default: the reference build in /work/ref/.../build/bin; it must be the AVX2 build whose
results the tests pin).
"""

import ctypes as C
import struct
import sys
from pathlib import Path

import numpy as np

BIN = Path(sys.argv[1] if len(sys.argv) > 1 else
           "/work/ref/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin")
OUT = Path(__file__).resolve().parent / "golden_matmul"
base = C.CDLL(str(BIN / "libggml-base.so"), mode=C.RTLD_GLOBAL)
cpu = C.CDLL(str(BIN / "libggml-cpu.so"), mode=C.RTLD_GLOBAL)

TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14}
GGML_TYPE_F32 = 0


class InitParams(C.Structure):
    _fields_ = [("mem_size", C.c_size_t), ("mem_buffer", C.c_void_p), ("no_alloc", C.c_bool)]


P = C.c_void_p
base.ggml_init.restype = P
base.ggml_init.argtypes = [InitParams]
base.ggml_new_tensor_2d.restype = P
base.ggml_new_tensor_2d.argtypes = [P, C.c_int, C.c_int64, C.c_int64]
base.ggml_mul_mat.restype = P
base.ggml_mul_mat.argtypes = [P, P, P]
base.ggml_new_graph.restype = P
base.ggml_new_graph.argtypes = [P]
base.ggml_build_forward_expand.argtypes = [P, P]
base.ggml_backend_alloc_ctx_tensors_from_buft.restype = P
base.ggml_backend_alloc_ctx_tensors_from_buft.argtypes = [P, P]
base.ggml_backend_tensor_set.argtypes = [P, P, C.c_size_t, C.c_size_t]
base.ggml_backend_tensor_get.argtypes = [P, P, C.c_size_t, C.c_size_t]
base.ggml_backend_graph_compute.restype = C.c_int
base.ggml_backend_graph_compute.argtypes = [P, P]
base.ggml_backend_cpu_buffer_type.restype = P
base.ggml_row_size.restype = C.c_size_t
base.ggml_row_size.argtypes = [C.c_int, C.c_int64]
base.ggml_quantize_chunk.restype = C.c_size_t
base.ggml_quantize_chunk.argtypes = [C.c_int, P, P, C.c_int64, C.c_int64, C.c_int64, P]
base.ggml_free.argtypes = [P]
cpu.ggml_backend_cpu_init.restype = P
cpu.ggml_backend_cpu_set_n_threads.argtypes = [P, C.c_int]
repack_buft_fn = getattr(cpu, "_Z35ggml_backend_cpu_repack_buffer_typev")
repack_buft_fn.restype = P
cpu.ggml_cpu_init()

backend = cpu.ggml_backend_cpu_init()
cpu.ggml_backend_cpu_set_n_threads(backend, 2)
rng = np.random.default_rng(20261129)


def llama_matmul(ty: int, w: bytes, rows: int, cols: int, x: np.ndarray, repack: bool):
    n = x.shape[0]
    cw = base.ggml_init(InitParams(1 << 20, None, True))
    cx = base.ggml_init(InitParams(1 << 20, None, True))
    tw = base.ggml_new_tensor_2d(cw, ty, cols, rows)
    tx = base.ggml_new_tensor_2d(cx, GGML_TYPE_F32, cols, n)
    ty_ = base.ggml_mul_mat(cx, tw, tx)
    g = base.ggml_new_graph(cx)
    base.ggml_build_forward_expand(g, ty_)
    buft = repack_buft_fn() if repack else base.ggml_backend_cpu_buffer_type()
    assert base.ggml_backend_alloc_ctx_tensors_from_buft(cw, buft)
    assert base.ggml_backend_alloc_ctx_tensors_from_buft(cx, base.ggml_backend_cpu_buffer_type())
    wb = C.create_string_buffer(w, len(w))
    base.ggml_backend_tensor_set(tw, wb, 0, len(w))
    xc = np.ascontiguousarray(x, np.float32)
    base.ggml_backend_tensor_set(tx, xc.ctypes.data, 0, xc.nbytes)
    assert base.ggml_backend_graph_compute(backend, g) == 0
    y = np.empty((n, rows), np.float32)
    base.ggml_backend_tensor_get(ty_, y.ctypes.data, 0, y.nbytes)
    base.ggml_free(cw)
    base.ggml_free(cx)
    return y


def case(name: str, rows: int, cols: int, n: int):
    ty = TYPES[name]
    wf = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
    rb = base.ggml_row_size(ty, cols)
    w = C.create_string_buffer(rows * rb)
    base.ggml_quantize_chunk(ty, wf.ctypes.data, w, 0, rows, cols, None)
    w = w.raw[: rows * rb]
    x = rng.standard_normal((n, cols)).astype(np.float32)
    x[0, 7] = np.abs(x[0]).max() * 1.5  # a positive maximum, and (next) a magnitude tie
    if n > 1:
        x[1, 3], x[1, 200] = -2.5, 2.5
    # llama.cpp's loader puts a weight in the repack buffer only where it can repack it (AVX2:
    # Q4_0 and Q4_K with rows % 8 == 0; ggml_repack_get_optimal_repack_type).
    repack = name in ("Q4_0", "Q4_K") and rows % 8 == 0
    y = llama_matmul(ty, w, rows, cols, x, repack)
    path = OUT / f"{name}_r{rows}_c{cols}_n{n}.bin"
    with open(path, "wb") as f:
        f.write(b"SPQM" + struct.pack("<5I", 1, ty, rows, cols, n))
        f.write(x.tobytes() + w + y.tobytes())
    print(path.name)


OUT.mkdir(exist_ok=True)
for n in (1, 3, 4, 6, 9, 13):
    case("Q4_K", 16, 512, n)
    case("Q4_0", 16, 256, n)
for n in (3, 9):
    case("Q4_K", 12, 512, n)
    case("Q4_0", 12, 256, n)
    case("Q5_K", 16, 512, n)
    case("Q6_K", 16, 512, n)
for name in ("Q4_1", "Q5_0", "Q5_1", "Q8_0"):
    case(name, 16, 256, 5)
for name in ("F32", "F16"):  # vec_dot for one token; llamafile's tinyBLAS when rows % 4 == 0
    for rows, n in ((16, 1), (16, 5), (14, 5)):
        case(name, rows, 256, n)
