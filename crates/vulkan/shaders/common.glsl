// Shared helpers of the compute shaders.
//
// Buffers of quantized weights and of f16 rows are bound as arrays of 32-bit words, so no
// 8- or 16-bit storage feature is needed: bytes are picked out of the words here (every
// block type's size is even, so 16-bit reads are always 2-byte aligned).

// Linear workgroup index of a grid that was split over x and y (x holds at most 65535).
uint group_linear() {
    return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
}

#define U8(buf, b) ((buf[(b) >> 2] >> (((b) & 3u) << 3)) & 0xFFu)
#define U16(buf, b) ((buf[(b) >> 2] >> (((b) & 2u) << 3)) & 0xFFFFu)
#define F16(buf, b) unpackHalf2x16(U16(buf, b)).x
#define I8(buf, b) (int(U8(buf, b) << 24) >> 24)

// The 32-bit little-endian word at byte b (b even) of buf: one load when b is 4-aligned, else two.
#define RD32(buf, b) ((((b) & 2u) == 0u) ? buf[(b) >> 2] : ((buf[(b) >> 2] >> 16) | (buf[((b) >> 2) + 1u] << 16)))
// Byte i (0..7) of the eight bytes held in lo, hi.
#define BYTE8(lo, hi, i) ((((i) < 4u ? (lo) : (hi)) >> (((i) & 3u) << 3)) & 0xFFu)

// Element i of an array of f16 values packed two to a word.
#define F16_AT(buf, i) unpackHalf2x16(buf[(i) >> 1] >> (((i) & 1u) << 4)).x
