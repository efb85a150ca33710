//! Run-time selected AVX kernels (x86-64 with `std`): the same generic
//! kernels as [`super::wide`], compiled with `#[target_feature]` for AVX (16
//! registers) and AVX-512VL (32 registers, still 8-lane vectors), and
//! chosen once per process with `is_x86_feature_detected!`. Bitwise the
//! same results as the compile-time backend.
//!
//! This module holds the crate's only `unsafe` outside the C ABI: calling a
//! `#[target_feature]` function, and the AVX intrinsics behind `Lanes8`,
//! is sound only on a CPU with those features, which the cached detection
//! establishes before any such call.

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
