//! Problems on the simplex: MGDA (the min-norm point of the convex hull
//! of the gradients, by Frank-Wolfe, exact for T <= 2) and CAGrad.

use super::linalg::Pivoting;
use crate::error::Result;

/// MGDA's weights (see [`super::Method::Mgda`]); `gn` is the normalised
/// Gram, `s` its trace, `ws` holds T doubles.
pub(crate) fn mgda(
    p: &super::Mgda,
    gn: &mut [f64],
    s: f64,
    t: usize,
    weights: &mut [f64],
    ws: &mut [f64],
) -> Result<()> {
    let tol = if p.tol == 0.0 { 1e-3 } else { p.tol };
    let iters = if p.max_iters == 0 { 100 } else { p.max_iters };
    if s == 0.0 || t == 1 {
        weights.fill(1.0 / t as f64);
        return Ok(());
    }
    if t == 2 {
        // min over gamma in [0, 1] of |gamma g_0 + (1 - gamma) g_1|^2.
        let (a, b, c) = (gn[0], gn[3], gn[1]);
        let den = a + b - 2.0 * c;
        let g = if den > 0.0 {
            ((b - c) / den).clamp(0.0, 1.0)
        } else {
            0.5
        };
        weights[0] = g;
        weights[1] = 1.0 - g;
        return Ok(());
    }
    let alpha = weights;
    let ga = &mut ws[..t];
    // The iterate lives in `weights` (written only on this success path).
    alpha.fill(1.0 / t as f64);
    for _ in 0..iters {
        for i in 0..t {
            ga[i] = (0..t).map(|j| gn[i * t + j] * alpha[j]).sum();
        }
        let mut k = 0;
        for i in 1..t {
            if ga[i] < ga[k] {
                k = i;
            }
        }
        let a = ga[k];
        let b: f64 = alpha.iter().zip(ga.iter()).map(|(x, y)| x * y).sum();
        let c = gn[k * t + k];
        let gamma = if c <= a {
            1.0
        } else if b <= a {
            0.0
        } else {
            (b - a) / (b + c - 2.0 * a)
        };
        for (i, x) in alpha.iter_mut().enumerate() {
            *x *= 1.0 - gamma;
            if i == k {
                *x += gamma;
            }
        }
        if gamma < tol {
            break;
        }
    }
    Ok(())
}

/// min_w w^T b + (lam / 2) w^T H w over the simplex, by block principal
/// pivoting on the free set as [`super::qp`]'s solver, with the equality
/// sum_F w = 1 eliminated through its multiplier mu: on the free set
/// lam H_FF w_F = mu 1 - b_F, and the bound multipliers are
/// y_i = lam (H w)_i + b_i - mu >= 0. `free` (T flags) is the warm start;
/// `scratch` holds T^2 + 4T doubles.
fn simplex_qp(
    h: &[f64],
    b: &[f64],
    lam: f64,
    t: usize,
    w: &mut [f64],
    free: &mut [f64],
    scratch: &mut [f64],
) -> Result<()> {
    use super::linalg::{cholesky, cholesky_solve};
    let (l, rest) = scratch.split_at_mut(t * t);
    let (z1, rest) = rest.split_at_mut(t);
    let (z2, rest) = rest.split_at_mut(t);
    let (y, rest) = rest.split_at_mut(t);
    let idx = &mut rest[..t];
    let mut pivoting = Pivoting::new(t);
    for _ in 0..super::qp::qp_iterations(t) {
        if free.iter().all(|&f| f == 0.0) {
            // At least one free weight: the smallest linear cost.
            let k = (0..t).fold(0, |k, i| if b[i] < b[k] { i } else { k });
            free[k] = 1.0;
        }
        let mut n = 0;
        for i in 0..t {
            if free[i] != 0.0 {
                idx[n] = f64::from_bits(i as u64);
                n += 1;
            }
        }
        for a in 0..n {
            let i = idx[a].to_bits() as usize;
            for c in 0..n {
                let j = idx[c].to_bits() as usize;
                l[a * n + c] = lam * h[i * t + j];
            }
            z1[a] = 1.0;
            z2[a] = b[i];
        }
        cholesky(l, n, n)?;
        cholesky_solve(l, n, n, &mut z1[..n]);
        cholesky_solve(l, n, n, &mut z2[..n]);
        let s1: f64 = z1[..n].iter().sum();
        let s2: f64 = z2[..n].iter().sum();
        let mu = (1.0 + s2) / s1;
        w.fill(0.0);
        for a in 0..n {
            w[idx[a].to_bits() as usize] = mu * z1[a] - z2[a];
        }
        let mut bad = 0;
        let mut last = t;
        for i in 0..t {
            let violated = if free[i] != 0.0 {
                w[i] < 0.0
            } else {
                let hw: f64 = (0..t).map(|j| h[i * t + j] * w[j]).sum();
                y[i] = lam * hw + b[i] - mu;
                y[i] < 0.0
            };
            if violated {
                bad += 1;
                last = i;
            }
        }
        if bad == 0 {
            return Ok(());
        }
        pivoting.exchange(free, w, y, t, bad, last);
    }
    // The cap: the last iterate, clipped and rescaled onto the simplex.
    let mut sum = 0.0;
    for x in w.iter_mut() {
        *x = x.max(0.0);
        sum += *x;
    }
    if sum > 0.0 {
        for x in w.iter_mut() {
            *x /= sum;
        }
    } else {
        w.fill(1.0 / t as f64);
    }
    Ok(())
}

/// CAGrad's weights (see [`super::Method::CaGrad`]); `ws` holds T^2 + 8T.
pub(crate) fn cagrad(
    p: &super::CaGrad,
    gn: &mut [f64],
    s: f64,
    t: usize,
    weights: &mut [f64],
    ws: &mut [f64],
) -> Result<()> {
    let c = if p.c == 0.0 { 0.4 } else { p.c };
    let reg = if p.reg == 0.0 { 1e-8 } else { p.reg };
    let tol = if p.tol == 0.0 { 1e-12 } else { p.tol };
    let iters = if p.max_iters == 0 { 200 } else { p.max_iters };
    let u = 1.0 / t as f64;
    if s == 0.0 {
        weights.fill(u);
        return Ok(());
    }
    for i in 0..t {
        gn[i * t + i] += reg;
    }
    let h = &*gn;
    let (b, rest) = ws.split_at_mut(t);
    let (w, rest) = rest.split_at_mut(t);
    let (free, scratch) = rest.split_at_mut(t);
    // b = H u, phi = c |g_0| = c sqrt(u^T H u).
    let mut q = 0.0;
    for i in 0..t {
        b[i] = (0..t).map(|j| h[i * t + j] * u).sum();
        q += u * b[i];
    }
    let phi = c * libm::sqrt(q.max(0.0));
    if !(phi > 0.0) {
        weights.fill(u);
        return Ok(());
    }
    let norm = |w: &[f64]| {
        let mut q = 0.0;
        for i in 0..t {
            q += w[i] * (0..t).map(|j| h[i * t + j] * w[j]).sum::<f64>();
        }
        libm::sqrt(q.max(0.0))
    };
    // lam s(lam) = phi is bracketed by [phi / max_i sqrt(H_ii),
    // phi sqrt(T / reg)]: every w on the simplex has
    // sqrt(reg / T) <= |g_w| <= max_i |g_i|.
    let smax = (0..t).map(|i| libm::sqrt(h[i * t + i])).fold(0.0, f64::max);
    let mut lo = phi / smax;
    let mut hi = phi * libm::sqrt(t as f64 / reg);
    free.fill(1.0);
    for _ in 0..iters {
        if !(hi > lo * (1.0 + tol)) {
            break;
        }
        let mid = libm::sqrt(lo * hi);
        simplex_qp(h, b, mid, t, w, free, scratch)?;
        if mid * norm(w) < phi {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let lam = libm::sqrt(lo * hi);
    simplex_qp(h, b, lam, t, w, free, scratch)?;
    let gw = norm(w);
    for i in 0..t {
        weights[i] = u + phi / gw * w[i];
    }
    Ok(())
}
