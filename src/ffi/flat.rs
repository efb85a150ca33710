//! One call per training step over a flat T x N buffer.

use super::check::*;
use super::types::*;
use crate::api::PcGrad;
use crate::error::Result;
use crate::layout::{Flat, FlatMut, Layout};

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
///   Gram or cosine matrix (`config->matrix`).
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
    status((|| {
        // The checks run in frames of their own, which are gone before the
        // passes run: a smaller stack high-water mark.
        let cfg = Config::read(config)?;
        check_merge_flat(
            &cfg,
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
        )?;
        let diag = Diag {
            stats,
            matrix,
            matrix_len,
        };
        // SAFETY: every buffer passed `req`/`opt` (non-NULL, aligned, size
        // in range) for its length and the outputs are disjoint from each
        // other and from the inputs, so the shared and mutable slices below
        // never alias.
        unsafe {
            let segs = view(segments, segments_len);
            let hg = mask(has_grad, has_grad_len)?;
            let layout = Layout::new(tasks, dim, segs, hg)?;
            let flat = Flat::new(layout, view(grads, grads_len))?;
            let ws = view_mut(workspace, workspace_len);
            let mut pc = pcgrad_of(&cfg);
            let st = pc.merge(&flat, view_mut(merged, merged_len), ws)?;
            diag.write(&cfg, tasks, ws, st)
        }
    })())
}

/// The argument checks of [`pcgrad_merge_flat`] after the config (read by
/// the caller first, as `cfg`): the shapes, every pointer, and the
/// disjointness of the outputs from each other and from the inputs.
#[inline(never)]
pub(super) fn check_merge_flat(
    cfg: &Config,
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
) -> Result<()> {
    flat_shape(
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
    Diag::validate(stats, matrix, matrix_len, tasks)?;
    check_workspace(workspace, workspace_len, crate::workspace_len(tasks)?)?;
    let raw = &cfg.raw;
    disjoint_spans(
        &[
            Span::of(merged, merged_len),
            Span::of(workspace, workspace_len),
            Span::of(stats, 1),
            Span::of(matrix, matrix_len),
            Span::of_if(cfg.uses_rng, raw.rng, 1),
            Span::of(config, 1),
            Span::of_if(cfg.uses_table, raw.order_table, raw.order_table_len),
            Span::of(grads, grads_len),
            Span::of(segments, segments_len),
            Span::of(has_grad, has_grad_len),
        ],
        5,
    )
}

pub(super) fn pcgrad_of<'a>(cfg: &Config) -> PcGrad<'a> {
    // SAFETY: every caller has checked the config's buffers and their
    // overlaps with the call's other buffers before calling this.
    let mode = unsafe { cfg.mode() };
    PcGrad::with_mode(mode)
        .reduction(cfg.reduction)
        .check_finite(cfg.check_finite)
        .threads(cfg.raw.threads)
}

/// Projects a contiguous row-major T x N gradient buffer **in place** (each
/// row becomes its projected g'_t on every coordinate, including segments
/// the task had no gradient for) and, when `merged` is not NULL, writes the
/// merged gradient (N floats). Arguments as `pcgrad_merge_flat`; `merged`,
/// `merged_len` are optional (NULL, 0).
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
    status((|| {
        let cfg = Config::read(config)?;
        flat_shape(
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
        let raw = &cfg.raw;
        disjoint_spans(
            &[
                Span::of(grads, grads_len),
                Span::of(merged, merged_len),
                Span::of(workspace, workspace_len),
                Span::of(stats, 1),
                Span::of(matrix, matrix_len),
                Span::of_if(cfg.uses_rng, raw.rng, 1),
                Span::of(config, 1),
                Span::of_if(cfg.uses_table, raw.order_table, raw.order_table_len),
                Span::of(segments, segments_len),
                Span::of(has_grad, has_grad_len),
            ],
            6,
        )?;
        // SAFETY: as in `pcgrad_merge_flat`; `grads` is an output here,
        // disjoint from every other buffer.
        unsafe {
            let segs = view(segments, segments_len);
            let hg = mask(has_grad, has_grad_len)?;
            let layout = Layout::new(tasks, dim, segs, hg)?;
            let mut g = FlatMut::new(layout, view_mut(grads, grads_len))?;
            let ws = view_mut(workspace, workspace_len);
            let m = if has_merged {
                Some(view_mut(merged, merged_len))
            } else {
                None
            };
            let mut pc = pcgrad_of(&cfg);
            let st = pc.project(&mut g, m, ws)?;
            diag.write(&cfg, tasks, ws, st)
        }
    })())
}
