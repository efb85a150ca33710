//! The direct-loop PCGrad, in the style of the TensorFlow and PyTorch ports:
//! for each task i and each other task j, one full dot-product pass over the
//! N coordinates and, on a conflict, one axpy pass. That is O(T^2) passes over
//! the T x N gradient matrix, against the library's two. All in `f32`, like
//! those ports; the dot product keeps eight independent partial sums (as a
//! BLAS `sdot` does) so the compiler can vectorise it.
//!
//! It is the baseline the benchmarks and the roofline example compare the
//! library with, and a second, independent implementation for the tests.
//! Self-contained: include it with
//! `#[path = "../tests/common/direct.rs"] mod direct;`.
//!
//! Semantics (docs/architecture.md section 1, no masks): sequential mode visits the other
//! tasks in ascending order (the `fixed` order) and takes each dot product
//! with the already projected gradient; simultaneous mode takes every dot
//! product with the original gradient. A zero g_j is never projected onto.
//! `mean` divides the merged sum by T, `sum` does not.

#![allow(dead_code)]

/// `a . b` in `f32` with eight partial sums.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        let x: &[f32; 8] = x.try_into().expect("chunk of 8");
        let y: &[f32; 8] = y.try_into().expect("chunk of 8");
        for ((s, &u), &v) in acc.iter_mut().zip(x).zip(y) {
            *s += u * v;
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `out += alpha * x`.
#[inline]
pub fn axpy_f32(out: &mut [f32], alpha: f32, x: &[f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o += alpha * v;
    }
}

/// Direct-loop PCGrad over a row-major T x N buffer `grads` (read only).
///
/// - `projected_scratch` (T x N values) receives the projected gradients
///   g'_i, row by row;
/// - `merged` (N values) receives the merged gradient.
///
/// No allocation. Panics if a buffer has the wrong length (this is a test
/// and benchmark helper, not library code). With `tasks == 0` it writes
/// zeros into `merged`.
///
/// Cost: for each ordered pair (i, j), one dot-product pass and, on a
/// conflict, a norm pass over g_j and an axpy pass (as the PyTorch port
/// does); then one copy and T passes for the merge.
pub fn direct_merge(
    grads: &[f32],
    tasks: usize,
    dim: usize,
    simultaneous: bool,
    mean: bool,
    projected_scratch: &mut [f32],
    merged: &mut [f32],
) {
    assert_eq!(grads.len(), tasks * dim, "grads must hold T x N values");
    assert_eq!(
        projected_scratch.len(),
        tasks * dim,
        "projected_scratch must hold T x N values"
    );
    assert_eq!(merged.len(), dim, "merged must hold N values");
    projected_scratch.copy_from_slice(grads);
    for i in 0..tasks {
        let gi = &grads[i * dim..(i + 1) * dim];
        for j in 0..tasks {
            if j == i {
                continue;
            }
            let gj = &grads[j * dim..(j + 1) * dim];
            let pi = &projected_scratch[i * dim..(i + 1) * dim];
            let d = if simultaneous {
                dot_f32(gi, gj)
            } else {
                dot_f32(pi, gj)
            };
            if d < 0.0 {
                let nj2 = dot_f32(gj, gj);
                if nj2 > 0.0 {
                    let pi = &mut projected_scratch[i * dim..(i + 1) * dim];
                    axpy_f32(pi, -d / nj2, gj);
                }
            }
        }
    }
    merged.fill(0.0);
    for i in 0..tasks {
        let pi = &projected_scratch[i * dim..(i + 1) * dim];
        for (m, &v) in merged.iter_mut().zip(pi) {
            *m += v;
        }
    }
    if mean && tasks > 0 {
        let w = 1.0 / tasks as f32;
        for m in merged.iter_mut() {
            *m *= w;
        }
    }
}
