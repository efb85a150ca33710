//! Float64 references for the Gram-based methods, written from each paper's
//! definition with a different algorithm from the library's where one
//! exists: brute force over the active sets of the box and simplex QPs,
//! Gaussian elimination and projections built from the Jacobian for the
//! pseudo-inverse, the Denman-Beavers iteration for the inverse square
//! root, and GradVac on the gradient vectors themselves.

#![allow(dead_code, clippy::needless_range_loop)]

/// A T x T matrix, row-major.
pub type Mat = Vec<f64>;

/// The Gram matrix J J^T of `t` rows of length `n`.
pub fn gram(j: &[f64], t: usize) -> Mat {
    let n = j.len() / t;
    let mut g = vec![0.0; t * t];
    for a in 0..t {
        for b in 0..t {
            g[a * t + b] = (0..n).map(|k| j[a * n + k] * j[b * n + k]).sum();
        }
    }
    g
}

pub fn matvec(g: &[f64], x: &[f64]) -> Vec<f64> {
    let t = x.len();
    (0..t)
        .map(|i| (0..t).map(|k| g[i * t + k] * x[k]).sum())
        .collect()
}

pub fn matmul(a: &[f64], b: &[f64], t: usize) -> Mat {
    let mut c = vec![0.0; t * t];
    for i in 0..t {
        for j in 0..t {
            c[i * t + j] = (0..t).map(|k| a[i * t + k] * b[k * t + j]).sum();
        }
    }
    c
}

pub fn quad(g: &[f64], x: &[f64]) -> f64 {
    x.iter().zip(matvec(g, x)).map(|(a, b)| a * b).sum()
}

pub fn trace(g: &[f64], t: usize) -> f64 {
    (0..t).map(|i| g[i * t + i]).sum()
}

/// Solves A x = b by Gaussian elimination with partial pivoting; `None`
/// when a pivot is below 1e-13 times the largest entry (singular).
pub fn solve(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut m: Vec<f64> = a.to_vec();
    let mut x: Vec<f64> = b.to_vec();
    let scale = m.iter().fold(0.0f64, |s, v| s.max(v.abs()));
    if n == 0 {
        return Some(x);
    }
    if scale == 0.0 {
        return None;
    }
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| m[i * n + c].abs().total_cmp(&m[j * n + c].abs()))
            .unwrap();
        if m[p * n + c].abs() <= 1e-13 * scale {
            return None;
        }
        for k in 0..n {
            m.swap(c * n + k, p * n + k);
        }
        x.swap(c, p);
        for r in c + 1..n {
            let f = m[r * n + c] / m[c * n + c];
            for k in c..n {
                m[r * n + k] -= f * m[c * n + k];
            }
            x[r] -= f * x[c];
        }
    }
    for c in (0..n).rev() {
        let s: f64 = (c + 1..n).map(|k| m[c * n + k] * x[k]).sum();
        x[c] = (x[c] - s) / m[c * n + c];
    }
    Some(x)
}

/// The dual-cone QP min v^T H v s.t. v >= u by brute force: every subset F
/// of free indices, H_FF x_F = -(H u)_F, kept when x_F >= 0 and the bound
/// multipliers (H (u + x))_A >= 0 (the KKT conditions, unique for H PD).
pub fn box_qp(h: &[f64], u: &[f64]) -> Vec<f64> {
    let t = u.len();
    let hu = matvec(h, u);
    let mut best: Option<(f64, Vec<f64>)> = None;
    for mask in 0u32..(1 << t) {
        let f: Vec<usize> = (0..t).filter(|&i| mask >> i & 1 == 1).collect();
        let n = f.len();
        let mut a = vec![0.0; n * n];
        let mut b = vec![0.0; n];
        for (p, &i) in f.iter().enumerate() {
            for (q, &j) in f.iter().enumerate() {
                a[p * n + q] = h[i * t + j];
            }
            b[p] = -hu[i];
        }
        let Some(xf) = solve(&a, &b) else { continue };
        let mut v = u.to_vec();
        for (p, &i) in f.iter().enumerate() {
            v[i] += xf[p];
        }
        let y = matvec(h, &v);
        let s = h.iter().fold(0.0f64, |m, x| m.max(x.abs()))
            * u.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let ok = (0..t).all(|i| {
            if mask >> i & 1 == 1 {
                v[i] - u[i] >= -1e-12 * s.max(1e-300).sqrt().max(u[i].abs())
            } else {
                y[i] >= -1e-12 * s
            }
        });
        if ok {
            let obj = quad(h, &v);
            if best.as_ref().is_none_or(|(o, _)| obj < *o) {
                best = Some((obj, v));
            }
        }
    }
    best.expect("a PD box QP has a KKT point").1
}

/// H = G / tr(G) + reg I (reg I alone for G = 0).
pub fn regularised(g: &[f64], t: usize, reg: f64) -> Mat {
    let s = trace(g, t);
    let mut h: Mat = g
        .iter()
        .map(|x| if s > 0.0 { x / s } else { 0.0 })
        .collect();
    for i in 0..t {
        h[i * t + i] += reg;
    }
    h
}

/// UPGrad's weights from the definition: sum_i v(e_i / T).
pub fn upgrad(g: &[f64], t: usize, reg: f64) -> Vec<f64> {
    let h = regularised(g, t, reg);
    let mut w = vec![0.0; t];
    for i in 0..t {
        let mut u = vec![0.0; t];
        u[i] = 1.0 / t as f64;
        for (a, b) in w.iter_mut().zip(box_qp(&h, &u)) {
            *a += b;
        }
    }
    w
}

/// DualProj's weights from the definition: v(1/T).
pub fn dualproj(g: &[f64], t: usize, reg: f64) -> Vec<f64> {
    let h = regularised(g, t, reg);
    box_qp(&h, &vec![1.0 / t as f64; t])
}

/// min w^T G w over the simplex by brute force over supports S: the KKT
/// system [G_SS 1; 1^T 0] [w; -mu] = [0; 1], kept when w >= 0 and
/// (G w)_i >= w^T G w for every i. Returns the optimal value (the weights
/// are not unique on a singular G).
pub fn simplex_min(g: &[f64], t: usize) -> f64 {
    let scale = trace(g, t).max(1e-300);
    let mut best = f64::INFINITY;
    for mask in 1u32..(1 << t) {
        let s: Vec<usize> = (0..t).filter(|&i| mask >> i & 1 == 1).collect();
        let n = s.len();
        let m = n + 1;
        let mut a = vec![0.0; m * m];
        let mut b = vec![0.0; m];
        for (p, &i) in s.iter().enumerate() {
            for (q, &j) in s.iter().enumerate() {
                a[p * m + q] = g[i * t + j] / scale;
            }
            a[p * m + n] = 1.0;
            a[n * m + p] = 1.0;
        }
        b[n] = 1.0;
        let Some(x) = solve(&a, &b) else { continue };
        let mut w = vec![0.0; t];
        for (p, &i) in s.iter().enumerate() {
            w[i] = x[p];
        }
        if w.iter().any(|&x| x < -1e-12) {
            continue;
        }
        let obj = quad(g, &w);
        let gw = matvec(g, &w);
        if gw.iter().all(|&x| x >= obj - 1e-10 * scale) {
            best = best.min(obj);
        }
    }
    best
}

/// torchjd's MGDA Frank-Wolfe loop, transcribed (`_mgda.py`), on G itself.
pub fn mgda_torchjd(g: &[f64], t: usize, eps: f64, max_iters: usize) -> Vec<f64> {
    let mut alpha = vec![1.0 / t as f64; t];
    for _ in 0..max_iters {
        let ga = matvec(g, &alpha);
        let k = (0..t).fold(0, |k, i| if ga[i] < ga[k] { i } else { k });
        let a = ga[k];
        let b: f64 = alpha.iter().zip(&ga).map(|(x, y)| x * y).sum();
        let c = g[k * t + k];
        let gamma = if c <= a {
            1.0
        } else if b <= a {
            0.0
        } else {
            (b - a) / (b + c - 2.0 * a)
        };
        for (i, x) in alpha.iter_mut().enumerate() {
            *x = (1.0 - gamma) * *x + if i == k { gamma } else { 0.0 };
        }
        if gamma < eps {
            break;
        }
    }
    alpha
}

/// An orthonormal basis (columns, T x r) of the range of G = J J^T, i.e.
/// of the column space of J (T x n), by modified Gram-Schmidt on J's
/// columns with a relative drop tolerance.
pub fn range_basis(j: &[f64], t: usize) -> Vec<Vec<f64>> {
    let n = j.len() / t;
    let norm = j.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut q: Vec<Vec<f64>> = Vec::new();
    for c in 0..n {
        let mut v: Vec<f64> = (0..t).map(|r| j[r * n + c]).collect();
        for _ in 0..2 {
            for b in &q {
                let d: f64 = v.iter().zip(b).map(|(x, y)| x * y).sum();
                for (x, y) in v.iter_mut().zip(b) {
                    *x -= d * y;
                }
            }
        }
        let l = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if l > 1e-9 * norm {
            q.push(v.iter().map(|x| x / l).collect());
        }
    }
    q
}

/// The r x r matrix Q^T G Q for a basis Q.
pub fn reduce(g: &[f64], t: usize, q: &[Vec<f64>]) -> Mat {
    let r = q.len();
    let mut m = vec![0.0; r * r];
    for a in 0..r {
        let ga = matvec(g, &q[a]);
        for b in 0..r {
            m[a * r + b] = ga.iter().zip(&q[b]).map(|(x, y)| x * y).sum();
        }
    }
    let _ = t;
    m
}

/// The inverse of an r x r matrix by Gauss-Jordan (columns of `solve`).
pub fn inverse(a: &[f64], r: usize) -> Mat {
    let mut inv = vec![0.0; r * r];
    for c in 0..r {
        let mut e = vec![0.0; r];
        e[c] = 1.0;
        let x = solve(a, &e).expect("invertible");
        for i in 0..r {
            inv[i * r + c] = x[i];
        }
    }
    inv
}

/// A^(-1/2) of a symmetric positive definite r x r matrix by the
/// Denman-Beavers iteration (Y -> A^(1/2), Z -> A^(-1/2)).
pub fn inv_sqrt(a: &[f64], r: usize) -> Mat {
    let mut y = a.to_vec();
    let mut z: Mat = (0..r * r)
        .map(|k| if k / r == k % r { 1.0 } else { 0.0 })
        .collect();
    for _ in 0..100 {
        let yi = inverse(&y, r);
        let zi = inverse(&z, r);
        let ny: Mat = y.iter().zip(&zi).map(|(a, b)| 0.5 * (a + b)).collect();
        let nz: Mat = z.iter().zip(&yi).map(|(a, b)| 0.5 * (a + b)).collect();
        let d = ny
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        y = ny;
        z = nz;
        if d <= 1e-15 * y.iter().fold(0.0f64, |m, x| m.max(x.abs())) {
            break;
        }
    }
    z
}

/// The smallest eigenvalue of an SPD r x r matrix by inverse power
/// iteration.
pub fn min_eigenvalue(a: &[f64], r: usize) -> f64 {
    let inv = inverse(a, r);
    let mut x = vec![1.0; r];
    x[0] += 0.1;
    let mut l = 0.0;
    for _ in 0..5000 {
        let y = matvec(&inv, &x);
        let n = y.iter().map(|v| v * v).sum::<f64>().sqrt();
        x = y.iter().map(|v| v / n).collect();
        let nl = 1.0 / quad(&inv, &x);
        if (nl - l).abs() <= 1e-15 * nl.abs() {
            l = nl;
            break;
        }
        l = nl;
    }
    l
}

/// Aligned-MTL's weights from the definition, on the range of G:
/// w = sqrt(sigma) G^(+1/2) 1/T, sigma the smallest (or mean) nonzero
/// eigenvalue.
pub fn aligned_mtl(j: &[f64], t: usize, mean_scale: bool) -> Vec<f64> {
    let g = gram(j, t);
    let q = range_basis(j, t);
    let r = q.len();
    if r == 0 {
        return vec![1.0 / t as f64; t];
    }
    let m = reduce(&g, t, &q);
    let sigma = if mean_scale {
        trace(&m, r) / r as f64
    } else {
        min_eigenvalue(&m, r)
    };
    let z = inv_sqrt(&m, r);
    // w = sqrt(sigma) Q Z Q^T u.
    let qtu: Vec<f64> = q.iter().map(|b| b.iter().sum::<f64>() / t as f64).collect();
    let zq = matvec(&z, &qtu);
    let mut w = vec![0.0; t];
    for a in 0..r {
        for i in 0..t {
            w[i] += sigma.sqrt() * zq[a] * q[a][i];
        }
    }
    w
}

/// IMTL-G's v = G^+ d from the definition on the range of G:
/// v = Q (Q^T G Q)^(-1) Q^T d.
pub fn imtl_v(j: &[f64], t: usize) -> Vec<f64> {
    let g = gram(j, t);
    let d: Vec<f64> = (0..t).map(|i| g[i * t + i].sqrt()).collect();
    let q = range_basis(j, t);
    let r = q.len();
    if r == 0 {
        return vec![0.0; t];
    }
    let m = reduce(&g, t, &q);
    let qtd: Vec<f64> = q
        .iter()
        .map(|b| b.iter().zip(&d).map(|(x, y)| x * y).sum())
        .collect();
    let y = solve(&m, &qtd).expect("reduced Gram is invertible");
    let mut v = vec![0.0; t];
    for a in 0..r {
        for i in 0..t {
            v[i] += y[a] * q[a][i];
        }
    }
    v
}

/// GradVac on the gradient vectors (the paper's Algorithm 1 with the EMA
/// targets of torchjd), with the visiting orders given. `eps` is on the
/// scale of the vectors' squared norms (the library's is on G / tr(G)).
pub fn gradvac(
    j: &[f64],
    t: usize,
    orders: &[Vec<usize>],
    phi: &mut [f64],
    beta: f64,
    eps: f64,
) -> Vec<f64> {
    let n = j.len() / t;
    let row = |i: usize| &j[i * n..(i + 1) * n];
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut merged = vec![0.0; n];
    for i in 0..t {
        let mut gi = row(i).to_vec();
        for &k in &orders[i] {
            let gj = row(k);
            let ni = dot(&gi, &gi).sqrt();
            let nj = dot(gj, gj).sqrt();
            let ph = dot(&gi, gj) / (ni * nj + eps);
            let hat = phi[i * t + k];
            if ph < hat {
                let w = ni
                    * (hat * (1.0 - ph * ph).max(0.0).sqrt()
                        - ph * (1.0 - hat * hat).max(0.0).sqrt())
                    / (nj * (1.0 - hat * hat).max(0.0).sqrt() + eps);
                for (a, b) in gi.iter_mut().zip(gj) {
                    *a += w * b;
                }
            }
            phi[i * t + k] = (1.0 - beta) * hat + beta * ph;
        }
        for (m, a) in merged.iter_mut().zip(&gi) {
            *m += a;
        }
    }
    merged
}
