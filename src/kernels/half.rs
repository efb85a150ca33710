//! Half-precision gradients (feature `half`): [`Element`] for the `half`
//! crate's [`bf16`] and [`f16`].
//!
//! The kernels widen the input to `f32` in blocks on the stack (no
//! allocation; every bf16 and f16 value is exactly an `f32`) and run the
//! `f32` kernels on them, so the Gram matrix and the `f64` sums of the
//! apply pass are bitwise those of the `f32` path on the widened input:
//! products in `f32` lanes per block of [`BLOCK`] columns, blocks added in
//! `f64`, the exact `f64` kernel for blocks out of the lanes' range. Only
//! the final rounding differs: every output is rounded once from its `f64`
//! value to the input's type ([`Element::from_f64`]), never through an
//! `f32` first (which could round twice).
//!
//! Stack: 8 KiB of widened rows in the Gram kernel and 7 KiB in the merged
//! apply kernel with SIMD; without SIMD (Cortex-M) the Gram pass widens two
//! blocks (2 KiB) and the apply pass converts element by element.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use super::sealed::Sealed;
use super::{max_abs_f32, scalar, Element, Kernels, Tile, BLOCK, FAST_MAX, FAST_MIN, SIMD};

/// The conversions of a half type, the only part of the kernels that
/// differs between [`bf16`] and [`f16`].
trait Half: Element {
    /// `dst[i] = src[i]` widened to `f32` (exact); the slices have the same
    /// length.
    fn widen(src: &[Self], dst: &mut [f32]);
    /// `v` rounded to nearest, ties to even, once.
    fn narrow(v: f64) -> Self;
}

impl Half for bf16 {
    #[inline]
    fn widen(src: &[bf16], dst: &mut [f32]) {
        // A bf16 is the top half of an f32: a shift, which vectorises
        // (NaN stays NaN; its payload is not promised).
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f32::from_bits(u32::from(s.to_bits()) << 16);
        }
    }
    #[inline]
    fn narrow(v: f64) -> bf16 {
        bf16::from_f32(round_to_odd(v))
    }
}

impl Half for f16 {
    #[inline]
    fn widen(src: &[f16], dst: &mut [f32]) {
        // F16C where the CPU has it (the `half` crate's slice conversion).
        src.convert_to_f32_slice(dst);
    }
    #[inline]
    fn narrow(v: f64) -> f16 {
        f16::from_f32(round_to_odd(v))
    }
}

/// `v` rounded to `f32` with round-to-odd: the nearest `f32` when `v` is
/// exactly an `f32` (or NaN), else the neighbour of `v` with an odd
/// significand. With 24 bits against the 8 of bf16 and the 11 of f16
/// (at least two more, in the subnormal ranges too), rounding that result
/// to nearest-even gives the correctly rounded half value of `v`: no
/// double rounding. (The `half` crate's own `from_f64` drops the low 32
/// bits of the `f64` significand before it rounds, and so misrounds values
/// just above a tie.)
#[inline]
fn round_to_odd(v: f64) -> f32 {
    let r = v as f32;
    if r.is_nan() || f64::from(r) == v || r.to_bits() & 1 == 1 {
        return r;
    }
    // Inexact with an even significand: the neighbour on the side of `v`
    // is odd. |r| > |v| > 0 when r is away from zero (then r != 0, and an
    // infinite r steps back to f32::MAX); else r steps away from zero
    // (f32::MAX is odd, so this never reaches infinity).
    let bits = r.to_bits();
    if f64::from(r).abs() > v.abs() {
        f32::from_bits(bits - 1)
    } else {
        f32::from_bits(bits + 1)
    }
}

/// [`Sealed::gram_run`] for a half type: per block, the tile's rows widened
/// on the stack (once on a diagonal tile, where `a` and `b` are the same
/// rows), then the `f32` kernel over that block with the block's bit of
/// `fast`. The same block sums, added in the same order, as the `f32` path
/// on the widened input.
fn gram_run<H: Half>(
    k: Kernels,
    a: [&[H]; 4],
    b: [&[H]; 4],
    shape: Tile,
    len: usize,
    fast: u64,
    out: &mut [[f64; 4]; 4],
) -> u64 {
    let mut wa = [[0.0f32; BLOCK]; 4];
    let mut wb = [[0.0f32; BLOCK]; 4];
    let (ra, rb) = (shape.rows.clamp(1, 4), shape.cols.clamp(1, 4));
    let mut fits = 0u64;
    let (mut k0, mut bit) = (0, 0u32);
    while k0 < len {
        let k1 = len.min(k0 + BLOCK);
        let n = k1 - k0;
        for (w, x) in wa.iter_mut().zip(a).take(ra) {
            H::widen(&x[k0..k1], &mut w[..n]);
        }
        if !shape.diagonal {
            for (w, x) in wb.iter_mut().zip(b).take(rb) {
                H::widen(&x[k0..k1], &mut w[..n]);
            }
        }
        let xa = [0, 1, 2, 3].map(|r| &wa[r.min(ra - 1)][..n]);
        let xb = if shape.diagonal {
            xa
        } else {
            [0, 1, 2, 3].map(|c| &wb[c.min(rb - 1)][..n])
        };
        let f = fast.checked_shr(bit).unwrap_or(0) & 1;
        let ok = <f32 as Sealed>::gram_run(k, xa, xb, shape, n, f, out);
        fits |= (ok & 1).checked_shl(bit).unwrap_or(0);
        k0 = k1;
        bit += 1;
    }
    fits
}

/// [`Sealed::merge_rows`] for a half type. With SIMD: per chunk of
/// [`BLOCK`] columns, the rows widened on the stack and the `f32` kernel
/// run for the `f64` sums only (into `acc`, or a stack chunk when `first`
/// and `last`), then each output rounded once from `s * w`. Without SIMD,
/// the scalar twin on the half values directly (the same arithmetic). In
/// both, `acc` is scratch: it may hold the sums after a `last` call.
#[allow(clippy::too_many_arguments)]
fn merge_rows<H: Half>(
    k: Kernels,
    out: &mut [H],
    acc: &mut [f64],
    rows: [&[H]; 4],
    coef: [f64; 4],
    n: usize,
    first: bool,
    last: Option<f64>,
) {
    if !SIMD {
        return scalar::merge_rows(out, acc, rows, coef, n, first, last);
    }
    let n = n.clamp(1, 4);
    let len = rows[..n].iter().fold(out.len(), |m, r| m.min(r.len()));
    let keep = !(first && last.is_some());
    let len = if keep { len.min(acc.len()) } else { len };
    let mut wide = [[0.0f32; BLOCK]; 4];
    let mut sink = [0.0f32; BLOCK];
    let mut local = [0.0f64; BLOCK];
    let mut c0 = 0;
    while c0 < len {
        let c1 = len.min(c0 + BLOCK);
        let m = c1 - c0;
        for (w, x) in wide.iter_mut().zip(rows).take(n) {
            H::widen(&x[c0..c1], &mut w[..m]);
        }
        let x = [0, 1, 2, 3].map(|r| &wide[r.min(n - 1)][..m]);
        let sums = if keep {
            &mut acc[c0..c1]
        } else {
            &mut local[..m]
        };
        <f32 as Sealed>::merge_rows(k, &mut sink[..m], sums, x, coef, n, first, None);
        if let Some(w) = last {
            for (o, &s) in out[c0..c1].iter_mut().zip(sums.iter()) {
                *o = H::narrow(s * w);
            }
        }
        c0 = c1;
    }
}

/// [`Sealed::pair_sum`] for a half type: the `f32` pair of the widened
/// block, or the exact `f64` sum (widening is exact, so the half values
/// serve directly).
fn pair_sum<H: Half>(x: &[H], y: &[H], fast: bool) -> f64 {
    let n = x.len().min(y.len());
    if !fast || n > BLOCK {
        return scalar::pair_exact(&x[..n], &y[..n]);
    }
    let (mut wx, mut wy) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
    H::widen(&x[..n], &mut wx[..n]);
    H::widen(&y[..n], &mut wy[..n]);
    scalar::pair_f32(&wx[..n], &wy[..n])
}

/// [`Sealed::block_fits`] for a half type: [`scalar::fast_range_f32`] of the
/// widened row, taken chunk by chunk (the largest |x| over the chunks).
fn block_fits<H: Half>(x: &[H]) -> bool {
    let mut w = [0.0f32; BLOCK];
    let mut m = 0.0f32;
    for c in x.chunks(BLOCK) {
        H::widen(c, &mut w[..c.len()]);
        let cm = max_abs_f32(&w[..c.len()]);
        if cm.is_nan() {
            return false;
        }
        m = m.max(cm);
    }
    m == 0.0 || (FAST_MIN..=FAST_MAX).contains(&m)
}

/// `Element` and its kernels for a half type, through the generic
/// functions above.
macro_rules! half_element {
    ($t:ty) => {
        impl Element for $t {
            #[inline]
            fn to_f64(self) -> f64 {
                <$t>::to_f64(self)
            }
            #[inline]
            fn from_f64(v: f64) -> Self {
                <$t as Half>::narrow(v)
            }
        }

        impl Sealed for $t {
            #[inline]
            fn gram_run(
                k: Kernels,
                a: [&[$t]; 4],
                b: [&[$t]; 4],
                shape: Tile,
                len: usize,
                fast: u64,
                out: &mut [[f64; 4]; 4],
            ) -> u64 {
                gram_run(k, a, b, shape, len, fast, out)
            }
            #[inline]
            fn merge_rows(
                k: Kernels,
                out: &mut [$t],
                acc: &mut [f64],
                rows: [&[$t]; 4],
                coef: [f64; 4],
                n: usize,
                first: bool,
                last: Option<f64>,
            ) {
                merge_rows(k, out, acc, rows, coef, n, first, last)
            }
            #[inline]
            fn pair_sum(x: &[$t], y: &[$t], fast: bool) -> f64 {
                pair_sum(x, y, fast)
            }
            #[inline]
            fn block_fits(x: &[$t]) -> bool {
                block_fits(x)
            }
        }
    };
}

half_element!(bf16);
half_element!(f16);

#[cfg(test)]
mod tests;
