//! The per-variable C entry points at real-model scale: `pcgrad_merge_vars`
//! (one buffer per (task, variable)) against `pcgrad_merge_flat` on the same
//! gradients packed into one T x N buffer, at T = 4 and S in {10, 100, 1000,
//! 10000} variables of 1000 floats, plus `pcgrad_unflatten` of the merged
//! gradient into S buffers. Through the C ABI, so it needs the `capi`
//! feature:
//!
//! ```sh
//! cargo bench --features capi --bench per_variable
//! ```
//!
//! The per-variable overhead is the ratio of the `merge_vars` and
//! `merge_flat` times of a group; linear in S means the time per variable
//! stays flat as S grows.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use pcgrad::ffi::*;
use std::hint::black_box;
use std::ptr;
use std::time::Duration;

const T: usize = 4;
const LEN: usize = 1000;

/// Task t's gradient of variable s: deterministic, with conflicts.
fn var(t: usize, s: usize) -> Vec<f32> {
    (0..LEN)
        .map(|i| {
            let x = ((t * 7919 + s * 104_729 + i * 31) % 1000) as f32 / 1000.0 - 0.5;
            if t.is_multiple_of(2) {
                x + 0.25
            } else {
                x - 0.25
            }
        })
        .collect()
}

fn ok(st: pcgrad_status) {
    assert_eq!(st, pcgrad_status::PCGRAD_OK);
}

fn bench(c: &mut Criterion) {
    let cfg = pcgrad_config {
        threads: 1,
        ..unsafe { std::mem::zeroed() }
    };
    for s in [10usize, 100, 1000, 10_000] {
        let n = s * LEN;
        let mut group = c.benchmark_group(format!("per_variable/T={T}/S={s}"));
        group.sample_size(10);
        group.sampling_mode(SamplingMode::Flat);
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_secs(2));
        let vars: Vec<Vec<f32>> = (0..T * s).map(|c| var(c / s, c % s)).collect();
        let ptrs: Vec<*const f32> = vars.iter().map(|v| v.as_ptr()).collect();
        let segs = vec![LEN; s];
        let flat: Vec<f32> = vars.iter().flatten().copied().collect();
        let mut outs: Vec<Vec<f32>> = (0..s).map(|_| vec![0.0; LEN]).collect();
        let out_ptrs: Vec<*mut f32> = outs.iter_mut().map(|v| v.as_mut_ptr()).collect();
        let mut merged = vec![0.0f32; n];
        let (mut wl, mut wlv) = (0, 0);
        // SAFETY: live, aligned `size_t`s.
        unsafe {
            ok(pcgrad_workspace_len(T, &mut wl));
            ok(pcgrad_workspace_len_vars(T, s, &mut wlv));
        }
        let mut ws = vec![0.0f64; wlv.max(wl)];
        group.bench_function(BenchmarkId::new("merge_flat", s), |b| {
            b.iter(|| {
                // SAFETY: every pointer points at the length given.
                ok(unsafe {
                    pcgrad_merge_flat(
                        &cfg,
                        flat.as_ptr(),
                        flat.len(),
                        segs.as_ptr(),
                        s,
                        ptr::null(),
                        0,
                        T,
                        n,
                        merged.as_mut_ptr(),
                        n,
                        ptr::null_mut(),
                        ptr::null_mut(),
                        0,
                        ws.as_mut_ptr(),
                        wl,
                    )
                });
                black_box(&merged);
            })
        });
        group.bench_function(BenchmarkId::new("merge_vars", s), |b| {
            b.iter(|| {
                // SAFETY: every pointer points at the length given.
                ok(unsafe {
                    pcgrad_merge_vars(
                        &cfg,
                        ptrs.as_ptr(),
                        ptrs.len(),
                        segs.as_ptr(),
                        s,
                        T,
                        out_ptrs.as_ptr(),
                        s,
                        ptr::null_mut(),
                        ptr::null_mut(),
                        0,
                        ws.as_mut_ptr(),
                        wlv,
                    )
                });
                black_box(&out_ptrs);
            })
        });
        group.bench_function(BenchmarkId::new("unflatten", s), |b| {
            b.iter(|| {
                // SAFETY: every pointer points at the length given.
                ok(unsafe {
                    pcgrad_unflatten(merged.as_ptr(), n, segs.as_ptr(), s, out_ptrs.as_ptr(), s)
                });
                black_box(&out_ptrs);
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
