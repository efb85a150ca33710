//! The threaded passes on problems small enough for Miri
//! (`scripts/miri.sh` runs this file under Miri with `--features parallel`;
//! `cargo test --features parallel` runs it natively too): 2 and 3 workers
//! for the Gram pass (each worker's partial Grams per `engine::CHUNK` of
//! columns, combined in chunk order by the calling thread), the merged and
//! the in-place apply passes, the per-variable buffers, and the one-call
//! API (`PcGrad::threads`, whose per-worker minimum `parallel::MIN_WORK` is
//! 256 elements under Miri). Every result is bitwise the serial engine's,
//! and the serial engine matches the float64 reference.

#![cfg(feature = "parallel")]

mod common;

use common::reference::{self, Problem, RefMode};
use pcgrad::engine::{self, Coefficients, Mode, Order, Reduction};
use pcgrad::{parallel, Flat, FlatMut, Gradients, Layout, PcGrad, PerVariable, PerVariableMut};

fn grads(tasks: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..tasks * dim)
        .map(|k| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let v = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            // Every other task leans the other way: conflicts.
            if (k / dim) % 2 == 1 {
                v - 0.3
            } else {
                v + 0.3
            }
        })
        .collect()
}

fn bits32(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

fn bits64(x: &[f64]) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

fn serial<G: Gradients<f32>>(g: &G) -> (Vec<f64>, Vec<f64>) {
    let t = g.layout().tasks();
    let mut gram = vec![0.0; engine::gram_workspace_len(t).unwrap()];
    engine::accumulate_gram(g, 0, g.layout().dim(), &mut gram).unwrap();
    let mut cws = vec![0.0; engine::coefficients_len(t).unwrap()];
    engine::coefficients(&gram, t, &mut Mode::Simultaneous, &mut cws).unwrap();
    gram.truncate(t * t);
    (gram, cws)
}

/// Two and three Gram workers need two and three chunks of columns.
#[test]
fn gram_partials_combine_bitwise_on_2_and_3_workers() {
    let (t, n) = (2, 2 * engine::CHUNK + 9);
    let data = grads(t, n, 1);
    let layout = Layout::new(t, n, &[engine::CHUNK + 3, engine::CHUNK + 6], &[]).unwrap();
    let flat = Flat::new(layout, &data).unwrap();
    let (want, _) = serial(&flat);
    let p = Problem {
        tasks: t,
        dim: n,
        segments: vec![],
        has_grad: vec![],
        grads: data.iter().map(|&x| x as f64).collect(),
    };
    let r = reference::reference(&p, &RefMode::Simultaneous, true);
    let scale = r.gram[0].abs().max(r.gram[3].abs());
    // The Gram pass sums f32 products in f32 within a block of 256 columns
    // (at most 32 per lane of 8, in the SIMD and the scalar kernels alike),
    // then in f64: within 257 units of f32 rounding of the scale.
    let tol = 257.0 / (1u64 << 24) as f64;
    for (k, (w, g)) in want.iter().zip(&r.gram).enumerate() {
        assert!(
            (w - g).abs() <= tol * scale,
            "gram[{k}] = {w:e}, reference {g:e}"
        );
    }
    for w in [2, 3] {
        let mut g = vec![0.0; engine::gram_workspace_len(t).unwrap()];
        parallel::accumulate_gram(&flat, &mut g, w).unwrap();
        assert_eq!(bits64(&g[..t * t]), bits64(&want), "gram, {w} workers");
    }
}

#[test]
fn apply_passes_bitwise_on_2_and_3_workers() {
    let (t, n) = (3, 3 * 256 + 5);
    let data = grads(t, n, 2);
    let mask = [true, true, false, true, true, true];
    let segs = [300, n - 300];
    let layout = Layout::new(t, n, &segs, &mask).unwrap();
    let flat = Flat::new(layout, &data).unwrap();
    let (_, cws) = serial(&flat);
    let coef = Coefficients::from_workspace(t, &cws).unwrap();
    let mut tile = vec![0.0; engine::tile_len(t).unwrap()];
    for red in [Reduction::Mean, Reduction::Sum] {
        let mut want = vec![0.0f32; n];
        engine::apply_merged(&flat, &coef, red, 0, n, &mut want, &mut tile).unwrap();
        let mut want_p = data.clone();
        let mut want_pm = vec![0.0f32; n];
        let mut fm = FlatMut::new(layout, &mut want_p).unwrap();
        engine::apply_projected(&mut fm, &coef, red, 0, n, Some(&mut want_pm), &mut tile).unwrap();
        for w in [2, 3] {
            let mut got = vec![0.0f32; n];
            parallel::apply_merged(&flat, &coef, red, &mut got, &mut tile, w).unwrap();
            assert_eq!(bits32(&got), bits32(&want), "merged, {w} workers");
            let mut got_p = data.clone();
            let mut got_pm = vec![0.0f32; n];
            let mut fm = FlatMut::new(layout, &mut got_p).unwrap();
            parallel::apply_projected(&mut fm, &coef, red, Some(&mut got_pm), &mut tile, w)
                .unwrap();
            assert_eq!(bits32(&got_p), bits32(&want_p), "projected, {w} workers");
            assert_eq!(
                bits32(&got_pm),
                bits32(&want_pm),
                "projected merged, {w} workers"
            );
        }
    }
}

#[test]
fn per_variable_apply_bitwise_on_2_and_3_workers() {
    let (t, segs) = (2, [400usize, 7, 500]);
    let n: usize = segs.iter().sum();
    let data = grads(t, n, 3);
    let mut cells: Vec<Vec<f32>> = Vec::new();
    for task in 0..t {
        let mut pos = 0;
        for &l in &segs {
            cells.push(data[task * n + pos..task * n + pos + l].to_vec());
            pos += l;
        }
    }
    let present = |c: usize| c != 4; // task 1 has no gradient for variable 1
    let vars: Vec<Option<&[f32]>> = cells
        .iter()
        .enumerate()
        .map(|(c, v)| present(c).then_some(&v[..]))
        .collect();
    let mut mask = vec![false; vars.len()];
    let pv = PerVariable::new(t, &segs, &vars, &mut mask).unwrap();
    let (_, cws) = serial(&pv);
    let coef = Coefficients::from_workspace(t, &cws).unwrap();
    let mut tile = vec![0.0; engine::tile_len(t).unwrap()];
    let mut want = vec![0.0f32; n];
    engine::apply_merged(&pv, &coef, Reduction::Mean, 0, n, &mut want, &mut tile).unwrap();
    let mut want_cells = cells.clone();
    {
        let mut refs: Vec<Option<&mut [f32]>> = want_cells
            .iter_mut()
            .enumerate()
            .map(|(c, v)| present(c).then_some(&mut v[..]))
            .collect();
        let mut m = vec![false; refs.len()];
        let mut pvm = PerVariableMut::new(t, &segs, &mut refs, &mut m).unwrap();
        engine::apply_projected(&mut pvm, &coef, Reduction::Mean, 0, n, None, &mut tile).unwrap();
    }
    for w in [2, 3] {
        let mut got = vec![0.0f32; n];
        parallel::apply_merged(&pv, &coef, Reduction::Mean, &mut got, &mut tile, w).unwrap();
        assert_eq!(
            bits32(&got),
            bits32(&want),
            "per-variable merged, {w} workers"
        );
        let mut got_cells = cells.clone();
        let mut refs: Vec<Option<&mut [f32]>> = got_cells
            .iter_mut()
            .enumerate()
            .map(|(c, v)| present(c).then_some(&mut v[..]))
            .collect();
        let mut m = vec![false; refs.len()];
        let mut pvm = PerVariableMut::new(t, &segs, &mut refs, &mut m).unwrap();
        parallel::apply_projected(&mut pvm, &coef, Reduction::Mean, None, &mut tile, w).unwrap();
        for (c, (g, wv)) in got_cells.iter().zip(&want_cells).enumerate() {
            assert_eq!(bits32(g), bits32(wv), "per-variable cell {c}, {w} workers");
        }
    }
}

/// The one-call API picks its workers from `MIN_WORK` and the cores: a
/// problem of `3 * MIN_WORK` elements gets 2 and 3 workers when asked and
/// the process has that many cores (scripts/miri.sh gives Miri 4).
#[test]
fn one_call_bitwise_for_threads_1_2_3() {
    let t = 3;
    let n = parallel::MIN_WORK + 11;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    assert_eq!(parallel::workers(2, t * n), 2.min(cores));
    assert_eq!(parallel::workers(3, t * n), 3.min(cores));
    let data = grads(t, n, 4);
    let layout = Layout::dense(t, n).unwrap();
    let flat = Flat::new(layout, &data).unwrap();
    let mut ws = vec![0.0; pcgrad::workspace_len(t).unwrap()];
    let mut want: Option<(Vec<u32>, Vec<u32>)> = None;
    for threads in [1, 2, 3] {
        let mut pc = PcGrad::with_mode(Mode::Sequential(Order::Fixed)).threads(threads);
        let mut m = vec![0.0f32; n];
        pc.merge(&flat, &mut m, &mut ws).unwrap();
        let mut p = data.clone();
        let mut fm = FlatMut::new(layout, &mut p).unwrap();
        pc.project(&mut fm, None, &mut ws).unwrap();
        let got = (bits32(&m), bits32(&p));
        match &want {
            None => want = Some(got),
            Some(w) => assert_eq!(&got, w, "one call, {threads} threads"),
        }
    }
}
