//! How tensor-parallel activations travel between ranks: as f32 (exact, the
//! default) or, for slow links, with fewer bytes.
//!
//! With [`WireType::Q8`] the input of a matrix product (the attention heads
//! before the output projection, the feed-forward activation before the down
//! projection) travels as blocks of 8-bit integers with an f32 scale, cut at
//! the block size the product itself quantizes its input to (32 values for
//! Q4_0…Q8_0 weights, 256 for K-quants) and rounded the same way (`127 /
//! amax`, ties to even), with the block's largest magnitude sent exactly.
//! Quantizing the decoded values again gives back the very integers and the
//! very scale, so the product computes bit for bit what it would have
//! without the trip; the products' results, added to the residual stream,
//! stay f32. [`WireType::Q8F16`] also
//! sends those results as f16, which does cost accuracy. Every rank — the
//! sender included — continues from the decoded values, so all ranks hold
//! identical activations. `sparetire perplexity --kl-base` measures the cost
//! against a run with exact transfers.

use half::f16;

use sparetire_models::tensor_parallel::Gathered;
use sparetire_quant::GgmlType;

use crate::ClusterError;

/// Bytes of a block's scale (its largest magnitude, f32).
const SCALE_BYTES: usize = 4;

/// The encoding of activations on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WireType {
    /// Exact 32-bit floats.
    #[default]
    F32,
    /// Product inputs as 8-bit blocks, products' results as f32: the
    /// products compute what they would with f32 transfers.
    Q8,
    /// Product inputs as 8-bit blocks, products' results as f16 (fewer
    /// bytes; the f16 rounding of the residual stream costs accuracy).
    Q8F16,
}

impl WireType {
    /// How a part gathered for `what` travels.
    pub fn codec(self, what: Gathered) -> Codec {
        match (self, what) {
            (WireType::F32, _) => Codec::F32,
            (WireType::Q8 | WireType::Q8F16, Gathered::ProductInput { act }) => match act {
                GgmlType::Q8_0 | GgmlType::Q8_1 | GgmlType::Q8_K => Codec::Q8 {
                    block: act.block_size(),
                },
                // An f16 product rounds its input to f16 itself.
                GgmlType::F16 => Codec::F16,
                _ => Codec::F32,
            },
            (WireType::Q8, Gathered::Residual) => Codec::F32,
            (WireType::Q8F16, Gathered::Residual) => Codec::F16,
        }
    }
}

/// One encoding of a gathered part (`rows` rows of equal width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// 32-bit floats.
    F32,
    /// 16-bit floats.
    F16,
    /// Each row in 8-bit blocks of `block` values with an f32 scale (a
    /// row's last block padded with zeros).
    Q8 {
        /// Values per block.
        block: usize,
    },
}

impl Codec {
    /// Bytes `n` values in `rows` rows take.
    pub fn encoded_len(self, n: usize, rows: usize) -> usize {
        match self {
            Codec::F32 => n * 4,
            Codec::F16 => n * 2,
            Codec::Q8 { block } => rows * q8_len(n / rows.max(1), block),
        }
    }

    /// `values` (`rows` rows), encoded.
    pub fn encode(self, values: &[f32], rows: usize) -> Vec<u8> {
        match self {
            Codec::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Codec::F16 => encode_f16(values),
            Codec::Q8 { block } => {
                let width = values.len() / rows.max(1);
                if width == 0 {
                    return Vec::new();
                }
                values
                    .chunks(width)
                    .flat_map(|row| encode_q8(row, block))
                    .collect()
            }
        }
    }

    /// `n` values in `rows` rows decoded from `bytes` (an error names `rank`).
    pub fn decode(
        self,
        bytes: &[u8],
        n: usize,
        rows: usize,
        rank: usize,
    ) -> Result<Vec<f32>, ClusterError> {
        let bad = |what: &str| ClusterError::Protocol {
            rank,
            what: format!(
                "{} bytes of {what} activations cannot hold {n} values",
                bytes.len()
            ),
        };
        if bytes.len() != self.encoded_len(n, rows) || (rows > 0 && !n.is_multiple_of(rows)) {
            return Err(bad(match self {
                Codec::F32 => "f32",
                Codec::F16 => "f16",
                Codec::Q8 { .. } => "8-bit",
            }));
        }
        match self {
            Codec::F32 => Ok(bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()),
            Codec::F16 => decode_f16(bytes, n, rank),
            Codec::Q8 { block } => {
                let width = n / rows.max(1);
                if width == 0 {
                    return Ok(Vec::new());
                }
                let row_bytes = q8_len(width, block);
                let mut out = Vec::with_capacity(n);
                for row in bytes.chunks_exact(row_bytes) {
                    out.extend(decode_q8(row, width, block, rank)?);
                }
                Ok(out)
            }
        }
    }
}

/// Bytes `n` values take as 8-bit blocks of `block` values.
pub fn q8_len(n: usize, block: usize) -> usize {
    n.div_ceil(block) * (block + SCALE_BYTES)
}

/// `values` as 8-bit blocks of `block` values (the block's largest
/// magnitude as f32, then the integers); the last block is padded with zeros.
pub fn encode_q8(values: &[f32], block: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(q8_len(values.len(), block));
    for chunk in values.chunks(block) {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        out.extend_from_slice(&amax.to_le_bytes());
        out.extend(
            chunk
                .iter()
                .map(|&v| (v * id).round_ties_even() as i8 as u8),
        );
        out.resize(out.len() + block - chunk.len(), 0);
    }
    out
}

/// The first `n` values of the 8-bit blocks of `block` values in `bytes`.
pub fn decode_q8(
    bytes: &[u8],
    n: usize,
    block: usize,
    rank: usize,
) -> Result<Vec<f32>, ClusterError> {
    if block == 0 || bytes.len() != q8_len(n, block) {
        return Err(ClusterError::Protocol {
            rank,
            what: format!(
                "{} bytes of 8-bit activations cannot hold {n} values",
                bytes.len()
            ),
        });
    }
    let mut out = Vec::with_capacity(n.div_ceil(block) * block);
    for b in bytes.chunks_exact(block + SCALE_BYTES) {
        let (scale, q) = b.split_at(SCALE_BYTES);
        let amax = f32::from_le_bytes([scale[0], scale[1], scale[2], scale[3]]);
        // (q / 127) · amax gives ±amax back exactly for the largest element,
        // so the next product derives exactly the scale it would have.
        out.extend(q.iter().map(|&v| f32::from(v as i8) / 127.0 * amax));
    }
    out.truncate(n);
    Ok(out)
}

/// `values` as little-endian f16.
pub fn encode_f16(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| f16::from_f32(v).to_le_bytes())
        .collect()
}

/// `n` f16 values from `bytes`.
pub fn decode_f16(bytes: &[u8], n: usize, rank: usize) -> Result<Vec<f32>, ClusterError> {
    if bytes.len() != n * 2 {
        return Err(ClusterError::Protocol {
            rank,
            what: format!(
                "{} bytes of f16 activations cannot hold {n} values",
                bytes.len()
            ),
        });
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparetire_quant::quantize_activation_row;

    fn noise(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                ((s >> 8) as f32 / (1 << 24) as f32 - 0.5) * 7.0
            })
            .collect()
    }

    #[test]
    fn q8_round_trip_is_close_and_sized() {
        for n in [0, 1, 31, 32, 33, 100, 576] {
            for block in [32, 256] {
                let x = noise(n, n as u32 + 1);
                let enc = encode_q8(&x, block);
                assert_eq!(enc.len(), q8_len(n, block));
                let y = decode_q8(&enc, n, block, 0).unwrap();
                assert_eq!(y.len(), n);
                let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
                for (a, b) in x.iter().zip(&y) {
                    assert!((a - b).abs() <= amax / 127.0 / 2.0 * 1.001, "{a} vs {b}");
                }
            }
        }
    }

    /// A product quantizes its input to Q8_0/Q8_1 (32) or Q8_K (256) blocks;
    /// quantizing what came off the wire gives back the same integers.
    #[test]
    fn the_next_products_quantization_sees_the_same_integers() {
        let x = noise(256 * 8, 7);
        #[allow(clippy::single_range_in_vec_init)]
        for (ty, block, q_at) in [
            (GgmlType::Q8_0, 32, 2..34),
            (GgmlType::Q8_1, 32, 4..36),
            (GgmlType::Q8_K, 256, 4..260),
        ] {
            let y = decode_q8(&encode_q8(&x, block), x.len(), block, 0).unwrap();
            let n = ty.row_bytes(x.len()).unwrap();
            let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
            quantize_activation_row(ty, &x, &mut a).unwrap();
            quantize_activation_row(ty, &y, &mut b).unwrap();
            let size = ty.type_size();
            for (i, (ba, bb)) in a.chunks(size).zip(b.chunks(size)).enumerate() {
                let (qa, qb) = (&ba[q_at.clone()], &bb[q_at.clone()]);
                // Q8_K takes its scale's sign from the largest element; when two
                // elements of opposite sign round to ±127 it may pick the other
                // one, negating every integer and the scale (the same products).
                let negated: Vec<u8> = qb.iter().map(|&q| (q as i8).wrapping_neg() as u8).collect();
                assert!(
                    qa == qb || (ty == GgmlType::Q8_K && qa == &negated[..]),
                    "{ty:?} block {i}"
                );
            }
        }
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let enc = encode_q8(&[1.0; 40], 32);
        assert!(decode_q8(&enc, 100, 32, 3).is_err());
        assert!(decode_q8(&enc[..10], 40, 32, 3).is_err());
        assert!(decode_f16(&[0u8; 5], 3, 3).is_err());
    }

    #[test]
    fn f16_round_trips() {
        let x = noise(50, 3);
        let y = decode_f16(&encode_f16(&x), 50, 0).unwrap();
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= a.abs() / 1024.0);
        }
    }

    #[test]
    fn codecs_round_trip_their_own_lengths() {
        let x = noise(70, 9);
        let kinds = [
            Gathered::ProductInput {
                act: GgmlType::Q8_0,
            },
            Gathered::ProductInput {
                act: GgmlType::Q8_K,
            },
            Gathered::ProductInput { act: GgmlType::F16 },
            Gathered::ProductInput { act: GgmlType::F32 },
            Gathered::Residual,
        ];
        for what in kinds {
            for wire in [WireType::F32, WireType::Q8, WireType::Q8F16] {
                for rows in [1, 2, 5] {
                    let c = wire.codec(what);
                    let enc = c.encode(&x, rows);
                    assert_eq!(enc.len(), c.encoded_len(x.len(), rows), "{c:?}");
                    assert_eq!(c.decode(&enc, x.len(), rows, 0).unwrap().len(), x.len());
                    assert!(c.decode(&enc[1..], x.len(), rows, 0).is_err());
                }
            }
        }
        assert_eq!(
            WireType::F32.codec(Gathered::Residual).encode(&x, 1),
            Codec::F32.encode(&x, 1)
        );
        assert_eq!(WireType::Q8.codec(Gathered::Residual), Codec::F32);
    }

    /// Each row starts a block, so a row's blocks are the ones its product cuts.
    #[test]
    fn q8_blocks_start_at_each_row() {
        let x = noise(2 * 40, 4);
        let c = Codec::Q8 { block: 32 };
        let enc = c.encode(&x, 2);
        assert_eq!(enc.len(), 2 * 2 * 36);
        assert_eq!(&enc[..72], &encode_q8(&x[..40], 32)[..]);
    }

    #[test]
    fn sizes() {
        assert_eq!(q8_len(576, 32), 18 * 36);
        assert_eq!(q8_len(512, 256), 2 * 260);
    }
}
/// Products over the decoded values, against the same products over the originals.
#[cfg(test)]
mod products {
    use super::*;
    use sparetire_quant::{matmul, quantize_row, ThreadPool, WeightView};
    /// Random weights of three types, 1 to 16 tokens (every kernel path),
    /// inputs with ties of opposite sign at a block's maximum, zero blocks and
    /// outliers: the product of the decoded input equals the product of the
    /// input.
    #[test]
    fn products_of_decoded_inputs_are_bit_identical() {
        let mut s = 99u32;
        let mut r = |n: usize, a: f32| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                    ((s >> 8) as f32 / (1 << 24) as f32 - 0.5) * a
                })
                .collect()
        };
        for ty in [GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q4_1] {
            let (rows, cols) = (64, 1024);
            let wf = r(rows * cols, 1.0);
            let mut wq = vec![0u8; rows * ty.row_bytes(cols).unwrap()];
            quantize_row(ty, &wf, &mut wq).unwrap();
            let w = WeightView {
                ty,
                data: &wq,
                rows,
                cols,
            };
            for n in [1, 5, 8, 16] {
                let mut x = r(n * cols, 3.0);
                // Ties of opposite sign at the block maximum, zero blocks, outliers.
                for t in 0..n {
                    let o = t * cols;
                    x[o] = 5.0;
                    x[o + 7] = -5.0;
                    x[o + 256] = -4.0;
                    x[o + 300] = 4.0;
                    for v in &mut x[o + 512..o + 768] {
                        *v = 0.0;
                    }
                    x[o + 800] = 1000.0;
                    x[o + 801] = -999.9;
                }
                let block = ty.vec_dot_type().block_size();
                let c = Codec::Q8 { block };
                let y = c.decode(&c.encode(&x, n), x.len(), n, 0).unwrap();
                let pool = ThreadPool::new(1);
                let (mut a, mut b) = (vec![0f32; n * rows], vec![0f32; n * rows]);
                matmul(&pool, &w, &x, n, &mut a).unwrap();
                matmul(&pool, &w, &y, n, &mut b).unwrap();
                assert_eq!(a, b, "{ty:?}, {n} tokens");
            }
        }
    }
}
