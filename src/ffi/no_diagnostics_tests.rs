//! The C ABI built without the `diagnostics` feature (as the bare-metal
//! library is): a call given a diagnostic matrix is refused with
//! `PCGRAD_ERROR_UNSUPPORTED` and writes nothing, after every check that
//! comes before it; without a matrix the call runs. (The full C ABI
//! suite, `tests/`, needs the matrix and runs with the feature.)
//!
//! `cargo test -p pcgrad --no-default-features --features std,capi --lib`

extern crate std;

use core::ptr;
use std::vec;
use std::vec::Vec;

use super::*;
use pcgrad_status::*;

const T: usize = 3;
const N: usize = 5;

struct Buffers {
    cfg: pcgrad_config,
    grads: Vec<f32>,
    merged: Vec<f32>,
    stats: pcgrad_stats,
    matrix: Vec<f64>,
    ws: Vec<f64>,
}

fn buffers() -> Buffers {
    let mut cfg: pcgrad_config = unsafe_zeroed_config();
    // SAFETY: a live, aligned, writable config.
    assert_eq!(unsafe { pcgrad_config_default(&mut cfg) }, PCGRAD_OK);
    let mut len = 0;
    // SAFETY: a live, aligned, writable size_t.
    assert_eq!(unsafe { pcgrad_workspace_len(T, &mut len) }, PCGRAD_OK);
    Buffers {
        cfg,
        // Tasks 0 and 1 conflict.
        grads: (0..T * N)
            .map(|k| {
                if k / N == 1 {
                    -1.0
                } else {
                    (k % N) as f32 + 1.0
                }
            })
            .collect(),
        merged: vec![-7.0; N],
        stats: pcgrad_stats {
            conflicting_pairs: 99,
            projections: 99,
        },
        matrix: vec![-9.0; T * T],
        ws: vec![0.0; len],
    }
}

fn unsafe_zeroed_config() -> pcgrad_config {
    // SAFETY: integers and raw pointers only: all-zero bits are valid.
    unsafe { core::mem::zeroed() }
}

/// `pcgrad_merge_flat` (or `pcgrad_project_flat`) on `b` with `matrix_len`
/// doubles of matrix at `matrix`.
fn call(b: &mut Buffers, project: bool, matrix: *mut f64, matrix_len: usize) -> pcgrad_status {
    macro_rules! with {
        ($f:ident, $grads:expr) => {
            // SAFETY: every pointer is live for the length given (the
            // matrix is the test's to choose: its checks come before any
            // read or write).
            unsafe {
                $f(
                    &b.cfg,
                    $grads,
                    b.grads.len(),
                    ptr::null(),
                    0,
                    ptr::null(),
                    0,
                    T,
                    N,
                    b.merged.as_mut_ptr(),
                    b.merged.len(),
                    &mut b.stats,
                    matrix,
                    matrix_len,
                    b.ws.as_mut_ptr(),
                    b.ws.len(),
                )
            }
        };
    }
    if project {
        with!(pcgrad_project_flat, b.grads.as_mut_ptr())
    } else {
        with!(pcgrad_merge_flat, b.grads.as_ptr())
    }
}

#[test]
fn a_matrix_is_refused_and_nothing_is_written() {
    for project in [false, true] {
        for kind in [PCGRAD_MATRIX_GRAM, PCGRAD_MATRIX_COSINE] {
            let mut b = buffers();
            b.cfg.matrix = kind;
            let grads = b.grads.clone();
            let m = b.matrix.as_mut_ptr();
            assert_eq!(call(&mut b, project, m, T * T), PCGRAD_ERROR_UNSUPPORTED);
            assert_eq!(b.grads, grads);
            assert_eq!(b.merged, vec![-7.0; N]);
            assert_eq!((b.stats.conflicting_pairs, b.stats.projections), (99, 99));
            assert_eq!(b.matrix, vec![-9.0; T * T]);
        }
    }
}

#[test]
fn the_matrix_checks_come_first() {
    let mut b = buffers();
    let m = b.matrix.as_mut_ptr();
    assert_eq!(
        call(&mut b, false, ptr::null_mut(), T * T),
        PCGRAD_ERROR_NULL_POINTER
    );
    assert_eq!(
        call(&mut b, false, m, T * T - 1),
        PCGRAD_ERROR_LENGTH_MISMATCH
    );
    let odd = m.cast::<u8>().wrapping_add(1).cast::<f64>();
    assert_eq!(call(&mut b, false, odd, T * T), PCGRAD_ERROR_MISALIGNED);
    // The config's enum is still checked.
    b.cfg.matrix = 2;
    assert_eq!(call(&mut b, false, m, T * T), PCGRAD_ERROR_INVALID_ENUM);
    assert_eq!(
        call(&mut b, false, ptr::null_mut(), 0),
        PCGRAD_ERROR_INVALID_ENUM
    );
    assert_eq!(b.merged, vec![-7.0; N]);
}

#[test]
fn without_a_matrix_the_call_runs() {
    for project in [false, true] {
        let mut b = buffers();
        // Length 0: absent, whatever the pointer.
        let m = b.matrix.as_mut_ptr();
        assert_eq!(call(&mut b, project, m, 0), PCGRAD_OK);
        assert_eq!(b.matrix, vec![-9.0; T * T]);
        assert_eq!(b.stats.conflicting_pairs, 2);
        assert!(b.merged.iter().all(|x| x.is_finite() && *x != -7.0));
        // SAFETY: a static NUL-terminated string.
        let s = unsafe {
            core::ffi::CStr::from_ptr(pcgrad_status_str(PCGRAD_ERROR_UNSUPPORTED as i32))
        };
        assert_eq!(s.to_str().unwrap(), crate::Error::Unsupported.as_str());
    }
}
