//! [`PcGrad::merge_f32`]: the merged gradient as `f32` for bf16 and f16
//! gradients (and `f32`, `f64`).
//!
//! What is compared, bitwise:
//!
//! - `merge_f32` over half gradients equals `merge` over the same values
//!   widened to `f32` (the half kernels run the `f32` kernels on the
//!   widened values: the same Gram matrix, coefficients, `f64` sums and one
//!   rounding to `f32`), statistics included;
//! - `merge` over the half gradients equals that `f32` output rounded to
//!   the half type to nearest even, except where the `f32` value lies
//!   exactly midway between two half values: there `merge` rounds the
//!   `f64` sum once, which gives one of the two, as near as the other;
//! - every thread count gives the serial result (feature `parallel`);
//! - `f32` gradients: `merge`; `f64` gradients: `merge` rounded to `f32`.

extern crate std;

use half::{bf16, f16};
use std::format;
use std::vec;
use std::vec::Vec;

use crate::engine::{Mode, Order, Reduction};
use crate::layout::{Flat, Layout};
use crate::{workspace_len, Element, PcGrad, PpcGrad};

/// Lengths that are multiples of neither 8 nor 256 (one below and one
/// above a block, the tail of a SIMD vector left over).
const DIMS: [usize; 3] = [13, 261, 525];

/// A half type under test.
trait H: Element {
    fn of(x: f32) -> Self;
    fn wide(self) -> f32;
}
impl H for bf16 {
    fn of(x: f32) -> Self {
        bf16::from_f32(x)
    }
    fn wide(self) -> f32 {
        self.to_f32()
    }
}
impl H for f16 {
    fn of(x: f32) -> Self {
        f16::from_f32(x)
    }
    fn wide(self) -> f32 {
        self.to_f32()
    }
}

/// The gradient families: random, all zero, identical rows, rows in
/// opposite pairs.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Random,
    Zero,
    Identical,
    Opposite,
}

/// T x N values of `kind` (deterministic; magnitudes spread over a few
/// binades so that the outputs need more bits than the half type keeps).
fn grads(t: usize, n: usize, kind: Kind) -> Vec<f32> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64 ^ ((t * 1000 + n) as u64);
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
    };
    let row: Vec<f32> = (0..n).map(|_| next()).collect();
    (0..t * n)
        .map(|i| match kind {
            Kind::Random => next(),
            Kind::Zero => 0.0,
            Kind::Identical => row[i % n],
            Kind::Opposite => {
                if (i / n).is_multiple_of(2) {
                    row[i % n]
                } else {
                    -row[i % n]
                }
            }
        })
        .collect()
}

/// Both modes (sequential in a fixed order and in a shuffled one from the
/// same seed, simultaneous), both reductions, on `threads`.
fn configs(threads: usize, run: &mut dyn FnMut(&mut dyn FnMut() -> PcGrad<'static>, &str)) {
    for red in [Reduction::Mean, Reduction::Sum] {
        run(
            &mut || {
                PcGrad::with_mode(Mode::Sequential(Order::Fixed))
                    .reduction(red)
                    .threads(threads)
            },
            "sequential fixed",
        );
        run(
            &mut || PpcGrad::new().reduction(red).threads(threads),
            "simultaneous",
        );
    }
}

fn check<E: H>() {
    for t in 1..=5 {
        for &n in &DIMS {
            for kind in [Kind::Random, Kind::Zero, Kind::Identical, Kind::Opposite] {
                let half: Vec<E> = grads(t, n, kind).into_iter().map(E::of).collect();
                let wide: Vec<f32> = half.iter().map(|&x| x.wide()).collect();
                let layout = Layout::dense(t, n).unwrap();
                let hg = Flat::new(layout, &half).unwrap();
                let wg = Flat::new(layout, &wide).unwrap();
                let mut ws = vec![0.0; workspace_len(t).unwrap()];
                configs(1, &mut |make, what| {
                    let ctx = format!("T={t} N={n} {kind:?} {what}");
                    let mut out = vec![f32::NAN; n];
                    let st = make().merge_f32(&hg, &mut out, &mut ws).unwrap();
                    let mut want = vec![0.0f32; n];
                    let wst = make().merge(&wg, &mut want, &mut ws).unwrap();
                    assert_eq!(st, wst, "{ctx}");
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&out), bits(&want), "{ctx}");
                    let mut h = vec![E::of(f32::NAN); n];
                    make().merge(&hg, &mut h, &mut ws).unwrap();
                    for (c, (&y, &hc)) in out.iter().zip(&h).enumerate() {
                        let r = E::of(y);
                        if r.to_f64().to_bits() != hc.to_f64().to_bits() {
                            // Only at a midpoint: the other neighbour, as near.
                            let (y, r, hc) = (f64::from(y), r.to_f64(), hc.to_f64());
                            assert!(
                                (r - y).abs() == (hc - y).abs() && r != hc,
                                "{ctx} merged[{c}]: {hc} from f32 {y} (rounds to {r})"
                            );
                        }
                    }
                    if matches!(kind, Kind::Zero) {
                        assert!(out.iter().all(|&x| x == 0.0), "{ctx}");
                    }
                });
                // The shuffled sequential mode, from the same seed.
                let (mut r1, mut r2) = (crate::Rng::new(7), crate::Rng::new(7));
                let mut a = vec![0.0f32; n];
                let mut b = vec![0.0f32; n];
                PcGrad::new(&mut r1)
                    .merge_f32(&hg, &mut a, &mut ws)
                    .unwrap();
                PcGrad::new(&mut r2).merge(&wg, &mut b, &mut ws).unwrap();
                assert_eq!(a, b, "T={t} N={n} {kind:?} shuffled");
            }
        }
    }
}

#[test]
fn merge_f32_of_bf16_is_the_f32_merge_of_the_widened_values() {
    check::<bf16>();
}

#[cfg(not(miri))]
#[test]
fn merge_f32_of_f16_is_the_f32_merge_of_the_widened_values() {
    check::<f16>();
}

#[test]
fn merge_f32_of_f32_and_f64() {
    let (t, n) = (3, 261);
    let g32 = grads(t, n, Kind::Random);
    let g64: Vec<f64> = g32.iter().map(|&x| f64::from(x) / 3.0).collect();
    let layout = Layout::dense(t, n).unwrap();
    let mut ws = vec![0.0; workspace_len(t).unwrap()];
    let (mut a, mut b) = (vec![0.0f32; n], vec![0.0f32; n]);
    let f = Flat::new(layout, &g32).unwrap();
    PpcGrad::new().merge_f32(&f, &mut a, &mut ws).unwrap();
    PpcGrad::new().merge(&f, &mut b, &mut ws).unwrap();
    assert_eq!(a, b);
    let f = Flat::new(layout, &g64).unwrap();
    let mut d = vec![0.0f64; n];
    PpcGrad::new().merge_f32(&f, &mut a, &mut ws).unwrap();
    PpcGrad::new().merge(&f, &mut d, &mut ws).unwrap();
    let want: Vec<f32> = d.iter().map(|&x| x as f32).collect();
    assert_eq!(a, want);
}

#[test]
fn merge_f32_refuses_a_wrong_length_and_writes_nothing() {
    let (t, n) = (2, 13);
    let g: Vec<bf16> = grads(t, n, Kind::Random)
        .into_iter()
        .map(bf16::of)
        .collect();
    let f = Flat::new(Layout::dense(t, n).unwrap(), &g).unwrap();
    let mut ws = vec![0.0; workspace_len(t).unwrap()];
    let mut out = vec![5.0f32; n + 1];
    let e = PpcGrad::new().merge_f32(&f, &mut out, &mut ws);
    assert_eq!(e, Err(crate::Error::LengthMismatch));
    assert!(out.iter().all(|&x| x == 5.0));
    let mut small = vec![0.0; workspace_len(t).unwrap() - 1];
    let e = PpcGrad::new().merge_f32(&f, &mut out[..n], &mut small);
    assert_eq!(e, Err(crate::Error::WorkspaceTooSmall));
    assert!(out.iter().all(|&x| x == 5.0));
}

/// Every thread count gives the serial result (two workers need 2^20
/// elements).
#[cfg(all(feature = "parallel", not(miri)))]
#[test]
fn merge_f32_threads_equal_serial() {
    let (t, n) = (2, (1 << 19) + 37);
    for kind in [Kind::Random, Kind::Opposite] {
        let g: Vec<bf16> = grads(t, n, kind).into_iter().map(bf16::of).collect();
        let f = Flat::new(Layout::dense(t, n).unwrap(), &g).unwrap();
        let mut ws = vec![0.0; workspace_len(t).unwrap()];
        let mut serial = vec![0.0f32; n];
        configs(1, &mut |make, _| {
            make().merge_f32(&f, &mut serial, &mut ws).unwrap();
        });
        for threads in [0, 2, 3] {
            configs(threads, &mut |make, what| {
                let mut a = vec![0.0f32; n];
                let mut s = vec![0.0f32; n];
                make().merge_f32(&f, &mut a, &mut ws).unwrap();
                make().threads(1).merge_f32(&f, &mut s, &mut ws).unwrap();
                assert!(
                    a.iter().zip(&s).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{kind:?} {what} threads={threads}"
                );
            });
        }
    }
}
