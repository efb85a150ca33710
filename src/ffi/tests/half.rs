//! The `_bf16` and `_f16` flat entry points: bitwise the Rust API over the
//! same half values, every refusal of the `f32` calls with the same
//! status and no caller buffer written, and the `f32` calls' results to
//! within one rounding to the half type.

// The f16 tests do not run under Miri (the same generic bodies as bf16).
#[cfg_attr(miri, allow(unused_imports))]
use ::half::{bf16, f16};

use super::calls::flat_matches;
use super::refusals::flat_refusals;
use super::*;
use crate::Element;

#[test]
fn flat_one_call_bf16_matches_the_rust_api() {
    flat_matches::<bf16>();
}

// Under Miri (slow) the f16 calls stay out: they run the same generic
// bodies as the bf16 ones, which Miri checks; natively both run.
#[cfg(not(miri))]
#[test]
fn flat_one_call_f16_matches_the_rust_api() {
    flat_matches::<f16>();
}

#[test]
fn one_call_flat_bf16_refuses_bad_input() {
    flat_refusals::<bf16>();
}

#[cfg(not(miri))]
#[test]
fn one_call_flat_f16_refuses_bad_input() {
    flat_refusals::<f16>();
}

/// The fixture's values are multiples of 1/8 below 2 (exact in bf16 and
/// f16) and every Gram entry of N = 13 of them is exact, so the half and
/// the `f32` calls compute the same `double` value v of each output and
/// differ only in its one rounding: |x_h - v| <= u |v| (u = 2^-8 for bf16,
/// 2^-11 for f16, plus half the f16 subnormal step 2^-25) and |x_32 - v| <=
/// 2^-24 |v|, so |x_h - x_32| <= (u + 2^-23) |x_32| + 2^-25. Statistics and
/// the PRNG's advance are the same.
fn agrees_with_f32<E: CElem>(u: f64) {
    let close = |h: E, x: f32| {
        let (h, x) = (Element::to_f64(h), f64::from(x));
        (h - x).abs() <= (u + 2f64.powi(-23)) * x.abs() + 2f64.powi(-25)
    };
    for &t in TASKS {
        for &m in MODES {
            for &red in reductions(t, m) {
                let mut a = FlatFx::new(t, true, m, red);
                let mut b = FlatFx::<E>::of(t, true, m, red);
                assert_eq!(run(&mut a, FlatArgs::merge), PCGRAD_OK);
                assert_eq!(run(&mut b, FlatArgs::merge), PCGRAD_OK);
                assert_eq!(a.stats, b.stats, "T={t} {m:?}");
                assert_eq!(a.rng, b.rng);
                for (k, (&x, &h)) in a.merged.iter().zip(&b.merged).enumerate() {
                    assert!(close(h, x), "T={t} {m:?} merged[{k}]: {h:?} vs {x}");
                }
                let mut pa = FlatFx::new(t, true, m, red);
                let mut pb = FlatFx::<E>::of(t, true, m, red);
                assert_eq!(run(&mut pa, FlatArgs::project), PCGRAD_OK);
                assert_eq!(run(&mut pb, FlatArgs::project), PCGRAD_OK);
                assert_eq!(bits_of(&pb.merged), bits_of(&b.merged));
                for (k, (&x, &h)) in pa.grads.iter().zip(&pb.grads).enumerate() {
                    assert!(close(h, x), "T={t} {m:?} projected[{k}]: {h:?} vs {x}");
                }
            }
        }
    }
}

#[test]
fn flat_bf16_entry_points_agree_with_the_f32_ones() {
    agrees_with_f32::<bf16>(2f64.powi(-8));
}

#[cfg(not(miri))]
#[test]
fn flat_f16_entry_points_agree_with_the_f32_ones() {
    agrees_with_f32::<f16>(2f64.powi(-11));
}

/// The C signature's `uint16_t` buffers are the bit patterns: a call on
/// `u16` storage equals the call on the typed values.
#[test]
fn u16_buffers_are_the_bit_patterns() {
    let t = 3;
    let mut fx = FlatFx::<bf16>::of(t, false, M::Simultaneous, PCGRAD_REDUCTION_MEAN);
    assert_eq!(run(&mut fx, FlatArgs::merge), PCGRAD_OK);
    let g: Vec<u16> = grads_as::<bf16>(t, false)
        .iter()
        .map(|x| x.to_bits())
        .collect();
    let mut merged = vec![0u16; N];
    let mut ws = vec![0.0; crate::workspace_len(t).unwrap()];
    let cfg = config(M::Simultaneous, PCGRAD_REDUCTION_MEAN);
    // SAFETY: every buffer is live, aligned and of the length given; the
    // optional ones are absent (NULL, 0).
    let st = unsafe {
        pcgrad_merge_flat_bf16(
            &cfg,
            g.as_ptr(),
            g.len(),
            ptr::null(),
            0,
            ptr::null(),
            0,
            t,
            N,
            merged.as_mut_ptr(),
            N,
            ptr::null_mut(),
            ptr::null_mut(),
            0,
            ws.as_mut_ptr(),
            ws.len(),
        )
    };
    assert_eq!(st, PCGRAD_OK);
    let want: Vec<u16> = fx.merged.iter().map(|x| x.to_bits()).collect();
    assert_eq!(merged, want);
}
