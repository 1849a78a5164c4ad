#!/usr/bin/env python3
"""Regenerate tests/golden/quant/<TYPE>.bin for sparetire-quant's golden tests.

Expected values come from gguf-py (pip `gguf` 0.19): `gguf.quants.dequantize`, and
`gguf.quants.quantize` for the types it can quantize (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
Q8_0), whose quantizers are bit-exact ports of llama.cpp's quantize_row_*_ref. gguf cannot
quantize K-quants, so their blocks are random bytes with finite, moderate f16 scale fields.
gguf has no Q8_1/Q8_K (activation-only types); their expected values are computed here with
ggml's formula (d * q in f32), which is a single rounding and so order-independent.

File layout (little-endian):
    b"SPQG", u32 version (1), u32 ggml type id, u32 n elements, u32 has_src (0/1),
    [n f32: the source data gguf quantized, if has_src],
    [row bytes: the quantized blocks],
    [n f32: the dequantized values].

Run from the repository root: python3 scripts/gen_quant_goldens.py
"""

import struct
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = Path(__file__).resolve().parent.parent / "tests" / "golden" / "quant"
IDS = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q8_1": 9,
       "Q2_K": 10, "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "Q8_K": 15, "BF16": 30}
rng = np.random.default_rng(20261129)


def source_data(n: int) -> np.ndarray:
    """Random values with the cases that matter: varied block scales, an all-zero block,
    exact ties, a block whose extreme element is negative."""
    x = rng.standard_normal(n).astype(np.float32)
    x *= np.repeat(np.float32(10.0) ** rng.uniform(-3, 2, n // 32), 32).astype(np.float32)
    x[32:64] = 0.0                       # d == 0 path
    x[64:96] = np.arange(-16, 16, dtype=np.float32) * np.float32(0.5)   # many .5 ties
    x[96:128] = np.abs(x[96:128]); x[100] = -3 * np.abs(x[96:128]).max()  # negative extreme
    return x


def f16_field(n_blocks: int, lo: float, hi: float, signed: bool = False) -> np.ndarray:
    v = rng.uniform(lo, hi, n_blocks)
    if signed:
        v *= rng.choice([-1.0, 1.0], n_blocks)
    return v.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)


def k_quant_blocks(name: str, n_blocks: int) -> np.ndarray:
    size = {"Q2_K": 84, "Q3_K": 110, "Q4_K": 144, "Q5_K": 176, "Q6_K": 210}[name]
    b = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    if name == "Q2_K":
        b[:, 80:82] = f16_field(n_blocks, 1e-3, 0.1)
        b[:, 82:84] = f16_field(n_blocks, 1e-3, 0.1)
    elif name == "Q3_K":
        b[:, 108:110] = f16_field(n_blocks, 1e-3, 0.1, signed=True)
    elif name in ("Q4_K", "Q5_K"):
        b[:, 0:2] = f16_field(n_blocks, 1e-3, 0.1)
        b[:, 2:4] = f16_field(n_blocks, 1e-3, 0.1)
    elif name == "Q6_K":
        b[:, 208:210] = f16_field(n_blocks, 1e-4, 0.01, signed=True)
    return b


def q8_blocks(name: str, n_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    q = rng.integers(-127, 128, (n_blocks, 256 if name == "Q8_K" else 32)).astype(np.int8)
    if name == "Q8_K":
        d = rng.uniform(-0.1, 0.1, (n_blocks, 1)).astype(np.float32)
        bsums = q.reshape(n_blocks, 16, 16).astype(np.int16).sum(axis=2, dtype=np.int16)
        raw = np.concatenate([d.view(np.uint8), q.view(np.uint8), bsums.view(np.uint8)], axis=1)
        return raw, (d * q.astype(np.float32))
    d16 = rng.uniform(1e-3, 0.1, (n_blocks, 1)).astype(np.float16)
    s16 = (d16.astype(np.float32) * q.astype(np.float32).sum(axis=1, keepdims=True)).astype(np.float16)
    raw = np.concatenate([d16.view(np.uint8), s16.view(np.uint8), q.view(np.uint8)], axis=1)
    return raw, (d16.astype(np.float32) * q.astype(np.float32))


def write(name: str, raw: np.ndarray, values: np.ndarray, src: np.ndarray | None) -> None:
    values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    head = b"SPQG" + struct.pack("<IIII", 1, IDS[name], values.size, 0 if src is None else 1)
    body = b"" if src is None else np.ascontiguousarray(src, dtype="<f4").tobytes()
    body += np.ascontiguousarray(raw, dtype=np.uint8).tobytes() + values.astype("<f4").tobytes()
    (OUT / f"{name}.bin").write_bytes(head + body)
    print(f"{name}: {values.size} elements, {raw.size} bytes")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]:
        qt = getattr(T, name)
        n = 64 if name in ("F32", "F16", "BF16") else 256
        x = source_data(max(n, 128))[:n] if n >= 128 else rng.standard_normal(n).astype(np.float32)
        if name == "BF16":  # include round-to-even ties and a NaN-free extreme
            x[:4] = np.array([0x3F808000, 0x3F818000, 0x7F7FFFFF, 0x00000001], dtype=np.uint32).view(np.float32)
        raw = quants.quantize(x.reshape(1, -1), qt).reshape(-1).view(np.uint8)
        values = quants.dequantize(raw.reshape(1, -1), qt)
        write(name, raw, values, x)
    for name in ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]:
        raw = k_quant_blocks(name, 3)
        write(name, raw, quants.dequantize(raw.reshape(1, -1), getattr(T, name)), None)
    for name in ["Q8_1", "Q8_K"]:
        raw, values = q8_blocks(name, 3 if name == "Q8_K" else 8)
        write(name, raw, values, None)


if __name__ == "__main__" and "--llama-build" not in __import__("sys").argv:
    main()


# ---------------------------------------------------------------------------------------------
# Optional: goldens from a llama.cpp build (scripts/build_llamacpp.sh), via ctypes.
#   python3 scripts/gen_quant_goldens.py --llama-build <llama.cpp>/build/bin
# writes tests/golden/quant/llamacpp/<TYPE>.bin:
#   b"SPQL", u32 version (1), u32 weight type id, u32 n,
#   n f32 weight source, row bytes of quantize_row_<type>_ref(source),
#   n f32 activation source, row bytes of the CPU backend's from_float for the vec_dot type
#   (quantize_row_q8_0 / q8_1 / q8_K, the x86 SIMD variants on an x86 build),
#   f32 ggml_vec_dot_<type>_<vdt> (the dispatched SIMD kernel), f32 the _generic kernel.
# K-quant quantization and the activation quantizers are checked byte-exact against these.

LLAMA_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
VDT = {"Q4_0": "q8_0", "Q5_0": "q8_0", "Q8_0": "q8_0", "Q4_1": "q8_1", "Q5_1": "q8_1"}
SIZES = {"Q4_0": 18, "Q4_1": 20, "Q5_0": 22, "Q5_1": 24, "Q8_0": 34, "Q8_1": 36, "Q2_K": 84,
         "Q3_K": 110, "Q4_K": 144, "Q5_K": 176, "Q6_K": 210, "Q8_K": 292}


def llama_goldens(build: Path) -> None:
    import ctypes

    base = ctypes.CDLL(str(build / "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
    cpu = ctypes.CDLL(str(build / "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
    cpu.ggml_cpu_init()  # fills the f16 -> f32 table the CPU kernels read
    out = OUT / "llamacpp"
    out.mkdir(parents=True, exist_ok=True)
    n = 1024
    fptr = ctypes.POINTER(ctypes.c_float)
    for name in LLAMA_TYPES:
        vdt = VDT.get(name, "q8_K")
        xw = (rng.standard_normal(n) * np.repeat(10.0 ** rng.uniform(-3, 1, n // 32), 32)).astype(np.float32)
        xa = (rng.standard_normal(n) * np.repeat(10.0 ** rng.uniform(-2, 1, n // 32), 32)).astype(np.float32)
        w = np.zeros(n // (256 if name.endswith("K") else 32) * SIZES[name], dtype=np.uint8)
        a = np.zeros(n // (256 if vdt == "q8_K" else 32) * SIZES[vdt.upper()], dtype=np.uint8)
        qref = getattr(base, f"quantize_row_{name.lower().replace('_k', '_K')}_ref")
        qref(xw.ctypes.data_as(fptr), w.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(n))
        getattr(cpu, f"quantize_row_{vdt}")(xa.ctypes.data_as(fptr), a.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(n))
        dots = []
        for suffix in ["", "_generic"]:
            f = getattr(cpu, f"ggml_vec_dot_{name.lower().replace('_k', '_K')}_{vdt}{suffix}")
            s = ctypes.c_float(0)
            f(ctypes.c_int(n), ctypes.byref(s), ctypes.c_size_t(0), w.ctypes.data_as(ctypes.c_void_p),
              ctypes.c_size_t(0), a.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(0), ctypes.c_int(1))
            dots.append(s.value)
        blob = b"SPQL" + struct.pack("<III", 1, IDS[name], n) + xw.astype("<f4").tobytes() + w.tobytes()
        blob += xa.astype("<f4").tobytes() + a.tobytes() + struct.pack("<ff", *dots)
        (out / f"{name}.bin").write_bytes(blob)
        print(f"llamacpp {name}: dot {dots[0]} (generic {dots[1]})")


if __name__ == "__main__" and "--llama-build" in __import__("sys").argv:
    import sys
    llama_goldens(Path(sys.argv[sys.argv.index("--llama-build") + 1]))
