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
    __m256, _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps,
    _mm256_storeu_ps,
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

/// `out[k] += alpha * x[k]` on AVX.
#[cfg(test)]
#[target_feature(enable = "avx")]
pub(super) fn axpy_avx(out: &mut [f32], alpha: f32, x: &[f32]) {
    super::axpy8::<Avx>(out, alpha, x)
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
    super::run_blocks(a, b, shape, len, fast, out, |a, b, s, l, o| {
        super::tile::<Avx, 4, 2, 4>(a, b, s, l, o)
    })
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
    super::run_blocks(a, b, shape, len, fast, out, |a, b, s, l, o| {
        super::tile::<Avx, 4, 4, 4>(a, b, s, l, o)
    })
}

/// [`super::Element::combine_rows`] on AVX (AVX-512 gains nothing here:
/// the kernel holds one accumulator).
#[target_feature(enable = "avx")]
pub(super) fn combine_avx(
    out: &mut [f32],
    rows: [&[f32]; 4],
    alpha: [f32; 4],
    n: usize,
    first: bool,
) {
    super::combine8::<Avx>(out, rows, alpha, n, first)
}
