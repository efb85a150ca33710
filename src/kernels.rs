//! The inner loops: the Gram (SYRK) micro-kernel and the apply kernel, in a
//! SIMD form (through `wide`) and a scalar twin with the same arithmetic
//! structure. The scalar twin is the kernel on targets without SIMD registers
//! (Cortex-M), and the SIMD form is tested against it.
//!
//! The Gram micro-kernel takes a 4 x 4 tile of task rows over a short column
//! block (at most [`BLOCK`] columns, all of it in L1), loads one vector from
//! each of the eight rows per step and forms the 16 pair products in
//! registers. Products accumulate in `f32` lanes within the block and are
//! added into `f64` once per block: near-`f64` accuracy at `f32` speed. A
//! block is only sent through the `f32` lanes when every row's largest
//! magnitude lies in [2^-50, 2^50] (or the row is zero), so that no product
//! can overflow or lose its significance to underflow; other blocks (and
//! NaN/Inf) take the exact kernel, which accumulates in `f64`.

use num_traits::Float;

/// Columns per `f32` accumulation run of the Gram kernel. 4 x 4 rows x 256
/// columns x 4 bytes = 8 KiB: the tile's rows stay in L1.
pub const BLOCK: usize = 256;

/// Smallest row magnitude for the `f32` Gram lanes (2^-50).
const FAST_MIN: f32 = 8.881_784e-16;
/// Largest row magnitude for the `f32` Gram lanes (2^50).
const FAST_MAX: f32 = 1.125_899_9e15;
/// Coefficients outside [2^-100, 2^100] (other than zero) make the apply
/// pass use `f64` arithmetic.
const COEF_MIN: f64 = 7.888_609_052_210_118e-31;
const COEF_MAX: f64 = 1.267_650_600_228_229_4e30;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A gradient element type: `f32` (the fast path) or `f64`.
pub trait Element:
    Float + Default + Send + Sync + core::fmt::Debug + 'static + sealed::Sealed
{
    /// Widen to `f64` (exact).
    fn to_f64(self) -> f64;
    /// Round from `f64`.
    fn from_f64(v: f64) -> Self;
    /// Whether a row block may use the narrow-accumulator Gram kernel.
    #[doc(hidden)]
    fn fast_range(row: &[Self]) -> bool;
    /// `out[r][c] += sum_k a[r][k] * b[c][k]` over `k < len`, narrow lanes,
    /// for the pairs of `shape`.
    #[doc(hidden)]
    fn gram_tile_fast(
        a: [&[Self]; 4],
        b: [&[Self]; 4],
        shape: Tile,
        len: usize,
        out: &mut [[f64; 4]; 4],
    );
    /// `out[k] += alpha * x[k]`.
    #[doc(hidden)]
    fn axpy(out: &mut [Self], alpha: Self, x: &[Self]);
    /// Whether an apply coefficient is safe in this precision.
    #[doc(hidden)]
    fn coef_fits(alpha: f64) -> bool;
}

/// Which pairs of a 4 x 4 row tile the Gram kernels compute: rows
/// `r < rows` of `a` against rows `c < cols` of `b`, and on a diagonal tile
/// (`a` and `b` the same rows) only `c >= r`. Entries outside are left as
/// they were. Computing only these (3 products for T = 2 instead of 16, 36
/// instead of 48 for T = 8) matters: the Gram pass is compute-bound when the
/// gradients sit in cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Rows of `a` in use (1 to 4).
    pub rows: usize,
    /// Rows of `b` in use (1 to 4).
    pub cols: usize,
    /// `a` and `b` are the same rows: only the upper triangle.
    pub diagonal: bool,
}

impl Tile {
    /// All 16 pairs.
    pub const FULL: Tile = Tile {
        rows: 4,
        cols: 4,
        diagonal: false,
    };

    /// Whether the pair (r, c) is computed.
    #[inline(always)]
    pub fn has(self, r: usize, c: usize) -> bool {
        r < self.rows && c < self.cols && (!self.diagonal || c >= r)
    }
}

/// Which kernels this build uses.
pub const SIMD: bool = cfg!(any(
    target_arch = "x86_64",
    all(target_arch = "x86", target_feature = "sse2"),
    all(target_arch = "aarch64", target_feature = "neon"),
    all(target_arch = "wasm32", target_feature = "simd128"),
));

impl Element for f32 {
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn fast_range(row: &[f32]) -> bool {
        if SIMD {
            simd::fast_range_f32(row)
        } else {
            scalar::fast_range_f32(row)
        }
    }
    #[inline]
    fn gram_tile_fast(
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: Tile,
        len: usize,
        out: &mut [[f64; 4]; 4],
    ) {
        if SIMD {
            simd::gram_tile_f32(a, b, shape, len, out)
        } else {
            scalar::gram_tile_f32(a, b, shape, len, out)
        }
    }
    #[inline]
    fn axpy(out: &mut [f32], alpha: f32, x: &[f32]) {
        if SIMD {
            simd::axpy_f32(out, alpha, x)
        } else {
            scalar::axpy(out, alpha, x)
        }
    }
    #[inline]
    fn coef_fits(alpha: f64) -> bool {
        let m = alpha.abs();
        m == 0.0 || (COEF_MIN..=COEF_MAX).contains(&m)
    }
}

impl Element for f64 {
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline]
    fn fast_range(_row: &[f64]) -> bool {
        true
    }
    #[inline]
    fn gram_tile_fast(
        a: [&[f64]; 4],
        b: [&[f64]; 4],
        _shape: Tile,
        len: usize,
        out: &mut [[f64; 4]; 4],
    ) {
        gram_tile_exact(a, b, len, out)
    }
    #[inline]
    fn axpy(out: &mut [f64], alpha: f64, x: &[f64]) {
        scalar::axpy(out, alpha, x)
    }
    #[inline]
    fn coef_fits(alpha: f64) -> bool {
        alpha.is_finite()
    }
}

/// Largest |x| of a row, NaN if the row holds a NaN. One serial `max`
/// chain: the scalar twin's form (the SIMD form keeps 16 lanes).
#[inline]
fn max_abs_f32(row: &[f32]) -> f32 {
    let mut m = 0.0f32;
    let mut nan = false;
    for &x in row {
        let a = x.abs();
        nan |= a.is_nan();
        m = if a > m { a } else { m };
    }
    if nan {
        f32::NAN
    } else {
        m
    }
}

/// The exact Gram tile: products and sums in `f64`, any element type.
pub fn gram_tile_exact<F: Element>(
    a: [&[F]; 4],
    b: [&[F]; 4],
    len: usize,
    out: &mut [[f64; 4]; 4],
) {
    let a = a.map(|r| &r[..len]);
    let b = b.map(|r| &r[..len]);
    for k in 0..len {
        let va = [
            a[0][k].to_f64(),
            a[1][k].to_f64(),
            a[2][k].to_f64(),
            a[3][k].to_f64(),
        ];
        let vb = [
            b[0][k].to_f64(),
            b[1][k].to_f64(),
            b[2][k].to_f64(),
            b[3][k].to_f64(),
        ];
        for r in 0..4 {
            for c in 0..4 {
                out[r][c] += va[r] * vb[c];
            }
        }
    }
}

/// Scalar twins: the same blocking and accumulation precision as the SIMD
/// kernels, one lane wide.
pub mod scalar {
    /// Columns per inner `f32` run of the scalar Gram tile.
    const RUN: usize = 32;

    /// `out[r][c] += sum_k a[r][k] * b[c][k]`: `f32` accumulation in runs of
    /// 32 columns (what one SIMD lane sees in a 256-column block), the runs
    /// summed in `f32`, one `f64` add per pair at the end.
    pub fn gram_tile_f32(
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: super::Tile,
        len: usize,
        out: &mut [[f64; 4]; 4],
    ) {
        let a = a.map(|r| &r[..len]);
        let b = b.map(|r| &r[..len]);
        let mut total = [[0.0f32; 4]; 4];
        let mut k0 = 0;
        while k0 < len {
            let k1 = len.min(k0 + RUN);
            let mut acc = [[0.0f32; 4]; 4];
            for k in k0..k1 {
                let va = [a[0][k], a[1][k], a[2][k], a[3][k]];
                let vb = [b[0][k], b[1][k], b[2][k], b[3][k]];
                for r in 0..4 {
                    for c in 0..4 {
                        if shape.has(r, c) {
                            acc[r][c] = va[r].mul_add_fast(vb[c], acc[r][c]);
                        }
                    }
                }
            }
            for r in 0..4 {
                for c in 0..4 {
                    total[r][c] += acc[r][c];
                }
            }
            k0 = k1;
        }
        for r in 0..4 {
            for c in 0..4 {
                if shape.has(r, c) {
                    out[r][c] += f64::from(total[r][c]);
                }
            }
        }
    }

    /// Whether a row block may use the `f32` Gram lanes: its largest |x| is
    /// 0 or in [2^-50, 2^50] (false on NaN and infinities).
    pub fn fast_range_f32(row: &[f32]) -> bool {
        let m = super::max_abs_f32(row);
        m == 0.0 || (super::FAST_MIN..=super::FAST_MAX).contains(&m)
    }

    /// `out[k] += alpha * x[k]`.
    pub fn axpy<F: super::Element>(out: &mut [F], alpha: F, x: &[F]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = *o + alpha * v;
        }
    }

    /// Multiply-add without a call to a software `fma`: two roundings.
    trait MulAddFast {
        fn mul_add_fast(self, b: Self, c: Self) -> Self;
    }
    impl MulAddFast for f32 {
        #[inline(always)]
        fn mul_add_fast(self, b: f32, c: f32) -> f32 {
            self * b + c
        }
    }
}

/// The SIMD kernels (`wide::f32x8`: AVX, two SSE2 registers, NEON pairs).
pub mod simd {
    use super::Tile;
    use wide::f32x8;

    const W: usize = 8;

    /// As [`super::scalar::fast_range_f32`], with two vectors of independent
    /// lanes: every |x| <= 2^50 (a comparison that NaN fails) and the
    /// largest |x| is 0 or at least 2^-50. (A single serial `max` chain runs
    /// at one element per `max` latency and made this check, not the Gram
    /// tile, the bottleneck of the Gram pass.)
    pub fn fast_range_f32(row: &[f32]) -> bool {
        let (chunks, tail) = row.as_chunks::<16>();
        let limit = f32x8::splat(super::FAST_MAX);
        let mut ok = [f32x8::ZERO.simd_le(f32x8::ZERO); 2];
        let mut m = [f32x8::ZERO; 2];
        for c in chunks {
            let (v, _) = c.as_chunks::<8>();
            for l in 0..2 {
                let a = f32x8::from(v[l]).abs();
                ok[l] &= a.simd_le(limit);
                m[l] = m[l].fast_max(a);
            }
        }
        let mut mx = 0.0f32;
        for l in m[0].fast_max(m[1]).to_array() {
            mx = mx.max(l);
        }
        let rest = super::max_abs_f32(tail);
        let all_ok = (ok[0] & ok[1]).all() && rest <= super::FAST_MAX;
        let mx = mx.max(rest);
        all_ok && (mx == 0.0 || mx >= super::FAST_MIN)
    }

    /// `out[r][c] += sum_k a[r][k] * b[c][k]` for the pairs of `shape`.
    /// Dispatches to a kernel compiled for that shape, so that the
    /// accumulators of exactly those pairs live in registers.
    pub fn gram_tile_f32(
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: Tile,
        len: usize,
        out: &mut [[f64; 4]; 4],
    ) {
        macro_rules! off {
            ($($r:literal $c:literal),*) => {
                match (shape.rows, shape.cols) {
                    $(($r, $c) => tile::<$r, $c, false>(a, b, len, out),)*
                    _ => tile::<4, 4, false>(a, b, len, out),
                }
            };
        }
        if shape.diagonal {
            match shape.rows {
                1 => tile::<1, 1, true>(a, a, len, out),
                2 => tile::<2, 2, true>(a, a, len, out),
                3 => tile::<3, 3, true>(a, a, len, out),
                _ => tile::<4, 4, true>(a, a, len, out),
            }
        } else {
            off!(1 1, 1 2, 1 3, 1 4, 2 1, 2 2, 2 3, 2 4, 3 1, 3 2, 3 3, 3 4, 4 1, 4 2, 4 3)
        }
    }

    /// The R x C (upper triangle when `D`) tile kernel: one vector per row
    /// per step, the pair products in `f32x8` lanes, one `f64` sum per pair
    /// at the end (the tail columns in `f64`).
    #[inline(always)]
    fn tile<const R: usize, const C: usize, const D: bool>(
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        len: usize,
        out: &mut [[f64; 4]; 4],
    ) {
        let n = len / W;
        let ca: [&[[f32; W]]; R] = core::array::from_fn(|r| &a[r][..len].as_chunks::<W>().0[..n]);
        let cb: [&[[f32; W]]; C] = core::array::from_fn(|c| &b[c][..len].as_chunks::<W>().0[..n]);
        let mut acc = [[f32x8::ZERO; C]; R];
        for k in 0..n {
            let va: [f32x8; R] = core::array::from_fn(|r| f32x8::from(ca[r][k]));
            let vb: [f32x8; C] = if D {
                core::array::from_fn(|c| va[c.min(R - 1)])
            } else {
                core::array::from_fn(|c| f32x8::from(cb[c][k]))
            };
            for r in 0..R {
                for c in 0..C {
                    if !D || c >= r {
                        acc[r][c] = va[r].mul_add(vb[c], acc[r][c]);
                    }
                }
            }
        }
        let tail = n * W;
        for r in 0..R {
            for c in 0..C {
                if D && c < r {
                    continue;
                }
                let mut s = 0.0f64;
                for l in acc[r][c].to_array() {
                    s += f64::from(l);
                }
                for k in tail..len {
                    s += f64::from(a[r][k] * b[c][k]);
                }
                out[r][c] += s;
            }
        }
    }

    /// `out[k] += alpha * x[k]`.
    pub fn axpy_f32(out: &mut [f32], alpha: f32, x: &[f32]) {
        let len = out.len().min(x.len());
        let n = len / W;
        let (co, to) = out[..len].as_chunks_mut::<W>();
        let (cx, tx) = x[..len].as_chunks::<W>();
        let va = f32x8::splat(alpha);
        for (o, &v) in co[..n].iter_mut().zip(&cx[..n]) {
            *o = f32x8::from(v).mul_add(va, f32x8::from(*o)).to_array();
        }
        for (o, &v) in to.iter_mut().zip(tx) {
            *o += alpha * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(seed: u32, len: usize) -> [[f32; 300]; 8] {
        let mut out = [[0.0f32; 300]; 8];
        let mut s = seed;
        for r in out.iter_mut() {
            for x in r.iter_mut().take(len) {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *x = (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            }
        }
        out
    }

    #[test]
    fn simd_scalar_and_exact_tiles_agree() {
        for len in [0usize, 1, 7, 8, 9, 63, 255, 256] {
            let m = rows(len as u32 + 1, len);
            let a = [&m[0][..], &m[1][..], &m[2][..], &m[3][..]];
            let b = [&m[4][..], &m[5][..], &m[6][..], &m[3][..]];
            let (mut x, mut y, mut z) = ([[0.0; 4]; 4], [[0.0; 4]; 4], [[0.0; 4]; 4]);
            simd::gram_tile_f32(a, b, Tile::FULL, len, &mut x);
            scalar::gram_tile_f32(a, b, Tile::FULL, len, &mut y);
            gram_tile_exact(a, b, len, &mut z);
            for r in 0..4 {
                for c in 0..4 {
                    assert!((x[r][c] - z[r][c]).abs() <= 1e-5, "simd {len} {r} {c}");
                    assert!((y[r][c] - z[r][c]).abs() <= 1e-5, "scalar {len} {r} {c}");
                }
            }
        }
    }

    /// Every tile shape computes exactly its pairs, the same in both twins,
    /// and leaves the other entries alone.
    #[test]
    fn tile_shapes_compute_exactly_their_pairs() {
        let m = rows(17, 300);
        for len in [1usize, 8, 13, 256] {
            for rows_ in 1..=4 {
                for cols in 1..=4 {
                    for diagonal in [false, true] {
                        if diagonal && rows_ != cols {
                            continue;
                        }
                        let shape = Tile {
                            rows: rows_,
                            cols,
                            diagonal,
                        };
                        let a = [&m[0][..], &m[1][..], &m[2][..], &m[3][..]];
                        let b = if diagonal {
                            a
                        } else {
                            [&m[4][..], &m[5][..], &m[6][..], &m[7][..]]
                        };
                        let (mut x, mut y, mut z) = ([[7.0; 4]; 4], [[7.0; 4]; 4], [[0.0; 4]; 4]);
                        simd::gram_tile_f32(a, b, shape, len, &mut x);
                        scalar::gram_tile_f32(a, b, shape, len, &mut y);
                        gram_tile_exact(a, b, len, &mut z);
                        for r in 0..4 {
                            for c in 0..4 {
                                if shape.has(r, c) {
                                    assert!(
                                        (x[r][c] - 7.0 - z[r][c]).abs() <= 1e-5,
                                        "{shape:?} {r} {c}"
                                    );
                                    assert!(
                                        (y[r][c] - 7.0 - z[r][c]).abs() <= 1e-5,
                                        "{shape:?} {r} {c}"
                                    );
                                } else {
                                    assert_eq!((x[r][c], y[r][c]), (7.0, 7.0), "{shape:?} {r} {c}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn axpy_twins_agree() {
        let m = rows(3, 300);
        for len in [0usize, 5, 8, 299] {
            let mut o1 = m[0];
            let mut o2 = m[0];
            simd::axpy_f32(&mut o1[..len], 0.75, &m[1][..len]);
            scalar::axpy(&mut o2[..len], 0.75, &m[1][..len]);
            for k in 0..len {
                assert!((o1[k] - o2[k]).abs() <= 1e-6);
            }
        }
    }

    #[test]
    fn fast_range_twins_agree() {
        let base = rows(9, 300);
        let specials = [
            0.0,
            1e-30,
            1e30,
            f32::NAN,
            f32::INFINITY,
            -f32::INFINITY,
            1e-10,
            -2.0,
        ];
        for len in [0usize, 1, 15, 16, 17, 33, 256, 300] {
            for (k, &sp) in specials.iter().enumerate() {
                for pos in [0usize, 7, 16, 299] {
                    let mut r = base[k % 8];
                    let mut tiny = [0.0f32; 300];
                    if pos < len {
                        r[pos] = sp;
                        tiny[pos] = sp;
                    }
                    for row in [&r[..len], &tiny[..len]] {
                        assert_eq!(
                            simd::fast_range_f32(row),
                            scalar::fast_range_f32(row),
                            "len {len} special {sp} at {pos}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn fast_range_rejects_extremes() {
        assert!(f32::fast_range(&[0.0, 0.0]));
        assert!(f32::fast_range(&[1.0, -3.0]));
        assert!(!f32::fast_range(&[1e30, 1.0]));
        assert!(!f32::fast_range(&[1e-30, 0.0]));
        assert!(!f32::fast_range(&[f32::NAN, 1.0]));
        assert!(!f32::fast_range(&[f32::INFINITY]));
    }
}
