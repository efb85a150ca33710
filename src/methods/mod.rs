//! Gram-based aggregators beyond PCGrad: the multi-task methods whose update
//! is a linear combination sum_j w_j g_j of the task gradients with weights
//! w computed from the T x T Gram matrix G = J J^T alone.
//!
//! Every method here is a *phase 2* on the existing engine: the Gram pass
//! ([`engine::accumulate_gram`]), then [`method_weights`] (O(T^2) to
//! O(T^4) scalar work on G in caller workspace), then the existing apply
//! pass with b_j = w_j and no reduction (every task's gradient weighs w_j
//! on every coordinate). [`aggregate`] runs the three in one call.
//!
//! The weights have each method's own scale, the one of torchjd's
//! `Weighting` (`SimplexLab/TorchJD`, `src/torchjd/aggregation/`): the
//! update is exactly `weights @ J`. Where this crate differs from torchjd
//! the method's documentation says so and why; the main difference is
//! common to all: **every method first divides G by its trace** (computed
//! without overflow), which changes no weight (each method's weights are
//! invariant to the scale of G) but makes every tolerance relative, so
//! Grams from 1e-30 to 1e30 (and beyond) give the same weights. torchjd
//! applies some absolute thresholds (`norm_eps = 1e-4` on the trace in its
//! QP projector and CAGrad, `1e-12` in IMTL-G) that this crate does not.
//!
//! # Conventions shared by every method
//!
//! - Only the upper triangle (i <= j) of G is read; G must be finite
//!   ([`Error::NonFinite`]) and pass the PSD checks of [`PSD_TOL`]
//!   ([`Error::NotPsd`]).
//! - Parameters are plain numbers where **zero means the paper's (or
//!   torchjd's) default**, the convention of the C struct `pcgrad_method`;
//!   negative or out-of-range values are [`Error::InvalidParameter`].
//! - A failed call writes nothing to `weights` or to any caller state (PRNG,
//!   GradVac targets, Nash-MTL iterate); only the scratch workspace.
//! - Finite input gives finite weights. When every gradient is zero
//!   (G = 0) every update is zero whatever the weights; each method
//!   documents the weights it returns then.
//!
//! # Example
//!
//! ```
//! use pcgrad::methods::{aggregate, aggregate_workspace_len, Method};
//! use pcgrad::{Flat, Layout};
//!
//! let grads = [1.0f32, 0.0, 1.0, /* task 1 */ -1.0, 1.0, 0.0];
//! let g = Flat::new(Layout::dense(2, 3)?, &grads)?;
//! let mut method = Method::UpGrad(Default::default());
//! let mut ws = [0.0f64; 256];
//! assert!(ws.len() >= aggregate_workspace_len(&method, 2)?);
//! let mut merged = [0.0f32; 3];
//! aggregate(&mut method, &g, &mut merged, &mut ws)?;
//! // UPGrad's update conflicts with no task.
//! assert!(merged.iter().zip(&grads[..3]).map(|(a, b)| a * b).sum::<f32>() >= 0.0);
//! assert!(merged.iter().zip(&grads[3..]).map(|(a, b)| a * b).sum::<f32>() >= 0.0);
//! # Ok::<(), pcgrad::Error>(())
//! ```

// Dense linear algebra reads best with explicit indices, and the negated
// comparisons are deliberate: `!(x > tol)` also catches NaN.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

mod linalg;
mod qp;
mod simplex;
mod spectral;
mod stateful;

pub use linalg::{JACOBI_SWEEPS, PSD_TOL};
pub use qp::qp_iterations;
pub use stateful::NashState;

use crate::api::{workspace_len, PcGrad};
use crate::engine::{self, Coefficients, Reduction};
use crate::error::{Error, Result};
use crate::kernels::Element;
use crate::layout::Gradients;
use crate::parallel;
use crate::rng::Rng;

/// MGDA's parameters (Frank-Wolfe on the simplex).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Mgda {
    /// Stop when the Frank-Wolfe step gamma falls below this (0 = 1e-3,
    /// torchjd's `epsilon`). Must not be negative.
    pub tol: f64,
    /// Iteration cap (0 = 100, torchjd's `max_iters`).
    pub max_iters: u32,
}

/// The parameters of the two dual-cone projections, UPGrad and DualProj.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DualCone {
    /// The ridge added to the trace-normalised Gram, H = G / tr(G) + reg I,
    /// which makes the QP strictly convex on rank-deficient G (0 = 1e-4,
    /// torchjd's `reg_eps` of its quadprog projector). Must not be negative.
    pub reg: f64,
}

/// CAGrad's parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CaGrad {
    /// The radius of the ball around the mean gradient, relative to its
    /// norm (0 = 0.4, the paper's setting on NYU-v2 and the official code's
    /// default; torchjd has no default). Must not be negative.
    pub c: f64,
    /// The ridge of H = G / tr(G) + reg I on which the problem is solved,
    /// so that |g_w| > 0 and the solution is unique (0 = 1e-8). Must not
    /// be negative.
    pub reg: f64,
    /// Relative width of the bracket on the multiplier lambda at which the
    /// bisection stops (0 = 1e-12). Must not be negative.
    pub tol: f64,
    /// Bisection steps at most (0 = 200).
    pub max_iters: u32,
}

/// IMTL-G's parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ImtlG {
    /// Eigenvalues of G at most `rank_tol * lambda_max` count as zero in
    /// the pseudo-inverse (0 = T * 2^-52, the default `rtol` of
    /// `torch.linalg.pinv` in float64). Must not be negative.
    pub rank_tol: f64,
    /// The weights are zero when |sum_i v_i| <= `eps` * sum_i |v_i| (0 =
    /// 1e-12). Must not be negative.
    pub eps: f64,
}

/// How Aligned-MTL scales its balance transformation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u32)]
pub enum AlignedScale {
    /// The smallest kept eigenvalue (the paper's and torchjd's default).
    #[default]
    Min = 0,
    /// The median kept eigenvalue (the lower median for an even count, as
    /// `torch.median`).
    Median = 1,
    /// The mean kept eigenvalue (torchjd's `"rmse"`, the original code's).
    Mean = 2,
}

/// Aligned-MTL's parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AlignedMtl {
    /// The scale of the balance transformation.
    pub scale: AlignedScale,
    /// Eigenvalues of G at most `rank_tol * lambda_max` are dropped (0 =
    /// T * 2^-23, torchjd's `len(M) * torch.finfo().eps` with the default
    /// float32 dtype). Must not be negative.
    pub rank_tol: f64,
}

/// GradVac's parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GradVac {
    /// The EMA decay of the targets, in (0, 1] (0 = 0.5, torchjd's
    /// default; the paper's 0.01 must be asked for).
    pub beta: f64,
    /// Added to the denominators, on the trace-normalised Gram (0 = 1e-8,
    /// torchjd's `eps`). Must not be negative.
    pub eps: f64,
}

/// Nash-MTL's parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NashMtl {
    /// When |J^T alpha| exceeds this, alpha is scaled down to it (0 = 1.0,
    /// torchjd's `max_norm`; `f64::INFINITY` disables the clipping). Must
    /// not be negative.
    pub max_norm: f64,
    /// Solve for new weights every this many calls and reuse the last ones
    /// in between (0 = 1, torchjd's `update_weights_every`).
    pub update_every: u32,
    /// Newton iterations per solve (0 = 20, torchjd's `optim_niter`).
    pub max_iters: u32,
    /// Stop when the squared Newton decrement falls below this (0 = 1e-20).
    /// Must not be negative.
    pub tol: f64,
}

/// A multi-task aggregation method: how phase 2 turns the Gram matrix into
/// the weights of the update `sum_j w_j g_j`.
///
/// The stateful methods borrow their caller-owned state (a PRNG, the
/// GradVac targets, the Nash-MTL iterate), which advances only when a call
/// succeeds.
#[derive(Debug)]
pub enum Method<'a> {
    /// PCGrad or PPCGrad exactly as [`PcGrad`] computes them (bitwise the
    /// same merged gradient from [`aggregate`] as from [`PcGrad::merge`]):
    /// the weights are the column sums b of the projection coefficients,
    /// and the merged gradient applies the configuration's reduction.
    PcGrad(PcGrad<'a>),
    /// MGDA (Desideri, "Multiple-gradient descent algorithm (MGDA) for
    /// multiobjective optimization", C. R. Math. 2012; Sener and Koltun,
    /// "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018,
    /// Algorithm 2): w = argmin over the simplex of w^T G w, the min-norm
    /// point of the convex hull of the gradients (weights sum to 1).
    ///
    /// Solved as in the paper and torchjd: Frank-Wolfe from w = 1/T; at
    /// each step t = argmin_i (G w)_i, the exact line search on the segment
    /// to e_t (gamma = 1 when G_tt <= w^T G e_t, 0 when w^T G w <=
    /// w^T G e_t, else (w^T G w - w^T G e_t) / (w^T G w + G_tt - 2 w^T G
    /// e_t)), w = (1 - gamma) w + gamma e_t, stopping once gamma <
    /// [`Mgda::tol`] or after [`Mgda::max_iters`] steps. For T = 2 the
    /// exact minimiser is returned directly (gamma on the segment in closed
    /// form; 1/2 each for identical gradients). A zero gradient g_k makes
    /// e_k optimal (the common descent direction is zero). For G = 0 the
    /// weights are 1/T (torchjd returns e_0; the update is zero either way).
    Mgda(Mgda),
    /// UPGrad (Quinton and Rey, "Jacobian Descent for Multi-Objective
    /// Optimization", 2024): each g_i projected onto the dual cone of the
    /// gradients, the projections summed with preference 1/T. By their
    /// Proposition 1 the projection of J^T u has weights
    /// v(u) = argmin_v v^T H v subject to v >= u; UPGrad's weights are
    /// sum_i v(e_i / T), with H = G / tr(G) + reg I ([`DualCone::reg`], as
    /// torchjd's projector; the update then conflicts with no task, up to
    /// reg). Each QP is solved exactly by block principal pivoting, warm
    /// started from the previous one's free set (see [`qp_iterations`]).
    /// For G = 0 the weights are 1/T.
    UpGrad(DualCone),
    /// DualProj (the same paper, after Lopez-Paz and Ranzato, "Gradient
    /// Episodic Memory for Continual Learning", 2017, eq. 11): the mean
    /// gradient projected onto the dual cone, w = v(1/T) with the QP of
    /// [`Method::UpGrad`]. For G = 0 the weights are 1/T.
    DualProj(DualCone),
    /// CAGrad (Liu et al., "Conflict-Averse Gradient Descent for
    /// Multi-task Learning", NeurIPS 2021, Algorithm 1), in torchjd's
    /// Gram form: with H = G / tr(G) + reg I ([`CaGrad::reg`]),
    /// u = 1/T, |g_0| = sqrt(u^T H u), phi = c |g_0| and
    /// |g_w| = sqrt(w^T H w), w = argmin over the simplex of
    /// w^T H u + phi |g_w|, and the weights are u + (phi / |g_w|) w.
    ///
    /// Solved exactly (torchjd calls cvxpy/Clarabel, the paper scipy's
    /// SLSQP): the optimum is the simplex QP
    /// argmin w^T H u + (lam / 2) w^T H w at the lam where
    /// lam |g_w(lam)| = phi, found by geometric bisection on lam
    /// ([`CaGrad::tol`], [`CaGrad::max_iters`]) with each QP solved by
    /// block principal pivoting. The ridge keeps |g_w| >= sqrt(reg / T),
    /// so where torchjd returns zero weights (|g_w| < 1e-4, the hull of
    /// the gradients touching 0) this crate returns the ridge's solution.
    /// For G = 0 or a zero mean gradient the weights are 1/T.
    CaGrad(CaGrad),
    /// IMTL-G (Liu et al., "Towards Impartial Multi-task Learning", ICLR
    /// 2021), in the generalisation of Quinton and Rey (2024) that torchjd
    /// implements: with d_i = sqrt(G_ii) and v = G^+ d (the pseudo-inverse
    /// from the Jacobi eigendecomposition, [`ImtlG::rank_tol`]),
    /// w = v / sum(v), or w = 0 when sum(v) vanishes ([`ImtlG::eps`];
    /// G = 0 gives w = 0, as torchjd).
    ImtlG(ImtlG),
    /// Aligned-MTL (Senushkin et al., "Independent Component Alignment for
    /// Multi-Task Learning", CVPR 2023, Algorithm 1), as torchjd: with the
    /// eigendecomposition G = V diag(lambda) V^T (cyclic Jacobi, no LAPACK)
    /// restricted to the R eigenvalues above `rank_tol * lambda_max`,
    /// B = sqrt(sigma) V_R diag(lambda_R)^(-1/2) V_R^T, sigma from
    /// [`AlignedMtl::scale`], and w = B 1/T. R = 0 (G = 0) gives B = I,
    /// w = 1/T.
    AlignedMtl(AlignedMtl),
    /// Nash-MTL (Navon et al., "Multi-Task Learning as a Bargaining Game",
    /// ICML 2022): the bargaining solution alpha > 0 of
    /// (G alpha)_i = 1 / alpha_i on G normalised by its Frobenius norm (as
    /// torchjd and the official code), then clipped to
    /// |J^T alpha| <= [`NashMtl::max_norm`]. The paper reaches it by a
    /// sequence of convex programs (CCP, via cvxpy); this crate solves the
    /// same equation as the stationary point of the strictly convex
    /// alpha^T G alpha / 2 - sum_i ln alpha_i by damped Newton steps (a
    /// backtracking line search that keeps alpha > 0), warm started from
    /// the caller's [`NashState`]. When a positive combination of the
    /// gradients vanishes (opposite or zero gradients) the equation has no
    /// solution and the iterate after [`NashMtl::max_iters`] steps is
    /// returned (finite). G = 0 gives w = 0.
    NashMtl(NashMtl, NashState<'a>),
    /// GradVac (Wang et al., "Gradient Vaccine: Investigating and Improving
    /// Multi-task Optimization in Massively Multilingual Models", ICLR
    /// 2021), on G as torchjd: for each task i, with g_i' = sum_k C_ik g_k
    /// starting at g_i, visit the other tasks j in a random order (drawn
    /// from the PRNG); phi = g_i'.g_j / (|g_i'| |g_j| + eps); when phi is
    /// below the target phi_hat_ij add
    /// |g_i'| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2)) /
    /// (|g_j| sqrt(1 - phi_hat^2) + eps) times g_j; then
    /// phi_hat_ij = (1 - beta) phi_hat_ij + beta phi. w_j = sum_i C_ij. The
    /// targets phi_hat (T x T, row-major, zeros at the start) are the
    /// caller's slice; a zero gradient has cosine 0 with every other.
    GradVac(GradVac, &'a mut [f64], &'a mut Rng),
    /// The mean of the gradients: w = 1/T.
    Mean,
    /// The sum of the gradients: w = 1.
    Sum,
    /// Random loss weighting (Lin et al., "Reasonable Effectiveness of
    /// Random Weighting: A Litmus Test for Multi-Task Learning", TMLR 2022,
    /// Algorithm 2): w = softmax(z) with z_i standard normal, drawn from the
    /// caller's PRNG (Box-Muller; the draws differ from torch's `randn`, the
    /// distribution is the same).
    Random(&'a mut Rng),
}

/// The stable numbers of the methods, in the order of the C constants
/// `PCGRAD_METHOD_*` (never renumbered): what [`Method::kind`] returns and
/// what the `kind` field of the C struct `pcgrad_method` holds.
pub mod kind {
    /// [`Method::PcGrad`](super::Method::PcGrad) with a sequential mode.
    pub const PCGRAD: u32 = 0;
    /// [`Method::PcGrad`](super::Method::PcGrad) with the simultaneous mode.
    pub const PPCGRAD: u32 = 1;
    /// [`Method::Mgda`](super::Method::Mgda).
    pub const MGDA: u32 = 2;
    /// [`Method::UpGrad`](super::Method::UpGrad).
    pub const UPGRAD: u32 = 3;
    /// [`Method::DualProj`](super::Method::DualProj).
    pub const DUALPROJ: u32 = 4;
    /// [`Method::CaGrad`](super::Method::CaGrad).
    pub const CAGRAD: u32 = 5;
    /// [`Method::ImtlG`](super::Method::ImtlG).
    pub const IMTL_G: u32 = 6;
    /// [`Method::AlignedMtl`](super::Method::AlignedMtl).
    pub const ALIGNED_MTL: u32 = 7;
    /// [`Method::NashMtl`](super::Method::NashMtl).
    pub const NASH_MTL: u32 = 8;
    /// [`Method::GradVac`](super::Method::GradVac).
    pub const GRADVAC: u32 = 9;
    /// [`Method::Mean`](super::Method::Mean).
    pub const MEAN: u32 = 10;
    /// [`Method::Sum`](super::Method::Sum).
    pub const SUM: u32 = 11;
    /// [`Method::Random`](super::Method::Random).
    pub const RANDOM: u32 = 12;
}

impl Method<'_> {
    /// The method's stable number ([`kind`]).
    pub fn kind(&self) -> u32 {
        match self {
            Method::PcGrad(pc) => {
                if matches!(pc.mode, crate::engine::Mode::Simultaneous) {
                    kind::PPCGRAD
                } else {
                    kind::PCGRAD
                }
            }
            Method::Mgda(_) => kind::MGDA,
            Method::UpGrad(_) => kind::UPGRAD,
            Method::DualProj(_) => kind::DUALPROJ,
            Method::CaGrad(_) => kind::CAGRAD,
            Method::ImtlG(_) => kind::IMTL_G,
            Method::AlignedMtl(_) => kind::ALIGNED_MTL,
            Method::NashMtl(..) => kind::NASH_MTL,
            Method::GradVac(..) => kind::GRADVAC,
            Method::Mean => kind::MEAN,
            Method::Sum => kind::SUM,
            Method::Random(_) => kind::RANDOM,
        }
    }
}

/// Doubles of workspace [`method_weights`] needs for `method` on T tasks.
pub fn method_workspace_len(method: &Method<'_>, tasks: usize) -> Result<usize> {
    if tasks == 0 {
        return Err(Error::NoTasks);
    }
    let t = tasks;
    let tt = t.checked_mul(t).ok_or(Error::Overflow)?;
    // Every size below is at most 3 T^2 + 8 T.
    tt.checked_mul(3)
        .and_then(|x| x.checked_add(t.checked_mul(8)?))
        .ok_or(Error::Overflow)?;
    Ok(match method {
        Method::PcGrad(_) => engine::coefficients_len(t)?,
        Method::Mean | Method::Sum | Method::Random(_) => tt,
        Method::Mgda(_) => tt + t,
        Method::CaGrad(_) => 2 * tt + 8 * t,
        Method::UpGrad(_) | Method::DualProj(_) => tt + qp::box_qp_len(t) + 4 * t,
        Method::ImtlG(_) | Method::AlignedMtl(_) => 2 * tt + 2 * t,
        Method::GradVac(..) => 2 * tt + 4 * t,
        Method::NashMtl(..) => 2 * tt + 5 * t,
    })
}

/// Doubles of workspace [`aggregate`] needs: [`workspace_len`] for the
/// passes plus [`method_workspace_len`].
pub fn aggregate_workspace_len(method: &Method<'_>, tasks: usize) -> Result<usize> {
    workspace_len(tasks)?
        .checked_add(method_workspace_len(method, tasks)?)
        .ok_or(Error::Overflow)
}

/// Phase 2 of a method: writes into `weights` (T values) the weights w of
/// the method's update `sum_j w_j g_j`, from the full T x T Gram matrix
/// `gram` (row-major, `T * T` values, only the upper triangle read).
/// `workspace` holds at least [`method_workspace_len`] doubles.
///
/// On error nothing is written to `weights` or to the method's state.
pub fn method_weights(
    method: &mut Method<'_>,
    gram: &[f64],
    tasks: usize,
    weights: &mut [f64],
    workspace: &mut [f64],
) -> Result<()> {
    let t = tasks;
    let need = method_workspace_len(method, t)?;
    if gram.len() != t * t || weights.len() != t {
        return Err(Error::LengthMismatch);
    }
    if workspace.len() < need {
        return Err(Error::WorkspaceTooSmall);
    }
    check_params(method, t)?;
    let ws = &mut workspace[..need];
    if let Method::PcGrad(pc) = method {
        let (coef, _) = engine::coefficients(gram, t, &mut pc.mode, ws)?;
        weights.copy_from_slice(coef.b());
        return Ok(());
    }
    let (gn, rest) = ws.split_at_mut(t * t);
    let s = linalg::normalise(gram, t, gn)?;
    match method {
        Method::PcGrad(_) => Ok(()),
        Method::Mean => {
            weights.fill(1.0 / t as f64);
            Ok(())
        }
        Method::Sum => {
            weights.fill(1.0);
            Ok(())
        }
        Method::Random(rng) => {
            random_weights(rng, weights);
            Ok(())
        }
        Method::Mgda(p) => simplex::mgda(p, gn, s, t, weights, rest),
        Method::CaGrad(p) => simplex::cagrad(p, gn, s, t, weights, rest),
        Method::UpGrad(p) => qp::upgrad(p, gn, s, t, weights, rest),
        Method::DualProj(p) => qp::dualproj(p, gn, s, t, weights, rest),
        Method::ImtlG(p) => spectral::imtl_g(p, gn, s, t, weights, rest),
        Method::AlignedMtl(p) => spectral::aligned_mtl(p, gn, s, t, weights, rest),
        Method::GradVac(p, phi, rng) => stateful::gradvac(p, phi, rng, gn, s, t, weights, rest),
        Method::NashMtl(p, state) => stateful::nash_mtl(p, state, gn, s, t, weights, rest),
    }
}

/// Refuses negative or out-of-range parameters and state of the wrong
/// shape before any work.
fn check_params(method: &Method<'_>, t: usize) -> Result<()> {
    let bad = |x: f64| x.is_nan() || x < 0.0;
    let ok = match method {
        Method::Mgda(p) => !bad(p.tol),
        Method::CaGrad(p) => {
            !bad(p.c) && p.c.is_finite() && !bad(p.reg) && p.reg.is_finite() && !bad(p.tol)
        }
        Method::UpGrad(p) | Method::DualProj(p) => !bad(p.reg) && p.reg.is_finite(),
        Method::ImtlG(p) => !bad(p.rank_tol) && !bad(p.eps),
        Method::AlignedMtl(p) => !bad(p.rank_tol),
        Method::GradVac(p, phi, _) => {
            if phi.len() != t * t {
                return Err(Error::LengthMismatch);
            }
            if phi.iter().any(|x| !x.is_finite()) {
                return Err(Error::NonFinite);
            }
            !bad(p.beta) && p.beta <= 1.0 && !bad(p.eps) && p.eps.is_finite()
        }
        Method::NashMtl(p, state) => {
            if state.alpha.len() != t {
                return Err(Error::LengthMismatch);
            }
            !bad(p.max_norm) && !bad(p.tol)
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidParameter)
    }
}

/// w = softmax(z), z_i standard normal (Box-Muller from `rng`, two 53-bit
/// uniforms per pair of draws). The PRNG advances.
fn random_weights(rng: &mut Rng, w: &mut [f64]) {
    let mut k = 0;
    while k < w.len() {
        let u1 = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let r = libm::sqrt(-2.0 * libm::log(u1));
        let a = 2.0 * core::f64::consts::PI * u2;
        w[k] = r * libm::cos(a);
        if let Some(x) = w.get_mut(k + 1) {
            *x = r * libm::sin(a);
        }
        k += 2;
    }
    let m = w.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x));
    let mut sum = 0.0;
    for x in w.iter_mut() {
        *x = libm::exp(*x - m);
        sum += *x;
    }
    for x in w.iter_mut() {
        *x /= sum;
    }
}

/// One call of a method: the Gram pass, [`method_weights`] and the apply
/// pass, writing the merged gradient (N values) into `merged`; the
/// gradients are only read. `workspace` holds at least
/// [`aggregate_workspace_len`] doubles; after the call it starts with the
/// Gram matrix, as after [`PcGrad::merge`], followed (for every method but
/// PCGrad) by T^2 unused doubles and the T weights.
///
/// For [`Method::PcGrad`] this is [`PcGrad::merge`] (bitwise, its reduction
/// and thread count applied). For the other methods the merged gradient is
/// `sum_j w_j g_j` on every coordinate (no reduction), the passes run on
/// one thread, and non-finite gradients are refused ([`Error::NonFinite`],
/// free: seen in the Gram matrix). On error nothing but the workspace is
/// written (neither `merged` nor the method's state).
pub fn aggregate<F: Element, G: Gradients<F>>(
    method: &mut Method<'_>,
    grads: &G,
    merged: &mut [F],
    workspace: &mut [f64],
) -> Result<()> {
    let layout = *grads.layout();
    let t = layout.tasks();
    if let Method::PcGrad(pc) = method {
        pc.merge(grads, merged, workspace)?;
        return Ok(());
    }
    let need = aggregate_workspace_len(method, t)?;
    if merged.len() != layout.dim() {
        return Err(Error::LengthMismatch);
    }
    if workspace.len() < need {
        return Err(Error::WorkspaceTooSmall);
    }
    check_params(method, t)?;
    let tt = t * t;
    let gl = engine::gram_workspace_len(t)?;
    let cl = engine::coefficients_len(t)?;
    let (gram, rest) = workspace.split_at_mut(gl);
    let (coef_ws, rest) = rest.split_at_mut(cl);
    let (tile, mws) = rest.split_at_mut(engine::tile_len(t)?);
    gram.fill(0.0);
    parallel::accumulate_gram(grads, gram, 1)?;
    let (a, b) = coef_ws.split_at_mut(tt);
    a.fill(0.0);
    method_weights(method, &gram[..tt], t, &mut b[..t], mws)?;
    let coef = Coefficients::from_workspace(t, coef_ws)?;
    parallel::apply_merged(grads, &coef, Reduction::Sum, merged, tile, 1)
}
