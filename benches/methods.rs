//! Phase 2 of every method (`pcgrad::methods::method_weights`, the weights
//! from a T x T Gram matrix) at T in {2, 4, 8, 16, 64}, beside the Gram
//! pass (`engine::accumulate_gram`) over N = 1e6 `f32` coordinates at the
//! same T, so the README can say where phase 2 stops being negligible.
//! Short measurements (the whole bench runs in a few minutes):
//!
//! ```sh
//! cargo bench --bench methods
//! ```

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use pcgrad::engine::{accumulate_gram, gram_workspace_len};
use pcgrad::methods::{
    method_weights, method_workspace_len, AlignedMtl, CaGrad, DualCone, GradVac, ImtlG, Method,
    Mgda, NashMtl, NashState,
};
use pcgrad::{Flat, Layout, PcGrad, PpcGrad, Rng};
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

/// The Gram matrix of `make_grads(t, n)`.
fn gram_of(t: usize, n: usize) -> Vec<f64> {
    let grads = make_grads(t, n);
    let flat = Flat::new(Layout::dense(t, n).unwrap(), &grads).unwrap();
    let mut g = vec![0.0; gram_workspace_len(t).unwrap()];
    accumulate_gram(&flat, 0, n, &mut g).unwrap();
    g.truncate(t * t);
    g
}

const NAMES: [&str; 13] = [
    "pcgrad",
    "ppcgrad",
    "mgda",
    "upgrad",
    "dualproj",
    "cagrad",
    "imtl_g",
    "aligned_mtl",
    "nash_mtl",
    "gradvac",
    "mean",
    "sum",
    "random",
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("phase2");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(500));
    for t in [2usize, 4, 8, 16, 64] {
        let g = gram_of(t, 4096);
        let mut w = vec![0.0; t];
        for name in NAMES {
            let (mut rng, mut phi, mut alpha) = (Rng::new(1), vec![0.0; t * t], vec![0.0; t]);
            let mut m = match name {
                "pcgrad" => Method::PcGrad(PcGrad::new(&mut rng)),
                "ppcgrad" => Method::PcGrad(PpcGrad::new()),
                "mgda" => Method::Mgda(Mgda::default()),
                "upgrad" => Method::UpGrad(DualCone::default()),
                "dualproj" => Method::DualProj(DualCone::default()),
                "cagrad" => Method::CaGrad(CaGrad::default()),
                "imtl_g" => Method::ImtlG(ImtlG::default()),
                "aligned_mtl" => Method::AlignedMtl(AlignedMtl::default()),
                "nash_mtl" => Method::NashMtl(NashMtl::default(), NashState::new(&mut alpha)),
                "gradvac" => Method::GradVac(GradVac::default(), &mut phi, &mut rng),
                "mean" => Method::Mean,
                "sum" => Method::Sum,
                _ => Method::Random(&mut rng),
            };
            let mut ws = vec![0.0; method_workspace_len(&m, t).unwrap()];
            group.bench_function(BenchmarkId::new(name, t), |b| {
                b.iter(|| {
                    method_weights(&mut m, black_box(&g), t, &mut w, &mut ws).unwrap();
                    black_box(&w);
                })
            });
        }
    }
    group.finish();
    let mut group = c.benchmark_group("gram_pass_n1e6");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1));
    let n = 1_000_000;
    for t in [2usize, 4, 8, 16, 64] {
        let grads = make_grads(t, n);
        let flat = Flat::new(Layout::dense(t, n).unwrap(), &grads).unwrap();
        let mut g = vec![0.0; gram_workspace_len(t).unwrap()];
        group.bench_function(BenchmarkId::from_parameter(t), |b| {
            b.iter(|| {
                g.fill(0.0);
                accumulate_gram(&flat, 0, n, &mut g).unwrap();
                black_box(&g);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
