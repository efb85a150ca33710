//! The SIMD kernels on the compile-time backend of the `wide` crate
//! (`wide::f32x8`: one AVX register, two SSE2 or NEON registers): the
//! kernels of [`super::Isa::Portable`].

use super::{Lanes8, Tile};
use ::wide::{f32x8, f64x4};

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
    fn mul_add2(self, b: Self, acc: Self) -> Self {
        acc + self * b
    }
    #[inline(always)]
    fn to_array(self) -> [f32; 8] {
        f32x8::to_array(self)
    }
    type D = [f64x4; 2];
    #[inline(always)]
    fn widen(self) -> Self::D {
        let a = f32x8::to_array(self).map(f64::from);
        [
            f64x4::from([a[0], a[1], a[2], a[3]]),
            f64x4::from([a[4], a[5], a[6], a[7]]),
        ]
    }
    #[inline(always)]
    fn dzero() -> Self::D {
        [f64x4::ZERO; 2]
    }
    #[inline(always)]
    fn dsplat(x: f64) -> Self::D {
        [f64x4::splat(x); 2]
    }
    #[inline(always)]
    fn dload(x: &[f64; 8]) -> Self::D {
        [
            f64x4::from([x[0], x[1], x[2], x[3]]),
            f64x4::from([x[4], x[5], x[6], x[7]]),
        ]
    }
    #[inline(always)]
    fn dstore(d: Self::D) -> [f64; 8] {
        let (a, b) = (d[0].to_array(), d[1].to_array());
        [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
    }
    #[inline(always)]
    fn dmul_add(x: Self::D, c: Self::D, acc: Self::D) -> Self::D {
        [acc[0] + x[0] * c[0], acc[1] + x[1] * c[1]]
    }
    #[inline(always)]
    fn dmul(x: Self::D, c: Self::D) -> Self::D {
        [x[0] * c[0], x[1] * c[1]]
    }
    #[inline(always)]
    fn narrow(d: Self::D) -> [f32; 8] {
        let (a, b) = (d[0].to_array(), d[1].to_array());
        [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]].map(|v| v as f32)
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

/// [`super::sealed::Sealed::merge_rows`] for `f32`.
pub fn merge(
    out: &mut [f32],
    acc: &mut [f64],
    rows: [&[f32]; 4],
    coef: [f64; 4],
    n: usize,
    first: bool,
    last: Option<f64>,
) {
    super::merge8::<f32x8>(out, acc, rows, coef, n, first, last)
}
