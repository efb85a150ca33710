//! Edge cases with closed-form or reference expectations: one task, zero,
//! identical and opposite gradients, hand-computed projections, N = 0 and N
//! around the SIMD widths, masked segments, per-variable against flat,
//! pack / unflatten, the diagnostics, the PRNG, and the direct-loop helper.

#![allow(clippy::needless_range_loop)]

mod common;

use common::direct::direct_merge;
use common::reference::{self, first_mismatch, max_abs, Problem, RefMode};
use common::LibMode;
use pcgrad::{
    cosine_matrix, pack, unflatten, workspace_gram, workspace_len, Flat, FlatMut, Layout, Mode,
    Order, PcGrad, PerVariable, PpcGrad, Reduction, Rng, Stats,
};

/// Every library mode for T tasks (the explicit one is descending order).
fn all_modes(t: usize) -> Vec<LibMode> {
    let desc: Vec<Vec<usize>> = (0..t)
        .map(|i| (0..t).rev().filter(|&j| j != i).collect())
        .collect();
    vec![
        LibMode::Fixed,
        LibMode::Shuffled(7),
        LibMode::Explicit(reference::order_table(&desc)),
        LibMode::Simultaneous,
    ]
}

/// Deterministic pseudo-random values in [-1, 1) (exact in f32).
fn values(seed: u64, len: usize) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f64 / (1u64 << 23) as f64) * 2.0 - 1.0
        })
        .collect()
}

fn dense(tasks: usize, dim: usize, grads: Vec<f64>) -> Problem {
    Problem {
        tasks,
        dim,
        segments: Vec::new(),
        has_grad: Vec::new(),
        grads,
    }
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    if let Some((k, g, w)) = first_mismatch(got, want, tol) {
        panic!("{what}: index {k}: got {g:e}, want {w:e} (tolerance {tol:e})");
    }
}

/// Runs every path of the library on `p` and checks it against the
/// reference.
fn check_against_reference(what: &str, p: &Problem, mode: &LibMode, mean: bool) {
    let r = reference::reference(p, &common::ref_mode(p.tasks, mode), mean);
    let inputs: Vec<f64> = (0..p.tasks).flat_map(|i| p.gradient(i)).collect();
    let tol = 1e-5 * max_abs(&inputs).max(max_abs(&r.merged)).max(1e-300);
    let out = common::run_merge::<f32>(p, mode, mean);
    assert_close(
        &format!("{what} {mode:?} merge"),
        &out.merged,
        &r.merged,
        tol,
    );
    let out = common::run_project::<f32>(p, mode, mean);
    assert_close(
        &format!("{what} {mode:?} project merged"),
        &out.merged,
        &r.merged,
        tol,
    );
    assert_close(
        &format!("{what} {mode:?} project"),
        out.projected.as_ref().unwrap(),
        &r.projected,
        tol,
    );
}

#[test]
fn one_task_returns_its_gradient_exactly() {
    for n in [0, 1, 3, 7, 8, 9, 31, 33, 257, 1000] {
        let g = values(n as u64, n);
        let p = dense(1, n, g.clone());
        for mode in all_modes(1) {
            for mean in [true, false] {
                let out = common::run_merge::<f32>(&p, &mode, mean);
                assert_eq!(out.merged, g, "T = 1 merge, N = {n}, {mode:?}");
                assert_eq!(out.stats, Stats::default());
                let out = common::run_project::<f32>(&p, &mode, mean);
                assert_eq!(out.merged, g, "T = 1 project merged, N = {n}");
                assert_eq!(out.projected.unwrap(), g, "T = 1 projected, N = {n}");
            }
        }
    }
}

#[test]
fn zero_gradients_give_zero_and_no_projection() {
    for t in [1, 2, 5, 12] {
        let n = 37;
        let p = dense(t, n, vec![0.0; t * n]);
        for mode in all_modes(t) {
            for mean in [true, false] {
                let out = common::run_project::<f32>(&p, &mode, mean);
                assert_eq!(out.stats, Stats::default(), "T = {t} {mode:?}");
                assert!(out.merged.iter().all(|&x| x == 0.0));
                assert!(out.projected.unwrap().iter().all(|&x| x == 0.0));
            }
        }
    }
}

#[test]
fn a_zero_task_is_never_projected_onto() {
    // Task 1 is zero; tasks 0 and 2 conflict with each other only.
    let n = 19;
    let a = values(1, n);
    let mut grads = a.clone();
    grads.extend(vec![0.0; n]);
    grads.extend(a.iter().map(|x| -0.5 * x));
    let p = dense(3, n, grads);
    for mode in all_modes(3) {
        let out = common::run_project::<f32>(&p, &mode, true);
        assert_eq!(out.stats.conflicting_pairs, 1, "{mode:?}");
        assert_eq!(out.stats.projections, 2, "{mode:?}");
        let proj = out.projected.unwrap();
        assert!(proj[n..2 * n].iter().all(|&x| x == 0.0), "{mode:?}");
        check_against_reference("zero task", &p, &mode, true);
    }
}

#[test]
fn identical_gradients_are_left_alone() {
    let (t, n) = (4, 45);
    let v = values(3, n);
    let grads: Vec<f64> = (0..t).flat_map(|_| v.iter().copied()).collect();
    let p = dense(t, n, grads.clone());
    for mode in all_modes(t) {
        let out = common::run_project::<f32>(&p, &mode, true);
        assert_eq!(out.stats, Stats::default());
        // A = I exactly: the projected gradients are the inputs, bit for bit.
        assert_eq!(out.projected.unwrap(), grads, "{mode:?}");
        assert_close("identical mean", &out.merged, &v, 1e-6);
        let out = common::run_merge::<f32>(&p, &mode, false);
        let four_v: Vec<f64> = v.iter().map(|x| 4.0 * x).collect();
        assert_close("identical sum", &out.merged, &four_v, 1e-6);
    }
}

#[test]
fn opposite_gradients_cancel() {
    let n = 101;
    let v = values(4, n);
    for scale in [1.0, 0.25, 8.0] {
        let mut grads = v.clone();
        grads.extend(v.iter().map(|x| -scale * x));
        let p = dense(2, n, grads);
        for mode in all_modes(2) {
            for mean in [true, false] {
                let out = common::run_project::<f32>(&p, &mode, mean);
                assert_eq!(out.stats.conflicting_pairs, 1);
                assert_eq!(out.stats.projections, 2);
                let tol = 1e-6 * scale.max(1.0);
                assert_close("opposite merged", &out.merged, &vec![0.0; n], tol);
                assert_close(
                    "opposite projected",
                    &out.projected.unwrap(),
                    &[0.0; 202],
                    tol,
                );
            }
        }
    }
}

#[test]
fn two_tasks_closed_form() {
    // g0 = e1, g1 = -e1 + e2: g0 . g1 = -1, |g1|^2 = 2, |g0|^2 = 1.
    // g'0 = g0 + g1 / 2 = (1/2, 1/2); g'1 = g1 + g0 = (0, 1).
    let p = dense(2, 2, vec![1.0, 0.0, -1.0, 1.0]);
    for mode in all_modes(2) {
        let out = common::run_project::<f32>(&p, &mode, true);
        assert_eq!(out.projected.unwrap(), vec![0.5, 0.5, 0.0, 1.0], "{mode:?}");
        assert_eq!(out.merged, vec![0.25, 0.75]);
        let out = common::run_merge::<f32>(&p, &mode, false);
        assert_eq!(out.merged, vec![0.5, 1.5]);
        assert_eq!(
            out.stats,
            Stats {
                conflicting_pairs: 1,
                projections: 2
            }
        );
    }
}

#[test]
fn three_tasks_closed_form_sequential_differs_from_simultaneous() {
    // g0 = (2, 0, 0), g1 = (-1, 1, 0), g2 = (-1, -1, 1), worked by hand.
    let p = dense(3, 3, vec![2.0, 0.0, 0.0, -1.0, 1.0, 0.0, -1.0, -1.0, 1.0]);
    let third = 1.0 / 3.0;
    let sequential = [
        third,
        third,
        2.0 * third,
        -third,
        2.0 * third,
        third,
        -0.5,
        -0.5,
        1.0,
    ];
    let simultaneous = [third, third, 2.0 * third, 0.0, 1.0, 0.0, 0.0, -1.0, 1.0];
    let cases = [
        (LibMode::Fixed, &sequential),
        (LibMode::Simultaneous, &simultaneous),
        // Visiting in descending order happens to give the simultaneous
        // result here.
        (LibMode::Explicit(vec![2, 1, 2, 0, 1, 0]), &simultaneous),
    ];
    for (mode, want) in cases {
        let out = common::run_project::<f32>(&p, &mode, false);
        assert_close(&format!("{mode:?}"), &out.projected.unwrap(), want, 1e-7);
        let sum: Vec<f64> = (0..3)
            .map(|k| want[k] + want[3 + k] + want[6 + k])
            .collect();
        assert_close(&format!("{mode:?} merged"), &out.merged, &sum, 1e-6);
        // Also with f64 elements.
        let out = common::run_project::<f64>(&p, &mode, false);
        assert_close(
            &format!("{mode:?} f64"),
            &out.projected.unwrap(),
            want,
            1e-15,
        );
    }
}

#[test]
fn empty_dimension() {
    for t in [1, 3] {
        let p = dense(t, 0, Vec::new());
        for mode in all_modes(t) {
            let out = common::run_project::<f32>(&p, &mode, true);
            assert!(out.merged.is_empty());
            assert_eq!(out.stats, Stats::default());
            let out = common::run_per_variable::<f32>(
                &Problem {
                    segments: vec![0, 0],
                    ..p.clone()
                },
                &mode,
                true,
            );
            assert!(out.merged.is_empty());
        }
    }
}

#[test]
fn every_tail_length_around_the_simd_widths() {
    for t in [2, 3, 5, 9] {
        for n in 0..=70 {
            let g = values((t * 1000 + n) as u64, t * n);
            let p = dense(t, n, g);
            for mode in [LibMode::Fixed, LibMode::Simultaneous] {
                check_against_reference(&format!("T = {t}, N = {n}"), &p, &mode, n % 2 == 0);
            }
        }
    }
}

#[test]
fn a_head_only_one_task_touches() {
    // Trunk (37 shared), head 0 (5, task 0 only), head 1 (3, task 1 only),
    // head 2 (4, tasks 1 and 2). Masked cells hold NaN: never read.
    let segments = vec![37, 5, 3, 4];
    let has_grad = vec![
        true, true, false, false, //
        true, false, true, true, //
        true, false, false, true,
    ];
    let (t, n) = (3, 49);
    let mut grads = values(9, t * n);
    let p0 = Problem {
        tasks: t,
        dim: n,
        segments: segments.clone(),
        has_grad: has_grad.clone(),
        grads: grads.clone(),
    };
    let seg = p0.segment_of();
    for i in 0..t {
        for k in 0..n {
            if !p0.has(i, seg[k]) {
                grads[i * n + k] = f64::NAN;
            }
        }
    }
    let p = Problem { grads, ..p0 };
    for mode in all_modes(t) {
        for mean in [true, false] {
            check_against_reference("heads", &p, &mode, mean);
            let r = reference::reference(&p, &common::ref_mode(t, &mode), mean);
            let out = common::run_merge::<f64>(&p, &mode, mean);
            // Head 0: only task 0 contributes, summed (weight 1) even under
            // the mean reduction.
            for k in 37..42 {
                let want: f64 = (0..t).map(|i| r.projected[i * n + k]).sum();
                assert!((out.merged[k] - want).abs() <= 1e-12, "head 0 at {k}");
            }
            // The trunk is shared: the mean divides by T.
            let w = if mean { 1.0 / 3.0 } else { 1.0 };
            for k in 0..37 {
                let want: f64 = w * (0..t).map(|i| r.projected[i * n + k]).sum::<f64>();
                assert!((out.merged[k] - want).abs() <= 1e-12, "trunk at {k}");
            }
        }
    }
}

#[test]
fn per_variable_equals_flat() {
    let segments = vec![13, 0, 40, 7, 64];
    let t = 4;
    let n: usize = segments.iter().sum();
    let has_grad: Vec<bool> = (0..t * segments.len()).map(|c| c % 7 != 3).collect();
    let p = Problem {
        tasks: t,
        dim: n,
        segments,
        has_grad,
        grads: values(11, t * n),
    };
    for mode in all_modes(t) {
        for mean in [true, false] {
            let flat = common::run_merge::<f32>(&p, &mode, mean);
            let pv = common::run_per_variable::<f32>(&p, &mode, mean);
            assert_eq!(flat.merged, pv.merged, "{mode:?}: per-variable merge");
            assert_eq!(flat.stats, pv.stats);
            let flat = common::run_project::<f32>(&p, &mode, mean);
            let pv = common::run_per_variable_project::<f32>(&p, &mode, mean);
            assert_eq!(flat.merged, pv.merged, "{mode:?}: per-variable project");
            let masked = common::mask_projected(&p, flat.projected.as_ref().unwrap());
            assert_eq!(masked, pv.projected.unwrap());
        }
    }
}

#[test]
fn pack_and_unflatten_round_trip() {
    let segments = [3usize, 0, 5, 2];
    let (t, s) = (3, segments.len());
    let n: usize = segments.iter().sum();
    let data: Vec<Vec<f32>> = (0..t * s)
        .map(|c| (0..segments[c % s]).map(|k| (c * 10 + k) as f32).collect())
        .collect();
    let present = |c: usize| c != 2 && c != 7 && c != 9;
    let vars: Vec<Option<&[f32]>> = (0..t * s)
        .map(|c| present(c).then_some(&data[c][..]))
        .collect();
    let mut flat = vec![f32::NAN; t * n];
    let mut has_grad = vec![false; t * s];
    pack(t, &segments, &vars, &mut flat, &mut has_grad).unwrap();
    for c in 0..t * s {
        assert_eq!(has_grad[c], present(c));
    }
    // Row by row, segment by segment: the packed values, zeros where absent.
    let mut pos = 0;
    for c in 0..t * s {
        let len = segments[c % s];
        let want: Vec<f32> = if present(c) {
            data[c].clone()
        } else {
            vec![0.0; len]
        };
        assert_eq!(&flat[pos..pos + len], &want[..], "cell {c}");
        pos += len;
    }
    // Unflatten each task's row back into per-variable buffers.
    for i in 0..t {
        let mut bufs: Vec<Vec<f32>> = segments.iter().map(|&l| vec![-1.0; l]).collect();
        let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
        unflatten(&segments, &flat[i * n..(i + 1) * n], &mut outs).unwrap();
        for v in 0..s {
            let c = i * s + v;
            if present(c) {
                assert_eq!(bufs[v], data[c], "cell {c}");
            } else {
                assert!(bufs[v].iter().all(|&x| x == 0.0));
            }
        }
    }
    // The packed buffer and mask drive the flat API like the per-variable
    // one.
    let layout = Layout::new(t, n, &segments, &has_grad).unwrap();
    let mut m1 = vec![0.0f32; n];
    let mut m2 = vec![0.0f32; n];
    let mut ws = vec![0.0; workspace_len(t).unwrap()];
    PpcGrad::new()
        .merge(&Flat::new(layout, &flat).unwrap(), &mut m1, &mut ws)
        .unwrap();
    let mut mask = vec![false; t * s];
    let pv = PerVariable::new(t, &segments, &vars, &mut mask).unwrap();
    PpcGrad::new().merge(&pv, &mut m2, &mut ws).unwrap();
    assert_eq!(m1, m2);
    assert_eq!(mask, has_grad);
}

#[test]
fn diagnostics_match_the_reference() {
    let segments = vec![100, 23, 300];
    let t = 6;
    let n = 423;
    let mut grads = values(21, t * n);
    // Make task 4 zero and task 5 oppose task 0.
    for k in 0..n {
        grads[4 * n + k] = 0.0;
        grads[5 * n + k] = -grads[k] + 0.1 * grads[5 * n + k];
    }
    let has_grad: Vec<bool> = (0..t * 3).map(|c| c != 7).collect();
    let p = Problem {
        tasks: t,
        dim: n,
        segments,
        has_grad,
        grads,
    };
    for mode in all_modes(t) {
        let r = reference::reference(&p, &common::ref_mode(t, &mode), true);
        for out in [
            common::run_merge::<f32>(&p, &mode, true),
            common::run_project::<f32>(&p, &mode, true),
        ] {
            assert_eq!(out.stats.conflicting_pairs, r.conflicting_pairs);
            assert_eq!(out.stats.projections, r.projections, "{mode:?}");
            let gram = workspace_gram(&out.workspace, t).unwrap();
            let mut cos = vec![0.0; t * t];
            cosine_matrix(gram, t, &mut cos).unwrap();
            for i in 0..t {
                for j in 0..t {
                    let ni = r.gram[i * t + i].sqrt();
                    let nj = r.gram[j * t + j].sqrt();
                    let e = (gram[i * t + j] - r.gram[i * t + j]).abs();
                    assert!(e <= 1e-6 * ni * nj, "gram[{i}][{j}]");
                    let want = if ni * nj > 0.0 {
                        r.gram[i * t + j] / (ni * nj)
                    } else {
                        0.0
                    };
                    assert!((cos[i * t + j] - want).abs() <= 1e-6, "cos[{i}][{j}]");
                }
            }
            assert_eq!(cos[4 * t + 4], 0.0, "a zero gradient has cosine 0");
            assert!((cos[0] - 1.0).abs() < 1e-12);
        }
    }
}

#[test]
fn splitmix64_known_values() {
    // SplitMix64 from state 0 (Steele, Lea and Flood; Vigna's reference).
    let mut r = Rng::new(0);
    assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
    assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
}

#[test]
fn shuffled_calls_advance_the_rng_and_a_copy_replays_a_call() {
    let (t, n) = (6, 300);
    let g = values(5, t * n);
    let p = dense(t, n, g.clone());
    let g32: Vec<f32> = g.iter().map(|&x| x as f32).collect();
    let layout = Layout::dense(t, n).unwrap();
    let flat = Flat::new(layout, &g32).unwrap();
    let mut ws = vec![0.0; workspace_len(t).unwrap()];

    let mut rng = Rng::new(2024);
    let mut model = rng;
    let mut results = Vec::new();
    let mut all_orders = Vec::new();
    for call in 0..3 {
        let saved = rng;
        let orders = common::shuffled_orders(t, &mut model);
        let mut merged = vec![0.0f32; n];
        PcGrad::new(&mut rng)
            .merge(&flat, &mut merged, &mut ws)
            .unwrap();
        assert_ne!(rng, saved, "call {call} did not advance the rng");
        assert_eq!(rng, model, "call {call} advanced the rng differently");
        // Against the reference with the orders drawn for this call.
        let r = reference::reference(&p, &RefMode::Sequential(orders.clone()), true);
        let got: Vec<f64> = merged.iter().map(|&x| f64::from(x)).collect();
        assert_close(&format!("call {call}"), &got, &r.merged, 1e-5);
        // A copy of the state replays the call bit for bit.
        let mut replay = saved;
        let mut again = vec![0.0f32; n];
        PcGrad::new(&mut replay)
            .merge(&flat, &mut again, &mut ws)
            .unwrap();
        assert_eq!(replay, rng);
        assert_eq!(again, merged);
        results.push(merged);
        all_orders.push(orders);
    }
    assert_ne!(
        all_orders[0], all_orders[1],
        "successive calls drew the same orders"
    );

    // A failed call does not advance the rng.
    let before = rng;
    let mut merged = vec![0.0f32; n];
    let err = PcGrad::new(&mut rng).merge(&flat, &mut merged, &mut ws[..10]);
    assert!(err.is_err());
    assert_eq!(rng, before);
}

#[test]
fn explicit_order_equals_fixed_when_ascending() {
    let (t, n) = (5, 77);
    let p = dense(t, n, values(8, t * n));
    let table = reference::order_table(&reference::fixed_orders(t));
    let a = common::run_project::<f32>(&p, &LibMode::Fixed, true);
    let b = common::run_project::<f32>(&p, &LibMode::Explicit(table), true);
    assert_eq!(a.merged, b.merged);
    assert_eq!(a.projected, b.projected);
}

#[test]
fn order_fixed_through_the_public_types() {
    // The same call spelled with the public enums directly.
    let (t, n) = (3, 3);
    let mut g = [2.0f32, 0.0, 0.0, -1.0, 1.0, 0.0, -1.0, -1.0, 1.0];
    let layout = Layout::dense(t, n).unwrap();
    let mut merged = [0.0f32; 3];
    let mut ws = [0.0f64; 200];
    let stats = PcGrad::with_mode(Mode::Sequential(Order::Fixed))
        .reduction(Reduction::Sum)
        .project(
            &mut FlatMut::new(layout, &mut g).unwrap(),
            Some(&mut merged),
            &mut ws,
        )
        .unwrap();
    assert_eq!(stats.conflicting_pairs, 2);
    assert_eq!(stats.projections, 6);
    let want = [-0.5f32, 0.5, 2.0];
    for k in 0..3 {
        assert!((merged[k] - want[k]).abs() < 1e-6);
    }
}

#[test]
fn direct_loop_helper_matches_the_reference() {
    for (t, n) in [(1, 5), (2, 8), (3, 33), (8, 1000), (12, 257)] {
        let g = values((t * n) as u64, t * n);
        let g32: Vec<f32> = g.iter().map(|&x| x as f32).collect();
        let p = dense(t, n, g);
        for simultaneous in [false, true] {
            for mean in [false, true] {
                let mode = if simultaneous {
                    RefMode::Simultaneous
                } else {
                    RefMode::Sequential(reference::fixed_orders(t))
                };
                let r = reference::reference(&p, &mode, mean);
                let mut scratch = vec![0.0f32; t * n];
                let mut merged = vec![0.0f32; n];
                direct_merge(&g32, t, n, simultaneous, mean, &mut scratch, &mut merged);
                let got: Vec<f64> = merged.iter().map(|&x| f64::from(x)).collect();
                let proj: Vec<f64> = scratch.iter().map(|&x| f64::from(x)).collect();
                let what = format!("direct T = {t} N = {n} sim = {simultaneous}");
                assert_close(&what, &got, &r.merged, 1e-4);
                assert_close(&what, &proj, &r.projected, 1e-4);
            }
        }
    }
}

/// Many tasks (T = 70, so 18 groups of four rows): the Gram pass packs
/// fewer fit bits per group (16 instead of 32) to keep every group's bits
/// in one word array; the Gram matrix and the merged result still match
/// the float64 reference, over two column blocks.
#[test]
fn seventy_tasks_gram_and_merge_match_the_reference() {
    let (t, n) = (70usize, 300usize);
    let mut s = 0x1234_5678u32;
    let grads: Vec<f64> = (0..t * n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) as f64
        })
        .collect();
    let p = Problem {
        tasks: t,
        dim: n,
        segments: vec![n],
        has_grad: vec![true; t],
        grads,
    };
    let r = reference::reference(&p, &RefMode::Simultaneous, true);
    let out = common::run_merge::<f32>(&p, &LibMode::Simultaneous, true);
    let gram = workspace_gram(&out.workspace, t).unwrap();
    for i in 0..t {
        for j in 0..t {
            let scale = (r.gram[i * t + i] * r.gram[j * t + j]).sqrt();
            let e = (gram[i * t + j] - r.gram[i * t + j]).abs();
            assert!(e <= 1e-6 * scale, "gram[{i}][{j}]: {e:e}");
        }
    }
    let scale = max_abs(&p.grads);
    for (k, (&g, &w)) in out.merged.iter().zip(&r.merged).enumerate() {
        assert!((g - w).abs() <= 1e-5 * scale, "merged[{k}] {g} vs {w}");
    }
    assert_eq!(out.stats.conflicting_pairs, r.conflicting_pairs);
}
