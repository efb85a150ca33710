//! One call per training step over a flat T x N buffer.

use super::check::*;
use super::types::*;
use crate::engine::{MergeOut, Same};
use crate::kernels::Element;

// ---------------------------------------------------------------------------
// One call per training step, flat T x N buffer.

/// Projects and merges a contiguous row-major T x N gradient buffer (row t
/// = task t) into `merged` (N floats); the gradients are only read.
///
/// - `grads`, `grads_len`: T * N floats.
/// - `segments`, `segments_len`: optional (NULL, 0): S variable lengths
///   summing to N; absent = one segment.
/// - `has_grad`, `has_grad_len`: optional (NULL, 0): T x S bytes, 0 or 1,
///   row-major: whether task t has a gradient for segment s (where 0, its
///   values there are ignored and taken as zero). Absent = all 1.
/// - `stats`: optional output (NULL = not wanted).
/// - `matrix`, `matrix_len`: optional output (NULL, 0), T * T doubles: the
///   Gram or cosine matrix (`config->matrix`). A library built without its
///   `diagnostics` feature (the bare-metal build) refuses a matrix with
///   `PCGRAD_ERROR_UNSUPPORTED` (after its pointer and length checks).
/// - `workspace`, `workspace_len`: at least `pcgrad_workspace_len(T)`
///   doubles of scratch.
///
/// # Safety
///
/// Every non-NULL pointer points at the number of elements its length says,
/// valid for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_merge_flat(
    config: *const pcgrad_config,
    grads: *const f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    merged: *mut f32,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        merge_flat::<f32>(
            config,
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
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

/// `pcgrad_merge_flat` over `double` gradients: the same arguments, checks,
/// statuses and overlap rules, with `grads` and `merged` of `double` (the
/// buffers are used in place, never converted).
///
/// # Safety
///
/// As `pcgrad_merge_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_merge_flat_f64(
    config: *const pcgrad_config,
    grads: *const f64,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    merged: *mut f64,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        merge_flat::<f64>(
            config,
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
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

/// The one body of `pcgrad_merge_flat` and its `_f64`, `_bf16` and `_f16`
/// twins.
///
/// # Safety
///
/// As `pcgrad_merge_flat`.
pub(super) unsafe fn merge_flat<F: Element>(
    config: *const pcgrad_config,
    grads: *const F,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    merged: *mut F,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        merge_flat_to::<F, Same>(
            config,
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
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

/// [`merge_flat`] writing the output type of `S` (the input's, or `f32`):
/// the same checks, statuses and overlap rules.
///
/// # Safety
///
/// As `pcgrad_merge_flat`, with `merged` holding `merged_len` values of
/// `S::Out`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn merge_flat_to<F: Element, S: MergeOut<F>>(
    config: *const pcgrad_config,
    grads: *const F,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    merged: *mut S::Out,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    status((|| {
        let cfg = Config::read(config, tasks)?;
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
        req(merged, merged_len)?;
        let diag = Diag::check(stats, matrix, matrix_len, tasks)?;
        check_workspace(workspace, workspace_len, crate::workspace_len(tasks)?)?;
        let ([d0, d1], [c0, c1], [s0, s1]) = (diag.spans(), cfg.inputs(config), f.shape());
        let outs = [
            Span::of(merged, merged_len),
            Span::of(workspace, workspace_len),
            d0,
            d1,
            cfg.output(),
        ];
        disjoint_fixed(&outs, &[c0, c1, f.grads(), s0, s1])?;
        // SAFETY: every buffer passed `req`/`opt` (non-NULL, aligned, size
        // in range) for its length and the outputs are disjoint from each
        // other and from the inputs, so the shared and mutable slices below
        // never alias.
        unsafe {
            let flat = f.flat()?;
            let ws = view_mut(workspace, workspace_len);
            let st =
                cfg.pcgrad()
                    .merge_to::<F, S, _>(None, &flat, view_mut(merged, merged_len), ws)?;
            diag.write(&cfg, tasks, ws, st)
        }
    })())
}

/// Projects a contiguous row-major T x N gradient buffer **in place** (each
/// row becomes its projected g'_t on every coordinate, including segments
/// the task had no gradient for) and, when `merged` is not NULL, writes the
/// merged gradient (N floats). Arguments as `pcgrad_merge_flat`; `merged`,
/// `merged_len` are optional (length 0: absent). Its merged output is
/// bitwise `pcgrad_merge_flat`'s (both sum every coordinate in `double`
/// and round once).
///
/// # Safety
///
/// As `pcgrad_merge_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_project_flat(
    config: *const pcgrad_config,
    grads: *mut f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    merged: *mut f32,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        project_flat::<f32>(
            config,
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
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

/// `pcgrad_project_flat` over `double` gradients: the same arguments, checks,
/// statuses and overlap rules, with `grads` and `merged` of `double` (the
/// buffers are used in place, never converted).
///
/// # Safety
///
/// As `pcgrad_merge_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_project_flat_f64(
    config: *const pcgrad_config,
    grads: *mut f64,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    merged: *mut f64,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller.
    unsafe {
        project_flat::<f64>(
            config,
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
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

/// The one body of `pcgrad_project_flat` and its `_f64`, `_bf16` and
/// `_f16` twins.
///
/// # Safety
///
/// As `pcgrad_merge_flat`.
pub(super) unsafe fn project_flat<F: Element>(
    config: *const pcgrad_config,
    grads: *mut F,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    merged: *mut F,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    status((|| {
        let cfg = Config::read(config, tasks)?;
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
        let has_merged = opt(merged, merged_len)?;
        let diag = Diag::check(stats, matrix, matrix_len, tasks)?;
        check_workspace(workspace, workspace_len, crate::workspace_len(tasks)?)?;
        let ([d0, d1], [c0, c1], [s0, s1]) = (diag.spans(), cfg.inputs(config), f.shape());
        let outs = [
            f.grads(),
            Span::of(merged, merged_len),
            Span::of(workspace, workspace_len),
            d0,
            d1,
            cfg.output(),
        ];
        disjoint_fixed(&outs, &[c0, c1, s0, s1])?;
        // SAFETY: as in `pcgrad_merge_flat`; `grads` is an output here,
        // disjoint from every other buffer.
        unsafe {
            let mut g = f.flat_mut()?;
            let ws = view_mut(workspace, workspace_len);
            let m = if has_merged {
                Some(view_mut(merged, merged_len))
            } else {
                None
            };
            let st = cfg.pcgrad().project(&mut g, m, ws)?;
            diag.write(&cfg, tasks, ws, st)
        }
    })())
}
