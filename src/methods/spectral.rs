//! The methods built on the eigendecomposition of G: IMTL-G (through the
//! pseudo-inverse) and Aligned-MTL.

use super::linalg::{jacobi, PSD_TOL};
use crate::error::{Error, Result};

/// Decomposes the normalised Gram in place (eigenvalues on its diagonal,
/// eigenvectors in the columns of `v`); returns lambda_max. Fails with
/// [`Error::NotPsd`] on an eigenvalue below `-PSD_TOL`.
fn eig(gn: &mut [f64], v: &mut [f64], t: usize) -> Result<f64> {
    jacobi(gn, v, t);
    let mut max = 0.0f64;
    for k in 0..t {
        let l = gn[k * t + k];
        if l.is_nan() || l < -PSD_TOL {
            return Err(Error::NotPsd);
        }
        max = max.max(l);
    }
    Ok(max)
}

/// IMTL-G's weights (see [`super::Method::ImtlG`]); `ws` holds T^2 + 2T.
pub(crate) fn imtl_g(
    p: &super::ImtlG,
    gn: &mut [f64],
    s: f64,
    t: usize,
    weights: &mut [f64],
    ws: &mut [f64],
) -> Result<()> {
    let rank_tol = if p.rank_tol == 0.0 {
        t as f64 * f64::EPSILON
    } else {
        p.rank_tol
    };
    let eps = if p.eps == 0.0 { 1e-12 } else { p.eps };
    if s == 0.0 {
        weights.fill(0.0);
        return Ok(());
    }
    let (v, rest) = ws.split_at_mut(t * t);
    let (d, rest) = rest.split_at_mut(t);
    let x = &mut rest[..t];
    for i in 0..t {
        d[i] = libm::sqrt(gn[i * t + i]);
    }
    let max = eig(gn, v, t)?;
    x.fill(0.0);
    for k in 0..t {
        let l = gn[k * t + k];
        if !(l > rank_tol * max) {
            continue;
        }
        let c: f64 = (0..t).map(|i| v[i * t + k] * d[i]).sum::<f64>() / l;
        for i in 0..t {
            x[i] += c * v[i * t + k];
        }
    }
    let sum: f64 = x.iter().sum();
    let abs: f64 = x.iter().map(|a| libm::fabs(*a)).sum();
    if !(libm::fabs(sum) > eps * abs) {
        weights.fill(0.0);
    } else {
        for (w, &a) in weights.iter_mut().zip(x.iter()) {
            *w = a / sum;
        }
    }
    Ok(())
}

/// Aligned-MTL's weights (see [`super::Method::AlignedMtl`]); `ws` holds
/// T^2 + 2T.
pub(crate) fn aligned_mtl(
    p: &super::AlignedMtl,
    gn: &mut [f64],
    s: f64,
    t: usize,
    weights: &mut [f64],
    ws: &mut [f64],
) -> Result<()> {
    let rank_tol = if p.rank_tol == 0.0 {
        t as f64 * f32::EPSILON as f64
    } else {
        p.rank_tol
    };
    let u = 1.0 / t as f64;
    if s == 0.0 {
        weights.fill(u);
        return Ok(());
    }
    let (v, rest) = ws.split_at_mut(t * t);
    let x = &mut rest[..t];
    let max = eig(gn, v, t)?;
    let kept = |k: usize| gn[k * t + k] > rank_tol * max;
    let r = (0..t).filter(|&k| kept(k)).count();
    if r == 0 {
        weights.fill(u);
        return Ok(());
    }
    let sigma = match p.scale {
        super::AlignedScale::Min => (0..t)
            .filter(|&k| kept(k))
            .map(|k| gn[k * t + k])
            .fold(f64::INFINITY, f64::min),
        super::AlignedScale::Mean => {
            (0..t)
                .filter(|&k| kept(k))
                .map(|k| gn[k * t + k])
                .sum::<f64>()
                / r as f64
        }
        super::AlignedScale::Median => {
            // The kept eigenvalue of ascending rank (R - 1) / 2 (ties
            // broken by index).
            let want = (r - 1) / 2;
            let mut m = 0.0;
            for k in (0..t).filter(|&k| kept(k)) {
                let l = gn[k * t + k];
                let below = (0..t)
                    .filter(|&j| kept(j))
                    .filter(|&j| {
                        let lj = gn[j * t + j];
                        lj < l || (lj == l && j < k)
                    })
                    .count();
                if below == want {
                    m = l;
                }
            }
            m
        }
    };
    let root = libm::sqrt(sigma);
    x.fill(0.0);
    for k in (0..t).filter(|&k| kept(k)) {
        let l = gn[k * t + k];
        let c = root / libm::sqrt(l) * u * (0..t).map(|i| v[i * t + k]).sum::<f64>();
        for i in 0..t {
            x[i] += c * v[i * t + k];
        }
    }
    weights.copy_from_slice(x);
    Ok(())
}
