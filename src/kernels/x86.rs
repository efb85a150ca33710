//! Run-time selected AVX kernels (x86-64 with `std`): the same generic
//! kernels as [`super::wide`], compiled with `#[target_feature]` for AVX (16
//! registers) and AVX-512VL (32 registers, still 8-lane vectors), and
//! detected once per process with `is_x86_feature_detected!`. Bitwise the
//! same results as the compile-time backend.
//!
//! With [`super::Kernels`]'s dispatch, this module holds the crate's only
//! `unsafe` outside the C ABI: calling a `#[target_feature]` function, and
//! the AVX intrinsics behind `Lanes8`, is sound only on a CPU with those
//! features, which `detected` establishes before a [`super::Kernels`]
//! naming them can exist.

use super::{Isa, Lanes8, Tile};
use core::arch::x86_64::{
    __m256, __m256d, _mm256_add_pd, _mm256_add_ps, _mm256_castpd256_pd128, _mm256_castps256_ps128,
    _mm256_cvtpd_ps, _mm256_cvtps_pd, _mm256_extractf128_pd, _mm256_extractf128_ps,
    _mm256_loadu_pd, _mm256_loadu_ps, _mm256_mul_pd, _mm256_mul_ps, _mm256_set1_pd,
    _mm256_setzero_pd, _mm256_setzero_ps, _mm256_storeu_pd, _mm256_storeu_ps, _mm_add_pd,
    _mm_add_sd, _mm_cvtsd_f64, _mm_storeu_ps, _mm_unpackhi_pd,
};
use core::sync::atomic::{AtomicU8, Ordering};

/// The detected-CPU cache: 0 until the first [`detected`], then the best
/// instruction set plus one. The library's only mutable global state.
static DETECTED: AtomicU8 = AtomicU8::new(0);

/// The best instruction set this CPU runs the kernels in (detected once,
/// then cached).
pub(super) fn detected() -> Isa {
    let l = match DETECTED.load(Ordering::Relaxed) {
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
            DETECTED.store(l, Ordering::Relaxed);
            l
        }
        l => l,
    };
    match l {
        3 => Isa::Avx512,
        2 => Isa::Avx,
        _ => Isa::Portable,
    }
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
    #[inline(always)]
    fn lane_sum(self) -> f64 {
        // SAFETY: AVX is present. The lanes widened (exact), then
        // h = (l0 + l4, l1 + l5, l2 + l6, l3 + l7), then (h0 + h2, h1 + h3),
        // then their sum: `lanes::lane_sum`'s additions in its order.
        unsafe {
            let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(self.0));
            let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(self.0));
            let h = _mm256_add_pd(lo, hi);
            let q = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd::<1>(h));
            _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)))
        }
    }
    type D = [__m256d; 2];
    #[inline(always)]
    fn widen(self) -> Self::D {
        // SAFETY: AVX is present.
        unsafe {
            [
                _mm256_cvtps_pd(_mm256_castps256_ps128(self.0)),
                _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(self.0)),
            ]
        }
    }
    #[inline(always)]
    fn dzero() -> Self::D {
        // SAFETY: AVX is present.
        unsafe { [_mm256_setzero_pd(); 2] }
    }
    #[inline(always)]
    fn dsplat(x: f64) -> Self::D {
        // SAFETY: AVX is present.
        unsafe { [_mm256_set1_pd(x); 2] }
    }
    #[inline(always)]
    fn dload(x: &[f64; 8]) -> Self::D {
        // SAFETY: `x` is 8 readable doubles (two runs of 4); AVX is present.
        unsafe {
            [
                _mm256_loadu_pd(x.as_ptr()),
                _mm256_loadu_pd(x[4..].as_ptr()),
            ]
        }
    }
    #[inline(always)]
    fn dstore(d: Self::D) -> [f64; 8] {
        let mut out = [0.0f64; 8];
        // SAFETY: `out` is 8 writable doubles (two runs of 4); AVX is
        // present.
        unsafe {
            _mm256_storeu_pd(out.as_mut_ptr(), d[0]);
            _mm256_storeu_pd(out[4..].as_mut_ptr(), d[1]);
        }
        out
    }
    #[inline(always)]
    fn dmul_add(x: Self::D, c: Self::D, acc: Self::D) -> Self::D {
        // SAFETY: AVX is present.
        unsafe {
            [
                _mm256_add_pd(acc[0], _mm256_mul_pd(x[0], c[0])),
                _mm256_add_pd(acc[1], _mm256_mul_pd(x[1], c[1])),
            ]
        }
    }
    #[inline(always)]
    fn dmul(x: Self::D, c: Self::D) -> Self::D {
        // SAFETY: AVX is present.
        unsafe { [_mm256_mul_pd(x[0], c[0]), _mm256_mul_pd(x[1], c[1])] }
    }
    #[inline(always)]
    fn narrow(d: Self::D) -> [f32; 8] {
        let mut out = [0.0f32; 8];
        // SAFETY: `out` is 8 writable floats (two runs of 4); AVX is
        // present. The conversion rounds to nearest (the default MXCSR
        // mode), as `as f32` does.
        unsafe {
            _mm_storeu_ps(out.as_mut_ptr(), _mm256_cvtpd_ps(d[0]));
            _mm_storeu_ps(out[4..].as_mut_ptr(), _mm256_cvtpd_ps(d[1]));
        }
        out
    }
}

/// The Gram tile on AVX (16 registers: 4-row triangles, 2 x 4 rectangles).
#[cfg(test)]
#[target_feature(enable = "avx")]
pub(super) fn gram_tile_avx(
    a: [&[f32]; 4],
    b: [&[f32]; 4],
    shape: Tile,
    len: usize,
    out: &mut [[f64; 4]; 4],
) -> bool {
    super::tile::<Avx, 4, 2, 4>(a, b, shape, len, out)
}

/// The Gram tile on AVX-512VL (32 registers: whole 4 x 4 tiles).
#[cfg(test)]
#[target_feature(enable = "avx,avx512f,avx512vl")]
pub(super) fn gram_tile_avx512(
    a: [&[f32]; 4],
    b: [&[f32]; 4],
    shape: Tile,
    len: usize,
    out: &mut [[f64; 4]; 4],
) -> bool {
    super::tile::<Avx, 4, 4, 4>(a, b, shape, len, out)
}

/// [`super::Element::gram_run`] on AVX.
#[target_feature(enable = "avx")]
pub(super) fn gram_run_avx(
    a: [&[f32]; 4],
    b: [&[f32]; 4],
    shape: Tile,
    len: usize,
    fast: u64,
    out: &mut [[f64; 4]; 4],
) -> u64 {
    super::run_lanes::<Avx, 4, 2, 4>(a, b, shape, len, fast, out)
}

/// [`super::Element::gram_run`] on AVX-512VL.
#[target_feature(enable = "avx,avx512f,avx512vl")]
pub(super) fn gram_run_avx512(
    a: [&[f32]; 4],
    b: [&[f32]; 4],
    shape: Tile,
    len: usize,
    fast: u64,
    out: &mut [[f64; 4]; 4],
) -> u64 {
    super::run_lanes::<Avx, 4, 4, 4>(a, b, shape, len, fast, out)
}

/// [`super::sealed::Sealed::merge_rows`] on AVX (AVX-512 adds nothing
/// here: the kernel holds a few accumulators).
#[target_feature(enable = "avx")]
pub(super) fn merge_avx(
    out: &mut [f32],
    acc: &mut [f64],
    rows: [&[f32]; 4],
    coef: [f64; 4],
    n: usize,
    first: bool,
    last: Option<f64>,
) {
    super::merge8::<Avx>(out, acc, rows, coef, n, first, last)
}

/// The multiply-add probe ([`super::Kernels::peak`]) on AVX.
#[target_feature(enable = "avx")]
pub(super) fn peak_avx(buf: &[[f32; 8]; super::PEAK_VECS], iters: usize) -> f32 {
    super::lanes::peak::<Avx>(buf, iters)
}

/// The multiply-add probe ([`super::Kernels::peak`]) on AVX-512VL.
#[target_feature(enable = "avx,avx512f,avx512vl")]
pub(super) fn peak_avx512(buf: &[[f32; 8]; super::PEAK_VECS], iters: usize) -> f32 {
    super::lanes::peak::<Avx>(buf, iters)
}

/// The `f64` multiply-add probe ([`super::Kernels::peak_f64`]) on AVX
/// (AVX-512VL adds nothing: four accumulators fit 16 registers).
#[target_feature(enable = "avx")]
pub(super) fn peak_f64_avx(buf: &[[f64; 8]; super::PEAK_VECS], iters: usize) -> f64 {
    super::lanes::peak_f64::<Avx>(buf, iters)
}

/// [`super::Kernels::widen`] on AVX (auto-vectorised, 256-bit stores).
#[target_feature(enable = "avx")]
pub(super) fn widen_avx(src: &[f32], dst: &mut [f64]) {
    super::widen_f32(src, dst)
}

/// [`super::Kernels::narrow`] on AVX (auto-vectorised; the conversion
/// rounds to nearest, as `as f32` does).
#[target_feature(enable = "avx")]
pub(super) fn narrow_avx(src: &[f64], dst: &mut [f32]) {
    super::narrow_f32(src, dst)
}

/// [`super::Kernels::combine`] on AVX: the same `f64` multiplies and adds,
/// auto-vectorised over four lanes per register.
#[target_feature(enable = "avx")]
pub(super) fn combine_avx(rows: &[f64], stride: usize, coef: &[f64], acc: &mut [f64]) {
    super::combine_cols::<32>(rows, stride, coef, acc)
}

/// The half-precision kernels on AVX (feature `half`): bf16 and f16 rows
/// converted to `f32` in AVX registers (f16 with F16C), then these kernels.
#[cfg(feature = "half")]
pub(super) mod half;
