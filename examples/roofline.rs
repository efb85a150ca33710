//! The roofline benchmark: how close the one-call path comes to the physical
//! limit of two streaming passes over the T x N gradients (docs/architecture.md, "Measuring").
//!
//! ```sh
//! cargo run --release --features parallel --example roofline             # full grid
//! cargo run --release --features parallel --example roofline -- --quick  # < 30 s
//! ```
//!
//! For every (T, N) it times, in this one process and interleaved rep by
//! rep: the limit (two streaming SIMD reads of the same T x N buffer, on one
//! thread and on all cores), the one-call merged path (`PpcGrad`, serial and
//! on all cores), the in-place projected path (all cores) and the direct
//! loop of the TensorFlow/PyTorch ports (O(T^2) passes, one thread), and,
//! the serial merged path again on the compile-time kernels
//! (`portable1`: the `wide` backend, SSE2 on a default x86-64 build,
//! through the unstable `pcgrad::bench` module). Times are medians; each ratio is to the limit measured
//! with the same thread count. The last lines are the worst merged-path ratio over the cases with
//! N >= 1e6 and T <= 8, and the smallest dispatch gain over every row (the
//! quick set has T = 16, where the run-time AVX-512 kernels once lost to
//! the compile-time backend). Options: `--quick`, `--threads K` (default: all
//! cores), `--llc-mib M` (the cache size that separates the regimes, 32).

#[path = "../tests/common/direct.rs"]
mod direct;

use pcgrad::bench::{self, Isa, Kernels};
use pcgrad::{Flat, FlatMut, Layout, PpcGrad};
use std::hint::black_box;
use std::time::{Duration, Instant};
use wide::f32x8;

/// One streaming SIMD read of `x` (four independent f32x8 accumulators).
fn read_once(x: &[f32]) -> f32 {
    let (chunks, tail) = x.as_chunks::<32>();
    let mut acc = [f32x8::ZERO; 4];
    for c in chunks {
        let (v, _) = c.as_chunks::<8>();
        for k in 0..4 {
            acc[k] += f32x8::from(v[k]);
        }
    }
    let s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    s.reduce_add() + tail.iter().sum::<f32>()
}

/// The limit: two streaming reads of `x`, each split over `threads`
/// contiguous parts, with a join between them (as between the two passes).
fn two_reads(x: &[f32], threads: usize) -> f32 {
    let mut total = 0.0;
    for _ in 0..2 {
        if threads <= 1 {
            total += read_once(x);
        } else {
            let part = x.len().div_ceil(threads).max(1);
            total += std::thread::scope(|s| {
                let hs: Vec<_> = x
                    .chunks(part)
                    .map(|c| s.spawn(move || read_once(c)))
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap_or(0.0)).sum::<f32>()
            });
        }
    }
    total
}

/// Gradients with conflicts: a shared direction with alternating sign plus
/// noise.
fn make_grads(tasks: usize, dim: usize) -> Vec<f32> {
    let mut s: u32 = 12345;
    let mut next = move || {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    let shared: Vec<f32> = (0..dim).map(|_| next()).collect();
    let mut out = Vec::with_capacity(tasks * dim);
    for t in 0..tasks {
        let sign = if t % 2 == 1 { -0.7 } else { 0.9 };
        out.extend(shared.iter().map(|&c| sign * c + next()));
    }
    out
}

/// The instruction set of the kernels in use.
fn runtime_level() -> String {
    format!("{:?}", Kernels::best().isa())
}

fn median(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

fn time<R>(f: &mut impl FnMut() -> R) -> Duration {
    let t0 = Instant::now();
    black_box(f());
    t0.elapsed()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<usize>().ok())
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = opt("--threads").unwrap_or(cores).max(1);
    let llc = opt("--llc-mib").unwrap_or(32) << 20;
    let (ts, ns): (&[usize], &[usize]) = if quick {
        (&[2, 8, 16], &[10_000, 1_000_000])
    } else {
        (&[2, 4, 8, 16], &[10_000, 1_000_000, 10_000_000])
    };
    println!(
        "roofline: compile-time SIMD {} ({}), run-time kernels {}, {threads} threads of {cores} cores, LLC regime threshold {} MiB",
        if cfg!(target_feature = "avx512f") {
            "AVX-512"
        } else if cfg!(target_feature = "avx2") {
            "AVX2"
        } else if cfg!(target_feature = "avx") {
            "AVX"
        } else {
            "SSE2/baseline"
        },
        if cfg!(target_feature = "fma") {
            "FMA"
        } else {
            "no FMA"
        },
        runtime_level(),
        llc >> 20
    );
    println!("times: median ms; ratio: time / limit with the same thread count (limit = two SIMD reads of T x N);");
    println!(
        "P = the path's worker count (all cores when each has >= {} elements, else 1)",
        pcgrad::parallel::MIN_WORK
    );
    println!("portable1: merged1 on the compile-time backend only; gain = portable1 / merged1");
    println!(
        "{:>3} {:>9} {:>8} {:>6} | {:>8} {:>8} {:>5} | {:>8} {:>8} {:>5} | {:>8} {:>5} | {:>9} {:>6} {:>7} | {:>9} {:>5}",
        "T", "N", "MiB", "regime", "limit1", "merged1", "ratio", "limitP", "mergedP", "ratio",
        "projP", "ratio", "direct1", "ratio", "speedup", "portable1", "gain"
    );
    let portable = Kernels::new(Isa::Portable).expect("the portable kernels run everywhere");
    let mut worst: Option<(f64, usize, usize)> = None;
    // The smallest gain of the run-time kernels over the compile-time
    // backend (portable1 / merged1): below 1 the dispatch loses.
    let mut worst_gain: Option<(f64, usize, usize)> = None;
    for &t in ts {
        for &n in ns {
            let bytes = t * n * 4;
            let grads = make_grads(t, n);
            let mut scratch = grads.clone();
            let mut proj = grads.clone();
            let mut merged = vec![0.0f32; n];
            let mut ws = vec![0.0f64; pcgrad::workspace_len(t).expect("workspace")];
            let layout = Layout::dense(t, n).expect("layout");
            let flat = Flat::new(layout, &grads).expect("flat");
            // Reps: enough for ~0.25 s of the limit, 3 to 25 (quick: 3 to 7).
            let probe = time(&mut || two_reads(&grads, 1)).as_secs_f64();
            let cap = if quick { 7 } else { 25 };
            let reps = ((0.25 / probe.max(1e-9)) as usize).clamp(3, cap);
            let mut v: [Vec<Duration>; 7] = Default::default();
            // The direct loop costs O(T^2) passes: fewer reps when slow.
            let mut direct_reps = reps;
            // The limit runs on as many threads as the one-call path uses.
            let w = pcgrad::parallel::workers(threads, t * n);
            for r in 0..reps {
                v[0].push(time(&mut || two_reads(&grads, 1)));
                v[1].push(time(&mut || {
                    PpcGrad::new()
                        .merge(&flat, &mut merged, &mut ws)
                        .expect("merge")
                }));
                v[2].push(time(&mut || two_reads(&grads, w)));
                v[3].push(time(&mut || {
                    PpcGrad::new()
                        .threads(threads)
                        .merge(&flat, &mut merged, &mut ws)
                        .expect("merge")
                }));
                v[4].push(time(&mut || {
                    let mut g = FlatMut::new(layout, &mut proj).expect("flatmut");
                    PpcGrad::new()
                        .threads(threads)
                        .project(&mut g, None, &mut ws)
                        .expect("project")
                }));
                v[6].push(time(&mut || {
                    bench::merge_on(portable, &mut PpcGrad::new(), &flat, &mut merged, &mut ws)
                        .expect("merge")
                }));
                if r < direct_reps {
                    let d = time(&mut || {
                        direct::direct_merge(&grads, t, n, true, true, &mut scratch, &mut merged)
                    });
                    if r == 0 && d.as_secs_f64() > 0.5 {
                        direct_reps = 1;
                    }
                    v[5].push(d);
                }
            }
            let m: Vec<f64> = v.iter_mut().map(|x| median(x)).collect();
            let (r1, rp) = (m[1] / m[0], m[3] / m[2]);
            if n >= 1_000_000 && t <= 8 {
                for r in [r1, rp] {
                    if worst.is_none_or(|w| r > w.0) {
                        worst = Some((r, t, n));
                    }
                }
            }
            let gain = m[6] / m[1];
            if worst_gain.is_none_or(|w| gain < w.0) {
                worst_gain = Some((gain, t, n));
            }
            let ms = |s: f64| s * 1e3;
            println!(
                "{:>3} {:>9} {:>8.1} {:>6} | {:>8.3} {:>8.3} {:>5.2} | {:>8.3} {:>8.3} {:>5.2} | {:>8.3} {:>5.2} | {:>9.3} {:>6.2} {:>6.1}x | {:>9.3} {:>5.2}",
                t,
                n,
                bytes as f64 / (1 << 20) as f64,
                if bytes <= llc { "LLC" } else { "DRAM" },
                ms(m[0]),
                ms(m[1]),
                r1,
                ms(m[2]),
                ms(m[3]),
                rp,
                ms(m[4]),
                m[4] / m[2],
                ms(m[5]),
                m[5] / m[0],
                m[5] / m[1],
                ms(m[6]),
                m[6] / m[1],
            );
        }
    }
    match worst {
        Some((r, t, n)) => println!("roofline: worst ratio {r:.2} at T={t} N={n}"),
        None => println!("roofline: worst ratio n/a (no case with N >= 1e6 and T <= 8)"),
    }
    if let Some((g, t, n)) = worst_gain {
        println!(
            "roofline: smallest dispatch gain {g:.2} at T={t} N={n} (run-time {} kernels against the compile-time backend; below 1.0 the run-time selection loses)",
            runtime_level()
        );
    }
}
