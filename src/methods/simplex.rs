//! MGDA: the min-norm point of the convex hull of the gradients, by
//! Frank-Wolfe on the simplex (exact for T <= 2).

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
