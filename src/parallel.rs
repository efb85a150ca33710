//! The two streaming passes on several threads (feature `parallel`), and
//! their serial stand-ins when the feature is off, so that the one-call API
//! ([`crate::PcGrad`]) calls the same three functions in every build and
//! carries no `cfg`s. Each function takes an exact number of workers; the
//! one-call API picks it with [`workers`] from [`crate::PcGrad::threads`].
//!
//! # Determinism
//!
//! Results are bitwise identical for every thread count and to the serial
//! build:
//!
//! - **Gram pass.** The serial engine ([`engine::accumulate_gram`]) sums one
//!   partial Gram per aligned [`engine::CHUNK`] of columns, in chunk order. The
//!   threaded pass gives each worker a contiguous run of chunks, each worker
//!   writes every chunk's partial (computed by the same
//!   `engine::accumulate_chunk`) into its own slot, and the calling thread
//!   then adds the slots in chunk order: the same additions in the same
//!   order, whatever the number of workers.
//! - **Apply pass.** Every output coordinate is computed from that
//!   coordinate alone, with coefficients that every worker shares. The
//!   column ranges are cut at multiples of the kernels' 256-column block from the start of the
//!   segment that holds the cut, so each worker sees the same block grid as
//!   the serial pass (the kernels round a multiply and an add in every lane
//!   and in the tail alike, so this is a safeguard rather than a need).
//!
//! # Why `std::thread::scope`
//!
//! The threads are plain scoped threads (`std::thread::scope`), spawned per
//! call, not a `rayon` pool. Measured on the development machine (2 cores),
//! spawning and joining one scoped thread costs about 20 to 40 us, which a
//! pass only pays when each worker has at least [`MIN_WORK`] elements to
//! read (a few hundred microseconds of streaming), so a pool's faster
//! wake-up would gain under a few percent where threads are used at all,
//! while `rayon` would add two crates (and their `crossbeam` dependencies)
//! and a global pool that competes with the caller's own. The calling thread
//! runs the last range itself, so `threads = 2` spawns one thread.
//!
//! # Memory
//!
//! The threaded passes allocate (the feature implies `std`): one partial
//! Gram per chunk (`ceil(N / CHUNK) * T * T` doubles, 2.4 MiB for T = 16,
//! N = 1e7), an apply tile per extra worker, and, for the in-place path, a
//! column window over every (task, variable) buffer per worker. The serial
//! path, and every path of a build without `parallel`, allocates nothing.

use crate::engine::{self, Coefficients, MergeOut, Reduction, Same};
#[cfg(feature = "parallel")]
use crate::engine::{tile_len, CHUNK};
use crate::error::Result;
#[cfg(feature = "parallel")]
use crate::kernels::BLOCK;
use crate::kernels::{Element, Kernels};
use crate::layout::{Gradients, GradientsMut, SegPos};

/// Elements (task rows x columns) each worker must have before a pass uses
/// another thread: 2^19 `f32` = 2 MiB of reads, about 100 to 200 us of
/// streaming here, against 20 to 40 us to spawn and join a thread.
///
/// Under Miri it is 2^8, so that the small problems Miri can run in time
/// reach 2 and 3 workers through the one-call API (`tests/miri_threads.rs`).
pub const MIN_WORK: usize = if cfg!(miri) { 1 << 8 } else { 1 << 19 };

/// The number of workers the one-call API uses for a pass over `elems`
/// elements (T x N) when the caller asks for `threads` (0 = all cores): at
/// most the request and the cores the process may use
/// (`std::thread::available_parallelism`), at least 1, and no more than
/// leave every worker [`MIN_WORK`] elements. Always 1 without the
/// `parallel` feature. The result does not change any output bit.
pub fn workers(threads: usize, elems: usize) -> usize {
    // Size first: a call too small for a second worker never asks the
    // system for the core count (which allocates inside std).
    let most = elems / MIN_WORK;
    if most <= 1 || threads == 1 {
        return 1;
    }
    let cores = pool::cores();
    let want = if threads == 0 {
        cores
    } else {
        threads.min(cores)
    };
    want.min(most).clamp(1, pool::MAX)
}

#[cfg(all(test, feature = "parallel"))]
mod worker_tests {
    extern crate std;

    /// More threads than cores are not spawned (a request of 64 on a
    /// 2-core machine used to give 64 workers for a large problem).
    #[test]
    fn workers_never_exceed_the_cores() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let huge = super::MIN_WORK * 1024;
        for threads in [0, 1, 2, cores, cores + 1, 64, usize::MAX] {
            let w = super::workers(threads, huge);
            assert!(
                w >= 1 && w <= cores,
                "threads {threads}: {w} workers, {cores} cores"
            );
            if threads != 0 {
                assert!(w <= threads);
            }
        }
        assert_eq!(super::workers(0, huge), cores.min(super::pool::MAX));
    }
}

/// Phase 1 over all N columns on `w` workers (at most one per [`CHUNK`]
/// of columns; 0 and 1 run on the calling thread, as does every call in a
/// build without `parallel`): adds the Gram matrix into `gram` (which holds
/// [`engine::gram_workspace_len`] doubles), bitwise as
/// [`engine::accumulate_gram`]`(grads, 0, N, gram)`.
///
/// [`CHUNK`]: engine::CHUNK
pub fn accumulate_gram<F: Element, G: Gradients<F>>(
    grads: &G,
    gram: &mut [f64],
    w: usize,
) -> Result<()> {
    let layout = grads.layout();
    if w.min(pool::MAX) <= 1 {
        return engine::accumulate_gram(grads, 0, layout.dim(), gram);
    }
    threaded::accumulate_gram(grads, gram, w.min(pool::MAX))
}

/// Phase 3, merged only, over all N columns on `w` workers, bitwise as
/// [`engine::apply_merged`]`(grads, coef, reduction, 0, N, merged, tile)`.
pub fn apply_merged<F: Element, G: Gradients<F>>(
    grads: &G,
    coef: &Coefficients<'_>,
    reduction: Reduction,
    merged: &mut [F],
    tile: &mut [f64],
    w: usize,
) -> Result<()> {
    apply_merged_to::<F, Same, G>(grads, coef, reduction, merged, tile, w)
}

/// [`apply_merged`] writing the output type of `S` (the input's, or `f32`),
/// bitwise as [`engine::apply_merged_to`] over all N columns.
pub(crate) fn apply_merged_to<F: Element, S: MergeOut<F>, G: Gradients<F>>(
    grads: &G,
    coef: &Coefficients<'_>,
    reduction: Reduction,
    merged: &mut [S::Out],
    tile: &mut [f64],
    w: usize,
) -> Result<()> {
    let layout = grads.layout();
    if w.min(pool::MAX) <= 1 {
        return serial_merged::<F, S, G>(grads, coef, reduction, 0, layout.dim(), merged, tile);
    }
    threaded::apply_merged::<F, S, G>(grads, coef, reduction, merged, tile, w.min(pool::MAX))
}

/// [`engine::apply_merged_to`] on the best kernels from the first segment.
fn serial_merged<F: Element, S: MergeOut<F>, G: Gradients<F>>(
    grads: &G,
    coef: &Coefficients<'_>,
    reduction: Reduction,
    lo: usize,
    hi: usize,
    merged: &mut [S::Out],
    tile: &mut [f64],
) -> Result<()> {
    engine::apply_merged_to::<F, S, G>(
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

/// Phase 3 in place over all N columns on `w` workers, bitwise as
/// [`engine::apply_projected`]`(grads, coef, reduction, 0, N, merged, tile)`.
pub fn apply_projected<F: Element, G: GradientsMut<F>>(
    grads: &mut G,
    coef: &Coefficients<'_>,
    reduction: Reduction,
    merged: Option<&mut [F]>,
    tile: &mut [f64],
    w: usize,
) -> Result<()> {
    let n = grads.layout().dim();
    if w.min(pool::MAX) <= 1 {
        return engine::apply_projected(grads, coef, reduction, 0, n, merged, tile);
    }
    threaded::apply_projected(grads, coef, reduction, merged, tile, w.min(pool::MAX))
}

/// The thread pool: scoped threads with the feature, a dummy of one worker
/// without it.
#[cfg(feature = "parallel")]
mod pool {
    /// More workers than this are never used.
    pub const MAX: usize = 256;

    /// The number of cores the process may use.
    /// Asked once per process (the query allocates inside std), then read
    /// from a cache.
    pub fn cores() -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static CORES: AtomicUsize = AtomicUsize::new(0);
        match CORES.load(Ordering::Relaxed) {
            0 => {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                CORES.store(n, Ordering::Relaxed);
                n
            }
            n => n,
        }
    }

    /// Runs every job, the last one on the calling thread, the others on
    /// scoped threads, and returns when all are done.
    pub fn run<J: FnOnce() + Send>(jobs: impl IntoIterator<Item = J>) {
        std::thread::scope(|s| {
            let mut jobs = jobs.into_iter().peekable();
            while let Some(job) = jobs.next() {
                if jobs.peek().is_some() {
                    s.spawn(job);
                } else {
                    job();
                }
            }
        });
    }
}

/// The dummy pool of a build without `parallel`: one worker.
#[cfg(not(feature = "parallel"))]
mod pool {
    /// Never more than one worker.
    pub const MAX: usize = 1;

    /// One core.
    pub fn cores() -> usize {
        1
    }
}

#[cfg(not(feature = "parallel"))]
mod threaded {
    //! Never reached: [`super::workers`] is always 1 without the feature.
    //! These forward to the serial engine so the dispatch compiles the same
    //! way in every build.
    use super::*;

    pub fn accumulate_gram<F: Element, G: Gradients<F>>(
        grads: &G,
        gram: &mut [f64],
        _w: usize,
    ) -> Result<()> {
        engine::accumulate_gram(grads, 0, grads.layout().dim(), gram)
    }

    pub fn apply_merged<F: Element, S: MergeOut<F>, G: Gradients<F>>(
        grads: &G,
        coef: &Coefficients<'_>,
        reduction: Reduction,
        merged: &mut [S::Out],
        tile: &mut [f64],
        _w: usize,
    ) -> Result<()> {
        let n = grads.layout().dim();
        super::serial_merged::<F, S, G>(grads, coef, reduction, 0, n, merged, tile)
    }

    pub fn apply_projected<F: Element, G: GradientsMut<F>>(
        grads: &mut G,
        coef: &Coefficients<'_>,
        reduction: Reduction,
        merged: Option<&mut [F]>,
        tile: &mut [f64],
        _w: usize,
    ) -> Result<()> {
        let n = grads.layout().dim();
        engine::apply_projected(grads, coef, reduction, 0, n, merged, tile)
    }
}

#[cfg(feature = "parallel")]
mod threaded {
    use super::*;
    use crate::engine::{accumulate_chunk, add_upper, gram_workspace_len, symmetrize};
    use crate::error::Error;
    use crate::kernels::Kernels;
    use crate::layout::SegPos;
    use crate::layout::{sealed::Sealed, Layout, Segment};
    use std::vec;
    use std::vec::Vec;

    pub fn accumulate_gram<F: Element, G: Gradients<F>>(
        grads: &G,
        gram: &mut [f64],
        w: usize,
    ) -> Result<()> {
        let layout = grads.layout();
        let (t, n) = (layout.tasks(), layout.dim());
        let tt = t * t;
        if gram.len() < gram_workspace_len(t)? {
            return Err(Error::WorkspaceTooSmall);
        }
        let chunks = n.div_ceil(CHUNK);
        let w = w.min(chunks).max(1);
        let mut parts = vec![0.0f64; chunks * tt];
        let mut rest = &mut parts[..];
        let mut jobs = Vec::with_capacity(w);
        let kernels = Kernels::best();
        for k in 0..w {
            let (c_lo, c_hi) = (k * chunks / w, (k + 1) * chunks / w);
            let (mine, tail) = rest.split_at_mut((c_hi - c_lo) * tt);
            rest = tail;
            jobs.push(move || {
                let mut pos = SegPos::START;
                for (i, part) in mine.chunks_exact_mut(tt).enumerate() {
                    let c = (c_lo + i) * CHUNK;
                    pos = grads.layout().seek(pos, c);
                    accumulate_chunk(kernels, grads, pos, c, n.min(c + CHUNK), part);
                }
            });
        }
        pool::run(jobs);
        let g = &mut gram[..tt];
        for part in parts.chunks_exact(tt) {
            add_upper(g, part, t);
        }
        symmetrize(g, t);
        Ok(())
    }

    /// The first coordinate of each of `w` column ranges over `0..N` (and N
    /// at the end): near-equal cuts moved down to a multiple of [`BLOCK`]
    /// from the start of their segment.
    fn cuts(layout: &Layout<'_>, w: usize) -> Vec<usize> {
        let n = layout.dim();
        let mut out = Vec::with_capacity(w + 1);
        out.push(0);
        for k in 1..w {
            let p = k * n / w;
            let (mut base, mut s) = (0, 0);
            while s + 1 < layout.num_segments() && base + layout.segment_len(s) <= p {
                base += layout.segment_len(s);
                s += 1;
            }
            let cut = base + (p - base) / BLOCK * BLOCK;
            out.push(cut.max(*out.last().unwrap_or(&0)));
        }
        out.push(n);
        out
    }

    fn check_tile(t: usize, tile: &[f64]) -> Result<()> {
        if tile.len() < tile_len(t)? {
            return Err(Error::WorkspaceTooSmall);
        }
        Ok(())
    }

    /// One tile per worker: the caller's for the last, fresh ones for the
    /// others.
    fn tiles(t: usize, w: usize, tile: &mut [f64]) -> Result<Vec<TileBuf<'_>>> {
        let len = tile_len(t)?;
        let mut out: Vec<TileBuf<'_>> = (1..w).map(|_| TileBuf::Owned(vec![0.0; len])).collect();
        out.push(TileBuf::Caller(tile));
        Ok(out)
    }

    enum TileBuf<'a> {
        Owned(Vec<f64>),
        Caller(&'a mut [f64]),
    }

    impl TileBuf<'_> {
        fn get(&mut self) -> &mut [f64] {
            match self {
                TileBuf::Owned(v) => v,
                TileBuf::Caller(s) => s,
            }
        }
    }

    /// Runs `w` jobs and returns the first error.
    fn run_all<J: FnOnce() -> Result<()> + Send>(jobs: Vec<J>) -> Result<()> {
        let mut results = vec![Ok(()); jobs.len()];
        pool::run(
            jobs.into_iter()
                .zip(results.iter_mut())
                .map(|(job, r)| move || *r = job()),
        );
        results.into_iter().collect()
    }

    pub fn apply_merged<F: Element, S: MergeOut<F>, G: Gradients<F>>(
        grads: &G,
        coef: &Coefficients<'_>,
        reduction: Reduction,
        merged: &mut [S::Out],
        tile: &mut [f64],
        w: usize,
    ) -> Result<()> {
        let layout = grads.layout();
        let t = layout.tasks();
        if coef.tasks() != t || merged.len() != layout.dim() {
            return Err(Error::LengthMismatch);
        }
        check_tile(t, tile)?;
        let cuts = cuts(layout, w);
        let mut rest = merged;
        let mut jobs = Vec::with_capacity(w);
        for (k, mut tile) in tiles(t, w, tile)?.into_iter().enumerate() {
            let (lo, hi) = (cuts[k], cuts[k + 1]);
            let (mine, tail) = rest.split_at_mut(hi - lo);
            rest = tail;
            let coef = *coef;
            jobs.push(move || {
                super::serial_merged::<F, S, G>(grads, &coef, reduction, lo, hi, mine, tile.get())
            });
        }
        run_all(jobs)
    }

    pub fn apply_projected<F: Element, G: GradientsMut<F>>(
        grads: &mut G,
        coef: &Coefficients<'_>,
        reduction: Reduction,
        merged: Option<&mut [F]>,
        tile: &mut [f64],
        w: usize,
    ) -> Result<()> {
        // An owned copy of the shape, so that it outlives the mutable
        // borrows of the buffers below.
        let (t, n, segs) = {
            let l = grads.layout();
            (l.tasks(), l.dim(), l.num_segments())
        };
        let seg_len: Vec<usize> = (0..segs).map(|s| grads.layout().segment_len(s)).collect();
        let mask: Vec<bool> = (0..t * segs)
            .map(|c| grads.layout().has_grad(c / segs, c % segs))
            .collect();
        let layout = Layout::new(t, n, &seg_len, &mask)?;
        if coef.tasks() != t || merged.as_ref().is_some_and(|m| m.len() != n) {
            return Err(Error::LengthMismatch);
        }
        check_tile(t, tile)?;
        let cuts = cuts(&layout, w);
        let mut bases = Vec::with_capacity(segs);
        let mut b = 0;
        for &len in &seg_len {
            bases.push(b);
            b += len;
        }
        // Cut every (task, segment) buffer at the range boundaries.
        let mut windows: Vec<Window<'_, '_, F>> = (0..w)
            .map(|k| Window {
                layout,
                lo: cuts[k],
                cells: Vec::with_capacity(t * segs),
            })
            .collect();
        let mut cell = 0;
        grads.cells_mut(&mut |buf| {
            let s = cell % segs;
            let (base, end) = (bases[s], bases[s] + seg_len[s]);
            cell += 1;
            match buf {
                Some(mut rest) => {
                    for (k, win) in windows.iter_mut().enumerate() {
                        let len = end.min(cuts[k + 1]).saturating_sub(base.max(cuts[k]));
                        let (mine, tail) = core::mem::take(&mut rest).split_at_mut(len);
                        rest = tail;
                        win.cells.push(Some(mine));
                    }
                }
                None => windows.iter_mut().for_each(|win| win.cells.push(None)),
            }
        });
        let mut merged_parts: Vec<Option<&mut [F]>> = Vec::with_capacity(w);
        let mut rest = merged;
        for k in 0..w {
            let len = cuts[k + 1] - cuts[k];
            merged_parts.push(rest.take().map(|m| {
                let (mine, tail) = m.split_at_mut(len);
                rest = Some(tail);
                mine
            }));
        }
        let mut jobs = Vec::with_capacity(w);
        let parts = windows
            .into_iter()
            .zip(merged_parts)
            .zip(tiles(t, w, tile)?);
        for (k, ((mut win, m), mut tile)) in parts.enumerate() {
            let (lo, hi) = (cuts[k], cuts[k + 1]);
            let coef = *coef;
            jobs.push(move || {
                engine::apply_projected(&mut win, &coef, reduction, lo, hi, m, tile.get())
            });
        }
        run_all(jobs)
    }

    /// The columns `lo..` of every (task, segment) buffer that one worker
    /// owns, addressed by global coordinates.
    struct Window<'w, 'l, F> {
        layout: Layout<'l>,
        lo: usize,
        cells: Vec<Option<&'w mut [F]>>,
    }

    impl<F> Window<'_, '_, F> {
        fn offsets(&self, seg: &Segment) -> (usize, usize) {
            let first = seg.base.max(self.lo);
            (seg.start - first, seg.end - first)
        }
    }

    impl<F: Element> Sealed for Window<'_, '_, F> {}
    impl<F: Element> Gradients<F> for Window<'_, '_, F> {
        fn layout(&self) -> &Layout<'_> {
            &self.layout
        }
        fn values(&self, t: usize, seg: &Segment) -> &[F] {
            let (a, b) = self.offsets(seg);
            match &self.cells[t * self.layout.num_segments() + seg.index] {
                Some(v) => &v[a..b],
                None => &[],
            }
        }
    }
    impl<F: Element> GradientsMut<F> for Window<'_, '_, F> {
        fn values_mut(&mut self, t: usize, seg: &Segment) -> Option<&mut [F]> {
            let (a, b) = self.offsets(seg);
            let s = self.layout.num_segments();
            self.cells[t * s + seg.index]
                .as_deref_mut()
                .map(|v| &mut v[a..b])
        }
        fn cells_mut<'s>(&'s mut self, f: &mut dyn FnMut(Option<&'s mut [F]>)) {
            for v in self.cells.iter_mut() {
                f(v.as_deref_mut());
            }
        }
    }
}
