//! Scalar twins: the same blocking and accumulation precision as the SIMD
//! kernels, one lane wide. The `f32` Gram sums are the SIMD lanes' sums,
//! computed one lane at a time: bitwise what the eight-lane kernels give
//! on the same block (when both take the `f32` lanes).

/// The SIMD kernels' lanes: column `k` of a block goes to lane `k % 8`.
const W: usize = 8;

/// The `f32` sums of lane `l` (columns `l, l + 8, ..` below `8 * (len /
/// 8)`) of the pairs of `shape`, products and sums in `f32`, from zero.
#[inline(always)]
fn lane(
    a: &[&[f32]; 4],
    b: &[&[f32]; 4],
    shape: super::Tile,
    len: usize,
    l: usize,
) -> [[f32; 4]; 4] {
    let mut acc = [[0.0f32; 4]; 4];
    let mut k = l;
    while k + W - l <= len {
        let va = [a[0][k], a[1][k], a[2][k], a[3][k]];
        let vb = [b[0][k], b[1][k], b[2][k], b[3][k]];
        for r in 0..4 {
            for c in 0..4 {
                if shape.has(r, c) {
                    acc[r][c] = va[r].mul_add_fast(vb[c], acc[r][c]);
                }
            }
        }
        k += W;
    }
    acc
}

/// `out[r][c] += sum_k a[r][k] * b[c][k]` with the SIMD kernels'
/// arithmetic: per lane an `f32` sum (see [`lane`]), the eight lanes
/// widened and summed in `f64` in the lanes' fixed pairwise order
/// (`(l0 + l4) + (l2 + l6)` plus `(l1 + l5) + (l3 + l7)`), then the
/// products of the tail columns past the last multiple of 8, each rounded
/// to `f32` and added in `f64`. On a diagonal tile, false when a row is
/// out of range ([`fast_range_f32`]). Not inlined into the block loop
/// (code size on small targets).
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
    // Two lanes at a time (l and l + 4), as the lane sum pairs them.
    let half = |l: usize| {
        let (x, y) = (lane(&a, &b, shape, len, l), lane(&a, &b, shape, len, l + 4));
        let mut h = [[0.0f64; 4]; 4];
        for r in 0..4 {
            for c in 0..4 {
                h[r][c] = f64::from(x[r][c]) + f64::from(y[r][c]);
            }
        }
        h
    };
    let (h0, h2) = (half(0), half(2));
    let (h1, h3) = (half(1), half(3));
    let from = len / W * W;
    for r in 0..4 {
        for c in 0..4 {
            if shape.has(r, c) {
                let mut s = (h0[r][c] + h2[r][c]) + (h1[r][c] + h3[r][c]);
                for k in from..len {
                    s += f64::from(a[r][k] * b[c][k]);
                }
                out[r][c] += s;
            }
        }
    }
    true
}

/// One pair of [`gram_tile_f32`], on its own: the same lane sums, lane
/// order and tail, then added to zero (as the tile adds into a zeroed
/// block sum). Bitwise the tile's entry for the pair: every pair
/// accumulates independently, in the same order. Not inlined (one copy on
/// small targets).
#[inline(never)]
pub fn pair_f32(x: &[f32], y: &[f32]) -> f64 {
    let len = x.len().min(y.len());
    let from = len / W * W;
    let mut acc = [0.0f32; W];
    for (xs, ys) in x[..from].chunks_exact(W).zip(y[..from].chunks_exact(W)) {
        for l in 0..W {
            acc[l] = xs[l].mul_add_fast(ys[l], acc[l]);
        }
    }
    let h: [f64; 4] = core::array::from_fn(|l| f64::from(acc[l]) + f64::from(acc[l + 4]));
    let mut s = (h[0] + h[2]) + (h[1] + h[3]);
    for k in from..len {
        s += f64::from(x[k] * y[k]);
    }
    0.0 + s
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

/// [`merge_rows`] with `f32` outputs: `out[c] = s * w` rounded once from
/// `f64` to `f32` (the scalar twin of `Sealed::merge_rows_f32`).
pub fn merge_rows_f32<F: super::Element>(
    out: &mut [f32],
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
            Some(w) => out[c] = (s * w) as f32,
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

#[cfg(test)]
mod tests {
    use super::super::{wide, Tile};
    use super::*;

    /// Values in [-0.5, 0.5) with 24 random bits (a fixed LCG).
    fn rows(seed: u32) -> [[f32; 300]; 8] {
        let mut out = [[0.0f32; 300]; 8];
        let mut s = seed;
        for r in out.iter_mut() {
            for x in r.iter_mut() {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *x = (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            }
        }
        out
    }

    /// The scalar tile is bitwise the eight-lane tile (on the portable
    /// SIMD backend) for every length up to past one block and every
    /// shape where the lanes take the block, and `pair_f32` bitwise each
    /// of its entries.
    #[test]
    fn scalar_tile_and_pair_are_bitwise_the_lanes() {
        let m = rows(7);
        let a = [&m[0][..], &m[1][..], &m[2][..], &m[3][..]];
        let b = [&m[4][..], &m[5][..], &m[6][..], &m[7][..]];
        for len in 0..=300usize {
            for rows in 1..=4usize {
                for cols in 1..=4usize {
                    for diagonal in [false, true] {
                        if diagonal && rows != cols {
                            continue;
                        }
                        let shape = Tile {
                            rows,
                            cols,
                            diagonal,
                        };
                        let bb = if diagonal { a } else { b };
                        let (mut x, mut y) = ([[0.0f64; 4]; 4], [[0.0f64; 4]; 4]);
                        // The lanes' own range check refuses a diagonal
                        // block with no full vector (its lanes sum to 0,
                        // its row does not); the block then takes the
                        // exact kernel in both builds.
                        let fits = wide::gram_tile(a, bb, shape, len, &mut x);
                        assert_eq!(fits, !diagonal || len == 0 || len >= W, "{len} {shape:?}");
                        assert!(gram_tile_f32(a, bb, shape, len, &mut y));
                        if !fits {
                            continue;
                        }
                        for r in 0..4 {
                            for c in 0..4 {
                                assert_eq!(
                                    x[r][c].to_bits(),
                                    y[r][c].to_bits(),
                                    "len {len} {shape:?} {r} {c}"
                                );
                                if shape.has(r, c) {
                                    let p = pair_f32(&a[r][..len], &bb[c][..len]);
                                    assert_eq!(p.to_bits(), y[r][c].to_bits(), "pair {len}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
