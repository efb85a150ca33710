//! The three phases, for sharding N across threads or machines.

use core::ptr;

use super::check::*;
use super::sizes::workspace_len_vars;
use super::types::*;
use super::vars::{vars_ws, vars_ws_mut};
use crate::engine::{self, coefficients, Coefficients};
use crate::error::{Error, Result};
use crate::kernels::Element;
use crate::kernels::Kernels;
use crate::layout::{PerVariable, PerVariableMut, SegPos};

// ---------------------------------------------------------------------------
// The three phases, for sharding N across threads or machines (flat
// buffers). Each shard: zero a gram buffer, `pcgrad_gram_flat` over its
// columns, all-reduce the T x T partials (`pcgrad_gram_combine` or
// MPI_Allreduce), `pcgrad_coefficients` on the sum (same config and PRNG
// state on every shard), then `pcgrad_apply_merged_flat` or
// `pcgrad_apply_projected_flat` over its columns.

/// Phase 1: adds the Gram contribution of the columns `lo..hi` of a
/// row-major T x N buffer into `gram[0 .. T*T]` (row-major, symmetric;
/// start from zeros). `gram_len` is at least `pcgrad_gram_len(T)`; the part
/// after T * T is scratch. `segments` and `has_grad` as in
/// `pcgrad_merge_flat`.
///
/// Bitwise reproducibility: the partial sums are kept per aligned chunk of
/// 8192 columns (`pcgrad::engine::CHUNK`), so shards whose boundaries are
/// multiples of 8192, each started from zeros and combined in shard order,
/// give the Gram matrix of one call bit for bit; the apply phases then give
/// the one call's outputs bit for bit over any column split.
///
/// # Safety
///
/// Every non-NULL pointer points at the number of elements its length
/// says, valid for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_gram_flat(
    grads: *const f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    lo: usize,
    hi: usize,
    gram: *mut f64,
    gram_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        gram_flat(
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
            lo,
            hi,
            gram,
            gram_len,
        )
    }
}

/// `pcgrad_gram_flat` over `double` gradients (and `double` merged output, where
/// there is one): the same arguments, checks, statuses and overlap rules,
/// the buffers used in place, never converted.
///
/// # Safety
///
/// As `pcgrad_gram_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_gram_flat_f64(
    grads: *const f64,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    lo: usize,
    hi: usize,
    gram: *mut f64,
    gram_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        gram_flat(
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
            lo,
            hi,
            gram,
            gram_len,
        )
    }
}

/// The one body of `pcgrad_gram_flat` and `pcgrad_gram_flat_f64`.
///
/// # Safety
///
/// As `pcgrad_gram_flat`.
#[allow(clippy::too_many_arguments)]
unsafe fn gram_flat<F: Element>(
    grads: *const F,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    lo: usize,
    hi: usize,
    gram: *mut f64,
    gram_len: usize,
) -> pcgrad_status {
    status((|| {
        let f = FlatArgs::check(
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
        )?;
        check_workspace(gram, gram_len, engine::gram_workspace_len(tasks)?)?;
        let [s0, s1] = f.shape();
        disjoint_fixed(&[Span::of(gram, gram_len)], &[f.grads(), s0, s1])?;
        // SAFETY: every buffer passed `req`/`opt`; the output is disjoint
        // from the inputs.
        unsafe { engine::accumulate_gram(&f.flat()?, lo, hi, view_mut(gram, gram_len)) }
    })())
}

/// Combines partial Gram matrices: `gram[k] += partial[k]` for the first
/// T * T entries (both lengths at least T * T). The order of combination
/// is the caller's: add the partials in a fixed order for bitwise
/// reproducible results.
///
/// # Safety
///
/// As `pcgrad_gram_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_gram_combine(
    partial: *const f64,
    partial_len: usize,
    tasks: usize,
    gram: *mut f64,
    gram_len: usize,
) -> pcgrad_status {
    status((|| {
        req(partial, partial_len)?;
        req(gram, gram_len)?;
        if tasks == 0 {
            return Err(Error::NoTasks);
        }
        let tt = tasks.checked_mul(tasks).ok_or(Error::Overflow)?;
        if partial_len < tt || gram_len < tt {
            return Err(Error::LengthMismatch);
        }
        disjoint_fixed(
            &[Span::of(gram, gram_len)],
            &[Span::of(partial, partial_len)],
        )?;
        // SAFETY: both passed `req`; they are disjoint.
        let (p, g) = unsafe { (view(partial, tt), view_mut(gram, tt)) };
        for (g, &p) in g.iter_mut().zip(p) {
            *g += p;
        }
        Ok(())
    })())
}

/// Phase 2: the coefficients from a full symmetric T x T Gram matrix
/// (`gram_len` at least T * T) into `coef` (at least
/// `pcgrad_coefficients_len(T)` doubles), following `config` (mode, order,
/// PRNG, finiteness check; a shuffled order advances the PRNG).
/// `stats` is optional. With `config->check_finite` set, every one of the
/// T * T entries is checked (`PCGRAD_ERROR_NON_FINITE`), not only the
/// diagonal: a Gram matrix from the caller (after an all-reduce, say) need
/// not be consistent.
///
/// # Safety
///
/// As `pcgrad_gram_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_coefficients(
    config: *const pcgrad_config,
    gram: *const f64,
    gram_len: usize,
    tasks: usize,
    stats: *mut pcgrad_stats,
    coef: *mut f64,
    coef_len: usize,
) -> pcgrad_status {
    status((|| {
        let cfg = Config::read(config, tasks)?;
        req(gram, gram_len)?;
        let diag = Diag::check(stats, ptr::null_mut(), 0, tasks)?;
        if tasks == 0 {
            return Err(Error::NoTasks);
        }
        let tt = tasks.checked_mul(tasks).ok_or(Error::Overflow)?;
        if gram_len < tt {
            return Err(Error::LengthMismatch);
        }
        check_workspace(coef, coef_len, engine::coefficients_len(tasks)?)?;
        let ([d0, _], [c0, c1]) = (diag.spans(), cfg.inputs(config));
        let outs = [Span::of(coef, coef_len), d0, cfg.output()];
        disjoint_fixed(&outs, &[c0, c1, Span::of(gram, gram_len)])?;
        // SAFETY: every buffer passed `req`; the outputs are disjoint from
        // each other and from the inputs.
        unsafe {
            let g = view(gram, gram_len);
            // Every entry the coefficients read (the whole T x T matrix):
            // a caller's Gram (after an all-reduce, say) need not be
            // consistent, so its diagonal proves nothing about the rest.
            if cfg.check_finite && g[..tt].iter().any(|x| !x.is_finite()) {
                return Err(Error::NonFinite);
            }
            let mut mode = cfg.mode();
            let (_, st) = coefficients(g, tasks, &mut mode, view_mut(coef, coef_len))?;
            diag.write(&cfg, tasks, g, st)
        }
    })())
}

/// Phase 3, merged only: `merged[n - lo]` for n in `lo..hi` (`merged_len`
/// = hi - lo) from the coefficients of `pcgrad_coefficients` (`coef`,
/// `coef_len` at least `pcgrad_coefficients_len(T)`), with `reduction` a
/// `PCGRAD_REDUCTION_*` value. `tile` holds at least `pcgrad_tile_len(T)`
/// doubles of scratch.
///
/// # Safety
///
/// As `pcgrad_gram_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_apply_merged_flat(
    grads: *const f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    coef: *const f64,
    coef_len: usize,
    tasks: usize,
    dim: usize,
    reduction: u32,
    lo: usize,
    hi: usize,
    merged: *mut f32,
    merged_len: usize,
    tile: *mut f64,
    tile_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        apply_merged_flat(
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            coef,
            coef_len,
            tasks,
            dim,
            reduction,
            lo,
            hi,
            merged,
            merged_len,
            tile,
            tile_len,
        )
    }
}

/// `pcgrad_apply_merged_flat` over `double` gradients (and `double` merged output, where
/// there is one): the same arguments, checks, statuses and overlap rules,
/// the buffers used in place, never converted.
///
/// # Safety
///
/// As `pcgrad_gram_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_apply_merged_flat_f64(
    grads: *const f64,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    coef: *const f64,
    coef_len: usize,
    tasks: usize,
    dim: usize,
    reduction: u32,
    lo: usize,
    hi: usize,
    merged: *mut f64,
    merged_len: usize,
    tile: *mut f64,
    tile_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        apply_merged_flat(
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            coef,
            coef_len,
            tasks,
            dim,
            reduction,
            lo,
            hi,
            merged,
            merged_len,
            tile,
            tile_len,
        )
    }
}

/// The one body of `pcgrad_apply_merged_flat` and `pcgrad_apply_merged_flat_f64`.
///
/// # Safety
///
/// As `pcgrad_gram_flat`.
#[allow(clippy::too_many_arguments)]
unsafe fn apply_merged_flat<F: Element>(
    grads: *const F,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    coef: *const f64,
    coef_len: usize,
    tasks: usize,
    dim: usize,
    reduction: u32,
    lo: usize,
    hi: usize,
    merged: *mut F,
    merged_len: usize,
    tile: *mut f64,
    tile_len: usize,
) -> pcgrad_status {
    status((|| {
        let f = FlatArgs::check(
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
        )?;
        let red = reduction_of(reduction)?;
        check_workspace(coef.cast_mut(), coef_len, engine::coefficients_len(tasks)?)?;
        req(merged, merged_len)?;
        check_workspace(tile, tile_len, engine::tile_len(tasks)?)?;
        let [s0, s1] = f.shape();
        let outs = [Span::of(merged, merged_len), Span::of(tile, tile_len)];
        disjoint_fixed(&outs, &[f.grads(), s0, s1, Span::of(coef, coef_len)])?;
        // SAFETY: every buffer passed `req`/`opt`; the outputs are disjoint
        // from each other and from the inputs.
        unsafe {
            let flat = f.flat()?;
            let c = Coefficients::from_workspace(tasks, view(coef, coef_len))?;
            let (m, t) = (view_mut(merged, merged_len), view_mut(tile, tile_len));
            engine::apply_merged(&flat, &c, red, lo, hi, m, t)
        }
    })())
}

/// Phase 3 in place: writes the projected gradients over columns `lo..hi`
/// of the row-major T x N buffer and, when `merged` is not NULL, the merged
/// gradient (`merged_len` = hi - lo). Arguments as
/// `pcgrad_apply_merged_flat`.
///
/// # Safety
///
/// As `pcgrad_gram_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_apply_projected_flat(
    grads: *mut f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    coef: *const f64,
    coef_len: usize,
    tasks: usize,
    dim: usize,
    reduction: u32,
    lo: usize,
    hi: usize,
    merged: *mut f32,
    merged_len: usize,
    tile: *mut f64,
    tile_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        apply_projected_flat(
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            coef,
            coef_len,
            tasks,
            dim,
            reduction,
            lo,
            hi,
            merged,
            merged_len,
            tile,
            tile_len,
        )
    }
}

/// `pcgrad_apply_projected_flat` over `double` gradients (and `double` merged output, where
/// there is one): the same arguments, checks, statuses and overlap rules,
/// the buffers used in place, never converted.
///
/// # Safety
///
/// As `pcgrad_gram_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_apply_projected_flat_f64(
    grads: *mut f64,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    coef: *const f64,
    coef_len: usize,
    tasks: usize,
    dim: usize,
    reduction: u32,
    lo: usize,
    hi: usize,
    merged: *mut f64,
    merged_len: usize,
    tile: *mut f64,
    tile_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        apply_projected_flat(
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            coef,
            coef_len,
            tasks,
            dim,
            reduction,
            lo,
            hi,
            merged,
            merged_len,
            tile,
            tile_len,
        )
    }
}

/// The one body of `pcgrad_apply_projected_flat` and `pcgrad_apply_projected_flat_f64`.
///
/// # Safety
///
/// As `pcgrad_gram_flat`.
#[allow(clippy::too_many_arguments)]
unsafe fn apply_projected_flat<F: Element>(
    grads: *mut F,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    coef: *const f64,
    coef_len: usize,
    tasks: usize,
    dim: usize,
    reduction: u32,
    lo: usize,
    hi: usize,
    merged: *mut F,
    merged_len: usize,
    tile: *mut f64,
    tile_len: usize,
) -> pcgrad_status {
    status((|| {
        let f = FlatArgs::check(
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
        )?;
        let red = reduction_of(reduction)?;
        check_workspace(coef.cast_mut(), coef_len, engine::coefficients_len(tasks)?)?;
        let has_merged = opt(merged, merged_len)?;
        check_workspace(tile, tile_len, engine::tile_len(tasks)?)?;
        let [s0, s1] = f.shape();
        let outs = [
            f.grads(),
            Span::of(merged, merged_len),
            Span::of(tile, tile_len),
        ];
        disjoint_fixed(&outs, &[s0, s1, Span::of(coef, coef_len)])?;
        // SAFETY: every buffer passed `req`/`opt`; the outputs are disjoint
        // from each other and from the inputs.
        unsafe {
            let mut g = f.flat_mut()?;
            let c = Coefficients::from_workspace(tasks, view(coef, coef_len))?;
            let m = if has_merged {
                Some(view_mut(merged, merged_len))
            } else {
                None
            };
            engine::apply_projected(&mut g, &c, red, lo, hi, m, view_mut(tile, tile_len))
        }
    })())
}

// ---------------------------------------------------------------------------
// The three phases over per-variable buffers, sharded by ranges of whole
// variables (layers): `pcgrad_gram_vars`, then `pcgrad_coefficients` as for
// flat buffers, then `pcgrad_apply_merged_vars` or
// `pcgrad_apply_projected_vars`.

/// Phase 1 over per-variable buffers: adds the Gram contribution of the
/// variables `var_lo..var_hi` into `gram[0 .. T*T]` (start from zeros;
/// `gram_len` at least `pcgrad_gram_len(T)`, the part after T * T is
/// scratch). `grads`, `segments` and `tasks` are those of
/// `pcgrad_merge_vars`: the whole model's T x S table, in which only the
/// cells of the variables `var_lo..var_hi` are read (the others may be
/// NULL), so a runtime with one buffer per parameter tensor shards by
/// layers: each shard passes its own variables' buffers, all-reduces the
/// partial Grams, and calls `pcgrad_coefficients` and
/// `pcgrad_apply_merged_vars` (or `pcgrad_apply_projected_vars`) on the
/// same range. `workspace`: at least `pcgrad_workspace_len_vars(T, S)`
/// doubles of scratch.
///
/// Bitwise reproducibility as `pcgrad_gram_flat`, with the columns of the
/// variables laid end to end: shards whose first columns (the sum of the
/// lengths before `var_lo`) are multiples of 8192 give the Gram matrix of
/// one `pcgrad_merge_vars` call bit for bit; otherwise it agrees within
/// rounding. `var_lo > var_hi` or `var_hi > S` is
/// `PCGRAD_ERROR_INVALID_RANGE`.
///
/// # Safety
///
/// Every non-NULL pointer points at the number of elements its length (or
/// its variable's length) says, valid for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_gram_vars(
    grads: *const *const f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
    var_lo: usize,
    var_hi: usize,
    gram: *mut f64,
    gram_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        gram_vars(
            grads,
            grads_len,
            segments,
            segments_len,
            tasks,
            var_lo,
            var_hi,
            gram,
            gram_len,
            workspace,
            workspace_len,
        )
    }
}

/// `pcgrad_gram_vars` over `double` gradients and merged buffers: the same
/// arguments, checks, statuses and overlap rules, the buffers used in place.
///
/// # Safety
///
/// As `pcgrad_gram_vars`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_gram_vars_f64(
    grads: *const *const f64,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
    var_lo: usize,
    var_hi: usize,
    gram: *mut f64,
    gram_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        gram_vars(
            grads,
            grads_len,
            segments,
            segments_len,
            tasks,
            var_lo,
            var_hi,
            gram,
            gram_len,
            workspace,
            workspace_len,
        )
    }
}

/// The columns `lo..hi` of the variables `var_lo..var_hi` laid end to end.
fn var_columns(segs: &[usize], var_lo: usize, var_hi: usize) -> Result<(usize, usize)> {
    if var_lo > var_hi || var_hi > segs.len() {
        return Err(Error::InvalidRange);
    }
    // No overflow: `VarsArgs::check` summed every length.
    let lo = segs[..var_lo].iter().sum::<usize>();
    Ok((lo, lo + segs[var_lo..var_hi].iter().sum::<usize>()))
}

/// The one body of `pcgrad_gram_vars` and `pcgrad_gram_vars_f64`.
///
/// # Safety
///
/// As `pcgrad_gram_vars`.
#[allow(clippy::too_many_arguments)]
unsafe fn gram_vars<F: Element>(
    grads: *const *const F,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
    var_lo: usize,
    var_hi: usize,
    gram: *mut f64,
    gram_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    status((|| {
        // SAFETY: the caller promises the table lengths.
        let g = unsafe { VarsArgs::check(grads, grads_len, segments, segments_len, tasks)? };
        let (lo, hi) = var_columns(g.segs, var_lo, var_hi)?;
        check_workspace(gram, gram_len, engine::gram_workspace_len(tasks)?)?;
        let s = g.segs.len();
        check_workspace(workspace, workspace_len, workspace_len_vars(tasks, s)?)?;
        let mut outs = [Span::of(gram, gram_len), Span::of(workspace, workspace_len)];
        disjoint(&mut outs, &mut g.tables().into_iter().chain(g.buffers()))?;
        // SAFETY: every buffer passed `req` for its length; the two
        // outputs are disjoint from each other and from every input.
        unsafe {
            let (_, tab, m) = vars_ws(workspace, &g, 0);
            let pg = PerVariable::new(tasks, g.segs, &*tab, m)?;
            engine::accumulate_gram(&pg, lo, hi, view_mut(gram, gram_len))
        }
    })())
}

/// Phase 3 over per-variable buffers, merged only: writes the merged
/// gradient of each variable `var_lo + k` of `var_lo..var_hi` into
/// `merged[k]` (`merged_len` = `var_hi - var_lo` pointers, none NULL) from
/// the coefficients of `pcgrad_coefficients` (`coef`, `coef_len` at least
/// `pcgrad_coefficients_len(T)`), `reduction` a `PCGRAD_REDUCTION_*`
/// value. Other arguments as `pcgrad_gram_vars`. The outputs are those of
/// `pcgrad_merge_vars` bit for bit, over any split into ranges.
///
/// # Safety
///
/// As `pcgrad_gram_vars`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_apply_merged_vars(
    grads: *const *const f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    coef: *const f64,
    coef_len: usize,
    tasks: usize,
    reduction: u32,
    var_lo: usize,
    var_hi: usize,
    merged: *const *mut f32,
    merged_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        apply_merged_vars(
            grads,
            grads_len,
            segments,
            segments_len,
            coef,
            coef_len,
            tasks,
            reduction,
            var_lo,
            var_hi,
            merged,
            merged_len,
            workspace,
            workspace_len,
        )
    }
}

/// `pcgrad_apply_merged_vars` over `double` gradients and merged buffers: the same
/// arguments, checks, statuses and overlap rules, the buffers used in place.
///
/// # Safety
///
/// As `pcgrad_gram_vars`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_apply_merged_vars_f64(
    grads: *const *const f64,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    coef: *const f64,
    coef_len: usize,
    tasks: usize,
    reduction: u32,
    var_lo: usize,
    var_hi: usize,
    merged: *const *mut f64,
    merged_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        apply_merged_vars(
            grads,
            grads_len,
            segments,
            segments_len,
            coef,
            coef_len,
            tasks,
            reduction,
            var_lo,
            var_hi,
            merged,
            merged_len,
            workspace,
            workspace_len,
        )
    }
}

/// The one body of `pcgrad_apply_merged_vars` and
/// `pcgrad_apply_merged_vars_f64`.
///
/// # Safety
///
/// As `pcgrad_gram_vars`.
#[allow(clippy::too_many_arguments)]
unsafe fn apply_merged_vars<F: Element>(
    grads: *const *const F,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    coef: *const f64,
    coef_len: usize,
    tasks: usize,
    reduction: u32,
    var_lo: usize,
    var_hi: usize,
    merged: *const *mut F,
    merged_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    status((|| {
        // SAFETY: the caller promises the table lengths.
        let g = unsafe { VarsArgs::check(grads, grads_len, segments, segments_len, tasks)? };
        let (mut lo, _) = var_columns(g.segs, var_lo, var_hi)?;
        let red = reduction_of(reduction)?;
        check_workspace(coef.cast_mut(), coef_len, engine::coefficients_len(tasks)?)?;
        req(merged, merged_len)?;
        let segs = &g.segs[var_lo..var_hi];
        if merged_len != segs.len() {
            return Err(Error::LengthMismatch);
        }
        // SAFETY: `merged` passed `req` for `merged_len` pointers.
        let outs_ptrs = unsafe { outs_table(merged, merged_len, segs)? };
        let s = g.segs.len();
        check_workspace(workspace, workspace_len, workspace_len_vars(tasks, s)?)?;
        let [t0, t1] = g.tables();
        let fixed_ins = [
            t0,
            t1,
            Span::of(coef, coef_len),
            Span::of(merged, merged_len),
        ];
        let ws = Span::of(workspace, workspace_len);
        // The workspace holds the output spans while they are checked.
        disjoint_fixed(&[ws], &fixed_ins)?;
        let all_outs = core::iter::once(ws).chain(out_spans(outs_ptrs, segs));
        // SAFETY: the workspace passed `req` and is disjoint from the
        // tables the spans are read from.
        let outs = unsafe { spans_in(workspace, workspace_len, all_outs)? };
        disjoint(outs, &mut fixed_ins.into_iter().chain(g.buffers()))?;
        // SAFETY: every buffer passed `req` for its length; the outputs
        // (each merged buffer, the workspace) are disjoint from each other
        // and from every input.
        unsafe {
            let c = Coefficients::from_workspace(tasks, view(coef, coef_len))?;
            let (tile, tab, m) = vars_ws(workspace, &g, engine::tile_len(tasks)?);
            let pg = PerVariable::new(tasks, g.segs, &*tab, m)?;
            for (k, (&out, &len)) in outs_ptrs.iter().zip(segs).enumerate() {
                let m = view_mut(out, len);
                let at = SegPos {
                    s: var_lo + k,
                    base: lo,
                };
                engine::apply_merged_with(
                    Kernels::best(),
                    &pg,
                    &c,
                    red,
                    at,
                    lo,
                    lo + len,
                    m,
                    tile,
                )?;
                lo += len;
            }
            Ok(())
        }
    })())
}

/// Phase 3 over per-variable buffers, in place: each present buffer of the
/// variables `var_lo..var_hi` becomes its task's projected gradient and,
/// when `merged` is not NULL, `merged[k]` receives variable `var_lo + k`'s
/// merged gradient (`merged`, `merged_len` optional: NULL, 0). Every
/// present buffer of the table is an output, as in `pcgrad_project_vars`.
/// Arguments as `pcgrad_apply_merged_vars`.
///
/// # Safety
///
/// As `pcgrad_gram_vars`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_apply_projected_vars(
    grads: *const *mut f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    coef: *const f64,
    coef_len: usize,
    tasks: usize,
    reduction: u32,
    var_lo: usize,
    var_hi: usize,
    merged: *const *mut f32,
    merged_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        apply_projected_vars(
            grads,
            grads_len,
            segments,
            segments_len,
            coef,
            coef_len,
            tasks,
            reduction,
            var_lo,
            var_hi,
            merged,
            merged_len,
            workspace,
            workspace_len,
        )
    }
}

/// `pcgrad_apply_projected_vars` over `double` gradients and merged buffers: the same
/// arguments, checks, statuses and overlap rules, the buffers used in place.
///
/// # Safety
///
/// As `pcgrad_gram_vars`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_apply_projected_vars_f64(
    grads: *const *mut f64,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    coef: *const f64,
    coef_len: usize,
    tasks: usize,
    reduction: u32,
    var_lo: usize,
    var_hi: usize,
    merged: *const *mut f64,
    merged_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        apply_projected_vars(
            grads,
            grads_len,
            segments,
            segments_len,
            coef,
            coef_len,
            tasks,
            reduction,
            var_lo,
            var_hi,
            merged,
            merged_len,
            workspace,
            workspace_len,
        )
    }
}

/// The one body of `pcgrad_apply_projected_vars` and
/// `pcgrad_apply_projected_vars_f64`.
///
/// # Safety
///
/// As `pcgrad_gram_vars`.
#[allow(clippy::too_many_arguments)]
unsafe fn apply_projected_vars<F: Element>(
    grads: *const *mut F,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    coef: *const f64,
    coef_len: usize,
    tasks: usize,
    reduction: u32,
    var_lo: usize,
    var_hi: usize,
    merged: *const *mut F,
    merged_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    status((|| {
        // SAFETY: the caller promises the table lengths.
        let g = unsafe { VarsArgs::check(grads.cast(), grads_len, segments, segments_len, tasks)? };
        let (mut lo, _) = var_columns(g.segs, var_lo, var_hi)?;
        let red = reduction_of(reduction)?;
        check_workspace(coef.cast_mut(), coef_len, engine::coefficients_len(tasks)?)?;
        let has_merged = opt(merged, merged_len)?;
        let segs = &g.segs[var_lo..var_hi];
        if has_merged && merged_len != segs.len() {
            return Err(Error::LengthMismatch);
        }
        // SAFETY: `merged` passed `opt` for its pointers (absent: none).
        let outs_ptrs =
            unsafe { outs_table(merged, if has_merged { segs.len() } else { 0 }, segs)? };
        let s = g.segs.len();
        check_workspace(workspace, workspace_len, workspace_len_vars(tasks, s)?)?;
        let [t0, t1] = g.tables();
        let fixed_ins = [
            t0,
            t1,
            Span::of(coef, coef_len),
            Span::of(merged, merged_len),
        ];
        let ws = Span::of(workspace, workspace_len);
        // As in `pcgrad_apply_merged_vars`: the tables first.
        disjoint_fixed(&[ws], &fixed_ins)?;
        let all_outs = core::iter::once(ws)
            .chain(out_spans(outs_ptrs, segs))
            .chain(g.buffers());
        // SAFETY: as in `pcgrad_apply_merged_vars`.
        let outs = unsafe { spans_in(workspace, workspace_len, all_outs)? };
        disjoint(outs, &mut fixed_ins.into_iter())?;
        // SAFETY: as in `pcgrad_apply_merged_vars`; here every gradient
        // buffer is an output too, so they are pairwise disjoint and each
        // `&mut` slice is unique.
        unsafe {
            let c = Coefficients::from_workspace(tasks, view(coef, coef_len))?;
            let (tile, tab, m) = vars_ws_mut(workspace, &g, engine::tile_len(tasks)?);
            let mut pg = PerVariableMut::new(tasks, g.segs, tab, m)?;
            for (k, &len) in segs.iter().enumerate() {
                let m = if has_merged {
                    Some(view_mut(outs_ptrs[k], len))
                } else {
                    None
                };
                let at = SegPos {
                    s: var_lo + k,
                    base: lo,
                };
                engine::apply_projected_from(&mut pg, &c, red, at, lo, lo + len, m, tile)?;
                lo += len;
            }
            Ok(())
        }
    })())
}
