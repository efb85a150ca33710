//! Property tests: the library against the `f64` reference
//! (`tests/common/reference.rs`) over random shapes (T in 1..=12, N in
//! 0..=1000), random segment splits and masks, every mode (sequential fixed,
//! shuffled and explicit; simultaneous), both reductions, `f32` and `f64`
//! elements, and several input styles (random, conflicting, zero,
//! identical, opposite, tiny, huge and mixed scales).
//!
//! Checked: merged and projected gradients within a tolerance relative to
//! the largest absolute input (or reference output) value; no NaN or
//! infinity in any output (the inputs are finite; masked cells of the flat
//! buffers hold NaN, which the library must never read); the statistics;
//! and, for shuffled calls, the PRNG state the call leaves behind.

#![allow(clippy::needless_range_loop)]

mod common;

use common::reference::{self, first_mismatch, max_abs, Problem, RefOutput};
use common::{LibMode, LibOutput};
use pcgrad::{Element, Rng};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// A small generator for the test data, independent of the library's PRNG.
struct Data(u64);

impl Data {
    fn next_u64(&mut self) -> u64 {
        // xorshift64*, seeded away from zero.
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.unit();
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn permutation_without(&mut self, t: usize, i: usize) -> Vec<usize> {
        let mut o: Vec<usize> = (0..t).filter(|&j| j != i).collect();
        for k in (1..o.len()).rev() {
            o.swap(k, self.below(k + 1));
        }
        o
    }
}

/// Input styles.
#[derive(Clone, Copy, Debug)]
enum Style {
    /// Independent standard normal values.
    Random,
    /// A shared direction with a random sign and size per task, plus noise:
    /// many strong conflicts.
    Conflicting,
    /// Random, with a random subset of tasks all zero.
    SomeZero,
    /// Every task the same vector, each with its own positive scale.
    Identical,
    /// One vector, each task a random positive or negative multiple of it.
    Opposite,
    /// Random at 1e-30.
    Tiny,
    /// Random at 1e30.
    Huge,
    /// Random, each task at its own scale between 1e-30 and 1e30.
    Mixed,
}

const STYLES: [Style; 8] = [
    Style::Random,
    Style::Conflicting,
    Style::SomeZero,
    Style::Identical,
    Style::Opposite,
    Style::Tiny,
    Style::Huge,
    Style::Mixed,
];

#[derive(Clone, Debug)]
struct Spec {
    tasks: usize,
    dim: usize,
    segments: usize,
    style: usize,
    mode: usize,
    mean: bool,
    seed: u64,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        1usize..=12,
        prop_oneof![0usize..=40, 0usize..=1000],
        1usize..=5,
        0..STYLES.len(),
        0usize..4,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(tasks, dim, segments, style, mode, mean, seed)| Spec {
            tasks,
            dim,
            segments,
            style,
            mode,
            mean,
            seed,
        })
}

/// Builds the problem and the mode a spec describes. Values are rounded to
/// `F`, so the reference sees exactly the library's input. Masked cells hold
/// NaN (the reference ignores them; the library must never read them).
fn build<F: Element>(s: &Spec) -> (Problem, LibMode, Style) {
    let mut d = Data(s.seed | 1);
    let (t, n) = (s.tasks, s.dim);
    let style = STYLES[s.style];

    // Segment lengths: S - 1 random cut points (zero-length segments
    // allowed); sometimes the "one segment" shorthand.
    let (segments, num_seg) = if s.segments == 1 && d.below(2) == 0 {
        (Vec::new(), 1)
    } else {
        let mut cuts: Vec<usize> = (0..s.segments - 1).map(|_| d.below(n + 1)).collect();
        cuts.sort();
        let mut segs = Vec::new();
        let mut prev = 0;
        for c in cuts.into_iter().chain([n]) {
            segs.push(c - prev);
            prev = c;
        }
        (segs, s.segments)
    };
    // Masks: mostly present; sometimes all present (the empty shorthand).
    let has_grad: Vec<bool> = if d.below(4) == 0 {
        Vec::new()
    } else {
        (0..t * num_seg).map(|_| d.below(5) != 0).collect()
    };

    let base: Vec<f64> = (0..n).map(|_| d.normal()).collect();
    let mut grads = vec![0.0; t * n];
    let zero_task: Vec<bool> = (0..t).map(|_| d.below(3) == 0).collect();
    for i in 0..t {
        let sign = if d.below(2) == 0 { -1.0 } else { 1.0 };
        let size = 0.1 + 3.0 * d.unit();
        let task_scale = 10f64.powf(60.0 * d.unit() - 30.0);
        for k in 0..n {
            let v = match style {
                Style::Random => d.normal(),
                Style::Conflicting => sign * size * base[k] + 0.3 * d.normal(),
                Style::SomeZero if zero_task[i] => 0.0,
                Style::SomeZero => d.normal(),
                Style::Identical => size * base[k],
                Style::Opposite => sign * size * base[k],
                Style::Tiny => 1e-30 * d.normal(),
                Style::Huge => 1e30 * d.normal(),
                Style::Mixed => task_scale * d.normal(),
            };
            grads[i * n + k] = F::from_f64(v).to_f64();
        }
    }
    let mut p = Problem {
        tasks: t,
        dim: n,
        segments,
        has_grad,
        grads,
    };
    let seg = p.segment_of();
    for i in 0..t {
        for k in 0..n {
            if !p.has(i, seg[k]) {
                p.grads[i * n + k] = f64::NAN;
            }
        }
    }

    let mode = match s.mode {
        0 => LibMode::Fixed,
        1 => LibMode::Shuffled(d.next_u64()),
        2 => {
            let orders: Vec<Vec<usize>> = (0..t).map(|i| d.permutation_without(t, i)).collect();
            LibMode::Explicit(reference::order_table(&orders))
        }
        _ => LibMode::Simultaneous,
    };
    (p, mode, style)
}

fn all_finite(xs: &[f64]) -> bool {
    xs.iter().all(|x| x.is_finite())
}

/// Checks one library output against the reference.
fn compare(
    what: &str,
    out: &LibOutput,
    r: &RefOutput,
    projected_want: Option<&[f64]>,
    tol: f64,
) -> Result<(), TestCaseError> {
    prop_assert!(all_finite(&out.merged), "{what}: non-finite merged output");
    if let Some((k, g, w)) = first_mismatch(&out.merged, &r.merged, tol) {
        return Err(TestCaseError::fail(format!(
            "{what}: merged[{k}] = {g:e}, reference {w:e}, tolerance {tol:e}"
        )));
    }
    if let (Some(got), Some(want)) = (&out.projected, projected_want) {
        prop_assert!(all_finite(got), "{what}: non-finite projected output");
        if let Some((k, g, w)) = first_mismatch(got, want, tol) {
            return Err(TestCaseError::fail(format!(
                "{what}: projected[{k}] = {g:e}, reference {w:e}, tolerance {tol:e}"
            )));
        }
    }
    Ok(())
}

/// The smallest |cos| between two non-zero inputs: how far the "conflicting
/// pair" decisions are from a tie.
fn pair_margin(r: &RefOutput, t: usize) -> f64 {
    let mut m: f64 = 1.0;
    for i in 0..t {
        for j in i + 1..t {
            let s = (r.gram[i * t + i] * r.gram[j * t + j]).sqrt();
            if s > 0.0 {
                m = m.min(r.gram[i * t + j].abs() / s);
            }
        }
    }
    m
}

fn check_spec<F: Element>(s: &Spec, rel_tol: f64) -> Result<(), TestCaseError> {
    let (p, mode, style) = build::<F>(s);
    let r = reference::reference(&p, &common::ref_mode(p.tasks, &mode), s.mean);
    let inputs: Vec<f64> = (0..p.tasks).flat_map(|i| p.gradient(i)).collect();
    prop_assert!(all_finite(&r.merged) && all_finite(&r.projected));
    let scale = max_abs(&inputs)
        .max(max_abs(&r.merged))
        .max(max_abs(&r.projected));
    let tol = rel_tol * scale;
    let ctx = format!("{style:?} {mode:?}");

    let out = common::run_merge::<F>(&p, &mode, s.mean);
    compare(&format!("{ctx} merge"), &out, &r, None, tol)?;
    let stats = out.stats;
    let out = common::run_project::<F>(&p, &mode, s.mean);
    compare(&format!("{ctx} project"), &out, &r, Some(&r.projected), tol)?;
    prop_assert_eq!(out.stats, stats, "merge and project stats differ");

    if pair_margin(&r, p.tasks) >= 1e-6 {
        prop_assert_eq!(stats.conflicting_pairs, r.conflicting_pairs);
    }
    if r.margin >= 1e-6 {
        prop_assert_eq!(stats.projections, r.projections);
    }

    // A shuffled call leaves the PRNG where the documented draw leaves it.
    if let LibMode::Shuffled(seed) = mode {
        let mut expect = Rng::new(seed);
        common::shuffled_orders(p.tasks, &mut expect);
        let mut rng = Rng::new(seed);
        let g = common::grads_as::<F>(&p);
        let layout = pcgrad::Layout::new(p.tasks, p.dim, &p.segments, &p.has_grad).unwrap();
        let flat = pcgrad::Flat::new(layout, &g).unwrap();
        let mut merged = vec![F::zero(); p.dim];
        let mut ws = vec![0.0; pcgrad::workspace_len(p.tasks).unwrap()];
        pcgrad::PcGrad::new(&mut rng)
            .reduction(common::reduction(s.mean))
            .merge(&flat, &mut merged, &mut ws)
            .unwrap();
        prop_assert_eq!(rng, expect, "the PRNG advanced differently");
    }
    Ok(())
}

/// The per-variable paths against the reference (their masked cells are
/// `None`, not NaN).
fn check_per_variable<F: Element>(s: &Spec, rel_tol: f64) -> Result<(), TestCaseError> {
    let (p, mode, style) = build::<F>(s);
    let r = reference::reference(&p, &common::ref_mode(p.tasks, &mode), s.mean);
    let inputs: Vec<f64> = (0..p.tasks).flat_map(|i| p.gradient(i)).collect();
    let scale = max_abs(&inputs)
        .max(max_abs(&r.merged))
        .max(max_abs(&r.projected));
    let tol = rel_tol * scale;
    let ctx = format!("{style:?} {mode:?}");
    let out = common::run_per_variable::<F>(&p, &mode, s.mean);
    compare(&format!("{ctx} per-variable merge"), &out, &r, None, tol)?;
    let masked = common::mask_projected(&p, &r.projected);
    let out = common::run_per_variable_project::<F>(&p, &mode, s.mean);
    compare(
        &format!("{ctx} per-variable project"),
        &out,
        &r,
        Some(&masked),
        tol,
    )?;
    Ok(())
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Relative tolerance for `f32` gradients (the library accumulates in `f64`
/// and rounds its outputs to `f32`).
const TOL_F32: f64 = 1e-5;
/// Relative tolerance for `f64` gradients.
const TOL_F64: f64 = 1e-10;

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn f32_matches_reference(s in spec()) {
        check_spec::<f32>(&s, TOL_F32)?;
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn f64_matches_reference(s in spec()) {
        check_spec::<f64>(&s, TOL_F64)?;
    }

    #[test]
    fn per_variable_f32_matches_reference(s in spec()) {
        check_per_variable::<f32>(&s, TOL_F32)?;
    }

    #[test]
    fn per_variable_f64_matches_reference(s in spec()) {
        check_per_variable::<f64>(&s, TOL_F64)?;
    }
}
