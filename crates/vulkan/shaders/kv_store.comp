#version 450
// Appends `rows` rows of `width` f32 values (SRC) to a layer of the paged f16 KV cache (DST):
// the row of token t goes to position pos0 + t, which lives in slot
// TABLE[pos / 16] * 16 + pos % 16 (the sequence's block table). Two values per invocation.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer Sb { float SRC[]; };
layout(std430, binding = 1) writeonly buffer Db { uint DST[]; };
layout(std430, binding = 2) readonly buffer Tb { uint TABLE[]; };
layout(push_constant) uniform P {
    uint rows;
    uint width;
    uint pos0;
    uint table_off;
} p;
#include "common.glsl"

void main() {
    uint i = group_linear() * 256 + gl_LocalInvocationID.x;
    uint half_width = p.width / 2;
    if (i >= p.rows * half_width) {
        return;
    }
    uint t = i / half_width;
    uint j = 2 * (i % half_width);
    uint pos = p.pos0 + t;
    uint slot = TABLE[p.table_off + pos / 16] * 16 + pos % 16;
    uint s = t * p.width + j;
    DST[(slot * p.width + j) / 2] = packHalf2x16(vec2(SRC[s], SRC[s + 1]));
}
