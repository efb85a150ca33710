//! The three public phases (`engine::accumulate_gram`, `engine::coefficients`,
//! `engine::apply_merged` / `engine::apply_projected`) run over a coordinate
//! range split at several points, as a caller sharding N across threads or
//! machines would: the result must equal the one-call result within
//! tolerance, and bit for bit when the split points are multiples of
//! `engine::CHUNK`.

mod common;

use common::reference::{self, first_mismatch, max_abs, Problem};
use pcgrad::engine::{
    self, accumulate_gram, apply_merged, apply_projected, coefficients, Coefficients, CHUNK,
};
use pcgrad::{
    workspace_gram, workspace_len, Flat, FlatMut, Layout, Mode, Order, PcGrad, Reduction, Stats,
};

const T: usize = 5;
const N: usize = 3 * CHUNK + 123;

/// Segments that straddle the chunk boundaries, with two task-specific
/// heads.
fn problem() -> Problem {
    let segments = vec![CHUNK - 100, 2 * CHUNK + 50, 150, 23];
    assert_eq!(segments.iter().sum::<usize>(), N);
    let mut has_grad = vec![true; T * 4];
    has_grad[2] = false; // task 0 lacks the third segment
    has_grad[4 + 3] = false; // task 1 lacks the fourth
    has_grad[2 * 4 + 3] = false;
    let mut s: u64 = 0x1234_5678_9ABC_DEF1;
    let grads = (0..T * N)
        .map(|k| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            // A shared pull plus noise, so that tasks conflict.
            let sign = if (k / N).is_multiple_of(2) { 1.0 } else { -0.7 };
            let noise = (s >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
            ((sign * ((k % N) as f64 * 0.001).sin() + noise) as f32) as f64
        })
        .collect();
    Problem {
        tasks: T,
        dim: N,
        segments,
        has_grad,
        grads,
    }
}

fn modes() -> Vec<(&'static str, Vec<u32>)> {
    let desc: Vec<Vec<usize>> = (0..T)
        .map(|i| (0..T).rev().filter(|&j| j != i).collect())
        .collect();
    vec![
        ("fixed", Vec::new()),
        ("explicit", reference::order_table(&desc)),
        ("simultaneous", Vec::new()),
    ]
}

fn mode_of<'a>(name: &str, table: &'a [u32]) -> Mode<'a> {
    match name {
        "fixed" => Mode::Sequential(Order::Fixed),
        "explicit" => Mode::Sequential(Order::Explicit(table)),
        _ => Mode::Simultaneous,
    }
}

struct Phased {
    gram: Vec<f64>,
    merged: Vec<f32>,
    projected: Vec<f32>,
    merged_from_projected: Vec<f32>,
    stats: Stats,
}

/// Runs the phases with the range cut at `cuts`: each range accumulates
/// into one running Gram (`shards == false`), or into its own zeroed partial
/// Gram, the partials then summed in range order (`shards == true`).
fn phased(
    p: &Problem,
    cuts: &[usize],
    shards: bool,
    mode: &mut Mode<'_>,
    red: Reduction,
) -> Phased {
    let g: Vec<f32> = p.grads.iter().map(|&x| x as f32).collect();
    let layout = Layout::new(T, N, &p.segments, &p.has_grad).unwrap();
    let flat = Flat::new(layout, &g).unwrap();
    let bounds: Vec<usize> = [0].iter().chain(cuts).chain([N].iter()).copied().collect();
    let ranges: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();

    // Phase 1.
    let gl = engine::gram_workspace_len(T).unwrap();
    let mut gram = vec![0.0; gl];
    if shards {
        let mut total = vec![0.0; T * T];
        for &(lo, hi) in &ranges {
            let mut part = vec![0.0; gl];
            accumulate_gram(&flat, lo, hi, &mut part).unwrap();
            for k in 0..T * T {
                total[k] += part[k];
            }
        }
        gram[..T * T].copy_from_slice(&total);
    } else {
        for &(lo, hi) in &ranges {
            accumulate_gram(&flat, lo, hi, &mut gram).unwrap();
        }
    }

    // Phase 2.
    let mut cws = vec![0.0; engine::coefficients_len(T).unwrap()];
    let (coef, stats) = coefficients(&gram[..T * T], T, mode, &mut cws).unwrap();
    // Reattaching the workspace gives the same coefficients.
    let (a, b) = (coef.a().to_vec(), coef.b().to_vec());
    let coef = Coefficients::from_workspace(T, &cws).unwrap();
    assert_eq!((coef.a(), coef.b()), (&a[..], &b[..]));
    assert_eq!(coef.tasks(), T);

    // Phase 3, merged only, then with the projected gradients.
    let mut tile = vec![0.0; engine::tile_len(T).unwrap()];
    let mut merged = vec![f32::NAN; N];
    for &(lo, hi) in &ranges {
        apply_merged(&flat, &coef, red, lo, hi, &mut merged[lo..hi], &mut tile).unwrap();
    }
    let mut projected = g.clone();
    let mut merged_from_projected = vec![f32::NAN; N];
    {
        let mut fm = FlatMut::new(layout, &mut projected).unwrap();
        for &(lo, hi) in &ranges {
            let m = &mut merged_from_projected[lo..hi];
            apply_projected(&mut fm, &coef, red, lo, hi, Some(m), &mut tile).unwrap();
        }
    }
    Phased {
        gram: gram[..T * T].to_vec(),
        merged,
        projected,
        merged_from_projected,
        stats,
    }
}

struct OneCall {
    gram: Vec<f64>,
    merged: Vec<f32>,
    projected: Vec<f32>,
    merged_from_projected: Vec<f32>,
    stats: Stats,
}

fn one_call(p: &Problem, mode: Mode<'_>, red: Reduction) -> OneCall {
    let g: Vec<f32> = p.grads.iter().map(|&x| x as f32).collect();
    let layout = Layout::new(T, N, &p.segments, &p.has_grad).unwrap();
    let mut ws = vec![0.0; workspace_len(T).unwrap()];
    let mut merged = vec![0.0f32; N];
    let mut pc = PcGrad::with_mode(mode).reduction(red);
    let stats = pc
        .merge(&Flat::new(layout, &g).unwrap(), &mut merged, &mut ws)
        .unwrap();
    let gram = workspace_gram(&ws, T).unwrap().to_vec();
    let mut projected = g.clone();
    let mut merged_from_projected = vec![0.0f32; N];
    let stats2 = pc
        .project(
            &mut FlatMut::new(layout, &mut projected).unwrap(),
            Some(&mut merged_from_projected),
            &mut ws,
        )
        .unwrap();
    assert_eq!(stats, stats2);
    OneCall {
        gram,
        merged,
        projected,
        merged_from_projected,
        stats,
    }
}

fn widen(xs: &[f32]) -> Vec<f64> {
    xs.iter().map(|&x| f64::from(x)).collect()
}

fn close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    if let Some((k, g, w)) = first_mismatch(&widen(got), &widen(want), tol) {
        panic!("{what}: index {k}: got {g:e}, want {w:e} (tolerance {tol:e})");
    }
}

#[test]
fn chunk_aligned_splits_are_bitwise_identical() {
    let p = problem();
    for (name, table) in modes() {
        for red in [Reduction::Mean, Reduction::Sum] {
            let one = one_call(&p, mode_of(name, &table), red);
            for cuts in [
                vec![],
                vec![CHUNK],
                vec![2 * CHUNK],
                vec![CHUNK, 2 * CHUNK, 3 * CHUNK],
            ] {
                for shards in [false, true] {
                    let ph = phased(&p, &cuts, shards, &mut mode_of(name, &table), red);
                    let what = format!("{name} {red:?} cuts {cuts:?} shards {shards}");
                    assert_eq!(ph.gram, one.gram, "{what}: gram");
                    assert_eq!(ph.stats, one.stats, "{what}: stats");
                    assert_eq!(ph.merged, one.merged, "{what}: merged");
                    assert_eq!(ph.projected, one.projected, "{what}: projected");
                    assert_eq!(
                        ph.merged_from_projected, one.merged_from_projected,
                        "{what}: merged with projected"
                    );
                }
            }
        }
    }
}

#[test]
fn unaligned_splits_agree_within_tolerance() {
    let p = problem();
    let inputs: Vec<f64> = (0..T).flat_map(|i| p.gradient(i)).collect();
    let tol = 1e-5 * max_abs(&inputs);
    for (name, table) in modes() {
        for red in [Reduction::Mean, Reduction::Sum] {
            let one = one_call(&p, mode_of(name, &table), red);
            let r = reference::reference(
                &p,
                &common::ref_mode(
                    T,
                    &match name {
                        "fixed" => common::LibMode::Fixed,
                        "explicit" => common::LibMode::Explicit(table.clone()),
                        _ => common::LibMode::Simultaneous,
                    },
                ),
                red == Reduction::Mean,
            );
            for cuts in [
                vec![1],
                vec![CHUNK - 1],
                vec![CHUNK + 1, 2 * CHUNK - 7],
                vec![100, 8000, 8200, 20000, 24000, N - 1],
                vec![0, 0, 5, 5, N],
            ] {
                for shards in [false, true] {
                    let ph = phased(&p, &cuts, shards, &mut mode_of(name, &table), red);
                    let what = format!("{name} {red:?} cuts {cuts:?} shards {shards}");
                    for i in 0..T {
                        for j in 0..T {
                            let s = (r.gram[i * T + i] * r.gram[j * T + j]).sqrt();
                            let e = (ph.gram[i * T + j] - one.gram[i * T + j]).abs();
                            assert!(e <= 1e-6 * s, "{what}: gram[{i}][{j}]");
                        }
                    }
                    assert_eq!(ph.stats, one.stats, "{what}: stats");
                    close(&format!("{what}: merged"), &ph.merged, &one.merged, tol);
                    close(
                        &format!("{what}: projected"),
                        &ph.projected,
                        &one.projected,
                        tol,
                    );
                    close(
                        &format!("{what}: merged with projected"),
                        &ph.merged_from_projected,
                        &one.merged_from_projected,
                        tol,
                    );
                    // And both against the reference.
                    if let Some((k, g, w)) = first_mismatch(&widen(&ph.merged), &r.merged, tol) {
                        panic!("{what}: merged[{k}] = {g:e}, reference {w:e}");
                    }
                }
            }
        }
    }
}

#[test]
fn shuffled_phases_use_the_caller_rng_like_one_call() {
    let p = problem();
    let mut rng1 = pcgrad::Rng::new(99);
    let mut rng2 = rng1;
    let one = one_call(
        &p,
        Mode::Sequential(Order::Shuffled(&mut rng1)),
        Reduction::Mean,
    );
    // one_call runs two calls (merge, then project): replay the first.
    let ph = phased(
        &p,
        &[CHUNK],
        true,
        &mut Mode::Sequential(Order::Shuffled(&mut rng2)),
        Reduction::Mean,
    );
    assert_eq!(ph.merged, one.merged);
}
