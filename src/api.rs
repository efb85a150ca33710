//! The one-call API: [`PcGrad`] (and [`PpcGrad`]) run the three phases over
//! the whole problem with one caller workspace.

use crate::engine::{self, coefficients, MergeOut, Mode, Order, Reduction, Same, Stats, ToF32};
use crate::error::{Error, Result};
use crate::kernels::{Element, Kernels};
use crate::layout::{Gradients, GradientsMut, SegPos};
use crate::parallel;
use crate::rng::Rng;

/// Doubles of workspace one call needs for T tasks: the Gram matrix and its
/// per-chunk partial (2 T^2), the coefficients (T^2 + 2T) and the apply tile
/// ((T + 1) x 32). The same for every mode, reduction and N.
///
/// | T | doubles | bytes |
/// |---|---------|-------|
/// | 2 | 112 | 896 |
/// | 4 | 216 | 1728 |
/// | 8 | 496 | 3968 |
/// | 16 | 1344 | 10752 |
pub fn workspace_len(tasks: usize) -> Result<usize> {
    if tasks == 0 {
        return Err(Error::NoTasks);
    }
    let a = engine::gram_workspace_len(tasks)?;
    let b = engine::coefficients_len(tasks)?;
    let c = engine::tile_len(tasks)?;
    a.checked_add(b)
        .and_then(|x| x.checked_add(c))
        .ok_or(Error::Overflow)
}

/// After a successful one-call run, the T x T Gram matrix (g_i . g_j,
/// row-major) left at the start of the workspace: a free diagnostic.
pub fn workspace_gram(workspace: &[f64], tasks: usize) -> Result<&[f64]> {
    let tt = tasks.checked_mul(tasks).ok_or(Error::Overflow)?;
    workspace.get(..tt).ok_or(Error::WorkspaceTooSmall)
}

/// Writes the cosine matrix cos(g_i, g_j) of a Gram matrix into `out`
/// (T x T). A zero gradient has cosine 0 with everything, itself included.
pub fn cosine_matrix(gram: &[f64], tasks: usize, out: &mut [f64]) -> Result<()> {
    let tt = tasks.checked_mul(tasks).ok_or(Error::Overflow)?;
    if gram.len() < tt || out.len() < tt {
        return Err(Error::LengthMismatch);
    }
    for i in 0..tasks {
        for j in 0..tasks {
            let d = libm::sqrt(gram[i * tasks + i]) * libm::sqrt(gram[j * tasks + j]);
            out[i * tasks + j] = if d > 0.0 {
                gram[i * tasks + j] / d
            } else {
                0.0
            };
        }
    }
    Ok(())
}

/// A PCGrad configuration: the projection mode, the reduction and whether to
/// refuse non-finite input. Cheap to build; holds no buffers.
///
/// How this maps to the seed's TensorFlow classes:
///
/// - [`PcGrad::new`] is the paper's Algorithm 1 (sequential, random order),
///   which is what "PCGrad" means in the paper.
/// - [`PpcGrad::new`] is the seed's `PPCGrad` (`tf.vectorized_map`): the
///   simultaneous mode.
/// - The seed's `PCGrad` *class* loops like Algorithm 1 but takes every dot
///   product with the task's original gradient, so numerically it computes
///   the **simultaneous** result too: use [`PpcGrad::new`] (or
///   `Mode::Simultaneous`) to reproduce it.
/// - `reduction` defaults to [`Reduction::Mean`], as in the seed.
#[derive(Debug)]
pub struct PcGrad<'a> {
    /// Sequential (with an order) or simultaneous.
    pub mode: Mode<'a>,
    /// Mean over shared coordinates or sum.
    pub reduction: Reduction,
    /// Refuse NaN/Inf input with [`Error::NonFinite`] (free: detected from
    /// the Gram diagonal before anything is written).
    pub check_finite: bool,
    /// Worker threads for the two streaming passes: 0 = all cores. Only the
    /// `parallel` feature uses more than one; results are bitwise identical
    /// for every value.
    pub threads: usize,
}

/// The parallel variant of the seed (`PPCGrad`): simultaneous projection,
/// every task independent of the order.
#[derive(Clone, Copy, Debug)]
pub struct PpcGrad;

impl PpcGrad {
    /// Simultaneous projection, mean reduction.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> PcGrad<'static> {
        PcGrad::with_mode(Mode::Simultaneous)
    }
}

impl<'a> PcGrad<'a> {
    /// The paper's PCGrad: sequential projection in a fresh random order per
    /// task per call, drawn from `rng` (which advances), mean reduction.
    pub fn new(rng: &'a mut Rng) -> Self {
        Self::with_mode(Mode::Sequential(Order::Shuffled(rng)))
    }

    /// Any mode, mean reduction, no finiteness check.
    pub fn with_mode(mode: Mode<'a>) -> Self {
        PcGrad {
            mode,
            reduction: Reduction::Mean,
            check_finite: false,
            threads: 1,
        }
    }

    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Sets the number of worker threads (0 = all cores).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Turns finiteness checking on or off.
    pub fn check_finite(mut self, on: bool) -> Self {
        self.check_finite = on;
        self
    }

    /// Phases 1 and 2 over the whole problem; returns the coefficients'
    /// offset in the workspace.
    pub(crate) fn prepare<F: Element, G: Gradients<F>>(
        &mut self,
        grads: &G,
        workspace: &mut [f64],
    ) -> Result<(usize, Stats)> {
        self.prepare_on(None, grads, workspace)
    }

    /// [`PcGrad::prepare`], on the kernels `k` on the calling thread when
    /// given, else on the best kernels and `self.threads` workers.
    fn prepare_on<F: Element, G: Gradients<F>>(
        &mut self,
        k: Option<Kernels>,
        grads: &G,
        workspace: &mut [f64],
    ) -> Result<(usize, Stats)> {
        let layout = *grads.layout();
        let t = layout.tasks();
        if workspace.len() < workspace_len(t)? {
            return Err(Error::WorkspaceTooSmall);
        }
        if let Mode::Sequential(Order::Explicit(table)) = &self.mode {
            // Validate before the Gram pass so a bad table costs nothing.
            engine::check_order_table(table, t)?;
        }
        let gl = engine::gram_workspace_len(t)?;
        // Checked splits (the length was checked above) keep panic paths
        // out of the library's code.
        let (gram, rest) = workspace
            .split_at_mut_checked(gl)
            .ok_or(Error::WorkspaceTooSmall)?;
        gram.fill(0.0);
        match k {
            Some(k) => engine::accumulate_gram_with(k, grads, 0, layout.dim(), gram)?,
            None => {
                let w = parallel::workers(self.threads, t.saturating_mul(layout.dim()));
                parallel::accumulate_gram(grads, gram, w)?;
            }
        }
        // The diagonal G_ii, i < T.
        if self.check_finite
            && (0..t).any(|i| gram.get(i * (t + 1)).is_some_and(|d| !d.is_finite()))
        {
            return Err(Error::NonFinite);
        }
        let (_, stats) = coefficients(gram, t, &mut self.mode, rest)?;
        Ok((gl, stats))
    }

    /// Projects and merges: writes the merged gradient (N values) into
    /// `merged`; the gradients are only read. `workspace` holds at least
    /// [`workspace_len`] doubles. On error nothing but the workspace is
    /// written.
    pub fn merge<F: Element, G: Gradients<F>>(
        &mut self,
        grads: &G,
        merged: &mut [F],
        workspace: &mut [f64],
    ) -> Result<Stats> {
        self.merge_on(None, grads, merged, workspace)
    }

    /// [`PcGrad::merge`] with the merged gradient written as `f32` (N
    /// values), for gradients of any element type; the gradients are only
    /// read, and on error nothing but the workspace is written. Each value
    /// is its `f64` sum (the one [`PcGrad::merge`] computes) rounded once to
    /// `f32`, to nearest even; for `f32` gradients this is
    /// [`PcGrad::merge`]. For `bf16` and `f16` gradients it keeps the
    /// precision that rounding to the half type would drop (the Gram
    /// matrix, the coefficients and the sums are those of [`PcGrad::merge`],
    /// bitwise those of the `f32` path on the widened values): each output
    /// rounded to the half type, to nearest even, is [`PcGrad::merge`]'s
    /// output except where it is a midpoint of two half values (then
    /// [`PcGrad::merge`] rounds the `f64` sum instead, once). For `f64`
    /// gradients the apply pass runs the scalar loop.
    pub fn merge_f32<F: Element, G: Gradients<F>>(
        &mut self,
        grads: &G,
        merged: &mut [f32],
        workspace: &mut [f64],
    ) -> Result<Stats> {
        self.merge_to::<F, ToF32, G>(None, grads, merged, workspace)
    }

    /// [`PcGrad::merge`], on the kernels `k` on the calling thread when
    /// given (for [`crate::bench`]), else on the best kernels and
    /// `self.threads` workers.
    pub(crate) fn merge_on<F: Element, G: Gradients<F>>(
        &mut self,
        k: Option<Kernels>,
        grads: &G,
        merged: &mut [F],
        workspace: &mut [f64],
    ) -> Result<Stats> {
        self.merge_to::<F, Same, G>(k, grads, merged, workspace)
    }

    /// [`PcGrad::merge_on`] writing the output type of `S`.
    pub(crate) fn merge_to<F: Element, S: MergeOut<F>, G: Gradients<F>>(
        &mut self,
        k: Option<Kernels>,
        grads: &G,
        merged: &mut [S::Out],
        workspace: &mut [f64],
    ) -> Result<Stats> {
        let layout = *grads.layout();
        if merged.len() != layout.dim() {
            return Err(Error::LengthMismatch);
        }
        let (off, stats) = self.prepare_on(k, grads, workspace)?;
        let t = layout.tasks();
        let (coef_ws, tile) = split_rest(workspace, off, engine::coefficients_len(t)?)?;
        let coef = engine::Coefficients::from_workspace(t, coef_ws)?;
        match k {
            Some(k) => {
                let n = layout.dim();
                engine::apply_merged_to::<F, S, G>(
                    k,
                    grads,
                    &coef,
                    self.reduction,
                    SegPos::START,
                    0,
                    n,
                    merged,
                    tile,
                )?
            }
            None => {
                let w = parallel::workers(self.threads, t.saturating_mul(layout.dim()));
                parallel::apply_merged_to::<F, S, G>(
                    grads,
                    &coef,
                    self.reduction,
                    merged,
                    tile,
                    w,
                )?;
            }
        }
        Ok(stats)
    }

    /// Projects in place: overwrites each task's gradient with its projected
    /// g'_i (on every coordinate its buffer covers, including segments the
    /// task had no gradient for, where g'_i may be non-zero), and writes the
    /// merged gradient into `merged` when given. On error nothing but the
    /// workspace is written.
    pub fn project<F: Element, G: GradientsMut<F>>(
        &mut self,
        grads: &mut G,
        merged: Option<&mut [F]>,
        workspace: &mut [f64],
    ) -> Result<Stats> {
        let n = grads.layout().dim();
        let t = grads.layout().tasks();
        if merged.as_ref().is_some_and(|m| m.len() != n) {
            return Err(Error::LengthMismatch);
        }
        let (off, stats) = self.prepare(&*grads, workspace)?;
        let (coef_ws, tile) = split_rest(workspace, off, engine::coefficients_len(t)?)?;
        let coef = engine::Coefficients::from_workspace(t, coef_ws)?;
        let w = parallel::workers(self.threads, t.saturating_mul(n));
        parallel::apply_projected(grads, &coef, self.reduction, merged, tile, w)?;
        Ok(stats)
    }
}

/// `workspace[off..]` split at `mid` (the lengths were checked before, so
/// the error is never returned; a checked split keeps panic paths out).
pub(crate) fn split_rest(
    workspace: &mut [f64],
    off: usize,
    mid: usize,
) -> Result<(&[f64], &mut [f64])> {
    let (a, b) = workspace
        .get_mut(off..)
        .and_then(|w| w.split_at_mut_checked(mid))
        .ok_or(Error::WorkspaceTooSmall)?;
    Ok((a, b))
}

/// Packs per-variable gradients into a flat T x N buffer (the seed's
/// `pack_grad`): `vars[t * S + s]` is task t's gradient for variable s or
/// `None`; missing ones are written as zeros and recorded as `false` in
/// `has_grad` (T x S). Nothing is written on error.
pub fn pack<F: Element>(
    tasks: usize,
    segments: &[usize],
    vars: &[Option<&[F]>],
    out: &mut [F],
    has_grad: &mut [bool],
) -> Result<()> {
    if tasks == 0 {
        return Err(Error::NoTasks);
    }
    let s = segments.len();
    let cells = tasks.checked_mul(s).ok_or(Error::Overflow)?;
    let mut n: usize = 0;
    for &len in segments {
        n = n.checked_add(len).ok_or(Error::Overflow)?;
    }
    if vars.len() != cells || has_grad.len() != cells {
        return Err(Error::LengthMismatch);
    }
    if out.len() != tasks.checked_mul(n).ok_or(Error::Overflow)? {
        return Err(Error::LengthMismatch);
    }
    if vars
        .iter()
        .enumerate()
        .any(|(c, v)| v.is_some_and(|v| v.len() != segments[c % s]))
    {
        return Err(Error::LengthMismatch);
    }
    let mut pos = 0;
    for (c, v) in vars.iter().enumerate() {
        let len = segments[c % s];
        let dst = &mut out[pos..pos + len];
        match v {
            Some(v) => dst.copy_from_slice(v),
            None => dst.fill(F::zero()),
        }
        has_grad[c] = v.is_some();
        pos += len;
    }
    Ok(())
}

/// Splits a flat vector of N values into per-variable buffers (the seed's
/// `un_flatten_grad`): `outs[s]` receives `segments[s]` values. Nothing is
/// written on error.
pub fn unflatten<F: Element>(segments: &[usize], flat: &[F], outs: &mut [&mut [F]]) -> Result<()> {
    if outs.len() != segments.len() {
        return Err(Error::LengthMismatch);
    }
    let mut n: usize = 0;
    for (&len, o) in segments.iter().zip(outs.iter()) {
        if o.len() != len {
            return Err(Error::LengthMismatch);
        }
        n = n.checked_add(len).ok_or(Error::Overflow)?;
    }
    if flat.len() != n {
        return Err(Error::LengthMismatch);
    }
    let mut pos = 0;
    for o in outs.iter_mut() {
        let len = o.len();
        o.copy_from_slice(&flat[pos..pos + len]);
        pos += len;
    }
    Ok(())
}

#[cfg(all(test, feature = "half"))]
mod f32_out_tests;
