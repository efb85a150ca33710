//! The half-precision kernels on AVX (feature `half`, x86-64 with `std`):
//! the bodies of [`super::super::half`] ([`gram_body`], [`merge_body`])
//! compiled with `#[target_feature]` beside the AVX `f32` kernels, with
//! the conversions in vector registers: bf16 to `f32` a 16-bit unpack
//! with zero (the bf16 bits become the top half of the `f32`), f16 to
//! `f32` F16C's `vcvtph2ps`, `f32` to f16 F16C's `vcvtps2ph` rounding to
//! nearest even. All are exact (widening) or the same rounding as the
//! portable code (narrowing), so the results are bitwise those of the
//! portable half path on the same kernel set.
//!
//! f16 needs F16C beside AVX; it is detected here, at each call (the
//! standard library caches it), and without it the portable widening runs.

use core::arch::x86_64::{
    __m128i, _mm256_castsi256_ps, _mm256_cvtph_ps, _mm256_cvtps_ph, _mm256_loadu_ps,
    _mm256_set_m128i, _mm256_storeu_ps, _mm_add_epi32, _mm_and_si128, _mm_blendv_epi8,
    _mm_castps_si128, _mm_castsi128_ps, _mm_cmpeq_epi32, _mm_cmpgt_epi32, _mm_cmpunord_ps,
    _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_packus_epi32, _mm_set1_epi32,
    _mm_setzero_si128, _mm_srli_epi32, _mm_storeu_si128, _mm_unpackhi_epi16, _mm_unpacklo_epi16,
    _MM_FROUND_TO_NEAREST_INT,
};

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use super::super::half::{gram_body, merge_body, Half, Widen};
use super::super::lanes::Lanes8;
use super::super::{merge8, run_lanes, Isa, Kernels, Tile};
use super::Avx;

/// `dst[i]` = the bf16 `src[i]` as `f32`: 8 at a time, each 16-bit value
/// interleaved with a zero below it (SSE2, part of x86-64); the tail as
/// the portable code does it.
#[inline(always)]
fn widen_bf16(src: &[bf16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let (cs, ts) = src[..n].reinterpret_cast().as_chunks::<8>();
    let (cd, td) = dst[..n].as_chunks_mut::<8>();
    for (s, d) in cs.iter().zip(cd.iter_mut()) {
        // SAFETY: `s` is 8 readable u16 (16 bytes), `d` 8 writable f32 (two
        // runs of 16 bytes); unaligned loads and stores; SSE2 is part of
        // x86-64.
        unsafe {
            let x = _mm_loadu_si128(s.as_ptr().cast());
            let z = _mm_setzero_si128();
            _mm_storeu_si128(d.as_mut_ptr().cast(), _mm_unpacklo_epi16(z, x));
            _mm_storeu_si128(d[4..].as_mut_ptr().cast(), _mm_unpackhi_epi16(z, x));
        }
    }
    <bf16 as Half>::widen(&src[n - ts.len()..n], td);
}

/// `dst[i]` = the f16 `src[i]` as `f32`: 8 at a time with `vcvtph2ps`
/// (exact, subnormals included); the tail as the portable code does it.
/// Called only from functions compiled with F16C, after it was detected.
#[inline(always)]
fn widen_f16(src: &[f16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let (cs, ts) = src[..n].reinterpret_cast().as_chunks::<8>();
    let (cd, td) = dst[..n].as_chunks_mut::<8>();
    for (s, d) in cs.iter().zip(cd.iter_mut()) {
        // SAFETY: `s` is 8 readable u16 (16 bytes), `d` 8 writable f32 (32
        // bytes), unaligned; the CPU has AVX and F16C (see above).
        unsafe {
            let x = _mm_loadu_si128(s.as_ptr().cast());
            _mm256_storeu_ps(d.as_mut_ptr(), _mm256_cvtph_ps(x));
        }
    }
    <f16 as Half>::widen(&src[n - ts.len()..n], td);
}

/// [`Half::narrow_nearest`] for f16: 8 at a time with `vcvtps2ph`, to
/// nearest even (the rounding of the portable code, which is the `half`
/// crate's conversion); the tail, and the midpoint flag, as the portable
/// code does them. Called only from functions compiled with F16C.
#[inline(always)]
fn narrow_f16(src: &[f32], dst: &mut [f16]) -> bool {
    let n = src.len().min(dst.len());
    let (cs, ts) = src[..n].as_chunks::<8>();
    let (cd, td) = dst[..n].reinterpret_cast_mut().as_chunks_mut::<8>();
    for (s, d) in cs.iter().zip(cd.iter_mut()) {
        // SAFETY: `s` is 8 readable f32 (32 bytes), `d` 8 writable u16 (16
        // bytes), unaligned; the CPU has AVX and F16C.
        unsafe {
            let y = _mm256_loadu_ps(s.as_ptr());
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(y);
            _mm_storeu_si128(d.as_mut_ptr().cast(), h);
        }
    }
    let tail = td.len();
    <f16 as Half>::narrow_nearest(ts, &mut dst[n - tail..n]);
    src[..n]
        .iter()
        .fold(false, |t, &y| t | <f16 as Half>::is_midpoint(y))
}

/// A [`Widen`] on AVX registers: `F16` the element type (f16 with F16C,
/// else bf16), `R512` the Gram tile set (AVX-512VL's 32 registers, else
/// AVX's 16). Values exist only inside the `#[target_feature]` functions
/// below.
#[derive(Clone, Copy)]
struct Direct<const F16: bool, const R512: bool>;

/// The parts of [`Widen`] that do not depend on the element type.
macro_rules! kernels {
    () => {
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
            if R512 {
                run_lanes::<Avx, 4, 4, 4>(a, b, shape, len, fast, out)
            } else {
                run_lanes::<Avx, 4, 2, 4>(a, b, shape, len, fast, out)
            }
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
            merge8::<Avx>(out, acc, rows, coef, n, first, last)
        }
    };
}

impl<const R512: bool> Widen<bf16> for Direct<false, R512> {
    #[inline(always)]
    fn widen(&self, src: &[bf16], dst: &mut [f32]) {
        widen_bf16(src, dst)
    }
    kernels!();
}

impl<const R512: bool> Widen<f16> for Direct<true, R512> {
    #[inline(always)]
    fn widen(&self, src: &[f16], dst: &mut [f32]) {
        widen_f16(src, dst)
    }
    #[inline(always)]
    fn narrow_nearest(&self, src: &[f32], dst: &mut [f16]) -> bool {
        narrow_f16(src, dst)
    }
    kernels!();
}

/// The Gram and merge kernels of one element type and tile set, compiled
/// with the given target features.
macro_rules! gram_entry {
    ($gram:ident, $t:ty, $f16:expr, $r512:expr, $features:literal) => {
        #[target_feature(enable = $features)]
        fn $gram(
            a: [&[$t]; 4],
            b: [&[$t]; 4],
            shape: Tile,
            len: usize,
            fast: u64,
            out: &mut [[f64; 4]; 4],
        ) -> u64 {
            gram_body(&Direct::<$f16, $r512>, a, b, shape, len, fast, out)
        }
    };
}

/// Eight half values loaded into an AVX register as `f32` (exact), and
/// eight `f32` rounded to the half type in registers.
trait Load8<H> {
    fn load8(&self, x: &[H; 8]) -> Avx;
    /// [`Half::narrow_nearest`] of eight values, bitwise: `out[i]` = `y[i]`
    /// rounded to nearest even, and whether some `y[i]` is a midpoint
    /// ([`Half::is_midpoint`]).
    fn narrow8(&self, y: &[f32; 8], out: &mut [H; 8]) -> bool;
}

/// Four `f32` (as bits) rounded to bf16 in the low halves of the lanes,
/// as [`Half::narrow_nearest`] does it: `(b + 0x7FFF + ((b >> 16) & 1)) >>
/// 16`, a NaN `(b >> 16) | 0x40`. Called only from functions compiled
/// with AVX (which has SSE4.1).
#[inline(always)]
fn bf16_round4(b: __m128i) -> __m128i {
    // SAFETY: SSE2 and SSE4.1 (`blendv`) are present (AVX implies them).
    unsafe {
        let odd = _mm_and_si128(_mm_srli_epi32::<16>(b), _mm_set1_epi32(1));
        let r = _mm_srli_epi32::<16>(_mm_add_epi32(b, _mm_add_epi32(_mm_set1_epi32(0x7FFF), odd)));
        let nan = _mm_or_si128(_mm_srli_epi32::<16>(b), _mm_set1_epi32(0x40));
        let f = _mm_castsi128_ps(b);
        _mm_blendv_epi8(r, nan, _mm_castps_si128(_mm_cmpunord_ps(f, f)))
    }
}

/// The lanes of four `f32` (as bits) that [`Half::is_midpoint`] of bf16
/// holds for: the low 16 bits exactly 0x8000.
#[inline(always)]
fn bf16_tie4(b: __m128i) -> __m128i {
    // SAFETY: SSE2 is part of x86-64.
    unsafe {
        _mm_cmpeq_epi32(
            _mm_and_si128(b, _mm_set1_epi32(0xFFFF)),
            _mm_set1_epi32(0x8000),
        )
    }
}

/// The lanes of four `f32` (as bits) that [`Half::is_midpoint`] of f16
/// holds for: with a = |bits|, `a & 0x1FFF == 0x1000`, or `0 < a <
/// 0x3880_0000` (below 2^-14). a < 2^31, so signed compares serve.
#[inline(always)]
fn f16_tie4(b: __m128i) -> __m128i {
    // SAFETY: SSE2 is part of x86-64.
    unsafe {
        let a = _mm_and_si128(b, _mm_set1_epi32(0x7FFF_FFFF));
        let mid = _mm_cmpeq_epi32(
            _mm_and_si128(a, _mm_set1_epi32(0x1FFF)),
            _mm_set1_epi32(0x1000),
        );
        let sub = _mm_and_si128(
            _mm_cmpgt_epi32(a, _mm_set1_epi32(0)),
            _mm_cmpgt_epi32(_mm_set1_epi32(0x3880_0000), a),
        );
        _mm_or_si128(mid, sub)
    }
}

impl<const R512: bool> Load8<bf16> for Direct<false, R512> {
    #[inline(always)]
    fn load8(&self, x: &[bf16; 8]) -> Avx {
        // SAFETY: `x` is 16 readable bytes, loaded unaligned; AVX is
        // present (the type's documentation).
        unsafe {
            let v = _mm_loadu_si128(x.as_ptr().cast());
            let z = _mm_setzero_si128();
            let (lo, hi) = (_mm_unpacklo_epi16(z, v), _mm_unpackhi_epi16(z, v));
            Avx(_mm256_castsi256_ps(_mm256_set_m128i(hi, lo)))
        }
    }
    #[inline(always)]
    fn narrow8(&self, y: &[f32; 8], out: &mut [bf16; 8]) -> bool {
        // SAFETY: `y` is 32 readable bytes, `out` 16 writable bytes,
        // unaligned; AVX (so SSE4.1's `packus_epi32`) is present.
        unsafe {
            let lo = _mm_loadu_si128(y.as_ptr().cast());
            let hi = _mm_loadu_si128(y[4..].as_ptr().cast());
            let h = _mm_packus_epi32(bf16_round4(lo), bf16_round4(hi));
            _mm_storeu_si128(out.as_mut_ptr().cast(), h);
            _mm_movemask_epi8(_mm_or_si128(bf16_tie4(lo), bf16_tie4(hi))) != 0
        }
    }
}

impl<const R512: bool> Load8<f16> for Direct<true, R512> {
    #[inline(always)]
    fn load8(&self, x: &[f16; 8]) -> Avx {
        // SAFETY: `x` is 16 readable bytes, loaded unaligned; AVX and F16C
        // are present.
        unsafe { Avx(_mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().cast()))) }
    }
    #[inline(always)]
    fn narrow8(&self, y: &[f32; 8], out: &mut [f16; 8]) -> bool {
        // SAFETY: `y` is 32 readable bytes, `out` 16 writable bytes,
        // unaligned; AVX and F16C are present. `vcvtps2ph` rounds to
        // nearest even, as the portable conversion does.
        unsafe {
            let v = _mm256_loadu_ps(y.as_ptr());
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
            _mm_storeu_si128(out.as_mut_ptr().cast(), h);
            let lo = _mm_loadu_si128(y.as_ptr().cast());
            let hi = _mm_loadu_si128(y[4..].as_ptr().cast());
            _mm_movemask_epi8(_mm_or_si128(f16_tie4(lo), f16_tie4(hi))) != 0
        }
    }
}

/// [`merge_body`] on `R` rows with the conversions in the kernel's
/// registers (no widened copy): per column, the `f64` sum of the `f32`
/// merge kernel (`lanes::merge8`: a multiply, then an add, term by term),
/// `y = f32(s * w)` on the last call, then `y` rounded to the half type
/// with the midpoint recomputation of [`merge_body`]. Every column's
/// arithmetic is the same wherever it falls, so the columns past the last
/// full vector go through [`merge_body`] itself: bitwise that path.
#[allow(clippy::needless_range_loop)] // indexed loops over const-size register arrays
#[inline(always)]
fn merge_fused<H: Half, W: Widen<H> + Load8<H>, const R: usize>(
    w: &W,
    out: &mut [H],
    acc: &mut [f64],
    rows: [&[H]; 4],
    coef: [f64; 4],
    first: bool,
    last: Option<f64>,
) {
    let len = rows[..R].iter().fold(out.len(), |m, r| m.min(r.len()));
    let keep = !(first && last.is_some());
    let len = if keep { len.min(acc.len()) } else { len };
    let full = len - len % 8;
    {
        let (co, _) = out[..full].as_chunks_mut::<8>();
        let (ca, _) = if keep {
            acc[..full].as_chunks_mut::<8>()
        } else {
            (&mut [][..], &mut [][..])
        };
        let mut cx: [&[[H; 8]]; R] = [&[]; R];
        for (r, x) in cx.iter_mut().enumerate() {
            *x = rows[r][..full].as_chunks::<8>().0;
        }
        let mut vc = [Avx::dsplat(0.0); R];
        for r in 0..R {
            vc[r] = Avx::dsplat(coef[r]);
        }
        let wt = last.unwrap_or(1.0);
        let vw = Avx::dsplat(wt);
        for k in 0..co.len() {
            let mut s = if first {
                Avx::dzero()
            } else {
                Avx::dload(&ca[k])
            };
            for r in 0..R {
                s = Avx::dmul_add(w.load8(&cx[r][k]).widen(), vc[r], s);
            }
            if last.is_none() {
                ca[k] = Avx::dstore(s);
                continue;
            }
            let y = Avx::narrow(Avx::dmul(s, vw));
            if w.narrow8(&y, &mut co[k]) {
                for c in 0..8 {
                    if H::is_midpoint(y[c]) {
                        let mut s = if first { 0.0 } else { ca[k][c] };
                        for r in 0..R {
                            s += cx[r][k][c].to_f64() * coef[r];
                        }
                        co[k][c] = H::narrow(s * wt);
                    }
                }
            }
        }
    }
    if full < len {
        let tail = [0, 1, 2, 3].map(|r| &rows[r.min(R - 1)][full..len]);
        let acc: &mut [f64] = if keep { &mut acc[full..len] } else { &mut [] };
        merge_body(w, &mut out[full..len], acc, tail, coef, R, first, last);
    }
}

/// The merged apply kernel of one element type (the same on AVX and
/// AVX-512VL: it holds a few accumulators), compiled with the given target
/// features.
macro_rules! merge_entry {
    ($merge:ident, $t:ty, $f16:expr, $features:literal) => {
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $features)]
        fn $merge(
            out: &mut [$t],
            acc: &mut [f64],
            rows: [&[$t]; 4],
            coef: [f64; 4],
            n: usize,
            first: bool,
            last: Option<f64>,
        ) {
            let w = &Direct::<$f16, false>;
            match n {
                0 | 1 => merge_fused::<$t, _, 1>(w, out, acc, rows, coef, first, last),
                2 => merge_fused::<$t, _, 2>(w, out, acc, rows, coef, first, last),
                3 => merge_fused::<$t, _, 3>(w, out, acc, rows, coef, first, last),
                _ => merge_fused::<$t, _, 4>(w, out, acc, rows, coef, first, last),
            }
        }
    };
}

gram_entry!(gram_bf16_avx, bf16, false, false, "avx");
gram_entry!(gram_bf16_avx512, bf16, false, true, "avx,avx512f,avx512vl");
gram_entry!(gram_f16_avx, f16, true, false, "avx,f16c");
gram_entry!(
    gram_f16_avx512,
    f16,
    true,
    true,
    "avx,avx512f,avx512vl,f16c"
);
merge_entry!(merge_bf16_avx, bf16, false, "avx");
merge_entry!(merge_f16_avx, f16, true, "avx,f16c");

/// Whether this CPU has F16C (cached by the standard library).
#[inline]
fn f16c() -> bool {
    std::is_x86_feature_detected!("f16c")
}

/// [`Half::gram_direct`] for bf16: `None` on the portable kernels.
#[inline]
pub(in crate::kernels) fn gram_bf16(
    k: Kernels,
    a: [&[bf16]; 4],
    b: [&[bf16]; 4],
    shape: Tile,
    len: usize,
    fast: u64,
    out: &mut [[f64; 4]; 4],
) -> Option<u64> {
    match k.isa() {
        Isa::Portable => None,
        // SAFETY: a `Kernels` holding `Isa::Avx` exists only after
        // `detected` found AVX (or better) on this CPU.
        Isa::Avx => Some(unsafe { gram_bf16_avx(a, b, shape, len, fast, out) }),
        // SAFETY: a `Kernels` holding `Isa::Avx512` exists only after
        // `detected` found AVX-512F, AVX-512VL and AVX.
        Isa::Avx512 => Some(unsafe { gram_bf16_avx512(a, b, shape, len, fast, out) }),
    }
}

/// [`Half::gram_direct`] for f16: `None` on the portable kernels or
/// without F16C.
#[inline]
pub(in crate::kernels) fn gram_f16(
    k: Kernels,
    a: [&[f16]; 4],
    b: [&[f16]; 4],
    shape: Tile,
    len: usize,
    fast: u64,
    out: &mut [[f64; 4]; 4],
) -> Option<u64> {
    match k.isa() {
        Isa::Portable => None,
        _ if !f16c() => None,
        // SAFETY: as in `gram_bf16`, the CPU has AVX; F16C was just
        // detected.
        Isa::Avx => Some(unsafe { gram_f16_avx(a, b, shape, len, fast, out) }),
        // SAFETY: as in `gram_bf16`, the CPU has AVX-512F, AVX-512VL and
        // AVX; F16C was just detected.
        Isa::Avx512 => Some(unsafe { gram_f16_avx512(a, b, shape, len, fast, out) }),
    }
}

/// [`Half::merge_direct`] for bf16: false on the portable kernels. The
/// merge kernel is the same on AVX and AVX-512VL.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(in crate::kernels) fn merge_bf16(
    k: Kernels,
    out: &mut [bf16],
    acc: &mut [f64],
    rows: [&[bf16]; 4],
    coef: [f64; 4],
    n: usize,
    first: bool,
    last: Option<f64>,
) -> bool {
    match k.isa() {
        Isa::Portable => false,
        // SAFETY: a `Kernels` holding `Isa::Avx` or `Isa::Avx512` exists
        // only after `detected` found AVX on this CPU.
        Isa::Avx | Isa::Avx512 => {
            unsafe { merge_bf16_avx(out, acc, rows, coef, n, first, last) };
            true
        }
    }
}

/// [`Half::merge_direct`] for f16: false on the portable kernels or
/// without F16C.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(in crate::kernels) fn merge_f16(
    k: Kernels,
    out: &mut [f16],
    acc: &mut [f64],
    rows: [&[f16]; 4],
    coef: [f64; 4],
    n: usize,
    first: bool,
    last: Option<f64>,
) -> bool {
    match k.isa() {
        Isa::Portable => false,
        _ if !f16c() => false,
        // SAFETY: the CPU has AVX (as in `merge_bf16`); F16C was just
        // detected.
        Isa::Avx | Isa::Avx512 => {
            unsafe { merge_f16_avx(out, acc, rows, coef, n, first, last) };
            true
        }
    }
}

/// The conversions alone, for the tests: F16C's widening or narrowing of
/// f16, compiled with it.
#[cfg(test)]
#[target_feature(enable = "avx,f16c")]
fn convert_f16_f16c(src: &[f16], wide: &mut [f32], narrow: Option<&mut [f16]>) -> bool {
    match narrow {
        None => {
            widen_f16(src, wide);
            false
        }
        Some(dst) => narrow_f16(wide, dst),
    }
}

/// For the tests: `wide` = the bf16 `src` widened by the direct code.
#[cfg(test)]
pub(in crate::kernels) fn widen_bf16_direct(src: &[bf16], wide: &mut [f32]) {
    widen_bf16(src, wide)
}

/// For the tests: `wide` = the f16 `src` widened by F16C; false (nothing
/// written) without AVX and F16C.
#[cfg(test)]
pub(in crate::kernels) fn widen_f16_direct(src: &[f16], wide: &mut [f32]) -> bool {
    if !(f16c() && std::is_x86_feature_detected!("avx")) {
        return false;
    }
    // SAFETY: AVX and F16C were just detected.
    unsafe { convert_f16_f16c(src, wide, None) };
    true
}

/// For the tests: `dst` = `src` narrowed by F16C, and the midpoint flag;
/// `None` (nothing written) without AVX and F16C.
#[cfg(test)]
pub(in crate::kernels) fn narrow_f16_direct(src: &mut [f32], dst: &mut [f16]) -> Option<bool> {
    if !(f16c() && std::is_x86_feature_detected!("avx")) {
        return None;
    }
    // SAFETY: AVX and F16C were just detected.
    Some(unsafe { convert_f16_f16c(&[], src, Some(dst)) })
}
