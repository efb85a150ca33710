//! The Gram-based methods (`pcgrad::methods`) against float64 references
//! written from each paper's definition (`tests/common/methods_ref.rs`),
//! with the KKT conditions of the optimisation-based ones checked
//! directly, on random and adversarial Grams: T = 1, rank deficient,
//! identical, opposite and zero gradients, 1e-30 and 1e30 scales.

#[path = "common/methods_ref.rs"]
mod methods_ref;

use methods_ref as r;
use pcgrad::methods::{
    aggregate, aggregate_workspace_len, method_weights, method_workspace_len, AlignedMtl,
    AlignedScale, CaGrad, DualCone, GradVac, ImtlG, Method, Mgda, NashMtl, NashState,
};
use pcgrad::{Error, Flat, Layout, PcGrad, PerVariable, PpcGrad, Rng};

/// A T x N Jacobian with entries uniform in [-1, 1) from a seed.
fn random_j(t: usize, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..t * n)
        .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0)
        .collect()
}

/// Named Jacobians (T rows of N = len / T): random, and the adversarial
/// shapes.
fn jacobians() -> Vec<(String, usize, Vec<f64>)> {
    let mut out = Vec::new();
    for t in 1..=6 {
        for seed in 0..4u64 {
            out.push((
                format!("random T={t} seed={seed}"),
                t,
                random_j(t, 9, seed * 31 + t as u64),
            ));
        }
        // Rank deficient: N = 2 < T.
        out.push((format!("rank2 T={t}"), t, random_j(t, 2, 77 + t as u64)));
        // A duplicated row and a zero row.
        let mut j = random_j(t, 7, 5 + t as u64);
        if t >= 2 {
            let (a, b) = j.split_at_mut(7);
            b[..7].copy_from_slice(a);
        }
        out.push((format!("duplicate T={t}"), t, j.clone()));
        if t >= 3 {
            j[2 * 7..3 * 7].fill(0.0);
            out.push((format!("zero row T={t}"), t, j));
        }
        // Every row identical; rows alternating g, -g.
        let g = random_j(1, 5, 99);
        let same: Vec<f64> = (0..t).flat_map(|_| g.clone()).collect();
        out.push((format!("identical T={t}"), t, same));
        let opp: Vec<f64> = (0..t)
            .flat_map(|i| g.iter().map(move |x| if i % 2 == 0 { *x } else { -x }))
            .collect();
        out.push((format!("opposite T={t}"), t, opp));
    }
    // Badly scaled: rows of very different norms.
    let mut j = random_j(4, 6, 1234);
    for (i, x) in j.iter_mut().enumerate() {
        *x *= [1e-6, 1.0, 1e5, 3.0][i / 6];
    }
    out.push(("row scales 1e-6..1e5".into(), 4, j));
    let mut scaled = Vec::new();
    for (name, t, j) in &out {
        if name.starts_with("random T=4") || name.starts_with("duplicate T=3") {
            for s in [1e-15, 1e15] {
                scaled.push((
                    format!("{name} x{s:e}"),
                    *t,
                    j.iter().map(|x| x * s).collect(),
                ));
            }
        }
    }
    out.extend(scaled);
    out
}

fn weights_of(method: &mut Method<'_>, g: &[f64], t: usize) -> Result<Vec<f64>, Error> {
    let mut ws = vec![f64::NAN; method_workspace_len(method, t)?];
    let mut w = vec![f64::NAN; t];
    method_weights(method, g, t, &mut w, &mut ws)?;
    assert!(w.iter().all(|x| x.is_finite()), "non-finite weights {w:?}");
    Ok(w)
}

fn max_abs(x: &[f64]) -> f64 {
    x.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// |got - want|_inf <= tol * max(|want|_inf, floor).
fn close(got: &[f64], want: &[f64], tol: f64, floor: f64, what: &str) {
    let d = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let s = max_abs(want).max(floor);
    assert!(
        d <= tol * s,
        "{what}: got {got:?} want {want:?} (diff {d:e})"
    );
}

#[test]
fn upgrad_and_dualproj_match_brute_force_and_kkt() {
    for reg in [1e-4, 1e-2] {
        for (name, t, j) in jacobians() {
            let g = r::gram(&j, t);
            let p = DualCone { reg };
            // 1e-9 on well-conditioned G; the row scales 1e-6..1e5 make
            // G's condition number 1e22.
            let tol = if name.contains("row scales") {
                1e-8
            } else {
                1e-9
            };
            let up = weights_of(&mut Method::UpGrad(p), &g, t).unwrap();
            close(
                &up,
                &r::upgrad(&g, t, reg),
                tol,
                1e-3,
                &format!("UPGrad {name}"),
            );
            let dp = weights_of(&mut Method::DualProj(p), &g, t).unwrap();
            close(
                &dp,
                &r::dualproj(&g, t, reg),
                tol,
                1e-3,
                &format!("DualProj {name}"),
            );
            // KKT of DualProj directly: v >= u, y = H v >= 0, (v - u) . y = 0.
            let h = r::regularised(&g, t, reg);
            let u = 1.0 / t as f64;
            let y = r::matvec(&h, &dp);
            let ys = max_abs(&y).max(1e-300);
            for i in 0..t {
                assert!(dp[i] >= u * (1.0 - 1e-12), "{name}: v < u");
                assert!(y[i] >= -1e-10 * ys, "{name}: multiplier {}", y[i]);
                assert!(
                    ((dp[i] - u) * y[i]).abs() <= 1e-10 * ys * max_abs(&dp),
                    "{name}"
                );
            }
            // UPGrad's update conflicts with no task (up to the ridge):
            // (G w)_i / tr >= -reg w_i.
            let gw = r::matvec(&h, &up);
            for i in 0..t {
                assert!(
                    gw[i] >= -1e-10 * max_abs(&gw).max(1e-300),
                    "{name}: conflict {}",
                    gw[i]
                );
            }
        }
    }
}

#[test]
fn mgda_is_the_min_norm_point_of_the_hull() {
    for (name, t, j) in jacobians() {
        let g = r::gram(&j, t);
        let s = r::trace(&g, t);
        let best = r::simplex_min(&g, t);
        // The paper's solver to convergence: the Frank-Wolfe gap
        // w^T G w - min_i (G w)_i bounds the suboptimality.
        let mut m = Method::Mgda(Mgda {
            tol: 1e-300,
            max_iters: 200_000,
        });
        let w = weights_of(&mut m, &g, t).unwrap();
        assert!(w.iter().all(|&x| x >= 0.0), "{name}: {w:?}");
        assert!((w.iter().sum::<f64>() - 1.0).abs() <= 1e-12, "{name}");
        let obj = r::quad(&g, &w);
        let gap = obj
            - r::matvec(&g, &w)
                .iter()
                .cloned()
                .fold(f64::INFINITY, f64::min);
        if s > 0.0 {
            assert!(
                obj >= best - 1e-12 * s,
                "{name}: {obj} below the optimum {best}"
            );
            // The Frank-Wolfe gap of f(w) = w^T G w is 2 (w^T G w - min_i (G w)_i).
            assert!(obj - best <= 2.0 * gap.max(0.0) + 1e-12 * s, "{name}: gap");
            // Duality gap below 1e-4 of the scale after the iterations.
            assert!(gap <= 1e-4 * s, "{name}: gap {gap:e} of {s:e}");
        }
        if t <= 2 && s > 0.0 {
            // Exact for T <= 2.
            assert!(
                (obj - best).abs() <= 1e-12 * s,
                "{name}: T=2 exact {obj} {best}"
            );
        }
        // The default parameters follow torchjd's iterates.
        let w = weights_of(&mut Method::Mgda(Mgda::default()), &g, t).unwrap();
        if t > 2 && s > 0.0 {
            let n: Vec<f64> = g.iter().map(|x| x / s).collect();
            close(
                &w,
                &r::mgda_torchjd(&n, t, 1e-3, 100),
                1e-9,
                1.0,
                &format!("MGDA FW {name}"),
            );
        }
    }
}

/// CAGrad's objective on H: F(w) = w^T H u + phi sqrt(w^T H w).
fn cagrad_objective(h: &[f64], t: usize, c: f64, w: &[f64]) -> f64 {
    let u = vec![1.0 / t as f64; t];
    let phi = c * r::quad(h, &u).sqrt();
    let hu = r::matvec(h, &u);
    w.iter().zip(&hu).map(|(a, b)| a * b).sum::<f64>() + phi * r::quad(h, w).sqrt()
}

#[test]
fn cagrad_satisfies_its_kkt_conditions() {
    for (name, t, j) in jacobians() {
        let g = r::gram(&j, t);
        if r::trace(&g, t) == 0.0 {
            continue;
        }
        for c in [0.1, 0.4, 2.0] {
            let reg = 1e-8;
            let p = CaGrad {
                c,
                reg,
                ..Default::default()
            };
            let wt = weights_of(&mut Method::CaGrad(p), &g, t).unwrap();
            let h = r::regularised(&g, t, reg);
            let u = 1.0 / t as f64;
            // w on the simplex from the weights u + (phi / |g_w|) w.
            let d: Vec<f64> = wt.iter().map(|x| x - u).collect();
            let sd: f64 = d.iter().sum();
            assert!(sd > 0.0, "{name}: {wt:?}");
            let w: Vec<f64> = d.iter().map(|x| x / sd).collect();
            assert!(w.iter().all(|&x| x >= -1e-12), "{name}: {w:?}");
            let phi = c * r::quad(&h, &vec![u; t]).sqrt();
            let gw = r::quad(&h, &w).sqrt();
            // 1e-6: with opposite gradients phi = c sqrt(reg / 2) comes out
            // of a cancellation.
            assert!(
                (sd - phi / gw).abs() <= 1e-6 * sd,
                "{name}: scale {sd} {} {wt:?} {w:?}",
                phi / gw
            );
            // KKT: grad_i = (H u)_i + phi (H w)_i / |g_w| >= nu everywhere,
            // = nu on the support.
            let hu = r::matvec(&h, &vec![u; t]);
            let hw = r::matvec(&h, &w);
            let grad: Vec<f64> = (0..t).map(|i| hu[i] + phi * hw[i] / gw).collect();
            let nu = grad.iter().cloned().fold(f64::INFINITY, f64::min);
            let sc = max_abs(&grad).max(max_abs(&hu));
            for i in 0..t {
                if w[i] > 1e-9 {
                    assert!(
                        (grad[i] - nu).abs() <= 1e-7 * sc,
                        "{name} c={c}: {grad:?} {w:?}"
                    );
                }
            }
            // No simplex point does better: the vertices and random points.
            let f = cagrad_objective(&h, t, c, &w);
            let mut rng = Rng::new(t as u64);
            for k in 0..t + 200 {
                let z: Vec<f64> = if k < t {
                    (0..t).map(|i| if i == k { 1.0 } else { 0.0 }).collect()
                } else {
                    let e: Vec<f64> = (0..t)
                        .map(|_| {
                            -(((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64).ln()
                        })
                        .collect();
                    let s: f64 = e.iter().sum();
                    e.iter().map(|x| x / s).collect()
                };
                let fz = cagrad_objective(&h, t, c, &z);
                assert!(f <= fz + 1e-9 * sc, "{name} c={c}: {f} > {fz}");
            }
        }
    }
}

#[test]
fn imtl_g_matches_the_pseudo_inverse_definition() {
    for (name, t, j) in jacobians() {
        let g = r::gram(&j, t);
        let w = weights_of(&mut Method::ImtlG(ImtlG::default()), &g, t).unwrap();
        let v = r::imtl_v(&j, t);
        let sum: f64 = v.iter().sum();
        let abs: f64 = v.iter().map(|x| x.abs()).sum();
        if sum.abs() <= 1e-9 * abs || abs == 0.0 {
            // The documented zero case (opposite or zero gradients).
            assert!(
                max_abs(&w) <= 1e-6 || sum.abs() > 1e-12 * abs,
                "{name}: {w:?}"
            );
            continue;
        }
        let want: Vec<f64> = v.iter().map(|x| x / sum).collect();
        close(&w, &want, 1e-6, 0.0, &format!("IMTL-G {name}"));
        // The defining property on full-rank G: every g_i has the same
        // projection on the update d = J^T w, (G w)_i / sqrt(G_ii).
        if r::range_basis(&j, t).len() < t {
            continue;
        }
        let gw = r::matvec(&g, &w);
        let proj: Vec<f64> = (0..t)
            .filter(|&i| g[i * t + i] > 1e-20 * r::trace(&g, t))
            .map(|i| gw[i] / g[i * t + i].sqrt())
            .collect();
        for p in &proj {
            assert!(
                (p - proj[0]).abs() <= 1e-6 * proj[0].abs().max(1e-300),
                "{name}: {proj:?}"
            );
        }
    }
}

#[test]
fn aligned_mtl_matches_an_independent_inverse_square_root() {
    for (name, t, j) in jacobians() {
        if name.contains("row scales") {
            // Eigenvalues 1e-12 apart from the largest: below torchjd's
            // (float32) rank tolerance, where the definitions differ by
            // design (the reference keeps them).
            continue;
        }
        let g = r::gram(&j, t);
        for (scale, mean) in [(AlignedScale::Min, false), (AlignedScale::Mean, true)] {
            let m = AlignedMtl {
                scale,
                rank_tol: 0.0,
            };
            let w = weights_of(&mut Method::AlignedMtl(m), &g, t).unwrap();
            close(
                &w,
                &r::aligned_mtl(&j, t, mean),
                1e-6,
                1e-9,
                &format!("Aligned {name}"),
            );
        }
    }
    // Median of three distinct eigenvalues: the middle one; for T = 4
    // the lower middle one.
    let g = [4.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 9.0];
    let m = AlignedMtl {
        scale: AlignedScale::Median,
        rank_tol: 0.0,
    };
    let w = weights_of(&mut Method::AlignedMtl(m), &g, 3).unwrap();
    close(
        &w,
        &[2.0 / 2.0 / 3.0, 2.0 / 1.0 / 3.0, 2.0 / 3.0 / 3.0],
        1e-12,
        0.0,
        "median",
    );
    let g = [
        4.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0, 16.0,
    ];
    let w = weights_of(&mut Method::AlignedMtl(m), &g, 4).unwrap();
    close(
        &w,
        &[1.0 / 4.0, 2.0 / 4.0, 2.0 / 12.0, 2.0 / 16.0],
        1e-12,
        0.0,
        "median T=4",
    );
}

/// The visiting orders a GradVac call draws from `rng`.
fn orders(t: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    (0..t)
        .map(|i| {
            let mut p: Vec<usize> = (0..t).filter(|&k| k != i).collect();
            for k in (1..p.len()).rev() {
                let m = rng.below(k as u32 + 1) as usize;
                p.swap(k, m);
            }
            p
        })
        .collect()
}

#[test]
fn gradvac_matches_the_vector_algorithm_over_several_steps() {
    for (name, t, j) in jacobians() {
        let n = j.len() / t;
        let g = r::gram(&j, t);
        let mut phi = vec![0.0; t * t];
        let mut phi_ref = vec![0.0; t * t];
        let mut rng = Rng::new(3);
        let mut rng_ref = rng;
        for step in 0..3 {
            let beta = 0.3;
            let p = GradVac { beta, eps: 1e-300 };
            let w = weights_of(&mut Method::GradVac(p, &mut phi, &mut rng), &g, t).unwrap();
            let ord = orders(t, &mut rng_ref);
            let want = r::gradvac(&j, t, &ord, &mut phi_ref, beta, 1e-300);
            let got: Vec<f64> = (0..n)
                .map(|c| (0..t).map(|i| w[i] * j[i * n + c]).sum())
                .collect();
            close(
                &got,
                &want,
                1e-7,
                max_abs(&j),
                &format!("GradVac {name} step {step}"),
            );
            // With opposite rows g_i' vanishes to rounding after one
            // correction, and its cosine with the next g_j is rounding noise
            // (0 from the Gram, anything from the vectors).
            if !name.starts_with("opposite") {
                close(
                    &phi,
                    &phi_ref,
                    1e-7,
                    1.0,
                    &format!("GradVac targets {name}"),
                );
            }
            assert_eq!(rng, rng_ref, "{name}");
        }
    }
}

#[test]
fn nash_mtl_solves_the_bargaining_equation() {
    for (name, t, j) in jacobians() {
        let g = r::gram(&j, t);
        let f = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        // Solvable when no positive combination vanishes: full rank here.
        let solvable = r::range_basis(&j, t).len() == t;
        let mut alpha = vec![0.0; t];
        let p = NashMtl {
            max_norm: f64::INFINITY,
            max_iters: 100,
            ..Default::default()
        };
        let w = weights_of(&mut Method::NashMtl(p, NashState::new(&mut alpha)), &g, t).unwrap();
        assert!(w.iter().all(|&x| x > 0.0 || f == 0.0), "{name}: {w:?}");
        if solvable {
            let gn: Vec<f64> = g.iter().map(|x| x / f).collect();
            let ga = r::matvec(&gn, &w);
            for i in 0..t {
                assert!(
                    (ga[i] * w[i] - 1.0).abs() <= 1e-9,
                    "{name}: (G a)_i a_i = {}",
                    ga[i] * w[i]
                );
            }
            assert_eq!(alpha, w, "{name}: state keeps the solution");
            // Clipping: |J^T w| = max_norm afterwards.
            let mut st = alpha.clone();
            let p = NashMtl {
                max_norm: 1e-3,
                ..Default::default()
            };
            let wc = weights_of(
                &mut Method::NashMtl(
                    p,
                    NashState {
                        alpha: &mut st,
                        step: 0,
                    },
                ),
                &g,
                t,
            )
            .unwrap();
            let norm = r::quad(&g, &wc).sqrt();
            if r::quad(&g, &w).sqrt() > 1e-3 {
                assert!((norm - 1e-3).abs() <= 1e-9, "{name}: clipped norm {norm}");
            }
        }
    }
    // update_every = 3: calls 1 and 2 reuse the weights of call 0.
    let j = random_j(3, 5, 8);
    let g = r::gram(&j, 3);
    let g2: Vec<f64> = r::gram(&random_j(3, 5, 9), 3);
    let mut alpha = vec![0.0; 3];
    let mut st = NashState::new(&mut alpha);
    let p = NashMtl {
        max_norm: f64::INFINITY,
        update_every: 3,
        ..Default::default()
    };
    let mut ws = vec![0.0; 64];
    let mut w0 = vec![0.0; 3];
    let mut w1 = vec![0.0; 3];
    method_weights(
        &mut Method::NashMtl(
            p,
            NashState {
                alpha: st.alpha,
                step: st.step,
            },
        ),
        &g,
        3,
        &mut w0,
        &mut ws,
    )
    .unwrap();
    st.step = 1;
    method_weights(
        &mut Method::NashMtl(
            p,
            NashState {
                alpha: st.alpha,
                step: 1,
            },
        ),
        &g2,
        3,
        &mut w1,
        &mut ws,
    )
    .unwrap();
    assert_eq!(w0, w1);
}

#[test]
fn random_weights_are_a_reproducible_softmax() {
    for t in [1usize, 2, 5, 8] {
        let g = r::gram(&random_j(t, 4, 1), t);
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let wa = weights_of(&mut Method::Random(&mut a), &g, t).unwrap();
        let wb = weights_of(&mut Method::Random(&mut b), &g, t).unwrap();
        assert_eq!(wa, wb);
        assert!(wa.iter().all(|&x| x > 0.0));
        assert!((wa.iter().sum::<f64>() - 1.0).abs() <= 1e-12);
        assert_ne!(a, Rng::new(42), "the PRNG advances");
        let wc = weights_of(&mut Method::Random(&mut a), &g, t).unwrap();
        if t > 1 {
            assert_ne!(wa, wc, "fresh draws each call");
        }
    }
    // The log-weights are centred normal draws: mean of z_i - z_j is 0 and
    // the variance of z_i - z_j is 2 over many calls.
    let mut rng = Rng::new(7);
    let g = [1.0, 0.0, 0.0, 1.0];
    let (mut s, mut s2, n) = (0.0, 0.0, 20000);
    for _ in 0..n {
        let w = weights_of(&mut Method::Random(&mut rng), &g, 2).unwrap();
        let d = (w[0] / w[1]).ln();
        s += d;
        s2 += d * d;
    }
    let mean = s / n as f64;
    let var = s2 / n as f64 - mean * mean;
    assert!(mean.abs() < 0.05 && (var - 2.0).abs() < 0.1, "{mean} {var}");
}

#[test]
fn mean_and_sum() {
    let g = r::gram(&random_j(3, 4, 2), 3);
    assert_eq!(
        weights_of(&mut Method::Mean, &g, 3).unwrap(),
        vec![1.0 / 3.0; 3]
    );
    assert_eq!(weights_of(&mut Method::Sum, &g, 3).unwrap(), vec![1.0; 3]);
}

/// Every method without state, with its default parameters.
fn stateless() -> Vec<(&'static str, Method<'static>)> {
    vec![
        ("MGDA", Method::Mgda(Mgda::default())),
        ("CAGrad", Method::CaGrad(CaGrad::default())),
        ("UPGrad", Method::UpGrad(DualCone::default())),
        ("DualProj", Method::DualProj(DualCone::default())),
        ("IMTL-G", Method::ImtlG(ImtlG::default())),
        ("Aligned-MTL", Method::AlignedMtl(AlignedMtl::default())),
        ("Mean", Method::Mean),
        ("Sum", Method::Sum),
    ]
}

#[test]
fn weights_do_not_depend_on_the_scale_of_g() {
    for (name, t, j) in jacobians() {
        let g = r::gram(&j, t);
        for (m, mut method) in stateless() {
            let w = weights_of(&mut method, &g, t).unwrap();
            for s in [1e-30, 1e-200, 1e30, 1e250] {
                let gs: Vec<f64> = g.iter().map(|x| x * s).collect();
                let ws = weights_of(&mut method, &gs, t).unwrap();
                close(&ws, &w, 1e-9, 1e-9, &format!("{m} {name} x{s:e}"));
            }
        }
        // Nash-MTL where the bargaining problem has a solution.
        for s in [1e-30, 1e30] {
            if r::range_basis(&j, t).len() < t {
                continue;
            }
            let gs: Vec<f64> = g.iter().map(|x| x * s).collect();
            let (mut a, mut b) = (vec![0.0; t], vec![0.0; t]);
            let p = NashMtl {
                max_norm: f64::INFINITY,
                ..Default::default()
            };
            let w1 = weights_of(&mut Method::NashMtl(p, NashState::new(&mut a)), &g, t).unwrap();
            let w2 = weights_of(&mut Method::NashMtl(p, NashState::new(&mut b)), &gs, t).unwrap();
            close(&w2, &w1, 1e-6, 1e-9, &format!("Nash {name} x{s:e}"));
        }
    }
}

#[test]
fn zero_gram_gives_the_documented_weights() {
    for t in [1usize, 2, 3, 5] {
        let g = vec![0.0; t * t];
        let u = vec![1.0 / t as f64; t];
        let z = vec![0.0; t];
        for (m, mut method) in stateless() {
            let w = weights_of(&mut method, &g, t).unwrap();
            let want = match m {
                "IMTL-G" => z.clone(),
                "Sum" => vec![1.0; t],
                _ => u.clone(),
            };
            close(&w, &want, 1e-12, 1.0, m);
        }
        let mut a = vec![0.0; t];
        let w = weights_of(
            &mut Method::NashMtl(NashMtl::default(), NashState::new(&mut a)),
            &g,
            t,
        )
        .unwrap();
        assert_eq!(w, z);
        let (mut phi, mut rng) = (vec![0.0; t * t], Rng::new(1));
        let w = weights_of(
            &mut Method::GradVac(GradVac::default(), &mut phi, &mut rng),
            &g,
            t,
        )
        .unwrap();
        assert_eq!(w, vec![1.0; t]);
    }
}

#[test]
fn bad_input_is_an_error_and_writes_nothing() {
    let g = r::gram(&random_j(3, 4, 3), 3);
    let check = |mut m: Method<'_>, g: &[f64], t: usize, want: Error| {
        let mut ws = vec![0.0; 1024];
        let mut w = vec![-7.0; t];
        assert_eq!(method_weights(&mut m, g, t, &mut w, &mut ws), Err(want));
        assert!(w.iter().all(|&x| x == -7.0));
    };
    check(
        Method::Mgda(Mgda {
            tol: -1.0,
            max_iters: 0,
        }),
        &g,
        3,
        Error::InvalidParameter,
    );
    check(
        Method::UpGrad(DualCone { reg: -1e-4 }),
        &g,
        3,
        Error::InvalidParameter,
    );
    check(
        Method::DualProj(DualCone { reg: f64::NAN }),
        &g,
        3,
        Error::InvalidParameter,
    );
    check(
        Method::ImtlG(ImtlG {
            rank_tol: -1.0,
            eps: 0.0,
        }),
        &g,
        3,
        Error::InvalidParameter,
    );
    check(
        Method::AlignedMtl(AlignedMtl {
            rank_tol: -1.0,
            ..Default::default()
        }),
        &g,
        3,
        Error::InvalidParameter,
    );
    let (mut phi, mut rng) = (vec![0.0; 9], Rng::new(5));
    check(
        Method::GradVac(
            GradVac {
                beta: 1.5,
                eps: 0.0,
            },
            &mut phi,
            &mut rng,
        ),
        &g,
        3,
        Error::InvalidParameter,
    );
    check(
        Method::GradVac(GradVac::default(), &mut phi[..4], &mut rng),
        &g,
        3,
        Error::LengthMismatch,
    );
    assert_eq!(rng, Rng::new(5));
    let mut a = vec![0.0; 3];
    check(
        Method::NashMtl(
            NashMtl {
                max_norm: -1.0,
                ..Default::default()
            },
            NashState::new(&mut a),
        ),
        &g,
        3,
        Error::InvalidParameter,
    );
    check(
        Method::NashMtl(NashMtl::default(), NashState::new(&mut a[..2])),
        &g,
        3,
        Error::LengthMismatch,
    );
    // Non-finite and non-PSD Grams, for every method.
    let mut nan = g.clone();
    nan[1] = f64::NAN;
    let mut inf = g.clone();
    inf[4] = f64::INFINITY;
    let not_psd = [1.0, 2.0, 2.0, 1.0];
    let neg_diag = [1.0, 0.0, 0.0, -1.0];
    // PSD minors but an eigenvalue of -1/3: caught by the factorising
    // methods.
    let indefinite = [1.0, -1.0, -1.0, -1.0, 1.0, -1.0, -1.0, -1.0, 1.0];
    for (m, mut method) in stateless() {
        for (bad, t, want) in [
            (&nan[..], 3, Error::NonFinite),
            (&inf[..], 3, Error::NonFinite),
            (&not_psd[..], 2, Error::NotPsd),
            (&neg_diag[..], 2, Error::NotPsd),
        ] {
            let mut ws = vec![0.0; 1024];
            let mut w = vec![-7.0; t];
            assert_eq!(
                method_weights(&mut method, bad, t, &mut w, &mut ws),
                Err(want),
                "{m}"
            );
            assert!(w.iter().all(|&x| x == -7.0));
        }
        if matches!(m, "UPGrad" | "DualProj" | "IMTL-G" | "Aligned-MTL") {
            let mut ws = vec![0.0; 1024];
            let mut w = vec![-7.0; 3];
            assert_eq!(
                method_weights(&mut method, &indefinite, 3, &mut w, &mut ws),
                Err(Error::NotPsd),
                "{m}"
            );
        }
        // Shapes and workspace.
        let mut w = vec![0.0; 3];
        let need = method_workspace_len(&method, 3).unwrap();
        let mut ws = vec![0.0; need - 1];
        assert_eq!(
            method_weights(&mut method, &g, 3, &mut w, &mut ws),
            Err(Error::WorkspaceTooSmall)
        );
        let mut ws = vec![0.0; need];
        assert_eq!(
            method_weights(&mut method, &g[..8], 3, &mut w, &mut ws),
            Err(Error::LengthMismatch)
        );
        assert_eq!(
            method_weights(&mut method, &g, 3, &mut w[..2], &mut ws),
            Err(Error::LengthMismatch)
        );
        assert_eq!(
            method_weights(&mut method, &[], 0, &mut [], &mut ws),
            Err(Error::NoTasks)
        );
        assert_eq!(method_workspace_len(&method, 0), Err(Error::NoTasks));
        assert_eq!(
            method_workspace_len(&method, usize::MAX / 2),
            Err(Error::Overflow)
        );
    }
}

/// A problem of T tasks over N coordinates in two segments, task 0 lacking
/// the second.
fn problem(t: usize, n: usize, seed: u64) -> (Vec<f32>, Vec<usize>, Vec<bool>) {
    let j = random_j(t, n, seed);
    let mut grads: Vec<f32> = j.iter().map(|&x| x as f32).collect();
    let segs = vec![n / 3, n - n / 3];
    let mut has = vec![true; 2 * t];
    if t > 1 {
        has[1] = false;
        grads[n / 3..n].fill(0.0);
    }
    (grads, segs, has)
}

#[test]
fn aggregate_is_the_weighted_sum_on_flat_and_per_variable() {
    for t in [1usize, 2, 3, 5] {
        let n = 101;
        let (grads, segs, has) = problem(t, n, 11 + t as u64);
        let layout = Layout::new(t, n, &segs, &has).unwrap();
        let flat = Flat::new(layout, &grads).unwrap();
        let vars: Vec<Option<&[f32]>> = (0..t)
            .flat_map(|i| {
                let grads = &grads;
                let segs = &segs;
                let has = &has;
                (0..2).map(move |s| {
                    let lo = i * n + if s == 0 { 0 } else { segs[0] };
                    has[i * 2 + s].then(|| &grads[lo..lo + segs[s]])
                })
            })
            .collect();
        let mut mask = vec![false; 2 * t];
        let pv = PerVariable::new(t, &segs, &vars, &mut mask).unwrap();
        let mut methods = stateless();
        methods.push(("Mean2", Method::Mean));
        for (m, mut method) in methods {
            let mut ws = vec![0.0; aggregate_workspace_len(&method, t).unwrap()];
            let mut out = vec![0.0f32; n];
            aggregate(&mut method, &flat, &mut out, &mut ws).unwrap();
            let w = ws[2 * t * t + t * t..2 * t * t + t * t + t].to_vec();
            // The weights of the Gram left in the workspace.
            let g: Vec<f64> = ws[..t * t].to_vec();
            assert_eq!(w, weights_of(&mut method, &g, t).unwrap(), "{m}");
            for c in 0..n {
                let want: f64 = (0..t).map(|i| w[i] * grads[i * n + c] as f64).sum();
                let scale: f64 = (0..t).map(|i| (w[i] * grads[i * n + c] as f64).abs()).sum();
                assert!(
                    (out[c] as f64 - want).abs() <= 1e-6 * scale.max(1e-30),
                    "{m} T={t} c={c}"
                );
            }
            let mut out2 = vec![0.0f32; n];
            let mut ws2 = vec![0.0; ws.len()];
            aggregate(&mut method, &pv, &mut out2, &mut ws2).unwrap();
            assert_eq!(out, out2, "{m}: flat and per-variable");
            // Errors: merged of the wrong length, workspace too small.
            assert_eq!(
                aggregate(&mut method, &flat, &mut out[..n - 1], &mut ws),
                Err(Error::LengthMismatch)
            );
            let short = ws.len() - 1;
            assert_eq!(
                aggregate(&mut method, &flat, &mut out, &mut ws[..short]),
                Err(Error::WorkspaceTooSmall)
            );
        }
        // Non-finite gradients are refused.
        let mut bad = grads.clone();
        bad[3] = f32::NAN;
        let flat_bad = Flat::new(layout, &bad).unwrap();
        let mut m = Method::UpGrad(DualCone::default());
        let mut ws = vec![0.0; aggregate_workspace_len(&m, t).unwrap()];
        let mut out = vec![5.0f32; n];
        assert_eq!(
            aggregate(&mut m, &flat_bad, &mut out, &mut ws),
            Err(Error::NonFinite)
        );
        assert!(out.iter().all(|&x| x == 5.0));
    }
}

#[test]
fn pcgrad_through_methods_is_bitwise_pcgrad() {
    for t in [1usize, 2, 3, 6] {
        let n = 77;
        let (grads, segs, has) = problem(t, n, 40 + t as u64);
        let layout = Layout::new(t, n, &segs, &has).unwrap();
        let flat = Flat::new(layout, &grads).unwrap();
        for seed in [1u64, 9] {
            let (mut r1, mut r2) = (Rng::new(seed), Rng::new(seed));
            let mut want = vec![0.0f32; n];
            let mut ws = vec![0.0; pcgrad::workspace_len(t).unwrap()];
            PcGrad::new(&mut r1)
                .merge(&flat, &mut want, &mut ws)
                .unwrap();
            let mut m = Method::PcGrad(PcGrad::new(&mut r2));
            let mut ws2 = vec![0.0; aggregate_workspace_len(&m, t).unwrap()];
            let mut got = vec![0.0f32; n];
            aggregate(&mut m, &flat, &mut got, &mut ws2).unwrap();
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
            assert_eq!(r1, r2);
        }
        let mut want = vec![0.0f32; n];
        let mut ws = vec![0.0; pcgrad::workspace_len(t).unwrap()];
        PpcGrad::new().merge(&flat, &mut want, &mut ws).unwrap();
        // The phase-2 weights are the coefficient column sums b.
        let g = ws[..t * t].to_vec();
        let mut m = Method::PcGrad(PpcGrad::new());
        let w = weights_of(&mut m, &g, t).unwrap();
        let mut cws = vec![0.0; pcgrad::engine::coefficients_len(t).unwrap()];
        let (coef, _) =
            pcgrad::engine::coefficients(&g, t, &mut pcgrad::Mode::Simultaneous, &mut cws).unwrap();
        assert_eq!(w, coef.b());
        let mut got = vec![0.0f32; n];
        let mut ws2 = vec![0.0; aggregate_workspace_len(&m, t).unwrap()];
        aggregate(&mut m, &flat, &mut got, &mut ws2).unwrap();
        assert_eq!(got, want);
    }
}

#[test]
fn qp_solver_handles_larger_t() {
    // T = 16 and 40 (beyond brute force): the KKT conditions directly.
    for (t, n) in [(16usize, 30usize), (16, 5), (40, 60)] {
        let j = random_j(t, n, t as u64 * 3 + n as u64);
        let g = r::gram(&j, t);
        let w = weights_of(&mut Method::DualProj(DualCone::default()), &g, t).unwrap();
        let h = r::regularised(&g, t, 1e-4);
        let y = r::matvec(&h, &w);
        let u = 1.0 / t as f64;
        let ys = max_abs(&y);
        for i in 0..t {
            assert!(w[i] >= u * (1.0 - 1e-12));
            assert!(y[i] >= -1e-10 * ys);
            assert!(((w[i] - u) * y[i]).abs() <= 1e-10 * ys * max_abs(&w));
        }
        let up = weights_of(&mut Method::UpGrad(DualCone::default()), &g, t).unwrap();
        let gw = r::matvec(&h, &up);
        assert!(gw.iter().all(|&x| x >= -1e-10 * max_abs(&gw)), "T={t}");
    }
}

#[test]
fn kinds_are_the_c_numbering() {
    use pcgrad::methods::kind;
    let mut rng = Rng::new(1);
    assert_eq!(Method::PcGrad(PcGrad::new(&mut rng)).kind(), kind::PCGRAD);
    assert_eq!(Method::PcGrad(PpcGrad::new()).kind(), kind::PPCGRAD);
    let got: Vec<u32> = stateless().iter().map(|(_, m)| m.kind()).collect();
    assert_eq!(
        got,
        [
            kind::MGDA,
            kind::CAGRAD,
            kind::UPGRAD,
            kind::DUALPROJ,
            kind::IMTL_G,
            kind::ALIGNED_MTL,
            kind::MEAN,
            kind::SUM
        ]
    );
    assert_eq!((kind::NASH_MTL, kind::GRADVAC, kind::RANDOM), (8, 9, 12));
    assert_eq!(Method::Random(&mut rng).kind(), kind::RANDOM);
}

#[test]
fn every_method_is_finite_at_large_t() {
    for (t, n) in [(16usize, 40usize), (16, 3), (64, 100), (64, 8)] {
        let j = random_j(t, n, 1000 + t as u64 + n as u64);
        let g = r::gram(&j, t);
        for (m, mut method) in stateless() {
            let w = weights_of(&mut method, &g, t).unwrap();
            assert_eq!(w.len(), t, "{m}");
        }
        let mut alpha = vec![0.0; t];
        weights_of(
            &mut Method::NashMtl(NashMtl::default(), NashState::new(&mut alpha)),
            &g,
            t,
        )
        .unwrap();
        let (mut phi, mut rng) = (vec![0.0; t * t], Rng::new(2));
        for _ in 0..3 {
            weights_of(
                &mut Method::GradVac(GradVac::default(), &mut phi, &mut rng),
                &g,
                t,
            )
            .unwrap();
        }
        assert!(phi.iter().all(|x| x.is_finite() && x.abs() <= 1.0 + 1e-12));
        // IMTL-G on full rank: equal projections of every g_i on the update.
        if n >= t {
            let w = weights_of(&mut Method::ImtlG(ImtlG::default()), &g, t).unwrap();
            let gw = r::matvec(&g, &w);
            let p: Vec<f64> = (0..t).map(|i| gw[i] / g[i * t + i].sqrt()).collect();
            for x in &p {
                assert!((x - p[0]).abs() <= 1e-6 * p[0].abs(), "T={t}: {p:?}");
            }
        }
    }
}
