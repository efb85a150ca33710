//! The argument checks every entry point shares: pointers, overlaps, the
//! config and diagnostics readers, slices of checked buffers.

use core::mem::{align_of, size_of};
use core::ptr;
use core::slice;

use super::types::*;
use crate::api::PcGrad;
use crate::engine::{Mode, Order, Reduction, Stats};
use crate::error::{Error, Result};
use crate::kernels::Element;
use crate::layout::{Flat, FlatMut, Layout};

// ---------------------------------------------------------------------------
// Pointer checks. Nothing here dereferences anything.

/// A required buffer of `len` elements: non-NULL, aligned, with a byte size
/// that fits `isize` and does not wrap the address space.
#[inline(always)]
pub(super) fn req<T>(p: *const T, len: usize) -> Result<()> {
    check_ptr(p as usize, align_of::<T>(), size_of::<T>(), len, false).map(|_| ())
}

/// An optional buffer: length 0 is absent (false) whatever the pointer,
/// which is then neither checked nor read; otherwise as [`req`] (so NULL
/// with a non-zero length is `PCGRAD_ERROR_NULL_POINTER`).
#[inline(always)]
pub(super) fn opt<T>(p: *const T, len: usize) -> Result<bool> {
    check_ptr(p as usize, align_of::<T>(), size_of::<T>(), len, true)
}

/// The one pointer checker, on an address, an alignment (a power of two),
/// an element size and a length: one copy for every element type. Returns
/// whether the buffer is present (false only for an optional buffer of
/// length 0).
#[inline(never)]
fn check_ptr(addr: usize, align: usize, size: usize, len: usize, optional: bool) -> Result<bool> {
    if optional && len == 0 {
        return Ok(false);
    }
    if addr == 0 {
        return Err(Error::NullPointer);
    }
    if addr & (align - 1) != 0 {
        return Err(Error::Misaligned);
    }
    match len.checked_mul(size) {
        Some(b) if b <= isize::MAX as usize && addr.checked_add(b).is_some() => Ok(true),
        _ => Err(Error::Overflow),
    }
}

// ---------------------------------------------------------------------------
// The overlap check.

/// The bytes `lo..hi` of one buffer of a call; an empty buffer (NULL or
/// length 0) is `0..0` and overlaps nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    lo: usize,
    hi: usize,
}

// The per-variable calls keep their output spans in the workspace.
const _: () = assert!(align_of::<Span>() <= align_of::<f64>());
const _: () = assert!(size_of::<Span>() == 2 * size_of::<usize>());

impl Span {
    /// No buffer.
    pub(super) const EMPTY: Span = Span { lo: 0, hi: 0 };

    /// `len` elements at `p` (already checked by [`req`] or [`opt`]).
    #[inline(always)]
    pub(super) fn of<T>(p: *const T, len: usize) -> Span {
        Span::raw(p as usize, size_of::<T>(), len)
    }

    /// `p` when `used`, else nothing.
    #[inline(always)]
    pub(super) fn of_if<T>(used: bool, p: *const T, len: usize) -> Span {
        if used {
            Span::of(p, len)
        } else {
            Span::EMPTY
        }
    }

    /// `len` elements of `size` bytes at `addr`: one copy for every
    /// element type.
    #[inline(never)]
    fn raw(addr: usize, size: usize, len: usize) -> Span {
        let hi = addr.saturating_add(len.saturating_mul(size));
        if addr == 0 || hi == addr {
            Span::EMPTY
        } else {
            Span { lo: addr, hi }
        }
    }

    fn is_empty(self) -> bool {
        self.lo == self.hi
    }
}

/// The one overlap check of the C ABI: every output must be disjoint from
/// every other output and from every input (inputs may overlap each other).
/// Sorts `outs` by address in place (the caller's storage), checks
/// neighbours, then looks each input up by binary search:
/// O((O + I) log O) for O outputs and I inputs.
#[inline(never)]
pub(super) fn disjoint(outs: &mut [Span], ins: &mut dyn Iterator<Item = Span>) -> Result<()> {
    sort_by_start(outs);
    // Empty spans are 0..0 and sort first.
    let empty = outs.iter().take_while(|s| s.is_empty()).count();
    let outs = &outs[empty..];
    if outs.windows(2).any(|w| w[1].lo < w[0].hi) {
        return Err(Error::Overlap);
    }
    // Disjoint and sorted by start, so sorted by end too: the first output
    // that ends after an input starts is the only one that can overlap it
    // first.
    for i in ins.filter(|i| !i.is_empty()) {
        let k = outs.partition_point(|o| o.hi <= i.lo);
        if k < outs.len() && outs[k].lo < i.hi {
            return Err(Error::Overlap);
        }
    }
    Ok(())
}

/// Sorts spans by start address in place: a heapsort, O(n log n) for the
/// thousands of buffers of a per-variable call, in about 150 bytes of
/// Cortex-M code (core's `sort_unstable` brings several KiB of sorting
/// networks into a firmware that sorts five spans).
fn sort_by_start(v: &mut [Span]) {
    // Moves v[root] down the max-heap v[..end].
    fn sift(v: &mut [Span], mut root: usize, end: usize) {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && v[child].lo < v[child + 1].lo {
                child += 1;
            }
            if v[root].lo >= v[child].lo {
                return;
            }
            v.swap(root, child);
            root = child;
        }
    }
    let n = v.len();
    for root in (0..n / 2).rev() {
        sift(v, root, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift(v, 0, end);
    }
}

/// The overlap check over fixed lists (the flat and phase calls, a
/// handful of buffers): the same answer as [`disjoint`], pair by pair,
/// O(O (O + I)), in a fraction of its code (a firmware that calls only
/// these entry points then links no sort).
#[inline(never)]
pub(super) fn disjoint_fixed(outs: &[Span], ins: &[Span]) -> Result<()> {
    // An empty span is 0..0 and overlaps nothing (0 < hi is false for it).
    let meet = |a: &Span, b: &Span| a.lo < b.hi && b.lo < a.hi;
    let mut rest = outs;
    while let Some((o, later)) = rest.split_first() {
        if later.iter().any(|x| meet(o, x)) || ins.iter().any(|x| meet(o, x)) {
            return Err(Error::Overlap);
        }
        rest = later;
    }
    Ok(())
}

/// [`disjoint`] for outputs that cannot be copied into caller storage
/// (`pcgrad_unflatten` has no workspace; `outs` lists them afresh on each
/// call). Outputs in ascending address order (carved from one allocation,
/// or allocated in turn) take O(O + O I); any other order is checked in
/// stack chunks of 64, O(O^2 / 64 + O I). The same answer either way.
pub(super) fn disjoint_unstored<I, F>(outs: F, ins: &[Span]) -> Result<()>
where
    I: Iterator<Item = Span>,
    F: Fn() -> I,
{
    let mut end = 0;
    if outs().filter(|o| !o.is_empty()).all(|o| {
        let ok = o.lo >= end;
        end = o.hi;
        ok
    }) {
        // Pairwise disjoint; each input against each output.
        for &i in ins {
            let mut one = [i];
            disjoint(&mut one, &mut outs())?;
        }
        return Ok(());
    }
    const CHUNK: usize = 64;
    let mut buf = [Span::EMPTY; CHUNK];
    let mut start = 0;
    loop {
        let mut n = 0;
        for o in outs().skip(start).take(CHUNK) {
            buf[n] = o;
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        // This chunk against the inputs and every later output; the later
        // outputs among themselves in their own chunks.
        let later = outs().skip(start + n);
        disjoint(&mut buf[..n], &mut ins.iter().copied().chain(later))?;
        start += n;
    }
}

/// Copies the spans of `outs` into the start of a per-variable call's
/// workspace, for [`disjoint`] to sort.
///
/// # Safety
///
/// `workspace` passed [`req`] for `len` doubles, and its span has passed
/// [`disjoint`] against every table that `outs` reads, so writing it
/// changes nothing `outs` reads.
pub(super) unsafe fn spans_in<'a>(
    workspace: *mut f64,
    len: usize,
    outs: impl Iterator<Item = Span>,
) -> Result<&'a mut [Span]> {
    // No overflow: `len` doubles passed `req`, so their bytes fit `isize`.
    let cap = len * size_of::<f64>() / size_of::<Span>();
    let base = workspace.cast::<Span>();
    let mut n = 0;
    for s in outs {
        if n == cap {
            return Err(Error::WorkspaceTooSmall);
        }
        // SAFETY: `n < cap` spans fit in the `len` doubles of the workspace
        // (a `Span` is no more aligned than an `f64`).
        unsafe { ptr::write(base.add(n), s) };
        n += 1;
    }
    // SAFETY: the first `n` spans were written just above; the workspace
    // is the caller's scratch, referenced nowhere else during the check.
    Ok(unsafe { slice::from_raw_parts_mut(base, n) })
}

/// A validated configuration, copied out of the caller's struct.
pub(super) struct Config {
    pub(super) raw: pcgrad_config,
    pub(super) reduction: Reduction,
    pub(super) check_finite: bool,
    pub(super) uses_rng: bool,
    pub(super) uses_table: bool,
}

impl Config {
    /// Reads and checks the config of a call with `tasks` tasks: an
    /// explicit order table used with T >= 2 must not be NULL (it has
    /// T (T - 1) > 0 entries).
    #[inline(always)]
    pub(super) fn read(config: *const pcgrad_config, tasks: usize) -> Result<Config> {
        req(config, 1)?;
        // SAFETY: `config` is non-NULL and aligned (checked above) and the
        // caller promises it points at a `pcgrad_config`; every field is a
        // plain integer or pointer, for which any bit pattern is valid.
        let raw = unsafe { ptr::read(config) };
        let cfg = Config::check(raw)?;
        if cfg.uses_table && raw.order_table.is_null() && tasks >= 2 {
            return Err(Error::NullPointer);
        }
        Ok(cfg)
    }

    #[inline(always)]
    pub(super) fn check(raw: pcgrad_config) -> Result<Config> {
        if raw.mode > PCGRAD_MODE_SIMULTANEOUS
            || raw.order > PCGRAD_ORDER_EXPLICIT
            || raw.check_finite > 1
            || raw.matrix > PCGRAD_MATRIX_COSINE
        {
            return Err(Error::InvalidEnum);
        }
        let reduction = reduction_of(raw.reduction)?;
        let seq = raw.mode == PCGRAD_MODE_SEQUENTIAL;
        let uses_rng = seq && raw.order == PCGRAD_ORDER_SHUFFLED;
        let uses_table = seq && raw.order == PCGRAD_ORDER_EXPLICIT;
        if uses_rng {
            req(raw.rng, 1)?;
        }
        if uses_table {
            // NULL is fine with length 0 (T = 1 has an empty table); the
            // length itself is checked against T with the table's contents.
            opt(raw.order_table, raw.order_table_len)?;
        }
        Ok(Config {
            raw,
            reduction,
            check_finite: raw.check_finite == 1,
            uses_rng,
            uses_table,
        })
    }

    /// The regions the config reads (the struct itself, the order table).
    #[inline(always)]
    pub(super) fn inputs(&self, config: *const pcgrad_config) -> [Span; 2] {
        [
            Span::of(config, 1),
            Span::of_if(
                self.uses_table,
                self.raw.order_table,
                self.raw.order_table_len,
            ),
        ]
    }

    /// The region the config writes (the PRNG state).
    #[inline(always)]
    pub(super) fn output(&self) -> Span {
        Span::of_if(self.uses_rng, self.raw.rng, 1)
    }

    /// The one-call projection this config describes.
    ///
    /// # Safety
    ///
    /// As [`Config::mode`].
    pub(super) unsafe fn pcgrad<'a>(&self) -> PcGrad<'a> {
        // SAFETY: forwarded to the caller.
        PcGrad::with_mode(unsafe { self.mode() })
            .reduction(self.reduction)
            .check_finite(self.check_finite)
            .threads(self.raw.threads)
    }

    /// The projection mode.
    ///
    /// # Safety
    ///
    /// The config's buffers passed [`Config::check`] and the overlap checks
    /// of the call, and stay valid and unaliased for `'a`.
    pub(super) unsafe fn mode<'a>(&self) -> Mode<'a> {
        if self.raw.mode == PCGRAD_MODE_SIMULTANEOUS {
            Mode::Simultaneous
        } else if self.uses_rng {
            // SAFETY: non-NULL and aligned (checked), a `pcgrad_rng` by the
            // caller's contract, and disjoint from every other buffer of the
            // call (overlap check), so this is the only reference to it.
            Mode::Sequential(Order::Shuffled(unsafe { &mut *self.raw.rng }))
        } else if self.uses_table {
            // SAFETY: checked by `opt` (NULL only with length 0, which
            // `view` maps to an empty slice), read-only for the call.
            Mode::Sequential(Order::Explicit(unsafe {
                view(self.raw.order_table, self.raw.order_table_len)
            }))
        } else {
            Mode::Sequential(Order::Fixed)
        }
    }
}

pub(super) fn reduction_of(r: u32) -> Result<Reduction> {
    match r {
        PCGRAD_REDUCTION_MEAN => Ok(Reduction::Mean),
        PCGRAD_REDUCTION_SUM => Ok(Reduction::Sum),
        _ => Err(Error::InvalidEnum),
    }
}

/// The optional diagnostics of a one-call entry point.
pub(super) struct Diag {
    pub(super) stats: *mut pcgrad_stats,
    pub(super) matrix: *mut f64,
    pub(super) matrix_len: usize,
}

impl Diag {
    /// Checks the optional outputs: `stats` (NULL: not wanted) and the
    /// T x T `matrix` (length 0: not wanted, whatever the pointer). Without
    /// the `diagnostics` feature a matrix that passes its pointer and
    /// length checks is refused with [`Error::Unsupported`]: never
    /// silently left unwritten.
    #[inline(always)]
    pub(super) fn check(
        stats: *mut pcgrad_stats,
        matrix: *mut f64,
        matrix_len: usize,
        tasks: usize,
    ) -> Result<Diag> {
        if !stats.is_null() {
            req(stats, 1)?;
        }
        let has_matrix = opt(matrix, matrix_len)?;
        if has_matrix {
            let tt = tasks.checked_mul(tasks).ok_or(Error::Overflow)?;
            if matrix_len != tt {
                return Err(Error::LengthMismatch);
            }
            if cfg!(not(feature = "diagnostics")) {
                return Err(Error::Unsupported);
            }
        }
        Ok(Diag {
            stats,
            matrix: if has_matrix { matrix } else { ptr::null_mut() },
            matrix_len,
        })
    }

    #[inline(always)]
    pub(super) fn spans(&self) -> [Span; 2] {
        [
            Span::of(self.stats, 1),
            Span::of(self.matrix, self.matrix_len),
        ]
    }

    /// Writes the diagnostics after a successful run.
    ///
    /// # Safety
    ///
    /// The pointers passed [`Diag::check`] and the overlap checks.
    pub(super) unsafe fn write(
        &self,
        cfg: &Config,
        tasks: usize,
        gram: &[f64],
        st: Stats,
    ) -> Result<()> {
        // Without `diagnostics` the matrix is always NULL here (refused by
        // `Diag::check`), and its code (the cosine's square roots) is left
        // out.
        #[cfg(not(feature = "diagnostics"))]
        let _ = (cfg, tasks, gram);
        #[cfg(feature = "diagnostics")]
        if !self.matrix.is_null() {
            // SAFETY: checked by `req` for `matrix_len` doubles, disjoint
            // from every other buffer of the call.
            let m = unsafe { slice::from_raw_parts_mut(self.matrix, self.matrix_len) };
            let tt = tasks * tasks;
            if cfg.raw.matrix == PCGRAD_MATRIX_COSINE {
                crate::api::cosine_matrix(gram, tasks, m)?;
            } else {
                m.copy_from_slice(&gram[..tt]);
            }
        }
        if !self.stats.is_null() {
            // SAFETY: non-NULL, aligned, disjoint from the other buffers.
            unsafe {
                ptr::write(
                    self.stats,
                    pcgrad_stats {
                        conflicting_pairs: st.conflicting_pairs,
                        projections: st.projections,
                    },
                )
            };
        }
        Ok(())
    }
}

/// The T x S has_grad mask as `bool`s, after checking every byte is 0 or 1.
///
/// # Safety
///
/// `p` passed [`opt`] for `len` bytes and is only read during the call.
pub(super) unsafe fn mask<'a>(p: *const u8, len: usize) -> Result<&'a [bool]> {
    if p.is_null() || len == 0 {
        return Ok(&[]);
    }
    // SAFETY: checked by `opt` (u8 has alignment 1); read-only.
    let bytes = unsafe { slice::from_raw_parts(p, len) };
    if bytes.iter().any(|&b| b > 1) {
        return Err(Error::InvalidEnum);
    }
    // SAFETY: every byte is 0 or 1, the valid `bool` bit patterns, and
    // `bool` has the size and alignment of `u8`.
    Ok(unsafe { slice::from_raw_parts(p.cast::<bool>(), len) })
}

/// A read-only slice of a buffer that passed [`req`] or [`opt`] (NULL gives
/// an empty slice).
///
/// # Safety
///
/// As for `slice::from_raw_parts`, given the checks.
pub(super) unsafe fn view<'a, T>(p: *const T, len: usize) -> &'a [T] {
    if p.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: forwarded to the caller.
        unsafe { slice::from_raw_parts(p, len) }
    }
}

/// A writable slice of a buffer that passed [`req`] or [`opt`] and the
/// overlap checks.
///
/// # Safety
///
/// As for `slice::from_raw_parts_mut`, given the checks.
pub(super) unsafe fn view_mut<'a, T>(p: *mut T, len: usize) -> &'a mut [T] {
    if p.is_null() || len == 0 {
        &mut []
    } else {
        // SAFETY: forwarded to the caller.
        unsafe { slice::from_raw_parts_mut(p, len) }
    }
}

/// The shape arguments of the flat entry points, checked once: the T x N
/// gradient buffer (of `f32`, or `f64` for the `_f64` calls), the optional
/// segment lengths and has_grad mask.
pub(super) struct FlatArgs<F: Element = f32> {
    grads: *const F,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    /// T.
    pub(super) tasks: usize,
    dim: usize,
}

impl<F: Element> FlatArgs<F> {
    /// Checks the pointers, T > 0 and `grads_len` = T * N.
    #[inline(always)]
    pub(super) fn check(
        grads: *const F,
        grads_len: usize,
        segments: *const usize,
        segments_len: usize,
        has_grad: *const u8,
        has_grad_len: usize,
        tasks: usize,
        dim: usize,
    ) -> Result<FlatArgs<F>> {
        req(grads, grads_len)?;
        opt(segments, segments_len)?;
        opt(has_grad, has_grad_len)?;
        if tasks == 0 {
            return Err(Error::NoTasks);
        }
        let tn = tasks.checked_mul(dim).ok_or(Error::Overflow)?;
        if grads_len != tn {
            return Err(Error::LengthMismatch);
        }
        Ok(FlatArgs {
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
        })
    }

    /// The gradient buffer.
    #[inline(always)]
    pub(super) fn grads(&self) -> Span {
        Span::of(self.grads, self.grads_len)
    }

    /// The read-only shape buffers (segments, has_grad).
    #[inline(always)]
    pub(super) fn shape(&self) -> [Span; 2] {
        [
            Span::of(self.segments, self.segments_len),
            Span::of(self.has_grad, self.has_grad_len),
        ]
    }

    /// The layout, after checking every mask byte.
    ///
    /// # Safety
    ///
    /// The shape buffers stay valid and unwritten for `'a`.
    #[inline(always)]
    pub(super) unsafe fn layout<'a>(&self) -> Result<Layout<'a>> {
        // SAFETY: checked by `opt`, read-only (the caller's promise).
        unsafe {
            let segs = view(self.segments, self.segments_len);
            // Lengths before contents: the shape without the mask first,
            // then the mask's length, and only then its bytes.
            let s = Layout::new(self.tasks, self.dim, segs, &[])?.num_segments();
            let ts = self.tasks.checked_mul(s).ok_or(Error::Overflow)?;
            if self.has_grad_len != 0 && self.has_grad_len != ts {
                return Err(Error::LengthMismatch);
            }
            let hg = mask(self.has_grad, self.has_grad_len)?;
            Layout::new(self.tasks, self.dim, segs, hg)
        }
    }

    /// The gradients, read-only.
    ///
    /// # Safety
    ///
    /// As [`FlatArgs::layout`], and the gradients are not written for `'a`.
    #[inline(always)]
    pub(super) unsafe fn flat<'a>(&self) -> Result<Flat<'a, F>> {
        // SAFETY: forwarded; `grads` passed `req`.
        unsafe { Flat::new(self.layout()?, view(self.grads, self.grads_len)) }
    }

    /// The gradients, written in place.
    ///
    /// # Safety
    ///
    /// As [`FlatArgs::layout`]; `grads` was passed as a `*mut` pointer and
    /// is disjoint from every other buffer of the call (overlap check).
    pub(super) unsafe fn flat_mut<'a>(&self) -> Result<FlatMut<'a, F>> {
        // SAFETY: forwarded; `grads` passed `req`.
        unsafe {
            FlatMut::new(
                self.layout()?,
                view_mut(self.grads.cast_mut(), self.grads_len),
            )
        }
    }
}

/// The T x S table of per-variable buffers and the S segment lengths,
/// checked once (as [`FlatArgs`] for the flat calls).
pub(super) struct VarsArgs<'a, F = f32> {
    /// The T x S pointers, row-major by task (NULL: no gradient).
    pub(super) vars: &'a [*const F],
    /// The S variable lengths.
    pub(super) segs: &'a [usize],
    /// N, the sum of the lengths.
    pub(super) dim: usize,
    table: Span,
}

impl<'a, F> VarsArgs<'a, F> {
    /// Checks both tables, T > 0, `vars_len` = T * S, that N fits and
    /// every present buffer. `segments` is required.
    ///
    /// # Safety
    ///
    /// The tables hold the lengths given and are not written for `'a`.
    pub(super) unsafe fn check(
        vars: *const *const F,
        vars_len: usize,
        segments: *const usize,
        segments_len: usize,
        tasks: usize,
    ) -> Result<VarsArgs<'a, F>> {
        req(vars, vars_len)?;
        req(segments, segments_len)?;
        if tasks == 0 {
            return Err(Error::NoTasks);
        }
        let cells = tasks.checked_mul(segments_len).ok_or(Error::Overflow)?;
        if vars_len != cells {
            return Err(Error::LengthMismatch);
        }
        // SAFETY: checked by `req` above; read-only.
        let (vs, segs) = unsafe { (view(vars, vars_len), view(segments, segments_len)) };
        let mut dim: usize = 0;
        for &len in segs {
            dim = dim.checked_add(len).ok_or(Error::Overflow)?;
        }
        for (c, &p) in vs.iter().enumerate() {
            if !p.is_null() {
                req(p, segs[c % segments_len])?;
            }
        }
        Ok(VarsArgs {
            vars: vs,
            segs,
            dim,
            table: Span::of(vars, vars_len),
        })
    }

    /// The two tables.
    pub(super) fn tables(&self) -> [Span; 2] {
        [self.table, Span::of(self.segs.as_ptr(), self.segs.len())]
    }

    /// Every present variable buffer.
    pub(super) fn buffers(&self) -> impl Iterator<Item = Span> + 'a {
        let segs = self.segs;
        self.vars
            .iter()
            .enumerate()
            .map(move |(c, &p)| Span::of(p, segs[c % segs.len()]))
    }
}

/// Checks a table of `len` output pointers (0 or S; none NULL) against the
/// segment lengths.
///
/// # Safety
///
/// `outs` passed `req` or `opt` for `len` pointers and is only read.
pub(super) unsafe fn outs_table<'a, F>(
    outs: *const *mut F,
    len: usize,
    segs: &[usize],
) -> Result<&'a [*mut F]> {
    debug_assert!(len == 0 || len == segs.len());
    // SAFETY: forwarded to the caller; read-only.
    let ptrs = unsafe { view(outs, len) };
    for (&p, &n) in ptrs.iter().zip(segs) {
        req(p, n)?;
    }
    Ok(ptrs)
}

/// The spans of an output table from [`outs_table`].
pub(super) fn out_spans<'a, F>(
    ptrs: &'a [*mut F],
    segs: &'a [usize],
) -> impl Iterator<Item = Span> + 'a {
    ptrs.iter().zip(segs).map(|(&p, &len)| Span::of(p, len))
}

pub(super) fn check_workspace(workspace: *mut f64, len: usize, need: usize) -> Result<()> {
    req(workspace, len)?;
    if len < need {
        return Err(Error::WorkspaceTooSmall);
    }
    Ok(())
}
