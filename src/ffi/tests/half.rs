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

/// The arguments of a `pcgrad_merge_flat_{bf16,f16}_f32` call, `grads` in
/// a 4-byte-aligned buffer (so that an `f32` view of it is aligned).
struct F32Call {
    cfg: pcgrad_config,
    store: Vec<u32>,
    grads: *const u16,
    grads_len: usize,
    tasks: usize,
    merged: *mut f32,
    merged_len: usize,
    stats: pcgrad_stats,
    ws: Vec<f64>,
    ws_len: usize,
}

type F32Entry = unsafe extern "C" fn(
    *const pcgrad_config,
    *const u16,
    usize,
    *const usize,
    usize,
    *const u8,
    usize,
    usize,
    usize,
    *mut f32,
    usize,
    *mut pcgrad_stats,
    *mut f64,
    usize,
    *mut f64,
    usize,
) -> pcgrad_status;

impl F32Call {
    fn new<E: CElem>(t: usize) -> Self {
        let bits: Vec<u16> = grads_as::<E>(t, false)
            .iter()
            .map(|&x| u16::from_ne_bytes(bytes_of(x)))
            .collect();
        let mut store = vec![0u32; (t * N).div_ceil(2)];
        for (i, b) in bits.iter().enumerate() {
            let sh = if cfg!(target_endian = "little") {
                16 * (i % 2)
            } else {
                16 * (1 - i % 2)
            };
            store[i / 2] |= u32::from(*b) << sh;
        }
        let grads = store.as_ptr().cast::<u16>();
        let ws = vec![0.0; crate::workspace_len(t).unwrap()];
        F32Call {
            cfg: config(M::Simultaneous, PCGRAD_REDUCTION_MEAN),
            grads,
            grads_len: t * N,
            store,
            tasks: t,
            merged: ptr::null_mut(),
            merged_len: N,
            stats: pcgrad_stats::default(),
            ws_len: ws.len(),
            ws,
        }
    }

    /// Runs `f` with `merged` pointing at `out` unless a case set it.
    fn run(&mut self, f: F32Entry, out: &mut [f32]) -> pcgrad_status {
        let merged = if self.merged.is_null() {
            out.as_mut_ptr()
        } else {
            self.merged
        };
        let ws = if self.ws_len == usize::MAX {
            ptr::null_mut()
        } else {
            self.ws.as_mut_ptr()
        };
        let wl = if self.ws_len == usize::MAX {
            self.ws.len()
        } else {
            self.ws_len
        };
        // SAFETY: every buffer is live, aligned and of the length given,
        // except where a refusal case made one bad on purpose (the call
        // then refuses before it reads or writes it).
        unsafe {
            f(
                &self.cfg,
                self.grads,
                self.grads_len,
                ptr::null(),
                0,
                ptr::null(),
                0,
                self.tasks,
                N,
                merged,
                self.merged_len,
                &mut self.stats,
                ptr::null_mut(),
                0,
                ws,
                wl,
            )
        }
    }
}

fn bytes_of<E: CElem>(x: E) -> [u8; 2] {
    // SAFETY: the half types are two bytes (repr(transparent) u16).
    unsafe { core::mem::transmute_copy(&x) }
}

/// The `_f32` calls: bitwise `PcGrad::merge_f32` over the same values, and
/// every refusal with its status and no caller buffer written.
fn f32_output<E: CElem>(f: F32Entry) {
    let t = 3;
    let half = grads_as::<E>(t, false);
    let flat = crate::Flat::new(crate::Layout::dense(t, N).unwrap(), &half).unwrap();
    let mut want = vec![0.0f32; N];
    let mut ws = vec![0.0; crate::workspace_len(t).unwrap()];
    let wst = crate::PpcGrad::new()
        .merge_f32(&flat, &mut want, &mut ws)
        .unwrap();
    let mut c = F32Call::new::<E>(t);
    let mut out = vec![0.0f32; N];
    assert_eq!(c.run(f, &mut out), PCGRAD_OK);
    assert_eq!(bits_of(&out), bits_of(&want));
    assert_eq!(
        c.stats.conflicting_pairs as u64,
        wst.conflicting_pairs as u64
    );
    assert_eq!(c.stats.projections as u64, wst.projections as u64);

    type Case = (pcgrad_status, &'static str, fn(&mut F32Call));
    let cases: [Case; 9] = [
        (PCGRAD_ERROR_NULL_POINTER, "config NULL", |_| {}),
        (PCGRAD_ERROR_NULL_POINTER, "grads NULL", |c| {
            c.grads = ptr::null()
        }),
        (PCGRAD_ERROR_NULL_POINTER, "workspace NULL", |c| {
            c.ws_len = usize::MAX
        }),
        (PCGRAD_ERROR_MISALIGNED, "merged misaligned", |c| {
            c.merged = c.store.as_mut_ptr().cast::<u8>().wrapping_add(2).cast()
        }),
        (PCGRAD_ERROR_OVERLAP, "merged over grads", |c| {
            c.merged = c.store.as_mut_ptr().cast();
        }),
        (PCGRAD_ERROR_LENGTH_MISMATCH, "merged_len", |c| {
            c.merged_len = N - 1
        }),
        (PCGRAD_ERROR_WORKSPACE_TOO_SMALL, "workspace_len", |c| {
            c.ws_len -= 1
        }),
        (PCGRAD_ERROR_INVALID_ENUM, "mode", |c| c.cfg.mode = 99),
        (PCGRAD_ERROR_INVALID_ENUM, "reduction", |c| {
            c.cfg.reduction = 99
        }),
    ];
    for (i, (want_st, what, make)) in cases.iter().enumerate() {
        let mut c = F32Call::new::<E>(t);
        make(&mut c);
        let store = c.store.clone();
        let ws = c.ws.clone();
        let mut out = vec![7.0f32; N];
        let st = if i == 0 {
            // SAFETY: as `run`, with `config` NULL (refused first).
            unsafe {
                f(
                    ptr::null(),
                    c.grads,
                    c.grads_len,
                    ptr::null(),
                    0,
                    ptr::null(),
                    0,
                    t,
                    N,
                    out.as_mut_ptr(),
                    N,
                    &mut c.stats,
                    ptr::null_mut(),
                    0,
                    c.ws.as_mut_ptr(),
                    c.ws.len(),
                )
            }
        } else {
            c.run(f, &mut out)
        };
        assert_eq!(st, *want_st, "{what}");
        assert!(out.iter().all(|&x| x == 7.0), "{what}: merged written");
        assert_eq!(c.store, store, "{what}: grads written");
        assert_eq!(bits_of(&c.ws), bits_of(&ws), "{what}: workspace written");
        assert_eq!(c.stats, pcgrad_stats::default(), "{what}: stats written");
    }
}

#[test]
fn flat_bf16_f32_output_matches_the_rust_api_and_refuses_bad_input() {
    f32_output::<bf16>(pcgrad_merge_flat_bf16_f32);
}

#[cfg(not(miri))]
#[test]
fn flat_f16_f32_output_matches_the_rust_api_and_refuses_bad_input() {
    f32_output::<f16>(pcgrad_merge_flat_f16_f32);
}
