//! The one-call path against the direct loop of the TensorFlow and PyTorch
//! ports (O(T^2) passes, `tests/common/direct.rs`), plus the threaded
//! one-call path (feature `parallel`, all cores) and the in-place projected
//! path, over two grids: T in {2, 4, 8} x N in {1e3, 1e5, 1e6}, and the
//! roofline example's T in {2, 4, 8, 16} x N in {1e4, 1e6, 1e7}. Short
//! samples (flat sampling, 10 samples, for the slow N = 1e7 cases) so the
//! whole bench runs in about ten minutes:
//!
//! ```sh
//! cargo bench --bench pcgrad                      # serial
//! cargo bench --features parallel --bench pcgrad  # adds the threaded rows
//! ```
//!
//! The speed-up is the ratio of the `direct` and `one_call` times of a
//! group. The roofline example (`examples/roofline.rs`) prints the same
//! comparison as a table with the ratio to the memory limit.

#[path = "../tests/common/direct.rs"]
mod direct;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use pcgrad::{Flat, FlatMut, Layout, PpcGrad};
use std::hint::black_box;
use std::time::Duration;

/// Gradients with conflicts: a shared direction with alternating sign plus
/// noise.
fn make_grads(tasks: usize, dim: usize) -> Vec<f32> {
    let mut s: u32 = 7;
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

fn bench(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The two grids, merged, in increasing T then N.
    let mut cases: Vec<(usize, usize)> = Vec::new();
    for t in [2usize, 4, 8] {
        for n in [1_000usize, 100_000, 1_000_000] {
            cases.push((t, n));
        }
    }
    for t in [2usize, 4, 8, 16] {
        for n in [10_000usize, 1_000_000, 10_000_000] {
            if !cases.contains(&(t, n)) {
                cases.push((t, n));
            }
        }
    }
    cases.sort_unstable();
    for (t, n) in cases {
        {
            let grads = make_grads(t, n);
            let layout = Layout::dense(t, n).expect("layout");
            let flat = Flat::new(layout, &grads).expect("flat");
            let mut merged = vec![0.0f32; n];
            let mut scratch = grads.clone();
            let mut proj = grads.clone();
            let mut ws = vec![0.0f64; pcgrad::workspace_len(t).expect("workspace")];
            let mut g = c.benchmark_group(format!("T={t}"));
            g.sample_size(10)
                .warm_up_time(Duration::from_millis(200))
                .measurement_time(Duration::from_millis(if n >= 1_000_000 {
                    1200
                } else {
                    400
                }))
                .throughput(Throughput::Bytes((t * n * 4) as u64));
            if n >= 10_000_000 {
                // 10 single-iteration samples (the direct loop takes about
                // 2 s per call at T = 16) instead of linear sampling's 55.
                g.sampling_mode(SamplingMode::Flat);
            }
            g.bench_function(BenchmarkId::new("one_call", n), |b| {
                b.iter(|| {
                    PpcGrad::new()
                        .merge(black_box(&flat), &mut merged, &mut ws)
                        .expect("merge")
                })
            });
            if cfg!(feature = "parallel") {
                g.bench_function(
                    BenchmarkId::new(format!("one_call_{cores}threads"), n),
                    |b| {
                        b.iter(|| {
                            PpcGrad::new()
                                .threads(0)
                                .merge(black_box(&flat), &mut merged, &mut ws)
                                .expect("merge")
                        })
                    },
                );
            }
            g.bench_function(BenchmarkId::new("project_in_place", n), |b| {
                b.iter(|| {
                    let mut f = FlatMut::new(layout, &mut proj).expect("flatmut");
                    PpcGrad::new()
                        .project(&mut f, None, &mut ws)
                        .expect("project")
                })
            });
            g.bench_function(BenchmarkId::new("direct", n), |b| {
                b.iter(|| {
                    direct::direct_merge(
                        black_box(&grads),
                        t,
                        n,
                        true,
                        true,
                        &mut scratch,
                        &mut merged,
                    )
                })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
