//! The three phases, for sharding N across threads or machines.

use core::ptr;

use super::check::*;
use super::types::*;
use crate::engine::{self, coefficients, Coefficients};
use crate::error::Error;

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
        disjoint_fixed(&mut [Span::of(gram, gram_len)], &[f.grads(), s0, s1])?;
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
            &mut [Span::of(gram, gram_len)],
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
        let mut outs = [Span::of(coef, coef_len), d0, cfg.output()];
        disjoint_fixed(&mut outs, &[c0, c1, Span::of(gram, gram_len)])?;
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
        let mut outs = [Span::of(merged, merged_len), Span::of(tile, tile_len)];
        disjoint_fixed(&mut outs, &[f.grads(), s0, s1, Span::of(coef, coef_len)])?;
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
        let mut outs = [
            f.grads(),
            Span::of(merged, merged_len),
            Span::of(tile, tile_len),
        ];
        disjoint_fixed(&mut outs, &[s0, s1, Span::of(coef, coef_len)])?;
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
