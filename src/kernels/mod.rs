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
//! The SIMD kernels are written once, over eight `f32` lanes (`lanes`),
//! and compiled for the compile-time backend of `wide` (`wide.rs`: SSE2 on a
//! default x86-64 build, NEON, AVX with `-C target-cpu=...`) and, on x86-64
//! with `std`, for AVX and AVX-512VL registers selected at run time
//! ([`x86`]). Each lane multiplies and then adds (no fused multiply-add), so
//! every backend gives bitwise the same result. Without SIMD (Cortex-M, or
//! `--cfg pcgrad_scalar`) the passes take the scalar twins ([`scalar`]).
//!
//! Which instruction set runs is a [`Kernels`] value, passed down by the
//! passes and dispatched in one place (`Kernels::gram_run`,
//! `Kernels::merge`; a safety note on each arm). The public entry
//! points take [`Kernels::best`]; the tests and benches pass each
//! instruction set explicitly. The detected-CPU cache behind
//! [`Kernels::best`] is the library's only mutable global state.
//!
//! Files: `mod.rs` (the [`Element`] trait, [`Tile`], the exact tile, the
//! block loop, the dispatch), `scalar.rs`, `lanes.rs`, `wide.rs`, `x86.rs`,
//! `tests.rs` (one generated test per instruction set).

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

/// The kernel side of [`Element`], sealed: a public trait in a private
/// module, so callers can neither name it nor implement [`Element`] for
/// their own types, and its methods are not part of the crate's API.
mod sealed {
    use super::{Kernels, Tile};

    /// The kernels of an element type (`f32`, `f64`).
    pub trait Sealed: Sized {
        /// The Gram tile of `shape` over `len` columns, block by block: for
        /// each block of [`super::BLOCK`] columns (the `k`-th from the start of the
        /// slices), the block's products summed from zero, then added into
        /// `out[r][c]` for the pairs of `shape`. Block `k` takes the narrow
        /// `f32` lanes when bit `k` of `fast` is set and, on a diagonal tile,
        /// its rows fit them; otherwise [`super::gram_tile_exact`]. Returns the blocks
        /// (bits) that took the narrow lanes. Blocks past the 64th are exact.
        /// The same arithmetic as one kernel call per block, without the
        /// per-block call and dispatch.
        fn gram_run(
            k: Kernels,
            a: [&[Self]; 4],
            b: [&[Self]; 4],
            shape: Tile,
            len: usize,
            fast: u64,
            out: &mut [[f64; 4]; 4],
        ) -> u64;
        /// The merged apply kernel over `n` (1 to 4) rows: per column `c`,
        /// `s = (first ? 0 : acc[c]) + sum_{r < n} rows[r][c] * coef[r]` in
        /// `f64` (a multiply, then an add, term by term in order of `r`),
        /// then `out[c] = round(s * w)` when `last` is `Some(w)`, else
        /// `acc[c] = s` (`acc` is not touched when `first` and `last`).
        /// Exact products and one rounding per term: no overflow that the
        /// exact sum does not have, and bitwise the projected path's merged
        /// output for the same terms in the same order.
        #[allow(clippy::too_many_arguments)]
        fn merge_rows(
            k: Kernels,
            out: &mut [Self],
            acc: &mut [f64],
            rows: [&[Self]; 4],
            coef: [f64; 4],
            n: usize,
            first: bool,
            last: Option<f64>,
        );
        /// [`Sealed::merge_rows`] with `f32` outputs: `out[c]` is `s * w`
        /// rounded once from `f64` to `f32`, to nearest even (the sums and
        /// `acc` as there). For `f32` it is [`Sealed::merge_rows`]; for a
        /// half type, the `f32` kernel on the widened rows, so `out[c]` is
        /// the value y that the half kernel rounds to the half type.
        #[allow(clippy::too_many_arguments)]
        #[inline]
        fn merge_rows_f32(
            _k: Kernels,
            out: &mut [f32],
            acc: &mut [f64],
            rows: [&[Self]; 4],
            coef: [f64; 4],
            n: usize,
            first: bool,
            last: Option<f64>,
        ) where
            Self: super::Element,
        {
            super::scalar::merge_rows_f32(out, acc, rows, coef, n, first, last)
        }
        /// The Gram pass without SIMD (Cortex-M), one pair of row blocks at a
        /// time: the sum of products of `x` and `y` (one block, at most
        /// [`super::BLOCK`] columns), bitwise the entry the scalar tile gives the pair
        /// ([`super::scalar::gram_tile_f32`] from zero when `fast`, else
        /// [`super::gram_tile_exact`]).
        fn pair_sum(x: &[Self], y: &[Self], fast: bool) -> f64;
        /// Whether a row block may take the narrow `f32` lanes (never in `f64`).
        fn block_fits(x: &[Self]) -> bool;
        /// `dst[c] = src[c]` widened to `f64` (exact), over the shorter of
        /// the two: the projected apply's tile load. `f32` runs it in the
        /// widest vectors of `k` (the combination then reads whole vectors
        /// that whole-vector stores wrote, with no store-forwarding stall).
        #[inline]
        fn widen_slice(_k: Kernels, src: &[Self], dst: &mut [f64])
        where
            Self: super::Element,
        {
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = v.to_f64();
            }
        }
        /// `dst[c] = src[c]` rounded from `f64` (as `from_f64`), over the
        /// shorter of the two: the projected apply's write of g'_i.
        #[inline]
        fn narrow_slice(_k: Kernels, src: &[f64], dst: &mut [Self])
        where
            Self: super::Element,
        {
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = Self::from_f64(v);
            }
        }
    }
}

/// A gradient element type: `f32` (the fast path), `f64`, and with the
/// `half` feature `pcgrad::bf16` and `pcgrad::f16` (widened to
/// `f32` block by block for the `f32` kernels; outputs rounded once from
/// `f64`).
pub trait Element:
    Float + Default + Send + Sync + core::fmt::Debug + 'static + sealed::Sealed
{
    /// Widen to `f64` (exact).
    fn to_f64(self) -> f64;
    /// Round from `f64`.
    fn from_f64(v: f64) -> Self;
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

/// An instruction set the SIMD kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// The compile-time backend of the `wide` crate (`wide.rs`: SSE2 on a
    /// default x86-64 build, AVX with `-C target-cpu=...`, NEON, ...).
    Portable,
    /// AVX, 16 vector registers, selected at run time (`x86.rs`).
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    Avx,
    /// AVX-512VL: AVX vectors in 32 registers, selected at run time.
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    Avx512,
}

impl Isa {
    /// Every instruction set of this build, in increasing order.
    pub const ALL: &'static [Isa] = &[
        Isa::Portable,
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        Isa::Avx,
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        Isa::Avx512,
    ];
}

/// The kernels of one instruction set that this CPU runs: a value exists
/// only for an [`Isa`] the CPU was found to have ([`Kernels::best`],
/// [`Kernels::new`]), which is what makes the dispatch below sound. The
/// passes take one explicitly (the public entry points use
/// [`Kernels::best`]); nothing selects kernels through global state. Every
/// instruction set gives bitwise the same results (each lane multiplies,
/// then adds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernels(Isa);

impl Kernels {
    /// The best kernels this CPU runs. The detection runs once per process;
    /// its result is cached (the library's only mutable global state).
    #[inline]
    pub fn best() -> Kernels {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        return Kernels(x86::detected());
        #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
        return Kernels(Isa::Portable);
    }

    /// The kernels of `isa`, or `None` when this CPU does not have it.
    pub fn new(isa: Isa) -> Option<Kernels> {
        (isa <= Kernels::best().0).then_some(Kernels(isa))
    }

    /// The instruction set.
    pub fn isa(self) -> Isa {
        self.0
    }

    /// The one dispatch point of [`Element::gram_run`] for `f32`.
    #[allow(unsafe_code)]
    #[inline]
    pub(crate) fn gram_run(
        self,
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: Tile,
        len: usize,
        fast: u64,
        out: &mut [[f64; 4]; 4],
    ) -> u64 {
        match self.0 {
            Isa::Portable => wide::gram_run(a, b, shape, len, fast, out),
            // SAFETY: a `Kernels` holding `Isa::Avx` exists only after
            // `x86::detected` found AVX (or better) on this CPU.
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            Isa::Avx => unsafe { x86::gram_run_avx(a, b, shape, len, fast, out) },
            // SAFETY: a `Kernels` holding `Isa::Avx512` exists only after
            // `x86::detected` found AVX-512F, AVX-512VL and AVX.
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            Isa::Avx512 => unsafe { x86::gram_run_avx512(a, b, shape, len, fast, out) },
        }
    }

    /// The one dispatch point of the merged apply kernel for `f32`.
    #[allow(unsafe_code, clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn merge(
        self,
        out: &mut [f32],
        acc: &mut [f64],
        rows: [&[f32]; 4],
        coef: [f64; 4],
        n: usize,
        first: bool,
        last: Option<f64>,
    ) {
        match self.0 {
            Isa::Portable => wide::merge(out, acc, rows, coef, n, first, last),
            // SAFETY: a `Kernels` holding `Isa::Avx` or `Isa::Avx512`
            // exists only after `x86::detected` found AVX on this CPU.
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            Isa::Avx | Isa::Avx512 => unsafe {
                x86::merge_avx(out, acc, rows, coef, n, first, last)
            },
        }
    }

    /// `acc[c] = sum_j coef[j] * rows[j * stride + c]` over the `j` with
    /// `coef[j] != 0` (a task never projected onto contributes nothing, not
    /// 0 * NaN), in `f64`: from zero, a multiply then an add per term, in
    /// increasing `j`, so bitwise the same on every instruction set. The
    /// projected apply's combination of a tile's rows ([`combine_cols`]).
    #[allow(unsafe_code)]
    #[inline]
    pub(crate) fn combine(self, rows: &[f64], stride: usize, coef: &[f64], acc: &mut [f64]) {
        match self.0 {
            Isa::Portable => combine_cols::<16>(rows, stride, coef, acc),
            // SAFETY: a `Kernels` holding `Isa::Avx` or `Isa::Avx512`
            // exists only after `x86::detected` found AVX on this CPU.
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            Isa::Avx | Isa::Avx512 => unsafe { x86::combine_avx(rows, stride, coef, acc) },
        }
    }

    /// [`sealed::Sealed::widen_slice`] for `f32`: the same conversions
    /// (exact), in the widest vectors of these kernels.
    #[allow(unsafe_code)]
    #[inline]
    pub(crate) fn widen(self, src: &[f32], dst: &mut [f64]) {
        match self.0 {
            Isa::Portable => widen_f32(src, dst),
            // SAFETY: a `Kernels` holding `Isa::Avx` or `Isa::Avx512`
            // exists only after `x86::detected` found AVX on this CPU.
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            Isa::Avx | Isa::Avx512 => unsafe { x86::widen_avx(src, dst) },
        }
    }

    /// [`sealed::Sealed::narrow_slice`] for `f32`: each value rounded to
    /// nearest (as `as f32`), in the widest vectors of these kernels.
    #[allow(unsafe_code)]
    #[inline]
    pub(crate) fn narrow(self, src: &[f64], dst: &mut [f32]) {
        match self.0 {
            Isa::Portable => narrow_f32(src, dst),
            // SAFETY: as in `widen`, the CPU has AVX.
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            Isa::Avx | Isa::Avx512 => unsafe { x86::narrow_avx(src, dst) },
        }
    }

    /// The multiply-add throughput probe of the roofline's compute roof:
    /// `iters` steps of 12 independent `acc + a * b` vector updates (8 lanes
    /// each) with the lane operation of these kernels' Gram tile
    /// (`Lanes8::mul_add2`), over `buf`. Returns a sum that depends on
    /// every update.
    #[allow(unsafe_code)]
    pub(crate) fn peak(self, buf: &[[f32; 8]; PEAK_VECS], iters: usize) -> f32 {
        match self.0 {
            Isa::Portable => lanes::peak::<::wide::f32x8>(buf, iters),
            // SAFETY: as in `gram_run`, the CPU has AVX.
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            Isa::Avx => unsafe { x86::peak_avx(buf, iters) },
            // SAFETY: as in `gram_run`, the CPU has AVX-512F, AVX-512VL and
            // AVX.
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            Isa::Avx512 => unsafe { x86::peak_avx512(buf, iters) },
        }
    }

    /// The `f64` multiply-add throughput probe of the roofline's compute
    /// roof for the projected apply: `iters` steps of four independent
    /// eight-lane `acc + x * c` updates in `f64` (`Lanes8::dmul_add`, the
    /// merged apply kernel's lane operation; the projected combination does
    /// the same multiply, then add, per term), over `buf`. Returns a sum
    /// that depends on every update.
    #[allow(unsafe_code)]
    pub(crate) fn peak_f64(self, buf: &[[f64; 8]; PEAK_VECS], iters: usize) -> f64 {
        match self.0 {
            Isa::Portable => lanes::peak_f64::<::wide::f32x8>(buf, iters),
            // SAFETY: a `Kernels` holding `Isa::Avx` or `Isa::Avx512`
            // exists only after `x86::detected` found AVX on this CPU.
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            Isa::Avx | Isa::Avx512 => unsafe { x86::peak_f64_avx(buf, iters) },
        }
    }

    /// One Gram tile over one block (at most [`BLOCK`] columns): the unit
    /// that [`Element::gram_run`] repeats, for the kernel tests.
    #[cfg(test)]
    #[allow(unsafe_code)]
    pub(crate) fn gram_tile(
        self,
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: Tile,
        len: usize,
        out: &mut [[f64; 4]; 4],
    ) -> bool {
        match self.0 {
            Isa::Portable => wide::gram_tile(a, b, shape, len, out),
            // SAFETY: as in `gram_run`, the CPU has AVX.
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            Isa::Avx => unsafe { x86::gram_tile_avx(a, b, shape, len, out) },
            // SAFETY: as in `gram_run`, the CPU has AVX-512F, AVX-512VL and
            // AVX.
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            Isa::Avx512 => unsafe { x86::gram_tile_avx512(a, b, shape, len, out) },
        }
    }
}

impl Element for f32 {
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl sealed::Sealed for f32 {
    #[inline]
    fn gram_run(
        k: Kernels,
        a: [&[f32]; 4],
        b: [&[f32]; 4],
        shape: Tile,
        len: usize,
        fast: u64,
        out: &mut [[f64; 4]; 4],
    ) -> u64 {
        if SIMD {
            k.gram_run(a, b, shape, len, fast, out)
        } else {
            run_blocks(a, b, shape, len, fast, out, scalar::gram_tile_f32)
        }
    }
    #[inline]
    fn merge_rows(
        k: Kernels,
        out: &mut [f32],
        acc: &mut [f64],
        rows: [&[f32]; 4],
        coef: [f64; 4],
        n: usize,
        first: bool,
        last: Option<f64>,
    ) {
        if SIMD {
            k.merge(out, acc, rows, coef, n, first, last)
        } else {
            scalar::merge_rows(out, acc, rows, coef, n, first, last)
        }
    }
    #[inline]
    fn merge_rows_f32(
        k: Kernels,
        out: &mut [f32],
        acc: &mut [f64],
        rows: [&[f32]; 4],
        coef: [f64; 4],
        n: usize,
        first: bool,
        last: Option<f64>,
    ) {
        <f32 as sealed::Sealed>::merge_rows(k, out, acc, rows, coef, n, first, last)
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
    #[inline]
    fn widen_slice(k: Kernels, src: &[f32], dst: &mut [f64]) {
        k.widen(src, dst)
    }
    #[inline]
    fn narrow_slice(k: Kernels, src: &[f64], dst: &mut [f32]) {
        k.narrow(src, dst)
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
}

impl sealed::Sealed for f64 {
    #[inline]
    fn gram_run(
        _k: Kernels,
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
    fn merge_rows(
        _k: Kernels,
        out: &mut [f64],
        acc: &mut [f64],
        rows: [&[f64]; 4],
        coef: [f64; 4],
        n: usize,
        first: bool,
        last: Option<f64>,
    ) {
        scalar::merge_rows(out, acc, rows, coef, n, first, last)
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

/// `dst[c] = f64(src[c])` (exact) over the shorter of the two; compiled
/// with the caller's target features.
#[inline(always)]
pub(crate) fn widen_f32(src: &[f32], dst: &mut [f64]) {
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = f64::from(v);
    }
}

/// `dst[c] = src[c] as f32` (round to nearest) over the shorter of the
/// two; compiled with the caller's target features.
#[inline(always)]
pub(crate) fn narrow_f32(src: &[f64], dst: &mut [f32]) {
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = v as f32;
    }
}

/// [`Kernels::combine`] in runs of `W` columns whose sums stay in
/// registers across the rows (one store per column instead of one per row
/// and column; `W` = 16: 8 SSE2 registers, 32: 8 AVX registers, enough
/// independent chains to hide the add latency). Row `j` is read at
/// `rows[j * stride..j * stride + acc.len()]`; a run that `rows` does not
/// hold for some used row skips that row's term (the callers always pass
/// whole rows).
#[inline(always)]
pub(crate) fn combine_cols<const W: usize>(
    rows: &[f64],
    stride: usize,
    coef: &[f64],
    acc: &mut [f64],
) {
    let (full, tail) = acc.as_chunks_mut::<W>();
    // Whole runs with the run length known at compile time, so that the
    // sums stay in registers (a run of variable length kept them in memory,
    // one store-to-load round trip per row in each sum's chain).
    for (k, run) in full.iter_mut().enumerate() {
        let c0 = k * W;
        let mut s = [0.0f64; W];
        for (j, &cj) in coef.iter().enumerate() {
            if cj != 0.0 {
                let Some(Ok(r)) = rows
                    .get(j * stride + c0..j * stride + c0 + W)
                    .map(<&[f64; W]>::try_from)
                else {
                    continue;
                };
                for (s, &v) in s.iter_mut().zip(r) {
                    *s += cj * v;
                }
            }
        }
        *run = s;
    }
    let c0 = full.len() * W;
    let n = tail.len();
    if n > 0 {
        let mut s = [0.0f64; W];
        for (j, &cj) in coef.iter().enumerate() {
            if cj != 0.0 {
                let Some(r) = rows.get(j * stride + c0..j * stride + c0 + n) else {
                    continue;
                };
                for (s, &v) in s.iter_mut().zip(r) {
                    *s += cj * v;
                }
            }
        }
        tail.copy_from_slice(&s[..n]);
    }
}

/// The block loop of [`Element::gram_run`] over a per-block tile kernel
/// `$tile` (a callable expression; false when a diagonal block does not
/// fit the narrow lanes), written once for [`run_blocks`] and
/// [`run_lanes`].
macro_rules! block_loop {
    ($a:expr, $b:expr, $shape:expr, $len:expr, $fast:expr, $out:expr, $tile:expr) => {{
        let (a, b, shape, len, fast, out) = ($a, $b, $shape, $len, $fast, $out);
        let mut fits = 0u64;
        let (mut k0, mut bit) = (0, 1u64);
        while k0 < len {
            let k1 = len.min(k0 + BLOCK);
            let (ab, bb) = (a.map(|r| &r[k0..k1]), b.map(|r| &r[k0..k1]));
            let mut part = [[0.0f64; 4]; 4];
            if fast & bit != 0 && $tile(ab, bb, shape, k1 - k0, &mut part) {
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
    }};
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
    block_loop!(a, b, shape, len, fast, out, tile)
}

/// [`run_blocks`] over the [`Lanes8`] tile of `D`, `SR`, `SC` (see
/// [`tile`]), called directly rather than through a closure, so that it is
/// always inlined into the block loop and compiled with the caller's
/// target features. (Through a closure, LLVM compiled the AVX-512 tile set
/// as a function of its own, called once per block.)
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[inline(always)]
fn run_lanes<V: Lanes8, const D: usize, const SR: usize, const SC: usize>(
    a: [&[f32]; 4],
    b: [&[f32]; 4],
    shape: Tile,
    len: usize,
    fast: u64,
    out: &mut [[f64; 4]; 4],
) -> u64 {
    block_loop!(a, b, shape, len, fast, out, tile::<V, D, SR, SC>)
}

pub mod scalar;

mod lanes;
use lanes::{merge8, tile, Lanes8};
pub(crate) use lanes::{PEAK_F64_PRODUCTS, PEAK_VECS};

pub mod wide;

#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[allow(unsafe_code)]
pub mod x86;

#[cfg(feature = "half")]
mod half;

#[cfg(test)]
mod tests;
