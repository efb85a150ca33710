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
//! value to the input's type ([`Element::from_f64`]); where the merged
//! kernel's `f32` output is rounded again, the rare results that could
//! have rounded twice are recomputed ([`merge_rows`]).
//!
//! On x86-64 with `std`, the run-time AVX and AVX-512VL kernel sets convert
//! in vector registers instead (`x86::half`: bf16 by a 16-bit unpack, f16
//! by F16C when the CPU has it, else the portable widening): the Gram
//! kernel widens each block of the tile's rows with them, the merged apply
//! kernel loads the rows straight into its `f64` lanes and rounds its
//! outputs to the half type in registers. The same values go through the
//! same arithmetic, so the results are bitwise the portable ones
//! ([`Widen`]; tests `direct_*`).
//!
//! Stack: 8 KiB of widened rows in the Gram kernel and 7 KiB in the merged
//! apply kernel with SIMD; without SIMD (Cortex-M) the Gram pass widens two
//! blocks (2 KiB) and the apply pass converts element by element.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use super::sealed::Sealed;
use super::{max_abs_f32, scalar, Element, Kernels, Tile, BLOCK, FAST_MAX, FAST_MIN, SIMD};

/// Columns per widened chunk of the merged apply kernel: small, since the
/// engine calls it once per group of four rows and column block when more
/// than four rows take part, and its stack buffers are zeroed per call.
const MERGE_CHUNK: usize = 64;

/// The conversions of a half type, the only part of the kernels that
/// differs between [`bf16`] and [`f16`].
pub(super) trait Half: Element {
    /// `dst[i] = src[i]` widened to `f32` (exact); the slices have the same
    /// length.
    fn widen(src: &[Self], dst: &mut [f32]);
    /// `dst[i] = src[i]` rounded to nearest, ties to even; `src` holds
    /// [`round_to_odd`] values, so that this gives the correctly rounded
    /// half value of the `f64` they came from.
    fn narrow_odd(src: &[f32], dst: &mut [Self]);
    /// `dst[i] = src[i]` rounded to nearest, ties to even; whether some
    /// `src[i]` may be a midpoint of two values of the type
    /// ([`Half::is_midpoint`]).
    fn narrow_nearest(src: &[f32], dst: &mut [Self]) -> bool;
    /// Whether `y` may be a midpoint of two values of the type (true for
    /// every midpoint; a few other values may say true too).
    fn is_midpoint(y: f32) -> bool;
    /// [`gram_run`] on the kernels of this type that convert in SIMD
    /// registers (x86-64 with `std`: AVX, and F16C for f16), or `None`
    /// when `k` has none (then the portable widening runs).
    #[allow(clippy::too_many_arguments)]
    fn gram_direct(
        k: Kernels,
        a: [&[Self]; 4],
        b: [&[Self]; 4],
        shape: Tile,
        len: usize,
        fast: u64,
        out: &mut [[f64; 4]; 4],
    ) -> Option<u64>;
    /// [`merge_rows`] likewise, false (and nothing written) when `k` has
    /// no such kernels.
    #[allow(clippy::too_many_arguments)]
    fn merge_direct(
        k: Kernels,
        out: &mut [Self],
        acc: &mut [f64],
        rows: [&[Self]; 4],
        coef: [f64; 4],
        n: usize,
        first: bool,
        last: Option<f64>,
    ) -> bool;
    /// `v` rounded to nearest, ties to even, once.
    #[inline]
    fn narrow(v: f64) -> Self {
        let mut out = [Self::zero()];
        Self::narrow_odd(&[round_to_odd(v)], &mut out);
        out[0]
    }
}

impl Half for bf16 {
    #[inline]
    fn gram_direct(
        k: Kernels,
        a: [&[bf16]; 4],
        b: [&[bf16]; 4],
        shape: Tile,
        len: usize,
        fast: u64,
        out: &mut [[f64; 4]; 4],
    ) -> Option<u64> {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        return super::x86::half::gram_bf16(k, a, b, shape, len, fast, out);
        #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
        return {
            let _ = (k, a, b, shape, len, fast, out);
            None
        };
    }
    #[inline]
    fn merge_direct(
        k: Kernels,
        out: &mut [bf16],
        acc: &mut [f64],
        rows: [&[bf16]; 4],
        coef: [f64; 4],
        n: usize,
        first: bool,
        last: Option<f64>,
    ) -> bool {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        return super::x86::half::merge_bf16(k, out, acc, rows, coef, n, first, last);
        #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
        return {
            let _ = (k, out, acc, rows, coef, n, first, last);
            false
        };
    }
    #[inline]
    fn widen(src: &[bf16], dst: &mut [f32]) {
        // A bf16 is the top half of an f32: a shift, which vectorises
        // (NaN stays NaN; its payload is not promised).
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f32::from_bits(u32::from(s.to_bits()) << 16);
        }
    }
    #[inline]
    fn narrow_odd(src: &[f32], dst: &mut [bf16]) {
        Self::narrow_nearest(src, dst);
    }
    #[inline]
    fn narrow_nearest(src: &[f32], dst: &mut [bf16]) -> bool {
        // Round to nearest even on the bit pattern (correct across the
        // subnormal boundary and into infinity), a NaN kept quiet; no
        // branch, so the loop vectorises.
        let mut tie = false;
        for (d, s) in dst.iter_mut().zip(src) {
            let b = s.to_bits();
            tie |= Self::is_midpoint(*s);
            let r = b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16;
            let nan = (b >> 16) | 0x40;
            *d = bf16::from_bits(if s.is_nan() { nan } else { r } as u16);
        }
        tie
    }
    #[inline]
    fn is_midpoint(y: f32) -> bool {
        // bf16 keeps the top 16 bits of an f32 in every range: a midpoint
        // drops exactly 0x8000.
        y.to_bits() & 0xFFFF == 0x8000
    }
}

impl Half for f16 {
    #[inline]
    fn gram_direct(
        k: Kernels,
        a: [&[f16]; 4],
        b: [&[f16]; 4],
        shape: Tile,
        len: usize,
        fast: u64,
        out: &mut [[f64; 4]; 4],
    ) -> Option<u64> {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        return super::x86::half::gram_f16(k, a, b, shape, len, fast, out);
        #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
        return {
            let _ = (k, a, b, shape, len, fast, out);
            None
        };
    }
    #[inline]
    fn merge_direct(
        k: Kernels,
        out: &mut [f16],
        acc: &mut [f64],
        rows: [&[f16]; 4],
        coef: [f64; 4],
        n: usize,
        first: bool,
        last: Option<f64>,
    ) -> bool {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        return super::x86::half::merge_f16(k, out, acc, rows, coef, n, first, last);
        #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
        return {
            let _ = (k, out, acc, rows, coef, n, first, last);
            false
        };
    }
    #[inline]
    fn widen(src: &[f16], dst: &mut [f32]) {
        // Exact and without a branch, so the loop vectorises (the `half`
        // crate's slice conversion calls a function per eight values): the
        // exponent and significand moved into an f32's place are the value
        // times 2^-112 (subnormals included), scaled back exactly;
        // infinities and NaN keep an all-ones exponent.
        for (d, s) in dst.iter_mut().zip(src) {
            let h = u32::from(s.to_bits());
            let em = h & 0x7FFF;
            let v = (f32::from_bits(em << 13) * f32::from_bits(0x7780_0000)).to_bits();
            let v = if em >= 0x7C00 {
                (em << 13) | 0x7F80_0000
            } else {
                v
            };
            *d = f32::from_bits(v | ((h & 0x8000) << 16));
        }
    }
    #[inline]
    fn narrow_odd(src: &[f32], dst: &mut [f16]) {
        Self::narrow_nearest(src, dst);
    }
    #[inline]
    fn narrow_nearest(src: &[f32], dst: &mut [f16]) -> bool {
        // Round to nearest even (F16C's vcvtps2ph where the CPU has it).
        dst.convert_from_f32_slice(src);
        src.iter().fold(false, |t, &y| t | Self::is_midpoint(y))
    }
    #[inline]
    fn is_midpoint(y: f32) -> bool {
        // A normal f16 keeps 10 of the 23 significand bits: a midpoint
        // drops exactly 0x1000. Below 2^-14 (subnormal f16, fewer bits
        // kept) every non-zero value counts as one.
        let a = y.to_bits() & 0x7FFF_FFFF;
        a & 0x1FFF == 0x1000 || (a != 0 && a < 0x3880_0000)
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
    // Without a branch (so that the apply loop vectorises): round to
    // nearest, step back towards zero when that went away from zero (an
    // infinite r steps back to f32::MAX; r = 0 never went away), which
    // truncates, then set the last bit when the truncation was inexact
    // (f32::MAX is already odd, so this never reaches infinity; a NaN
    // stays NaN).
    let r = v as f32;
    let away = u32::from(f64::from(r).abs() > v.abs());
    let t = r.to_bits() - away;
    let inexact = u32::from(f64::from(f32::from_bits(t)) != v);
    f32::from_bits(t | inexact)
}

/// The widening and the `f32` kernels that the half kernels run on: the
/// portable set ([`Portable`]: [`Half::widen`] and the `f32` kernels of a
/// [`Kernels`]) or, on x86-64 with `std`, sets that convert in AVX
/// registers (`x86::half`). Widening is exact, so every set feeds the
/// same `f32` values to the same lane arithmetic: bitwise the same
/// results.
pub(super) trait Widen<H: Half> {
    /// `dst[i] = src[i]` widened to `f32` (exact); the slices have the same
    /// length.
    fn widen(&self, src: &[H], dst: &mut [f32]);
    /// [`Sealed::gram_run`] of `f32` over one block.
    #[allow(clippy::too_many_arguments)]
    fn gram(
        &self,
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: Tile,
        len: usize,
        fast: u64,
        out: &mut [[f64; 4]; 4],
    ) -> u64;
    /// [`Sealed::merge_rows`] of `f32`.
    #[allow(clippy::too_many_arguments)]
    fn merge(
        &self,
        out: &mut [f32],
        acc: &mut [f64],
        rows: [&[f32]; 4],
        coef: [f64; 4],
        n: usize,
        first: bool,
        last: Option<f64>,
    );
    /// [`Half::narrow_nearest`] (bitwise: the same rounding).
    #[inline(always)]
    fn narrow_nearest(&self, src: &[f32], dst: &mut [H]) -> bool {
        H::narrow_nearest(src, dst)
    }
}

/// The portable [`Widen`]: [`Half::widen`], then the `f32` kernels of `k`.
#[derive(Clone, Copy)]
pub(super) struct Portable(pub(super) Kernels);

impl<H: Half> Widen<H> for Portable {
    #[inline(always)]
    fn widen(&self, src: &[H], dst: &mut [f32]) {
        H::widen(src, dst)
    }
    #[inline(always)]
    fn gram(
        &self,
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: Tile,
        len: usize,
        fast: u64,
        out: &mut [[f64; 4]; 4],
    ) -> u64 {
        <f32 as Sealed>::gram_run(self.0, a, b, shape, len, fast, out)
    }
    #[inline(always)]
    fn merge(
        &self,
        out: &mut [f32],
        acc: &mut [f64],
        rows: [&[f32]; 4],
        coef: [f64; 4],
        n: usize,
        first: bool,
        last: Option<f64>,
    ) {
        <f32 as Sealed>::merge_rows(self.0, out, acc, rows, coef, n, first, last)
    }
}

/// [`Sealed::gram_run`] for a half type: with SIMD, the direct kernels of
/// `k` when it has them ([`Half::gram_direct`]), else [`gram_body`] on the
/// portable widening (the `f32` kernels of `k`, which without SIMD are the
/// scalar twins).
fn gram_run<H: Half>(
    k: Kernels,
    a: [&[H]; 4],
    b: [&[H]; 4],
    shape: Tile,
    len: usize,
    fast: u64,
    out: &mut [[f64; 4]; 4],
) -> u64 {
    if SIMD {
        if let Some(fits) = H::gram_direct(k, a, b, shape, len, fast, out) {
            return fits;
        }
    }
    gram_body(&Portable(k), a, b, shape, len, fast, out)
}

/// [`Sealed::gram_run`] for a half type on the widening and kernels `w`:
/// per block, the tile's rows widened on the stack (once on a diagonal
/// tile, where `a` and `b` are the same rows), then the `f32` kernel over
/// that block with the block's bit of `fast`. The same block sums, added
/// in the same order, as the `f32` path on the widened input.
#[inline(always)]
pub(super) fn gram_body<H: Half, W: Widen<H>>(
    w: &W,
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
        for (d, x) in wa.iter_mut().zip(a).take(ra) {
            w.widen(&x[k0..k1], &mut d[..n]);
        }
        if !shape.diagonal {
            for (d, x) in wb.iter_mut().zip(b).take(rb) {
                w.widen(&x[k0..k1], &mut d[..n]);
            }
        }
        let xa = [0, 1, 2, 3].map(|r| &wa[r.min(ra - 1)][..n]);
        let xb = if shape.diagonal {
            xa
        } else {
            [0, 1, 2, 3].map(|c| &wb[c.min(rb - 1)][..n])
        };
        let f = fast.checked_shr(bit).unwrap_or(0) & 1;
        let ok = w.gram(xa, xb, shape, n, f, out);
        fits |= (ok & 1).checked_shl(bit).unwrap_or(0);
        k0 = k1;
        bit += 1;
    }
    fits
}

/// [`Sealed::merge_rows`] for a half type: the direct kernels of `k` when
/// it has them ([`Half::merge_direct`]), else [`merge_body`] on the
/// portable widening. Without SIMD, the scalar twin on the half values
/// (the same arithmetic).
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
    if !H::merge_direct(k, out, acc, rows, coef, n, first, last) {
        merge_body(&Portable(k), out, acc, rows, coef, n, first, last)
    }
}

/// [`Sealed::merge_rows`] for a half type on the widening and kernels `w`,
/// with SIMD: per chunk of [`MERGE_CHUNK`] columns, the rows widened on the
/// stack and the `f32` kernel run on them; its outputs y = f32(s * w) then
/// rounded to the half type. Rounding twice to nearest (to `f32`, then to
/// the half type) gives the once-rounded result unless y is a midpoint of
/// two half values (a midpoint between s * w and y would be an `f32`
/// nearer to s * w than y), so the outputs whose y is a midpoint, rare,
/// are recomputed one by one from s * w (the kernel's arithmetic, term by
/// term) and rounded once. `acc` is scratch: it may hold the sums after a
/// `last` call.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn merge_body<H: Half, W: Widen<H>>(
    w: &W,
    out: &mut [H],
    acc: &mut [f64],
    rows: [&[H]; 4],
    coef: [f64; 4],
    n: usize,
    first: bool,
    last: Option<f64>,
) {
    let n = n.clamp(1, 4);
    let len = rows[..n].iter().fold(out.len(), |m, r| m.min(r.len()));
    let keep = !(first && last.is_some());
    let len = if keep { len.min(acc.len()) } else { len };
    let mut wide = [[0.0f32; MERGE_CHUNK]; 4];
    let mut sink = [0.0f32; MERGE_CHUNK];
    let mut c0 = 0;
    while c0 < len {
        let c1 = len.min(c0 + MERGE_CHUNK);
        let m = c1 - c0;
        for (d, x) in wide.iter_mut().zip(rows).take(n) {
            w.widen(&x[c0..c1], &mut d[..m]);
        }
        let x = [0, 1, 2, 3].map(|r| &wide[r.min(n - 1)][..m]);
        // The sums read (or, without `last`, written): none when `first`
        // and `last`.
        let sums: &mut [f64] = if keep { &mut acc[c0..c1] } else { &mut [] };
        let y = &mut sink[..m];
        w.merge(y, sums, x, coef, n, first, last);
        if let Some(wt) = last {
            let dst = &mut out[c0..c1];
            if w.narrow_nearest(y, dst) {
                for (c, (o, &yc)) in dst.iter_mut().zip(y.iter()).enumerate() {
                    if H::is_midpoint(yc) {
                        let mut s = if first { 0.0 } else { sums[c] };
                        for (r, xr) in x.iter().enumerate().take(n) {
                            s += f64::from(xr[c]) * coef[r];
                        }
                        *o = H::narrow(s * wt);
                    }
                }
            }
        }
        c0 = c1;
    }
}

/// [`Sealed::merge_rows_f32`] for a half type: per chunk of
/// [`MERGE_CHUNK`] columns, the rows widened on the stack and the `f32`
/// kernel of `k` run on them, writing straight into `out`. These are the
/// values y that [`merge_body`] (and the direct kernels, bitwise the same)
/// round to the half type: its output is y rounded to nearest even except
/// where y is a midpoint ([`Half::is_midpoint`]), which it recomputes
/// from `f64`. Without SIMD, the scalar twin on the half values (the same
/// arithmetic).
#[allow(clippy::too_many_arguments)]
fn merge_rows_f32<H: Half>(
    k: Kernels,
    out: &mut [f32],
    acc: &mut [f64],
    rows: [&[H]; 4],
    coef: [f64; 4],
    n: usize,
    first: bool,
    last: Option<f64>,
) {
    if !SIMD {
        return scalar::merge_rows_f32(out, acc, rows, coef, n, first, last);
    }
    let n = n.clamp(1, 4);
    let len = rows[..n].iter().fold(out.len(), |m, r| m.min(r.len()));
    let keep = !(first && last.is_some());
    let len = if keep { len.min(acc.len()) } else { len };
    let mut wide = [[0.0f32; MERGE_CHUNK]; 4];
    let mut c0 = 0;
    while c0 < len {
        let c1 = len.min(c0 + MERGE_CHUNK);
        let m = c1 - c0;
        for (d, x) in wide.iter_mut().zip(rows).take(n) {
            H::widen(&x[c0..c1], &mut d[..m]);
        }
        let x = [0, 1, 2, 3].map(|r| &wide[r.min(n - 1)][..m]);
        let sums: &mut [f64] = if keep { &mut acc[c0..c1] } else { &mut [] };
        <f32 as Sealed>::merge_rows(k, &mut out[c0..c1], sums, x, coef, n, first, last);
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
            fn merge_rows_f32(
                k: Kernels,
                out: &mut [f32],
                acc: &mut [f64],
                rows: [&[$t]; 4],
                coef: [f64; 4],
                n: usize,
                first: bool,
                last: Option<f64>,
            ) {
                merge_rows_f32(k, out, acc, rows, coef, n, first, last)
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
