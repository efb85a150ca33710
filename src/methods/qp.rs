//! The dual-cone projections of UPGrad and DualProj: the box-constrained
//! quadratic program min_v v^T H v subject to v >= u, solved exactly by
//! block principal pivoting on the free set.

use super::linalg::{cholesky, cholesky_solve, Pivoting};
use crate::error::Result;

/// Iterations of the pivoting solver before it stops: 10 T + 10. Each
/// iteration is one Cholesky factorisation of the free block; the method
/// terminates in exact arithmetic (Murty's single-pivot rule after three
/// non-improving block exchanges), and in practice within a handful of
/// iterations.
pub fn qp_iterations(tasks: usize) -> usize {
    tasks.saturating_mul(10).saturating_add(10)
}

/// Scratch of [`box_qp`]: T^2 + 4T doubles.
pub(crate) fn box_qp_len(t: usize) -> usize {
    t * t + 4 * t
}

/// Solves min_v v^T H v subject to v >= u for a positive definite T x T `h`
/// (row-major), writing v into `v`.
///
/// With v = u + x the problem is the linear complementarity problem
/// y = H x + H u, x >= 0, y >= 0, x . y = 0 (y is half the gradient, the
/// multiplier of the bound). Block principal pivoting (Judice and Pires,
/// "A block principal pivoting algorithm for large-scale strictly monotone
/// linear complementarity problems", 1994): given the free set F (x_i may
/// be positive; the others sit at the bound), solve H_FF x_F = -(H u)_F,
/// compute y on the bound set, and exchange every index that violates
/// x_i >= 0 or y_i >= 0 (no tolerance: the signs are tested exactly); when
/// three block exchanges in a row fail to reduce the number of violations,
/// exchange only the largest violating index (Murty's rule, which
/// terminates). At most [`qp_iterations`] iterations; when the cap is hit
/// the last iterate, clipped to the box, is returned.
///
/// `free` holds T flags (1.0 = free) on entry, the warm start, and the
/// final free set on return. `scratch` holds [`box_qp_len`] doubles.
/// Fails with [`crate::Error::NotPsd`] when a free block is not positive
/// definite.
pub(crate) fn box_qp(
    h: &[f64],
    u: &[f64],
    t: usize,
    v: &mut [f64],
    free: &mut [f64],
    scratch: &mut [f64],
) -> Result<()> {
    let (l, rest) = scratch.split_at_mut(t * t);
    let (q, rest) = rest.split_at_mut(t);
    let (x, rest) = rest.split_at_mut(t);
    let (y, rest) = rest.split_at_mut(t);
    let idx = &mut rest[..t];
    for i in 0..t {
        q[i] = (0..t).map(|j| h[i * t + j] * u[j]).sum();
    }
    let mut pivoting = Pivoting::new(t);
    for _ in 0..qp_iterations(t) {
        // Gather the free block and solve for x_F.
        let mut n = 0;
        for i in 0..t {
            if free[i] != 0.0 {
                idx[n] = f64::from_bits(i as u64);
                n += 1;
            }
        }
        for a in 0..n {
            let i = idx[a].to_bits() as usize;
            for b in 0..n {
                let j = idx[b].to_bits() as usize;
                l[a * n + b] = h[i * t + j];
            }
            x[a] = -q[i];
        }
        cholesky(l, n, n)?;
        cholesky_solve(l, n, n, &mut x[..n]);
        // Scatter x (zeros on the bound set) into y's slot temporarily:
        // y holds the full x, then v = u + x, y = H x + q on the bound set.
        y.fill(0.0);
        for a in 0..n {
            y[idx[a].to_bits() as usize] = x[a];
        }
        x.copy_from_slice(y);
        let mut bad = 0;
        let mut last = t;
        for i in 0..t {
            let violated = if free[i] != 0.0 {
                y[i] = 0.0;
                x[i] < 0.0
            } else {
                let yi = q[i] + (0..t).map(|j| h[i * t + j] * x[j]).sum::<f64>();
                y[i] = yi;
                yi < 0.0
            };
            if violated {
                bad += 1;
                last = i;
            }
        }
        if bad == 0 {
            for i in 0..t {
                v[i] = u[i] + x[i];
            }
            return Ok(());
        }
        pivoting.exchange(free, x, y, t, bad, last);
    }
    for i in 0..t {
        v[i] = u[i] + x[i].max(0.0);
    }
    Ok(())
}

/// H = G / tr(G) + reg I in place of the normalised Gram.
fn regularise(p: &super::DualCone, gn: &mut [f64], t: usize) {
    let reg = if p.reg == 0.0 { 1e-4 } else { p.reg };
    for i in 0..t {
        gn[i * t + i] += reg;
    }
}

/// UPGrad: w = sum_i v(e_i / T) (see [`super::Method::UpGrad`]).
pub(crate) fn upgrad(
    p: &super::DualCone,
    gn: &mut [f64],
    _s: f64,
    t: usize,
    weights: &mut [f64],
    ws: &mut [f64],
) -> Result<()> {
    regularise(p, gn, t);
    let (u, rest) = ws.split_at_mut(t);
    let (v, rest) = rest.split_at_mut(t);
    let (free, rest) = rest.split_at_mut(t);
    let (acc, scratch) = rest.split_at_mut(t);
    free.fill(0.0);
    acc.fill(0.0);
    for i in 0..t {
        u.fill(0.0);
        u[i] = 1.0 / t as f64;
        box_qp(gn, u, t, v, free, scratch)?;
        for (a, &x) in acc.iter_mut().zip(v.iter()) {
            *a += x;
        }
    }
    weights.copy_from_slice(acc);
    Ok(())
}

/// DualProj: w = v(1 / T) (see [`super::Method::DualProj`]).
pub(crate) fn dualproj(
    p: &super::DualCone,
    gn: &mut [f64],
    _s: f64,
    t: usize,
    weights: &mut [f64],
    ws: &mut [f64],
) -> Result<()> {
    regularise(p, gn, t);
    let (u, rest) = ws.split_at_mut(t);
    let (v, rest) = rest.split_at_mut(t);
    let (free, rest) = rest.split_at_mut(t);
    let (_, scratch) = rest.split_at_mut(t);
    free.fill(0.0);
    u.fill(1.0 / t as f64);
    box_qp(gn, u, t, v, free, scratch)?;
    weights.copy_from_slice(v);
    Ok(())
}
