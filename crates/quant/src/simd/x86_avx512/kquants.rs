//! Panel kernels for the K-quants (placeholder until written).

use crate::matmul::Path;
use crate::simd::Gemm;
use crate::GgmlType;

/// The panel kernel for a K-quant type on `path`.
pub(super) fn gemm(ty: GgmlType, path: Path) -> Option<Gemm> {
    let _ = (ty, path);
    None
}
