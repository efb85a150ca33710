//! One call per training step with one buffer per (task, variable), and
//! the seed's pack / unflatten.

use core::mem::{align_of, size_of};
use core::ptr;
use core::slice;

use super::check::*;
use super::sizes::*;
use super::types::*;
use crate::api::split_rest;
use crate::engine::{self, Coefficients, Stats};
use crate::error::{Error, Result};
use crate::kernels::{Element, Kernels};
use crate::layout::{Gradients, PerVariable, PerVariableMut, SegPos};

// ---------------------------------------------------------------------------
// One call per training step, one buffer per (task, variable).

// The per-variable entry points keep a `[Option<&[f32]>]` and a `[bool]`
// array in the workspace tail; both must fit the documented 2 + 1/8
// doubles per cell and be no more aligned than `f64`.
const _: () = assert!(size_of::<Option<&[f32]>>() <= 2 * size_of::<f64>());
const _: () = assert!(align_of::<Option<&[f32]>>() <= align_of::<f64>());
const _: () = assert!(size_of::<Option<&mut [f32]>>() == size_of::<Option<&[f32]>>());
const _: () = assert!(size_of::<Option<&[f64]>>() == size_of::<Option<&[f32]>>());
const _: () = assert!(align_of::<Option<&[f64]>>() <= align_of::<f64>());

/// A per-variable call's workspace, split: the `f64` part, the table of
/// `E` (slice references), the presence mask.
pub(super) type VarsWs<'a, E> = (&'a mut [f64], &'a mut [E], &'a mut [bool]);

/// Splits the workspace of a per-variable call into the `f64` part, a
/// `[Option<&[f32]>]` (or `&mut`) table of `cells` entries filled by
/// `fill`, and a `[bool]` mask of `cells` entries.
///
/// # Safety
///
/// `workspace` passed `req` for `workspace_len_vars(T, S)` doubles and is
/// disjoint from every other buffer of the call.
pub(super) unsafe fn split_vars_ws<'a, E>(
    workspace: *mut f64,
    base: usize,
    cells: usize,
    fill: impl Fn(usize) -> E,
) -> VarsWs<'a, E> {
    debug_assert!(size_of::<E>() <= 16 && align_of::<E>() <= align_of::<f64>());
    // SAFETY: the three parts are disjoint sub-ranges of the workspace
    // (`base` doubles, then 2 * cells doubles holding `cells` values of E,
    // at most 16 bytes each, then cells bytes), whose total the caller
    // checked. E and bool are no more aligned than f64. Each element of the
    // E and bool parts is written before the slices are formed, so they hold
    // valid values.
    unsafe {
        let ws = slice::from_raw_parts_mut(workspace, base);
        let tab = workspace.add(base).cast::<E>();
        for c in 0..cells {
            ptr::write(tab.add(c), fill(c));
        }
        let m = workspace.add(base + 2 * cells).cast::<bool>();
        for c in 0..cells {
            ptr::write(m.add(c), false);
        }
        (
            ws,
            slice::from_raw_parts_mut(tab, cells),
            slice::from_raw_parts_mut(m, cells),
        )
    }
}

/// Phases 1 and 2 over the whole problem (`PcGrad::prepare`, as for the
/// flat entry points), then `apply` once per variable (segment `k`, coordinates `lo..hi`), so
/// that each variable's output goes to its own buffer.
pub(super) fn run_vars<F, G, A>(
    cfg: &Config,
    grads: &mut G,
    segments: &[usize],
    ws: &mut [f64],
    mut apply: A,
) -> Result<Stats>
where
    F: Element,
    G: Gradients<F>,
    A: FnMut(&mut G, &Coefficients<'_>, usize, usize, usize, &mut [f64]) -> Result<()>,
{
    let t = grads.layout().tasks();
    // SAFETY: the caller has checked the config's buffers and their
    // overlaps with the call's other buffers.
    let (off, stats) = unsafe { cfg.pcgrad() }.prepare(&*grads, ws)?;
    let (coef_ws, tile) = split_rest(ws, off, engine::coefficients_len(t)?)?;
    let coef = Coefficients::from_workspace(t, coef_ws)?;
    let mut lo = 0;
    for (s, &len) in segments.iter().enumerate() {
        let hi = lo + len;
        apply(grads, &coef, s, lo, hi, tile)?;
        lo = hi;
    }
    Ok(stats)
}

/// Projects and merges per-variable gradients: `grads[t * S + s]` points at
/// task t's gradient for variable s (`segments[s]` floats), or is NULL when
/// the task has none for that variable (TensorFlow's `None`, an unset
/// PyTorch `.grad`): a task-specific head. The merged gradient of variable
/// s is written into `merged[s]` (`segments[s]` floats each), so a runtime
/// with one buffer per parameter tensor copies nothing.
///
/// - `grads`, `grads_len`: T * S pointers, row-major by task.
/// - `segments`, `segments_len`: S variable lengths (required).
/// - `merged`, `merged_len`: S pointers to the output buffers (none NULL).
/// - `stats`, `matrix`, `matrix_len`: as `pcgrad_merge_flat`.
/// - `workspace`, `workspace_len`: at least `pcgrad_workspace_len_vars(T,
///   S)` doubles.
///
/// The Gram pass uses `config->threads`; the apply pass runs on the
/// calling thread, one variable at a time.
///
/// # Safety
///
/// Every non-NULL pointer points at the number of elements its length (or
/// its variable's length) says, valid for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_merge_vars(
    config: *const pcgrad_config,
    grads: *const *const f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
    merged: *const *mut f32,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        merge_vars(
            config,
            grads,
            grads_len,
            segments,
            segments_len,
            tasks,
            merged,
            merged_len,
            stats,
            matrix,
            matrix_len,
            workspace,
            workspace_len,
        )
    }
}

/// `pcgrad_merge_vars` over `double` gradients: the same arguments, checks,
/// statuses and overlap rules, with every gradient and merged buffer of
/// `double` (used in place, never converted).
///
/// # Safety
///
/// As `pcgrad_merge_vars`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_merge_vars_f64(
    config: *const pcgrad_config,
    grads: *const *const f64,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
    merged: *const *mut f64,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        merge_vars(
            config,
            grads,
            grads_len,
            segments,
            segments_len,
            tasks,
            merged,
            merged_len,
            stats,
            matrix,
            matrix_len,
            workspace,
            workspace_len,
        )
    }
}

/// The one body of `pcgrad_merge_vars` and `pcgrad_merge_vars_f64`.
///
/// # Safety
///
/// As `pcgrad_merge_vars`.
#[allow(clippy::too_many_arguments)]
unsafe fn merge_vars<F: Element>(
    config: *const pcgrad_config,
    grads: *const *const F,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
    merged: *const *mut F,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    status((|| {
        let cfg = Config::read(config, tasks)?;
        // SAFETY: the caller promises the table lengths.
        let g = unsafe { VarsArgs::check(grads, grads_len, segments, segments_len, tasks)? };
        req(merged, merged_len)?;
        let s = g.segs.len();
        if merged_len != s {
            return Err(Error::LengthMismatch);
        }
        // SAFETY: `merged` passed `req` for S pointers.
        let outs_ptrs = unsafe { outs_table(merged, s, g.segs)? };
        let diag = Diag::check(stats, matrix, matrix_len, tasks)?;
        check_workspace(workspace, workspace_len, workspace_len_vars(tasks, s)?)?;
        let ([d0, d1], [c0, c1], [t0, t1]) = (diag.spans(), cfg.inputs(config), g.tables());
        let fixed_outs = [Span::of(workspace, workspace_len), d0, d1, cfg.output()];
        let fixed_ins = [c0, c1, t0, t1, Span::of(merged, merged_len)];
        // The workspace holds the output spans while they are checked:
        // first make sure that writing it changes no table.
        disjoint_fixed(&fixed_outs, &fixed_ins)?;
        let all_outs = fixed_outs.into_iter().chain(out_spans(outs_ptrs, g.segs));
        // SAFETY: the workspace passed `req` and is disjoint from the
        // tables the spans are read from.
        let outs = unsafe { spans_in(workspace, workspace_len, all_outs)? };
        disjoint(outs, &mut fixed_ins.into_iter().chain(g.buffers()))?;
        // SAFETY: every buffer passed `req`/`opt` for its length, the
        // outputs (each merged buffer, the workspace, the diagnostics, the
        // PRNG) are disjoint from each other and from every input, so no
        // mutable slice below aliases another slice.
        unsafe {
            let (ws, tab, m) = vars_ws(workspace, &g, crate::workspace_len(tasks)?);
            let mut pg = PerVariable::new(tasks, g.segs, &*tab, m)?;
            let st = run_vars(&cfg, &mut pg, g.segs, ws, |g, coef, k, lo, hi, tile| {
                let out = view_mut(outs_ptrs[k], hi - lo);
                let at = SegPos { s: k, base: lo };
                engine::apply_merged_with(
                    Kernels::best(),
                    &*g,
                    coef,
                    cfg.reduction,
                    at,
                    lo,
                    hi,
                    out,
                    tile,
                )
            })?;
            diag.write(&cfg, tasks, ws, st)
        }
    })())
}

/// Projects per-variable gradients **in place** (each present buffer
/// becomes task t's projected gradient on that variable; NULL cells
/// receive nothing) and, when `merged` is not NULL, writes each variable's
/// merged gradient into `merged[s]`. Arguments as `pcgrad_merge_vars`;
/// `merged`, `merged_len` are optional (NULL, 0).
///
/// # Safety
///
/// As `pcgrad_merge_vars`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_project_vars(
    config: *const pcgrad_config,
    grads: *const *mut f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
    merged: *const *mut f32,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        project_vars(
            config,
            grads,
            grads_len,
            segments,
            segments_len,
            tasks,
            merged,
            merged_len,
            stats,
            matrix,
            matrix_len,
            workspace,
            workspace_len,
        )
    }
}

/// `pcgrad_project_vars` over `double` gradients: the same arguments,
/// checks, statuses and overlap rules, with every gradient and merged
/// buffer of `double` (projected in place, never converted).
///
/// # Safety
///
/// As `pcgrad_merge_vars`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_project_vars_f64(
    config: *const pcgrad_config,
    grads: *const *mut f64,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
    merged: *const *mut f64,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        project_vars(
            config,
            grads,
            grads_len,
            segments,
            segments_len,
            tasks,
            merged,
            merged_len,
            stats,
            matrix,
            matrix_len,
            workspace,
            workspace_len,
        )
    }
}

/// The one body of `pcgrad_project_vars` and `pcgrad_project_vars_f64`.
///
/// # Safety
///
/// As `pcgrad_merge_vars`.
#[allow(clippy::too_many_arguments)]
unsafe fn project_vars<F: Element>(
    config: *const pcgrad_config,
    grads: *const *mut F,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
    merged: *const *mut F,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    status((|| {
        let cfg = Config::read(config, tasks)?;
        // SAFETY: the caller promises the table lengths.
        let g = unsafe { VarsArgs::check(grads.cast(), grads_len, segments, segments_len, tasks)? };
        let has_merged = opt(merged, merged_len)?;
        let s = g.segs.len();
        if has_merged && merged_len != s {
            return Err(Error::LengthMismatch);
        }
        // SAFETY: `merged` passed `opt` for S pointers (absent: none).
        let outs_ptrs = unsafe { outs_table(merged, if has_merged { s } else { 0 }, g.segs)? };
        let diag = Diag::check(stats, matrix, matrix_len, tasks)?;
        check_workspace(workspace, workspace_len, workspace_len_vars(tasks, s)?)?;
        let ([d0, d1], [c0, c1], [t0, t1]) = (diag.spans(), cfg.inputs(config), g.tables());
        let fixed_outs = [Span::of(workspace, workspace_len), d0, d1, cfg.output()];
        let fixed_ins = [c0, c1, t0, t1, Span::of(merged, merged_len)];
        // As in `pcgrad_merge_vars`: the tables first.
        disjoint_fixed(&fixed_outs, &fixed_ins)?;
        let all_outs = fixed_outs
            .into_iter()
            .chain(out_spans(outs_ptrs, g.segs))
            .chain(g.buffers());
        // SAFETY: as in `pcgrad_merge_vars`.
        let outs = unsafe { spans_in(workspace, workspace_len, all_outs)? };
        disjoint(outs, &mut fixed_ins.into_iter())?;
        // SAFETY: as in `pcgrad_merge_vars`; here every gradient buffer is
        // an output too, so they are pairwise disjoint and each `&mut`
        // slice is unique.
        unsafe {
            let (ws, tab, m) = vars_ws_mut(workspace, &g, crate::workspace_len(tasks)?);
            let mut pg = PerVariableMut::new(tasks, g.segs, tab, m)?;
            let st = run_vars(&cfg, &mut pg, g.segs, ws, |g, coef, k, lo, hi, tile| {
                let out = if has_merged {
                    Some(view_mut(outs_ptrs[k], hi - lo))
                } else {
                    None
                };
                let at = SegPos { s: k, base: lo };
                engine::apply_projected_from(g, coef, cfg.reduction, at, lo, hi, out, tile)
            })?;
            diag.write(&cfg, tasks, ws, st)
        }
    })())
}

/// The workspace of a per-variable call split by [`split_vars_ws`], with
/// the table of shared slices over the checked buffers of `g`.
///
/// # Safety
///
/// As [`split_vars_ws`]; every present buffer of `g` passed `req` for its
/// variable's length and is not written while the slices live.
pub(super) unsafe fn vars_ws<'a, F>(
    workspace: *mut f64,
    g: &VarsArgs<'_, F>,
    base: usize,
) -> VarsWs<'a, Option<&'a [F]>> {
    let (vs, segs) = (g.vars, g.segs);
    // SAFETY: forwarded to the caller (non-NULL cells are valid for reads
    // of their variable's length).
    unsafe {
        split_vars_ws(workspace, base, vs.len(), |c| {
            let p = vs[c];
            (!p.is_null()).then(|| slice::from_raw_parts(p, segs[c % segs.len()]))
        })
    }
}

/// [`vars_ws`] with mutable slices, for the in-place calls.
///
/// # Safety
///
/// As [`vars_ws`]; besides, the present buffers of `g` are writable,
/// pairwise disjoint and disjoint from every other buffer of the call.
pub(super) unsafe fn vars_ws_mut<'a, F>(
    workspace: *mut f64,
    g: &VarsArgs<'_, F>,
    base: usize,
) -> VarsWs<'a, Option<&'a mut [F]>> {
    let (vs, segs) = (g.vars, g.segs);
    // SAFETY: forwarded to the caller (non-NULL cells are valid for writes
    // of their variable's length and unique).
    unsafe {
        split_vars_ws(workspace, base, vs.len(), |c| {
            let p = vs[c];
            (!p.is_null()).then(|| slice::from_raw_parts_mut(p.cast_mut(), segs[c % segs.len()]))
        })
    }
}

// ---------------------------------------------------------------------------
// Pack / unflatten (the seed's `pack_grad` and `un_flatten_grad`).

/// Packs per-variable gradients into a flat row-major T x N buffer:
/// `vars[t * S + s]` is task t's gradient for variable s (`segments[s]`
/// floats) or NULL, written as zeros and recorded as 0 in `has_grad`
/// (T x S bytes, 1 where present). `out_len` must be T * N with N the sum
/// of the segments. The result feeds `pcgrad_merge_flat` directly.
///
/// # Safety
///
/// Every non-NULL pointer points at the number of elements its length (or
/// its variable's length) says, valid for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_pack(
    vars: *const *const f32,
    vars_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
    out: *mut f32,
    out_len: usize,
    has_grad: *mut u8,
    has_grad_len: usize,
) -> pcgrad_status {
    status((|| {
        // SAFETY: the caller promises the table lengths.
        let g = unsafe { VarsArgs::check(vars, vars_len, segments, segments_len, tasks)? };
        req(out, out_len)?;
        req(has_grad, has_grad_len)?;
        let (cells, s) = (vars_len, g.segs.len());
        if has_grad_len != cells || out_len != tasks.checked_mul(g.dim).ok_or(Error::Overflow)? {
            return Err(Error::LengthMismatch);
        }
        let mut outs = [Span::of(out, out_len), Span::of(has_grad, has_grad_len)];
        disjoint(&mut outs, &mut g.tables().into_iter().chain(g.buffers()))?;
        // SAFETY: every buffer passed `req` for its length; the two outputs
        // are disjoint from each other and from every input.
        unsafe {
            let o = view_mut(out, out_len);
            let hg = view_mut(has_grad, has_grad_len);
            let mut pos = 0;
            for (c, &p) in g.vars.iter().enumerate() {
                let len = g.segs[c % s];
                let dst = &mut o[pos..pos + len];
                if p.is_null() {
                    dst.fill(0.0);
                } else {
                    dst.copy_from_slice(slice::from_raw_parts(p, len));
                }
                hg[c] = u8::from(!p.is_null());
                pos += len;
            }
        }
        Ok(())
    })())
}

/// Splits a flat vector of N floats into per-variable buffers: `outs[s]`
/// receives `segments[s]` floats (none NULL). `flat_len` must be the sum of
/// the segments.
///
/// # Safety
///
/// As `pcgrad_pack`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_unflatten(
    flat: *const f32,
    flat_len: usize,
    segments: *const usize,
    segments_len: usize,
    outs: *const *mut f32,
    outs_len: usize,
) -> pcgrad_status {
    status((|| {
        req(flat, flat_len)?;
        // SAFETY: the caller promises the table lengths; with one task the
        // table is S pointers.
        let g = unsafe {
            VarsArgs::check(
                outs.cast::<*const f32>(),
                outs_len,
                segments,
                segments_len,
                1,
            )?
        };
        // SAFETY: `outs` passed `req` for S pointers.
        let ptrs = unsafe { outs_table(outs, outs_len, g.segs)? };
        if flat_len != g.dim {
            return Err(Error::LengthMismatch);
        }
        let [t0, t1] = g.tables();
        disjoint_unstored(|| g.buffers(), &[Span::of(flat, flat_len), t0, t1])?;
        // SAFETY: every buffer passed `req` for its length; the outputs are
        // disjoint from each other and from every input.
        unsafe {
            let src = view(flat, flat_len);
            let mut pos = 0;
            for (&p, &len) in ptrs.iter().zip(g.segs) {
                view_mut(p, len).copy_from_slice(&src[pos..pos + len]);
                pos += len;
            }
        }
        Ok(())
    })())
}
