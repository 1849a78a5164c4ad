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


if __name__ == "__main__":
    main()
