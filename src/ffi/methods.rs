//! The Gram-based methods (`crate::methods`): the method struct, its
//! workspace sizes, phase 2 on a Gram matrix and the one-call aggregation.

use core::ptr;
use core::slice;

use super::check::*;
use super::sizes::*;
use super::types::*;
use super::vars::{pcgrad_merge_vars, split_vars_ws};
use crate::engine::{self, Coefficients, Mode, Order, Reduction};
use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::layout::{PerVariable, SegPos};
use crate::methods::{self, AlignedScale, Method, NashState};
use crate::parallel;
use crate::rng::Rng;

/// `pcgrad_method.kind`: PCGrad (the paper's sequential projection; the
/// method's `config` gives the order, reduction and threads).
pub const PCGRAD_METHOD_PCGRAD: u32 = 0;
/// `pcgrad_method.kind`: PPCGrad (every projection against the original
/// gradients; the method's `config` gives the reduction and threads).
pub const PCGRAD_METHOD_PPCGRAD: u32 = 1;
/// `pcgrad_method.kind`: MGDA (Desideri 2012; Sener and Koltun 2018), the
/// min-norm point of the convex hull of the gradients by Frank-Wolfe
/// (`tol`, `max_iters`).
pub const PCGRAD_METHOD_MGDA: u32 = 2;
/// `pcgrad_method.kind`: UPGrad (Quinton and Rey 2024), the projections of
/// every gradient onto the dual cone, averaged (`reg`).
pub const PCGRAD_METHOD_UPGRAD: u32 = 3;
/// `pcgrad_method.kind`: DualProj (Quinton and Rey 2024), the mean
/// gradient projected onto the dual cone (`reg`).
pub const PCGRAD_METHOD_DUALPROJ: u32 = 4;
/// `pcgrad_method.kind`: CAGrad (Liu et al. 2021) (`c`, `reg`, `tol`,
/// `max_iters`).
pub const PCGRAD_METHOD_CAGRAD: u32 = 5;
/// `pcgrad_method.kind`: IMTL-G (Liu et al. 2021) (`rank_tol`, `eps`).
pub const PCGRAD_METHOD_IMTL_G: u32 = 6;
/// `pcgrad_method.kind`: Aligned-MTL (Senushkin et al. 2023) (`scale`,
/// `rank_tol`).
pub const PCGRAD_METHOD_ALIGNED_MTL: u32 = 7;
/// `pcgrad_method.kind`: Nash-MTL (Navon et al. 2022) (`max_norm`,
/// `update_every`, `max_iters`, `tol`; state `nash_alpha`, `nash_step`).
pub const PCGRAD_METHOD_NASH_MTL: u32 = 8;
/// `pcgrad_method.kind`: GradVac (Wang et al. 2021) (`beta`, `eps`; state
/// `targets`, `rng`).
pub const PCGRAD_METHOD_GRADVAC: u32 = 9;
/// `pcgrad_method.kind`: the mean of the gradients, w = 1/T.
pub const PCGRAD_METHOD_MEAN: u32 = 10;
/// `pcgrad_method.kind`: the sum of the gradients, w = 1.
pub const PCGRAD_METHOD_SUM: u32 = 11;
/// `pcgrad_method.kind`: random loss weighting (Lin et al. 2022), w =
/// softmax of T standard normal draws from `rng`.
pub const PCGRAD_METHOD_RANDOM: u32 = 12;

/// `pcgrad_method.scale` (Aligned-MTL): the smallest kept eigenvalue (the
/// paper's default).
pub const PCGRAD_ALIGNED_SCALE_MIN: u32 = 0;
/// `pcgrad_method.scale` (Aligned-MTL): the (lower) median kept eigenvalue.
pub const PCGRAD_ALIGNED_SCALE_MEDIAN: u32 = 1;
/// `pcgrad_method.scale` (Aligned-MTL): the mean kept eigenvalue
/// (torchjd's `"rmse"`).
pub const PCGRAD_ALIGNED_SCALE_MEAN: u32 = 2;

// The C numbers are the Rust ones (`pcgrad::methods::kind`, `AlignedScale`);
// cbindgen needs literals above.
const _: () = {
    assert!(PCGRAD_METHOD_PCGRAD == methods::kind::PCGRAD);
    assert!(PCGRAD_METHOD_PPCGRAD == methods::kind::PPCGRAD);
    assert!(PCGRAD_METHOD_MGDA == methods::kind::MGDA);
    assert!(PCGRAD_METHOD_UPGRAD == methods::kind::UPGRAD);
    assert!(PCGRAD_METHOD_DUALPROJ == methods::kind::DUALPROJ);
    assert!(PCGRAD_METHOD_CAGRAD == methods::kind::CAGRAD);
    assert!(PCGRAD_METHOD_IMTL_G == methods::kind::IMTL_G);
    assert!(PCGRAD_METHOD_ALIGNED_MTL == methods::kind::ALIGNED_MTL);
    assert!(PCGRAD_METHOD_NASH_MTL == methods::kind::NASH_MTL);
    assert!(PCGRAD_METHOD_GRADVAC == methods::kind::GRADVAC);
    assert!(PCGRAD_METHOD_MEAN == methods::kind::MEAN);
    assert!(PCGRAD_METHOD_SUM == methods::kind::SUM);
    assert!(PCGRAD_METHOD_RANDOM == methods::kind::RANDOM);
    assert!(PCGRAD_ALIGNED_SCALE_MIN == AlignedScale::Min as u32);
    assert!(PCGRAD_ALIGNED_SCALE_MEDIAN == AlignedScale::Median as u32);
    assert!(PCGRAD_ALIGNED_SCALE_MEAN == AlignedScale::Mean as u32);
};

/// A multi-task aggregation method: a plain struct the caller keeps on its
/// stack or in static memory. `kind` is one of the `PCGRAD_METHOD_*`
/// constants (never renumbered); the other fields are the methods'
/// parameters, each read only by the methods named in its doc, where zero
/// means the paper's default (the defaults are the Rust API's, documented
/// in `pcgrad::methods`). A zero-initialised struct is PCGrad with the
/// default config. Parameters that are NaN, negative or out of range give
/// `PCGRAD_ERROR_INVALID_PARAMETER`.
///
/// The state pointers are caller-owned and read only by the methods that
/// use them (otherwise ignored: not checked, not read); a call advances
/// them only when it succeeds. They may not overlap any buffer of the call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pcgrad_method {
    /// `PCGRAD_METHOD_*`.
    pub kind: u32,
    /// MGDA, CAGrad, Nash-MTL: the iteration cap (0 = the default).
    pub max_iters: u32,
    /// Nash-MTL: solve every this many calls (0 = 1).
    pub update_every: u32,
    /// Aligned-MTL: `PCGRAD_ALIGNED_SCALE_*`.
    pub scale: u32,
    /// MGDA, CAGrad, Nash-MTL: the stopping tolerance (0 = the default).
    pub tol: f64,
    /// UPGrad, DualProj, CAGrad: the ridge of the trace-normalised Gram (0
    /// = the default).
    pub reg: f64,
    /// CAGrad: the radius c (0 = 0.4); finite.
    pub c: f64,
    /// IMTL-G, Aligned-MTL: the relative rank tolerance (0 = the default).
    pub rank_tol: f64,
    /// IMTL-G, GradVac: the epsilon (0 = the default).
    pub eps: f64,
    /// GradVac: the EMA decay in (0, 1] (0 = 0.5).
    pub beta: f64,
    /// Nash-MTL: the norm clip (0 = 1; infinity disables it).
    pub max_norm: f64,
    /// PCGrad, PPCGrad: the config (mode, order, reduction, finiteness
    /// check, threads); NULL = the zero config (with the simultaneous mode
    /// for PPCGrad). Its `mode` must agree with
    /// `kind` (sequential for PCGrad, simultaneous for PPCGrad), else
    /// `PCGRAD_ERROR_INVALID_ENUM`.
    pub config: *const pcgrad_config,
    /// Random, GradVac: the PRNG, advanced on success (required).
    pub rng: *mut Rng,
    /// GradVac: the T x T EMA targets, row-major, zeros at the start
    /// (required, finite).
    pub targets: *mut f64,
    /// The number of entries of `targets`: T * T.
    pub targets_len: usize,
    /// Nash-MTL: the last solution, T doubles, zeros at the start
    /// (required).
    pub nash_alpha: *mut f64,
    /// The number of entries of `nash_alpha`: T.
    pub nash_alpha_len: usize,
    /// Nash-MTL: the call counter, 0 at the start (required).
    pub nash_step: *mut u64,
}

/// A validated method, copied out of the caller's struct.
struct MethodArgs {
    raw: pcgrad_method,
    cfg: Option<Config>,
}

impl MethodArgs {
    /// Reads and checks the struct: the kind, enum fields and the pointers
    /// the kind uses. The parameters' values and the state's lengths and
    /// contents are checked by the core.
    fn read(method: *const pcgrad_method, tasks: usize) -> Result<MethodArgs> {
        req(method, 1)?;
        // SAFETY: non-NULL and aligned (checked above); the caller promises
        // it points at a `pcgrad_method`, every field of which is a plain
        // number or pointer, valid for any bit pattern.
        let raw = unsafe { ptr::read(method) };
        let mut cfg = None;
        match raw.kind {
            PCGRAD_METHOD_PCGRAD | PCGRAD_METHOD_PPCGRAD => {
                let c = if raw.config.is_null() {
                    Config::check(pcgrad_config {
                        mode: if raw.kind == PCGRAD_METHOD_PPCGRAD {
                            PCGRAD_MODE_SIMULTANEOUS
                        } else {
                            PCGRAD_MODE_SEQUENTIAL
                        },
                        order: PCGRAD_ORDER_FIXED,
                        reduction: PCGRAD_REDUCTION_MEAN,
                        check_finite: 0,
                        matrix: PCGRAD_MATRIX_GRAM,
                        threads: 0,
                        order_table: ptr::null(),
                        order_table_len: 0,
                        rng: ptr::null_mut(),
                    })?
                } else {
                    Config::read(raw.config, tasks)?
                };
                let simultaneous = c.raw.mode == PCGRAD_MODE_SIMULTANEOUS;
                if simultaneous != (raw.kind == PCGRAD_METHOD_PPCGRAD) {
                    return Err(Error::InvalidEnum);
                }
                cfg = Some(c);
            }
            PCGRAD_METHOD_ALIGNED_MTL if raw.scale > PCGRAD_ALIGNED_SCALE_MEAN => {
                return Err(Error::InvalidEnum)
            }
            PCGRAD_METHOD_RANDOM => req(raw.rng, 1)?,
            PCGRAD_METHOD_GRADVAC => {
                req(raw.rng, 1)?;
                req(raw.targets, raw.targets_len)?;
            }
            PCGRAD_METHOD_NASH_MTL => {
                req(raw.nash_alpha, raw.nash_alpha_len)?;
                req(raw.nash_step, 1)?;
            }
            k if k > PCGRAD_METHOD_RANDOM => return Err(Error::InvalidEnum),
            _ => {}
        }
        Ok(MethodArgs { raw, cfg })
    }

    /// The regions the method reads: the struct, the config and its order
    /// table.
    fn inputs(&self, method: *const pcgrad_method) -> [Span; 3] {
        let [c0, c1] = match &self.cfg {
            Some(c) if !self.raw.config.is_null() => c.inputs(self.raw.config),
            _ => [Span::EMPTY; 2],
        };
        [Span::of(method, 1), c0, c1]
    }

    /// The regions the method writes: its state.
    fn outputs(&self) -> [Span; 4] {
        let r = &self.raw;
        match r.kind {
            PCGRAD_METHOD_PCGRAD | PCGRAD_METHOD_PPCGRAD => {
                let o = self.cfg.as_ref().map_or(Span::EMPTY, |c| c.output());
                [o, Span::EMPTY, Span::EMPTY, Span::EMPTY]
            }
            PCGRAD_METHOD_RANDOM => [Span::of(r.rng, 1), Span::EMPTY, Span::EMPTY, Span::EMPTY],
            PCGRAD_METHOD_GRADVAC => [
                Span::of(r.rng, 1),
                Span::of(r.targets, r.targets_len),
                Span::EMPTY,
                Span::EMPTY,
            ],
            PCGRAD_METHOD_NASH_MTL => [
                Span::of(r.nash_alpha, r.nash_alpha_len),
                Span::of(r.nash_step, 1),
                Span::EMPTY,
                Span::EMPTY,
            ],
            _ => [Span::EMPTY; 4],
        }
    }

    /// Runs `f` on the Rust method, then writes back the Nash-MTL step
    /// counter when `f` succeeds.
    ///
    /// # Safety
    ///
    /// The state buffers passed [`MethodArgs::read`] and the overlap checks
    /// of the call, and nothing else references them during `f`.
    unsafe fn with<R>(&self, f: impl FnOnce(&mut Method<'_>) -> Result<R>) -> Result<R> {
        let r = &self.raw;
        // SAFETY: for every kind, the pointers it uses passed `req` (non-NULL,
        // aligned, in range) and are disjoint from every other buffer of the
        // call, so each reference below is the only one to its buffer.
        unsafe {
            let mut m = match r.kind {
                PCGRAD_METHOD_PCGRAD | PCGRAD_METHOD_PPCGRAD => {
                    let cfg = self.cfg.as_ref().ok_or(Error::InvalidEnum)?;
                    Method::PcGrad(cfg.pcgrad())
                }
                PCGRAD_METHOD_MGDA => Method::Mgda(methods::Mgda {
                    tol: r.tol,
                    max_iters: r.max_iters,
                }),
                PCGRAD_METHOD_UPGRAD => Method::UpGrad(methods::DualCone { reg: r.reg }),
                PCGRAD_METHOD_DUALPROJ => Method::DualProj(methods::DualCone { reg: r.reg }),
                PCGRAD_METHOD_CAGRAD => Method::CaGrad(methods::CaGrad {
                    c: r.c,
                    reg: r.reg,
                    tol: r.tol,
                    max_iters: r.max_iters,
                }),
                PCGRAD_METHOD_IMTL_G => Method::ImtlG(methods::ImtlG {
                    rank_tol: r.rank_tol,
                    eps: r.eps,
                }),
                PCGRAD_METHOD_ALIGNED_MTL => Method::AlignedMtl(methods::AlignedMtl {
                    scale: match r.scale {
                        PCGRAD_ALIGNED_SCALE_MIN => AlignedScale::Min,
                        PCGRAD_ALIGNED_SCALE_MEDIAN => AlignedScale::Median,
                        _ => AlignedScale::Mean,
                    },
                    rank_tol: r.rank_tol,
                }),
                PCGRAD_METHOD_NASH_MTL => Method::NashMtl(
                    methods::NashMtl {
                        max_norm: r.max_norm,
                        update_every: r.update_every,
                        max_iters: r.max_iters,
                        tol: r.tol,
                    },
                    NashState {
                        alpha: view_mut(r.nash_alpha, r.nash_alpha_len),
                        step: *r.nash_step,
                    },
                ),
                PCGRAD_METHOD_GRADVAC => Method::GradVac(
                    methods::GradVac {
                        beta: r.beta,
                        eps: r.eps,
                    },
                    view_mut(r.targets, r.targets_len),
                    &mut *r.rng,
                ),
                PCGRAD_METHOD_MEAN => Method::Mean,
                PCGRAD_METHOD_SUM => Method::Sum,
                PCGRAD_METHOD_RANDOM => Method::Random(&mut *r.rng),
                _ => return Err(Error::InvalidEnum),
            };
            let out = f(&mut m)?;
            if let Method::NashMtl(_, st) = &m {
                *r.nash_step = st.step;
            }
            Ok(out)
        }
    }

    /// The Rust method with empty state, for the size queries (which do not
    /// depend on the state).
    fn sized<R>(&self, f: impl FnOnce(&Method<'_>) -> Result<R>) -> Result<R> {
        let mut rng = Rng::new(0);
        let mut none: [f64; 0] = [];
        let r = &self.raw;
        let m = match r.kind {
            PCGRAD_METHOD_PCGRAD => {
                Method::PcGrad(crate::PcGrad::with_mode(Mode::Sequential(Order::Fixed)))
            }
            PCGRAD_METHOD_PPCGRAD => Method::PcGrad(crate::PcGrad::with_mode(Mode::Simultaneous)),
            PCGRAD_METHOD_RANDOM => Method::Random(&mut rng),
            PCGRAD_METHOD_GRADVAC => {
                Method::GradVac(methods::GradVac::default(), &mut none, &mut rng)
            }
            PCGRAD_METHOD_NASH_MTL => {
                Method::NashMtl(methods::NashMtl::default(), NashState::new(&mut none))
            }
            PCGRAD_METHOD_MGDA => Method::Mgda(Default::default()),
            PCGRAD_METHOD_UPGRAD => Method::UpGrad(Default::default()),
            PCGRAD_METHOD_DUALPROJ => Method::DualProj(Default::default()),
            PCGRAD_METHOD_CAGRAD => Method::CaGrad(Default::default()),
            PCGRAD_METHOD_IMTL_G => Method::ImtlG(Default::default()),
            PCGRAD_METHOD_ALIGNED_MTL => Method::AlignedMtl(Default::default()),
            PCGRAD_METHOD_MEAN => Method::Mean,
            PCGRAD_METHOD_SUM => Method::Sum,
            _ => return Err(Error::InvalidEnum),
        };
        f(&m)
    }
}

/// Checks the kind and enum fields of a method for a size query (no state
/// pointer or config is read).
fn read_kind(method: *const pcgrad_method) -> Result<MethodArgs> {
    req(method, 1)?;
    // SAFETY: as in `MethodArgs::read`.
    let raw = unsafe { ptr::read(method) };
    if raw.kind > PCGRAD_METHOD_RANDOM
        || (raw.kind == PCGRAD_METHOD_ALIGNED_MTL && raw.scale > PCGRAD_ALIGNED_SCALE_MEAN)
    {
        return Err(Error::InvalidEnum);
    }
    Ok(MethodArgs { raw, cfg: None })
}

/// Writes to `*out` the doubles of workspace `pcgrad_method_weights` needs
/// for `*method` on T tasks (at most 3 T^2 + 8 T; `PCGRAD_ERROR_OVERFLOW`
/// when that does not fit `size_t`). Only `kind` (and `scale`) are read.
///
/// # Safety
///
/// `method` and `out` are NULL or valid for one element each.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_method_workspace_len(
    method: *const pcgrad_method,
    tasks: usize,
    out: *mut usize,
) -> pcgrad_status {
    status((|| {
        let m = read_kind(method)?;
        req(out, 1)?;
        let n = m.sized(|m| methods::method_workspace_len(m, tasks))?;
        // SAFETY: `out` passed `req`.
        unsafe { out.write(n) };
        Ok(())
    })())
}

/// The workspace of `pcgrad_aggregate_vars`: `pcgrad_workspace_len_vars(T,
/// S)` plus `pcgrad_method_workspace_len`.
fn aggregate_len_vars(m: &MethodArgs, tasks: usize, vars: usize) -> Result<usize> {
    let extra = m.sized(|k| methods::method_workspace_len(k, tasks))?;
    workspace_len_vars(tasks, vars)?
        .checked_add(extra)
        .ok_or(Error::Overflow)
}

/// Writes to `*out` the doubles of workspace `pcgrad_aggregate_vars` needs
/// for `*method` on T tasks and S variables: `pcgrad_workspace_len_vars(T,
/// S)` plus `pcgrad_method_workspace_len`.
///
/// # Safety
///
/// As `pcgrad_method_workspace_len`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_aggregate_workspace_len_vars(
    method: *const pcgrad_method,
    tasks: usize,
    vars: usize,
    out: *mut usize,
) -> pcgrad_status {
    status((|| {
        let m = read_kind(method)?;
        req(out, 1)?;
        let n = aggregate_len_vars(&m, tasks, vars)?;
        // SAFETY: `out` passed `req`.
        unsafe { out.write(n) };
        Ok(())
    })())
}

/// Writes to `*out` the doubles of workspace `pcgrad_aggregate_flat` needs
/// for `*method` on T tasks: `pcgrad_workspace_len(T)` plus
/// `pcgrad_method_workspace_len`.
///
/// # Safety
///
/// As `pcgrad_method_workspace_len`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_aggregate_workspace_len(
    method: *const pcgrad_method,
    tasks: usize,
    out: *mut usize,
) -> pcgrad_status {
    status((|| {
        let m = read_kind(method)?;
        req(out, 1)?;
        let n = m.sized(|m| methods::aggregate_workspace_len(m, tasks))?;
        // SAFETY: `out` passed `req`.
        unsafe { out.write(n) };
        Ok(())
    })())
}

/// Phase 2 of a method: writes the T weights w of the method's update
/// `sum_j w_j g_j` (the paper's own scale) from the T x T Gram matrix
/// `gram` (row-major, `gram_len` = T * T, only the upper triangle read;
/// for example the output of `pcgrad_gram_flat`). For PCGrad / PPCGrad
/// the weights are the column sums of the projection coefficients (the
/// config's reduction is applied by the apply pass, not here).
///
/// A Gram matrix with NaN or infinity is `PCGRAD_ERROR_NON_FINITE`, one
/// that no gradients have `PCGRAD_ERROR_NOT_PSD`; a T whose workspace size
/// overflows is `PCGRAD_ERROR_OVERFLOW`. On error neither `weights` nor the
/// method's state is written.
///
/// # Safety
///
/// Every non-NULL pointer (and every state pointer of `*method` its kind
/// uses) points at the number of elements its length says, valid for the
/// duration of the call.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_method_weights(
    method: *const pcgrad_method,
    gram: *const f64,
    gram_len: usize,
    tasks: usize,
    weights: *mut f64,
    weights_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    status((|| {
        let m = MethodArgs::read(method, tasks)?;
        req(gram, gram_len)?;
        req(weights, weights_len)?;
        if Some(gram_len) != tasks.checked_mul(tasks) || weights_len != tasks {
            return Err(Error::LengthMismatch);
        }
        let need = m.sized(|k| methods::method_workspace_len(k, tasks))?;
        check_workspace(workspace, workspace_len, need)?;
        let ([m0, m1, m2], [o0, o1, o2, o3]) = (m.inputs(method), m.outputs());
        let outs = [
            Span::of(weights, weights_len),
            Span::of(workspace, workspace_len),
            o0,
            o1,
            o2,
            o3,
        ];
        disjoint_fixed(&outs, &[m0, m1, m2, Span::of(gram, gram_len)])?;
        // SAFETY: every buffer passed `req` for its length and the outputs
        // (weights, workspace, the method's state) are disjoint from each
        // other and from the inputs, so no mutable slice aliases another.
        unsafe {
            let (g, w, ws) = (
                view(gram, gram_len),
                view_mut(weights, weights_len),
                view_mut(workspace, workspace_len),
            );
            m.with(|k| methods::method_weights(k, g, tasks, w, ws))
        }
    })())
}

/// One call of a method on a contiguous row-major T x N gradient buffer:
/// the Gram pass, `pcgrad_method_weights` and the apply pass, writing the
/// merged gradient `sum_j w_j g_j` (N floats) into `merged`; the gradients
/// are only read. `segments`, `has_grad` as in `pcgrad_merge_flat`.
/// `workspace` holds at least `pcgrad_aggregate_workspace_len` doubles;
/// after the call it starts with the Gram matrix (T * T doubles).
///
/// For PCGrad / PPCGrad this is `pcgrad_merge_flat` with the method's
/// config (bitwise). For the other methods no reduction applies, the
/// passes run on one thread and non-finite gradients are refused
/// (`PCGRAD_ERROR_NON_FINITE`). On error nothing but the workspace is
/// written (neither `merged` nor the method's state).
///
/// # Safety
///
/// As `pcgrad_method_weights`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_aggregate_flat(
    method: *const pcgrad_method,
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
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    status((|| {
        let m = MethodArgs::read(method, tasks)?;
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
        if merged_len != dim {
            return Err(Error::LengthMismatch);
        }
        let need = m.sized(|k| methods::aggregate_workspace_len(k, tasks))?;
        check_workspace(workspace, workspace_len, need)?;
        let ([m0, m1, m2], [o0, o1, o2, o3], [s0, s1]) = (m.inputs(method), m.outputs(), f.shape());
        let outs = [
            Span::of(merged, merged_len),
            Span::of(workspace, workspace_len),
            o0,
            o1,
            o2,
            o3,
        ];
        disjoint_fixed(&outs, &[m0, m1, m2, f.grads(), s0, s1])?;
        // SAFETY: every buffer passed `req`/`opt` for its length and the
        // outputs are disjoint from each other and from the inputs, so no
        // mutable slice below aliases another slice.
        unsafe {
            let flat = f.flat()?;
            let (out, ws) = (
                view_mut(merged, merged_len),
                view_mut(workspace, workspace_len),
            );
            m.with(|k| methods::aggregate(k, &flat, out, ws))
        }
    })())
}

/// One call of a method on per-variable gradients (`grads[t * S + s]`
/// task t's buffer for variable s, NULL where the task has none, as
/// `pcgrad_merge_vars`), writing each variable's merged gradient
/// `sum_j w_j g_j` into `merged[s]`. `workspace` holds at least
/// `pcgrad_aggregate_workspace_len_vars(T, S)` doubles.
///
/// For PCGrad / PPCGrad this is `pcgrad_merge_vars` with the method's
/// config. For the other methods no reduction applies, the passes run on
/// one thread and non-finite gradients are refused. On error nothing but
/// the workspace is written (neither `merged` nor the method's state).
///
/// # Safety
///
/// As `pcgrad_merge_vars`, and the state pointers of `*method` its kind
/// uses point at the elements their lengths say.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_aggregate_vars(
    method: *const pcgrad_method,
    grads: *const *const f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
    merged: *const *mut f32,
    merged_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    status((|| {
        let m = MethodArgs::read(method, tasks)?;
        // SAFETY: the caller promises the table lengths.
        let g = unsafe { VarsArgs::check(grads, grads_len, segments, segments_len, tasks)? };
        req(merged, merged_len)?;
        let s = g.segs.len();
        if merged_len != s {
            return Err(Error::LengthMismatch);
        }
        let need = aggregate_len_vars(&m, tasks, s)?;
        check_workspace(workspace, workspace_len, need)?;
        if let Some(cfg) = &m.cfg {
            let local = cfg.raw;
            let c: *const pcgrad_config = if m.raw.config.is_null() {
                &local
            } else {
                m.raw.config
            };
            // SAFETY: forwarded to the caller; `c` is the caller's config
            // or a local copy of the default.
            return status_result(unsafe {
                pcgrad_merge_vars(
                    c,
                    grads,
                    grads_len,
                    segments,
                    segments_len,
                    tasks,
                    merged,
                    merged_len,
                    ptr::null_mut(),
                    ptr::null_mut(),
                    0,
                    workspace,
                    workspace_len,
                )
            });
        }
        // SAFETY: `merged` passed `req` for S pointers.
        let outs_ptrs = unsafe { outs_table(merged, s, g.segs)? };
        let ([m0, m1, m2], [o0, o1, o2, o3], [t0, t1]) =
            (m.inputs(method), m.outputs(), g.tables());
        let fixed_outs = [Span::of(workspace, workspace_len), o0, o1, o2, o3];
        let fixed_ins = [m0, m1, m2, t0, t1, Span::of(merged, merged_len)];
        // The workspace holds the output spans while they are checked:
        // first make sure that writing it changes no table.
        disjoint_fixed(&fixed_outs, &fixed_ins)?;
        let all_outs = fixed_outs.into_iter().chain(out_spans(outs_ptrs, g.segs));
        // SAFETY: the workspace passed `req` and is disjoint from the
        // tables the spans are read from.
        let outs = unsafe { spans_in(workspace, workspace_len, all_outs)? };
        disjoint(outs, &mut fixed_ins.into_iter().chain(g.buffers()))?;
        // SAFETY: every buffer passed `req`/`opt` for its length; the
        // outputs (each merged buffer, the workspace, the method's state)
        // are disjoint from each other and from every input, so no mutable
        // slice below aliases another slice.
        unsafe {
            let base = need - vars_extra(tasks * s, s)?;
            let (vs, segs) = (g.vars, g.segs);
            let (ws, tab, mask) = split_vars_ws(workspace, base, vs.len(), |c| {
                let p = vs[c];
                if p.is_null() {
                    None
                } else {
                    Some(slice::from_raw_parts(p, segs[c % s]))
                }
            });
            let pg = PerVariable::new(tasks, segs, &*tab, mask)?;
            let t = tasks;
            let gl = engine::gram_workspace_len(t)?;
            let cl = engine::coefficients_len(t)?;
            let tl = engine::tile_len(t)?;
            let (gram, rest) = ws.split_at_mut(gl);
            let (coef_ws, rest) = rest.split_at_mut(cl);
            let (tile, rest) = rest.split_at_mut(tl);
            gram.fill(0.0);
            parallel::accumulate_gram(&pg, gram, 1)?;
            let (a, b) = coef_ws.split_at_mut(t * t);
            a.fill(0.0);
            m.with(|k| methods::method_weights(k, &gram[..t * t], t, &mut b[..t], rest))?;
            let coef = Coefficients::from_workspace(t, coef_ws)?;
            let mut lo = 0;
            for (k, &len) in segs.iter().enumerate() {
                let out = view_mut(outs_ptrs[k], len);
                let (at, red) = (SegPos { s: k, base: lo }, Reduction::Sum);
                engine::apply_merged_with(
                    Kernels::best(),
                    &pg,
                    &coef,
                    red,
                    at,
                    lo,
                    lo + len,
                    out,
                    tile,
                )?;
                lo += len;
            }
            Ok(())
        }
    })())
}

/// A status as a `Result`, to return a nested call's status.
fn status_result(s: pcgrad_status) -> Result<()> {
    match Error::from_code(s as i32) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
