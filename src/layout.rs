//! Shapes (T tasks, N coordinates cut into segments with per-task masks) and
//! the gradient sources the engine reads: a flat T x N buffer, or one buffer
//! per (task, variable).

use crate::error::{Error, Result};
use crate::kernels::Element;

/// The shape of one PCGrad problem: T tasks, N coordinates cut into S
/// consecutive segments (one per model variable), and for every task and
/// segment whether the task produced a gradient there.
///
/// Where `has_grad[t][s]` is false, task t's gradient is zero on segment s
/// and its buffer there is never read. A coordinate is *shared* when every
/// task has a gradient for its segment; `Reduction::Mean` averages only
/// shared coordinates and sums the others (the seed's rule).
#[derive(Clone, Copy, Debug)]
pub struct Layout<'a> {
    tasks: usize,
    dim: usize,
    /// Segment lengths; empty means one segment of length `dim`.
    segments: &'a [usize],
    /// Row-major T x S mask; empty means all true.
    has_grad: &'a [bool],
}

/// A piece of one segment: the coordinates `start..end` of segment `index`,
/// whose first coordinate is `base`. Produced by the engine, passed to
/// [`Gradients`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The segment (variable) index s.
    pub index: usize,
    /// The segment's first coordinate.
    pub base: usize,
    /// First global coordinate of the piece.
    pub start: usize,
    /// One past the last global coordinate of the piece.
    pub end: usize,
}

impl<'a> Layout<'a> {
    /// T tasks, N coordinates, one segment that every task has.
    pub fn dense(tasks: usize, dim: usize) -> Result<Self> {
        Self::new(tasks, dim, &[], &[])
    }

    /// T tasks, segments of the given lengths (summing to `dim`), and a
    /// row-major T x S mask `has_grad` (`has_grad[t * S + s]`).
    ///
    /// `segments` may be empty (one segment of length `dim`), and then
    /// `has_grad` must be empty or hold T values; `has_grad` may be empty
    /// (every task has every segment).
    pub fn new(
        tasks: usize,
        dim: usize,
        segments: &'a [usize],
        has_grad: &'a [bool],
    ) -> Result<Self> {
        if tasks == 0 {
            return Err(Error::NoTasks);
        }
        tasks.checked_mul(dim).ok_or(Error::Overflow)?;
        tasks.checked_mul(tasks).ok_or(Error::Overflow)?;
        let mut total: usize = 0;
        for &len in segments {
            total = total.checked_add(len).ok_or(Error::Overflow)?;
        }
        if !segments.is_empty() && total != dim {
            return Err(Error::LengthMismatch);
        }
        let s = segments.len().max(1);
        if !has_grad.is_empty() && has_grad.len() != tasks.checked_mul(s).ok_or(Error::Overflow)? {
            return Err(Error::LengthMismatch);
        }
        Ok(Layout {
            tasks,
            dim,
            segments,
            has_grad,
        })
    }

    /// The number of tasks T.
    pub fn tasks(&self) -> usize {
        self.tasks
    }

    /// The number of coordinates N.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The number of segments S (at least 1).
    pub fn num_segments(&self) -> usize {
        self.segments.len().max(1)
    }

    /// The length of segment `s`.
    pub fn segment_len(&self, s: usize) -> usize {
        if self.segments.is_empty() {
            self.dim
        } else {
            self.segments[s]
        }
    }

    /// Whether task `t` has a gradient for segment `s`.
    pub fn has_grad(&self, t: usize, s: usize) -> bool {
        self.has_grad.is_empty() || self.has_grad[t * self.num_segments() + s]
    }

    /// Whether every task has a gradient for segment `s`.
    pub fn is_shared(&self, s: usize) -> bool {
        (0..self.tasks).all(|t| self.has_grad(t, s))
    }

    /// The segments that intersect `lo..hi`, clipped to it, walked from
    /// the segment boundary `from` (at or before `lo`).
    pub(crate) fn pieces(
        &self,
        from: SegPos,
        lo: usize,
        hi: usize,
    ) -> impl Iterator<Item = Segment> + '_ {
        let mut cursor = Pieces::new(from, lo, hi);
        core::iter::from_fn(move || cursor.next(self))
    }

    /// The boundary of the segment that holds coordinate `at` (the end of
    /// the layout past its last coordinate), walking forward from `from`
    /// (a boundary at or before `at`): O(segments passed), so that callers
    /// that walk a layout in order, chunk by chunk or variable by
    /// variable, never rescan it from the start.
    pub(crate) fn seek(&self, mut from: SegPos, at: usize) -> SegPos {
        while from.s < self.num_segments() {
            let end = from.base + self.segment_len(from.s);
            if end > at {
                break;
            }
            from = SegPos {
                s: from.s + 1,
                base: end,
            };
        }
        from
    }

    /// The next (up to) four tasks at or after `from` that have segment `s`:
    /// their indices, how many were found, and where to continue.
    pub(crate) fn group_of_four(&self, s: usize, from: usize) -> ([usize; 4], usize, usize) {
        let mut idx = [0usize; 4];
        let mut n = 0;
        let mut t = from;
        while t < self.tasks && n < 4 {
            if self.has_grad(t, s) {
                idx[n] = t;
                n += 1;
            }
            t += 1;
        }
        (idx, n, t)
    }
}

/// A segment boundary: segment `s` starts at coordinate `base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegPos {
    pub(crate) s: usize,
    pub(crate) base: usize,
}

impl SegPos {
    /// The first segment's start.
    pub(crate) const START: SegPos = SegPos { s: 0, base: 0 };
}

/// A cursor over the segment pieces of a range that does not borrow the
/// layout between steps (so the gradients can be borrowed mutably between
/// them).
pub(crate) struct Pieces {
    s: usize,
    start: usize,
    lo: usize,
    hi: usize,
}

impl Pieces {
    /// The pieces of `lo..hi`, walked from the boundary `from` (at or
    /// before `lo`).
    pub(crate) fn new(from: SegPos, lo: usize, hi: usize) -> Self {
        debug_assert!(from.base <= lo || lo >= hi);
        Pieces {
            s: from.s,
            start: from.base,
            lo,
            hi,
        }
    }

    pub(crate) fn next(&mut self, layout: &Layout<'_>) -> Option<Segment> {
        while self.s < layout.num_segments() && self.start < self.hi {
            let s = self.s;
            let base = self.start;
            let end = base + layout.segment_len(s);
            self.s += 1;
            self.start = end;
            let piece = Segment {
                index: s,
                base,
                start: base.max(self.lo),
                end: end.min(self.hi),
            };
            if piece.start < piece.end {
                return Some(piece);
            }
        }
        None
    }
}

impl Segment {
    /// The sub-pieces of at most `width` columns.
    pub(crate) fn blocks(self, width: usize) -> impl Iterator<Item = Segment> {
        let mut b0 = self.start;
        core::iter::from_fn(move || {
            if b0 >= self.end {
                return None;
            }
            let b1 = self.end.min(b0 + width);
            let piece = Segment {
                start: b0,
                end: b1,
                ..self
            };
            b0 = b1;
            Some(piece)
        })
    }

    /// The number of columns.
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// Read access to the T task gradients of a problem: implemented by
/// [`Flat`], [`FlatMut`], [`PerVariable`] and [`PerVariableMut`]. Sealed: the
/// engine trusts the slice lengths these types validated on construction.
/// `Sync` so that the threaded passes (feature `parallel`) can share them.
pub trait Gradients<F: Element>: sealed::Sealed + Sync {
    /// The shape.
    fn layout(&self) -> &Layout<'_>;
    /// Task `t`'s values on the global coordinates `lo..hi`, which lie inside
    /// segment `seg`, for a task that has that segment.
    #[doc(hidden)]
    fn values(&self, t: usize, seg: &Segment) -> &[F];
}

/// Write access for the in-place projected output.
pub trait GradientsMut<F: Element>: Gradients<F> {
    /// Task `t`'s writable values on `seg`, or `None` when there is no buffer
    /// to write (a per-variable NULL entry).
    #[doc(hidden)]
    fn values_mut(&mut self, t: usize, seg: &Segment) -> Option<&mut [F]>;
    /// Calls `f` with every (task, segment) cell in row-major T x S order:
    /// the task's whole writable buffer for that segment, or `None`. Lets the
    /// threaded apply pass split the buffers by columns without `unsafe`.
    #[doc(hidden)]
    fn cells_mut<'s>(&'s mut self, f: &mut dyn FnMut(Option<&'s mut [F]>));
}

fn check_flat(layout: &Layout<'_>, len: usize) -> Result<()> {
    let need = layout
        .tasks
        .checked_mul(layout.dim)
        .ok_or(Error::Overflow)?;
    if len != need {
        return Err(Error::LengthMismatch);
    }
    Ok(())
}

/// A contiguous row-major T x N gradient buffer (row t = task t), read only.
#[derive(Clone, Copy, Debug)]
pub struct Flat<'a, F> {
    layout: Layout<'a>,
    data: &'a [F],
}

impl<'a, F: Element> Flat<'a, F> {
    /// Wraps `data`, which must hold exactly T * N values.
    pub fn new(layout: Layout<'a>, data: &'a [F]) -> Result<Self> {
        check_flat(&layout, data.len())?;
        Ok(Flat { layout, data })
    }
}

impl<F: Element> sealed::Sealed for Flat<'_, F> {}
impl<F: Element> Gradients<F> for Flat<'_, F> {
    fn layout(&self) -> &Layout<'_> {
        &self.layout
    }
    fn values(&self, t: usize, seg: &Segment) -> &[F] {
        let base = t * self.layout.dim;
        &self.data[base + seg.start..base + seg.end]
    }
}

/// A contiguous row-major T x N gradient buffer that the projected gradients
/// are written back into.
#[derive(Debug)]
pub struct FlatMut<'a, F> {
    layout: Layout<'a>,
    data: &'a mut [F],
}

impl<'a, F: Element> FlatMut<'a, F> {
    /// Wraps `data`, which must hold exactly T * N values.
    pub fn new(layout: Layout<'a>, data: &'a mut [F]) -> Result<Self> {
        check_flat(&layout, data.len())?;
        Ok(FlatMut { layout, data })
    }
}

impl<F: Element> sealed::Sealed for FlatMut<'_, F> {}
impl<F: Element> Gradients<F> for FlatMut<'_, F> {
    fn layout(&self) -> &Layout<'_> {
        &self.layout
    }
    fn values(&self, t: usize, seg: &Segment) -> &[F] {
        let base = t * self.layout.dim;
        &self.data[base + seg.start..base + seg.end]
    }
}
impl<F: Element> GradientsMut<F> for FlatMut<'_, F> {
    fn values_mut(&mut self, t: usize, seg: &Segment) -> Option<&mut [F]> {
        let base = t * self.layout.dim;
        Some(&mut self.data[base + seg.start..base + seg.end])
    }
    fn cells_mut<'s>(&'s mut self, f: &mut dyn FnMut(Option<&'s mut [F]>)) {
        let layout = self.layout;
        let mut rest: &'s mut [F] = &mut *self.data;
        for _ in 0..layout.tasks() {
            for s in 0..layout.num_segments() {
                let (cell, tail) = rest.split_at_mut(layout.segment_len(s));
                f(Some(cell));
                rest = tail;
            }
        }
    }
}

/// The piece's offsets inside a per-variable buffer.
fn offset_in(seg: &Segment) -> (usize, usize) {
    (seg.start - seg.base, seg.end - seg.base)
}

/// Validates per-variable buffers against the segment lengths (`present`
/// gives a cell's buffer length, `None` for no buffer) and the shape checks
/// of [`Layout::new`], writing nothing; returns N. The constructors fill the
/// caller's mask only after this succeeded, so a refused call leaves it as
/// it was.
fn check_per_variable(
    tasks: usize,
    segments: &[usize],
    cells: usize,
    present: impl Fn(usize) -> Option<usize>,
) -> Result<usize> {
    let s = segments.len();
    if cells != tasks.checked_mul(s).ok_or(Error::Overflow)? {
        return Err(Error::LengthMismatch);
    }
    let mut dim: usize = 0;
    for &len in segments {
        dim = dim.checked_add(len).ok_or(Error::Overflow)?;
    }
    for cell in 0..cells {
        if present(cell).is_some_and(|len| len != segments[cell % s]) {
            return Err(Error::LengthMismatch);
        }
    }
    Layout::new(tasks, dim, segments, &[])?;
    Ok(dim)
}

/// One buffer per (task, variable): `vars[t * S + s]` is task t's gradient
/// for variable s, `None` when the task has none (TensorFlow's `None`
/// gradient, an unset PyTorch `.grad`). No packing copy is needed.
#[derive(Clone, Copy, Debug)]
pub struct PerVariable<'a, F> {
    layout: Layout<'a>,
    vars: &'a [Option<&'a [F]>],
}

impl<'a, F: Element> PerVariable<'a, F> {
    /// `segments[s]` is variable s's length; `mask` receives, for each of the
    /// T x S cells, whether the buffer is present (it becomes the layout's
    /// `has_grad`). Each present buffer must be exactly its variable's length.
    pub fn new(
        tasks: usize,
        segments: &'a [usize],
        vars: &'a [Option<&'a [F]>],
        mask: &'a mut [bool],
    ) -> Result<Self> {
        if tasks == 0 {
            return Err(Error::NoTasks);
        }
        if vars.len() != mask.len() {
            return Err(Error::LengthMismatch);
        }
        let dim = check_per_variable(tasks, segments, vars.len(), |c| vars[c].map(<[F]>::len))?;
        for (m, v) in mask.iter_mut().zip(vars) {
            *m = v.is_some();
        }
        let layout = Layout::new(tasks, dim, segments, mask)?;
        Ok(PerVariable { layout, vars })
    }
}

impl<F: Element> sealed::Sealed for PerVariable<'_, F> {}
impl<F: Element> Gradients<F> for PerVariable<'_, F> {
    fn layout(&self) -> &Layout<'_> {
        &self.layout
    }
    fn values(&self, t: usize, seg: &Segment) -> &[F] {
        let (a, b) = offset_in(seg);
        match self.vars[t * self.layout.num_segments() + seg.index] {
            Some(v) => &v[a..b],
            None => &[],
        }
    }
}

/// Like [`PerVariable`], with writable buffers that receive the projected
/// gradients. A `None` cell receives nothing (its projected part is still in
/// the merged gradient).
#[derive(Debug)]
pub struct PerVariableMut<'a, 'b, F> {
    layout: Layout<'a>,
    vars: &'a mut [Option<&'b mut [F]>],
}

impl<'a, 'b, F: Element> PerVariableMut<'a, 'b, F> {
    /// As [`PerVariable::new`].
    pub fn new(
        tasks: usize,
        segments: &'a [usize],
        vars: &'a mut [Option<&'b mut [F]>],
        mask: &'a mut [bool],
    ) -> Result<Self> {
        if tasks == 0 {
            return Err(Error::NoTasks);
        }
        if vars.len() != mask.len() {
            return Err(Error::LengthMismatch);
        }
        let dim = check_per_variable(tasks, segments, vars.len(), |c| {
            vars[c].as_ref().map(|v| v.len())
        })?;
        for (m, v) in mask.iter_mut().zip(vars.iter()) {
            *m = v.is_some();
        }
        let layout = Layout::new(tasks, dim, segments, mask)?;
        Ok(PerVariableMut { layout, vars })
    }
}

impl<F: Element> sealed::Sealed for PerVariableMut<'_, '_, F> {}
impl<F: Element> Gradients<F> for PerVariableMut<'_, '_, F> {
    fn layout(&self) -> &Layout<'_> {
        &self.layout
    }
    fn values(&self, t: usize, seg: &Segment) -> &[F] {
        let (a, b) = offset_in(seg);
        match &self.vars[t * self.layout.num_segments() + seg.index] {
            Some(v) => &v[a..b],
            None => &[],
        }
    }
}
impl<F: Element> GradientsMut<F> for PerVariableMut<'_, '_, F> {
    fn values_mut(&mut self, t: usize, seg: &Segment) -> Option<&mut [F]> {
        let (a, b) = offset_in(seg);
        let s = self.layout.num_segments();
        self.vars[t * s + seg.index]
            .as_deref_mut()
            .map(|v| &mut v[a..b])
    }
    fn cells_mut<'s>(&'s mut self, f: &mut dyn FnMut(Option<&'s mut [F]>)) {
        for v in self.vars.iter_mut() {
            f(v.as_deref_mut());
        }
    }
}
