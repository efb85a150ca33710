//! The argument checks every entry point shares: pointers, overlaps, the
//! config and diagnostics readers, slices of checked buffers.

use core::mem::{align_of, size_of};
use core::ptr;
use core::slice;

use super::types::*;
use crate::api::cosine_matrix;
use crate::engine::{Mode, Order, Reduction, Stats};
use crate::error::{Error, Result};

// ---------------------------------------------------------------------------
// Pointer checks. Nothing here dereferences anything.

/// A required buffer of `len` elements: non-NULL, aligned, with a byte size
/// that fits `isize` and does not wrap the address space.
#[inline(always)]
pub(super) fn req<T>(p: *const T, len: usize) -> Result<()> {
    req_raw(p as usize, align_of::<T>(), size_of::<T>(), len)
}

/// [`req`] on an address, an alignment (a power of two), an element size
/// and a length: one copy for every element type.
#[inline]
pub(super) fn req_raw(addr: usize, align: usize, size: usize, len: usize) -> Result<()> {
    if addr == 0 {
        return Err(Error::NullPointer);
    }
    if addr & (align - 1) != 0 {
        return Err(Error::Misaligned);
    }
    match len.checked_mul(size) {
        Some(b) if b <= isize::MAX as usize && addr.checked_add(b).is_some() => Ok(()),
        _ => Err(Error::Overflow),
    }
}

/// An optional buffer: NULL with length 0 is absent (false).
#[inline(always)]
pub(super) fn opt<T>(p: *const T, len: usize) -> Result<bool> {
    opt_raw(p as usize, align_of::<T>(), size_of::<T>(), len)
}

/// [`opt`] on the arguments of [`req_raw`].
#[inline(never)]
pub(super) fn opt_raw(addr: usize, align: usize, size: usize, len: usize) -> Result<bool> {
    if addr == 0 {
        if len != 0 {
            return Err(Error::NullPointer);
        }
        return Ok(false);
    }
    req_raw(addr, align, size, len).map(|()| true)
}

/// An address range, for the overlap checks.
#[derive(Clone, Copy, Debug)]
pub(super) struct Region {
    pub(super) lo: usize,
    pub(super) hi: usize,
}

impl Region {
    /// `len` elements at `p` (already checked by [`req`]); NULL is empty.
    #[inline(always)]
    pub(super) fn of<T>(p: *const T, len: usize) -> Region {
        Region::raw(p as usize, size_of::<T>(), len)
    }

    /// `len` elements of `size` bytes at `lo` (0 is empty): one copy for
    /// every element type.
    #[inline(never)]
    pub(super) fn raw(lo: usize, size: usize, len: usize) -> Region {
        if lo == 0 {
            return Region { lo: 0, hi: 0 };
        }
        Region {
            lo,
            hi: lo.saturating_add(len.saturating_mul(size)),
        }
    }

    pub(super) const EMPTY: Region = Region { lo: 0, hi: 0 };

    pub(super) fn overlaps(self, o: Region) -> bool {
        self.lo < self.hi && o.lo < o.hi && self.lo < o.hi && o.lo < self.hi
    }
}

/// Calls a visitor with every region of a set; stops at the first error.
pub(super) type Visit<'v> = dyn FnMut(Region) -> Result<()> + 'v;
pub(super) type RegionSet<'s> = dyn Fn(&mut Visit<'_>) -> Result<()> + 's;

/// Every output region must be disjoint from every input region and from
/// every other output region.
pub(super) fn disjoint(outs: &RegionSet<'_>, ins: &RegionSet<'_>) -> Result<()> {
    let mut k = 0usize;
    outs(&mut |o| {
        ins(&mut |i| {
            if o.overlaps(i) {
                Err(Error::Overlap)
            } else {
                Ok(())
            }
        })?;
        let mut m = 0usize;
        outs(&mut |o2| {
            let later = m > k;
            m += 1;
            if later && o.overlaps(o2) {
                Err(Error::Overlap)
            } else {
                Ok(())
            }
        })?;
        k += 1;
        Ok(())
    })
}

/// A buffer of a call as its address, element size and length, for
/// [`disjoint_spans`]: cheaper to list than the [`Region`] it stands for.
#[derive(Clone, Copy)]
pub(super) struct Span {
    pub(super) addr: usize,
    pub(super) size: usize,
    pub(super) len: usize,
}

impl Span {
    /// `len` elements at `p` (NULL is empty).
    #[inline(always)]
    pub(super) fn of<T>(p: *const T, len: usize) -> Span {
        Span {
            addr: p as usize,
            size: size_of::<T>(),
            len,
        }
    }

    /// `p` when `used`, else nothing.
    #[inline(always)]
    pub(super) fn of_if<T>(used: bool, p: *const T, len: usize) -> Span {
        Span::of(if used { p } else { ptr::null() }, len)
    }

    pub(super) fn region(&self) -> Region {
        Region::raw(self.addr, self.size, self.len)
    }
}

/// [`disjoint`] for one list of buffers whose first `outs` are the
/// outputs: each output must be disjoint from every other buffer.
#[inline(never)]
pub(super) fn disjoint_spans(spans: &[Span], outs: usize) -> Result<()> {
    for (k, o) in spans.iter().take(outs).enumerate() {
        let o = o.region();
        for (j, s) in spans.iter().enumerate() {
            if j != k && o.overlaps(s.region()) {
                return Err(Error::Overlap);
            }
        }
    }
    Ok(())
}

pub(super) fn each(rs: &[Region], f: &mut Visit<'_>) -> Result<()> {
    rs.iter().try_for_each(|&r| f(r))
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
    pub(super) fn read(config: *const pcgrad_config) -> Result<Config> {
        req(config, 1)?;
        // SAFETY: `config` is non-NULL and aligned (checked above) and the
        // caller promises it points at a `pcgrad_config`; every field is a
        // plain integer or pointer, for which any bit pattern is valid.
        let raw = unsafe { ptr::read(config) };
        Config::check(raw)
    }

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
    pub(super) fn inputs(&self, config: *const pcgrad_config) -> [Region; 2] {
        [
            Region::of(config, 1),
            if self.uses_table {
                Region::of(self.raw.order_table, self.raw.order_table_len)
            } else {
                Region::EMPTY
            },
        ]
    }

    /// The region the config writes (the PRNG state).
    pub(super) fn output(&self) -> Region {
        if self.uses_rng {
            Region::of(self.raw.rng, 1)
        } else {
            Region::EMPTY
        }
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
    pub(super) fn check(
        stats: *mut pcgrad_stats,
        matrix: *mut f64,
        matrix_len: usize,
        tasks: usize,
    ) -> Result<Diag> {
        Diag::validate(stats, matrix, matrix_len, tasks)?;
        Ok(Diag {
            stats,
            matrix,
            matrix_len,
        })
    }

    /// The checks of [`Diag::check`], without the copy.
    pub(super) fn validate(
        stats: *mut pcgrad_stats,
        matrix: *mut f64,
        matrix_len: usize,
        tasks: usize,
    ) -> Result<()> {
        if !stats.is_null() {
            req(stats, 1)?;
        }
        if opt(matrix, matrix_len)? {
            let tt = tasks.checked_mul(tasks).ok_or(Error::Overflow)?;
            if matrix_len != tt {
                return Err(Error::LengthMismatch);
            }
        }
        Ok(())
    }

    pub(super) fn regions(&self) -> [Region; 2] {
        [
            Region::of(self.stats, usize::from(!self.stats.is_null())),
            Region::of(self.matrix, self.matrix_len),
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
        if !self.matrix.is_null() {
            // SAFETY: checked by `req` for `matrix_len` doubles, disjoint
            // from every other buffer of the call.
            let m = unsafe { slice::from_raw_parts_mut(self.matrix, self.matrix_len) };
            let tt = tasks * tasks;
            if cfg.raw.matrix == PCGRAD_MATRIX_COSINE {
                cosine_matrix(gram, tasks, m)?;
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
    if p.is_null() {
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
    if p.is_null() {
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
    if p.is_null() {
        &mut []
    } else {
        // SAFETY: forwarded to the caller.
        unsafe { slice::from_raw_parts_mut(p, len) }
    }
}

/// Checks the shape arguments shared by the flat entry points.
pub(super) fn flat_shape(
    grads: *const f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
) -> Result<()> {
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
    Ok(())
}

pub(super) fn check_workspace(workspace: *mut f64, len: usize, need: usize) -> Result<()> {
    req(workspace, len)?;
    if len < need {
        return Err(Error::WorkspaceTooSmall);
    }
    Ok(())
}
