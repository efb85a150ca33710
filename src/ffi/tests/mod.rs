//! The C ABI tests. They live in the `ffi` module so that every `unsafe`
//! of the crate stays in it; each unsafe block says why its pointers are
//! valid. Small shapes (N = 13, not a multiple of 8; T in {1, 2, 3, 5}) keep
//! a Miri run short. This file holds the fixtures; `calls` the results
//! against the Rust API, `refusals` the bad-input tables.

extern crate std;

use core::ffi::CStr;
use core::ptr;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::engine::{self, Mode, Order, Reduction, Stats};
use crate::error::Error;
use crate::layout::{Flat, FlatMut, Layout};
use crate::rng::Rng;
use crate::{cosine_matrix, pack, unflatten, workspace_gram, PcGrad, PpcGrad};
use pcgrad_status::*;

const N: usize = 13;
const SEGS: [usize; 3] = [5, 1, 7];
const S: usize = SEGS.len();
/// The task counts of the success-path tests: under Miri (about a second
/// per call on a loaded machine) T = 1 (no other task) and T = 5 (two
/// groups of four rows, a partial one), which reach every branch of the
/// T = 2 and T = 3 cases too.
const TASKS: &[usize] = if cfg!(miri) { &[1, 5] } else { &[1, 2, 3, 5] };
const SEED: u64 = 0x5EED_1234;
/// Values no computation produces, in every output before a call.
const SENT32: f32 = -12345.678;
const SENT64: f64 = -9876.5;
/// What a flat buffer holds where its task has no gradient (ignored).
const GARBAGE: f32 = 7.5;
const ALL_CODES: [pcgrad_status; 15] = [
    PCGRAD_OK,
    PCGRAD_ERROR_NULL_POINTER,
    PCGRAD_ERROR_NO_TASKS,
    PCGRAD_ERROR_LENGTH_MISMATCH,
    PCGRAD_ERROR_OVERFLOW,
    PCGRAD_ERROR_WORKSPACE_TOO_SMALL,
    PCGRAD_ERROR_NON_FINITE,
    PCGRAD_ERROR_OVERLAP,
    PCGRAD_ERROR_INVALID_ENUM,
    PCGRAD_ERROR_INVALID_ORDER,
    PCGRAD_ERROR_INVALID_RANGE,
    PCGRAD_ERROR_MISALIGNED,
    PCGRAD_ERROR_INVALID_PARAMETER,
    PCGRAD_ERROR_NOT_PSD,
    PCGRAD_ERROR_UNSUPPORTED,
];

/// Task t's gradient at coordinate c: multiples of 1/8 below 2 in
/// magnitude, so every dot product of N = 13 terms is exact and the
/// result does not depend on how the range is split. Odd tasks pull
/// against even ones, so tasks conflict.
fn value(t: usize, c: usize) -> f32 {
    let base = ((c * 7 + 3) % 11) as f32 * 0.25 - 1.25;
    let noise = ((c * 3 + t * 5) % 7) as f32 * 0.125 - 0.375;
    if t.is_multiple_of(2) {
        base + noise
    } else {
        noise - base
    }
}

/// Whether task t has a gradient for segment s of `SEGS`.
fn present(t: usize, s: usize) -> bool {
    (t + s) % 4 != 3
}

fn seg_start(s: usize) -> usize {
    SEGS[..s].iter().sum()
}

/// The row-major T x N buffer; `segmented` puts `GARBAGE` where a task
/// has no gradient.
fn grads(t: usize, segmented: bool) -> Vec<f32> {
    let mut g: Vec<f32> = (0..t * N).map(|k| value(k / N, k % N)).collect();
    if segmented {
        for i in 0..t {
            for s in 0..S {
                if !present(i, s) {
                    let a = i * N + seg_start(s);
                    g[a..a + SEGS[s]].fill(GARBAGE);
                }
            }
        }
    }
    g
}

fn mask_bytes(t: usize) -> Vec<u8> {
    (0..t * S)
        .map(|c| u8::from(present(c / S, c % S)))
        .collect()
}

/// The gradient element of a flat fixture: `f32` for the plain entry
/// points, `f64` for the `_f64` ones, `bf16` and `f16` for the `_bf16` and
/// `_f16` ones (whose `uint16_t` pointers the element pointers cast to).
trait CElem: crate::Element {
    /// The output sentinel.
    const SENT: Self;
    fn bits(self) -> u64;
    /// `pcgrad_merge_flat` or `pcgrad_merge_flat_f64`.
    ///
    /// # Safety
    ///
    /// As the entry point.
    unsafe fn merge_flat(a: &FlatArgs<Self>) -> pcgrad_status;
    /// `pcgrad_project_flat` or `pcgrad_project_flat_f64`.
    ///
    /// # Safety
    ///
    /// As the entry point.
    unsafe fn project_flat(a: &FlatArgs<Self>) -> pcgrad_status;
}

macro_rules! celem {
    ($t:ty, $sent:expr, $merge:ident, $project:ident) => {
        impl CElem for $t {
            const SENT: $t = $sent;
            fn bits(self) -> u64 {
                u64::from(self.to_bits())
            }
            unsafe fn merge_flat(a: &FlatArgs<$t>) -> pcgrad_status {
                // SAFETY: forwarded to the caller.
                unsafe {
                    $merge(
                        a.config(),
                        a.grads.cast(),
                        a.grads_len,
                        a.segments,
                        a.segments_len,
                        a.has_grad,
                        a.has_grad_len,
                        a.tasks,
                        a.dim,
                        a.merged.cast(),
                        a.merged_len,
                        a.stats,
                        a.matrix,
                        a.matrix_len,
                        a.ws,
                        a.ws_len,
                    )
                }
            }
            unsafe fn project_flat(a: &FlatArgs<$t>) -> pcgrad_status {
                // SAFETY: forwarded to the caller.
                unsafe {
                    $project(
                        a.config(),
                        a.grads.cast(),
                        a.grads_len,
                        a.segments,
                        a.segments_len,
                        a.has_grad,
                        a.has_grad_len,
                        a.tasks,
                        a.dim,
                        a.merged.cast(),
                        a.merged_len,
                        a.stats,
                        a.matrix,
                        a.matrix_len,
                        a.ws,
                        a.ws_len,
                    )
                }
            }
        }
    };
}
celem!(f32, SENT32, pcgrad_merge_flat, pcgrad_project_flat);
celem!(f64, SENT64, pcgrad_merge_flat_f64, pcgrad_project_flat_f64);
#[cfg(feature = "half")]
celem!(
    ::half::bf16,
    ::half::bf16::from_f32_const(SENT32),
    pcgrad_merge_flat_bf16,
    pcgrad_project_flat_bf16
);
#[cfg(feature = "half")]
celem!(
    ::half::f16,
    ::half::f16::from_f32_const(SENT32),
    pcgrad_merge_flat_f16,
    pcgrad_project_flat_f16
);

/// `grads` in the element type `E` (exact: every value is a multiple of
/// 1/8 or `GARBAGE`).
fn grads_as<E: CElem>(t: usize, segmented: bool) -> Vec<E> {
    grads(t, segmented)
        .into_iter()
        .map(|x| E::from_f64(f64::from(x)))
        .collect()
}

fn bits_of<E: CElem>(xs: &[E]) -> Vec<u64> {
    xs.iter().map(|x| x.bits()).collect()
}

fn bits32(xs: &[f32]) -> Vec<u32> {
    xs.iter().map(|x| x.to_bits()).collect()
}

fn bits64(xs: &[f64]) -> Vec<u64> {
    xs.iter().map(|x| x.to_bits()).collect()
}

fn stats_of(s: Stats) -> pcgrad_stats {
    pcgrad_stats {
        conflicting_pairs: s.conflicting_pairs,
        projections: s.projections,
    }
}

const STATS_SENT: pcgrad_stats = pcgrad_stats {
    conflicting_pairs: 777,
    projections: 777,
};

/// NULL for an empty slice (an absent optional buffer).
fn cp<T>(v: &[T]) -> *const T {
    if v.is_empty() {
        ptr::null()
    } else {
        v.as_ptr()
    }
}

/// `Vec::as_mut_ptr`, which leaves earlier pointers into the vector
/// valid; NULL for an empty vector.
fn mp<T>(v: &mut Vec<T>) -> *mut T {
    if v.is_empty() {
        ptr::null_mut()
    } else {
        v.as_mut_ptr()
    }
}

/// `p` moved one byte on: misaligned for any type wider than a byte.
/// Never dereferenced: every function must refuse it first.
fn mis<T>(p: *const T) -> *const T {
    p.cast::<u8>().wrapping_add(1).cast()
}

fn mis_mut<T>(p: *mut T) -> *mut T {
    p.cast::<u8>().wrapping_add(1).cast()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum M {
    Fixed,
    Shuffled,
    Explicit,
    Simultaneous,
}

/// The modes of the success-path tests: under Miri the two that read
/// caller memory through the config's pointers (the PRNG and the order
/// table); the fixed and simultaneous modes differ from them only in safe
/// code.
const MODES: &[M] = if cfg!(miri) {
    &[M::Shuffled, M::Explicit]
} else {
    &[M::Fixed, M::Shuffled, M::Explicit, M::Simultaneous]
};

/// Both reductions; under Miri (slow) one per (T, mode) pair,
/// alternating, so that each still meets every T and every mode.
fn reductions(t: usize, m: M) -> &'static [u32] {
    const BOTH: [u32; 2] = [PCGRAD_REDUCTION_MEAN, PCGRAD_REDUCTION_SUM];
    if cfg!(miri) {
        let k = (t + m as usize) % 2;
        &BOTH[k..k + 1]
    } else {
        &BOTH
    }
}

/// Row i visits the other tasks in descending order.
fn order_table(t: usize) -> Vec<u32> {
    (0..t)
        .flat_map(|i| (0..t).rev().filter(move |&j| j != i).map(|j| j as u32))
        .collect()
}

/// The default config, read back through `pcgrad_config_default`.
fn default_config() -> pcgrad_config {
    // SAFETY: all-zero bits are a valid `pcgrad_config` (integers and
    // raw pointers only); it is overwritten below anyway.
    let mut c: pcgrad_config = unsafe { core::mem::zeroed() };
    c.mode = 99;
    // SAFETY: `c` is a live, aligned, writable `pcgrad_config`.
    assert_eq!(unsafe { pcgrad_config_default(&mut c) }, PCGRAD_OK);
    c
}

fn config(m: M, reduction: u32) -> pcgrad_config {
    let mut c = default_config();
    match m {
        M::Fixed => {}
        M::Shuffled => c.order = PCGRAD_ORDER_SHUFFLED,
        M::Explicit => c.order = PCGRAD_ORDER_EXPLICIT,
        M::Simultaneous => {
            c.mode = PCGRAD_MODE_SIMULTANEOUS;
            // Ignored in simultaneous mode: the PRNG is not touched.
            c.order = PCGRAD_ORDER_SHUFFLED;
        }
    }
    c.reduction = reduction;
    c
}

fn cfg_bits(c: &pcgrad_config) -> [u64; 9] {
    [
        u64::from(c.mode),
        u64::from(c.order),
        u64::from(c.reduction),
        u64::from(c.check_finite),
        u64::from(c.matrix),
        c.threads as u64,
        c.order_table.addr() as u64,
        c.order_table_len as u64,
        c.rng.addr() as u64,
    ]
}

/// The same problem through the safe Rust API.
fn rust_pc<'a>(m: M, reduction: u32, table: &'a [u32], rng: &'a mut Rng) -> PcGrad<'a> {
    let pc = match m {
        M::Fixed => PcGrad::with_mode(Mode::Sequential(Order::Fixed)),
        M::Shuffled => PcGrad::new(rng),
        M::Explicit => PcGrad::with_mode(Mode::Sequential(Order::Explicit(table))),
        M::Simultaneous => PpcGrad::new(),
    };
    pc.reduction(match reduction {
        PCGRAD_REDUCTION_SUM => Reduction::Sum,
        _ => Reduction::Mean,
    })
    .threads(1)
}

/// Output `k` of a set of caller buffers, for the failure checks.
trait Fixture {
    type Args;
    /// Fresh pointers to every buffer (valid arguments).
    fn args(&mut self) -> Self::Args;
    /// Every caller buffer of a call except its scratch workspace.
    fn snapshot(&self, a: &Self::Args) -> Vec<u64>;
}

/// Runs `call` with arguments spoiled by `edit`, expects `want`, and
/// checks that no caller buffer but the workspace changed.
#[track_caller]
fn fails<F: Fixture>(
    fx: &mut F,
    want: pcgrad_status,
    call: impl Fn(&F::Args) -> pcgrad_status,
    edit: impl FnOnce(&mut F::Args),
) {
    fails_case("", fx, want, call, edit)
}

#[track_caller]
fn fails_case<F: Fixture>(
    case: &str,
    fx: &mut F,
    want: pcgrad_status,
    call: impl Fn(&F::Args) -> pcgrad_status,
    edit: impl FnOnce(&mut F::Args),
) {
    let mut a = fx.args();
    edit(&mut a);
    let before = fx.snapshot(&a);
    let got = call(&a);
    assert_eq!(got, want, "{case}");
    assert!(
        fx.snapshot(&a) == before,
        "a call that failed with {got:?} wrote a caller buffer"
    );
}

// -----------------------------------------------------------------------
// Flat one-call fixture: pcgrad_merge_flat / pcgrad_project_flat.

struct FlatFx<E: CElem = f32> {
    t: usize,
    segs: Vec<usize>,
    hg: Vec<u8>,
    grads: Vec<E>,
    merged: Vec<E>,
    stats: pcgrad_stats,
    matrix: Vec<f64>,
    ws: Vec<f64>,
    cfg: pcgrad_config,
    rng: Rng,
    table: Vec<u32>,
}

struct FlatArgs<E: CElem = f32> {
    cfg: pcgrad_config,
    /// Replaces `&cfg` when set.
    config: Option<*const pcgrad_config>,
    grads: *mut E,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    merged: *mut E,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    ws: *mut f64,
    ws_len: usize,
}

impl FlatFx {
    fn new(t: usize, segmented: bool, m: M, reduction: u32) -> FlatFx {
        FlatFx::of(t, segmented, m, reduction)
    }
}

impl<E: CElem> FlatFx<E> {
    /// The fixture over `E` gradients.
    fn of(t: usize, segmented: bool, m: M, reduction: u32) -> FlatFx<E> {
        let mut need = 0;
        // SAFETY: `need` is a live, aligned `usize`.
        assert_eq!(unsafe { pcgrad_workspace_len(t, &mut need) }, PCGRAD_OK);
        FlatFx {
            t,
            segs: if segmented { SEGS.to_vec() } else { vec![] },
            hg: if segmented { mask_bytes(t) } else { vec![] },
            grads: grads_as(t, segmented),
            merged: vec![E::SENT; N],
            stats: STATS_SENT,
            matrix: vec![SENT64; t * t],
            ws: vec![SENT64; need],
            cfg: config(m, reduction),
            rng: Rng::new(SEED),
            table: order_table(t),
        }
    }

    fn has_grad(&self) -> Vec<bool> {
        self.hg.iter().map(|&b| b == 1).collect()
    }
}

impl<E: CElem> Fixture for FlatFx<E> {
    type Args = FlatArgs<E>;
    fn args(&mut self) -> FlatArgs<E> {
        let mut cfg = self.cfg;
        cfg.rng = ptr::addr_of_mut!(self.rng);
        // A dangling, aligned, non-NULL pointer when T = 1 (no entries).
        cfg.order_table = self.table.as_ptr();
        cfg.order_table_len = self.table.len();
        FlatArgs {
            cfg,
            config: None,
            grads: mp(&mut self.grads),
            grads_len: self.grads.len(),
            segments: cp(&self.segs),
            segments_len: self.segs.len(),
            has_grad: cp(&self.hg),
            has_grad_len: self.hg.len(),
            tasks: self.t,
            dim: N,
            merged: mp(&mut self.merged),
            merged_len: self.merged.len(),
            stats: ptr::addr_of_mut!(self.stats),
            matrix: mp(&mut self.matrix),
            matrix_len: self.matrix.len(),
            ws: mp(&mut self.ws),
            ws_len: self.ws.len(),
        }
    }
    fn snapshot(&self, a: &FlatArgs<E>) -> Vec<u64> {
        let mut s: Vec<u64> = Vec::new();
        s.extend(bits_of(&self.grads));
        s.extend(self.segs.iter().map(|&x| x as u64));
        s.extend(self.hg.iter().map(|&x| u64::from(x)));
        s.extend(bits_of(&self.merged));
        s.extend([
            self.stats.conflicting_pairs as u64,
            self.stats.projections as u64,
        ]);
        s.extend(bits64(&self.matrix));
        s.push(self.rng.state);
        s.extend(self.table.iter().map(|&x| u64::from(x)));
        s.extend(cfg_bits(&a.cfg));
        s
    }
}

impl<E: CElem> FlatArgs<E> {
    fn config(&self) -> *const pcgrad_config {
        self.config.unwrap_or(&self.cfg)
    }

    fn merge(&self) -> pcgrad_status {
        // SAFETY: every pointer is NULL, points into a live buffer of
        // the fixture for at least its length, or is a deliberately bad
        // pointer (NULL, misaligned, overlapping, wrong length) that the
        // function must refuse before any access, which the caller
        // asserts.
        unsafe { E::merge_flat(self) }
    }

    fn project(&self) -> pcgrad_status {
        // SAFETY: as in `merge`.
        unsafe { E::project_flat(self) }
    }
}

/// Runs a one-call entry point with valid arguments.
fn run<F: Fixture>(fx: &mut F, call: impl Fn(&F::Args) -> pcgrad_status) -> pcgrad_status {
    let a = fx.args();
    call(&a)
}

// -----------------------------------------------------------------------
// Per-variable fixture: pcgrad_merge_vars / pcgrad_project_vars.

struct VarsFx {
    t: usize,
    segs: Vec<usize>,
    /// T x S buffers; empty where the task has no gradient (NULL).
    cells: Vec<Vec<f32>>,
    /// S merged buffers.
    outs: Vec<Vec<f32>>,
    stats: pcgrad_stats,
    matrix: Vec<f64>,
    ws: Vec<f64>,
    cfg: pcgrad_config,
    rng: Rng,
    table: Vec<u32>,
}

struct VarsArgs {
    cfg: pcgrad_config,
    config: Option<*const pcgrad_config>,
    gtab: Vec<*mut f32>,
    /// Replaces `gtab.as_ptr()` when set.
    grads: Option<*const *mut f32>,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
    mtab: Vec<*mut f32>,
    merged: Option<*const *mut f32>,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    ws: *mut f64,
    ws_len: usize,
}

impl VarsFx {
    fn new(t: usize, m: M, reduction: u32) -> VarsFx {
        let g = grads(t, false);
        let cells = (0..t * S)
            .map(|c| {
                let (i, s) = (c / S, c % S);
                if present(i, s) {
                    let a = i * N + seg_start(s);
                    g[a..a + SEGS[s]].to_vec()
                } else {
                    vec![]
                }
            })
            .collect();
        let mut need = 0;
        // SAFETY: `need` is a live, aligned `usize`.
        assert_eq!(
            unsafe { pcgrad_workspace_len_vars(t, S, &mut need) },
            PCGRAD_OK
        );
        VarsFx {
            t,
            segs: SEGS.to_vec(),
            cells,
            outs: SEGS.iter().map(|&l| vec![SENT32; l]).collect(),
            stats: STATS_SENT,
            matrix: vec![SENT64; t * t],
            ws: vec![SENT64; need],
            cfg: config(m, reduction),
            rng: Rng::new(SEED),
            table: order_table(t),
        }
    }

    fn merged(&self) -> Vec<f32> {
        self.outs.concat()
    }
}

impl Fixture for VarsFx {
    type Args = VarsArgs;
    fn args(&mut self) -> VarsArgs {
        let mut cfg = self.cfg;
        cfg.rng = ptr::addr_of_mut!(self.rng);
        cfg.order_table = self.table.as_ptr();
        cfg.order_table_len = self.table.len();
        let gtab: Vec<*mut f32> = self.cells.iter_mut().map(mp).collect();
        let mtab: Vec<*mut f32> = self.outs.iter_mut().map(mp).collect();
        VarsArgs {
            cfg,
            config: None,
            grads: None,
            grads_len: gtab.len(),
            gtab,
            segments: self.segs.as_ptr(),
            segments_len: self.segs.len(),
            tasks: self.t,
            merged: None,
            merged_len: mtab.len(),
            mtab,
            stats: ptr::addr_of_mut!(self.stats),
            matrix: mp(&mut self.matrix),
            matrix_len: self.matrix.len(),
            ws: mp(&mut self.ws),
            ws_len: self.ws.len(),
        }
    }
    fn snapshot(&self, a: &VarsArgs) -> Vec<u64> {
        let mut s: Vec<u64> = Vec::new();
        for c in self.cells.iter().chain(&self.outs) {
            s.extend(c.iter().map(|x| u64::from(x.to_bits())));
        }
        s.extend(self.segs.iter().map(|&x| x as u64));
        s.extend([
            self.stats.conflicting_pairs as u64,
            self.stats.projections as u64,
        ]);
        s.extend(bits64(&self.matrix));
        s.push(self.rng.state);
        s.extend(self.table.iter().map(|&x| u64::from(x)));
        s.extend(cfg_bits(&a.cfg));
        s.extend(a.gtab.iter().chain(&a.mtab).map(|p| p.addr() as u64));
        s
    }
}

impl VarsArgs {
    fn config(&self) -> *const pcgrad_config {
        self.config.unwrap_or(&self.cfg)
    }
    fn grads(&self) -> *const *mut f32 {
        self.grads.unwrap_or(self.gtab.as_ptr())
    }
    fn merged(&self) -> *const *mut f32 {
        self.merged.unwrap_or(self.mtab.as_ptr())
    }

    fn merge(&self) -> pcgrad_status {
        // SAFETY: as in `FlatArgs::merge`; the pointer tables are owned
        // by `self` and point at the fixture's buffers (or NULL).
        unsafe {
            pcgrad_merge_vars(
                self.config(),
                self.grads().cast::<*const f32>(),
                self.grads_len,
                self.segments,
                self.segments_len,
                self.tasks,
                self.merged(),
                self.merged_len,
                self.stats,
                self.matrix,
                self.matrix_len,
                self.ws,
                self.ws_len,
            )
        }
    }

    fn project(&self) -> pcgrad_status {
        // SAFETY: as in `merge`.
        unsafe {
            pcgrad_project_vars(
                self.config(),
                self.grads(),
                self.grads_len,
                self.segments,
                self.segments_len,
                self.tasks,
                self.merged(),
                self.merged_len,
                self.stats,
                self.matrix,
                self.matrix_len,
                self.ws,
                self.ws_len,
            )
        }
    }
}

// -----------------------------------------------------------------------
// Three-phase fixture: pcgrad_gram_flat, pcgrad_gram_combine,
// pcgrad_coefficients, pcgrad_apply_merged_flat,
// pcgrad_apply_projected_flat. `gram` holds the full Gram and `coef`
// valid coefficients, so every phase can run on its own.

struct PhFx {
    t: usize,
    segs: Vec<usize>,
    hg: Vec<u8>,
    grads: Vec<f32>,
    gram: Vec<f64>,
    partial: Vec<f64>,
    coef: Vec<f64>,
    /// N + 2 floats, so that a too-long `merged_len` stays in bounds.
    merged: Vec<f32>,
    tile: Vec<f64>,
    stats: pcgrad_stats,
    cfg: pcgrad_config,
    rng: Rng,
    table: Vec<u32>,
}

struct PhArgs {
    cfg: pcgrad_config,
    config: Option<*const pcgrad_config>,
    grads: *mut f32,
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
    partial: *const f64,
    partial_len: usize,
    coef: *mut f64,
    coef_len: usize,
    reduction: u32,
    merged: *mut f32,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    tile: *mut f64,
    tile_len: usize,
}

impl PhFx {
    fn new(t: usize, m: M) -> PhFx {
        let hg = mask_bytes(t);
        let grads = grads(t, true);
        let hb: Vec<bool> = hg.iter().map(|&b| b == 1).collect();
        let layout = Layout::new(t, N, &SEGS, &hb).unwrap();
        let mut gram = vec![0.0; 2 * t * t];
        engine::accumulate_gram(&Flat::new(layout, &grads).unwrap(), 0, N, &mut gram).unwrap();
        let mut coef = vec![0.0; engine::coefficients_len(t).unwrap()];
        let mut mode = Mode::Simultaneous;
        engine::coefficients(&gram, t, &mut mode, &mut coef).unwrap();
        PhFx {
            t,
            segs: SEGS.to_vec(),
            hg,
            grads,
            partial: gram.clone(),
            gram,
            coef,
            merged: vec![SENT32; N + 2],
            tile: vec![SENT64; engine::tile_len(t).unwrap()],
            stats: STATS_SENT,
            cfg: config(m, PCGRAD_REDUCTION_MEAN),
            rng: Rng::new(SEED),
            table: order_table(t),
        }
    }
}

impl Fixture for PhFx {
    type Args = PhArgs;
    fn args(&mut self) -> PhArgs {
        let mut cfg = self.cfg;
        cfg.rng = ptr::addr_of_mut!(self.rng);
        cfg.order_table = self.table.as_ptr();
        cfg.order_table_len = self.table.len();
        PhArgs {
            cfg,
            config: None,
            grads: mp(&mut self.grads),
            grads_len: self.grads.len(),
            segments: self.segs.as_ptr(),
            segments_len: self.segs.len(),
            has_grad: self.hg.as_ptr(),
            has_grad_len: self.hg.len(),
            tasks: self.t,
            dim: N,
            lo: 2,
            hi: 11,
            gram: mp(&mut self.gram),
            gram_len: self.gram.len(),
            partial: self.partial.as_ptr(),
            partial_len: self.partial.len(),
            coef: mp(&mut self.coef),
            coef_len: self.coef.len(),
            reduction: PCGRAD_REDUCTION_MEAN,
            merged: mp(&mut self.merged),
            merged_len: 9,
            stats: ptr::addr_of_mut!(self.stats),
            tile: mp(&mut self.tile),
            tile_len: self.tile.len(),
        }
    }
    fn snapshot(&self, a: &PhArgs) -> Vec<u64> {
        let mut s: Vec<u64> = Vec::new();
        s.extend(self.grads.iter().map(|x| u64::from(x.to_bits())));
        s.extend(self.segs.iter().map(|&x| x as u64));
        s.extend(self.hg.iter().map(|&x| u64::from(x)));
        s.extend(bits64(&self.gram));
        s.extend(bits64(&self.partial));
        s.extend(bits64(&self.coef));
        s.extend(self.merged.iter().map(|x| u64::from(x.to_bits())));
        s.extend([
            self.stats.conflicting_pairs as u64,
            self.stats.projections as u64,
        ]);
        s.push(self.rng.state);
        s.extend(self.table.iter().map(|&x| u64::from(x)));
        s.extend(cfg_bits(&a.cfg));
        s
    }
}

// SAFETY (every method): as in `FlatArgs::merge`.
impl PhArgs {
    fn gram_flat(&self) -> pcgrad_status {
        // SAFETY: see the impl.
        unsafe {
            pcgrad_gram_flat(
                self.grads,
                self.grads_len,
                self.segments,
                self.segments_len,
                self.has_grad,
                self.has_grad_len,
                self.tasks,
                self.dim,
                self.lo,
                self.hi,
                self.gram,
                self.gram_len,
            )
        }
    }

    fn combine(&self) -> pcgrad_status {
        // SAFETY: see the impl.
        unsafe {
            pcgrad_gram_combine(
                self.partial,
                self.partial_len,
                self.tasks,
                self.gram,
                self.gram_len,
            )
        }
    }

    fn coefficients(&self) -> pcgrad_status {
        // SAFETY: see the impl.
        unsafe {
            pcgrad_coefficients(
                self.config.unwrap_or(&self.cfg),
                self.gram,
                self.gram_len,
                self.tasks,
                self.stats,
                self.coef,
                self.coef_len,
            )
        }
    }

    fn apply_merged(&self) -> pcgrad_status {
        // SAFETY: see the impl.
        unsafe {
            pcgrad_apply_merged_flat(
                self.grads,
                self.grads_len,
                self.segments,
                self.segments_len,
                self.has_grad,
                self.has_grad_len,
                self.coef,
                self.coef_len,
                self.tasks,
                self.dim,
                self.reduction,
                self.lo,
                self.hi,
                self.merged,
                self.merged_len,
                self.tile,
                self.tile_len,
            )
        }
    }

    fn apply_projected(&self) -> pcgrad_status {
        // SAFETY: see the impl.
        unsafe {
            pcgrad_apply_projected_flat(
                self.grads,
                self.grads_len,
                self.segments,
                self.segments_len,
                self.has_grad,
                self.has_grad_len,
                self.coef,
                self.coef_len,
                self.tasks,
                self.dim,
                self.reduction,
                self.lo,
                self.hi,
                self.merged,
                self.merged_len,
                self.tile,
                self.tile_len,
            )
        }
    }
}

// -----------------------------------------------------------------------
// Pack and unflatten fixtures.

struct PackFx {
    t: usize,
    segs: Vec<usize>,
    cells: Vec<Vec<f32>>,
    out: Vec<f32>,
    hg: Vec<u8>,
}

struct PackArgs {
    vtab: Vec<*const f32>,
    vars: Option<*const *const f32>,
    vars_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
    out: *mut f32,
    out_len: usize,
    has_grad: *mut u8,
    has_grad_len: usize,
}

impl PackFx {
    fn new(t: usize) -> PackFx {
        let v = VarsFx::new(t, M::Fixed, 0);
        PackFx {
            t,
            segs: v.segs,
            cells: v.cells,
            out: vec![SENT32; t * N],
            hg: vec![9; t * S],
        }
    }
}

impl Fixture for PackFx {
    type Args = PackArgs;
    fn args(&mut self) -> PackArgs {
        let vtab: Vec<*const f32> = self.cells.iter().map(|c| cp(c)).collect();
        PackArgs {
            vars: None,
            vars_len: vtab.len(),
            vtab,
            segments: self.segs.as_ptr(),
            segments_len: self.segs.len(),
            tasks: self.t,
            out: mp(&mut self.out),
            out_len: self.out.len(),
            has_grad: mp(&mut self.hg),
            has_grad_len: self.hg.len(),
        }
    }
    fn snapshot(&self, a: &PackArgs) -> Vec<u64> {
        let mut s: Vec<u64> = Vec::new();
        for c in self.cells.iter().chain([&self.out]) {
            s.extend(c.iter().map(|x| u64::from(x.to_bits())));
        }
        s.extend(self.segs.iter().map(|&x| x as u64));
        s.extend(self.hg.iter().map(|&x| u64::from(x)));
        s.extend(a.vtab.iter().map(|p| p.addr() as u64));
        s
    }
}

impl PackArgs {
    fn pack(&self) -> pcgrad_status {
        // SAFETY: as in `FlatArgs::merge`.
        unsafe {
            pcgrad_pack(
                self.vars.unwrap_or(self.vtab.as_ptr()),
                self.vars_len,
                self.segments,
                self.segments_len,
                self.tasks,
                self.out,
                self.out_len,
                self.has_grad,
                self.has_grad_len,
            )
        }
    }
}

struct UnFx {
    segs: Vec<usize>,
    flat: Vec<f32>,
    outs: Vec<Vec<f32>>,
}

struct UnArgs {
    flat: *const f32,
    flat_len: usize,
    segments: *const usize,
    segments_len: usize,
    otab: Vec<*mut f32>,
    outs: Option<*const *mut f32>,
    outs_len: usize,
}

impl UnFx {
    fn new() -> UnFx {
        UnFx {
            segs: SEGS.to_vec(),
            flat: (0..N).map(|c| value(1, c)).collect(),
            outs: SEGS.iter().map(|&l| vec![SENT32; l]).collect(),
        }
    }
}

impl Fixture for UnFx {
    type Args = UnArgs;
    fn args(&mut self) -> UnArgs {
        let otab: Vec<*mut f32> = self.outs.iter_mut().map(mp).collect();
        UnArgs {
            flat: mp(&mut self.flat),
            flat_len: self.flat.len(),
            segments: self.segs.as_ptr(),
            segments_len: self.segs.len(),
            outs: None,
            outs_len: otab.len(),
            otab,
        }
    }
    fn snapshot(&self, a: &UnArgs) -> Vec<u64> {
        let mut s: Vec<u64> = Vec::new();
        for c in self.outs.iter().chain([&self.flat]) {
            s.extend(c.iter().map(|x| u64::from(x.to_bits())));
        }
        s.extend(self.segs.iter().map(|&x| x as u64));
        s.extend(a.otab.iter().map(|p| p.addr() as u64));
        s
    }
}

impl UnArgs {
    fn unflatten(&self) -> pcgrad_status {
        // SAFETY: as in `FlatArgs::merge`.
        unsafe {
            pcgrad_unflatten(
                self.flat,
                self.flat_len,
                self.segments,
                self.segments_len,
                self.outs.unwrap_or(self.otab.as_ptr()),
                self.outs_len,
            )
        }
    }
}

mod calls;
#[cfg(feature = "half")]
mod half;
mod methods;
mod refusals;
mod vars_phases;
