//! Every error variant reachable from Rust, each with a real bad input, and
//! each checking that the call left the caller's output and gradient buffers
//! (and PRNG) exactly as they were. (`NullPointer`, `Overlap` and
//! `InvalidEnum` can only come from the C API.)

use pcgrad::engine::{self, accumulate_gram, apply_merged, apply_projected, coefficients};
use pcgrad::{
    cosine_matrix, pack, unflatten, workspace_gram, workspace_len, Error, Flat, FlatMut, Layout,
    Mode, Order, PcGrad, PerVariable, PerVariableMut, PpcGrad, Reduction, Rng,
};

const T: usize = 3;
const N: usize = 10;

/// A sentinel that no computation produces.
const SENTINEL: f32 = -12345.678;

fn grads() -> Vec<f32> {
    (0..T * N)
        .map(|k| ((k * 7 % 11) as f32 - 5.0) * 0.25)
        .collect()
}

fn bits(xs: &[f32]) -> Vec<u32> {
    xs.iter().map(|x| x.to_bits()).collect()
}

fn ws() -> Vec<f64> {
    vec![0.0; workspace_len(T).unwrap()]
}

/// Runs a one-call `project` that must fail with `want`, and checks that the
/// gradients and the merged buffer are untouched.
fn project_fails(
    want: Error,
    g: &mut [f32],
    layout: Layout<'_>,
    pc: &mut PcGrad<'_>,
    work: &mut [f64],
) {
    let before = bits(g);
    let mut merged = vec![SENTINEL; layout.dim()];
    let r = pc.project(
        &mut FlatMut::new(layout, g).unwrap(),
        Some(&mut merged),
        work,
    );
    assert_eq!(r, Err(want));
    assert_eq!(bits(g), before, "gradients written by a failed project");
    assert!(merged.iter().all(|&x| x.to_bits() == SENTINEL.to_bits()));
}

/// Runs a one-call `merge` that must fail with `want`, and checks the merged
/// buffer is untouched.
fn merge_fails(want: Error, g: &[f32], layout: Layout<'_>, pc: &mut PcGrad<'_>, work: &mut [f64]) {
    let mut merged = vec![SENTINEL; layout.dim()];
    let r = pc.merge(&Flat::new(layout, g).unwrap(), &mut merged, work);
    assert_eq!(r, Err(want));
    assert!(merged.iter().all(|&x| x.to_bits() == SENTINEL.to_bits()));
}

#[test]
fn codes_are_stable_distinct_and_described() {
    let all = [
        (Error::NullPointer, -1),
        (Error::NoTasks, -2),
        (Error::LengthMismatch, -3),
        (Error::Overflow, -4),
        (Error::WorkspaceTooSmall, -5),
        (Error::NonFinite, -6),
        (Error::Overlap, -7),
        (Error::InvalidEnum, -8),
        (Error::InvalidOrder, -9),
        (Error::InvalidRange, -10),
    ];
    for (i, (e, code)) in all.iter().enumerate() {
        assert_eq!(e.code(), *code, "{e:?}");
        assert!(!e.as_str().is_empty());
        assert_eq!(e.to_string(), e.as_str());
        for (f, _) in &all[i + 1..] {
            assert_ne!(e.as_str(), f.as_str());
        }
    }
    // `impl std::error::Error` comes with the `std` feature.
    #[cfg(feature = "std")]
    {
        let boxed: Box<dyn std::error::Error> = Box::new(Error::NoTasks);
        assert_eq!(boxed.to_string(), Error::NoTasks.as_str());
    }
}

#[test]
fn no_tasks() {
    assert_eq!(Layout::dense(0, 5).unwrap_err(), Error::NoTasks);
    assert_eq!(Layout::new(0, 0, &[], &[]).unwrap_err(), Error::NoTasks);
    assert_eq!(workspace_len(0), Err(Error::NoTasks));

    let data = [1.0f32; 4];
    let vars = [Some(&data[..])];
    let mut mask = [true];
    assert_eq!(
        PerVariable::new(0, &[4], &vars, &mut mask).unwrap_err(),
        Error::NoTasks
    );
    assert_eq!(mask, [true], "mask written by a failed constructor");
    let mut buf = [1.0f32; 4];
    let mut vars_mut = [Some(&mut buf[..])];
    let mut mask = [true];
    assert_eq!(
        PerVariableMut::new(0, &[4], &mut vars_mut, &mut mask).unwrap_err(),
        Error::NoTasks
    );

    let mut out = [SENTINEL; 4];
    let mut has = [true];
    assert_eq!(
        pack(0, &[4], &vars, &mut out, &mut has),
        Err(Error::NoTasks)
    );
    assert_eq!(bits(&out), bits(&[SENTINEL; 4]));
    assert_eq!(has, [true]);

    let gram = [1.0f64; 4];
    let mut cws = [7.0f64; 16];
    let mut mode = Mode::Simultaneous;
    assert_eq!(
        coefficients(&gram, 0, &mut mode, &mut cws).unwrap_err(),
        Error::NoTasks
    );
    assert_eq!(
        engine::Coefficients::from_workspace(0, &cws).unwrap_err(),
        Error::NoTasks
    );
}

#[test]
fn length_mismatch() {
    let g = grads();
    let layout = Layout::dense(T, N).unwrap();

    // Gradient buffers that are not T x N.
    assert_eq!(
        Flat::new(layout, &g[..T * N - 1]).unwrap_err(),
        Error::LengthMismatch
    );
    let mut longer = g.clone();
    longer.push(1.0);
    let before = bits(&longer);
    assert_eq!(
        FlatMut::new(layout, &mut longer).unwrap_err(),
        Error::LengthMismatch
    );
    assert_eq!(bits(&longer), before);

    // Segments that do not sum to N; a mask of the wrong size.
    assert_eq!(
        Layout::new(T, N, &[4, 5], &[]).unwrap_err(),
        Error::LengthMismatch
    );
    assert_eq!(
        Layout::new(T, N, &[4, 6], &[true; 5]).unwrap_err(),
        Error::LengthMismatch
    );
    assert_eq!(
        Layout::new(T, N, &[], &[true; 2]).unwrap_err(),
        Error::LengthMismatch
    );

    // A merged buffer of the wrong length: merge and project.
    let mut work = ws();
    let mut merged = vec![SENTINEL; N + 1];
    let r = PpcGrad::new().merge(&Flat::new(layout, &g).unwrap(), &mut merged, &mut work);
    assert_eq!(r, Err(Error::LengthMismatch));
    assert!(merged.iter().all(|&x| x.to_bits() == SENTINEL.to_bits()));
    let mut g2 = g.clone();
    let mut merged = vec![SENTINEL; N - 1];
    let r = PpcGrad::new().project(
        &mut FlatMut::new(layout, &mut g2).unwrap(),
        Some(&mut merged),
        &mut work,
    );
    assert_eq!(r, Err(Error::LengthMismatch));
    assert_eq!(bits(&g2), bits(&g));
    assert!(merged.iter().all(|&x| x.to_bits() == SENTINEL.to_bits()));

    // An explicit order table of the wrong length.
    let table = [1u32, 2, 0, 2, 0];
    let mut g2 = g.clone();
    let mut pc = PcGrad::with_mode(Mode::Sequential(Order::Explicit(&table)));
    project_fails(Error::LengthMismatch, &mut g2, layout, &mut pc, &mut work);
    merge_fails(Error::LengthMismatch, &g, layout, &mut pc, &mut work);

    // Per-variable: a buffer of the wrong length, vars and mask of
    // different lengths, vars not T x S.
    let a = [1.0f32; 4];
    let b = [1.0f32; 5];
    let vars = [Some(&a[..]), Some(&b[..]), Some(&a[..]), Some(&a[..])];
    let mut mask = [false; 4];
    assert_eq!(
        PerVariable::new(2, &[4, 4], &vars, &mut mask).unwrap_err(),
        Error::LengthMismatch
    );
    let mut mask3 = [false; 3];
    assert_eq!(
        PerVariable::new(2, &[4, 4], &vars, &mut mask3).unwrap_err(),
        Error::LengthMismatch
    );
    assert_eq!(mask3, [false; 3]);
    assert_eq!(
        PerVariable::new(3, &[4, 4], &vars, &mut mask).unwrap_err(),
        Error::LengthMismatch
    );

    // pack: wrong output length, wrong mask length, a wrong-length var.
    let vars = [Some(&a[..]), None];
    let mut out = vec![SENTINEL; 7];
    let mut has = [true, true];
    assert_eq!(
        pack(1, &[4, 4], &vars, &mut out, &mut has),
        Err(Error::LengthMismatch)
    );
    let mut out = vec![SENTINEL; 8];
    let mut has3 = [true; 3];
    assert_eq!(
        pack(1, &[4, 4], &vars, &mut out, &mut has3),
        Err(Error::LengthMismatch)
    );
    let vars_bad = [Some(&b[..]), None];
    assert_eq!(
        pack(1, &[4, 4], &vars_bad, &mut out, &mut has),
        Err(Error::LengthMismatch)
    );
    assert!(out.iter().all(|&x| x.to_bits() == SENTINEL.to_bits()));
    assert_eq!(has, [true, true]);

    // unflatten: wrong flat length, wrong output lengths, wrong count.
    let flat = [1.0f32; 8];
    let mut o1 = [SENTINEL; 4];
    let mut o2 = [SENTINEL; 4];
    let mut o3 = [SENTINEL; 3];
    {
        let mut outs: [&mut [f32]; 2] = [&mut o1, &mut o2];
        assert_eq!(
            unflatten(&[4, 4], &flat[..7], &mut outs),
            Err(Error::LengthMismatch)
        );
        assert_eq!(
            unflatten(&[4, 4, 0], &flat, &mut outs),
            Err(Error::LengthMismatch)
        );
    }
    {
        let mut outs: [&mut [f32]; 2] = [&mut o1, &mut o3];
        assert_eq!(
            unflatten(&[4, 4], &flat, &mut outs),
            Err(Error::LengthMismatch)
        );
    }
    for o in [&o1[..], &o2[..], &o3[..]] {
        assert!(o.iter().all(|&x| x.to_bits() == SENTINEL.to_bits()));
    }

    // cosine_matrix: output too short; coefficients: Gram too short.
    let gram = [1.0f64; 9];
    let mut cos = [5.0f64; 8];
    assert_eq!(
        cosine_matrix(&gram, 3, &mut cos),
        Err(Error::LengthMismatch)
    );
    assert_eq!(cos, [5.0; 8]);
    let mut cws = [0.0f64; 32];
    assert_eq!(
        coefficients(&gram[..8], 3, &mut Mode::Simultaneous, &mut cws).unwrap_err(),
        Error::LengthMismatch
    );

    // Phase 3 with a merged slice of the wrong length, or coefficients for
    // a different T.
    let flat = Flat::new(layout, &g).unwrap();
    let mut cws = vec![0.0; engine::coefficients_len(T).unwrap()];
    let gram = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let (coef, _) = coefficients(&gram, T, &mut Mode::Simultaneous, &mut cws).unwrap();
    let mut tile = vec![0.0; engine::tile_len(T).unwrap()];
    let mut merged = vec![SENTINEL; 4];
    assert_eq!(
        apply_merged(&flat, &coef, Reduction::Mean, 0, 5, &mut merged, &mut tile),
        Err(Error::LengthMismatch)
    );
    assert!(merged.iter().all(|&x| x.to_bits() == SENTINEL.to_bits()));
    let mut cws2 = vec![0.0; engine::coefficients_len(2).unwrap()];
    let gram2 = [1.0, 0.0, 0.0, 1.0];
    let (coef2, _) = coefficients(&gram2, 2, &mut Mode::Simultaneous, &mut cws2).unwrap();
    let mut g2 = g.clone();
    let mut merged = vec![SENTINEL; N];
    let mut fm = FlatMut::new(layout, &mut g2).unwrap();
    assert_eq!(
        apply_projected(
            &mut fm,
            &coef2,
            Reduction::Mean,
            0,
            N,
            Some(&mut merged),
            &mut tile
        ),
        Err(Error::LengthMismatch)
    );
    assert_eq!(bits(&g2), bits(&g));
    assert!(merged.iter().all(|&x| x.to_bits() == SENTINEL.to_bits()));
}

#[test]
fn overflow() {
    // T * N overflows usize.
    assert_eq!(
        Layout::dense(3, usize::MAX / 2).unwrap_err(),
        Error::Overflow
    );
    assert_eq!(
        Layout::dense(1 << 33, 1 << 31).unwrap_err(),
        Error::Overflow
    );
    // T * T overflows.
    assert_eq!(Layout::dense(1 << 33, 0).unwrap_err(), Error::Overflow);
    assert_eq!(workspace_len(1 << 33), Err(Error::Overflow));
    assert_eq!(workspace_len(usize::MAX), Err(Error::Overflow));
    // Segment lengths whose sum overflows.
    assert_eq!(
        Layout::new(1, 5, &[usize::MAX, 6], &[]).unwrap_err(),
        Error::Overflow
    );
    // Per-variable: segments that overflow N (and nothing is read).
    let vars: [Option<&[f32]>; 2] = [None, None];
    let mut mask = [true; 2];
    assert_eq!(
        PerVariable::new(1, &[usize::MAX, 2], &vars, &mut mask).unwrap_err(),
        Error::Overflow
    );
    let mut out: [f32; 0] = [];
    let mut has = [true; 2];
    assert_eq!(
        pack(1, &[usize::MAX, 2], &vars, &mut out, &mut has),
        Err(Error::Overflow)
    );
    assert_eq!(has, [true; 2]);
    // Diagnostics with an absurd T.
    assert_eq!(workspace_gram(&[0.0; 4], 1 << 33), Err(Error::Overflow));
    let mut cos = [3.0f64; 4];
    assert_eq!(
        cosine_matrix(&[0.0; 4], 1 << 33, &mut cos),
        Err(Error::Overflow)
    );
    assert_eq!(cos, [3.0; 4]);
    assert_eq!(engine::gram_workspace_len(1 << 32), Err(Error::Overflow));
    assert_eq!(engine::coefficients_len(1 << 32), Err(Error::Overflow));
    assert_eq!(engine::tile_len(usize::MAX), Err(Error::Overflow));
    let mut cws = [0.0f64; 4];
    assert_eq!(
        coefficients(&[0.0; 4], 1 << 33, &mut Mode::Simultaneous, &mut cws).unwrap_err(),
        Error::Overflow
    );
}

#[test]
fn workspace_too_small() {
    let g = grads();
    let layout = Layout::dense(T, N).unwrap();
    let need = workspace_len(T).unwrap();
    let mut work = vec![0.0; need - 1];
    let mut rng = Rng::new(5);
    let saved = rng;
    {
        let mut pc = PcGrad::new(&mut rng);
        merge_fails(Error::WorkspaceTooSmall, &g, layout, &mut pc, &mut work);
        let mut g2 = g.clone();
        project_fails(
            Error::WorkspaceTooSmall,
            &mut g2,
            layout,
            &mut pc,
            &mut work,
        );
    }
    assert_eq!(rng, saved, "a failed call advanced the rng");
    let mut empty: [f64; 0] = [];
    merge_fails(
        Error::WorkspaceTooSmall,
        &g,
        layout,
        &mut PpcGrad::new(),
        &mut empty,
    );

    // The phases.
    let flat = Flat::new(layout, &g).unwrap();
    let mut gram = vec![0.0; engine::gram_workspace_len(T).unwrap() - 1];
    assert_eq!(
        accumulate_gram(&flat, 0, N, &mut gram),
        Err(Error::WorkspaceTooSmall)
    );
    assert!(gram.iter().all(|&x| x == 0.0));
    let full_gram = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let mut cws = vec![0.0; engine::coefficients_len(T).unwrap() - 1];
    assert_eq!(
        coefficients(&full_gram, T, &mut Mode::Simultaneous, &mut cws).unwrap_err(),
        Error::WorkspaceTooSmall
    );
    assert_eq!(
        engine::Coefficients::from_workspace(T, &cws).unwrap_err(),
        Error::WorkspaceTooSmall
    );
    let mut cws = vec![0.0; engine::coefficients_len(T).unwrap()];
    let (coef, _) = coefficients(&full_gram, T, &mut Mode::Simultaneous, &mut cws).unwrap();
    let mut tile = vec![0.0; engine::tile_len(T).unwrap() - 1];
    let mut merged = vec![SENTINEL; N];
    assert_eq!(
        apply_merged(&flat, &coef, Reduction::Mean, 0, N, &mut merged, &mut tile),
        Err(Error::WorkspaceTooSmall)
    );
    assert!(merged.iter().all(|&x| x.to_bits() == SENTINEL.to_bits()));
    let mut g2 = g.clone();
    let mut fm = FlatMut::new(layout, &mut g2).unwrap();
    assert_eq!(
        apply_projected(&mut fm, &coef, Reduction::Mean, 0, N, None, &mut tile),
        Err(Error::WorkspaceTooSmall)
    );
    assert_eq!(bits(&g2), bits(&g));
    assert_eq!(workspace_gram(&[0.0; 8], T), Err(Error::WorkspaceTooSmall));
}

#[test]
fn non_finite_input_with_check_finite() {
    let layout = Layout::dense(T, N).unwrap();
    let mut work = ws();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for pos in [0, N + 3, T * N - 1] {
            let mut g = grads();
            g[pos] = bad;
            let mut rng = Rng::new(1);
            let saved = rng;
            {
                let mut pc = PcGrad::new(&mut rng).check_finite(true);
                merge_fails(Error::NonFinite, &g, layout, &mut pc, &mut work);
                project_fails(Error::NonFinite, &mut g, layout, &mut pc, &mut work);
            }
            assert_eq!(rng, saved, "a refused call advanced the rng");
            let mut pc = PpcGrad::new().check_finite(true);
            merge_fails(Error::NonFinite, &g, layout, &mut pc, &mut work);
            // f64 gradients too.
            let g64: Vec<f64> = g.iter().map(|&x| f64::from(x)).collect();
            let mut merged = vec![-1.0f64; N];
            let r = PpcGrad::new().check_finite(true).merge(
                &Flat::new(layout, &g64).unwrap(),
                &mut merged,
                &mut work,
            );
            assert_eq!(r, Err(Error::NonFinite));
            assert!(merged.iter().all(|&x| x == -1.0));
        }
    }
    // A NaN where the task has no gradient is never read: not an error.
    let segments = [4, 6];
    let has_grad = [true, false, true, true, true, true];
    let layout = Layout::new(T, N, &segments, &has_grad).unwrap();
    let mut g = grads();
    g[5] = f32::NAN;
    let mut merged = vec![0.0f32; N];
    PpcGrad::new()
        .check_finite(true)
        .merge(&Flat::new(layout, &g).unwrap(), &mut merged, &mut work)
        .unwrap();
    assert!(merged.iter().all(|x| x.is_finite()));
}

#[test]
fn invalid_explicit_orders() {
    let g = grads();
    let layout = Layout::dense(T, N).unwrap();
    let mut work = ws();
    let bad_tables: [[u32; 6]; 3] = [
        [1, 2, 0, 2, 0, 0], // a repeat in row 2
        [0, 2, 0, 2, 0, 1], // row 0 visits itself
        [1, 3, 0, 2, 0, 1], // out of range
    ];
    for (k, table) in bad_tables.iter().enumerate() {
        let mut pc = PcGrad::with_mode(Mode::Sequential(Order::Explicit(table)));
        merge_fails(Error::InvalidOrder, &g, layout, &mut pc, &mut work);
        let mut g2 = g.clone();
        project_fails(Error::InvalidOrder, &mut g2, layout, &mut pc, &mut work);
        // The coefficients phase checks too.
        let gram = [1.0, -0.5, 0.0, -0.5, 1.0, 0.0, 0.0, 0.0, 1.0];
        let mut cws = vec![9.0; engine::coefficients_len(T).unwrap()];
        let r = coefficients(
            &gram,
            T,
            &mut Mode::Sequential(Order::Explicit(table)),
            &mut cws,
        );
        assert_eq!(r.unwrap_err(), Error::InvalidOrder, "table {k}");
    }
    // A valid table passes.
    let ok = [1u32, 2, 0, 2, 1, 0];
    let mut merged = vec![0.0f32; N];
    PcGrad::with_mode(Mode::Sequential(Order::Explicit(&ok)))
        .merge(&Flat::new(layout, &g).unwrap(), &mut merged, &mut work)
        .unwrap();
    // u32::MAX as a task index.
    let table = [1, u32::MAX, 0, 2, 0, 1];
    let mut pc = PcGrad::with_mode(Mode::Sequential(Order::Explicit(&table)));
    merge_fails(Error::InvalidOrder, &g, layout, &mut pc, &mut work);
}

#[test]
fn invalid_ranges() {
    let g = grads();
    let layout = Layout::dense(T, N).unwrap();
    let flat = Flat::new(layout, &g).unwrap();
    let mut gram = vec![0.0; engine::gram_workspace_len(T).unwrap()];
    for (lo, hi) in [(5, 4), (0, N + 1), (N + 1, N + 1), (usize::MAX, 0)] {
        assert_eq!(
            accumulate_gram(&flat, lo, hi, &mut gram),
            Err(Error::InvalidRange),
            "{lo}..{hi}"
        );
        assert!(gram.iter().all(|&x| x == 0.0));
    }
    let full_gram = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let mut cws = vec![0.0; engine::coefficients_len(T).unwrap()];
    let (coef, _) = coefficients(&full_gram, T, &mut Mode::Simultaneous, &mut cws).unwrap();
    let mut tile = vec![0.0; engine::tile_len(T).unwrap()];
    for (lo, hi) in [(5usize, 4usize), (3, N + 1)] {
        let mut merged = vec![SENTINEL; hi.saturating_sub(lo)];
        assert_eq!(
            apply_merged(&flat, &coef, Reduction::Sum, lo, hi, &mut merged, &mut tile),
            Err(Error::InvalidRange)
        );
        assert!(merged.iter().all(|&x| x.to_bits() == SENTINEL.to_bits()));
        let mut g2 = g.clone();
        let mut fm = FlatMut::new(layout, &mut g2).unwrap();
        assert_eq!(
            apply_projected(
                &mut fm,
                &coef,
                Reduction::Sum,
                lo,
                hi,
                Some(&mut merged),
                &mut tile
            ),
            Err(Error::InvalidRange)
        );
        assert_eq!(bits(&g2), bits(&g));
        assert!(merged.iter().all(|&x| x.to_bits() == SENTINEL.to_bits()));
    }
}

#[test]
fn per_variable_mask_untouched_on_error() {
    // The constructors fill `mask` from the buffers; a refused call must not
    // have written it.
    let a = [1.0f32; 4];
    let b = [1.0f32; 3];
    let vars = [Some(&a[..]), None, Some(&b[..]), None];
    let mut mask = [true, true, false, true];
    assert_eq!(
        PerVariable::new(2, &[4, 4], &vars, &mut mask).unwrap_err(),
        Error::LengthMismatch
    );
    assert_eq!(mask, [true, true, false, true]);
    let mut a2 = [1.0f32; 4];
    let mut b2 = [1.0f32; 3];
    let mut vars_mut = [Some(&mut a2[..]), None, Some(&mut b2[..]), None];
    let mut mask = [false, true, false, true];
    assert_eq!(
        PerVariableMut::new(2, &[4, 4], &mut vars_mut, &mut mask).unwrap_err(),
        Error::LengthMismatch
    );
    assert_eq!(mask, [false, true, false, true]);
    let mut mask = [false, false, true, true];
    assert_eq!(
        PerVariable::new(1, &[usize::MAX, 2, 3, 4], &vars, &mut mask).unwrap_err(),
        Error::Overflow
    );
    assert_eq!(mask, [false, false, true, true]);
}
