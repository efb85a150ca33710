//! The size queries, the default config and the static strings.

use core::ffi::c_char;
use core::ptr;

use super::check::*;
use super::types::*;
use crate::api::workspace_len;
use crate::engine::{self};
use crate::error::{Error, Result, ERRORS, STATUS_TEXTS};

// ---------------------------------------------------------------------------
// Sizes and small helpers.

/// Writes `v` through a checked `out` pointer.
#[inline(always)]
pub(super) fn put(out: *mut usize, v: Result<usize>) -> pcgrad_status {
    status(req(out, 1).and(v).map(|v| {
        // SAFETY: non-NULL and aligned (checked by `req`).
        unsafe { ptr::write(out, v) }
    }))
}

/// Writes the doubles of workspace that `pcgrad_merge_flat` and
/// `pcgrad_project_flat` need for `tasks` tasks to `*out`:
/// 3 T^2 + 34 T + 32 (T = 2: 112, T = 4: 216, T = 8: 496, T = 16: 1344). The
/// same for every mode, reduction and N.
///
/// # Safety
///
/// `out` is NULL or points at a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_workspace_len(tasks: usize, out: *mut usize) -> pcgrad_status {
    put(out, workspace_len(tasks))
}

/// Extra doubles the per-variable entry points need beyond
/// `pcgrad_workspace_len` for `cells` = T S (task, variable) cells and S
/// variables: 2 per cell for a slice reference, one byte of mask per cell
/// (rounded up to doubles), and 2 per variable so that the overlap check
/// can sort the T S + S + 4 output spans (two words each) in place.
pub(super) fn vars_extra(cells: usize, vars: usize) -> Result<usize> {
    cells
        .checked_mul(2)
        .and_then(|x| x.checked_add(cells.div_ceil(8)))
        .and_then(|x| x.checked_add(vars.checked_mul(2)?))
        .ok_or(Error::Overflow)
}

/// The workspace of the per-variable calls, in doubles.
pub(super) fn workspace_len_vars(tasks: usize, vars: usize) -> Result<usize> {
    let cells = tasks.checked_mul(vars).ok_or(Error::Overflow)?;
    workspace_len(tasks)?
        .checked_add(vars_extra(cells, vars)?)
        .ok_or(Error::Overflow)
}

/// Writes the doubles of workspace that `pcgrad_merge_vars` and
/// `pcgrad_project_vars` need for `tasks` tasks and `vars` variables to
/// `*out`: `pcgrad_workspace_len(T)` + 2 T S + ceil(T S / 8) + 2 S. (The
/// 2 S term is new in this release: the overlap check sorts the output
/// buffers in the workspace, O(T S log(T S)) instead of O((T S)^2).)
///
/// # Safety
///
/// `out` is NULL or points at a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_workspace_len_vars(
    tasks: usize,
    vars: usize,
    out: *mut usize,
) -> pcgrad_status {
    put(out, workspace_len_vars(tasks, vars))
}

/// Writes the doubles that `pcgrad_gram_flat` needs in its `gram` buffer to
/// `*out`: 2 T^2 (the T x T Gram matrix, then scratch).
///
/// # Safety
///
/// `out` is NULL or points at a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_gram_len(tasks: usize, out: *mut usize) -> pcgrad_status {
    put(
        out,
        if tasks == 0 {
            Err(Error::NoTasks)
        } else {
            engine::gram_workspace_len(tasks)
        },
    )
}

/// Writes the doubles of the coefficient buffer of `pcgrad_coefficients`
/// to `*out`: T^2 + 2 T.
///
/// # Safety
///
/// `out` is NULL or points at a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_coefficients_len(tasks: usize, out: *mut usize) -> pcgrad_status {
    put(
        out,
        if tasks == 0 {
            Err(Error::NoTasks)
        } else {
            engine::coefficients_len(tasks)
        },
    )
}

/// Writes the doubles of the `tile` workspace of the apply phase to `*out`:
/// 32 (T + 1).
///
/// # Safety
///
/// `out` is NULL or points at a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_tile_len(tasks: usize, out: *mut usize) -> pcgrad_status {
    put(
        out,
        if tasks == 0 {
            Err(Error::NoTasks)
        } else {
            engine::tile_len(tasks)
        },
    )
}

/// Writes the default configuration to `*out` (the same as a zeroed
/// struct): sequential mode, fixed order, mean reduction, no finiteness
/// check, Gram matrix diagnostic, all cores, no table, no PRNG.
///
/// # Safety
///
/// `out` is NULL or points at a writable `pcgrad_config`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_config_default(out: *mut pcgrad_config) -> pcgrad_status {
    status(req(out, 1).map(|()| {
        // SAFETY: non-NULL and aligned (checked by `req`).
        unsafe {
            ptr::write(
                out,
                pcgrad_config {
                    mode: PCGRAD_MODE_SEQUENTIAL,
                    order: PCGRAD_ORDER_FIXED,
                    reduction: PCGRAD_REDUCTION_MEAN,
                    check_finite: 0,
                    matrix: PCGRAD_MATRIX_GRAM,
                    threads: 0,
                    order_table: ptr::null(),
                    order_table_len: 0,
                    rng: ptr::null_mut(),
                },
            )
        }
    }))
}

/// A static, NUL-terminated description of a status code ("unknown status"
/// for a value that is not one). Never NULL.
#[no_mangle]
pub extern "C" fn pcgrad_status_str(status: i32) -> *const c_char {
    // Text k of `STATUS_TEXTS`: -status for a code, else the last one.
    let mut skip = if (-(ERRORS.len() as i32)..=0).contains(&status) {
        status.unsigned_abs() as usize
    } else {
        ERRORS.len() + 1
    };
    let mut at = 0;
    for (i, &b) in STATUS_TEXTS.iter().enumerate() {
        if skip == 0 {
            break;
        }
        if b == 0 {
            skip -= 1;
            at = i + 1;
        }
    }
    STATUS_TEXTS.as_ptr().wrapping_add(at).cast()
}

/// The library version as a static NUL-terminated string, equal to
/// `PCGRAD_VERSION_STRING` of the header it was built with.
#[no_mangle]
pub extern "C" fn pcgrad_version() -> *const c_char {
    const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    V.as_ptr().cast()
}
