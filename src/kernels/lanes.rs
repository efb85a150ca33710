//! The `Lanes8` kernels, written once: the Gram tile over eight `f32`
//! lanes and the merged apply kernel over eight `f64` lanes, compiled for each backend (`wide`, `x86`).

use super::{Tile, FAST_MAX, FAST_SQ_MAX, FAST_SQ_MIN};

/// Eight `f32` lanes: the SIMD kernels are written once over this trait and
/// compiled for `wide::f32x8` (the compile-time backend) and, with `std` on
/// x86-64, for AVX registers chosen at run time. Every backend does the same
/// lane arithmetic (a multiply, then an add: no fused multiply-add), so the
/// Gram matrix and the merged gradient are bitwise the same whichever one
/// runs.
pub(super) trait Lanes8: Copy {
    fn zero() -> Self;
    fn load(x: &[f32; 8]) -> Self;
    /// `acc + self * b`, rounded twice.
    fn mul_add2(self, b: Self, acc: Self) -> Self;
    fn to_array(self) -> [f32; 8];
    /// The lanes' `f64` sum in [`lane_sum`]'s fixed pairwise order; a
    /// backend may do it in its vectors (the same additions in the same
    /// order, so bitwise the same).
    #[inline(always)]
    fn lane_sum(self) -> f64 {
        lane_sum(self.to_array())
    }
    /// Eight `f64` lanes, for the apply pass.
    type D: Copy;
    /// The lanes widened to `f64` (exact).
    fn widen(self) -> Self::D;
    fn dzero() -> Self::D;
    fn dsplat(x: f64) -> Self::D;
    fn dload(x: &[f64; 8]) -> Self::D;
    fn dstore(d: Self::D) -> [f64; 8];
    /// `acc + x * c`, rounded twice.
    fn dmul_add(x: Self::D, c: Self::D, acc: Self::D) -> Self::D;
    fn dmul(x: Self::D, c: Self::D) -> Self::D;
    /// Each lane rounded to the nearest `f32` (as `as f32`).
    fn narrow(d: Self::D) -> [f32; 8];
}

/// Columns per SIMD step (the lanes of [`Lanes8`]).
const W: usize = 8;

/// The `f64` sum of a pair's lanes (a fixed pairwise order), plus the
/// products of the tail columns past the last full vector. Every term is an
/// `f32` value, so for gradients of ordinary dynamic range the sums are
/// exact in `f64` and independent of how the columns were split.
#[inline(always)]
fn finish<V: Lanes8>(acc: V, a: &[f32], b: &[f32], from: usize) -> f64 {
    add_tail(acc.lane_sum(), a, b, from)
}

/// The lane part of [`finish`]: `(l0 + l4) + (l2 + l6)` plus
/// `(l1 + l5) + (l3 + l7)`, in `f64`.
#[inline(always)]
pub(super) fn lane_sum(acc: [f32; W]) -> f64 {
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
            out[r0 + r][c0 + c] += finish(acc[r][c], x, y, n * W);
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
        let s = acc[r][r].lane_sum();
        ok &= row_fits(sq, s, x, n * W);
        out[r0 + r][r0 + r] += add_tail(s, x, x, n * W);
        for c in r + 1..R {
            let y = &a[r0 + c][..len];
            out[r0 + r][r0 + c] += finish(acc[r][c], x, y, n * W);
        }
    }
    ok
}

/// A tile of `shape` as sub-tiles that fit the register file: diagonal
/// blocks of `D` rows, off-diagonal rectangles of `SR` x `SC` rows.
#[inline(always)]
pub(super) fn tile<V: Lanes8, const D: usize, const SR: usize, const SC: usize>(
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

/// [`super::sealed::Sealed::merge_rows`] on `R` rows: per column,
/// `s = (first ? 0 : acc) + coef[0] x_0 + ... + coef[R-1] x_{R-1}` in `f64`
/// (each term a multiply, then an add, in order), then `out = f32(s * w)`
/// when `last` is `Some(w)`, else `acc = s`.
#[allow(clippy::needless_range_loop)] // indexed loops over const-size register arrays
#[inline(always)]
fn merge_n<V: Lanes8, const R: usize>(
    out: &mut [f32],
    acc: &mut [f64],
    rows: [&[f32]; 4],
    coef: [f64; 4],
    first: bool,
    last: Option<f64>,
) {
    let len = rows[..R].iter().fold(out.len(), |m, r| m.min(r.len()));
    let keep = !(first && last.is_some());
    let len = if keep { len.min(acc.len()) } else { len };
    let (co, to) = out[..len].as_chunks_mut::<W>();
    let n = co.len();
    let (ca, ta) = if keep {
        acc[..len].as_chunks_mut::<W>()
    } else {
        (&mut [][..], &mut [][..])
    };
    let mut cx: [&[[f32; W]]; R] = [&[]; R];
    for (r, x) in cx.iter_mut().enumerate() {
        *x = &rows[r][..len].as_chunks::<W>().0[..n];
    }
    let mut vc = [V::dsplat(0.0); R];
    for r in 0..R {
        vc[r] = V::dsplat(coef[r]);
    }
    let w = last.unwrap_or(1.0);
    let vw = V::dsplat(w);
    for k in 0..n {
        let mut s = if first { V::dzero() } else { V::dload(&ca[k]) };
        for r in 0..R {
            s = V::dmul_add(V::load(&cx[r][k]).widen(), vc[r], s);
        }
        if last.is_some() {
            co[k] = V::narrow(V::dmul(s, vw));
        } else {
            ca[k] = V::dstore(s);
        }
    }
    for k in 0..to.len() {
        let mut s = if first { 0.0 } else { ta[k] };
        for r in 0..R {
            s += f64::from(rows[r][n * W + k]) * coef[r];
        }
        if last.is_some() {
            to[k] = (s * w) as f32;
        } else {
            ta[k] = s;
        }
    }
}

/// [`super::sealed::Sealed::merge_rows`] on [`Lanes8`], for 1 to 4 rows.
#[inline(always)]
pub(super) fn merge8<V: Lanes8>(
    out: &mut [f32],
    acc: &mut [f64],
    rows: [&[f32]; 4],
    coef: [f64; 4],
    n: usize,
    first: bool,
    last: Option<f64>,
) {
    match n {
        0 | 1 => merge_n::<V, 1>(out, acc, rows, coef, first, last),
        2 => merge_n::<V, 2>(out, acc, rows, coef, first, last),
        3 => merge_n::<V, 3>(out, acc, rows, coef, first, last),
        _ => merge_n::<V, 4>(out, acc, rows, coef, first, last),
    }
}

/// Vectors in the buffer of [`peak`].
pub(crate) const PEAK_VECS: usize = 64;

/// The multiply-add throughput of [`Lanes8::mul_add2`] (for the roofline's
/// compute roof): `iters` steps of a 4 x 3 register tile over vectors of
/// `buf` (in L1), 12 independent accumulators, so 12 x 8 products per step
/// bound by the vector units rather than by latency or loads. Returns the
/// sum of the accumulators (so that the work cannot be elided).
#[allow(clippy::needless_range_loop)] // indexed loops over const-size register arrays
#[inline(always)]
pub(super) fn peak<V: Lanes8>(buf: &[[f32; W]; PEAK_VECS], iters: usize) -> f32 {
    let mut acc = [[V::zero(); 3]; 4];
    for k in 0..iters {
        let base = k * 8;
        let va: [V; 4] = core::array::from_fn(|r| V::load(&buf[(base + r) % PEAK_VECS]));
        let vb: [V; 3] = core::array::from_fn(|c| V::load(&buf[(base + 4 + c) % PEAK_VECS]));
        for r in 0..4 {
            for c in 0..3 {
                acc[r][c] = va[r].mul_add2(vb[c], acc[r][c]);
            }
        }
    }
    let mut s = 0.0f32;
    for r in 0..4 {
        for c in 0..3 {
            s += acc[r][c].to_array().iter().sum::<f32>();
        }
    }
    s
}

/// Products per step of [`peak_f64`].
pub(crate) const PEAK_F64_PRODUCTS: usize = 4 * W;

/// The `f64` multiply-add throughput of [`Lanes8::dmul_add`] (for the
/// roofline's compute roof of the projected apply, which combines rows in
/// `f64`): `iters` steps of four independent eight-lane accumulators, each
/// `acc + x * c` with `x` loaded from `buf` (in L1) and `c` a splat, as the
/// combination multiplies a loaded row by a coefficient. Returns the sum of
/// the accumulators (so that the work cannot be elided).
#[allow(clippy::needless_range_loop)] // indexed loops over const-size register arrays
#[inline(always)]
pub(super) fn peak_f64<V: Lanes8>(buf: &[[f64; W]; PEAK_VECS], iters: usize) -> f64 {
    let mut acc = [V::dzero(); 4];
    let c = V::dsplat(1.0 - 1e-9);
    for k in 0..iters {
        let base = k * 4;
        for r in 0..4 {
            acc[r] = V::dmul_add(V::dload(&buf[(base + r) % PEAK_VECS]), c, acc[r]);
        }
    }
    let mut s = 0.0f64;
    for r in 0..4 {
        s += V::dstore(acc[r]).iter().sum::<f64>();
    }
    s
}
