//! The three phases of the fast algorithm (docs/architecture.md, section 2), public so that
//! a caller can shard N across threads or machines:
//!
//! 1. [`accumulate_gram`]: one streaming read of the gradients over a
//!    coordinate range, adding that range's contribution to the T x T Gram
//!    matrix G = J J^T.
//! 2. [`coefficients`]: O(T^3) scalar work on G alone, giving the matrix A
//!    with g'_i = sum_j A_ij g_j, and its column sums b_j = sum_i A_ij.
//! 3. [`apply_merged`] / [`apply_projected`]: one more streaming read,
//!    writing `merged[n] = w(n) sum_j b_j g_j[n]` and, on request, the
//!    projected gradients in place.
//!
//! Sharding: each shard accumulates its own partial Gram (starting from
//! zeros), the partials are summed elementwise (an all-reduce of T*T
//! doubles), every shard computes the same coefficients from the same sum and
//! the same PRNG state, and applies them to its own range.

use crate::error::{Error, Result};
use crate::kernels::{Element, Kernels, Tile, BLOCK, SIMD};
use crate::layout::{Gradients, GradientsMut, Layout, Pieces, SegPos, Segment};
use crate::rng::Rng;

/// Columns per partial Gram. Partial Grams of the aligned chunks
/// `[k * CHUNK, (k + 1) * CHUNK)` are summed in increasing k, so the Gram is
/// bitwise the same however the chunks are shared among threads (and
/// however a range is split, when the split points are multiples of CHUNK).
pub const CHUNK: usize = 8192;

/// Groups of four rows that may take the `f32` lanes in the Gram pass;
/// later groups (more than 1024 tasks) always take the exact kernel. One
/// constant for both forms of the pass, which must agree bitwise.
const GROUPS: usize = 256;

/// Columns per tile of the `f64` apply path.
pub const TILE_W: usize = 32;

/// Doubles of the projected apply's stack tile with `std` and SIMD (16 KiB,
/// half of a common L1): `WIDE_TILE / (T + 1)` columns, rounded down to a
/// multiple of [`TILE_W`], when that is more than [`TILE_W`].
#[cfg(feature = "std")]
const WIDE_TILE: usize = 2048;

/// How the merged gradient reduces over tasks.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Reduction {
    /// Mean over tasks on shared coordinates, sum on task-specific ones (the
    /// seed's default).
    #[default]
    Mean = 0,
    /// Sum over tasks everywhere.
    Sum = 1,
}

/// The order in which sequential PCGrad visits the other tasks.
#[derive(Debug)]
pub enum Order<'a> {
    /// Ascending task index (the official TensorFlow code, whose shuffle is a
    /// no-op).
    Fixed,
    /// A fresh uniform permutation per task per call, drawn from the caller's
    /// PRNG, which advances (the paper's random order).
    Shuffled(&'a mut Rng),
    /// A caller table of T rows of T - 1 entries: row i lists the tasks
    /// j != i in visiting order (to reproduce another framework's draw).
    Explicit(&'a [u32]),
}

/// Sequential (the paper's Algorithm 1) or simultaneous (the seed's `PCGrad`
/// and `PPCGrad` classes) projection.
#[derive(Debug)]
pub enum Mode<'a> {
    /// For each task i, project the running p (starting at g_i) onto the
    /// normal plane of each original g_j it conflicts with, in the given
    /// order; dot products use the already projected p.
    Sequential(Order<'a>),
    /// g'_i = g_i - sum over j != i with g_i . g_j < 0 of
    /// (g_i . g_j / |g_j|^2) g_j: every dot product uses the original g_i.
    Simultaneous,
}

/// Counts that come for free with the coefficients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Unordered pairs i < j with g_i . g_j < 0.
    pub conflicting_pairs: usize,
    /// Projections applied (at most T * (T - 1)).
    pub projections: usize,
}

/// Doubles needed by [`accumulate_gram`]: T*T for the Gram matrix and T*T
/// for a per-chunk partial.
pub fn gram_workspace_len(tasks: usize) -> Result<usize> {
    tasks
        .checked_mul(tasks)
        .and_then(|x| x.checked_mul(2))
        .ok_or(Error::Overflow)
}

/// Doubles needed by [`coefficients`]: T*T for A, T for b, T for the order
/// scratch.
pub fn coefficients_len(tasks: usize) -> Result<usize> {
    tasks
        .checked_mul(tasks)
        .and_then(|x| x.checked_add(tasks.checked_mul(2)?))
        .ok_or(Error::Overflow)
}

/// Doubles needed by the apply phase: a (T + 1) x TILE_W tile.
pub fn tile_len(tasks: usize) -> Result<usize> {
    tasks
        .checked_add(1)
        .and_then(|x| x.checked_mul(TILE_W))
        .ok_or(Error::Overflow)
}

fn check_range(layout: &Layout<'_>, lo: usize, hi: usize) -> Result<()> {
    if lo > hi || hi > layout.dim() {
        return Err(Error::InvalidRange);
    }
    Ok(())
}

/// Phase 1: adds the Gram contribution of coordinates `lo..hi` into
/// `gram[..T*T]` (row-major, symmetric; start from zeros). `gram` must hold
/// [`gram_workspace_len`] doubles; the second half is scratch.
///
/// On error nothing is written.
pub fn accumulate_gram<F: Element, G: Gradients<F>>(
    grads: &G,
    lo: usize,
    hi: usize,
    gram: &mut [f64],
) -> Result<()> {
    accumulate_gram_with(Kernels::best(), grads, lo, hi, gram)
}

/// [`accumulate_gram`] on the kernels `k`.
pub(crate) fn accumulate_gram_with<F: Element, G: Gradients<F>>(
    k: Kernels,
    grads: &G,
    lo: usize,
    hi: usize,
    gram: &mut [f64],
) -> Result<()> {
    let layout = *grads.layout();
    check_range(&layout, lo, hi)?;
    let t = layout.tasks();
    let tt = t * t;
    if gram.len() < gram_workspace_len(t)? {
        return Err(Error::WorkspaceTooSmall);
    }
    let (g, part) = gram.split_at_mut(tt);
    let part = &mut part[..tt];
    let (mut c0, mut pos) = (lo, SegPos::START);
    while c0 < hi {
        let c1 = hi.min((c0 / CHUNK + 1) * CHUNK);
        part.fill(0.0);
        pos = layout.seek(pos, c0);
        accumulate_chunk(k, grads, pos, c0, c1, part);
        add_upper(g, part, t);
        c0 = c1;
    }
    symmetrize(g, t);
    Ok(())
}

/// `g += part` on the upper triangle.
pub(crate) fn add_upper(g: &mut [f64], part: &[f64], t: usize) {
    for i in 0..t {
        let row = i * t;
        for j in i..t {
            g[row + j] += part[row + j];
        }
    }
}

/// Copies the upper triangle onto the lower.
pub(crate) fn symmetrize(g: &mut [f64], t: usize) {
    for i in 0..t {
        for j in i + 1..t {
            g[j * t + i] = g[i * t + j];
        }
    }
}

/// Adds the upper triangle of the Gram of `c0..c1` into `part`: in runs of
/// blocks with SIMD ([`accumulate_runs`]), one block and pair at a time
/// without ([`accumulate_pairs`], the small code and stack for Cortex-M).
/// Bitwise the same arithmetic either way, for the same kernels.
///
/// `pos` is a segment boundary at or before `c0` (the walk over the
/// segments starts there).
pub(crate) fn accumulate_chunk<F: Element, G: Gradients<F>>(
    k: Kernels,
    grads: &G,
    pos: SegPos,
    c0: usize,
    c1: usize,
    part: &mut [f64],
) {
    if SIMD {
        accumulate_runs(k, grads, pos, c0, c1, part)
    } else {
        accumulate_pairs(grads, pos, c0, c1, part)
    }
}

/// [`accumulate_chunk`] without SIMD: per block of [`BLOCK`] columns, the
/// fit of each group of four rows (those that [`accumulate_runs`] puts in
/// one tile), then every pair i <= j, `part[i][j] += `[`Element::pair_sum`]
/// on the `f32` lanes when both rows' groups fit. Per pair the same sums,
/// added in the same (block) order, as the tile kernels.
pub(crate) fn accumulate_pairs<F: Element, G: Gradients<F>>(
    grads: &G,
    pos: SegPos,
    c0: usize,
    c1: usize,
    part: &mut [f64],
) {
    let layout = *grads.layout();
    let t = layout.tasks();
    for seg in layout.pieces(pos, c0, c1) {
        let s = seg.index;
        for piece in seg.blocks(BLOCK) {
            // Bit g % 32 of word g / 32: a row of group g does not fit the
            // f32 lanes (row n of the segment is in group n / 4). 32-bit
            // words: no 64-bit shifts on 32-bit targets.
            let mut bad = [0u32; GROUPS / 32];
            let mut n = 0;
            for j in 0..t {
                if layout.has_grad(j, s) {
                    if let Some(b) = bad.get_mut(n / 128) {
                        if !F::block_fits(grads.values(j, &piece)) {
                            *b |= 1 << (n / 4 % 32);
                        }
                    }
                    n += 1;
                }
            }
            let fit = |n: usize| bad.get(n / 128).is_some_and(|b| b >> (n / 4 % 32) & 1 == 0);
            let mut n = 0;
            for i in 0..t {
                if !layout.has_grad(i, s) {
                    continue;
                }
                let x = grads.values(i, &piece);
                let mut m = n;
                for j in i..t {
                    if layout.has_grad(j, s) {
                        if let Some(p) = part.get_mut(i * t + j) {
                            *p += F::pair_sum(x, grads.values(j, &piece), fit(n) && fit(m));
                        }
                        m += 1;
                    }
                }
                n += 1;
            }
        }
    }
}

/// [`accumulate_chunk`] with SIMD.
///
/// Per segment piece, in runs of up to 32 blocks of [`BLOCK`] columns, one
/// kernel call per tile and run ([`Element::gram_run`]): first the diagonal
/// tiles (each group of four task rows with itself), whose kernel also
/// tells which blocks of the group's rows fit the `f32` lanes (those that
/// do not take the exact kernel), then the off-diagonal tiles, on the `f32`
/// lanes in the blocks where both groups fit. Every block adds the same
/// value into `part` as a kernel call per block would, in the same order.
fn accumulate_runs<F: Element, G: Gradients<F>>(
    k: Kernels,
    grads: &G,
    pos: SegPos,
    c0: usize,
    c1: usize,
    part: &mut [f64],
) {
    /// Bits of per-block fit flags kept for one run (every group's blocks).
    const BITS: usize = 512;
    let layout = *grads.layout();
    let t = layout.tasks();
    // One tile over a run: the pairs i <= j of `part` in, through the
    // kernel, and back out.
    let mut tile = |ia: &[usize; 4], ib: &[usize; 4], shape: Tile, run: &Segment, fast: u64| {
        let rows = |idx: &[usize; 4], n: usize| {
            [0, 1, 2, 3].map(|r| grads.values(idx[r.min(n.max(1) - 1)], run))
        };
        let mut out = [[0.0f64; 4]; 4];
        for (r, &i) in ia.iter().enumerate().take(shape.rows) {
            for (c, &j) in ib.iter().enumerate().take(shape.cols) {
                if i <= j {
                    out[r][c] = part[i * t + j];
                }
            }
        }
        let (ra, rb) = (rows(ia, shape.rows), rows(ib, shape.cols));
        let fits = F::gram_run(k, ra, rb, shape, run.len(), fast, &mut out);
        for (r, &i) in ia.iter().enumerate().take(shape.rows) {
            for (c, &j) in ib.iter().enumerate().take(shape.cols) {
                if i <= j {
                    part[i * t + j] = out[r][c];
                }
            }
        }
        fits
    };
    for seg in layout.pieces(pos, c0, c1) {
        let s = seg.index;
        let groups = (0..t)
            .filter(|&j| layout.has_grad(j, s))
            .count()
            .div_ceil(4);
        // Blocks per run: at most 32, and few enough that the flags of
        // every group fit in `BITS`.
        let mut per = 32;
        while per > 1 && per * groups.min(GROUPS) > BITS {
            per /= 2;
        }
        let mask = (1u64 << per) - 1;
        for run in seg.blocks(per * BLOCK) {
            // Bits g * per .. (g + 1) * per: the blocks where group g fits.
            let mut fits = [0u64; BITS / 64];
            let fit = |fits: &[u64; BITS / 64], g: usize| {
                if g < GROUPS {
                    (fits[g * per / 64] >> (g * per % 64)) & mask
                } else {
                    0
                }
            };
            let (mut ta, mut g) = (0, 0);
            loop {
                let (ia, na, next) = layout.group_of_four(s, ta);
                if na == 0 {
                    break;
                }
                let shape = Tile {
                    rows: na,
                    cols: na,
                    diagonal: true,
                };
                let fast = if g < GROUPS { mask } else { 0 };
                let ok = tile(&ia, &ia, shape, &run, fast) & mask;
                if g < GROUPS {
                    fits[g * per / 64] |= ok << (g * per % 64);
                }
                ta = next;
                g += 1;
            }
            let (mut ta, mut ga) = (0, 0);
            loop {
                let (ia, na, next_a) = layout.group_of_four(s, ta);
                if na == 0 {
                    break;
                }
                let (mut tb, mut gb) = (next_a, ga + 1);
                loop {
                    let (ib, nb, next_b) = layout.group_of_four(s, tb);
                    if nb == 0 {
                        break;
                    }
                    let shape = Tile {
                        rows: na,
                        cols: nb,
                        diagonal: false,
                    };
                    tile(&ia, &ib, shape, &run, fit(&fits, ga) & fit(&fits, gb));
                    tb = next_b;
                    gb += 1;
                }
                ta = next_a;
                ga += 1;
            }
        }
    }
}

/// The coefficients of phase 2: g'_i = sum_j a[i*T + j] g_j, and
/// b_j = sum_i a[i*T + j].
#[derive(Clone, Copy, Debug)]
pub struct Coefficients<'w> {
    tasks: usize,
    a: &'w [f64],
    b: &'w [f64],
}

impl<'w> Coefficients<'w> {
    /// The number of tasks T.
    pub fn tasks(&self) -> usize {
        self.tasks
    }
    /// The T x T matrix A, row-major.
    pub fn a(&self) -> &'w [f64] {
        self.a
    }
    /// The column sums b (T values).
    pub fn b(&self) -> &'w [f64] {
        self.b
    }
    /// Reattaches coefficients that a previous [`coefficients`] call wrote
    /// into `ws` (for callers that keep the workspace across phases).
    pub fn from_workspace(tasks: usize, ws: &'w [f64]) -> Result<Self> {
        if tasks == 0 {
            return Err(Error::NoTasks);
        }
        let tt = tasks.checked_mul(tasks).ok_or(Error::Overflow)?;
        if ws.len() < coefficients_len(tasks)? {
            return Err(Error::WorkspaceTooSmall);
        }
        let (a, rest) = ws.split_at_checked(tt).ok_or(Error::WorkspaceTooSmall)?;
        let b = rest.get(..tasks).ok_or(Error::WorkspaceTooSmall)?;
        Ok(Coefficients { tasks, a, b })
    }
}

/// Checks an explicit order table: T rows, each a permutation of the other
/// tasks.
pub(crate) fn check_order_table(table: &[u32], t: usize) -> Result<()> {
    let n = t.saturating_sub(1);
    let need = t.checked_mul(n).ok_or(Error::Overflow)?;
    if table.len() != need {
        return Err(Error::LengthMismatch);
    }
    if n == 0 {
        return Ok(());
    }
    // Entry k of row i: a task, not i, not earlier in the row.
    for (pos, &j) in table.iter().enumerate() {
        let (i, k) = (pos / n, pos % n);
        let earlier = table.get(pos - k..pos).unwrap_or(&[]);
        // A plain loop, not `contains`: its unrolled search is three times
        // the code, for rows of T - 1 entries.
        let repeated = earlier.iter().fold(false, |seen, &x| seen | (x == j));
        if j as usize >= t || j as usize == i || repeated {
            return Err(Error::InvalidOrder);
        }
    }
    Ok(())
}

/// `s[k]`, read without a panic path (every caller's index is in range).
fn at(s: &[f64], k: usize) -> f64 {
    s.get(k).copied().unwrap_or(0.0)
}

/// Phase 2: the coefficients from a full (symmetric) T x T Gram matrix.
/// `ws` must hold [`coefficients_len`] doubles; the result borrows it. A
/// shuffled order advances the caller's PRNG (only on success).
pub fn coefficients<'w>(
    gram: &[f64],
    tasks: usize,
    mode: &mut Mode<'_>,
    ws: &'w mut [f64],
) -> Result<(Coefficients<'w>, Stats)> {
    if tasks == 0 {
        return Err(Error::NoTasks);
    }
    let t = tasks;
    let tt = t.checked_mul(t).ok_or(Error::Overflow)?;
    let g = gram.get(..tt).ok_or(Error::LengthMismatch)?;
    if ws.len() < coefficients_len(t)? {
        return Err(Error::WorkspaceTooSmall);
    }
    if let Mode::Sequential(Order::Explicit(table)) = mode {
        check_order_table(table, t)?;
    }
    // Slicing through `get` (the lengths were checked above) keeps panic
    // paths, and their code, out of this function.
    let (a, rest) = ws
        .split_at_mut_checked(tt)
        .ok_or(Error::WorkspaceTooSmall)?;
    let (b, rest) = rest
        .split_at_mut_checked(t)
        .ok_or(Error::WorkspaceTooSmall)?;
    // The visiting order of one task: the T - 1 others.
    let n = t - 1;
    let perm = rest.get_mut(..n).ok_or(Error::WorkspaceTooSmall)?;
    let mut stats = Stats::default();
    // Simultaneous projection is the sequential loop in ascending order with
    // every dot product taken with the original g_i: d = G_ij, and
    // 0 - d / G_jj equals -G_ij / G_jj bitwise (d < 0 < G_jj).
    let simultaneous = matches!(mode, Mode::Simultaneous);
    for (i, row) in a.chunks_exact_mut(t).enumerate() {
        // Row i of A starts as e_i; the loop below reads only this row.
        for (k, x) in row.iter_mut().enumerate() {
            *x = if k == i { 1.0 } else { 0.0 };
        }
        // The visiting order of task i, as task indices in `perm`, each
        // stored as the bit pattern of an f64 (the workspace is f64 scratch;
        // bit moves need no soft-float conversion on FPU-less targets).
        for (k, p) in perm.iter_mut().enumerate() {
            let j = match mode {
                Mode::Sequential(Order::Explicit(table)) => {
                    table.get(i * n + k).map_or(0, |&j| j as usize)
                }
                _ => k + usize::from(k >= i),
            };
            *p = f64::from_bits(j as u64);
        }
        if let Mode::Sequential(Order::Shuffled(rng)) = mode {
            // Fisher-Yates over the T - 1 others (`below(k + 1)` is at most
            // k, so the `min` changes nothing).
            for k in (1..n).rev() {
                let r = rng.below(k as u32 + 1) as usize;
                if let Some(head) = perm.get_mut(..=k) {
                    head.swap(k, r.min(k));
                }
            }
        }
        for &pj in perm.iter() {
            let j = pj.to_bits() as usize;
            let gij = at(g, i * t + j);
            // Every pair i < j is visited once, from task i.
            if j > i && gij < 0.0 {
                stats.conflicting_pairs += 1;
            }
            let d = if simultaneous {
                gij
            } else {
                let mut d = 0.0;
                for (k, &aik) in row.iter().enumerate() {
                    if aik != 0.0 {
                        d += aik * at(g, k * t + j);
                    }
                }
                d
            };
            let gjj = at(g, j * (t + 1));
            if d < 0.0 && gjj > 0.0 {
                if let Some(aij) = row.get_mut(j) {
                    *aij -= d / gjj;
                }
                stats.projections += 1;
            }
        }
    }
    for (j, bj) in b.iter_mut().enumerate() {
        *bj = (0..t).map(|i| at(a, i * t + j)).sum();
    }
    Ok((Coefficients { tasks: t, a, b }, stats))
}

/// The merge weight of a segment.
fn weight(layout: &Layout<'_>, s: usize, reduction: Reduction) -> f64 {
    if reduction == Reduction::Mean && layout.is_shared(s) {
        1.0 / layout.tasks() as f64
    } else {
        1.0
    }
}

fn check_apply(layout: &Layout<'_>, coef: &Coefficients<'_>, lo: usize, hi: usize) -> Result<()> {
    check_range(layout, lo, hi)?;
    if coef.tasks != layout.tasks() {
        return Err(Error::LengthMismatch);
    }
    Ok(())
}

/// Phase 3, merged only: `merged[n - lo] = w(n) sum_j b_j g_j[n]` for n in
/// `lo..hi`, summed in `f64` (in order of j, over the tasks with a
/// gradient there and b_j != 0) and rounded once: bitwise the merged output
/// of [`apply_projected`], and free of overflow that the exact result does
/// not have. `merged` must hold `hi - lo` values; `tile` must hold
/// [`tile_len`] doubles (scratch for the sums when more than four tasks
/// take part).
pub fn apply_merged<F: Element, G: Gradients<F>>(
    grads: &G,
    coef: &Coefficients<'_>,
    reduction: Reduction,
    lo: usize,
    hi: usize,
    merged: &mut [F],
    tile: &mut [f64],
) -> Result<()> {
    apply_merged_with(
        Kernels::best(),
        grads,
        coef,
        reduction,
        SegPos::START,
        lo,
        hi,
        merged,
        tile,
    )
}

/// [`apply_merged`] on the kernels `k`.
#[allow(clippy::too_many_arguments)]
///
/// `from` is a segment boundary at or before `lo` (where the walk over the
/// segments starts: [`SegPos::START`], or the start of the variable that a
/// per-variable caller applies, so that S calls cost O(S), not O(S^2)).
pub(crate) fn apply_merged_with<F: Element, G: Gradients<F>>(
    k: Kernels,
    grads: &G,
    coef: &Coefficients<'_>,
    reduction: Reduction,
    from: SegPos,
    lo: usize,
    hi: usize,
    merged: &mut [F],
    tile: &mut [f64],
) -> Result<()> {
    apply_merged_to::<F, Same, G>(k, grads, coef, reduction, from, lo, hi, merged, tile)
}

/// The element type of the merged output: the input's ([`Same`]) or `f32`
/// ([`ToF32`]), with the merged apply kernel that writes it.
pub(crate) trait MergeOut<F: Element> {
    /// The output element.
    type Out: Copy + Send + Sync;
    /// Zero of the output.
    fn zero() -> Self::Out;
    /// The merged apply kernel (`Sealed::merge_rows` or
    /// `Sealed::merge_rows_f32`).
    #[allow(clippy::too_many_arguments)]
    fn merge_rows(
        k: Kernels,
        out: &mut [Self::Out],
        acc: &mut [f64],
        rows: [&[F]; 4],
        coef: [f64; 4],
        n: usize,
        first: bool,
        last: Option<f64>,
    );
}

/// The merged output in the input's type.
pub(crate) struct Same;

/// The merged output in `f32` (each value rounded once from `f64`).
pub(crate) struct ToF32;

impl<F: Element> MergeOut<F> for Same {
    type Out = F;
    #[inline(always)]
    fn zero() -> F {
        F::zero()
    }
    #[inline(always)]
    fn merge_rows(
        k: Kernels,
        out: &mut [F],
        acc: &mut [f64],
        rows: [&[F]; 4],
        coef: [f64; 4],
        n: usize,
        first: bool,
        last: Option<f64>,
    ) {
        F::merge_rows(k, out, acc, rows, coef, n, first, last)
    }
}

impl<F: Element> MergeOut<F> for ToF32 {
    type Out = f32;
    #[inline(always)]
    fn zero() -> f32 {
        0.0
    }
    #[inline(always)]
    fn merge_rows(
        k: Kernels,
        out: &mut [f32],
        acc: &mut [f64],
        rows: [&[F]; 4],
        coef: [f64; 4],
        n: usize,
        first: bool,
        last: Option<f64>,
    ) {
        F::merge_rows_f32(k, out, acc, rows, coef, n, first, last)
    }
}

/// [`apply_merged_with`] writing the output type of `S`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_merged_to<F: Element, S: MergeOut<F>, G: Gradients<F>>(
    k: Kernels,
    grads: &G,
    coef: &Coefficients<'_>,
    reduction: Reduction,
    from: SegPos,
    lo: usize,
    hi: usize,
    merged: &mut [S::Out],
    tile: &mut [f64],
) -> Result<()> {
    let layout = *grads.layout();
    check_apply(&layout, coef, lo, hi)?;
    if merged.len() != hi - lo {
        return Err(Error::LengthMismatch);
    }
    if tile.len() < tile_len(layout.tasks())? {
        return Err(Error::WorkspaceTooSmall);
    }
    let t = layout.tasks();
    // The f64 sums of a column block when more than four rows take part
    // (the kernel adds four rows per call).
    let acc = &mut tile[..tile_len(t)?];
    for seg in layout.pieces(layout.seek(from, lo), lo, hi) {
        let w = weight(&layout, seg.index, reduction);
        let group = |from: usize| merge_group(&layout, coef.b, seg.index, from);
        // One kernel call over the whole piece when one group holds every
        // row (one write of `merged`), else column blocks that `acc` holds.
        let step = if group(group(0).2).1 == 0 {
            seg.len()
        } else {
            acc.len()
        };
        for piece in seg.blocks(step) {
            let out = &mut merged[piece.start - lo..piece.end - lo];
            // Each group is merged once the next one is known (the last
            // takes the weight): one call site of the kernel.
            let (mut prev, mut from, mut first): (Option<([usize; 4], usize)>, _, _) =
                (None, 0, true);
            loop {
                let (idx, n, next) = group(from);
                if let Some((ia, na)) = prev {
                    let j = [0, 1, 2, 3].map(|r| ia[r.min(na - 1)]);
                    let x = j.map(|j| grads.values(j, &piece));
                    let c = j.map(|j| at(coef.b, j));
                    let last = (n == 0).then_some(w);
                    S::merge_rows(k, out, acc, x, c, na, first, last);
                    first = false;
                } else if n == 0 {
                    out.fill(S::zero());
                }
                if n == 0 {
                    break;
                }
                (prev, from) = (Some((idx, n)), next);
            }
        }
    }
    Ok(())
}

/// The next (up to) four tasks at or after `from` that take part in the
/// merge on segment `s`: those with a gradient there and a non-zero
/// coefficient (as the projected path skips them, so the two merged outputs
/// are bitwise equal). Their indices, how many, and where to continue.
#[inline(never)]
fn merge_group(
    layout: &Layout<'_>,
    b: &[f64],
    s: usize,
    from: usize,
) -> ([usize; 4], usize, usize) {
    let (mut idx, mut n, mut j) = ([0usize; 4], 0, from);
    while j < layout.tasks() && n < 4 {
        if layout.has_grad(j, s) && at(b, j) != 0.0 {
            if let Some(x) = idx.get_mut(n) {
                *x = j;
            }
            n += 1;
        }
        j += 1;
    }
    (idx, n, j)
}

/// Phase 3 with the projected gradients: writes g'_i = sum_j A_ij g_j over
/// `lo..hi` back into the gradient buffers, and the merged gradient into
/// `merged` (`hi - lo` values) when given. Computed in `f64` through a
/// (T + 1) x TILE_W tile (`tile` holds [`tile_len`] doubles).
pub fn apply_projected<F: Element, G: GradientsMut<F>>(
    grads: &mut G,
    coef: &Coefficients<'_>,
    reduction: Reduction,
    lo: usize,
    hi: usize,
    merged: Option<&mut [F]>,
    tile: &mut [f64],
) -> Result<()> {
    apply_projected_from(grads, coef, reduction, SegPos::START, lo, hi, merged, tile)
}

/// [`apply_projected`] with the walk over the segments started at the
/// boundary `from` (at or before `lo`), as in [`apply_merged_with`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_projected_from<F: Element, G: GradientsMut<F>>(
    grads: &mut G,
    coef: &Coefficients<'_>,
    reduction: Reduction,
    from: SegPos,
    lo: usize,
    hi: usize,
    merged: Option<&mut [F]>,
    tile: &mut [f64],
) -> Result<()> {
    let t = grads.layout().tasks();
    check_apply(grads.layout(), coef, lo, hi)?;
    if merged.as_ref().is_some_and(|m| m.len() != hi - lo) {
        return Err(Error::LengthMismatch);
    }
    if tile.len() < tile_len(t)? {
        return Err(Error::WorkspaceTooSmall);
    }
    let k = Kernels::best();
    // With SIMD and `std`, a wider tile on the stack when T is small: the
    // calls per piece (T + 1 loads, T combinations and writes) cost about
    // as much as their work on TILE_W columns at T = 2. Columns are
    // independent, so the width does not change any value.
    #[cfg(feature = "std")]
    {
        let cols = (WIDE_TILE / (t + 1)) / TILE_W * TILE_W;
        if SIMD && cols > TILE_W {
            let mut wide = [0.0f64; WIDE_TILE];
            project_pieces(
                k, grads, coef, reduction, from, lo, hi, merged, &mut wide, cols,
            );
            return Ok(());
        }
    }
    project_pieces(
        k, grads, coef, reduction, from, lo, hi, merged, tile, TILE_W,
    );
    Ok(())
}

/// The loop of [`apply_projected_from`] (arguments checked) over pieces of
/// `width` columns, through `tile` ((T + 1) x `width` doubles).
#[allow(clippy::too_many_arguments)]
fn project_pieces<F: Element, G: GradientsMut<F>>(
    k: Kernels,
    grads: &mut G,
    coef: &Coefficients<'_>,
    reduction: Reduction,
    from: SegPos,
    lo: usize,
    hi: usize,
    mut merged: Option<&mut [F]>,
    tile: &mut [f64],
    width: usize,
) {
    let t = grads.layout().tasks();
    let mut cursor = Pieces::new(grads.layout().seek(from, lo), lo, hi);
    while let Some(seg) = cursor.next(grads.layout()) {
        let w = weight(grads.layout(), seg.index, reduction);
        for piece in seg.blocks(width) {
            let (rows, acc) = load_tile(k, &*grads, &piece, tile, width);
            if let Some(m) = merged.as_deref_mut() {
                merged_from_tile(
                    k,
                    rows,
                    width,
                    coef.b,
                    w,
                    acc,
                    &mut m[piece.start - lo..piece.end - lo],
                );
            }
            for i in 0..t {
                if let Some(dst) = grads.values_mut(i, &piece) {
                    k.combine(rows, width, &coef.a[i * t..(i + 1) * t], acc);
                    F::narrow_slice(k, acc, dst);
                }
            }
        }
    }
}

/// Loads every task's values on `piece` (at most `width` columns) into the
/// tile as `f64`, rows `width` apart (zeros for tasks without the segment);
/// returns the rows and an accumulator of the piece's length.
fn load_tile<'t, F: Element, R: Gradients<F> + ?Sized>(
    k: Kernels,
    grads: &R,
    piece: &Segment,
    tile: &'t mut [f64],
    width: usize,
) -> (&'t [f64], &'t mut [f64]) {
    let layout = grads.layout();
    let t = layout.tasks();
    let len = piece.len();
    let (rows, acc) = tile.split_at_mut(t * width);
    for j in 0..t {
        let dst = &mut rows[j * width..j * width + len];
        if layout.has_grad(j, piece.index) {
            F::widen_slice(k, grads.values(j, piece), dst);
        } else {
            dst.fill(0.0);
        }
    }
    (rows, &mut acc[..len])
}

/// `out = w * sum_j b_j rows[j]` (rows `width` doubles apart).
fn merged_from_tile<F: Element>(
    k: Kernels,
    rows: &[f64],
    width: usize,
    b: &[f64],
    w: f64,
    acc: &mut [f64],
    out: &mut [F],
) {
    k.combine(rows, width, b, acc);
    for (o, &v) in out.iter_mut().zip(acc.iter()) {
        *o = F::from_f64(v * w);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::kernels::{gram_tile_exact, scalar};
    use crate::layout::{Flat, FlatMut};

    /// The Gram of a chunk as one scalar tile call per block and group of
    /// four rows (the diagonal tiles first, the exact kernel where a
    /// group's rows do not fit the `f32` lanes).
    fn by_tiles(grads: &Flat<'_, f32>, c0: usize, c1: usize, part: &mut [f64]) {
        let layout = *grads.layout();
        let t = layout.tasks();
        let mut add = |ia: &[usize], ib: &[usize], out: &[[f64; 4]; 4]| {
            for (r, &i) in ia.iter().enumerate() {
                for (c, &j) in ib.iter().enumerate() {
                    if i <= j {
                        part[i * t + j] += out[r][c];
                    }
                }
            }
        };
        for seg in layout.pieces(SegPos::START, c0, c1) {
            let s = seg.index;
            for piece in seg.blocks(BLOCK) {
                let len = piece.len();
                let rows = |idx: &[usize; 4], n: usize| {
                    [0, 1, 2, 3].map(|r| grads.values(idx[r.min(n - 1)], &piece))
                };
                let mut fits = [false; 8];
                let (mut ta, mut g) = (0, 0);
                loop {
                    let (ia, na, next) = layout.group_of_four(s, ta);
                    if na == 0 {
                        break;
                    }
                    let ra = rows(&ia, na);
                    let mut out = [[0.0f64; 4]; 4];
                    let shape = Tile {
                        rows: na,
                        cols: na,
                        diagonal: true,
                    };
                    if scalar::gram_tile_f32(ra, ra, shape, len, &mut out) {
                        fits[g] = true;
                    } else {
                        out = [[0.0; 4]; 4];
                        gram_tile_exact(ra, ra, len, &mut out);
                    }
                    add(&ia[..na], &ia[..na], &out);
                    ta = next;
                    g += 1;
                }
                let (mut ta, mut ga) = (0, 0);
                loop {
                    let (ia, na, next_a) = layout.group_of_four(s, ta);
                    if na == 0 {
                        break;
                    }
                    let (mut tb, mut gb) = (next_a, ga + 1);
                    loop {
                        let (ib, nb, next_b) = layout.group_of_four(s, tb);
                        if nb == 0 {
                            break;
                        }
                        let (ra, rb) = (rows(&ia, na), rows(&ib, nb));
                        let mut out = [[0.0f64; 4]; 4];
                        if fits[ga] && fits[gb] {
                            let shape = Tile {
                                rows: na,
                                cols: nb,
                                diagonal: false,
                            };
                            scalar::gram_tile_f32(ra, rb, shape, len, &mut out);
                        } else {
                            gram_tile_exact(ra, rb, len, &mut out);
                        }
                        add(&ia[..na], &ib[..nb], &out);
                        tb = next_b;
                        gb += 1;
                    }
                    ta = next_a;
                    ga += 1;
                }
            }
        }
    }

    /// The pair-at-a-time Gram pass (the one without SIMD) is bitwise one
    /// scalar tile call per block and group, with blocks out of the `f32`
    /// range, partial groups and tasks without a segment.
    #[test]
    fn pairs_are_bitwise_the_scalar_tiles() {
        let n = 3 * BLOCK + 77;
        let segments = [BLOCK + 5, 2 * BLOCK + 72];
        for t in [1usize, 2, 3, 4, 5, 8, 9] {
            let mut data = std::vec![0.0f32; t * n];
            let mut s = t as u32;
            for x in data.iter_mut() {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *x = (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            }
            // Row 1: one huge value in block 1; the last row: tiny values
            // in block 2.
            if t > 1 {
                data[n + BLOCK + 3] = 1e30;
            }
            for x in &mut data[(t - 1) * n + 2 * BLOCK..(t - 1) * n + 3 * BLOCK] {
                *x *= 1e-33;
            }
            let mask: std::vec::Vec<bool> = (0..2 * t).map(|k| k % 5 != 3).collect();
            for (segs, has) in [(&[][..], &[][..]), (&segments[..], &mask[..])] {
                let layout = Layout::new(t, n, segs, has).unwrap();
                let grads = Flat::new(layout, &data).unwrap();
                for (c0, c1) in [(0, n), (7, BLOCK + 300), (n - 5, n)] {
                    let mut want = std::vec![0.25f64; t * t];
                    let mut got = want.clone();
                    by_tiles(&grads, c0, c1, &mut want);
                    accumulate_pairs(&grads, SegPos::START, c0, c1, &mut got);
                    assert_eq!(
                        got.iter()
                            .map(|x| x.to_bits())
                            .collect::<std::vec::Vec<_>>(),
                        want.iter()
                            .map(|x| x.to_bits())
                            .collect::<std::vec::Vec<_>>(),
                        "T={t} {c0}..{c1} {segs:?}"
                    );
                }
            }
        }
    }

    /// The projected apply's piece width (the workspace tile's TILE_W
    /// columns, or the wider stack tile) changes no bit of g'_i or of the
    /// merged output, with segments, tasks without a segment and a range
    /// that starts and ends inside pieces.
    #[test]
    fn projected_width_is_bitwise_invisible() {
        let n = 1500;
        let segments = [700, 800];
        for t in [1usize, 2, 3, 5, 8, 17] {
            let mut data = std::vec![0.0f32; t * n];
            let mut s = t as u32 + 7;
            for (k, x) in data.iter_mut().enumerate() {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let sign = if k / n % 2 == 1 { -0.7 } else { 0.9 };
                *x = sign * ((k % n) as f32 * 1e-3).sin() + (s >> 8) as f32 / (1u32 << 24) as f32
                    - 0.5;
            }
            let mask: std::vec::Vec<bool> = (0..2 * t).map(|k| k % 5 != 3).collect();
            let layout = Layout::new(t, n, &segments, &mask).unwrap();
            let mut gram = std::vec![0.0f64; gram_workspace_len(t).unwrap()];
            accumulate_gram(&Flat::new(layout, &data).unwrap(), 0, n, &mut gram).unwrap();
            let mut cws = std::vec![0.0f64; coefficients_len(t).unwrap()];
            let (coef, _) =
                coefficients(&gram[..t * t], t, &mut Mode::Simultaneous, &mut cws).unwrap();
            let (lo, hi) = (5, n - 3);
            let mut want: Option<(std::vec::Vec<f32>, std::vec::Vec<f32>)> = None;
            for width in [TILE_W, 2 * TILE_W, 3 * TILE_W, 21 * TILE_W] {
                let mut g = data.clone();
                let mut merged = std::vec![0.0f32; hi - lo];
                let mut tile = std::vec![0.0f64; (t + 1) * width];
                let mut grads = FlatMut::new(layout, &mut g).unwrap();
                project_pieces(
                    Kernels::best(),
                    &mut grads,
                    &coef,
                    Reduction::Mean,
                    SegPos::START,
                    lo,
                    hi,
                    Some(&mut merged),
                    &mut tile,
                    width,
                );
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<std::vec::Vec<_>>();
                match &want {
                    None => want = Some((g, merged)),
                    Some((wg, wm)) => {
                        assert_eq!(bits(&g), bits(wg), "T={t} width {width}");
                        assert_eq!(bits(&merged), bits(wm), "T={t} width {width}");
                    }
                }
            }
        }
    }
}
