//! Load: many concurrent callers on disjoint buffers, for a bounded time,
//! each checking every result. Backs the promise that the library keeps no
//! state, so calls on different buffers may run on different threads at
//! once (and each call may itself use worker threads).
//!
//! Not in the default run (`#[ignore]`):
//!
//! ```text
//! cargo test --release --features parallel --test soak -- --ignored soak
//! ```
//!
//! runs 8 caller threads for 60 s (`PCGRAD_SOAK_SECS` to change it). Each
//! call is bitwise checked against the same call made alone on one thread
//! beforehand, which is itself checked against the float64 reference.

mod common;

use common::reference::{self, first_mismatch, max_abs, Problem, RefMode};
use pcgrad::{Flat, FlatMut, Layout, Mode, Order, PcGrad, Reduction, Rng};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CALLERS: usize = 8;

struct Case {
    tasks: usize,
    segments: Vec<usize>,
    mask: Vec<bool>,
    grads: Vec<f32>,
    /// mode index (see `pc`), mean
    mode: usize,
    mean: bool,
    merged: Vec<u32>,
    projected: Vec<u32>,
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|k| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let v = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            if k % 3 == 0 {
                -v - 0.2
            } else {
                v
            }
        })
        .collect()
}

fn pc<'a>(
    mode: usize,
    mean: bool,
    threads: usize,
    table: &'a [u32],
    rng: &'a mut Rng,
) -> PcGrad<'a> {
    let m = match mode {
        0 => Mode::Sequential(Order::Fixed),
        1 => Mode::Sequential(Order::Explicit(table)),
        2 => Mode::Sequential(Order::Shuffled(rng)),
        _ => Mode::Simultaneous,
    };
    let red = if mean {
        Reduction::Mean
    } else {
        Reduction::Sum
    };
    PcGrad::with_mode(m).reduction(red).threads(threads)
}

fn table(t: usize) -> Vec<u32> {
    // Each task visits the others in descending order.
    (0..t)
        .flat_map(|i| (0..t).rev().filter(move |&j| j != i).map(|j| j as u32))
        .collect()
}

/// One merge and one project; returns their bits.
fn run(c: &Case, threads: usize) -> (Vec<u32>, Vec<u32>) {
    let n: usize = c.segments.iter().sum();
    let layout = Layout::new(c.tasks, n, &c.segments, &c.mask).unwrap();
    let tab = table(c.tasks);
    let mut ws = vec![0.0; pcgrad::workspace_len(c.tasks).unwrap()];
    let mut merged = vec![0.0f32; n];
    let flat = Flat::new(layout, &c.grads).unwrap();
    let mut rng = Rng::new(42);
    pc(c.mode, c.mean, threads, &tab, &mut rng)
        .merge(&flat, &mut merged, &mut ws)
        .unwrap();
    let mut proj = c.grads.clone();
    let mut fm = FlatMut::new(layout, &mut proj).unwrap();
    let mut rng = Rng::new(42);
    pc(c.mode, c.mean, threads, &tab, &mut rng)
        .project(&mut fm, None, &mut ws)
        .unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect();
    (bits(&merged), bits(&proj))
}

fn cases() -> Vec<Case> {
    // (T, segments, masked cells): small ones, and one of 4 x 300_000
    // elements, large enough for `threads = 2` to split its passes.
    let shapes: [(usize, Vec<usize>, &[usize]); 5] = [
        (1, vec![9], &[]),
        (3, vec![7, 100], &[1]),
        (5, vec![1000, 24, 3], &[0, 8]),
        (8, vec![4099], &[]),
        (4, vec![150_000, 150_000], &[3]),
    ];
    let mut out = Vec::new();
    for (k, (t, segs, masked)) in shapes.into_iter().enumerate() {
        let n: usize = segs.iter().sum();
        let s = segs.len();
        let mask: Vec<bool> = (0..t * s).map(|c| !masked.contains(&c)).collect();
        let grads = values(t * n, k as u64 + 1);
        let mode = k % 4;
        let mean = k % 2 == 0;
        let mut c = Case {
            tasks: t,
            segments: segs,
            mask,
            grads,
            mode,
            mean,
            merged: Vec::new(),
            projected: Vec::new(),
        };
        let (m, p) = run(&c, 1);
        // The single-threaded result against the float64 reference.
        let prob = Problem {
            tasks: t,
            dim: n,
            segments: c.segments.clone(),
            has_grad: c.mask.clone(),
            grads: c.grads.iter().map(|&x| x as f64).collect(),
        };
        let orders = match mode {
            0 => reference::fixed_orders(t),
            1 => (0..t)
                .map(|i| (0..t).rev().filter(|&j| j != i).collect())
                .collect(),
            2 => common::shuffled_orders(t, &mut Rng::new(42)),
            _ => Vec::new(),
        };
        let rm = if mode == 3 {
            RefMode::Simultaneous
        } else {
            RefMode::Sequential(orders)
        };
        let r = reference::reference(&prob, &rm, mean);
        let tol = 1e-5 * max_abs(&prob.grads).max(max_abs(&r.merged));
        let f = |b: &[u32]| {
            b.iter()
                .map(|&x| f32::from_bits(x) as f64)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            first_mismatch(&f(&m), &r.merged, tol),
            None,
            "case {k} merged"
        );
        assert_eq!(
            first_mismatch(&f(&p), &r.projected, tol),
            None,
            "case {k} projected"
        );
        c.merged = m;
        c.projected = p;
        out.push(c);
    }
    out
}

#[test]
#[ignore = "soak test: run with --ignored soak (60 s)"]
fn soak_concurrent_callers_on_disjoint_buffers() {
    let secs: u64 = std::env::var("PCGRAD_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let cases = cases();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let calls = AtomicUsize::new(0);
    let per_caller: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let (cases, calls) = (&cases, &calls);
                s.spawn(move || {
                    let mut done = 0;
                    let mut i = caller;
                    while Instant::now() < deadline {
                        let c = &cases[i % cases.len()];
                        let threads = 1 + (i / cases.len()) % 3;
                        let (m, p) = run(c, threads);
                        assert!(
                            m == c.merged,
                            "caller {caller}: merged of case {} differs",
                            i % cases.len()
                        );
                        assert!(
                            p == c.projected,
                            "caller {caller}: projected of case {} differs",
                            i % cases.len()
                        );
                        done += 1;
                        i += 1;
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    println!(
        "soak: {CALLERS} callers, {secs} s, {} calls (merge + project each), per caller {per_caller:?}",
        calls.load(Ordering::Relaxed)
    );
    assert!(per_caller.iter().all(|&d| d > 0), "a caller made no call");
}
