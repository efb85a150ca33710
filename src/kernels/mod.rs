//! The inner loops: the Gram (SYRK) micro-kernel and the apply kernel, in a
//! SIMD form and a scalar twin. The scalar twin is the kernel on targets
//! without SIMD registers (Cortex-M), and the SIMD form is tested against
//! it.
//!
//! The SIMD Gram kernel takes a tile of up to 4 x 4 task rows over a short
//! column block (at most [`BLOCK`] columns, all of it in L1), loads one
//! 8-lane vector from each row per step and forms the pair products in
//! registers, splitting the tile into sub-tiles whose accumulators fit the
//! register file (16 or 32 registers). Products accumulate in `f32` lanes
//! within the block and are added into `f64` once per block: near-`f64`
//! accuracy at `f32` speed. The range check that allows the `f32` lanes
//! comes free with the diagonal tile: a row fits when every lane of its sum
//! of squares is at most 2^100 (so every |x| <= 2^50, and no product can
//! overflow; NaN and infinities fail) and the sum is at least 2^-100 (or
//! the row is exactly zero). A block whose rows do not fit (and the tiles
//! that involve them) takes the exact kernel, which accumulates in `f64`.
//!
//! The SIMD kernels are written once, over eight `f32` lanes, and compiled
//! for the compile-time backend of `wide` (SSE2 on a default x86-64 build,
//! NEON, AVX with `-C target-cpu=...`) and, on x86-64 with `std`, for AVX and
//! AVX-512VL registers selected at run time ([`x86`]). Each lane multiplies
//! and then adds (no fused multiply-add), so every backend gives bitwise the
//! same result.

use num_traits::Float;

/// Columns per `f32` accumulation run of the Gram kernel. 4 x 4 rows x 256
/// columns x 4 bytes = 8 KiB: the tile's rows stay in L1.
pub const BLOCK: usize = 256;

/// Smallest row magnitude for the `f32` Gram lanes (2^-50).
const FAST_MIN: f32 = 8.881_784e-16;
/// Largest row magnitude for the `f32` Gram lanes (2^50).
const FAST_MAX: f32 = 1.125_899_9e15;
/// Largest lane of a row's sum of squares for the `f32` Gram lanes (2^100).
const FAST_SQ_MAX: f32 = 1.267_650_6e30;
/// Smallest non-zero sum of squares of a row for the `f32` Gram lanes
/// (2^-100).
const FAST_SQ_MIN: f32 = 7.888_609e-31;
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
    /// The Gram tile of `shape` over `len` columns, block by block: for
    /// each block of [`BLOCK`] columns (the `k`-th from the start of the
    /// slices), the block's products summed from zero, then added into
    /// `out[r][c]` for the pairs of `shape`. Block `k` takes the narrow
    /// `f32` lanes when bit `k` of `fast` is set and, on a diagonal tile,
    /// its rows fit them; otherwise [`gram_tile_exact`]. Returns the blocks
    /// (bits) that took the narrow lanes. Blocks past the 64th are exact.
    /// The same arithmetic as one kernel call per block, without the
    /// per-block call and dispatch.
    #[doc(hidden)]
    fn gram_run(
        a: [&[Self]; 4],
        b: [&[Self]; 4],
        shape: Tile,
        len: usize,
        fast: u64,
        out: &mut [[f64; 4]; 4],
    ) -> u64;
    /// `out[k] = s + sum_{r < n} alpha[r] * rows[r][k]` (a multiply, then
    /// an add, term by term in order of `r`), with `s` zero when `first`,
    /// else `out[k]`: bitwise a fill with zeros (when `first`) and `n`
    /// axpys, one read of each row and one write of `out`.
    #[doc(hidden)]
    fn combine_rows(out: &mut [Self], rows: [&[Self]; 4], alpha: [Self; 4], n: usize, first: bool);
    /// Whether an apply coefficient is safe in this precision.
    #[doc(hidden)]
    fn coef_fits(alpha: f64) -> bool;
    /// The Gram pass without SIMD (Cortex-M), one pair of row blocks at a
    /// time: the sum of products of `x` and `y` (one block, at most
    /// [`BLOCK`] columns), bitwise the entry the scalar tile gives the pair
    /// ([`scalar::gram_tile_f32`] from zero when `fast`, else
    /// [`gram_tile_exact`]).
    #[doc(hidden)]
    fn pair_sum(x: &[Self], y: &[Self], fast: bool) -> f64;
    /// Whether a row block may take the narrow `f32` lanes (never in `f64`).
    #[doc(hidden)]
    fn block_fits(x: &[Self]) -> bool;
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

/// Which kernels this build uses. `--cfg pcgrad_scalar` forces the scalar
/// twins (the Cortex-M path) on any host, so the test suite can run them.
pub const SIMD: bool = cfg!(all(
    not(pcgrad_scalar),
    any(
        target_arch = "x86_64",
        all(target_arch = "x86", target_feature = "sse2"),
        all(target_arch = "aarch64", target_feature = "neon"),
        all(target_arch = "wasm32", target_feature = "simd128"),
    )
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
    fn gram_run(
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: Tile,
        len: usize,
        fast: u64,
        out: &mut [[f64; 4]; 4],
    ) -> u64 {
        if SIMD {
            simd::gram_run_f32(a, b, shape, len, fast, out)
        } else {
            run_blocks(a, b, shape, len, fast, out, scalar::gram_tile_f32)
        }
    }
    #[inline]
    fn combine_rows(out: &mut [f32], rows: [&[f32]; 4], alpha: [f32; 4], n: usize, first: bool) {
        if SIMD {
            simd::combine_f32(out, rows, alpha, n, first)
        } else {
            scalar::combine(out, rows, alpha, n, first)
        }
    }
    #[inline]
    fn coef_fits(alpha: f64) -> bool {
        let m = alpha.abs();
        m == 0.0 || (COEF_MIN..=COEF_MAX).contains(&m)
    }
    #[inline]
    fn pair_sum(x: &[f32], y: &[f32], fast: bool) -> f64 {
        if fast {
            scalar::pair_f32(x, y)
        } else {
            scalar::pair_exact(x, y)
        }
    }
    #[inline]
    fn block_fits(x: &[f32]) -> bool {
        scalar::fast_range_f32(x)
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
    fn gram_run(
        a: [&[f64]; 4],
        b: [&[f64]; 4],
        shape: Tile,
        len: usize,
        _fast: u64,
        out: &mut [[f64; 4]; 4],
    ) -> u64 {
        // No narrow lanes in f64: every block is exact.
        run_blocks(a, b, shape, len, 0, out, |_, _, _, _, _| false)
    }
    #[inline]
    fn combine_rows(out: &mut [f64], rows: [&[f64]; 4], alpha: [f64; 4], n: usize, first: bool) {
        scalar::combine(out, rows, alpha, n, first)
    }
    #[inline]
    fn coef_fits(alpha: f64) -> bool {
        alpha.is_finite()
    }
    #[inline]
    fn pair_sum(x: &[f64], y: &[f64], _fast: bool) -> f64 {
        scalar::pair_exact(x, y)
    }
    #[inline]
    fn block_fits(_x: &[f64]) -> bool {
        false
    }
}

/// Largest |x| of a row, NaN if the row holds a NaN.
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
/// Never inlined: the rare fallback stays out of the kernels' frames.
#[inline(never)]
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

/// [`Element::gram_run`] over a per-block tile kernel `tile` (which
/// returns false when a diagonal block does not fit the narrow lanes).
#[inline(always)]
fn run_blocks<F: Element>(
    a: [&[F]; 4],
    b: [&[F]; 4],
    shape: Tile,
    len: usize,
    fast: u64,
    out: &mut [[f64; 4]; 4],
    mut tile: impl FnMut([&[F]; 4], [&[F]; 4], Tile, usize, &mut [[f64; 4]; 4]) -> bool,
) -> u64 {
    let mut fits = 0u64;
    let (mut k0, mut bit) = (0, 1u64);
    while k0 < len {
        let k1 = len.min(k0 + BLOCK);
        let (ab, bb) = (a.map(|r| &r[k0..k1]), b.map(|r| &r[k0..k1]));
        let mut part = [[0.0f64; 4]; 4];
        if fast & bit != 0 && tile(ab, bb, shape, k1 - k0, &mut part) {
            fits |= bit;
        } else {
            part = [[0.0; 4]; 4];
            gram_tile_exact(ab, bb, k1 - k0, &mut part);
        }
        for (r, (o, p)) in out.iter_mut().zip(&part).enumerate() {
            for (c, (o, &p)) in o.iter_mut().zip(p).enumerate() {
                if shape.has(r, c) {
                    *o += p;
                }
            }
        }
        k0 = k1;
        bit <<= 1;
    }
    fits
}

/// Scalar twins: the same blocking and accumulation precision as the SIMD
/// kernels, one lane wide.
pub mod scalar {
    /// Columns per inner `f32` run of the scalar Gram tile.
    const RUN: usize = 32;

    /// `out[r][c] += sum_k a[r][k] * b[c][k]`: `f32` accumulation in runs of
    /// 32 columns (what one SIMD lane sees in a 256-column block), the runs
    /// summed in `f32`, one `f64` add per pair at the end. On a diagonal
    /// tile, false when a row is out of range ([`fast_range_f32`]). Not
    /// inlined into the block loop (code size on small targets).
    #[inline(never)]
    pub fn gram_tile_f32(
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: super::Tile,
        len: usize,
        out: &mut [[f64; 4]; 4],
    ) -> bool {
        if shape.diagonal
            && !a[..shape.rows.clamp(1, 4)]
                .iter()
                .all(|r| fast_range_f32(&r[..len]))
        {
            return false;
        }
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
        true
    }

    /// One pair of [`gram_tile_f32`], on its own: `f32` products summed in
    /// runs of 32 columns, the runs summed in `f32`, then widened (and added
    /// to zero, as the tile adds into a zeroed block sum). Bitwise the
    /// tile's entry for the pair: every pair accumulates independently, in
    /// the same order. Not inlined (one copy on small targets).
    #[inline(never)]
    pub fn pair_f32(x: &[f32], y: &[f32]) -> f64 {
        let mut total = 0.0f32;
        for (xs, ys) in x.chunks(RUN).zip(y.chunks(RUN)) {
            let mut acc = 0.0f32;
            for (&p, &q) in xs.iter().zip(ys) {
                acc = p.mul_add_fast(q, acc);
            }
            total += acc;
        }
        0.0 + f64::from(total)
    }

    /// One pair of [`super::gram_tile_exact`]: products and sums in `f64`,
    /// from zero, in column order. Not inlined (the rare fallback).
    #[inline(never)]
    pub fn pair_exact<F: super::Element>(x: &[F], y: &[F]) -> f64 {
        let mut s = 0.0;
        for (&p, &q) in x.iter().zip(y) {
            s += p.to_f64() * q.to_f64();
        }
        s
    }

    /// Whether a row block may use the `f32` Gram lanes: its largest |x| is
    /// 0 or in [2^-50, 2^50] (false on NaN and infinities).
    pub fn fast_range_f32(row: &[f32]) -> bool {
        let m = super::max_abs_f32(row);
        m == 0.0 || (super::FAST_MIN..=super::FAST_MAX).contains(&m)
    }

    /// `out[k] += alpha * x[k]` (bitwise as the SIMD form: a multiply,
    /// then an add).
    pub fn axpy<F: super::Element>(out: &mut [F], alpha: F, x: &[F]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = *o + v * alpha;
        }
    }

    /// [`super::Element::combine_rows`]: a fill with zeros (when `first`),
    /// then one [`axpy`] per row.
    pub fn combine<F: super::Element>(
        out: &mut [F],
        rows: [&[F]; 4],
        alpha: [F; 4],
        n: usize,
        first: bool,
    ) {
        if first {
            out.fill(F::zero());
        }
        for (x, &a) in rows.iter().zip(&alpha).take(n) {
            axpy(out, a, x);
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

/// Eight `f32` lanes: the SIMD kernels are written once over this trait and
/// compiled for `wide::f32x8` (the compile-time backend) and, with `std` on
/// x86-64, for AVX registers chosen at run time. Every backend does the same
/// lane arithmetic (a multiply, then an add: no fused multiply-add), so the
/// Gram matrix and the merged gradient are bitwise the same whichever one
/// runs.
trait Lanes8: Copy {
    fn zero() -> Self;
    fn load(x: &[f32; 8]) -> Self;
    fn splat(x: f32) -> Self;
    /// `acc + self * b`, rounded twice.
    fn mul_add2(self, b: Self, acc: Self) -> Self;
    fn to_array(self) -> [f32; 8];
}

/// Columns per SIMD step (the lanes of [`Lanes8`]).
const W: usize = 8;

/// The `f64` sum of a pair's lanes (a fixed pairwise order), plus the
/// products of the tail columns past the last full vector. Every term is an
/// `f32` value, so for gradients of ordinary dynamic range the sums are
/// exact in `f64` and independent of how the columns were split.
#[inline(always)]
fn finish(acc: [f32; W], a: &[f32], b: &[f32], from: usize) -> f64 {
    add_tail(lane_sum(acc), a, b, from)
}

/// The lane part of [`finish`].
#[inline(always)]
fn lane_sum(acc: [f32; W]) -> f64 {
    let h: [f64; 4] = core::array::from_fn(|l| f64::from(acc[l]) + f64::from(acc[l + 4]));
    (h[0] + h[2]) + (h[1] + h[3])
}

/// The tail part of [`finish`]: `s` plus the tail products, in order.
#[inline(always)]
fn add_tail(mut s: f64, a: &[f32], b: &[f32], from: usize) -> f64 {
    for (&x, &y) in a[from..].iter().zip(&b[from..]) {
        s += f64::from(x * y);
    }
    s
}

/// Whether a row fits the `f32` lanes, from its sum of squares as the
/// lanes of the diagonal accumulator hold it: every lane at most 2^100 (so
/// every |x| <= 2^50; NaN and infinities fail), every tail value at most
/// 2^50, and the lanes' total at least 2^-100, or the row exactly zero.
///
/// `total` is the lanes' sum as [`lane_sum`] gives it. Its order does not
/// matter here: the lanes are non-negative multiples of 2^-149 (when all
/// are at most 2^100), so every partial sum below 2^-100 is exact in `f64`
/// (at most 49 significant bits), and any order of summing gives a total
/// of at least 2^-100 exactly when the true sum is (rounding is monotone
/// and 2^-100 is a double), and zero exactly when every lane is zero.
#[inline(always)]
fn row_fits(sq: [f32; W], total: f64, row: &[f32], from: usize) -> bool {
    let mut ok = true;
    for l in sq {
        ok &= l <= FAST_SQ_MAX;
    }
    for &x in &row[from..] {
        ok &= x.abs() <= FAST_MAX;
    }
    ok && (total >= f64::from(FAST_SQ_MIN) || (total == 0.0 && row.iter().all(|&x| x == 0.0)))
}

/// The R x C rectangle of pairs `a[r0 + r]` x `b[c0 + c]`.
#[allow(clippy::needless_range_loop)] // indexed loops over const-size register arrays
#[inline(always)]
fn rect<V: Lanes8, const R: usize, const C: usize>(
    a: &[&[f32]; 4],
    b: &[&[f32]; 4],
    (r0, c0): (usize, usize),
    len: usize,
    out: &mut [[f64; 4]; 4],
) {
    let n = len / W;
    let mut ca: [&[[f32; W]]; R] = [&[]; R];
    for (r, x) in ca.iter_mut().enumerate() {
        *x = &a[r0 + r][..len].as_chunks::<W>().0[..n];
    }
    let mut cb: [&[[f32; W]]; C] = [&[]; C];
    for (c, x) in cb.iter_mut().enumerate() {
        *x = &b[c0 + c][..len].as_chunks::<W>().0[..n];
    }
    let mut acc = [[V::zero(); C]; R];
    for k in 0..n {
        let mut va = [V::zero(); R];
        for r in 0..R {
            va[r] = V::load(&ca[r][k]);
        }
        for c in 0..C {
            let vb = V::load(&cb[c][k]);
            for r in 0..R {
                acc[r][c] = va[r].mul_add2(vb, acc[r][c]);
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            let (x, y) = (&a[r0 + r][..len], &b[c0 + c][..len]);
            out[r0 + r][c0 + c] += finish(acc[r][c].to_array(), x, y, n * W);
        }
    }
}

/// The upper triangle (c >= r) of rows `a[r0..r0 + R]` with themselves;
/// false when a row is out of the `f32` range (`out` is then garbage).
#[allow(clippy::needless_range_loop)] // indexed loops over const-size register arrays
#[inline(always)]
fn tri<V: Lanes8, const R: usize>(
    a: &[&[f32]; 4],
    r0: usize,
    len: usize,
    out: &mut [[f64; 4]; 4],
) -> bool {
    let n = len / W;
    let mut ca: [&[[f32; W]]; R] = [&[]; R];
    for (r, x) in ca.iter_mut().enumerate() {
        *x = &a[r0 + r][..len].as_chunks::<W>().0[..n];
    }
    let mut acc = [[V::zero(); R]; R];
    for k in 0..n {
        let mut va = [V::zero(); R];
        for r in 0..R {
            va[r] = V::load(&ca[r][k]);
        }
        for r in 0..R {
            for c in r..R {
                acc[r][c] = va[r].mul_add2(va[c], acc[r][c]);
            }
        }
    }
    tri_flush(&acc, a, r0, len, out)
}

/// The end of [`tri`]: the accumulators into `out`, and whether the rows
/// fit the `f32` lanes.
#[allow(clippy::needless_range_loop)] // indexed loops over const-size register arrays
#[inline(always)]
fn tri_flush<V: Lanes8, const R: usize>(
    acc: &[[V; R]; R],
    a: &[&[f32]; 4],
    r0: usize,
    len: usize,
    out: &mut [[f64; 4]; 4],
) -> bool {
    let n = len / W;
    let mut ok = true;
    for r in 0..R {
        let x = &a[r0 + r][..len];
        let sq = acc[r][r].to_array();
        let s = lane_sum(sq);
        ok &= row_fits(sq, s, x, n * W);
        out[r0 + r][r0 + r] += add_tail(s, x, x, n * W);
        for c in r + 1..R {
            let y = &a[r0 + c][..len];
            out[r0 + r][r0 + c] += finish(acc[r][c].to_array(), x, y, n * W);
        }
    }
    ok
}

/// A tile of `shape` as sub-tiles that fit the register file: diagonal
/// blocks of `D` rows, off-diagonal rectangles of `SR` x `SC` rows.
#[inline(always)]
fn tile<V: Lanes8, const D: usize, const SR: usize, const SC: usize>(
    a: [&[f32]; 4],
    b: [&[f32]; 4],
    shape: Tile,
    len: usize,
    out: &mut [[f64; 4]; 4],
) -> bool {
    macro_rules! rect {
        ($bb:expr, $at:expr, $rr:expr, $cc:expr) => {
            match ($rr, $cc) {
                (1, 1) => rect::<V, 1, 1>(&a, $bb, $at, len, out),
                (1, 2) => rect::<V, 1, 2>(&a, $bb, $at, len, out),
                (1, 3) => rect::<V, 1, 3>(&a, $bb, $at, len, out),
                (1, _) => rect::<V, 1, 4>(&a, $bb, $at, len, out),
                (2, 1) => rect::<V, 2, 1>(&a, $bb, $at, len, out),
                (2, 2) => rect::<V, 2, 2>(&a, $bb, $at, len, out),
                (2, 3) if SC >= 3 => rect::<V, 2, 3>(&a, $bb, $at, len, out),
                (2, _) if SC >= 4 => rect::<V, 2, 4>(&a, $bb, $at, len, out),
                (3, 1) if SR >= 3 => rect::<V, 3, 1>(&a, $bb, $at, len, out),
                (3, 2) if SR >= 3 => rect::<V, 3, 2>(&a, $bb, $at, len, out),
                (3, 3) if SR >= 3 && SC >= 3 => rect::<V, 3, 3>(&a, $bb, $at, len, out),
                (3, _) if SR >= 3 && SC >= 4 => rect::<V, 3, 4>(&a, $bb, $at, len, out),
                (_, 1) if SR >= 4 => rect::<V, 4, 1>(&a, $bb, $at, len, out),
                (_, 2) if SR >= 4 => rect::<V, 4, 2>(&a, $bb, $at, len, out),
                (_, 3) if SR >= 4 && SC >= 3 => rect::<V, 4, 3>(&a, $bb, $at, len, out),
                (_, _) if SR >= 4 && SC >= 4 => rect::<V, 4, 4>(&a, $bb, $at, len, out),
                _ => rect::<V, 1, 1>(&a, $bb, $at, len, out),
            }
        };
    }
    let (rows, cols) = (shape.rows.clamp(1, 4), shape.cols.clamp(1, 4));
    if !shape.diagonal {
        let mut r0 = 0;
        while r0 < rows {
            let mut c0 = 0;
            while c0 < cols {
                rect!(&b, (r0, c0), SR.min(rows - r0), SC.min(cols - c0));
                c0 += SC;
            }
            r0 += SR;
        }
        return true;
    }
    let mut ok = true;
    let mut r0 = 0;
    while r0 < rows {
        let rr = D.min(rows - r0);
        ok &= match rr {
            1 => tri::<V, 1>(&a, r0, len, out),
            2 => tri::<V, 2>(&a, r0, len, out),
            3 if D >= 3 => tri::<V, 3>(&a, r0, len, out),
            _ if D >= 4 => tri::<V, 4>(&a, r0, len, out),
            _ => tri::<V, 1>(&a, r0, len, out),
        };
        // The rows after this diagonal block, against it.
        let mut c0 = r0 + D;
        while c0 < rows {
            let mut s0 = r0;
            while s0 < r0 + rr {
                rect!(&a, (s0, c0), SR.min(r0 + rr - s0), SC.min(rows - c0));
                s0 += SR;
            }
            c0 += SC;
        }
        r0 += D;
    }
    ok
}

/// `out[k] += alpha * x[k]` over `len` columns.
#[inline(always)]
fn axpy8<V: Lanes8>(out: &mut [f32], alpha: f32, x: &[f32]) {
    let len = out.len().min(x.len());
    let n = len / W;
    let (co, to) = out[..len].as_chunks_mut::<W>();
    let (cx, tx) = x[..len].as_chunks::<W>();
    let va = V::splat(alpha);
    for (o, v) in co[..n].iter_mut().zip(&cx[..n]) {
        *o = V::load(v).mul_add2(va, V::load(o)).to_array();
    }
    for (o, &v) in to.iter_mut().zip(tx) {
        *o += v * alpha;
    }
}

/// [`Element::combine_rows`] on `R` rows.
#[allow(clippy::needless_range_loop)] // indexed loops over const-size register arrays
#[inline(always)]
fn rows8<V: Lanes8, const R: usize>(
    out: &mut [f32],
    rows: [&[f32]; 4],
    alpha: [f32; 4],
    first: bool,
) {
    let len = rows[..R].iter().fold(out.len(), |m, r| m.min(r.len()));
    let (head, rest) = out.split_at_mut(len);
    if first {
        rest.fill(0.0);
    }
    let (co, to) = head.as_chunks_mut::<W>();
    let n = co.len();
    let mut cx: [&[[f32; W]]; R] = [&[]; R];
    for (r, x) in cx.iter_mut().enumerate() {
        *x = &rows[r][..len].as_chunks::<W>().0[..n];
    }
    let mut va = [V::zero(); R];
    for r in 0..R {
        va[r] = V::splat(alpha[r]);
    }
    for (k, o) in co.iter_mut().enumerate() {
        let mut acc = if first { V::zero() } else { V::load(o) };
        for r in 0..R {
            acc = V::load(&cx[r][k]).mul_add2(va[r], acc);
        }
        *o = acc.to_array();
    }
    for (k, o) in to.iter_mut().enumerate() {
        let mut v = if first { 0.0 } else { *o };
        for r in 0..R {
            v += rows[r][n * W + k] * alpha[r];
        }
        *o = v;
    }
}

/// [`Element::combine_rows`] on [`Lanes8`].
#[inline(always)]
fn combine8<V: Lanes8>(out: &mut [f32], rows: [&[f32]; 4], alpha: [f32; 4], n: usize, first: bool) {
    match n {
        0 if first => out.fill(0.0),
        0 => {}
        1 => rows8::<V, 1>(out, rows, alpha, first),
        2 => rows8::<V, 2>(out, rows, alpha, first),
        3 => rows8::<V, 3>(out, rows, alpha, first),
        _ => rows8::<V, 4>(out, rows, alpha, first),
    }
}

/// The SIMD kernels of the compile-time backend (`wide::f32x8`: one AVX
/// register, two SSE2 or NEON registers), with the run-time AVX kernels
/// ([`x86`]) in front of them where those are available.
pub mod simd {
    use super::{Lanes8, Tile};
    use wide::f32x8;

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
    /// `out` holds garbage and the caller takes the exact kernel).
    pub fn gram_tile_f32(
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: Tile,
        len: usize,
        out: &mut [[f64; 4]; 4],
    ) -> bool {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if let Some(ok) = super::x86::gram_tile_f32(a, b, shape, len, out) {
            return ok;
        }
        portable(a, b, shape, len, out)
    }

    /// [`super::Element::gram_run`] for `f32`, on the run-time kernels
    /// where those are in use.
    pub fn gram_run_f32(
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: Tile,
        len: usize,
        fast: u64,
        out: &mut [[f64; 4]; 4],
    ) -> u64 {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if let Some(fits) = super::x86::gram_run_f32(a, b, shape, len, fast, out) {
            return fits;
        }
        portable_run(a, b, shape, len, fast, out)
    }

    /// [`gram_run_f32`] on the compile-time backend only.
    pub fn portable_run(
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: Tile,
        len: usize,
        fast: u64,
        out: &mut [[f64; 4]; 4],
    ) -> u64 {
        super::run_blocks(a, b, shape, len, fast, out, portable)
    }

    /// [`super::Element::combine_rows`] for `f32`, on the run-time kernels
    /// where those are in use.
    pub fn combine_f32(out: &mut [f32], rows: [&[f32]; 4], alpha: [f32; 4], n: usize, first: bool) {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if super::x86::combine_f32(out, rows, alpha, n, first) {
            return;
        }
        portable_combine(out, rows, alpha, n, first)
    }

    /// [`combine_f32`] on the compile-time backend only.
    pub fn portable_combine(
        out: &mut [f32],
        rows: [&[f32]; 4],
        alpha: [f32; 4],
        n: usize,
        first: bool,
    ) {
        super::combine8::<f32x8>(out, rows, alpha, n, first)
    }

    /// [`gram_tile_f32`] on the compile-time backend only, with sub-tiles
    /// sized to its register file: 32 registers (AVX-512) hold a 4 x 4
    /// tile, 16 AVX registers a 4-row triangle and 2 x 4 rectangles, and
    /// with two registers per vector (SSE2, NEON) 2 x 2 pieces.
    #[inline(always)]
    pub fn portable(
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

    /// `out[k] += alpha * x[k]`.
    pub fn axpy_f32(out: &mut [f32], alpha: f32, x: &[f32]) {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if super::x86::axpy_f32(out, alpha, x) {
            return;
        }
        portable_axpy(out, alpha, x)
    }

    /// [`axpy_f32`] on the compile-time backend only.
    pub fn portable_axpy(out: &mut [f32], alpha: f32, x: &[f32]) {
        super::axpy8::<f32x8>(out, alpha, x)
    }
}

/// Run-time selected AVX kernels (x86-64 with `std`): the same generic
/// kernels as [`simd`], compiled with `#[target_feature]` for AVX (16
/// registers) and AVX-512VL (32 registers, still 8-lane vectors), and
/// chosen once per process with `is_x86_feature_detected!`. Bitwise the
/// same results as the compile-time backend.
///
/// This module holds the crate's only `unsafe` outside the C ABI: calling a
/// `#[target_feature]` function, and the AVX intrinsics behind `Lanes8`,
/// is sound only on a CPU with those features, which the cached detection
/// establishes before any such call.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[allow(unsafe_code)]
pub mod x86 {
    use super::{Lanes8, Tile};
    use core::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };
    use core::sync::atomic::{AtomicU8, Ordering};

    /// The kernels in use, from [`level`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Level {
        /// The compile-time backend (`wide`; SSE2 on a default build).
        Portable = 1,
        /// AVX, 16 vector registers.
        Avx = 2,
        /// AVX-512VL: AVX vectors in 32 registers.
        Avx512 = 3,
    }

    static LEVEL: AtomicU8 = AtomicU8::new(0);
    /// 0: use the detected level; otherwise a forced one (tests, benches).
    static FORCE: AtomicU8 = AtomicU8::new(0);

    /// The best kernels this CPU runs (detected once, then cached).
    pub fn detected() -> Level {
        let l = match LEVEL.load(Ordering::Relaxed) {
            0 => {
                let l = if std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx")
                {
                    3
                } else if std::is_x86_feature_detected!("avx") {
                    2
                } else {
                    1
                };
                LEVEL.store(l, Ordering::Relaxed);
                l
            }
            l => l,
        };
        from_u8(l)
    }

    fn from_u8(l: u8) -> Level {
        match l {
            3 => Level::Avx512,
            2 => Level::Avx,
            _ => Level::Portable,
        }
    }

    /// The kernels the passes use: [`detected`], or at most the level given
    /// to [`force`].
    pub fn level() -> Level {
        let d = detected();
        match FORCE.load(Ordering::Relaxed) {
            0 => d,
            f => from_u8(f.min(d as u8)),
        }
    }

    /// Caps the kernels at `level` for the whole process (`None`: the
    /// detected best). For measuring and testing the backends against each
    /// other; results are bitwise the same at every level.
    pub fn force(level: Option<Level>) {
        FORCE.store(level.map_or(0, |l| l as u8), Ordering::Relaxed);
    }

    /// An AVX register. Values of this type are only created and used
    /// inside the `#[target_feature(enable = "avx")]` functions below, which
    /// run only after [`detected`] found AVX.
    #[derive(Clone, Copy)]
    struct Avx(__m256);

    impl Lanes8 for Avx {
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY: AVX is present (see the type's documentation).
            Avx(unsafe { _mm256_setzero_ps() })
        }
        #[inline(always)]
        fn load(x: &[f32; 8]) -> Self {
            // SAFETY: `x` is 8 readable floats; AVX is present.
            Avx(unsafe { _mm256_loadu_ps(x.as_ptr()) })
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            // SAFETY: AVX is present.
            Avx(unsafe { _mm256_set1_ps(x) })
        }
        #[inline(always)]
        fn mul_add2(self, b: Self, acc: Self) -> Self {
            // SAFETY: AVX is present.
            Avx(unsafe { _mm256_add_ps(acc.0, _mm256_mul_ps(self.0, b.0)) })
        }
        #[inline(always)]
        fn to_array(self) -> [f32; 8] {
            let mut out = [0.0f32; 8];
            // SAFETY: `out` is 8 writable floats; AVX is present.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), self.0) };
            out
        }
    }

    #[target_feature(enable = "avx")]
    fn gram_avx(
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: Tile,
        len: usize,
        out: &mut [[f64; 4]; 4],
    ) -> bool {
        super::tile::<Avx, 4, 2, 4>(a, b, shape, len, out)
    }

    #[target_feature(enable = "avx,avx512f,avx512vl")]
    fn gram_avx512(
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: Tile,
        len: usize,
        out: &mut [[f64; 4]; 4],
    ) -> bool {
        super::tile::<Avx, 4, 4, 4>(a, b, shape, len, out)
    }

    #[target_feature(enable = "avx")]
    fn axpy_avx(out: &mut [f32], alpha: f32, x: &[f32]) {
        super::axpy8::<Avx>(out, alpha, x)
    }

    #[target_feature(enable = "avx")]
    fn gram_run_avx(
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: Tile,
        len: usize,
        fast: u64,
        out: &mut [[f64; 4]; 4],
    ) -> u64 {
        super::run_blocks(a, b, shape, len, fast, out, |a, b, s, l, o| {
            super::tile::<Avx, 4, 2, 4>(a, b, s, l, o)
        })
    }

    #[target_feature(enable = "avx,avx512f,avx512vl")]
    fn gram_run_avx512(
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: Tile,
        len: usize,
        fast: u64,
        out: &mut [[f64; 4]; 4],
    ) -> u64 {
        super::run_blocks(a, b, shape, len, fast, out, |a, b, s, l, o| {
            super::tile::<Avx, 4, 4, 4>(a, b, s, l, o)
        })
    }

    #[target_feature(enable = "avx")]
    fn combine_avx(out: &mut [f32], rows: [&[f32]; 4], alpha: [f32; 4], n: usize, first: bool) {
        super::combine8::<Avx>(out, rows, alpha, n, first)
    }

    /// [`super::Element::gram_run`] on the run-time kernels; `None` when
    /// they are not in use.
    pub fn gram_run_f32(
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: Tile,
        len: usize,
        fast: u64,
        out: &mut [[f64; 4]; 4],
    ) -> Option<u64> {
        match level() {
            // SAFETY: `level` is at most `detected`, so the CPU has
            // AVX-512F, AVX-512VL and AVX.
            Level::Avx512 => Some(unsafe { gram_run_avx512(a, b, shape, len, fast, out) }),
            // SAFETY: as above, the CPU has AVX.
            Level::Avx => Some(unsafe { gram_run_avx(a, b, shape, len, fast, out) }),
            Level::Portable => None,
        }
    }

    /// [`super::Element::combine_rows`] on AVX; false when the run-time
    /// kernels are not in use.
    pub fn combine_f32(
        out: &mut [f32],
        rows: [&[f32]; 4],
        alpha: [f32; 4],
        n: usize,
        first: bool,
    ) -> bool {
        match level() {
            Level::Portable => false,
            _ => {
                // SAFETY: `level` is at most `detected`: the CPU has AVX.
                unsafe { combine_avx(out, rows, alpha, n, first) };
                true
            }
        }
    }

    /// The Gram tile on the run-time kernels; `None` when they are not in
    /// use.
    pub fn gram_tile_f32(
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: Tile,
        len: usize,
        out: &mut [[f64; 4]; 4],
    ) -> Option<bool> {
        match level() {
            // SAFETY: `level` is at most `detected`, so the CPU has
            // AVX-512F, AVX-512VL and AVX.
            Level::Avx512 => Some(unsafe { gram_avx512(a, b, shape, len, out) }),
            // SAFETY: as above, the CPU has AVX.
            Level::Avx => Some(unsafe { gram_avx(a, b, shape, len, out) }),
            Level::Portable => None,
        }
    }

    /// `out[k] += alpha * x[k]` on AVX; false when the run-time kernels are
    /// not in use.
    pub fn axpy_f32(out: &mut [f32], alpha: f32, x: &[f32]) -> bool {
        match level() {
            Level::Portable => false,
            _ => {
                // SAFETY: `level` is at most `detected`: the CPU has AVX.
                unsafe { axpy_avx(out, alpha, x) };
                true
            }
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

    /// Every tile shape with its row sets: rows 0..4 of `m` against
    /// themselves (diagonal) or against rows 4..8.
    fn tile_cases(m: &[[f32; 300]; 8]) -> impl Iterator<Item = (Tile, [&[f32]; 4], [&[f32]; 4])> {
        let a = [&m[0][..], &m[1][..], &m[2][..], &m[3][..]];
        let b = [&m[4][..], &m[5][..], &m[6][..], &m[7][..]];
        (1..=4usize)
            .flat_map(|rows| (1..=4usize).map(move |cols| (rows, cols)))
            .flat_map(|(rows, cols)| [false, true].map(|diagonal| (rows, cols, diagonal)))
            .filter(|&(rows, cols, diagonal)| !diagonal || rows == cols)
            .map(move |(rows, cols, diagonal)| {
                let shape = Tile {
                    rows,
                    cols,
                    diagonal,
                };
                (shape, a, if diagonal { a } else { b })
            })
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
            for (shape, a, b) in tile_cases(&m) {
                let (mut x, mut y, mut z) = ([[7.0; 4]; 4], [[7.0; 4]; 4], [[0.0; 4]; 4]);
                simd::gram_tile_f32(a, b, shape, len, &mut x);
                scalar::gram_tile_f32(a, b, shape, len, &mut y);
                gram_tile_exact(a, b, len, &mut z);
                for r in 0..4 {
                    for c in 0..4 {
                        if shape.has(r, c) {
                            assert!((x[r][c] - 7.0 - z[r][c]).abs() <= 1e-5, "{shape:?} {r} {c}");
                            assert!((y[r][c] - 7.0 - z[r][c]).abs() <= 1e-5, "{shape:?} {r} {c}");
                        } else {
                            assert_eq!((x[r][c], y[r][c]), (7.0, 7.0), "{shape:?} {r} {c}");
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

    /// The diagonal tile tells, in both twins, whether its rows fit the
    /// `f32` lanes: ordinary and zero rows do, rows with a huge, NaN or
    /// infinite value or only tiny values do not.
    #[test]
    fn diagonal_tiles_check_the_row_range() {
        let base = rows(9, 300);
        let cases: [(f32, f32, bool); 8] = [
            (0.0, 0.0, true),
            (1.0, 0.5, true),
            (1e30, 1.0, false),
            (f32::NAN, 1.0, false),
            (f32::INFINITY, 1.0, false),
            (-f32::INFINITY, 1.0, false),
            (1e-30, 0.0, false),
            (1e-10, 0.0, true),
        ];
        for len in [8usize, 16, 17, 256] {
            for &(special, scale, fits) in &cases {
                for pos in [0usize, 7, len - 1] {
                    if pos >= len - len % 8 && special == 1e-10 {
                        // A small value alone in the tail columns (the
                        // SIMD lanes all zero) takes the exact kernel in
                        // the SIMD form: either choice is right.
                        continue;
                    }
                    let mut r = [0.0f32; 300];
                    for (x, &y) in r.iter_mut().zip(&base[0]).take(len) {
                        *x = y * scale;
                    }
                    r[pos] = special;
                    let a = [&r[..], &base[1][..], &base[2][..], &base[3][..]];
                    let shape = Tile {
                        rows: 4,
                        cols: 4,
                        diagonal: true,
                    };
                    let mut out = [[0.0; 4]; 4];
                    let got = simd::gram_tile_f32(a, a, shape, len, &mut out);
                    assert_eq!(got, fits, "simd len {len} {special} at {pos}");
                    let got = scalar::gram_tile_f32(a, a, shape, len, &mut out);
                    assert_eq!(got, fits, "scalar len {len} {special} at {pos}");
                }
            }
        }
    }

    /// The run-time kernels (every level this CPU has) give bitwise the
    /// compile-time backend's Gram tiles and axpy.
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[test]
    fn runtime_kernels_are_bitwise_the_portable_ones() {
        let m = rows(23, 300);
        for level in [x86::Level::Portable, x86::Level::Avx, x86::Level::Avx512] {
            x86::force(Some(level));
            for len in [1usize, 8, 13, 100, 256] {
                for (shape, a, b) in tile_cases(&m) {
                    let (mut x, mut y) = ([[0.0; 4]; 4], [[0.0; 4]; 4]);
                    let ok_x = simd::gram_tile_f32(a, b, shape, len, &mut x);
                    let ok_y = simd::portable(a, b, shape, len, &mut y);
                    assert_eq!(ok_x, ok_y);
                    assert_eq!(
                        x.map(|r| r.map(f64::to_bits)),
                        y.map(|r| r.map(f64::to_bits)),
                        "{level:?} {shape:?} {len}"
                    );
                }
                let (mut o1, mut o2) = (m[0], m[0]);
                simd::axpy_f32(&mut o1[..len], 0.3, &m[1][..len]);
                simd::portable_axpy(&mut o2[..len], 0.3, &m[1][..len]);
                assert_eq!(o1.map(f32::to_bits), o2.map(f32::to_bits));
            }
        }
        x86::force(None);
    }

    /// One `gram_run` over many blocks is bitwise one tile call per block
    /// (the exact kernel where the fast one may not run or a diagonal
    /// block's rows do not fit), added in block order, on every run-time
    /// level and in the scalar twin; `combine_rows` is bitwise a fill and
    /// one axpy per row.
    #[test]
    fn runs_are_bitwise_one_call_per_block() {
        let len = 5 * BLOCK + 13;
        let mut m = [[0.0f32; 5 * BLOCK + 13]; 8];
        let mut s = 7u32;
        for r in m.iter_mut() {
            for x in r.iter_mut() {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *x = (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            }
        }
        // Block 1 of row 1 out of range, block 3 of row 6 tiny.
        m[1][BLOCK + 5] = 1e30;
        for x in &mut m[6][3 * BLOCK..4 * BLOCK] {
            *x *= 1e-33;
        }
        type Tf = fn([&[f32]; 4], [&[f32]; 4], Tile, usize, &mut [[f64; 4]; 4]) -> bool;
        type Rf = fn([&[f32]; 4], [&[f32]; 4], Tile, usize, u64, &mut [[f64; 4]; 4]) -> u64;
        let pairs: [(Tf, Rf); 3] = [
            (simd::portable, simd::portable_run),
            (scalar::gram_tile_f32, |a, b, sh, l, f, o| {
                run_blocks(a, b, sh, l, f, o, scalar::gram_tile_f32)
            }),
            (simd::gram_tile_f32, simd::gram_run_f32),
        ];
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        let levels = [x86::Level::Portable, x86::Level::Avx, x86::Level::Avx512];
        #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
        let levels = [()];
        for level in levels {
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            x86::force(Some(level));
            for &(tile_fn, run_fn) in &pairs {
                for (ra, rb, diagonal) in [(0, 0, true), (4, 4, true), (0, 4, false)] {
                    for (rows_, cols) in [(1, 1), (2, 2), (3, 4), (4, 4)] {
                        if diagonal && rows_ != cols {
                            continue;
                        }
                        for fast in [u64::MAX, 0b10110, 0] {
                            let a = [0, 1, 2, 3].map(|r| &m[ra + r][..]);
                            let b = [0, 1, 2, 3].map(|r| &m[rb + r][..]);
                            let shape = Tile {
                                rows: rows_,
                                cols,
                                diagonal,
                            };
                            let mut want = [[0.5; 4]; 4];
                            let mut want_fits = 0u64;
                            for (k, k0) in (0..len).step_by(BLOCK).enumerate() {
                                let k1 = len.min(k0 + BLOCK);
                                let (ab, bb) = (a.map(|r| &r[k0..k1]), b.map(|r| &r[k0..k1]));
                                let mut o = [[0.0; 4]; 4];
                                if fast >> k & 1 == 1 && tile_fn(ab, bb, shape, k1 - k0, &mut o) {
                                    want_fits |= 1 << k;
                                } else {
                                    o = [[0.0; 4]; 4];
                                    gram_tile_exact(ab, bb, k1 - k0, &mut o);
                                }
                                for r in 0..4 {
                                    for c in 0..4 {
                                        if shape.has(r, c) {
                                            want[r][c] += o[r][c];
                                        }
                                    }
                                }
                            }
                            let mut got = [[0.5; 4]; 4];
                            let fits = run_fn(a, b, shape, len, fast, &mut got);
                            assert_eq!(fits, want_fits, "{shape:?} {fast:b}");
                            assert_eq!(
                                got.map(|r| r.map(f64::to_bits)),
                                want.map(|r| r.map(f64::to_bits)),
                                "{shape:?} {fast:b}"
                            );
                        }
                    }
                }
            }
            for n in 0..=4 {
                for first in [true, false] {
                    for l in [0usize, 7, 8, 300, len] {
                        let rows = [0, 1, 2, 3].map(|r| &m[r + 2][..l]);
                        let alpha = [0.3, -1.7, 2.5e-3, 9.0];
                        let mut want = m[0];
                        scalar::combine(&mut want[..l], rows, alpha, n, first);
                        let mut got = m[0];
                        simd::combine_f32(&mut got[..l], rows, alpha, n, first);
                        assert_eq!(got.map(f32::to_bits), want.map(f32::to_bits), "{n} {l}");
                        let mut got = m[0];
                        f32::combine_rows(&mut got[..l], rows, alpha, n, first);
                        assert_eq!(got.map(f32::to_bits), want.map(f32::to_bits), "{n} {l}");
                    }
                }
            }
        }
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        x86::force(None);
    }

    /// The SIMD axpy is bitwise the scalar twin's.
    #[test]
    fn axpy_twins_are_bitwise_equal() {
        let m = rows(5, 300);
        for len in [0usize, 5, 8, 299] {
            let (mut o1, mut o2) = (m[0], m[0]);
            simd::axpy_f32(&mut o1[..len], -1.7, &m[2][..len]);
            scalar::axpy(&mut o2[..len], -1.7, &m[2][..len]);
            assert_eq!(o1.map(f32::to_bits), o2.map(f32::to_bits));
        }
    }

    #[test]
    fn fast_range_rejects_extremes() {
        assert!(scalar::fast_range_f32(&[0.0, 0.0]));
        assert!(scalar::fast_range_f32(&[1.0, -3.0]));
        assert!(!scalar::fast_range_f32(&[1e30, 1.0]));
        assert!(!scalar::fast_range_f32(&[1e-30, 0.0]));
        assert!(!scalar::fast_range_f32(&[f32::NAN, 1.0]));
        assert!(!scalar::fast_range_f32(&[f32::INFINITY]));
    }
}
