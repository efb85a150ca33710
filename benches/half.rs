//! bf16 and f16 gradients against `f32` (feature `half`): `PpcGrad::merge`
//! over the same values in each type, T in {2, 4, 8, 16} x N in {1e4, 1e6,
//! 1e7}. At the memory limit (N = 1e7, past the last-level cache) a
//! half-precision call reads half the bytes of an `f32` call:
//!
//! ```sh
//! cargo bench --features half --bench half
//! ```
//!
//! The ratio of the `bf16` (or `f16`) and `f32` times of a group is the
//! README's "Half precision" row.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use pcgrad::{bf16, f16, Element, Flat, Layout, PpcGrad};
use std::hint::black_box;
use std::time::Duration;

/// T x N gradients rounded to `F`: a shared direction whose sign
/// alternates between tasks (so tasks conflict) plus per-task noise, from
/// an integer hash (no state).
fn make_grads<F: Element>(tasks: usize, dim: usize) -> Vec<F> {
    let unit =
        |k: u64| (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
    (0..tasks * dim)
        .map(|k| {
            let (t, c) = (k / dim, (k % dim) as u64);
            let sign = if t % 2 == 1 { -0.7 } else { 0.9 };
            F::from_f64(sign * unit(c) + unit(c ^ ((t as u64 + 1) << 40)))
        })
        .collect()
}

fn one<F: Element>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    t: usize,
    n: usize,
) {
    let grads = make_grads::<F>(t, n);
    let layout = Layout::dense(t, n).expect("layout");
    let flat = Flat::new(layout, &grads).expect("flat");
    let mut merged = vec![F::zero(); n];
    let mut ws = vec![0.0f64; pcgrad::workspace_len(t).expect("workspace")];
    g.bench_function(BenchmarkId::new(name, n), |b| {
        b.iter(|| {
            PpcGrad::new()
                .merge(black_box(&flat), &mut merged, &mut ws)
                .expect("merge")
        })
    });
}

fn bench(c: &mut Criterion) {
    for t in [2usize, 4, 8, 16] {
        for n in [10_000usize, 1_000_000, 10_000_000] {
            let mut g = c.benchmark_group(format!("half T={t}"));
            g.sample_size(10)
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_millis(1500))
                .sampling_mode(SamplingMode::Flat);
            one::<f32>(&mut g, "f32", t, n);
            one::<bf16>(&mut g, "bf16", t, n);
            one::<f16>(&mut g, "f16", t, n);
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
