//! The methods with state across calls: GradVac (EMA targets) and Nash-MTL
//! (the previous bargaining solution).

use super::linalg::{cholesky, cholesky_solve};
use crate::error::Result;
use crate::rng::Rng;

/// Nash-MTL's caller-owned state between training steps: the last solution
/// (T values, the warm start of the next solve) and the call counter.
///
/// A fresh state is all zeros (`alpha` zeros, `step` 0): the first solve
/// then starts from alpha = 1, as torchjd. The state advances only when a
/// call succeeds.
#[derive(Debug)]
pub struct NashState<'a> {
    /// The last alpha (before the norm clipping), T values.
    pub alpha: &'a mut [f64],
    /// Calls so far (weights are solved for when `step % update_every == 0`).
    pub step: u64,
}

impl<'a> NashState<'a> {
    /// A fresh state over the caller's T doubles (zeroed here).
    pub fn new(alpha: &'a mut [f64]) -> Self {
        alpha.fill(0.0);
        NashState { alpha, step: 0 }
    }
}

/// GradVac's weights (see [`super::Method::GradVac`]); `ws` holds
/// T^2 + 4T doubles.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gradvac(
    p: &super::GradVac,
    phi: &mut [f64],
    rng: &mut Rng,
    gn: &mut [f64],
    _s: f64,
    t: usize,
    weights: &mut [f64],
    ws: &mut [f64],
) -> Result<()> {
    let beta = if p.beta == 0.0 { 0.5 } else { p.beta };
    let eps = if p.eps == 0.0 { 1e-8 } else { p.eps };
    let (hat, rest) = ws.split_at_mut(t * t);
    let (c, rest) = rest.split_at_mut(t);
    let (cg, rest) = rest.split_at_mut(t);
    let (perm, rest) = rest.split_at_mut(t);
    let acc = &mut rest[..t];
    hat.copy_from_slice(phi);
    let mut r = *rng;
    acc.fill(0.0);
    let n = t - 1;
    for i in 0..t {
        for (k, x) in c.iter_mut().enumerate() {
            *x = if k == i { 1.0 } else { 0.0 };
        }
        for j in 0..t {
            cg[j] = gn[i * t + j];
        }
        for (k, q) in perm[..n].iter_mut().enumerate() {
            *q = f64::from_bits((k + usize::from(k >= i)) as u64);
        }
        for k in (1..n).rev() {
            let m = r.below(k as u32 + 1) as usize;
            perm.swap(k, m.min(k));
        }
        for k in 0..n {
            let j = perm[k].to_bits() as usize;
            let dot = cg[j];
            let nsq: f64 = cg.iter().zip(c.iter()).map(|(a, b)| a * b).sum();
            let ni = libm::sqrt(nsq.max(0.0));
            let nj = libm::sqrt(gn[j * t + j].max(0.0));
            let ph = dot / (ni * nj + eps);
            let target = hat[i * t + j];
            if ph < target {
                let s1 = libm::sqrt((1.0 - ph * ph).max(0.0));
                let s2 = libm::sqrt((1.0 - target * target).max(0.0));
                let w = ni * (target * s1 - ph * s2) / (nj * s2 + eps);
                c[j] += w;
                for m in 0..t {
                    cg[m] += w * gn[j * t + m];
                }
            }
            hat[i * t + j] = (1.0 - beta) * target + beta * ph;
        }
        for (a, &x) in acc.iter_mut().zip(c.iter()) {
            *a += x;
        }
    }
    weights.copy_from_slice(acc);
    phi.copy_from_slice(hat);
    *rng = r;
    Ok(())
}

/// f(alpha) = alpha^T G alpha / 2 - sum ln alpha_i.
fn nash_objective(g: &[f64], a: &[f64], t: usize) -> f64 {
    let mut q = 0.0;
    for i in 0..t {
        let gi: f64 = (0..t).map(|j| g[i * t + j] * a[j]).sum();
        q += a[i] * gi;
    }
    0.5 * q - a.iter().map(|x| libm::log(*x)).sum::<f64>()
}

/// Nash-MTL's weights (see [`super::Method::NashMtl`]); `ws` holds
/// T^2 + 5T doubles.
#[allow(clippy::too_many_arguments)]
pub(crate) fn nash_mtl(
    p: &super::NashMtl,
    state: &mut NashState<'_>,
    gn: &mut [f64],
    s: f64,
    t: usize,
    weights: &mut [f64],
    ws: &mut [f64],
) -> Result<()> {
    let max_norm = if p.max_norm == 0.0 { 1.0 } else { p.max_norm };
    let every = u64::from(if p.update_every == 0 {
        1
    } else {
        p.update_every
    });
    let iters = if p.max_iters == 0 { 20 } else { p.max_iters };
    let tol = if p.tol == 0.0 { 1e-20 } else { p.tol };
    let (h, rest) = ws.split_at_mut(t * t);
    let (a, rest) = rest.split_at_mut(t);
    let (g, rest) = rest.split_at_mut(t);
    let (d, rest) = rest.split_at_mut(t);
    let trial = &mut rest[..t];
    let fresh = state.alpha.iter().any(|x| !(x.is_finite() && *x > 0.0));
    if fresh {
        a.fill(1.0);
    } else {
        a.copy_from_slice(state.alpha);
    }
    if s == 0.0 {
        weights.fill(0.0);
        state.step = state.step.wrapping_add(1);
        return Ok(());
    }
    // gn = G / scale: G / tr(G), then G / |G|_F when solving.
    let mut scale = s;
    if state.step.is_multiple_of(every) {
        let f = libm::sqrt(gn.iter().map(|x| x * x).sum::<f64>());
        for x in gn.iter_mut() {
            *x /= f;
        }
        scale *= f;
        for _ in 0..iters {
            for i in 0..t {
                g[i] = (0..t).map(|j| gn[i * t + j] * a[j]).sum::<f64>() - 1.0 / a[i];
            }
            h.copy_from_slice(gn);
            for i in 0..t {
                h[i * t + i] += 1.0 / (a[i] * a[i]);
            }
            // gn + diag(1 / alpha^2) is positive definite for a PSD gn; a
            // failed factorisation means alpha ran off to infinity along a
            // null direction of G (no solution): stop there.
            if cholesky(h, t, t).is_err() {
                break;
            }
            for i in 0..t {
                d[i] = -g[i];
            }
            cholesky_solve(h, t, t, d);
            let dec: f64 = -g.iter().zip(d.iter()).map(|(x, y)| x * y).sum::<f64>();
            if !(dec > tol) {
                break;
            }
            let f0 = nash_objective(gn, a, t);
            let mut step = 1.0;
            let mut moved = false;
            for _ in 0..64 {
                let mut positive = true;
                for i in 0..t {
                    trial[i] = a[i] + step * d[i];
                    positive &= trial[i] > 0.0;
                }
                // Near the solution (dec < 1e-6) the full Newton step is
                // taken without the Armijo test, whose objective difference
                // would drown in rounding.
                if positive
                    && ((step == 1.0 && dec < 1e-6)
                        || nash_objective(gn, trial, t) <= f0 - 0.25 * step * dec)
                {
                    moved = true;
                    break;
                }
                step *= 0.5;
            }
            if !moved {
                break;
            }
            a.copy_from_slice(trial);
        }
    }
    // |J^T alpha| = sqrt(alpha^T G alpha) on the caller's scale.
    let mut q = 0.0;
    for i in 0..t {
        let gi: f64 = (0..t).map(|j| gn[i * t + j] * a[j]).sum();
        q += a[i] * gi;
    }
    let norm = libm::sqrt(scale) * libm::sqrt(q.max(0.0));
    let clip = if norm > max_norm {
        max_norm / norm
    } else {
        1.0
    };
    for (w, &x) in weights.iter_mut().zip(a.iter()) {
        *w = x * clip;
    }
    state.alpha.copy_from_slice(a);
    state.step = state.step.wrapping_add(1);
    Ok(())
}
