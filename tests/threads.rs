//! The threaded passes (feature `parallel`) give bitwise the same Gram
//! matrix, merged gradient and projected gradients for every worker count as
//! the serial engine functions, which are the code every build without the
//! feature runs. Without the feature the same tests check that the serial
//! stand-ins forward to the engine unchanged.

use pcgrad::engine::{self, Coefficients, Mode, Order, Reduction};
use pcgrad::{parallel, Flat, FlatMut, Gradients, Layout, PcGrad, PerVariable, PerVariableMut};

const WORKERS: [usize; 4] = [1, 2, 3, 7];

/// A deterministic gradient set with conflicts: a shared direction with a
/// per-task sign plus noise, and a few blocks of extreme magnitude that send
/// their Gram blocks through the exact kernel.
fn grads(tasks: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let shared: Vec<f32> = (0..dim).map(|_| next()).collect();
    let mut out = Vec::with_capacity(tasks * dim);
    for t in 0..tasks {
        let sign = if t % 3 == 1 { -0.8 } else { 0.6 };
        for (n, &c) in shared.iter().enumerate() {
            let mut v = sign * c + next();
            if n % 40_000 == 17 && t == 0 {
                v *= 1e20;
            }
            if (n / 256) % 97 == 5 {
                v *= 1e-25;
            }
            out.push(v);
        }
    }
    out
}

fn bits32(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

fn bits64(x: &[f64]) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Asserts bitwise equality, naming the first differing index (the vectors
/// are too long to print).
#[track_caller]
fn same<T: PartialEq + std::fmt::Debug>(got: &[T], want: &[T], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    if let Some(k) = (0..got.len()).find(|&k| got[k] != want[k]) {
        panic!(
            "{what}: first difference at {k}: {:?} != {:?}",
            got[k], want[k]
        );
    }
}

/// A shape: T, segment lengths and mask (empty = dense).
struct Shape {
    tasks: usize,
    segments: Vec<usize>,
    mask: Vec<bool>,
}

fn shapes() -> Vec<Shape> {
    let masked_segs = vec![10_000, 3, 25_000, 8191, 1, 30_000, 257];
    let t = 5;
    let mask = (0..t * masked_segs.len())
        .map(|c| (c * 7 + c / 3) % 5 != 0)
        .collect();
    vec![
        Shape {
            tasks: 3,
            segments: vec![70_001],
            mask: vec![],
        },
        Shape {
            tasks: 1,
            segments: vec![40_000],
            mask: vec![],
        },
        Shape {
            tasks: t,
            segments: masked_segs,
            mask,
        },
        Shape {
            tasks: 9,
            segments: vec![8192, 20_000, 300],
            mask: (0..27).map(|c| c % 4 != 3).collect(),
        },
    ]
}

fn modes() -> Vec<(&'static str, Reduction, bool)> {
    vec![
        ("simultaneous mean", Reduction::Mean, true),
        ("sequential sum", Reduction::Sum, false),
        ("sequential mean", Reduction::Mean, false),
    ]
}

/// Gram and coefficients computed with the serial engine; returns the
/// coefficient workspace.
fn serial_gram_coef<G: Gradients<f32>>(g: &G, simultaneous: bool) -> (Vec<f64>, Vec<f64>) {
    let t = g.layout().tasks();
    let mut gram = vec![0.0; engine::gram_workspace_len(t).unwrap()];
    engine::accumulate_gram(g, 0, g.layout().dim(), &mut gram).unwrap();
    let mut cws = vec![0.0; engine::coefficients_len(t).unwrap()];
    let mut mode = if simultaneous {
        Mode::Simultaneous
    } else {
        Mode::Sequential(Order::Fixed)
    };
    engine::coefficients(&gram, t, &mut mode, &mut cws).unwrap();
    gram.truncate(t * t);
    (gram, cws)
}

#[test]
fn gram_and_merged_are_bitwise_equal_for_every_worker_count() {
    for (k, shape) in shapes().iter().enumerate() {
        let t = shape.tasks;
        let n: usize = shape.segments.iter().sum();
        let data = grads(t, n, k as u64 + 1);
        let layout = Layout::new(t, n, &shape.segments, &shape.mask).unwrap();
        let flat = Flat::new(layout, &data).unwrap();
        for (name, reduction, simultaneous) in modes() {
            let (gram, cws) = serial_gram_coef(&flat, simultaneous);
            let coef = Coefficients::from_workspace(t, &cws).unwrap();
            let mut tile = vec![0.0; engine::tile_len(t).unwrap()];
            let mut want = vec![0.0f32; n];
            engine::apply_merged(&flat, &coef, reduction, 0, n, &mut want, &mut tile).unwrap();
            assert!(want.iter().any(|&v| v != 0.0));
            for w in WORKERS {
                let mut g = vec![0.0; engine::gram_workspace_len(t).unwrap()];
                parallel::accumulate_gram(&flat, &mut g, w).unwrap();
                same(
                    &bits64(&g[..t * t]),
                    &bits64(&gram),
                    &format!("gram, shape {k}, {w} workers"),
                );
                let mut got = vec![0.0f32; n];
                parallel::apply_merged(&flat, &coef, reduction, &mut got, &mut tile, w).unwrap();
                same(
                    &bits32(&got),
                    &bits32(&want),
                    &format!("merged, shape {k}, {name}, {w} workers"),
                );
            }
        }
    }
}

#[test]
fn projected_in_place_is_bitwise_equal_for_every_worker_count() {
    for (k, shape) in shapes().iter().enumerate() {
        let t = shape.tasks;
        let n: usize = shape.segments.iter().sum();
        let data = grads(t, n, k as u64 + 11);
        let layout = Layout::new(t, n, &shape.segments, &shape.mask).unwrap();
        for (name, reduction, simultaneous) in modes() {
            let (_, cws) = serial_gram_coef(&Flat::new(layout, &data).unwrap(), simultaneous);
            let coef = Coefficients::from_workspace(t, &cws).unwrap();
            let mut tile = vec![0.0; engine::tile_len(t).unwrap()];
            let mut want = data.clone();
            let mut want_m = vec![0.0f32; n];
            let mut fm = FlatMut::new(layout, &mut want).unwrap();
            engine::apply_projected(
                &mut fm,
                &coef,
                reduction,
                0,
                n,
                Some(&mut want_m),
                &mut tile,
            )
            .unwrap();
            if t > 1 {
                assert_ne!(want, data, "shape {k}: nothing was projected");
            }
            for w in WORKERS {
                let mut got = data.clone();
                let mut got_m = vec![0.0f32; n];
                let mut fm = FlatMut::new(layout, &mut got).unwrap();
                parallel::apply_projected(
                    &mut fm,
                    &coef,
                    reduction,
                    Some(&mut got_m),
                    &mut tile,
                    w,
                )
                .unwrap();
                same(
                    &bits32(&got),
                    &bits32(&want),
                    &format!("projected, shape {k}, {name}, {w}"),
                );
                same(
                    &bits32(&got_m),
                    &bits32(&want_m),
                    &format!("merged, shape {k}, {name}, {w}"),
                );
                // Without the merged output.
                let mut got2 = data.clone();
                let mut fm = FlatMut::new(layout, &mut got2).unwrap();
                parallel::apply_projected(&mut fm, &coef, reduction, None, &mut tile, w).unwrap();
                same(
                    &bits32(&got2),
                    &bits32(&want),
                    &format!("projected only, shape {k}, {w}"),
                );
            }
        }
    }
}

/// Per-variable buffers with missing (None) cells, read and written through
/// the threaded passes.
#[test]
fn per_variable_buffers_are_bitwise_equal_for_every_worker_count() {
    let shape = &shapes()[2];
    let (t, segs) = (shape.tasks, &shape.segments);
    let s = segs.len();
    let n: usize = segs.iter().sum();
    let data = grads(t, n, 99);
    // Cell (t, s) is task t's row on segment s, or None where the mask says so.
    let cell_range = |c: usize| {
        let (task, seg) = (c / s, c % s);
        let base: usize = segs[..seg].iter().sum();
        task * n + base..task * n + base + segs[seg]
    };
    let vars: Vec<Option<&[f32]>> = (0..t * s)
        .map(|c| shape.mask[c].then(|| &data[cell_range(c)]))
        .collect();
    let mut mask = vec![false; t * s];
    let pv = PerVariable::new(t, segs, &vars, &mut mask).unwrap();
    for (name, reduction, simultaneous) in modes() {
        let (gram, cws) = serial_gram_coef(&pv, simultaneous);
        let coef = Coefficients::from_workspace(t, &cws).unwrap();
        let mut tile = vec![0.0; engine::tile_len(t).unwrap()];
        let mut want_m = vec![0.0f32; n];
        engine::apply_merged(&pv, &coef, reduction, 0, n, &mut want_m, &mut tile).unwrap();
        let project = |w: Option<usize>| {
            let mut bufs: Vec<Option<Vec<f32>>> =
                (0..t * s).map(|c| vars[c].map(<[f32]>::to_vec)).collect();
            let mut refs: Vec<Option<&mut [f32]>> =
                bufs.iter_mut().map(|b| b.as_deref_mut()).collect();
            let mut mask = vec![false; t * s];
            let mut pm = PerVariableMut::new(t, segs, &mut refs, &mut mask).unwrap();
            let mut m = vec![0.0f32; n];
            let mut tile = vec![0.0; engine::tile_len(t).unwrap()];
            match w {
                None => engine::apply_projected(
                    &mut pm,
                    &coef,
                    reduction,
                    0,
                    n,
                    Some(&mut m),
                    &mut tile,
                ),
                Some(w) => {
                    parallel::apply_projected(&mut pm, &coef, reduction, Some(&mut m), &mut tile, w)
                }
            }
            .unwrap();
            let flat: Vec<u32> = bufs.iter().flatten().flat_map(|b| bits32(b)).collect();
            (flat, bits32(&m))
        };
        let want_p = project(None);
        for w in WORKERS {
            let mut g = vec![0.0; engine::gram_workspace_len(t).unwrap()];
            parallel::accumulate_gram(&pv, &mut g, w).unwrap();
            same(
                &bits64(&g[..t * t]),
                &bits64(&gram),
                &format!("gram, {w} workers"),
            );
            let mut got = vec![0.0f32; n];
            parallel::apply_merged(&pv, &coef, reduction, &mut got, &mut tile, w).unwrap();
            same(
                &bits32(&got),
                &bits32(&want_m),
                &format!("merged, {name}, {w} workers"),
            );
            let got_p = project(Some(w));
            same(
                &got_p.0,
                &want_p.0,
                &format!("projected, {name}, {w} workers"),
            );
            same(
                &got_p.1,
                &want_p.1,
                &format!("projected merged, {name}, {w} workers"),
            );
        }
    }
}

/// The one-call API through `PcGrad::threads`, on a problem large enough for
/// 7 workers to pass the work threshold, against the serial engine phases.
#[test]
fn one_call_is_bitwise_equal_for_every_thread_count() {
    let (t, n) = (4, 1_000_003);
    let data = grads(t, n, 7);
    let layout = Layout::dense(t, n).unwrap();
    let flat = Flat::new(layout, &data).unwrap();
    let mut ws = vec![0.0; pcgrad::workspace_len(t).unwrap()];
    for simultaneous in [true, false] {
        let (_, cws) = serial_gram_coef(&flat, simultaneous);
        let coef = Coefficients::from_workspace(t, &cws).unwrap();
        let mut tile = vec![0.0; engine::tile_len(t).unwrap()];
        let mut want = vec![0.0f32; n];
        engine::apply_merged(&flat, &coef, Reduction::Mean, 0, n, &mut want, &mut tile).unwrap();
        let mut want_p = data.clone();
        let mut fm = FlatMut::new(layout, &mut want_p).unwrap();
        engine::apply_projected(&mut fm, &coef, Reduction::Mean, 0, n, None, &mut tile).unwrap();
        for threads in [1, 2, 3, 7, 0] {
            let mut pc = if simultaneous {
                PcGrad::with_mode(Mode::Simultaneous)
            } else {
                PcGrad::with_mode(Mode::Sequential(Order::Fixed))
            }
            .threads(threads);
            let mut got = vec![0.0f32; n];
            let stats = pc.merge(&flat, &mut got, &mut ws).unwrap();
            assert!(stats.conflicting_pairs > 0);
            same(
                &bits32(&got),
                &bits32(&want),
                &format!("merge, {threads} threads"),
            );
            let mut got_p = data.clone();
            let mut fm = FlatMut::new(layout, &mut got_p).unwrap();
            pc.project(&mut fm, None, &mut ws).unwrap();
            same(
                &bits32(&got_p),
                &bits32(&want_p),
                &format!("project, {threads} threads"),
            );
        }
    }
}

#[test]
fn worker_count_respects_request_and_threshold() {
    let big = parallel::MIN_WORK * 64;
    assert_eq!(parallel::workers(1, big), 1);
    assert_eq!(parallel::workers(5, 10), 1);
    assert_eq!(parallel::workers(0, 0), 1);
    if cfg!(feature = "parallel") {
        // A request is also capped at the cores the process may use.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(parallel::workers(3, big), 3.min(cores));
        assert_eq!(parallel::workers(7, parallel::MIN_WORK * 2), 2.min(cores));
        assert_eq!(parallel::workers(64, big), 64.min(cores));
        assert!(parallel::workers(0, big) >= 1);
    } else {
        assert_eq!(parallel::workers(3, big), 1);
    }
}

/// Bad inputs are errors, not panics, on the threaded path too.
#[test]
fn threaded_errors_leave_outputs_untouched() {
    let (t, n) = (3, 20_000);
    let data = grads(t, n, 5);
    let flat = Flat::new(Layout::dense(t, n).unwrap(), &data).unwrap();
    let mut small = vec![0.0; 3];
    assert!(parallel::accumulate_gram(&flat, &mut small, 3).is_err());
    let (_, cws) = serial_gram_coef(&flat, true);
    let coef = Coefficients::from_workspace(t, &cws).unwrap();
    let mut tile = vec![0.0; engine::tile_len(t).unwrap()];
    let mut short = vec![1.0f32; n - 1];
    assert!(
        parallel::apply_merged(&flat, &coef, Reduction::Mean, &mut short, &mut tile, 3).is_err()
    );
    assert!(short.iter().all(|&v| v == 1.0));
    let mut merged = vec![1.0f32; n];
    assert!(
        parallel::apply_merged(&flat, &coef, Reduction::Mean, &mut merged, &mut small, 3).is_err()
    );
    assert!(merged.iter().all(|&v| v == 1.0));
    let mut d = data.clone();
    let mut fm = FlatMut::new(Layout::dense(t, n).unwrap(), &mut d).unwrap();
    assert!(parallel::apply_projected(
        &mut fm,
        &coef,
        Reduction::Mean,
        Some(&mut short),
        &mut tile,
        3
    )
    .is_err());
    assert_eq!(bits32(&d), bits32(&data));
}
