// dequant8(row_byte, u, v): elements 8u .. 8u+7 of the weight row starting at byte
// `row_byte` of W, in f32. One variant per weight type, chosen by a TYPE_* define; the block
// layouts are ggml's (see sparetire_quant::blocks).

#if defined(TYPE_F32)
void dequant8(uint row_byte, uint u, uint cols, out float v[8]) {
    for (uint i = 0; i < 8; i++) {
        uint e = u * 8 + i;
        v[i] = e < cols ? uintBitsToFloat(W[(row_byte >> 2) + e]) : 0.0;
    }
}
#elif defined(TYPE_F16)
void dequant8(uint row_byte, uint u, uint cols, out float v[8]) {
    if (u * 8 + 8 <= cols) {
        uint b = row_byte + 16 * u;
        for (uint i = 0; i < 4; i++) {
            vec2 h = unpackHalf2x16(RD32(W, b + 4 * i));
            v[2 * i] = h.x;
            v[2 * i + 1] = h.y;
        }
        return;
    }
    for (uint i = 0; i < 8; i++) {
        uint e = u * 8 + i;
        v[i] = e < cols ? F16(W, row_byte + 2 * e) : 0.0;
    }
}
#elif defined(TYPE_Q4_0)
// 18 bytes per 32: f16 d, 16 bytes of nibbles (low: elements 0..15, high: 16..31).
void dequant8(uint row_byte, uint u, uint cols, out float v[8]) {
    uint base = row_byte + (u >> 2) * 18;
    uint part = u & 3;
    float d = F16(W, base);
    uint q0 = base + 2 + (part & 1) * 8;
    uint shift = (part >> 1) * 4;
    uint lo = RD32(W, q0);
    uint hi = RD32(W, q0 + 4);
    for (uint i = 0; i < 8; i++) {
        v[i] = d * (float((BYTE8(lo, hi, i) >> shift) & 15u) - 8.0);
    }
}
#elif defined(TYPE_Q4_1)
// 20 bytes per 32: f16 d, f16 m, 16 bytes of nibbles. With SPLIT_MIN the minimum is left out
// (the product adds it once per block, times the activations' block sum, as ggml does).
float block_min(uint row_byte, uint u) {
    return F16(W, row_byte + (u >> 2) * 20 + 2);
}
void dequant8(uint row_byte, uint u, uint cols, out float v[8]) {
    uint base = row_byte + (u >> 2) * 20;
    uint part = u & 3;
    vec2 dm = unpackHalf2x16(RD32(W, base));
    float d = dm.x;
#ifdef SPLIT_MIN
    float m = 0.0;
#else
    float m = dm.y;
#endif
    uint q0 = base + 4 + (part & 1) * 8;
    uint shift = (part >> 1) * 4;
    uint lo = RD32(W, q0);
    uint hi = RD32(W, q0 + 4);
    for (uint i = 0; i < 8; i++) {
        v[i] = d * float((BYTE8(lo, hi, i) >> shift) & 15u) + m;
    }
}
#elif defined(TYPE_Q5_0)
// 22 bytes per 32: f16 d, 32 high bits, 16 bytes of low nibbles.
void dequant8(uint row_byte, uint u, uint cols, out float v[8]) {
    uint base = row_byte + (u >> 2) * 22;
    uint part = u & 3;
    float d = F16(W, base);
    uint qh = RD32(W, base + 2);
    uint j0 = (part & 1) * 8;
    uint hi = part >> 1;
    uint w0 = RD32(W, base + 6 + j0);
    uint w1 = RD32(W, base + 10 + j0);
    for (uint i = 0; i < 8; i++) {
        uint j = j0 + i;
        uint nib = (BYTE8(w0, w1, i) >> (hi * 4)) & 15u;
        uint bit = (qh >> (j + hi * 16)) & 1u;
        v[i] = d * (float(nib | (bit << 4)) - 16.0);
    }
}
#elif defined(TYPE_Q8_0)
// 34 bytes per 32: f16 d, 32 signed bytes.
void dequant8(uint row_byte, uint u, uint cols, out float v[8]) {
    uint base = row_byte + (u >> 2) * 34;
    float d = F16(W, base);
    uint q0 = base + 2 + (u & 3) * 8;
    uint lo = RD32(W, q0);
    uint hi = RD32(W, q0 + 4);
    for (uint i = 0; i < 8; i++) {
        v[i] = d * float(int(BYTE8(lo, hi, i) << 24) >> 24);
    }
}
#elif defined(TYPE_Q4_K)
// 144 bytes per 256: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins for the eight
// sub-blocks of 32, 128 bytes of nibbles (pairs of sub-blocks share 32 bytes: low, high).
void dequant8(uint row_byte, uint u, uint cols, out float v[8]) {
    uint base = row_byte + (u >> 5) * 144;
    uint e0 = (u & 31) * 8;
    uint s = e0 >> 5;
    uint o = e0 & 31;
    vec2 dd = unpackHalf2x16(RD32(W, base));
    float d = dd.x;
    float dmin = dd.y;
    uint sc;
    uint mn;
    if (s < 4) {
        sc = U8(W, base + 4 + s) & 63u;
        mn = U8(W, base + 8 + s) & 63u;
    } else {
        sc = (U8(W, base + 8 + s) & 15u) | ((U8(W, base + s) >> 6) << 4);
        mn = (U8(W, base + 8 + s) >> 4) | ((U8(W, base + 4 + s) >> 6) << 4);
    }
    float ds = d * float(sc);
    float dm = dmin * float(mn);
    uint q0 = base + 16 + (s >> 1) * 32 + o;
    uint shift = (s & 1) * 4;
    uint lo = RD32(W, q0);
    uint hi = RD32(W, q0 + 4);
    for (uint i = 0; i < 8; i++) {
        v[i] = ds * float((BYTE8(lo, hi, i) >> shift) & 15u) - dm;
    }
}
#elif defined(TYPE_Q6_K)
// 210 bytes per 256: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 signed scales
// (one per 16 elements), f16 d last.
void dequant8(uint row_byte, uint u, uint cols, out float v[8]) {
    uint base = row_byte + (u >> 5) * 210;
    uint e0 = (u & 31) * 8;
    uint n = e0 >> 7;
    uint r = e0 & 127;
    uint k = r >> 5;
    uint l0 = r & 31;
    float d = F16(W, base + 208);
    float ds = d * float(I8(W, base + 192 + 8 * n + (l0 >> 4) + 2 * k));
    uint ql0 = base + 64 * n + (k & 1) * 32 + l0;
    uint qh0 = base + 128 + 32 * n + l0;
    uint nshift = (k >> 1) * 4;
    uint hshift = 2 * k;
    uint l0w = RD32(W, ql0);
    uint l1w = RD32(W, ql0 + 4);
    uint h0w = RD32(W, qh0);
    uint h1w = RD32(W, qh0 + 4);
    for (uint i = 0; i < 8; i++) {
        uint q = ((BYTE8(l0w, l1w, i) >> nshift) & 15u) | (((BYTE8(h0w, h1w, i) >> hshift) & 3u) << 4);
        v[i] = ds * (float(q) - 32.0);
    }
}
#else
#error "define one TYPE_*"
#endif
