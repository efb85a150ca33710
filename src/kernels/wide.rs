//! The SIMD kernels on the compile-time backend of the `wide` crate
//! (`wide::f32x8`: one AVX register, two SSE2 or NEON registers): the
//! kernels of [`super::Isa::Portable`].

use super::{Lanes8, Tile};
use ::wide::f32x8;

impl Lanes8 for f32x8 {
    #[inline(always)]
    fn zero() -> Self {
        f32x8::ZERO
    }
    #[inline(always)]
    fn load(x: &[f32; 8]) -> Self {
        f32x8::from(*x)
    }
    #[inline(always)]
    fn splat(x: f32) -> Self {
        f32x8::splat(x)
    }
    #[inline(always)]
    fn mul_add2(self, b: Self, acc: Self) -> Self {
        acc + self * b
    }
    #[inline(always)]
    fn to_array(self) -> [f32; 8] {
        f32x8::to_array(self)
    }
}

/// `out[r][c] += sum_k a[r][k] * b[c][k]` for the pairs of `shape`;
/// on a diagonal tile, false when a row is out of the `f32` range (then
/// `out` holds garbage and the caller takes the exact kernel). Sub-tiles
/// sized to the backend's register file: 32 registers (AVX-512) hold a
/// 4 x 4 tile, 16 AVX registers a 4-row triangle and 2 x 4 rectangles, and
/// with two registers per vector (SSE2, NEON) 2 x 2 pieces.
#[inline(always)]
pub fn gram_tile(
    a: [&[f32]; 4],
    b: [&[f32]; 4],
    shape: Tile,
    len: usize,
    out: &mut [[f64; 4]; 4],
) -> bool {
    if cfg!(target_feature = "avx512vl") {
        super::tile::<f32x8, 4, 4, 4>(a, b, shape, len, out)
    } else if cfg!(target_feature = "avx") {
        super::tile::<f32x8, 4, 2, 4>(a, b, shape, len, out)
    } else {
        super::tile::<f32x8, 2, 2, 2>(a, b, shape, len, out)
    }
}

/// [`super::Element::gram_run`] for `f32`.
pub fn gram_run(
    a: [&[f32]; 4],
    b: [&[f32]; 4],
    shape: Tile,
    len: usize,
    fast: u64,
    out: &mut [[f64; 4]; 4],
) -> u64 {
    super::run_blocks(a, b, shape, len, fast, out, gram_tile)
}

/// [`super::Element::combine_rows`] for `f32`.
pub fn combine(out: &mut [f32], rows: [&[f32]; 4], alpha: [f32; 4], n: usize, first: bool) {
    super::combine8::<f32x8>(out, rows, alpha, n, first)
}

/// `out[k] += alpha * x[k]`.
#[cfg(test)]
pub fn axpy(out: &mut [f32], alpha: f32, x: &[f32]) {
    super::axpy8::<f32x8>(out, alpha, x)
}
