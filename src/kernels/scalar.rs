//! Scalar twins: the same blocking and accumulation precision as the SIMD
//! kernels, one lane wide.

/// Columns per inner `f32` run of the scalar Gram tile.
const RUN: usize = 32;

/// `out[r][c] += sum_k a[r][k] * b[c][k]`: `f32` accumulation in runs of
/// 32 columns (what one SIMD lane sees in a 256-column block), the runs
/// summed in `f32`, one `f64` add per pair at the end. On a diagonal
/// tile, false when a row is out of range ([`fast_range_f32`]). Not
/// inlined into the block loop (code size on small targets).
#[inline(never)]
pub fn gram_tile_f32(
    a: [&[f32]; 4],
    b: [&[f32]; 4],
    shape: super::Tile,
    len: usize,
    out: &mut [[f64; 4]; 4],
) -> bool {
    if shape.diagonal
        && !a[..shape.rows.clamp(1, 4)]
            .iter()
            .all(|r| fast_range_f32(&r[..len]))
    {
        return false;
    }
    let a = a.map(|r| &r[..len]);
    let b = b.map(|r| &r[..len]);
    let mut total = [[0.0f32; 4]; 4];
    let mut k0 = 0;
    while k0 < len {
        let k1 = len.min(k0 + RUN);
        let mut acc = [[0.0f32; 4]; 4];
        for k in k0..k1 {
            let va = [a[0][k], a[1][k], a[2][k], a[3][k]];
            let vb = [b[0][k], b[1][k], b[2][k], b[3][k]];
            for r in 0..4 {
                for c in 0..4 {
                    if shape.has(r, c) {
                        acc[r][c] = va[r].mul_add_fast(vb[c], acc[r][c]);
                    }
                }
            }
        }
        for r in 0..4 {
            for c in 0..4 {
                total[r][c] += acc[r][c];
            }
        }
        k0 = k1;
    }
    for r in 0..4 {
        for c in 0..4 {
            if shape.has(r, c) {
                out[r][c] += f64::from(total[r][c]);
            }
        }
    }
    true
}

/// One pair of [`gram_tile_f32`], on its own: `f32` products summed in
/// runs of 32 columns, the runs summed in `f32`, then widened (and added
/// to zero, as the tile adds into a zeroed block sum). Bitwise the
/// tile's entry for the pair: every pair accumulates independently, in
/// the same order. Not inlined (one copy on small targets).
#[inline(never)]
pub fn pair_f32(x: &[f32], y: &[f32]) -> f64 {
    let mut total = 0.0f32;
    for (xs, ys) in x.chunks(RUN).zip(y.chunks(RUN)) {
        let mut acc = 0.0f32;
        for (&p, &q) in xs.iter().zip(ys) {
            acc = p.mul_add_fast(q, acc);
        }
        total += acc;
    }
    0.0 + f64::from(total)
}

/// One pair of [`super::gram_tile_exact`]: products and sums in `f64`,
/// from zero, in column order. Not inlined (the rare fallback).
#[inline(never)]
pub fn pair_exact<F: super::Element>(x: &[F], y: &[F]) -> f64 {
    let mut s = 0.0;
    for (&p, &q) in x.iter().zip(y) {
        s += p.to_f64() * q.to_f64();
    }
    s
}

/// Whether a row block may use the `f32` Gram lanes: its largest |x| is
/// 0 or in [2^-50, 2^50] (false on NaN and infinities).
pub fn fast_range_f32(row: &[f32]) -> bool {
    let m = super::max_abs_f32(row);
    m == 0.0 || (super::FAST_MIN..=super::FAST_MAX).contains(&m)
}

/// [`super::sealed::Sealed::merge_rows`] one column at a time, for any
/// element type: the same `f64` arithmetic, in the same order, as the SIMD
/// form.
#[allow(clippy::too_many_arguments)]
pub fn merge_rows<F: super::Element>(
    out: &mut [F],
    acc: &mut [f64],
    rows: [&[F]; 4],
    coef: [f64; 4],
    n: usize,
    first: bool,
    last: Option<f64>,
) {
    let n = n.clamp(1, 4);
    let len = rows[..n].iter().fold(out.len(), |m, r| m.min(r.len()));
    let keep = !(first && last.is_some());
    let len = if keep { len.min(acc.len()) } else { len };
    for c in 0..len {
        let mut s = if first { 0.0 } else { acc[c] };
        for r in 0..n {
            s += rows[r][c].to_f64() * coef[r];
        }
        match last {
            Some(w) => out[c] = F::from_f64(s * w),
            None => acc[c] = s,
        }
    }
}

/// Multiply-add without a call to a software `fma`: two roundings.
trait MulAddFast {
    fn mul_add_fast(self, b: Self, c: Self) -> Self;
}
impl MulAddFast for f32 {
    #[inline(always)]
    fn mul_add_fast(self, b: f32, c: f32) -> f32 {
        self * b + c
    }
}
