//! The half-precision kernels: the rounding against a search over every
//! value of the format, the Gram pass bitwise the `f32` pass on the widened
//! input, the merged apply kernel bitwise its scalar twin.

extern crate std;

use std::vec::Vec;

use super::*;
use crate::engine::{accumulate_chunk, accumulate_pairs};
use crate::kernels::Isa;
use crate::layout::{Flat, Layout, SegPos};

/// Every kernel set this CPU runs.
fn kernels() -> impl Iterator<Item = Kernels> {
    Isa::ALL.iter().filter_map(|&i| Kernels::new(i))
}

/// A deterministic stream of 64-bit values (SplitMix64).
fn stream(mut s: u64) -> impl FnMut() -> u64 {
    move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The correctly rounded value of `v`, by search: the finite non-negative
/// values of the format in increasing order (`finite`: bit patterns
/// `0..inf`), the two around |v|, the nearer one, ties to the even bit
/// pattern; past the largest finite value, the next step (`inf`, one ulp
/// beyond it) stands for infinity. Differences of neighbours are exact in
/// `f64` (Sterbenz), so the comparison is exact.
fn nearest(v: f64, values: &[f64], inf: u16) -> u16 {
    let sign = if v.is_sign_negative() { 0x8000 } else { 0 };
    let a = v.abs();
    let top = values[values.len() - 1];
    let beyond = top + (top - values[values.len() - 2]);
    let i = values.partition_point(|&x| x <= a);
    // values[i - 1] <= a < values[i] (or beyond the last finite value).
    let lo = i - 1;
    let hi_val = values.get(i).copied().unwrap_or(beyond);
    let hi_bits = if i < values.len() { i as u16 } else { inf };
    let (dl, dh) = (a - values[lo], hi_val - a);
    let bits = if a >= beyond {
        inf
    } else if dl < dh || (dl == dh && lo % 2 == 0) {
        lo as u16
    } else {
        hi_bits
    };
    sign | bits
}

fn check_rounding<H: Half>(to_bits: impl Fn(H) -> u16, from_bits: impl Fn(u16) -> H, inf: u16) {
    let values: Vec<f64> = (0..inf).map(|b| Element::to_f64(from_bits(b))).collect();
    let mut next = stream(u64::from(inf));
    let mut cases: Vec<f64> = Vec::new();
    // Every midpoint of neighbours, and a hair (one f64 ulp, and 2^-40
    // relative: the bits the `half` crate's `from_f64` ignores) either
    // side of it.
    for w in values.windows(2).step_by(7) {
        let mid = (w[0] + w[1]) / 2.0;
        for m in [mid, -mid] {
            cases.extend([
                m,
                f64::from_bits(m.to_bits() + 1),
                f64::from_bits(m.to_bits() - 1),
                m * (1.0 + 2f64.powi(-40)),
                m * (1.0 - 2f64.powi(-40)),
            ]);
        }
    }
    // Random values over the whole range of the format and beyond.
    let (lo_exp, hi_exp) = if inf == 0x7F80 {
        (-140, 130)
    } else {
        (-27, 17)
    };
    for _ in 0..20_000 {
        let e = lo_exp + (next() % (hi_exp - lo_exp) as u64) as i32;
        let m = 1.0 + (next() >> 11) as f64 / (1u64 << 53) as f64;
        let s = if next() & 1 == 0 { 1.0 } else { -1.0 };
        cases.push(s * m * 2f64.powi(e));
    }
    cases.extend([0.0, -0.0, f64::MAX, f64::MIN_POSITIVE, 1e-300, -1e300]);
    for &v in &cases {
        let got = to_bits(H::narrow(v));
        let want = nearest(v, &values, inf);
        assert_eq!(got, want, "{v:e}: got {got:#06x}, want {want:#06x}");
    }
    for v in [f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(to_bits(H::narrow(v)) & 0x7FFF, inf);
    }
    assert!(H::narrow(f64::NAN).is_nan());
}

#[test]
fn rounding_is_correct_for_bf16() {
    check_rounding::<bf16>(bf16::to_bits, bf16::from_bits, 0x7F80);
    // The case that rounding through f32 to nearest gets wrong: just above
    // a bf16 tie, within half an f32 ulp of it.
    let v = 1.0 + 2f64.powi(-8) + 2f64.powi(-30);
    assert_eq!(bf16::from_f64(v).to_bits(), 0x3F80, "the half crate");
    assert_eq!(<bf16 as Element>::from_f64(v).to_bits(), 0x3F81);
}

#[test]
fn rounding_is_correct_for_f16() {
    check_rounding::<f16>(f16::to_bits, f16::from_bits, 0x7C00);
}

/// T x N values in [-0.5, 0.5), some blocks out of the `f32` lanes'
/// range when the format has the range (bf16), rounded to `H`.
fn data<H: Half>(t: usize, n: usize, seed: u64) -> Vec<H> {
    let mut next = stream(seed);
    let mut d: Vec<H> = (0..t * n)
        .map(|_| H::from_f64((next() >> 11) as f64 / (1u64 << 53) as f64 - 0.5))
        .collect();
    if t > 1 && n > BLOCK + 3 {
        d[n + BLOCK + 3] = H::from_f64(1e30); // bf16: a block out of range
        for x in &mut d[(t - 1) * n..(t - 1) * n + BLOCK.min(n)] {
            *x = H::from_f64(Element::to_f64(*x) * 2e-36); // bf16: tiny; f16: zeros
        }
    }
    d
}

fn widened<H: Half>(d: &[H]) -> Vec<f32> {
    d.iter().map(|x| Element::to_f64(*x) as f32).collect()
}

/// The Gram pass over half values is bitwise the `f32` pass over the
/// widened values, with SIMD (every kernel set) and without.
fn gram_is_the_f32_gram<H: Half>() {
    let n = 3 * BLOCK + 77;
    let segments = [BLOCK + 5, 2 * BLOCK + 72];
    for t in [1usize, 2, 3, 5, 8, 9] {
        let h = data::<H>(t, n, t as u64);
        let w = widened(&h);
        let mask: Vec<bool> = (0..2 * t).map(|k| k % 5 != 3).collect();
        for (segs, has) in [(&[][..], &[][..]), (&segments[..], &mask[..])] {
            let layout = Layout::new(t, n, segs, has).unwrap();
            let (fh, fw) = (
                Flat::new(layout, &h).unwrap(),
                Flat::new(layout, &w).unwrap(),
            );
            let bits = |g: &[f64]| g.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            for (c0, c1) in [(0, n), (7, BLOCK + 300), (n - 5, n)] {
                for k in kernels() {
                    let (mut gh, mut gw) = (std::vec![0.5; t * t], std::vec![0.5; t * t]);
                    accumulate_chunk(k, &fh, SegPos::START, c0, c1, &mut gh);
                    accumulate_chunk(k, &fw, SegPos::START, c0, c1, &mut gw);
                    assert_eq!(bits(&gh), bits(&gw), "{k:?} T={t} {c0}..{c1} {segs:?}");
                }
                let (mut gh, mut gw) = (std::vec![0.5; t * t], std::vec![0.5; t * t]);
                accumulate_pairs(&fh, SegPos::START, c0, c1, &mut gh);
                accumulate_pairs(&fw, SegPos::START, c0, c1, &mut gw);
                assert_eq!(bits(&gh), bits(&gw), "pairs T={t} {c0}..{c1} {segs:?}");
            }
        }
    }
}

#[test]
fn gram_is_the_f32_gram_bf16() {
    gram_is_the_f32_gram::<bf16>();
}

#[test]
fn gram_is_the_f32_gram_f16() {
    gram_is_the_f32_gram::<f16>();
}

/// The merged apply kernel (widened chunks through the `f32` kernel) is
/// bitwise its scalar twin on the half values: the same `f64` sums, each
/// rounded once. Over lengths that cross the chunk size, 1 to 4 rows, and
/// each of first / middle / last calls.
fn merge_is_the_scalar_merge<H: Half>() {
    for len in [0usize, 1, 7, 8, 255, 256, 257, 600] {
        let d = data::<H>(4, len, len as u64 + 3);
        let rows = [0, 1, 2, 3].map(|r| &d[r * len..(r + 1) * len]);
        let coef = [0.75, -1.5e-3, 3.25, -0.125];
        for k in kernels() {
            for n in 1..=4 {
                for (first, last) in [
                    (true, Some(0.25)),
                    (true, None),
                    (false, Some(1.0)),
                    (false, None),
                ] {
                    let acc0: Vec<f64> = (0..len).map(|c| c as f64 * 0.01 - 1.0).collect();
                    let (mut o1, mut o2) = (std::vec![H::zero(); len], std::vec![H::zero(); len]);
                    let (mut a1, mut a2) = (acc0.clone(), acc0.clone());
                    merge_rows(k, &mut o1, &mut a1, rows, coef, n, first, last);
                    scalar::merge_rows(&mut o2, &mut a2, rows, coef, n, first, last);
                    let hb = |o: &[H]| {
                        o.iter()
                            .map(|x| Element::to_f64(*x).to_bits())
                            .collect::<Vec<_>>()
                    };
                    let what = std::format!("{k:?} len={len} n={n} first={first} last={last:?}");
                    assert_eq!(hb(&o1), hb(&o2), "{what}");
                    if last.is_none() {
                        let fb = |a: &[f64]| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(fb(&a1), fb(&a2), "{what}");
                    }
                }
            }
        }
    }
}

#[test]
fn merge_is_the_scalar_merge_bf16() {
    merge_is_the_scalar_merge::<bf16>();
}

#[test]
fn merge_is_the_scalar_merge_f16() {
    merge_is_the_scalar_merge::<f16>();
}

/// The pair sum and the range check of the pass without SIMD agree with
/// the `f32` ones on the widened block.
#[test]
fn pair_sum_and_fit_are_the_f32_ones() {
    let d = data::<bf16>(2, BLOCK, 11);
    let w = widened(&d);
    let (x, y) = (&d[..BLOCK], &d[BLOCK..]);
    let (wx, wy) = (&w[..BLOCK], &w[BLOCK..]);
    for fast in [false, true] {
        assert_eq!(
            pair_sum(x, y, fast).to_bits(),
            <f32 as Sealed>::pair_sum(wx, wy, fast).to_bits()
        );
    }
    assert_eq!(block_fits(x), scalar::fast_range_f32(wx));
    let big = [bf16::from_f64(1e30), bf16::ZERO];
    assert!(!block_fits(&big));
    assert!(block_fits(&[bf16::ZERO; 3]));
    assert!(!block_fits(&[bf16::NAN, bf16::ONE]));
}

/// The widening is exact for every bit pattern of both formats (NaN as
/// NaN), against the `half` crate's own conversion.
#[test]
fn widening_is_exact_for_every_value() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    let mut out = std::vec![0.0f32; all.len()];
    let h: Vec<f16> = all.iter().map(|&b| f16::from_bits(b)).collect();
    f16::widen(&h, &mut out);
    for (x, &y) in h.iter().zip(&out) {
        assert!(
            y.to_bits() == x.to_f32().to_bits() || (y.is_nan() && x.is_nan()),
            "{x:?}"
        );
    }
    let b: Vec<bf16> = all.iter().map(|&b| bf16::from_bits(b)).collect();
    bf16::widen(&b, &mut out);
    for (x, &y) in b.iter().zip(&out) {
        assert!(
            y.to_bits() == x.to_f32().to_bits() || (y.is_nan() && x.is_nan()),
            "{x:?}"
        );
    }
}

/// Sums just past a midpoint of the half type, where the `f32` output of
/// the kernel lands on the midpoint itself: the merged kernel must give
/// the once-rounded value, first and later calls alike, on every kernel
/// set.
#[test]
fn merge_rounds_once_past_a_midpoint() {
    fn at<H: Half>(coef: f64, want: u16, bits: impl Fn(H) -> u16) {
        let one = [H::one(); 70];
        for k in kernels() {
            for first in [true, false] {
                let mut out = [H::zero(); 70];
                let mut acc = [0.0f64; 70];
                merge_rows(
                    k,
                    &mut out,
                    &mut acc,
                    [&one; 4],
                    [coef, 0.0, 0.0, 0.0],
                    1,
                    first,
                    Some(1.0),
                );
                assert!(
                    out.iter().all(|&o| bits(o) == want),
                    "{k:?} {coef:e} first={first}: {:#06x}",
                    bits(out[0])
                );
            }
        }
    }
    let tiny = 2f64.powi(-30);
    at::<bf16>(1.0 + 2f64.powi(-8) + tiny, 0x3F81, bf16::to_bits);
    at::<bf16>(-(1.0 + 2f64.powi(-8) + tiny), 0xBF81, bf16::to_bits);
    at::<bf16>(1.0 + 3.0 * 2f64.powi(-8) - tiny, 0x3F81, bf16::to_bits);
    at::<f16>(1.0 + 2f64.powi(-11) + tiny, 0x3C01, f16::to_bits);
    // f16 subnormals: 1.5 steps of 2^-24, and a hair above.
    at::<f16>(3.0 * 2f64.powi(-25), 0x0002, f16::to_bits);
    at::<f16>(3.0 * 2f64.powi(-25) + 2f64.powi(-45), 0x0002, f16::to_bits);
    at::<f16>(2f64.powi(-25) + 2f64.powi(-45), 0x0001, f16::to_bits);
}

/// Rows of `H` holding the format's extremes among ordinary values: the
/// smallest subnormals, the smallest normal, the largest finite value,
/// values near 1e-30 and 1e30 where the format has them (bf16; f16 has
/// 2^-24 and 65504), zeros of both signs, and random values in
/// [-0.5, 0.5) between them.
fn extremes<H: Half>(t: usize, n: usize, seed: u64, bits: impl Fn(u16) -> H) -> Vec<H> {
    let mut d = data::<H>(t, n, seed);
    let special: Vec<H> = if core::mem::size_of::<H>() == 2 && H::max_value().to_f64() > 1e30 {
        // bf16
        [
            0x0001, 0x8001, 0x007F, 0x0080, 0x7F7F, 0xFF7F, 0x0DA2, 0x7149, 0x8000, 0x0000,
        ]
        .map(&bits)
        .to_vec()
    } else {
        [
            0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x0002, 0x7800, 0x8000, 0x0000,
        ]
        .map(&bits)
        .to_vec()
    };
    let mut next = stream(seed ^ 0x55);
    for x in d.iter_mut() {
        if next().is_multiple_of(7) {
            *x = special[(next() % special.len() as u64) as usize];
        }
    }
    d
}

/// The direct kernels (conversions in AVX registers, F16C for f16) give
/// bitwise the portable widening's Gram tile sums and fit flags on every
/// kernel set, for every tile shape, lengths that are not multiples of the
/// vector width or of the block, and rows of extreme values (some blocks
/// out of the `f32` lanes' range).
fn direct_gram_is_the_portable_gram<H: Half>(bits: impl Fn(u16) -> H + Copy) {
    for len in [1usize, 13, BLOCK - 1, 3 * BLOCK + 77] {
        let d = extremes::<H>(8, len, len as u64, bits);
        let row = |r: usize| &d[r * len..(r + 1) * len];
        let a = [0, 1, 2, 3].map(row);
        let b = [4, 5, 6, 7].map(row);
        for k in kernels() {
            for rows in 1..=4 {
                for (cols, diagonal) in [(rows, true), (1, false), (3, false), (4, false)] {
                    let shape = Tile {
                        rows,
                        cols,
                        diagonal,
                    };
                    let b = if diagonal { a } else { b };
                    for fast in [u64::MAX, 0b101] {
                        let (mut o1, mut o2) = ([[0.25f64; 4]; 4], [[0.25f64; 4]; 4]);
                        let f1 = gram_run(k, a, b, shape, len, fast, &mut o1);
                        let f2 = gram_body(&Portable(k), a, b, shape, len, fast, &mut o2);
                        let what = std::format!("{k:?} len={len} {shape:?} fast={fast:#x}");
                        assert_eq!(f1, f2, "{what}");
                        // NaN as one value: `fast` here also forces the
                        // f32 lanes on blocks out of their range (inf - inf),
                        // and a NaN's sign and payload are not promised (Miri
                        // picks them at random).
                        let b = |o: [[f64; 4]; 4]| {
                            o.map(|r| r.map(|x| if x.is_nan() { u64::MAX } else { x.to_bits() }))
                        };
                        assert_eq!(b(o1), b(o2), "{what}");
                    }
                }
            }
        }
    }
}

#[test]
fn direct_gram_is_the_portable_gram_bf16() {
    direct_gram_is_the_portable_gram::<bf16>(bf16::from_bits);
}

#[test]
fn direct_gram_is_the_portable_gram_f16() {
    direct_gram_is_the_portable_gram::<f16>(f16::from_bits);
}

/// The direct merged apply kernel is bitwise the portable one (sums and
/// rounded outputs) on every kernel set, over lengths that cross the
/// vector width and the chunk size, and extreme values (outputs that
/// round to subnormals, to the largest values, and past them to infinity).
fn direct_merge_is_the_portable_merge<H: Half>(bits: impl Fn(u16) -> H + Copy) {
    for len in [1usize, 7, 13, 63, 65, 257, 600] {
        let mut d = extremes::<H>(4, len, len as u64 + 9, bits);
        if len > 8 {
            // Infinities and a NaN: outputs NaN and infinite.
            d[3] = H::infinity();
            d[len + 5] = H::nan();
            d[2 * len + 1] = H::neg_infinity();
        }
        let rows = [0, 1, 2, 3].map(|r| &d[r * len..(r + 1) * len]);
        for coef in [
            [0.75, -1.5e-3, 3.25, -0.125],
            [1.0, 1.0, 0.0, 1.0],
            [2.0, -1e-5, 1e-3, 1.5],
        ] {
            for k in kernels() {
                for n in 1..=4 {
                    for (first, last) in [
                        (true, Some(0.25)),
                        (true, None),
                        (false, Some(1.0)),
                        (false, None),
                    ] {
                        let acc0: Vec<f64> = (0..len).map(|c| c as f64 * 0.01 - 1.0).collect();
                        let (mut o1, mut o2) =
                            (std::vec![H::zero(); len], std::vec![H::zero(); len]);
                        let (mut a1, mut a2) = (acc0.clone(), acc0.clone());
                        merge_rows(k, &mut o1, &mut a1, rows, coef, n, first, last);
                        merge_body(&Portable(k), &mut o2, &mut a2, rows, coef, n, first, last);
                        let hb = |o: &[H]| {
                            // NaN as one value (its payload is not promised).
                            o.iter()
                                .map(|x| Element::to_f64(*x))
                                .map(|x| if x.is_nan() { u64::MAX } else { x.to_bits() })
                                .collect::<Vec<_>>()
                        };
                        let what = std::format!(
                            "{k:?} len={len} n={n} {coef:?} first={first} last={last:?}"
                        );
                        assert_eq!(hb(&o1), hb(&o2), "{what}");
                        if last.is_none() {
                            let fb = |a: &[f64]| {
                                a.iter()
                                    .map(|x| if x.is_nan() { u64::MAX } else { x.to_bits() })
                                    .collect::<Vec<_>>()
                            };
                            assert_eq!(fb(&a1), fb(&a2), "{what}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn direct_merge_is_the_portable_merge_bf16() {
    direct_merge_is_the_portable_merge::<bf16>(bf16::from_bits);
}

#[test]
fn direct_merge_is_the_portable_merge_f16() {
    direct_merge_is_the_portable_merge::<f16>(f16::from_bits);
}

/// The direct conversions against the portable ones for every bit pattern
/// (a length that is not a multiple of the vector width, so the tail code
/// runs too): widening bitwise (NaN as NaN: F16C quiets a signalling NaN),
/// and f16 narrowing bitwise with the same midpoint flag, over every f32
/// that a widened f16 is and midpoints and near-midpoints between them.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[test]
fn direct_conversions_are_the_portable_ones() {
    use crate::kernels::x86::half::{narrow_f16_direct, widen_bf16_direct, widen_f16_direct};
    let all: Vec<u16> = (0..=u16::MAX).chain(0..5).collect();
    let same = |x: f32, y: f32| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan());
    let b: Vec<bf16> = all.iter().map(|&v| bf16::from_bits(v)).collect();
    let (mut w1, mut w2) = (std::vec![0.0f32; b.len()], std::vec![0.0f32; b.len()]);
    widen_bf16_direct(&b, &mut w1);
    bf16::widen(&b, &mut w2);
    assert!(w1.iter().zip(&w2).all(|(&x, &y)| same(x, y)));
    let h: Vec<f16> = all.iter().map(|&v| f16::from_bits(v)).collect();
    if !widen_f16_direct(&h, &mut w1) {
        return;
    }
    f16::widen(&h, &mut w2);
    assert!(w1.iter().zip(&w2).all(|(&x, &y)| same(x, y)));
    // Narrowing: the widened values, their f32 neighbours and values
    // between f16 values (midpoints of f16 values are among them), f32
    // values past the f16 range; a length that is not a multiple of 8.
    let mut ys: Vec<f32> = Vec::new();
    for &x in w2.iter().filter(|x| x.is_finite()) {
        let b = x.to_bits();
        ys.extend([x, f32::from_bits(b + 1), f32::from_bits(b.wrapping_sub(1))]);
        ys.extend([x + x * 2f32.powi(-11), x - x * 2f32.powi(-12), x * 1.5]);
    }
    ys.extend([
        65520.0,
        65519.99,
        -65520.0,
        1e30,
        -1e-30,
        3e-8,
        2.9e-8,
        f32::MAX,
    ]);
    ys.extend([f32::INFINITY, f32::NEG_INFINITY, 1e-45]);
    ys.truncate(ys.len() - ys.len() % 8 - 3);
    let mut h1 = std::vec![f16::ZERO; ys.len()];
    let mut h2 = std::vec![f16::ZERO; ys.len()];
    let tie2 = f16::narrow_nearest(&ys, &mut h2);
    let tie1 = narrow_f16_direct(&mut ys.clone(), &mut h1).expect("F16C");
    assert_eq!(tie1, tie2);
    for ((a, b), y) in h1.iter().zip(&h2).zip(&ys) {
        assert_eq!(a.to_bits(), b.to_bits(), "{y:e}");
    }
    // The midpoint flag per chunk: only midpoints (and f16 subnormal
    // range values) set it.
    for c in ys.chunks(13) {
        let mut o = std::vec![f16::ZERO; c.len()];
        let want = c.iter().any(|&y| f16::is_midpoint(y));
        assert_eq!(narrow_f16_direct(&mut c.to_vec(), &mut o), Some(want));
    }
}
