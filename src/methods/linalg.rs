//! Small dense linear algebra on caller workspace: the Gram checks and
//! normalisation shared by every method, a Cholesky factorisation, and the
//! cyclic Jacobi eigensolver. Everything is `f64`, row-major, allocation
//! free, and reads only the slices it is given.

use crate::error::{Error, Result};

/// The tolerance of the cheap positive-semidefiniteness test every method
/// runs on its Gram matrix (before any work), and of the eigenvalue test
/// of the methods that decompose it: on the trace-normalised Gram
/// G / tr(G), a 2 x 2 principal minor below `-PSD_TOL`
/// (G_ij^2 > G_ii G_jj + PSD_TOL) or an eigenvalue below `-PSD_TOL` is
/// refused with [`Error::NotPsd`]. It is loose enough for the rounding of a
/// Gram accumulated from `f32` gradients (about 1e-7 relative) and tight
/// enough to refuse any Gram that no set of gradients can produce.
pub const PSD_TOL: f64 = 1e-6;

/// Jacobi sweeps before the eigensolver stops (it converges quadratically;
/// 8 to 12 sweeps are typical up to T = 64).
pub const JACOBI_SWEEPS: usize = 64;

/// Validates a full T x T Gram matrix (only its upper triangle i <= j is
/// read) and writes G / s into `out` (T x T, symmetric), where s = tr(G) is
/// computed without overflow. Returns s; s = 0 means every gradient is zero
/// (`out` is then all zeros).
///
/// Errors: [`Error::NonFinite`] on a NaN or infinite entry,
/// [`Error::NotPsd`] on a negative diagonal entry or a 2 x 2 principal
/// minor below `-PSD_TOL` after normalisation.
pub(crate) fn normalise(gram: &[f64], t: usize, out: &mut [f64]) -> Result<f64> {
    let mut m = 0.0f64;
    for i in 0..t {
        for j in i..t {
            let g = gram[i * t + j];
            if !g.is_finite() {
                return Err(Error::NonFinite);
            }
        }
        let d = gram[i * t + i];
        if d < 0.0 {
            return Err(Error::NotPsd);
        }
        m = m.max(d);
    }
    if m == 0.0 {
        // Every diagonal entry is zero: a PSD Gram is then zero.
        if (0..t).any(|i| (i..t).any(|j| gram[i * t + j] != 0.0)) {
            return Err(Error::NotPsd);
        }
        out[..t * t].fill(0.0);
        return Ok(0.0);
    }
    // s = m * sum(G_ii / m): finite whenever the entries are.
    let rel: f64 = (0..t).map(|i| gram[i * t + i] / m).sum();
    let s = m * rel;
    for i in 0..t {
        for j in i..t {
            // Two divisions keep G_ij / s finite when s overflows.
            let v = gram[i * t + j] / m / rel;
            out[i * t + j] = v;
            out[j * t + i] = v;
        }
    }
    for i in 0..t {
        for j in i + 1..t {
            let (a, b, c) = (out[i * t + i], out[j * t + j], out[i * t + j]);
            if c * c > a * b + PSD_TOL {
                return Err(Error::NotPsd);
            }
        }
    }
    Ok(s)
}

/// In-place Cholesky factorisation of the n x n matrix `a` (row-major,
/// leading dimension `ld`): on success its lower triangle holds L with
/// A = L L^T. Fails with [`Error::NotPsd`] on a pivot that is not positive
/// (the matrix is not positive definite).
pub(crate) fn cholesky(a: &mut [f64], n: usize, ld: usize) -> Result<()> {
    for j in 0..n {
        let mut d = a[j * ld + j];
        for k in 0..j {
            d -= a[j * ld + k] * a[j * ld + k];
        }
        if d.is_nan() || d <= 0.0 {
            return Err(Error::NotPsd);
        }
        let d = libm::sqrt(d);
        a[j * ld + j] = d;
        for i in j + 1..n {
            let mut s = a[i * ld + j];
            for k in 0..j {
                s -= a[i * ld + k] * a[j * ld + k];
            }
            a[i * ld + j] = s / d;
        }
    }
    Ok(())
}

/// Solves L L^T x = b in place (`x` holds b on entry) with the factor that
/// [`cholesky`] left in `l`.
pub(crate) fn cholesky_solve(l: &[f64], n: usize, ld: usize, x: &mut [f64]) {
    for i in 0..n {
        let mut s = x[i];
        for k in 0..i {
            s -= l[i * ld + k] * x[k];
        }
        x[i] = s / l[i * ld + i];
    }
    for i in (0..n).rev() {
        let mut s = x[i];
        for k in i + 1..n {
            s -= l[k * ld + i] * x[k];
        }
        x[i] = s / l[i * ld + i];
    }
}

/// Eigendecomposition of the symmetric T x T matrix `a` by the cyclic
/// Jacobi method (Golub and Van Loan, "Matrix Computations", algorithm
/// 8.5.3): rotations annihilate each off-diagonal entry in turn until every
/// off-diagonal entry is zero to rounding (|a_pq| <= 2^-53 sqrt(|a_pp a_qq|)
/// or |a_pq| <= 2^-53 |A|_F / T) or [`JACOBI_SWEEPS`] sweeps ran. On return the diagonal of `a` holds the
/// eigenvalues and column k of `v` (T x T) the eigenvector of `a[k][k]`.
pub(crate) fn jacobi(a: &mut [f64], v: &mut [f64], t: usize) {
    for i in 0..t {
        for j in 0..t {
            v[i * t + j] = if i == j { 1.0 } else { 0.0 };
        }
    }
    let fro = libm::sqrt(a[..t * t].iter().map(|x| x * x).sum::<f64>());
    let floor = f64::EPSILON * 0.5 * fro / t as f64;
    for _ in 0..JACOBI_SWEEPS {
        let mut rotated = false;
        for p in 0..t {
            for q in p + 1..t {
                let apq = a[p * t + q];
                let (app, aqq) = (a[p * t + p], a[q * t + q]);
                if libm::fabs(apq) <= floor
                    || libm::fabs(apq) <= f64::EPSILON * 0.5 * libm::sqrt(libm::fabs(app * aqq))
                {
                    a[p * t + q] = 0.0;
                    a[q * t + p] = 0.0;
                    continue;
                }
                rotated = true;
                // Rotation angle: tan of the smaller root of
                // t^2 + 2 tau t - 1 = 0, tau = (aqq - app) / (2 apq).
                let tau = (aqq - app) / (2.0 * apq);
                let tn = if tau >= 0.0 {
                    1.0 / (tau + libm::sqrt(1.0 + tau * tau))
                } else {
                    -1.0 / (-tau + libm::sqrt(1.0 + tau * tau))
                };
                // For |tau| beyond 1e154 the square overflows and tn is 0:
                // the entry is negligible, and nothing changes.
                let c = 1.0 / libm::sqrt(1.0 + tn * tn);
                let s = tn * c;
                for k in 0..t {
                    let (akp, akq) = (a[k * t + p], a[k * t + q]);
                    a[k * t + p] = c * akp - s * akq;
                    a[k * t + q] = s * akp + c * akq;
                }
                for k in 0..t {
                    let (apk, aqk) = (a[p * t + k], a[q * t + k]);
                    a[p * t + k] = c * apk - s * aqk;
                    a[q * t + k] = s * apk + c * aqk;
                }
                a[p * t + q] = 0.0;
                a[q * t + p] = 0.0;
                for k in 0..t {
                    let (vkp, vkq) = (v[k * t + p], v[k * t + q]);
                    v[k * t + p] = c * vkp - s * vkq;
                    v[k * t + q] = s * vkp + c * vkq;
                }
            }
        }
        if !rotated {
            break;
        }
    }
}

/// The exchange rule of block principal pivoting (Judice & Pires, 1994),
/// shared by the box-constrained and the simplex QP solvers: while the
/// number of violated indices keeps falling (with three more chances after
/// the last fall) every violated index changes between free and bound;
/// otherwise only the last one does (Murty's single-index rule, which
/// cannot cycle).
pub(crate) struct Pivoting {
    best: usize,
    chances: u32,
}

impl Pivoting {
    /// The rule's state before the first exchange of a T-variable solve.
    pub(crate) fn new(t: usize) -> Pivoting {
        Pivoting {
            best: t + 1,
            chances: 3,
        }
    }

    /// Exchanges the violated indices among the first `t`: a free index
    /// (`free[i] != 0`) is violated when `primal[i] < 0`, a bound one when
    /// `dual[i] < 0`. `bad` is how many are violated, `last` the last of
    /// them.
    pub(crate) fn exchange(
        &mut self,
        free: &mut [f64],
        primal: &[f64],
        dual: &[f64],
        t: usize,
        bad: usize,
        last: usize,
    ) {
        let block = if bad < self.best {
            self.best = bad;
            self.chances = 3;
            true
        } else if self.chances > 0 {
            self.chances -= 1;
            true
        } else {
            false
        };
        let cells = free.iter_mut().zip(primal.iter().zip(dual)).take(t);
        for (i, (f, (&p, &d))) in cells.enumerate() {
            let violated = if *f != 0.0 { p < 0.0 } else { d < 0.0 };
            if violated && (block || i == last) {
                *f = if *f != 0.0 { 0.0 } else { 1.0 };
            }
        }
    }
}
