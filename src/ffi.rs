//! The C ABI (DESIGN section 5): the only module with raw pointers and
//! `extern "C"`. `include/pcgrad.h` is generated from this file by cbindgen.
//!
//! Conventions, for every `pcgrad_*` function:
//!
//! - Every function returns a [`pcgrad_status`] (except
//!   [`pcgrad_status_str`] and [`pcgrad_version`]): `PCGRAD_OK` (0) or a
//!   negative error equal to [`Error::code`], never renumbered.
//! - Argument order (CMSIS-DSP): configuration, const inputs, sizes, outputs,
//!   workspace. Every buffer pointer is followed by its length in elements.
//! - NULL is accepted only for optional buffers (with length 0) and outputs
//!   (documented per function). A required NULL pointer gives
//!   `PCGRAD_ERROR_NULL_POINTER`, a misaligned one `PCGRAD_ERROR_MISALIGNED`.
//! - Everything is validated before anything is written: a failed call
//!   leaves every caller buffer untouched except the workspace (scratch).
//! - Output buffers may not overlap any other buffer of the call
//!   (`PCGRAD_ERROR_OVERLAP`); in-place projection writes the gradients over
//!   themselves. Read-only inputs may overlap each other.
//! - The library keeps no state: calls on different buffers may run on
//!   different threads at the same time.
//! - Enumerations cross the ABI as `uint32_t` fields checked on entry
//!   (`PCGRAD_ERROR_INVALID_ENUM` when out of range), flags as 0 or 1.
#![allow(non_camel_case_types)]
#![allow(clippy::too_many_arguments)]

use core::ffi::c_char;
use core::mem::{align_of, size_of};
use core::ptr;
use core::slice;

use crate::api::{cosine_matrix, split_rest, workspace_len, PcGrad};
use crate::engine::{self, coefficients, Coefficients, Mode, Order, Reduction, Stats};
use crate::error::{Error, Result};
use crate::layout::{Flat, FlatMut, Gradients, Layout, PerVariable, PerVariableMut};
use crate::rng::Rng;

/// Major version of the library (matches `PCGRAD_VERSION_MAJOR`).
pub const PCGRAD_VERSION_MAJOR: u32 = 0;
/// Minor version of the library (matches `PCGRAD_VERSION_MINOR`).
pub const PCGRAD_VERSION_MINOR: u32 = 1;
/// Patch version of the library (matches `PCGRAD_VERSION_PATCH`).
pub const PCGRAD_VERSION_PATCH: u32 = 0;

const fn parse_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut v = 0u32;
    let mut i = 0;
    while i < b.len() {
        v = v * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    v
}

// The header's version constants must follow Cargo.toml.
const _: () = assert!(PCGRAD_VERSION_MAJOR == parse_u32(env!("CARGO_PKG_VERSION_MAJOR")));
const _: () = assert!(PCGRAD_VERSION_MINOR == parse_u32(env!("CARGO_PKG_VERSION_MINOR")));
const _: () = assert!(PCGRAD_VERSION_PATCH == parse_u32(env!("CARGO_PKG_VERSION_PATCH")));

/// `pcgrad_config.mode`: the paper's Algorithm 1 (each dot product with the
/// already projected gradient, in the order given by `order`).
pub const PCGRAD_MODE_SEQUENTIAL: u32 = 0;
/// `pcgrad_config.mode`: every dot product with the original gradient (the
/// seed's `PCGrad` and `PPCGrad` classes); `order` is ignored.
pub const PCGRAD_MODE_SIMULTANEOUS: u32 = 1;

/// `pcgrad_config.order`: ascending task index.
pub const PCGRAD_ORDER_FIXED: u32 = 0;
/// `pcgrad_config.order`: a fresh random permutation per task per call,
/// drawn from `*pcgrad_config.rng`, which advances on success.
pub const PCGRAD_ORDER_SHUFFLED: u32 = 1;
/// `pcgrad_config.order`: the table `pcgrad_config.order_table`, T rows of
/// T - 1 task indices (row i lists the tasks j != i in visiting order).
pub const PCGRAD_ORDER_EXPLICIT: u32 = 2;

/// `pcgrad_config.reduction`: mean over tasks on shared coordinates, sum on
/// task-specific ones (the seed's default).
pub const PCGRAD_REDUCTION_MEAN: u32 = 0;
/// `pcgrad_config.reduction`: sum over tasks everywhere.
pub const PCGRAD_REDUCTION_SUM: u32 = 1;

/// `pcgrad_config.matrix`: the diagnostic matrix is the Gram matrix
/// g_i . g_j.
pub const PCGRAD_MATRIX_GRAM: u32 = 0;
/// `pcgrad_config.matrix`: the diagnostic matrix is the cosine matrix
/// cos(g_i, g_j) (0 for a zero gradient).
pub const PCGRAD_MATRIX_COSINE: u32 = 1;

/// The status every call returns: `PCGRAD_OK` or a negative error. Codes
/// are stable and never renumbered or reused.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum pcgrad_status {
    /// Success.
    PCGRAD_OK = 0,
    /// A required pointer is NULL, or an optional one is NULL with a
    /// non-zero length.
    PCGRAD_ERROR_NULL_POINTER = -1,
    /// The number of tasks is zero.
    PCGRAD_ERROR_NO_TASKS = -2,
    /// A buffer length does not match the shape.
    PCGRAD_ERROR_LENGTH_MISMATCH = -3,
    /// T * N or another size computation overflows.
    PCGRAD_ERROR_OVERFLOW = -4,
    /// The workspace is shorter than the documented length.
    PCGRAD_ERROR_WORKSPACE_TOO_SMALL = -5,
    /// An input holds NaN or infinity and `check_finite` is set.
    PCGRAD_ERROR_NON_FINITE = -6,
    /// An output buffer overlaps another buffer of the call.
    PCGRAD_ERROR_OVERLAP = -7,
    /// An enumeration or flag value is out of range.
    PCGRAD_ERROR_INVALID_ENUM = -8,
    /// An explicit order table is not a permutation of the other tasks.
    PCGRAD_ERROR_INVALID_ORDER = -9,
    /// A coordinate range is inverted or runs past N.
    PCGRAD_ERROR_INVALID_RANGE = -10,
    /// A pointer is not aligned for its element type.
    PCGRAD_ERROR_MISALIGNED = -11,
    /// A method parameter is negative or out of range.
    PCGRAD_ERROR_INVALID_PARAMETER = -12,
    /// A Gram matrix is not positive semidefinite.
    PCGRAD_ERROR_NOT_PSD = -13,
}

impl From<Error> for pcgrad_status {
    fn from(e: Error) -> Self {
        use pcgrad_status::*;
        match e {
            Error::NullPointer => PCGRAD_ERROR_NULL_POINTER,
            Error::NoTasks => PCGRAD_ERROR_NO_TASKS,
            Error::LengthMismatch => PCGRAD_ERROR_LENGTH_MISMATCH,
            Error::Overflow => PCGRAD_ERROR_OVERFLOW,
            Error::WorkspaceTooSmall => PCGRAD_ERROR_WORKSPACE_TOO_SMALL,
            Error::NonFinite => PCGRAD_ERROR_NON_FINITE,
            Error::Overlap => PCGRAD_ERROR_OVERLAP,
            Error::InvalidEnum => PCGRAD_ERROR_INVALID_ENUM,
            Error::InvalidOrder => PCGRAD_ERROR_INVALID_ORDER,
            Error::InvalidRange => PCGRAD_ERROR_INVALID_RANGE,
            Error::Misaligned => PCGRAD_ERROR_MISALIGNED,
            Error::InvalidParameter => PCGRAD_ERROR_INVALID_PARAMETER,
            Error::NotPsd => PCGRAD_ERROR_NOT_PSD,
        }
    }
}

fn status(r: Result<()>) -> pcgrad_status {
    match r {
        Ok(()) => pcgrad_status::PCGRAD_OK,
        Err(e) => e.into(),
    }
}

/// How a call projects: a plain struct the caller keeps on its stack or in
/// static memory. A zero-initialised config (`pcgrad_config c = {0};`) is
/// valid: sequential, fixed order, mean reduction, no finiteness check,
/// Gram diagnostic matrix, all cores.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct pcgrad_config {
    /// `PCGRAD_MODE_SEQUENTIAL` or `PCGRAD_MODE_SIMULTANEOUS`.
    pub mode: u32,
    /// `PCGRAD_ORDER_FIXED`, `PCGRAD_ORDER_SHUFFLED` or
    /// `PCGRAD_ORDER_EXPLICIT` (sequential mode only; always validated).
    pub order: u32,
    /// `PCGRAD_REDUCTION_MEAN` or `PCGRAD_REDUCTION_SUM`.
    pub reduction: u32,
    /// 1: refuse NaN/Inf gradients with `PCGRAD_ERROR_NON_FINITE` (free:
    /// read off the Gram diagonal before anything is written); 0: do not.
    pub check_finite: u32,
    /// What the optional diagnostic `matrix` output receives:
    /// `PCGRAD_MATRIX_GRAM` or `PCGRAD_MATRIX_COSINE`.
    pub matrix: u32,
    /// Worker threads for the streaming passes: 0 = all cores. Used only by
    /// a library built with the `parallel` feature (the default host
    /// build); results are bitwise identical for every value.
    pub threads: usize,
    /// The explicit order table (T x (T - 1) entries), read only when
    /// `order` is `PCGRAD_ORDER_EXPLICIT` in sequential mode; else may be
    /// NULL. NULL is also accepted when T = 1 (the table has no entries).
    pub order_table: *const u32,
    /// The number of entries of `order_table`: T * (T - 1).
    pub order_table_len: usize,
    /// The PRNG state, read and advanced only when `order` is
    /// `PCGRAD_ORDER_SHUFFLED` in sequential mode; else may be NULL. A
    /// successful call advances it; with T <= 2 there is nothing to
    /// shuffle (one other task has one order) and it stays as it was.
    pub rng: *mut Rng,
}

/// Counts that come for free with the projection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct pcgrad_stats {
    /// Unordered pairs i < j with g_i . g_j < 0.
    pub conflicting_pairs: usize,
    /// Projections applied (at most T * (T - 1)).
    pub projections: usize,
}

// ---------------------------------------------------------------------------
// Pointer checks. Nothing here dereferences anything.

/// A required buffer of `len` elements: non-NULL, aligned, with a byte size
/// that fits `isize` and does not wrap the address space.
#[inline(always)]
fn req<T>(p: *const T, len: usize) -> Result<()> {
    req_raw(p as usize, align_of::<T>(), size_of::<T>(), len)
}

/// [`req`] on an address, an alignment (a power of two), an element size
/// and a length: one copy for every element type.
#[inline]
fn req_raw(addr: usize, align: usize, size: usize, len: usize) -> Result<()> {
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
fn opt<T>(p: *const T, len: usize) -> Result<bool> {
    opt_raw(p as usize, align_of::<T>(), size_of::<T>(), len)
}

/// [`opt`] on the arguments of [`req_raw`].
#[inline(never)]
fn opt_raw(addr: usize, align: usize, size: usize, len: usize) -> Result<bool> {
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
struct Region {
    lo: usize,
    hi: usize,
}

impl Region {
    /// `len` elements at `p` (already checked by [`req`]); NULL is empty.
    #[inline(always)]
    fn of<T>(p: *const T, len: usize) -> Region {
        Region::raw(p as usize, size_of::<T>(), len)
    }

    /// `len` elements of `size` bytes at `lo` (0 is empty): one copy for
    /// every element type.
    #[inline(never)]
    fn raw(lo: usize, size: usize, len: usize) -> Region {
        if lo == 0 {
            return Region { lo: 0, hi: 0 };
        }
        Region {
            lo,
            hi: lo.saturating_add(len.saturating_mul(size)),
        }
    }

    const EMPTY: Region = Region { lo: 0, hi: 0 };

    fn overlaps(self, o: Region) -> bool {
        self.lo < self.hi && o.lo < o.hi && self.lo < o.hi && o.lo < self.hi
    }
}

/// Calls a visitor with every region of a set; stops at the first error.
type Visit<'v> = dyn FnMut(Region) -> Result<()> + 'v;
type RegionSet<'s> = dyn Fn(&mut Visit<'_>) -> Result<()> + 's;

/// Every output region must be disjoint from every input region and from
/// every other output region.
fn disjoint(outs: &RegionSet<'_>, ins: &RegionSet<'_>) -> Result<()> {
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
struct Span {
    addr: usize,
    size: usize,
    len: usize,
}

impl Span {
    /// `len` elements at `p` (NULL is empty).
    #[inline(always)]
    fn of<T>(p: *const T, len: usize) -> Span {
        Span {
            addr: p as usize,
            size: size_of::<T>(),
            len,
        }
    }

    /// `p` when `used`, else nothing.
    #[inline(always)]
    fn of_if<T>(used: bool, p: *const T, len: usize) -> Span {
        Span::of(if used { p } else { ptr::null() }, len)
    }

    fn region(&self) -> Region {
        Region::raw(self.addr, self.size, self.len)
    }
}

/// [`disjoint`] for one list of buffers whose first `outs` are the
/// outputs: each output must be disjoint from every other buffer.
#[inline(never)]
fn disjoint_spans(spans: &[Span], outs: usize) -> Result<()> {
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

fn each(rs: &[Region], f: &mut Visit<'_>) -> Result<()> {
    rs.iter().try_for_each(|&r| f(r))
}

/// A validated configuration, copied out of the caller's struct.
struct Config {
    raw: pcgrad_config,
    reduction: Reduction,
    check_finite: bool,
    uses_rng: bool,
    uses_table: bool,
}

impl Config {
    fn read(config: *const pcgrad_config) -> Result<Config> {
        req(config, 1)?;
        // SAFETY: `config` is non-NULL and aligned (checked above) and the
        // caller promises it points at a `pcgrad_config`; every field is a
        // plain integer or pointer, for which any bit pattern is valid.
        let raw = unsafe { ptr::read(config) };
        Config::check(raw)
    }

    fn check(raw: pcgrad_config) -> Result<Config> {
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
    fn inputs(&self, config: *const pcgrad_config) -> [Region; 2] {
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
    fn output(&self) -> Region {
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
    unsafe fn mode<'a>(&self) -> Mode<'a> {
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

fn reduction_of(r: u32) -> Result<Reduction> {
    match r {
        PCGRAD_REDUCTION_MEAN => Ok(Reduction::Mean),
        PCGRAD_REDUCTION_SUM => Ok(Reduction::Sum),
        _ => Err(Error::InvalidEnum),
    }
}

/// The optional diagnostics of a one-call entry point.
struct Diag {
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
}

impl Diag {
    fn check(
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
    fn validate(
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

    fn regions(&self) -> [Region; 2] {
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
    unsafe fn write(&self, cfg: &Config, tasks: usize, gram: &[f64], st: Stats) -> Result<()> {
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
unsafe fn mask<'a>(p: *const u8, len: usize) -> Result<&'a [bool]> {
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
unsafe fn view<'a, T>(p: *const T, len: usize) -> &'a [T] {
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
unsafe fn view_mut<'a, T>(p: *mut T, len: usize) -> &'a mut [T] {
    if p.is_null() {
        &mut []
    } else {
        // SAFETY: forwarded to the caller.
        unsafe { slice::from_raw_parts_mut(p, len) }
    }
}

/// Checks the shape arguments shared by the flat entry points.
fn flat_shape(
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

fn check_workspace(workspace: *mut f64, len: usize, need: usize) -> Result<()> {
    req(workspace, len)?;
    if len < need {
        return Err(Error::WorkspaceTooSmall);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Sizes and small helpers.

/// Writes `v` through a checked `out` pointer.
fn put(out: *mut usize, v: Result<usize>) -> pcgrad_status {
    status(req(out, 1).and(v).map(|v| {
        // SAFETY: non-NULL and aligned (checked by `req`).
        unsafe { ptr::write(out, v) }
    }))
}

/// Writes the doubles of workspace that `pcgrad_merge_flat` and
/// `pcgrad_project_flat` need for `tasks` tasks to `*out`:
/// 3 T^2 + 34 T + 32 (T = 2: 112, T = 4: 216, T = 8: 496, T = 16: 1344). The
/// same for every mode, reduction and N.
///
/// # Safety
///
/// `out` is NULL or points at a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_workspace_len(tasks: usize, out: *mut usize) -> pcgrad_status {
    put(out, workspace_len(tasks))
}

/// Extra doubles the per-variable entry points need per (task, variable)
/// cell beyond `pcgrad_workspace_len`: 2 for a slice reference each, plus
/// one byte of mask (rounded up to doubles).
fn vars_extra(cells: usize) -> Result<usize> {
    cells
        .checked_mul(2)
        .and_then(|x| x.checked_add(cells.div_ceil(8)))
        .ok_or(Error::Overflow)
}

fn workspace_len_vars(tasks: usize, vars: usize) -> Result<usize> {
    let cells = tasks.checked_mul(vars).ok_or(Error::Overflow)?;
    workspace_len(tasks)?
        .checked_add(vars_extra(cells)?)
        .ok_or(Error::Overflow)
}

/// Writes the doubles of workspace that `pcgrad_merge_vars` and
/// `pcgrad_project_vars` need for `tasks` tasks and `vars` variables to
/// `*out`: `pcgrad_workspace_len(T)` + 2 T S + ceil(T S / 8).
///
/// # Safety
///
/// `out` is NULL or points at a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_workspace_len_vars(
    tasks: usize,
    vars: usize,
    out: *mut usize,
) -> pcgrad_status {
    put(out, workspace_len_vars(tasks, vars))
}

/// Writes the doubles that `pcgrad_gram_flat` needs in its `gram` buffer to
/// `*out`: 2 T^2 (the T x T Gram matrix, then scratch).
///
/// # Safety
///
/// `out` is NULL or points at a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_gram_len(tasks: usize, out: *mut usize) -> pcgrad_status {
    put(
        out,
        if tasks == 0 {
            Err(Error::NoTasks)
        } else {
            engine::gram_workspace_len(tasks)
        },
    )
}

/// Writes the doubles of the coefficient buffer of `pcgrad_coefficients`
/// to `*out`: T^2 + 2 T.
///
/// # Safety
///
/// `out` is NULL or points at a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_coefficients_len(tasks: usize, out: *mut usize) -> pcgrad_status {
    put(
        out,
        if tasks == 0 {
            Err(Error::NoTasks)
        } else {
            engine::coefficients_len(tasks)
        },
    )
}

/// Writes the doubles of the `tile` workspace of the apply phase to `*out`:
/// 32 (T + 1).
///
/// # Safety
///
/// `out` is NULL or points at a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_tile_len(tasks: usize, out: *mut usize) -> pcgrad_status {
    put(
        out,
        if tasks == 0 {
            Err(Error::NoTasks)
        } else {
            engine::tile_len(tasks)
        },
    )
}

/// Writes the default configuration to `*out` (the same as a zeroed
/// struct): sequential mode, fixed order, mean reduction, no finiteness
/// check, Gram matrix diagnostic, all cores, no table, no PRNG.
///
/// # Safety
///
/// `out` is NULL or points at a writable `pcgrad_config`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_config_default(out: *mut pcgrad_config) -> pcgrad_status {
    status(req(out, 1).map(|()| {
        // SAFETY: non-NULL and aligned (checked by `req`).
        unsafe {
            ptr::write(
                out,
                pcgrad_config {
                    mode: PCGRAD_MODE_SEQUENTIAL,
                    order: PCGRAD_ORDER_FIXED,
                    reduction: PCGRAD_REDUCTION_MEAN,
                    check_finite: 0,
                    matrix: PCGRAD_MATRIX_GRAM,
                    threads: 0,
                    order_table: ptr::null(),
                    order_table_len: 0,
                    rng: ptr::null_mut(),
                },
            )
        }
    }))
}

/// A static, NUL-terminated description of a status code ("unknown status"
/// for a value that is not one). Never NULL.
#[no_mangle]
pub extern "C" fn pcgrad_status_str(status: i32) -> *const c_char {
    let s = match status {
        0 => c"success",
        -1 => c"a required pointer is NULL",
        -2 => c"the number of tasks is zero",
        -3 => c"a buffer length does not match the shape",
        -4 => c"a size computation overflows",
        -5 => c"the workspace is too small",
        -6 => c"an input holds NaN or infinity",
        -7 => c"an output buffer overlaps an input buffer",
        -8 => c"an enum value is out of range",
        -9 => c"an explicit order is not a permutation of the other tasks",
        -10 => c"a coordinate range is inverted or runs past N",
        -11 => c"a pointer is not aligned for its element type",
        -12 => c"a method parameter is negative or out of range",
        -13 => c"the Gram matrix is not positive semidefinite",
        _ => c"unknown status",
    };
    s.as_ptr()
}

/// The library version as a static NUL-terminated string, equal to
/// `PCGRAD_VERSION_STRING` of the header it was built with.
#[no_mangle]
pub extern "C" fn pcgrad_version() -> *const c_char {
    const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    V.as_ptr().cast()
}

// ---------------------------------------------------------------------------
// One call per training step, flat T x N buffer.

/// Projects and merges a contiguous row-major T x N gradient buffer (row t
/// = task t) into `merged` (N floats); the gradients are only read.
///
/// - `grads`, `grads_len`: T * N floats.
/// - `segments`, `segments_len`: optional (NULL, 0): S variable lengths
///   summing to N; absent = one segment.
/// - `has_grad`, `has_grad_len`: optional (NULL, 0): T x S bytes, 0 or 1,
///   row-major: whether task t has a gradient for segment s (where 0, its
///   values there are ignored and taken as zero). Absent = all 1.
/// - `stats`: optional output (NULL = not wanted).
/// - `matrix`, `matrix_len`: optional output (NULL, 0), T * T doubles: the
///   Gram or cosine matrix (`config->matrix`).
/// - `workspace`, `workspace_len`: at least `pcgrad_workspace_len(T)`
///   doubles of scratch.
///
/// # Safety
///
/// Every non-NULL pointer points at the number of elements its length says,
/// valid for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_merge_flat(
    config: *const pcgrad_config,
    grads: *const f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    merged: *mut f32,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    status((|| {
        // The checks run in frames of their own, which are gone before the
        // passes run: a smaller stack high-water mark.
        let cfg = Config::read(config)?;
        check_merge_flat(
            &cfg,
            config,
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
            merged,
            merged_len,
            stats,
            matrix,
            matrix_len,
            workspace,
            workspace_len,
        )?;
        let diag = Diag {
            stats,
            matrix,
            matrix_len,
        };
        // SAFETY: every buffer passed `req`/`opt` (non-NULL, aligned, size
        // in range) for its length and the outputs are disjoint from each
        // other and from the inputs, so the shared and mutable slices below
        // never alias.
        unsafe {
            let segs = view(segments, segments_len);
            let hg = mask(has_grad, has_grad_len)?;
            let layout = Layout::new(tasks, dim, segs, hg)?;
            let flat = Flat::new(layout, view(grads, grads_len))?;
            let ws = view_mut(workspace, workspace_len);
            let mut pc = pcgrad_of(&cfg);
            let st = pc.merge(&flat, view_mut(merged, merged_len), ws)?;
            diag.write(&cfg, tasks, ws, st)
        }
    })())
}

/// The argument checks of [`pcgrad_merge_flat`] after the config (read by
/// the caller first, as `cfg`): the shapes, every pointer, and the
/// disjointness of the outputs from each other and from the inputs.
#[inline(never)]
fn check_merge_flat(
    cfg: &Config,
    config: *const pcgrad_config,
    grads: *const f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    merged: *mut f32,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> Result<()> {
    flat_shape(
        grads,
        grads_len,
        segments,
        segments_len,
        has_grad,
        has_grad_len,
        tasks,
        dim,
    )?;
    req(merged, merged_len)?;
    Diag::validate(stats, matrix, matrix_len, tasks)?;
    check_workspace(workspace, workspace_len, crate::workspace_len(tasks)?)?;
    let raw = &cfg.raw;
    disjoint_spans(
        &[
            Span::of(merged, merged_len),
            Span::of(workspace, workspace_len),
            Span::of(stats, 1),
            Span::of(matrix, matrix_len),
            Span::of_if(cfg.uses_rng, raw.rng, 1),
            Span::of(config, 1),
            Span::of_if(cfg.uses_table, raw.order_table, raw.order_table_len),
            Span::of(grads, grads_len),
            Span::of(segments, segments_len),
            Span::of(has_grad, has_grad_len),
        ],
        5,
    )
}

fn pcgrad_of<'a>(cfg: &Config) -> PcGrad<'a> {
    // SAFETY: every caller has checked the config's buffers and their
    // overlaps with the call's other buffers before calling this.
    let mode = unsafe { cfg.mode() };
    PcGrad::with_mode(mode)
        .reduction(cfg.reduction)
        .check_finite(cfg.check_finite)
        .threads(cfg.raw.threads)
}

/// Projects a contiguous row-major T x N gradient buffer **in place** (each
/// row becomes its projected g'_t on every coordinate, including segments
/// the task had no gradient for) and, when `merged` is not NULL, writes the
/// merged gradient (N floats). Arguments as `pcgrad_merge_flat`; `merged`,
/// `merged_len` are optional (NULL, 0).
///
/// # Safety
///
/// As `pcgrad_merge_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_project_flat(
    config: *const pcgrad_config,
    grads: *mut f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    merged: *mut f32,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    status((|| {
        let cfg = Config::read(config)?;
        flat_shape(
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
        )?;
        let has_merged = opt(merged, merged_len)?;
        let diag = Diag::check(stats, matrix, matrix_len, tasks)?;
        check_workspace(workspace, workspace_len, crate::workspace_len(tasks)?)?;
        let raw = &cfg.raw;
        disjoint_spans(
            &[
                Span::of(grads, grads_len),
                Span::of(merged, merged_len),
                Span::of(workspace, workspace_len),
                Span::of(stats, 1),
                Span::of(matrix, matrix_len),
                Span::of_if(cfg.uses_rng, raw.rng, 1),
                Span::of(config, 1),
                Span::of_if(cfg.uses_table, raw.order_table, raw.order_table_len),
                Span::of(segments, segments_len),
                Span::of(has_grad, has_grad_len),
            ],
            6,
        )?;
        // SAFETY: as in `pcgrad_merge_flat`; `grads` is an output here,
        // disjoint from every other buffer.
        unsafe {
            let segs = view(segments, segments_len);
            let hg = mask(has_grad, has_grad_len)?;
            let layout = Layout::new(tasks, dim, segs, hg)?;
            let mut g = FlatMut::new(layout, view_mut(grads, grads_len))?;
            let ws = view_mut(workspace, workspace_len);
            let m = if has_merged {
                Some(view_mut(merged, merged_len))
            } else {
                None
            };
            let mut pc = pcgrad_of(&cfg);
            let st = pc.project(&mut g, m, ws)?;
            diag.write(&cfg, tasks, ws, st)
        }
    })())
}

// ---------------------------------------------------------------------------
// One call per training step, one buffer per (task, variable).

// The per-variable entry points keep a `[Option<&[f32]>]` and a `[bool]`
// array in the workspace tail; both must fit the documented 2 + 1/8
// doubles per cell and be no more aligned than `f64`.
const _: () = assert!(size_of::<Option<&[f32]>>() <= 2 * size_of::<f64>());
const _: () = assert!(align_of::<Option<&[f32]>>() <= align_of::<f64>());
const _: () = assert!(size_of::<Option<&mut [f32]>>() == size_of::<Option<&[f32]>>());

/// Checks a per-variable problem: the T x S pointer table, the segment
/// lengths and every present buffer. Returns N.
///
/// # Safety
///
/// `vars` passed `req` for `vars_len` pointers and `segments` for
/// `segments_len` lengths.
unsafe fn vars_shape(
    vars: *const *const f32,
    vars_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
) -> Result<usize> {
    if tasks == 0 {
        return Err(Error::NoTasks);
    }
    let cells = tasks.checked_mul(segments_len).ok_or(Error::Overflow)?;
    if vars_len != cells {
        return Err(Error::LengthMismatch);
    }
    // SAFETY: checked by the caller; read-only.
    let (vs, segs) = unsafe { (view(vars, vars_len), view(segments, segments_len)) };
    let mut n: usize = 0;
    for &len in segs {
        n = n.checked_add(len).ok_or(Error::Overflow)?;
    }
    for (c, &p) in vs.iter().enumerate() {
        if !p.is_null() {
            req(p, segs[c % segments_len])?;
        }
    }
    Ok(n)
}

/// Every present buffer of the T x S table, as regions.
///
/// # Safety
///
/// As [`vars_shape`], which has succeeded.
unsafe fn var_regions<T>(
    vars: *const *const T,
    segments: *const usize,
    s: usize,
    cells: usize,
    f: &mut Visit<'_>,
) -> Result<()> {
    // SAFETY: checked by the caller; read-only.
    let (vs, segs) = unsafe { (view(vars, cells), view(segments, s)) };
    for (c, &p) in vs.iter().enumerate() {
        f(Region::of(p, segs[c % s]))?;
    }
    Ok(())
}

/// Splits the workspace of a per-variable call into the `f64` part, a
/// `[Option<&[f32]>]` (or `&mut`) table of `cells` entries filled by
/// `fill`, and a `[bool]` mask of `cells` entries.
///
/// # Safety
///
/// `workspace` passed `req` for `workspace_len_vars(T, S)` doubles and is
/// disjoint from every other buffer of the call.
unsafe fn split_vars_ws<'a, E>(
    workspace: *mut f64,
    base: usize,
    cells: usize,
    fill: impl Fn(usize) -> E,
) -> (&'a mut [f64], &'a mut [E], &'a mut [bool]) {
    debug_assert!(size_of::<E>() <= 16 && align_of::<E>() <= align_of::<f64>());
    // SAFETY: the three parts are disjoint sub-ranges of the workspace
    // (`base` doubles, then 2 * cells doubles holding `cells` values of E,
    // at most 16 bytes each, then cells bytes), whose total the caller
    // checked. E and bool are no more aligned than f64. Each element of the
    // E and bool parts is written before the slices are formed, so they hold
    // valid values.
    unsafe {
        let ws = slice::from_raw_parts_mut(workspace, base);
        let tab = workspace.add(base).cast::<E>();
        for c in 0..cells {
            ptr::write(tab.add(c), fill(c));
        }
        let m = workspace.add(base + 2 * cells).cast::<bool>();
        for c in 0..cells {
            ptr::write(m.add(c), false);
        }
        (
            ws,
            slice::from_raw_parts_mut(tab, cells),
            slice::from_raw_parts_mut(m, cells),
        )
    }
}

/// Phases 1 and 2 over the whole problem (`PcGrad::prepare`, as for the
/// flat entry points), then `apply` once per variable (segment `k`, coordinates `lo..hi`), so
/// that each variable's output goes to its own buffer.
fn run_vars<G, A>(
    cfg: &Config,
    grads: &mut G,
    segments: &[usize],
    ws: &mut [f64],
    mut apply: A,
) -> Result<Stats>
where
    G: Gradients<f32>,
    A: FnMut(&mut G, &Coefficients<'_>, usize, usize, usize, &mut [f64]) -> Result<()>,
{
    let t = grads.layout().tasks();
    let (off, stats) = pcgrad_of(cfg).prepare(&*grads, ws)?;
    let (coef_ws, tile) = split_rest(ws, off, engine::coefficients_len(t)?)?;
    let coef = Coefficients::from_workspace(t, coef_ws)?;
    let mut lo = 0;
    for (s, &len) in segments.iter().enumerate() {
        let hi = lo + len;
        apply(grads, &coef, s, lo, hi, tile)?;
        lo = hi;
    }
    Ok(stats)
}

/// Projects and merges per-variable gradients: `grads[t * S + s]` points at
/// task t's gradient for variable s (`segments[s]` floats), or is NULL when
/// the task has none for that variable (TensorFlow's `None`, an unset
/// PyTorch `.grad`): a task-specific head. The merged gradient of variable
/// s is written into `merged[s]` (`segments[s]` floats each), so a runtime
/// with one buffer per parameter tensor copies nothing.
///
/// - `grads`, `grads_len`: T * S pointers, row-major by task.
/// - `segments`, `segments_len`: S variable lengths (required).
/// - `merged`, `merged_len`: S pointers to the output buffers (none NULL).
/// - `stats`, `matrix`, `matrix_len`: as `pcgrad_merge_flat`.
/// - `workspace`, `workspace_len`: at least `pcgrad_workspace_len_vars(T,
///   S)` doubles.
///
/// The Gram pass uses `config->threads`; the apply pass runs on the
/// calling thread, one variable at a time.
///
/// # Safety
///
/// Every non-NULL pointer points at the number of elements its length (or
/// its variable's length) says, valid for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_merge_vars(
    config: *const pcgrad_config,
    grads: *const *const f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
    merged: *const *mut f32,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    status((|| {
        let cfg = Config::read(config)?;
        req(grads, grads_len)?;
        req(segments, segments_len)?;
        req(merged, merged_len)?;
        // SAFETY: `grads` and `segments` passed `req`.
        let _n = unsafe { vars_shape(grads, grads_len, segments, segments_len, tasks)? };
        let s = segments_len;
        if merged_len != s {
            return Err(Error::LengthMismatch);
        }
        // SAFETY: `merged` passed `req`; read-only.
        let outs_ptrs = unsafe { view(merged, merged_len) };
        for (k, &p) in outs_ptrs.iter().enumerate() {
            // SAFETY: `segments` passed `req` for S entries.
            req(p, unsafe { *segments.add(k) })?;
        }
        let diag = Diag::check(stats, matrix, matrix_len, tasks)?;
        let base = crate::workspace_len(tasks)?;
        let cells = grads_len;
        check_workspace(workspace, workspace_len, workspace_len_vars(tasks, s)?)?;
        let [d0, d1] = diag.regions();
        let [c0, c1] = cfg.inputs(config);
        let fixed_outs = [Region::of(workspace, workspace_len), d0, d1, cfg.output()];
        let fixed_ins = [
            c0,
            c1,
            Region::of(grads, grads_len),
            Region::of(segments, segments_len),
            Region::of(merged, merged_len),
        ];
        // SAFETY (both closures): the tables passed `vars_shape` / `req`.
        let outs = |f: &mut Visit<'_>| {
            each(&fixed_outs, f)?;
            unsafe { var_regions(merged.cast::<*const f32>(), segments, s, s, f) }
        };
        let ins = |f: &mut Visit<'_>| {
            each(&fixed_ins, f)?;
            unsafe { var_regions(grads, segments, s, cells, f) }
        };
        disjoint(&outs, &ins)?;
        // SAFETY: every buffer passed `req`/`opt` for its length, the
        // outputs (each merged buffer, the workspace, the diagnostics, the
        // PRNG) are disjoint from each other and from every input, so no
        // mutable slice below aliases another slice.
        unsafe {
            let segs = view(segments, segments_len);
            let vs = view(grads, grads_len);
            let (ws, tab, m) = split_vars_ws(workspace, base, cells, |c| {
                let p = vs[c];
                if p.is_null() {
                    None
                } else {
                    Some(slice::from_raw_parts(p, segs[c % s]))
                }
            });
            let mut g = PerVariable::new(tasks, segs, &*tab, m)?;
            let st = run_vars(&cfg, &mut g, segs, ws, |g, coef, k, lo, hi, tile| {
                let out = view_mut(outs_ptrs[k], segs[k]);
                engine::apply_merged(&*g, coef, cfg.reduction, lo, hi, out, tile)
            })?;
            diag.write(&cfg, tasks, ws, st)
        }
    })())
}

/// Projects per-variable gradients **in place** (each present buffer
/// becomes task t's projected gradient on that variable; NULL cells
/// receive nothing) and, when `merged` is not NULL, writes each variable's
/// merged gradient into `merged[s]`. Arguments as `pcgrad_merge_vars`;
/// `merged`, `merged_len` are optional (NULL, 0).
///
/// # Safety
///
/// As `pcgrad_merge_vars`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_project_vars(
    config: *const pcgrad_config,
    grads: *const *mut f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
    merged: *const *mut f32,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    status((|| {
        let cfg = Config::read(config)?;
        req(grads, grads_len)?;
        req(segments, segments_len)?;
        let has_merged = opt(merged, merged_len)?;
        let gconst = grads.cast::<*const f32>();
        // SAFETY: `grads` and `segments` passed `req`.
        let _n = unsafe { vars_shape(gconst, grads_len, segments, segments_len, tasks)? };
        let s = segments_len;
        if has_merged && merged_len != s {
            return Err(Error::LengthMismatch);
        }
        // SAFETY: `merged` passed `opt`; read-only.
        let outs_ptrs = unsafe { view(merged, merged_len) };
        for (k, &p) in outs_ptrs.iter().enumerate() {
            // SAFETY: `segments` passed `req` for S entries.
            req(p, unsafe { *segments.add(k) })?;
        }
        let diag = Diag::check(stats, matrix, matrix_len, tasks)?;
        let base = crate::workspace_len(tasks)?;
        let cells = grads_len;
        check_workspace(workspace, workspace_len, workspace_len_vars(tasks, s)?)?;
        let [d0, d1] = diag.regions();
        let [c0, c1] = cfg.inputs(config);
        let fixed_outs = [Region::of(workspace, workspace_len), d0, d1, cfg.output()];
        let fixed_ins = [
            c0,
            c1,
            Region::of(grads, grads_len),
            Region::of(segments, segments_len),
            Region::of(merged, merged_len),
        ];
        // SAFETY (closure): the tables passed `vars_shape` / `opt`.
        let outs = |f: &mut Visit<'_>| {
            each(&fixed_outs, f)?;
            unsafe {
                var_regions(merged.cast::<*const f32>(), segments, s, merged_len, f)?;
                var_regions(gconst, segments, s, cells, f)
            }
        };
        disjoint(&outs, &|f| each(&fixed_ins, f))?;
        // SAFETY: as in `pcgrad_merge_vars`; here every gradient buffer is
        // an output too, so they are pairwise disjoint and each `&mut`
        // slice is unique.
        unsafe {
            let segs = view(segments, segments_len);
            let vs = view(grads, grads_len);
            let (ws, tab, m) = split_vars_ws(workspace, base, cells, |c| {
                let p = vs[c];
                if p.is_null() {
                    None
                } else {
                    Some(slice::from_raw_parts_mut(p, segs[c % s]))
                }
            });
            let mut g = PerVariableMut::new(tasks, segs, tab, m)?;
            let st = run_vars(&cfg, &mut g, segs, ws, |g, coef, k, lo, hi, tile| {
                let out = if has_merged {
                    Some(view_mut(outs_ptrs[k], segs[k]))
                } else {
                    None
                };
                engine::apply_projected(g, coef, cfg.reduction, lo, hi, out, tile)
            })?;
            diag.write(&cfg, tasks, ws, st)
        }
    })())
}

// ---------------------------------------------------------------------------
// Pack / unflatten (the seed's `pack_grad` and `un_flatten_grad`).

/// Packs per-variable gradients into a flat row-major T x N buffer:
/// `vars[t * S + s]` is task t's gradient for variable s (`segments[s]`
/// floats) or NULL, written as zeros and recorded as 0 in `has_grad`
/// (T x S bytes, 1 where present). `out_len` must be T * N with N the sum
/// of the segments. The result feeds `pcgrad_merge_flat` directly.
///
/// # Safety
///
/// Every non-NULL pointer points at the number of elements its length (or
/// its variable's length) says, valid for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_pack(
    vars: *const *const f32,
    vars_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
    out: *mut f32,
    out_len: usize,
    has_grad: *mut u8,
    has_grad_len: usize,
) -> pcgrad_status {
    status((|| {
        req(vars, vars_len)?;
        req(segments, segments_len)?;
        req(out, out_len)?;
        req(has_grad, has_grad_len)?;
        // SAFETY: `vars` and `segments` passed `req`.
        let n = unsafe { vars_shape(vars, vars_len, segments, segments_len, tasks)? };
        let cells = vars_len;
        if has_grad_len != cells || out_len != tasks.checked_mul(n).ok_or(Error::Overflow)? {
            return Err(Error::LengthMismatch);
        }
        let s = segments_len;
        let fixed_outs = [Region::of(out, out_len), Region::of(has_grad, has_grad_len)];
        let fixed_ins = [
            Region::of(vars, vars_len),
            Region::of(segments, segments_len),
        ];
        let ins = |f: &mut Visit<'_>| {
            each(&fixed_ins, f)?;
            // SAFETY: the table passed `vars_shape`.
            unsafe { var_regions(vars, segments, s, cells, f) }
        };
        disjoint(&|f| each(&fixed_outs, f), &ins)?;
        // SAFETY: every buffer passed `req` for its length; the two outputs
        // are disjoint from each other and from every input.
        unsafe {
            let segs = view(segments, s);
            let vs = view(vars, cells);
            let o = view_mut(out, out_len);
            let hg = view_mut(has_grad, has_grad_len);
            let mut pos = 0;
            for (c, &p) in vs.iter().enumerate() {
                let len = segs[c % s];
                let dst = &mut o[pos..pos + len];
                if p.is_null() {
                    dst.fill(0.0);
                } else {
                    dst.copy_from_slice(slice::from_raw_parts(p, len));
                }
                hg[c] = u8::from(!p.is_null());
                pos += len;
            }
        }
        Ok(())
    })())
}

/// Splits a flat vector of N floats into per-variable buffers: `outs[s]`
/// receives `segments[s]` floats (none NULL). `flat_len` must be the sum of
/// the segments.
///
/// # Safety
///
/// As `pcgrad_pack`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_unflatten(
    flat: *const f32,
    flat_len: usize,
    segments: *const usize,
    segments_len: usize,
    outs: *const *mut f32,
    outs_len: usize,
) -> pcgrad_status {
    status((|| {
        req(flat, flat_len)?;
        req(segments, segments_len)?;
        req(outs, outs_len)?;
        if outs_len != segments_len {
            return Err(Error::LengthMismatch);
        }
        // SAFETY: `outs` passed `req`, and with one task the table is S
        // pointers.
        let n = unsafe { vars_shape(outs.cast(), outs_len, segments, segments_len, 1)? };
        let s = segments_len;
        // SAFETY: read-only views of checked tables.
        let ptrs = unsafe { view(outs, outs_len) };
        if ptrs.iter().any(|p| p.is_null()) {
            return Err(Error::NullPointer);
        }
        if flat_len != n {
            return Err(Error::LengthMismatch);
        }
        let fixed_ins = [
            Region::of(flat, flat_len),
            Region::of(segments, segments_len),
            Region::of(outs, outs_len),
        ];
        // SAFETY: the table passed `vars_shape`.
        let o = |f: &mut Visit<'_>| unsafe {
            var_regions(outs.cast::<*const f32>(), segments, s, s, f)
        };
        disjoint(&o, &|f| each(&fixed_ins, f))?;
        // SAFETY: every buffer passed `req` for its length; the outputs are
        // disjoint from each other and from every input.
        unsafe {
            let segs = view(segments, s);
            let src = view(flat, flat_len);
            let mut pos = 0;
            for (k, &p) in ptrs.iter().enumerate() {
                let len = segs[k];
                view_mut(p, len).copy_from_slice(&src[pos..pos + len]);
                pos += len;
            }
        }
        Ok(())
    })())
}

// ---------------------------------------------------------------------------
// The three phases, for sharding N across threads or machines (flat
// buffers). Each shard: zero a gram buffer, `pcgrad_gram_flat` over its
// columns, all-reduce the T x T partials (`pcgrad_gram_combine` or
// MPI_Allreduce), `pcgrad_coefficients` on the sum (same config and PRNG
// state on every shard), then `pcgrad_apply_merged_flat` or
// `pcgrad_apply_projected_flat` over its columns.

/// Phase 1: adds the Gram contribution of the columns `lo..hi` of a
/// row-major T x N buffer into `gram[0 .. T*T]` (row-major, symmetric;
/// start from zeros). `gram_len` is at least `pcgrad_gram_len(T)`; the part
/// after T * T is scratch. `segments` and `has_grad` as in
/// `pcgrad_merge_flat`.
///
/// # Safety
///
/// Every non-NULL pointer points at the number of elements its length
/// says, valid for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_gram_flat(
    grads: *const f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    lo: usize,
    hi: usize,
    gram: *mut f64,
    gram_len: usize,
) -> pcgrad_status {
    status((|| {
        flat_shape(
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
        )?;
        check_workspace(gram, gram_len, engine::gram_workspace_len(tasks)?)?;
        let ins = [
            Region::of(grads, grads_len),
            Region::of(segments, segments_len),
            Region::of(has_grad, has_grad_len),
        ];
        let outs = [Region::of(gram, gram_len)];
        disjoint(&|f| each(&outs, f), &|f| each(&ins, f))?;
        // SAFETY: every buffer passed `req`/`opt`; the output is disjoint
        // from the inputs.
        unsafe {
            let layout = Layout::new(
                tasks,
                dim,
                view(segments, segments_len),
                mask(has_grad, has_grad_len)?,
            )?;
            let flat = Flat::new(layout, view(grads, grads_len))?;
            engine::accumulate_gram(&flat, lo, hi, view_mut(gram, gram_len))
        }
    })())
}

/// Combines partial Gram matrices: `gram[k] += partial[k]` for the first
/// T * T entries (both lengths at least T * T). The order of combination
/// is the caller's: add the partials in a fixed order for bitwise
/// reproducible results.
///
/// # Safety
///
/// As `pcgrad_gram_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_gram_combine(
    partial: *const f64,
    partial_len: usize,
    tasks: usize,
    gram: *mut f64,
    gram_len: usize,
) -> pcgrad_status {
    status((|| {
        req(partial, partial_len)?;
        req(gram, gram_len)?;
        if tasks == 0 {
            return Err(Error::NoTasks);
        }
        let tt = tasks.checked_mul(tasks).ok_or(Error::Overflow)?;
        if partial_len < tt || gram_len < tt {
            return Err(Error::LengthMismatch);
        }
        let outs = [Region::of(gram, gram_len)];
        let ins = [Region::of(partial, partial_len)];
        disjoint(&|f| each(&outs, f), &|f| each(&ins, f))?;
        // SAFETY: both passed `req`; they are disjoint.
        let (p, g) = unsafe { (view(partial, tt), view_mut(gram, tt)) };
        for (g, &p) in g.iter_mut().zip(p) {
            *g += p;
        }
        Ok(())
    })())
}

/// Phase 2: the coefficients from a full symmetric T x T Gram matrix
/// (`gram_len` at least T * T) into `coef` (at least
/// `pcgrad_coefficients_len(T)` doubles), following `config` (mode, order,
/// PRNG, finiteness check; a shuffled order advances the PRNG).
/// `stats` is optional.
///
/// # Safety
///
/// As `pcgrad_gram_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_coefficients(
    config: *const pcgrad_config,
    gram: *const f64,
    gram_len: usize,
    tasks: usize,
    stats: *mut pcgrad_stats,
    coef: *mut f64,
    coef_len: usize,
) -> pcgrad_status {
    status((|| {
        let cfg = Config::read(config)?;
        req(gram, gram_len)?;
        let diag = Diag::check(stats, ptr::null_mut(), 0, tasks)?;
        if tasks == 0 {
            return Err(Error::NoTasks);
        }
        let tt = tasks.checked_mul(tasks).ok_or(Error::Overflow)?;
        if gram_len < tt {
            return Err(Error::LengthMismatch);
        }
        check_workspace(coef, coef_len, engine::coefficients_len(tasks)?)?;
        let [d0, _] = diag.regions();
        let [c0, c1] = cfg.inputs(config);
        let outs = [Region::of(coef, coef_len), d0, cfg.output()];
        let ins = [c0, c1, Region::of(gram, gram_len)];
        disjoint(&|f| each(&outs, f), &|f| each(&ins, f))?;
        // SAFETY: every buffer passed `req`; the outputs are disjoint from
        // each other and from the inputs.
        unsafe {
            let g = view(gram, gram_len);
            if cfg.check_finite && (0..tasks).any(|i| !g[i * tasks + i].is_finite()) {
                return Err(Error::NonFinite);
            }
            let mut mode = cfg.mode();
            let (_, st) = coefficients(g, tasks, &mut mode, view_mut(coef, coef_len))?;
            diag.write(&cfg, tasks, g, st)
        }
    })())
}

/// Phase 3, merged only: `merged[n - lo]` for n in `lo..hi` (`merged_len`
/// = hi - lo) from the coefficients of `pcgrad_coefficients` (`coef`,
/// `coef_len` at least `pcgrad_coefficients_len(T)`), with `reduction` a
/// `PCGRAD_REDUCTION_*` value. `tile` holds at least `pcgrad_tile_len(T)`
/// doubles of scratch.
///
/// # Safety
///
/// As `pcgrad_gram_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_apply_merged_flat(
    grads: *const f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    coef: *const f64,
    coef_len: usize,
    tasks: usize,
    dim: usize,
    reduction: u32,
    lo: usize,
    hi: usize,
    merged: *mut f32,
    merged_len: usize,
    tile: *mut f64,
    tile_len: usize,
) -> pcgrad_status {
    status((|| {
        flat_shape(
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
        )?;
        let red = reduction_of(reduction)?;
        check_workspace(coef.cast_mut(), coef_len, engine::coefficients_len(tasks)?)?;
        req(merged, merged_len)?;
        check_workspace(tile, tile_len, engine::tile_len(tasks)?)?;
        let ins = [
            Region::of(grads, grads_len),
            Region::of(segments, segments_len),
            Region::of(has_grad, has_grad_len),
            Region::of(coef, coef_len),
        ];
        let outs = [Region::of(merged, merged_len), Region::of(tile, tile_len)];
        disjoint(&|f| each(&outs, f), &|f| each(&ins, f))?;
        // SAFETY: every buffer passed `req`/`opt`; the outputs are disjoint
        // from each other and from the inputs.
        unsafe {
            let layout = Layout::new(
                tasks,
                dim,
                view(segments, segments_len),
                mask(has_grad, has_grad_len)?,
            )?;
            let flat = Flat::new(layout, view(grads, grads_len))?;
            let c = Coefficients::from_workspace(tasks, view(coef, coef_len))?;
            engine::apply_merged(
                &flat,
                &c,
                red,
                lo,
                hi,
                view_mut(merged, merged_len),
                view_mut(tile, tile_len),
            )
        }
    })())
}

/// Phase 3 in place: writes the projected gradients over columns `lo..hi`
/// of the row-major T x N buffer and, when `merged` is not NULL, the merged
/// gradient (`merged_len` = hi - lo). Arguments as
/// `pcgrad_apply_merged_flat`.
///
/// # Safety
///
/// As `pcgrad_gram_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_apply_projected_flat(
    grads: *mut f32,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    coef: *const f64,
    coef_len: usize,
    tasks: usize,
    dim: usize,
    reduction: u32,
    lo: usize,
    hi: usize,
    merged: *mut f32,
    merged_len: usize,
    tile: *mut f64,
    tile_len: usize,
) -> pcgrad_status {
    status((|| {
        flat_shape(
            grads,
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
        )?;
        let red = reduction_of(reduction)?;
        check_workspace(coef.cast_mut(), coef_len, engine::coefficients_len(tasks)?)?;
        let has_merged = opt(merged, merged_len)?;
        check_workspace(tile, tile_len, engine::tile_len(tasks)?)?;
        let ins = [
            Region::of(segments, segments_len),
            Region::of(has_grad, has_grad_len),
            Region::of(coef, coef_len),
        ];
        let outs = [
            Region::of(grads, grads_len),
            Region::of(merged, merged_len),
            Region::of(tile, tile_len),
        ];
        disjoint(&|f| each(&outs, f), &|f| each(&ins, f))?;
        // SAFETY: every buffer passed `req`/`opt`; the outputs are disjoint
        // from each other and from the inputs.
        unsafe {
            let layout = Layout::new(
                tasks,
                dim,
                view(segments, segments_len),
                mask(has_grad, has_grad_len)?,
            )?;
            let mut g = FlatMut::new(layout, view_mut(grads, grads_len))?;
            let c = Coefficients::from_workspace(tasks, view(coef, coef_len))?;
            let m = if has_merged {
                Some(view_mut(merged, merged_len))
            } else {
                None
            };
            engine::apply_projected(&mut g, &c, red, lo, hi, m, view_mut(tile, tile_len))
        }
    })())
}

// ---------------------------------------------------------------------------
// Tests. They live here so that every `unsafe` of the crate stays in this
// module; each unsafe block says why its pointers are valid. Small shapes
// (N = 13, not a multiple of 8; T in {1, 2, 3, 5}) keep a Miri run short.

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::{cosine_matrix, pack, unflatten, workspace_gram, PpcGrad};
    use core::ffi::CStr;
    use pcgrad_status::*;
    use std::vec;
    use std::vec::Vec;

    const N: usize = 13;
    const SEGS: [usize; 3] = [5, 1, 7];
    const S: usize = SEGS.len();
    const TASKS: [usize; 4] = [1, 2, 3, 5];
    const SEED: u64 = 0x5EED_1234;
    /// Values no computation produces, in every output before a call.
    const SENT32: f32 = -12345.678;
    const SENT64: f64 = -9876.5;
    /// What a flat buffer holds where its task has no gradient (ignored).
    const GARBAGE: f32 = 7.5;
    const ALL_CODES: [pcgrad_status; 14] = [
        PCGRAD_OK,
        PCGRAD_ERROR_NULL_POINTER,
        PCGRAD_ERROR_NO_TASKS,
        PCGRAD_ERROR_LENGTH_MISMATCH,
        PCGRAD_ERROR_OVERFLOW,
        PCGRAD_ERROR_WORKSPACE_TOO_SMALL,
        PCGRAD_ERROR_NON_FINITE,
        PCGRAD_ERROR_OVERLAP,
        PCGRAD_ERROR_INVALID_ENUM,
        PCGRAD_ERROR_INVALID_ORDER,
        PCGRAD_ERROR_INVALID_RANGE,
        PCGRAD_ERROR_MISALIGNED,
        PCGRAD_ERROR_INVALID_PARAMETER,
        PCGRAD_ERROR_NOT_PSD,
    ];

    /// Task t's gradient at coordinate c: multiples of 1/8 below 2 in
    /// magnitude, so every dot product of N = 13 terms is exact and the
    /// result does not depend on how the range is split. Odd tasks pull
    /// against even ones, so tasks conflict.
    fn value(t: usize, c: usize) -> f32 {
        let base = ((c * 7 + 3) % 11) as f32 * 0.25 - 1.25;
        let noise = ((c * 3 + t * 5) % 7) as f32 * 0.125 - 0.375;
        if t.is_multiple_of(2) {
            base + noise
        } else {
            noise - base
        }
    }

    /// Whether task t has a gradient for segment s of `SEGS`.
    fn present(t: usize, s: usize) -> bool {
        (t + s) % 4 != 3
    }

    fn seg_start(s: usize) -> usize {
        SEGS[..s].iter().sum()
    }

    /// The row-major T x N buffer; `segmented` puts `GARBAGE` where a task
    /// has no gradient.
    fn grads(t: usize, segmented: bool) -> Vec<f32> {
        let mut g: Vec<f32> = (0..t * N).map(|k| value(k / N, k % N)).collect();
        if segmented {
            for i in 0..t {
                for s in 0..S {
                    if !present(i, s) {
                        let a = i * N + seg_start(s);
                        g[a..a + SEGS[s]].fill(GARBAGE);
                    }
                }
            }
        }
        g
    }

    fn mask_bytes(t: usize) -> Vec<u8> {
        (0..t * S)
            .map(|c| u8::from(present(c / S, c % S)))
            .collect()
    }

    fn bits32(xs: &[f32]) -> Vec<u32> {
        xs.iter().map(|x| x.to_bits()).collect()
    }

    fn bits64(xs: &[f64]) -> Vec<u64> {
        xs.iter().map(|x| x.to_bits()).collect()
    }

    fn stats_of(s: Stats) -> pcgrad_stats {
        pcgrad_stats {
            conflicting_pairs: s.conflicting_pairs,
            projections: s.projections,
        }
    }

    const STATS_SENT: pcgrad_stats = pcgrad_stats {
        conflicting_pairs: 777,
        projections: 777,
    };

    /// NULL for an empty slice (an absent optional buffer).
    fn cp<T>(v: &[T]) -> *const T {
        if v.is_empty() {
            ptr::null()
        } else {
            v.as_ptr()
        }
    }

    /// `Vec::as_mut_ptr`, which leaves earlier pointers into the vector
    /// valid; NULL for an empty vector.
    fn mp<T>(v: &mut Vec<T>) -> *mut T {
        if v.is_empty() {
            ptr::null_mut()
        } else {
            v.as_mut_ptr()
        }
    }

    /// `p` moved one byte on: misaligned for any type wider than a byte.
    /// Never dereferenced: every function must refuse it first.
    fn mis<T>(p: *const T) -> *const T {
        p.cast::<u8>().wrapping_add(1).cast()
    }

    fn mis_mut<T>(p: *mut T) -> *mut T {
        p.cast::<u8>().wrapping_add(1).cast()
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum M {
        Fixed,
        Shuffled,
        Explicit,
        Simultaneous,
    }

    const MODES: [M; 4] = [M::Fixed, M::Shuffled, M::Explicit, M::Simultaneous];

    /// Row i visits the other tasks in descending order.
    fn order_table(t: usize) -> Vec<u32> {
        (0..t)
            .flat_map(|i| (0..t).rev().filter(move |&j| j != i).map(|j| j as u32))
            .collect()
    }

    /// The default config, read back through `pcgrad_config_default`.
    fn default_config() -> pcgrad_config {
        // SAFETY: all-zero bits are a valid `pcgrad_config` (integers and
        // raw pointers only); it is overwritten below anyway.
        let mut c: pcgrad_config = unsafe { core::mem::zeroed() };
        c.mode = 99;
        // SAFETY: `c` is a live, aligned, writable `pcgrad_config`.
        assert_eq!(unsafe { pcgrad_config_default(&mut c) }, PCGRAD_OK);
        c
    }

    fn config(m: M, reduction: u32) -> pcgrad_config {
        let mut c = default_config();
        match m {
            M::Fixed => {}
            M::Shuffled => c.order = PCGRAD_ORDER_SHUFFLED,
            M::Explicit => c.order = PCGRAD_ORDER_EXPLICIT,
            M::Simultaneous => {
                c.mode = PCGRAD_MODE_SIMULTANEOUS;
                // Ignored in simultaneous mode: the PRNG is not touched.
                c.order = PCGRAD_ORDER_SHUFFLED;
            }
        }
        c.reduction = reduction;
        c
    }

    fn cfg_bits(c: &pcgrad_config) -> [u64; 9] {
        [
            u64::from(c.mode),
            u64::from(c.order),
            u64::from(c.reduction),
            u64::from(c.check_finite),
            u64::from(c.matrix),
            c.threads as u64,
            c.order_table.addr() as u64,
            c.order_table_len as u64,
            c.rng.addr() as u64,
        ]
    }

    /// The same problem through the safe Rust API.
    fn rust_pc<'a>(m: M, reduction: u32, table: &'a [u32], rng: &'a mut Rng) -> PcGrad<'a> {
        let pc = match m {
            M::Fixed => PcGrad::with_mode(Mode::Sequential(Order::Fixed)),
            M::Shuffled => PcGrad::new(rng),
            M::Explicit => PcGrad::with_mode(Mode::Sequential(Order::Explicit(table))),
            M::Simultaneous => PpcGrad::new(),
        };
        pc.reduction(match reduction {
            PCGRAD_REDUCTION_SUM => Reduction::Sum,
            _ => Reduction::Mean,
        })
        .threads(1)
    }

    /// Output `k` of a set of caller buffers, for the failure checks.
    trait Fixture {
        type Args;
        /// Fresh pointers to every buffer (valid arguments).
        fn args(&mut self) -> Self::Args;
        /// Every caller buffer of a call except its scratch workspace.
        fn snapshot(&self, a: &Self::Args) -> Vec<u64>;
    }

    /// Runs `call` with arguments spoiled by `edit`, expects `want`, and
    /// checks that no caller buffer but the workspace changed.
    #[track_caller]
    fn fails<F: Fixture>(
        fx: &mut F,
        want: pcgrad_status,
        call: impl Fn(&F::Args) -> pcgrad_status,
        edit: impl FnOnce(&mut F::Args),
    ) {
        fails_case("", fx, want, call, edit)
    }

    #[track_caller]
    fn fails_case<F: Fixture>(
        case: &str,
        fx: &mut F,
        want: pcgrad_status,
        call: impl Fn(&F::Args) -> pcgrad_status,
        edit: impl FnOnce(&mut F::Args),
    ) {
        let mut a = fx.args();
        edit(&mut a);
        let before = fx.snapshot(&a);
        let got = call(&a);
        assert_eq!(got, want, "{case}");
        assert!(
            fx.snapshot(&a) == before,
            "a call that failed with {got:?} wrote a caller buffer"
        );
    }

    // -----------------------------------------------------------------------
    // Flat one-call fixture: pcgrad_merge_flat / pcgrad_project_flat.

    struct FlatFx {
        t: usize,
        segs: Vec<usize>,
        hg: Vec<u8>,
        grads: Vec<f32>,
        merged: Vec<f32>,
        stats: pcgrad_stats,
        matrix: Vec<f64>,
        ws: Vec<f64>,
        cfg: pcgrad_config,
        rng: Rng,
        table: Vec<u32>,
    }

    struct FlatArgs {
        cfg: pcgrad_config,
        /// Replaces `&cfg` when set.
        config: Option<*const pcgrad_config>,
        grads: *mut f32,
        grads_len: usize,
        segments: *const usize,
        segments_len: usize,
        has_grad: *const u8,
        has_grad_len: usize,
        tasks: usize,
        dim: usize,
        merged: *mut f32,
        merged_len: usize,
        stats: *mut pcgrad_stats,
        matrix: *mut f64,
        matrix_len: usize,
        ws: *mut f64,
        ws_len: usize,
    }

    impl FlatFx {
        fn new(t: usize, segmented: bool, m: M, reduction: u32) -> FlatFx {
            let mut need = 0;
            // SAFETY: `need` is a live, aligned `usize`.
            assert_eq!(unsafe { pcgrad_workspace_len(t, &mut need) }, PCGRAD_OK);
            FlatFx {
                t,
                segs: if segmented { SEGS.to_vec() } else { vec![] },
                hg: if segmented { mask_bytes(t) } else { vec![] },
                grads: grads(t, segmented),
                merged: vec![SENT32; N],
                stats: STATS_SENT,
                matrix: vec![SENT64; t * t],
                ws: vec![SENT64; need],
                cfg: config(m, reduction),
                rng: Rng::new(SEED),
                table: order_table(t),
            }
        }

        fn has_grad(&self) -> Vec<bool> {
            self.hg.iter().map(|&b| b == 1).collect()
        }
    }

    impl Fixture for FlatFx {
        type Args = FlatArgs;
        fn args(&mut self) -> FlatArgs {
            let mut cfg = self.cfg;
            cfg.rng = ptr::addr_of_mut!(self.rng);
            // A dangling, aligned, non-NULL pointer when T = 1 (no entries).
            cfg.order_table = self.table.as_ptr();
            cfg.order_table_len = self.table.len();
            FlatArgs {
                cfg,
                config: None,
                grads: mp(&mut self.grads),
                grads_len: self.grads.len(),
                segments: cp(&self.segs),
                segments_len: self.segs.len(),
                has_grad: cp(&self.hg),
                has_grad_len: self.hg.len(),
                tasks: self.t,
                dim: N,
                merged: mp(&mut self.merged),
                merged_len: self.merged.len(),
                stats: ptr::addr_of_mut!(self.stats),
                matrix: mp(&mut self.matrix),
                matrix_len: self.matrix.len(),
                ws: mp(&mut self.ws),
                ws_len: self.ws.len(),
            }
        }
        fn snapshot(&self, a: &FlatArgs) -> Vec<u64> {
            let mut s: Vec<u64> = Vec::new();
            s.extend(self.grads.iter().map(|x| u64::from(x.to_bits())));
            s.extend(self.segs.iter().map(|&x| x as u64));
            s.extend(self.hg.iter().map(|&x| u64::from(x)));
            s.extend(self.merged.iter().map(|x| u64::from(x.to_bits())));
            s.extend([
                self.stats.conflicting_pairs as u64,
                self.stats.projections as u64,
            ]);
            s.extend(bits64(&self.matrix));
            s.push(self.rng.state);
            s.extend(self.table.iter().map(|&x| u64::from(x)));
            s.extend(cfg_bits(&a.cfg));
            s
        }
    }

    impl FlatArgs {
        fn config(&self) -> *const pcgrad_config {
            self.config.unwrap_or(&self.cfg)
        }

        fn merge(&self) -> pcgrad_status {
            // SAFETY: every pointer is NULL, points into a live buffer of
            // the fixture for at least its length, or is a deliberately bad
            // pointer (NULL, misaligned, overlapping, wrong length) that the
            // function must refuse before any access, which the caller
            // asserts.
            unsafe {
                pcgrad_merge_flat(
                    self.config(),
                    self.grads,
                    self.grads_len,
                    self.segments,
                    self.segments_len,
                    self.has_grad,
                    self.has_grad_len,
                    self.tasks,
                    self.dim,
                    self.merged,
                    self.merged_len,
                    self.stats,
                    self.matrix,
                    self.matrix_len,
                    self.ws,
                    self.ws_len,
                )
            }
        }

        fn project(&self) -> pcgrad_status {
            // SAFETY: as in `merge`.
            unsafe {
                pcgrad_project_flat(
                    self.config(),
                    self.grads,
                    self.grads_len,
                    self.segments,
                    self.segments_len,
                    self.has_grad,
                    self.has_grad_len,
                    self.tasks,
                    self.dim,
                    self.merged,
                    self.merged_len,
                    self.stats,
                    self.matrix,
                    self.matrix_len,
                    self.ws,
                    self.ws_len,
                )
            }
        }
    }

    /// Runs a one-call entry point with valid arguments.
    fn run<F: Fixture>(fx: &mut F, call: impl Fn(&F::Args) -> pcgrad_status) -> pcgrad_status {
        let a = fx.args();
        call(&a)
    }

    // -----------------------------------------------------------------------
    // Per-variable fixture: pcgrad_merge_vars / pcgrad_project_vars.

    struct VarsFx {
        t: usize,
        segs: Vec<usize>,
        /// T x S buffers; empty where the task has no gradient (NULL).
        cells: Vec<Vec<f32>>,
        /// S merged buffers.
        outs: Vec<Vec<f32>>,
        stats: pcgrad_stats,
        matrix: Vec<f64>,
        ws: Vec<f64>,
        cfg: pcgrad_config,
        rng: Rng,
        table: Vec<u32>,
    }

    struct VarsArgs {
        cfg: pcgrad_config,
        config: Option<*const pcgrad_config>,
        gtab: Vec<*mut f32>,
        /// Replaces `gtab.as_ptr()` when set.
        grads: Option<*const *mut f32>,
        grads_len: usize,
        segments: *const usize,
        segments_len: usize,
        tasks: usize,
        mtab: Vec<*mut f32>,
        merged: Option<*const *mut f32>,
        merged_len: usize,
        stats: *mut pcgrad_stats,
        matrix: *mut f64,
        matrix_len: usize,
        ws: *mut f64,
        ws_len: usize,
    }

    impl VarsFx {
        fn new(t: usize, m: M, reduction: u32) -> VarsFx {
            let g = grads(t, false);
            let cells = (0..t * S)
                .map(|c| {
                    let (i, s) = (c / S, c % S);
                    if present(i, s) {
                        let a = i * N + seg_start(s);
                        g[a..a + SEGS[s]].to_vec()
                    } else {
                        vec![]
                    }
                })
                .collect();
            let mut need = 0;
            // SAFETY: `need` is a live, aligned `usize`.
            assert_eq!(
                unsafe { pcgrad_workspace_len_vars(t, S, &mut need) },
                PCGRAD_OK
            );
            VarsFx {
                t,
                segs: SEGS.to_vec(),
                cells,
                outs: SEGS.iter().map(|&l| vec![SENT32; l]).collect(),
                stats: STATS_SENT,
                matrix: vec![SENT64; t * t],
                ws: vec![SENT64; need],
                cfg: config(m, reduction),
                rng: Rng::new(SEED),
                table: order_table(t),
            }
        }

        fn merged(&self) -> Vec<f32> {
            self.outs.concat()
        }
    }

    impl Fixture for VarsFx {
        type Args = VarsArgs;
        fn args(&mut self) -> VarsArgs {
            let mut cfg = self.cfg;
            cfg.rng = ptr::addr_of_mut!(self.rng);
            cfg.order_table = self.table.as_ptr();
            cfg.order_table_len = self.table.len();
            let gtab: Vec<*mut f32> = self.cells.iter_mut().map(mp).collect();
            let mtab: Vec<*mut f32> = self.outs.iter_mut().map(mp).collect();
            VarsArgs {
                cfg,
                config: None,
                grads: None,
                grads_len: gtab.len(),
                gtab,
                segments: self.segs.as_ptr(),
                segments_len: self.segs.len(),
                tasks: self.t,
                merged: None,
                merged_len: mtab.len(),
                mtab,
                stats: ptr::addr_of_mut!(self.stats),
                matrix: mp(&mut self.matrix),
                matrix_len: self.matrix.len(),
                ws: mp(&mut self.ws),
                ws_len: self.ws.len(),
            }
        }
        fn snapshot(&self, a: &VarsArgs) -> Vec<u64> {
            let mut s: Vec<u64> = Vec::new();
            for c in self.cells.iter().chain(&self.outs) {
                s.extend(c.iter().map(|x| u64::from(x.to_bits())));
            }
            s.extend(self.segs.iter().map(|&x| x as u64));
            s.extend([
                self.stats.conflicting_pairs as u64,
                self.stats.projections as u64,
            ]);
            s.extend(bits64(&self.matrix));
            s.push(self.rng.state);
            s.extend(self.table.iter().map(|&x| u64::from(x)));
            s.extend(cfg_bits(&a.cfg));
            s.extend(a.gtab.iter().chain(&a.mtab).map(|p| p.addr() as u64));
            s
        }
    }

    impl VarsArgs {
        fn config(&self) -> *const pcgrad_config {
            self.config.unwrap_or(&self.cfg)
        }
        fn grads(&self) -> *const *mut f32 {
            self.grads.unwrap_or(self.gtab.as_ptr())
        }
        fn merged(&self) -> *const *mut f32 {
            self.merged.unwrap_or(self.mtab.as_ptr())
        }

        fn merge(&self) -> pcgrad_status {
            // SAFETY: as in `FlatArgs::merge`; the pointer tables are owned
            // by `self` and point at the fixture's buffers (or NULL).
            unsafe {
                pcgrad_merge_vars(
                    self.config(),
                    self.grads().cast::<*const f32>(),
                    self.grads_len,
                    self.segments,
                    self.segments_len,
                    self.tasks,
                    self.merged(),
                    self.merged_len,
                    self.stats,
                    self.matrix,
                    self.matrix_len,
                    self.ws,
                    self.ws_len,
                )
            }
        }

        fn project(&self) -> pcgrad_status {
            // SAFETY: as in `merge`.
            unsafe {
                pcgrad_project_vars(
                    self.config(),
                    self.grads(),
                    self.grads_len,
                    self.segments,
                    self.segments_len,
                    self.tasks,
                    self.merged(),
                    self.merged_len,
                    self.stats,
                    self.matrix,
                    self.matrix_len,
                    self.ws,
                    self.ws_len,
                )
            }
        }
    }

    // -----------------------------------------------------------------------
    // Three-phase fixture: pcgrad_gram_flat, pcgrad_gram_combine,
    // pcgrad_coefficients, pcgrad_apply_merged_flat,
    // pcgrad_apply_projected_flat. `gram` holds the full Gram and `coef`
    // valid coefficients, so every phase can run on its own.

    struct PhFx {
        t: usize,
        segs: Vec<usize>,
        hg: Vec<u8>,
        grads: Vec<f32>,
        gram: Vec<f64>,
        partial: Vec<f64>,
        coef: Vec<f64>,
        /// N + 2 floats, so that a too-long `merged_len` stays in bounds.
        merged: Vec<f32>,
        tile: Vec<f64>,
        stats: pcgrad_stats,
        cfg: pcgrad_config,
        rng: Rng,
        table: Vec<u32>,
    }

    struct PhArgs {
        cfg: pcgrad_config,
        config: Option<*const pcgrad_config>,
        grads: *mut f32,
        grads_len: usize,
        segments: *const usize,
        segments_len: usize,
        has_grad: *const u8,
        has_grad_len: usize,
        tasks: usize,
        dim: usize,
        lo: usize,
        hi: usize,
        gram: *mut f64,
        gram_len: usize,
        partial: *const f64,
        partial_len: usize,
        coef: *mut f64,
        coef_len: usize,
        reduction: u32,
        merged: *mut f32,
        merged_len: usize,
        stats: *mut pcgrad_stats,
        tile: *mut f64,
        tile_len: usize,
    }

    impl PhFx {
        fn new(t: usize, m: M) -> PhFx {
            let hg = mask_bytes(t);
            let grads = grads(t, true);
            let hb: Vec<bool> = hg.iter().map(|&b| b == 1).collect();
            let layout = Layout::new(t, N, &SEGS, &hb).unwrap();
            let mut gram = vec![0.0; 2 * t * t];
            engine::accumulate_gram(&Flat::new(layout, &grads).unwrap(), 0, N, &mut gram).unwrap();
            let mut coef = vec![0.0; engine::coefficients_len(t).unwrap()];
            let mut mode = Mode::Simultaneous;
            engine::coefficients(&gram, t, &mut mode, &mut coef).unwrap();
            PhFx {
                t,
                segs: SEGS.to_vec(),
                hg,
                grads,
                partial: gram.clone(),
                gram,
                coef,
                merged: vec![SENT32; N + 2],
                tile: vec![SENT64; engine::tile_len(t).unwrap()],
                stats: STATS_SENT,
                cfg: config(m, PCGRAD_REDUCTION_MEAN),
                rng: Rng::new(SEED),
                table: order_table(t),
            }
        }
    }

    impl Fixture for PhFx {
        type Args = PhArgs;
        fn args(&mut self) -> PhArgs {
            let mut cfg = self.cfg;
            cfg.rng = ptr::addr_of_mut!(self.rng);
            cfg.order_table = self.table.as_ptr();
            cfg.order_table_len = self.table.len();
            PhArgs {
                cfg,
                config: None,
                grads: mp(&mut self.grads),
                grads_len: self.grads.len(),
                segments: self.segs.as_ptr(),
                segments_len: self.segs.len(),
                has_grad: self.hg.as_ptr(),
                has_grad_len: self.hg.len(),
                tasks: self.t,
                dim: N,
                lo: 2,
                hi: 11,
                gram: mp(&mut self.gram),
                gram_len: self.gram.len(),
                partial: self.partial.as_ptr(),
                partial_len: self.partial.len(),
                coef: mp(&mut self.coef),
                coef_len: self.coef.len(),
                reduction: PCGRAD_REDUCTION_MEAN,
                merged: mp(&mut self.merged),
                merged_len: 9,
                stats: ptr::addr_of_mut!(self.stats),
                tile: mp(&mut self.tile),
                tile_len: self.tile.len(),
            }
        }
        fn snapshot(&self, a: &PhArgs) -> Vec<u64> {
            let mut s: Vec<u64> = Vec::new();
            s.extend(self.grads.iter().map(|x| u64::from(x.to_bits())));
            s.extend(self.segs.iter().map(|&x| x as u64));
            s.extend(self.hg.iter().map(|&x| u64::from(x)));
            s.extend(bits64(&self.gram));
            s.extend(bits64(&self.partial));
            s.extend(bits64(&self.coef));
            s.extend(self.merged.iter().map(|x| u64::from(x.to_bits())));
            s.extend([
                self.stats.conflicting_pairs as u64,
                self.stats.projections as u64,
            ]);
            s.push(self.rng.state);
            s.extend(self.table.iter().map(|&x| u64::from(x)));
            s.extend(cfg_bits(&a.cfg));
            s
        }
    }

    // SAFETY (every method): as in `FlatArgs::merge`.
    impl PhArgs {
        fn gram_flat(&self) -> pcgrad_status {
            // SAFETY: see the impl.
            unsafe {
                pcgrad_gram_flat(
                    self.grads,
                    self.grads_len,
                    self.segments,
                    self.segments_len,
                    self.has_grad,
                    self.has_grad_len,
                    self.tasks,
                    self.dim,
                    self.lo,
                    self.hi,
                    self.gram,
                    self.gram_len,
                )
            }
        }

        fn combine(&self) -> pcgrad_status {
            // SAFETY: see the impl.
            unsafe {
                pcgrad_gram_combine(
                    self.partial,
                    self.partial_len,
                    self.tasks,
                    self.gram,
                    self.gram_len,
                )
            }
        }

        fn coefficients(&self) -> pcgrad_status {
            // SAFETY: see the impl.
            unsafe {
                pcgrad_coefficients(
                    self.config.unwrap_or(&self.cfg),
                    self.gram,
                    self.gram_len,
                    self.tasks,
                    self.stats,
                    self.coef,
                    self.coef_len,
                )
            }
        }

        fn apply_merged(&self) -> pcgrad_status {
            // SAFETY: see the impl.
            unsafe {
                pcgrad_apply_merged_flat(
                    self.grads,
                    self.grads_len,
                    self.segments,
                    self.segments_len,
                    self.has_grad,
                    self.has_grad_len,
                    self.coef,
                    self.coef_len,
                    self.tasks,
                    self.dim,
                    self.reduction,
                    self.lo,
                    self.hi,
                    self.merged,
                    self.merged_len,
                    self.tile,
                    self.tile_len,
                )
            }
        }

        fn apply_projected(&self) -> pcgrad_status {
            // SAFETY: see the impl.
            unsafe {
                pcgrad_apply_projected_flat(
                    self.grads,
                    self.grads_len,
                    self.segments,
                    self.segments_len,
                    self.has_grad,
                    self.has_grad_len,
                    self.coef,
                    self.coef_len,
                    self.tasks,
                    self.dim,
                    self.reduction,
                    self.lo,
                    self.hi,
                    self.merged,
                    self.merged_len,
                    self.tile,
                    self.tile_len,
                )
            }
        }
    }

    // -----------------------------------------------------------------------
    // Pack and unflatten fixtures.

    struct PackFx {
        t: usize,
        segs: Vec<usize>,
        cells: Vec<Vec<f32>>,
        out: Vec<f32>,
        hg: Vec<u8>,
    }

    struct PackArgs {
        vtab: Vec<*const f32>,
        vars: Option<*const *const f32>,
        vars_len: usize,
        segments: *const usize,
        segments_len: usize,
        tasks: usize,
        out: *mut f32,
        out_len: usize,
        has_grad: *mut u8,
        has_grad_len: usize,
    }

    impl PackFx {
        fn new(t: usize) -> PackFx {
            let v = VarsFx::new(t, M::Fixed, 0);
            PackFx {
                t,
                segs: v.segs,
                cells: v.cells,
                out: vec![SENT32; t * N],
                hg: vec![9; t * S],
            }
        }
    }

    impl Fixture for PackFx {
        type Args = PackArgs;
        fn args(&mut self) -> PackArgs {
            let vtab: Vec<*const f32> = self.cells.iter().map(|c| cp(c)).collect();
            PackArgs {
                vars: None,
                vars_len: vtab.len(),
                vtab,
                segments: self.segs.as_ptr(),
                segments_len: self.segs.len(),
                tasks: self.t,
                out: mp(&mut self.out),
                out_len: self.out.len(),
                has_grad: mp(&mut self.hg),
                has_grad_len: self.hg.len(),
            }
        }
        fn snapshot(&self, a: &PackArgs) -> Vec<u64> {
            let mut s: Vec<u64> = Vec::new();
            for c in self.cells.iter().chain([&self.out]) {
                s.extend(c.iter().map(|x| u64::from(x.to_bits())));
            }
            s.extend(self.segs.iter().map(|&x| x as u64));
            s.extend(self.hg.iter().map(|&x| u64::from(x)));
            s.extend(a.vtab.iter().map(|p| p.addr() as u64));
            s
        }
    }

    impl PackArgs {
        fn pack(&self) -> pcgrad_status {
            // SAFETY: as in `FlatArgs::merge`.
            unsafe {
                pcgrad_pack(
                    self.vars.unwrap_or(self.vtab.as_ptr()),
                    self.vars_len,
                    self.segments,
                    self.segments_len,
                    self.tasks,
                    self.out,
                    self.out_len,
                    self.has_grad,
                    self.has_grad_len,
                )
            }
        }
    }

    struct UnFx {
        segs: Vec<usize>,
        flat: Vec<f32>,
        outs: Vec<Vec<f32>>,
    }

    struct UnArgs {
        flat: *const f32,
        flat_len: usize,
        segments: *const usize,
        segments_len: usize,
        otab: Vec<*mut f32>,
        outs: Option<*const *mut f32>,
        outs_len: usize,
    }

    impl UnFx {
        fn new() -> UnFx {
            UnFx {
                segs: SEGS.to_vec(),
                flat: (0..N).map(|c| value(1, c)).collect(),
                outs: SEGS.iter().map(|&l| vec![SENT32; l]).collect(),
            }
        }
    }

    impl Fixture for UnFx {
        type Args = UnArgs;
        fn args(&mut self) -> UnArgs {
            let otab: Vec<*mut f32> = self.outs.iter_mut().map(mp).collect();
            UnArgs {
                flat: mp(&mut self.flat),
                flat_len: self.flat.len(),
                segments: self.segs.as_ptr(),
                segments_len: self.segs.len(),
                outs: None,
                outs_len: otab.len(),
                otab,
            }
        }
        fn snapshot(&self, a: &UnArgs) -> Vec<u64> {
            let mut s: Vec<u64> = Vec::new();
            for c in self.outs.iter().chain([&self.flat]) {
                s.extend(c.iter().map(|x| u64::from(x.to_bits())));
            }
            s.extend(self.segs.iter().map(|&x| x as u64));
            s.extend(a.otab.iter().map(|p| p.addr() as u64));
            s
        }
    }

    impl UnArgs {
        fn unflatten(&self) -> pcgrad_status {
            // SAFETY: as in `FlatArgs::merge`.
            unsafe {
                pcgrad_unflatten(
                    self.flat,
                    self.flat_len,
                    self.segments,
                    self.segments_len,
                    self.outs.unwrap_or(self.otab.as_ptr()),
                    self.outs_len,
                )
            }
        }
    }

    // -----------------------------------------------------------------------
    // Success paths against the safe Rust API.

    #[test]
    fn status_str_describes_every_code() {
        let text = |code: i32| {
            let p = pcgrad_status_str(code);
            assert!(!p.is_null());
            // SAFETY: non-NULL and documented as a static NUL-terminated
            // string.
            unsafe { CStr::from_ptr(p) }.to_str().unwrap()
        };
        let known: Vec<&str> = ALL_CODES.iter().map(|&c| text(c as i32)).collect();
        for (i, a) in known.iter().enumerate() {
            assert!(!a.is_empty() && *a != "unknown status", "{a}");
            assert!(known[i + 1..].iter().all(|b| a != b), "duplicate {a}");
        }
        assert_eq!(known[0], "success");
        let errors = [
            Error::NullPointer,
            Error::NoTasks,
            Error::LengthMismatch,
            Error::Overflow,
            Error::WorkspaceTooSmall,
            Error::NonFinite,
            Error::Overlap,
            Error::InvalidEnum,
            Error::InvalidOrder,
            Error::InvalidRange,
            Error::Misaligned,
            Error::InvalidParameter,
            Error::NotPsd,
        ];
        for (k, e) in errors.into_iter().enumerate() {
            let st = pcgrad_status::from(e);
            assert_eq!(st, ALL_CODES[k + 1]);
            assert_eq!(st as i32, e.code());
            assert_eq!(text(e.code()), e.as_str());
        }
        for code in [1, 2, -14, -100, i32::MIN, i32::MAX] {
            assert_eq!(text(code), "unknown status");
        }
    }

    #[test]
    fn version_matches_cargo() {
        // SAFETY: documented as a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(pcgrad_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
        let want =
            std::format!("{PCGRAD_VERSION_MAJOR}.{PCGRAD_VERSION_MINOR}.{PCGRAD_VERSION_PATCH}");
        assert_eq!(v.to_str().unwrap(), want);
    }

    #[test]
    fn zeroed_config_is_the_default_and_valid() {
        // SAFETY: integers and raw pointers only: all-zero bits are valid.
        let zero: pcgrad_config = unsafe { core::mem::zeroed() };
        let d = default_config();
        assert_eq!(cfg_bits(&d), cfg_bits(&zero));
        assert!(d.order_table.is_null() && d.rng.is_null());
        for t in [2, 3] {
            let mut fx = FlatFx::new(t, true, M::Fixed, 0);
            let mut a = fx.args();
            a.cfg = zero;
            assert_eq!(a.merge(), PCGRAD_OK);
            let hb = fx.has_grad();
            let layout = Layout::new(t, N, &SEGS, &hb).unwrap();
            let mut want = vec![0.0f32; N];
            let mut ws = vec![0.0; crate::workspace_len(t).unwrap()];
            let st = PcGrad::with_mode(Mode::Sequential(Order::Fixed))
                .merge(&Flat::new(layout, &fx.grads).unwrap(), &mut want, &mut ws)
                .unwrap();
            assert_eq!(bits32(&fx.merged), bits32(&want));
            assert_eq!(fx.stats, stats_of(st));
        }
    }

    #[test]
    fn explicit_order_table_may_be_null_only_when_empty() {
        for (t, want) in [(1, PCGRAD_OK), (2, PCGRAD_ERROR_LENGTH_MISMATCH)] {
            let mut fx = FlatFx::new(t, true, M::Explicit, 0);
            let before = fx.merged.clone();
            let mut a = fx.args();
            a.cfg.order_table = ptr::null();
            a.cfg.order_table_len = 0;
            assert_eq!(a.merge(), want, "T = {t}");
            if want != PCGRAD_OK {
                assert_eq!(bits32(&fx.merged), bits32(&before));
                continue;
            }
            let mut fixed = FlatFx::new(t, true, M::Fixed, 0);
            assert_eq!(fixed.args().merge(), PCGRAD_OK);
            assert_eq!(bits32(&fx.merged), bits32(&fixed.merged));
        }
    }

    #[test]
    fn sizes_match_the_rust_api() {
        let call = |f: unsafe extern "C" fn(usize, *mut usize) -> pcgrad_status, t: usize| {
            let mut out = 4242usize;
            // SAFETY: `out` is a live, aligned `usize`.
            let st = unsafe { f(t, &mut out) };
            (st, out)
        };
        for t in [1, 2, 3, 4, 5, 8, 16] {
            let ws = crate::workspace_len(t).unwrap();
            assert_eq!(ws, 3 * t * t + 34 * t + 32);
            assert_eq!(call(pcgrad_workspace_len, t), (PCGRAD_OK, ws));
            assert_eq!(call(pcgrad_gram_len, t), (PCGRAD_OK, 2 * t * t));
            assert_eq!(call(pcgrad_coefficients_len, t), (PCGRAD_OK, t * t + 2 * t));
            assert_eq!(call(pcgrad_tile_len, t), (PCGRAD_OK, 32 * (t + 1)));
            for s in [0, 1, 3, 7] {
                let mut out = 0;
                // SAFETY: `out` is a live, aligned `usize`.
                let st = unsafe { pcgrad_workspace_len_vars(t, s, &mut out) };
                assert_eq!((st, out), (PCGRAD_OK, ws + 2 * t * s + (t * s).div_ceil(8)));
            }
        }
        type SizeFn = unsafe extern "C" fn(usize, *mut usize) -> pcgrad_status;
        // With whether the size grows as T^2.
        let fns: [(SizeFn, bool); 4] = [
            (pcgrad_workspace_len, true),
            (pcgrad_gram_len, true),
            (pcgrad_coefficients_len, true),
            (pcgrad_tile_len, false),
        ];
        for (f, square) in fns {
            // Errors leave `*out` alone.
            assert_eq!(call(f, 0), (PCGRAD_ERROR_NO_TASKS, 4242));
            assert_eq!(call(f, usize::MAX), (PCGRAD_ERROR_OVERFLOW, 4242));
            if square {
                assert_eq!(
                    call(f, 1 << (usize::BITS / 2)),
                    (PCGRAD_ERROR_OVERFLOW, 4242)
                );
            }
            // SAFETY: NULL is refused before any write.
            assert_eq!(unsafe { f(2, ptr::null_mut()) }, PCGRAD_ERROR_NULL_POINTER);
            let mut cell = [0usize; 2];
            // SAFETY: misaligned, refused before any write.
            let st = unsafe { f(2, mis_mut(cell.as_mut_ptr())) };
            assert_eq!((st, cell), (PCGRAD_ERROR_MISALIGNED, [0, 0]));
        }
        let mut out = 4242usize;
        for (t, s, want) in [
            (0, 3, PCGRAD_ERROR_NO_TASKS),
            (2, usize::MAX, PCGRAD_ERROR_OVERFLOW),
            (usize::MAX, 1, PCGRAD_ERROR_OVERFLOW),
            (1, usize::MAX / 2, PCGRAD_ERROR_OVERFLOW),
        ] {
            // SAFETY: `out` is a live, aligned `usize`.
            let st = unsafe { pcgrad_workspace_len_vars(t, s, &mut out) };
            assert_eq!((st, out), (want, 4242));
        }
        // SAFETY: NULL is refused before any write.
        let st = unsafe { pcgrad_workspace_len_vars(1, 1, ptr::null_mut()) };
        assert_eq!(st, PCGRAD_ERROR_NULL_POINTER);
        // SAFETY: NULL / misaligned, refused before any write.
        unsafe {
            assert_eq!(
                pcgrad_config_default(ptr::null_mut()),
                PCGRAD_ERROR_NULL_POINTER
            );
            let mut c = [default_config(); 2];
            c[0].mode = 7;
            let p = mis_mut(c.as_mut_ptr());
            assert_eq!(pcgrad_config_default(p), PCGRAD_ERROR_MISALIGNED);
            assert_eq!(c[0].mode, 7);
        }
    }

    /// Both reductions; under Miri (slow) one per (T, mode) pair,
    /// alternating, so that each still meets every T and every mode.
    fn reductions(t: usize, m: M) -> &'static [u32] {
        const BOTH: [u32; 2] = [PCGRAD_REDUCTION_MEAN, PCGRAD_REDUCTION_SUM];
        if cfg!(miri) {
            let k = (t + m as usize) % 2;
            &BOTH[k..k + 1]
        } else {
            &BOTH
        }
    }

    #[test]
    fn flat_one_call_matches_the_rust_api() {
        let mut projections = 0;
        for t in TASKS {
            for segmented in [false, true] {
                for m in MODES {
                    for &red in reductions(t, m) {
                        let table = order_table(t);
                        let matrix_kind = ((t + red as usize) % 2) as u32;
                        let mut fx = FlatFx::new(t, segmented, m, red);
                        fx.cfg.matrix = matrix_kind;
                        let hb = fx.has_grad();
                        let segs = fx.segs.clone();
                        let layout = Layout::new(t, N, &segs, &hb).unwrap();
                        let want_matrix = |ws: &[f64]| {
                            let g = workspace_gram(ws, t).unwrap();
                            if matrix_kind == PCGRAD_MATRIX_COSINE {
                                let mut c = vec![0.0; t * t];
                                cosine_matrix(g, t, &mut c).unwrap();
                                c
                            } else {
                                g.to_vec()
                            }
                        };

                        // Merge.
                        assert_eq!(run(&mut fx, FlatArgs::merge), PCGRAD_OK);
                        let mut rng = Rng::new(SEED);
                        let mut ws = vec![0.0; crate::workspace_len(t).unwrap()];
                        let mut merged = vec![0.0f32; N];
                        let st = rust_pc(m, red, &table, &mut rng)
                            .merge(&Flat::new(layout, &fx.grads).unwrap(), &mut merged, &mut ws)
                            .unwrap();
                        assert_eq!(bits32(&fx.merged), bits32(&merged), "T={t} {m:?}");
                        assert_eq!(fx.stats, stats_of(st));
                        assert_eq!(bits64(&fx.matrix), bits64(&want_matrix(&ws)));
                        assert_eq!(fx.rng, rng);
                        projections += st.projections;

                        // Project in place, with and without merged.
                        for with_merged in [true, false] {
                            let mut fx = FlatFx::new(t, segmented, m, red);
                            fx.cfg.matrix = matrix_kind;
                            let mut a = fx.args();
                            if !with_merged {
                                (a.merged, a.merged_len) = (ptr::null_mut(), 0);
                                (a.stats, a.matrix, a.matrix_len) =
                                    (ptr::null_mut(), ptr::null_mut(), 0);
                            }
                            assert_eq!(a.project(), PCGRAD_OK);
                            let mut rng = Rng::new(SEED);
                            let mut g = grads(t, segmented);
                            let mut merged = vec![0.0f32; N];
                            let st = rust_pc(m, red, &table, &mut rng)
                                .project(
                                    &mut FlatMut::new(layout, &mut g).unwrap(),
                                    Some(&mut merged),
                                    &mut ws,
                                )
                                .unwrap();
                            assert_eq!(bits32(&fx.grads), bits32(&g));
                            assert_eq!(fx.rng, rng);
                            if with_merged {
                                assert_eq!(bits32(&fx.merged), bits32(&merged));
                                assert_eq!(fx.stats, stats_of(st));
                                assert_eq!(bits64(&fx.matrix), bits64(&want_matrix(&ws)));
                            } else {
                                assert!(fx.merged.iter().all(|x| x.to_bits() == SENT32.to_bits()));
                                assert_eq!(fx.stats, STATS_SENT);
                            }
                        }
                    }
                }
            }
        }
        assert!(projections > 0, "the problems have no conflicts");
    }

    /// Column ranges of a three-way split of 0..N.
    const CUTS: [(usize, usize); 3] = [(0, 4), (4, 9), (9, N)];

    #[test]
    fn three_phases_equal_the_one_call_result() {
        for t in TASKS {
            for m in MODES {
                for &red in reductions(t, m) {
                    // The one-call result, through the C ABI.
                    let mut one = FlatFx::new(t, true, m, red);
                    assert_eq!(run(&mut one, FlatArgs::merge), PCGRAD_OK);
                    let mut one_p = FlatFx::new(t, true, m, red);
                    assert_eq!(run(&mut one_p, FlatArgs::project), PCGRAD_OK);

                    let mut fx = PhFx::new(t, m);
                    fx.cfg.reduction = red;
                    let mut gram = vec![0.0; 2 * t * t];
                    for (lo, hi) in CUTS {
                        // Each shard: a zeroed partial, then the all-reduce.
                        let mut a = fx.args();
                        let mut partial = vec![0.0; 2 * t * t];
                        (a.lo, a.hi, a.gram) = (lo, hi, partial.as_mut_ptr());
                        assert_eq!(a.gram_flat(), PCGRAD_OK);
                        (a.partial, a.gram) = (partial.as_ptr(), gram.as_mut_ptr());
                        assert_eq!(a.combine(), PCGRAD_OK);
                    }
                    assert_eq!(bits64(&gram[..t * t]), bits64(&one.matrix));

                    let mut coef = vec![SENT64; t * t + 2 * t];
                    let mut a = fx.args();
                    (a.gram, a.coef, a.coef_len) =
                        (gram.as_mut_ptr(), coef.as_mut_ptr(), coef.len());
                    assert_eq!(a.coefficients(), PCGRAD_OK);
                    assert_eq!(fx.stats, one.stats);
                    assert_eq!(fx.rng, one.rng);

                    let mut merged = vec![SENT32; N];
                    let mut merged_p = vec![SENT32; N];
                    for (lo, hi) in CUTS {
                        let mut a = fx.args();
                        (a.lo, a.hi, a.reduction) = (lo, hi, red);
                        (a.coef, a.coef_len) = (coef.as_mut_ptr(), coef.len());
                        (a.merged, a.merged_len) = (merged[lo..hi].as_mut_ptr(), hi - lo);
                        assert_eq!(a.apply_merged(), PCGRAD_OK);
                        (a.merged, a.merged_len) = (merged_p[lo..hi].as_mut_ptr(), hi - lo);
                        assert_eq!(a.apply_projected(), PCGRAD_OK);
                    }
                    assert_eq!(
                        bits32(&merged),
                        bits32(&one.merged),
                        "T={t} {m:?} red={red}"
                    );
                    assert_eq!(bits32(&merged_p), bits32(&one_p.merged));
                    assert_eq!(bits32(&fx.grads), bits32(&one_p.grads));
                }
            }
        }
    }

    #[test]
    fn per_variable_equals_flat_with_masks() {
        for t in TASKS {
            for m in MODES {
                for &red in reductions(t, m) {
                    // Flat, with has_grad masks (GARBAGE where absent).
                    let mut flat = FlatFx::new(t, true, m, red);
                    assert_eq!(run(&mut flat, FlatArgs::merge), PCGRAD_OK);
                    let mut flat_p = FlatFx::new(t, true, m, red);
                    assert_eq!(run(&mut flat_p, FlatArgs::project), PCGRAD_OK);

                    // Per variable, NULL where absent.
                    let mut v = VarsFx::new(t, m, red);
                    assert_eq!(run(&mut v, VarsArgs::merge), PCGRAD_OK);
                    assert_eq!(bits32(&v.merged()), bits32(&flat.merged), "T={t} {m:?}");
                    assert_eq!(v.stats, flat.stats);
                    assert_eq!(bits64(&v.matrix), bits64(&flat.matrix));
                    assert_eq!(v.rng, flat.rng);

                    for with_merged in [true, false] {
                        let mut v = VarsFx::new(t, m, red);
                        let mut a = v.args();
                        if !with_merged {
                            (a.merged, a.merged_len) = (Some(ptr::null()), 0);
                        }
                        assert_eq!(a.project(), PCGRAD_OK);
                        for (c, cell) in v.cells.iter().enumerate() {
                            let (i, s) = (c / S, c % S);
                            let at = i * N + seg_start(s);
                            if present(i, s) {
                                assert_eq!(bits32(cell), bits32(&flat_p.grads[at..at + SEGS[s]]));
                            } else {
                                assert!(cell.is_empty());
                            }
                        }
                        if with_merged {
                            assert_eq!(bits32(&v.merged()), bits32(&flat_p.merged));
                        } else {
                            assert!(v.merged().iter().all(|x| x.to_bits() == SENT32.to_bits()));
                        }
                        assert_eq!(v.stats, flat_p.stats);
                        assert_eq!(v.rng, flat_p.rng);
                    }
                }
            }
        }
    }

    #[test]
    fn pack_and_unflatten_match_the_rust_api() {
        for t in TASKS {
            let mut fx = PackFx::new(t);
            assert_eq!(run(&mut fx, PackArgs::pack), PCGRAD_OK);
            let opts: Vec<Option<&[f32]>> = fx
                .cells
                .iter()
                .map(|c| (!c.is_empty()).then_some(&c[..]))
                .collect();
            let mut out = vec![SENT32; t * N];
            let mut hg = vec![false; t * S];
            pack(t, &SEGS, &opts, &mut out, &mut hg).unwrap();
            assert_eq!(bits32(&fx.out), bits32(&out));
            assert_eq!(fx.hg, mask_bytes(t));
            assert_eq!(fx.hg, hg.iter().map(|&b| u8::from(b)).collect::<Vec<_>>());
            // The packed buffer is the flat problem with zeros where absent.
            let mut want = grads(t, false);
            for (c, &h) in hg.iter().enumerate() {
                if !h {
                    let at = (c / S) * N + seg_start(c % S);
                    want[at..at + SEGS[c % S]].fill(0.0);
                }
            }
            assert_eq!(bits32(&fx.out), bits32(&want));
            // ... and merges like the per-variable call.
            let mut flat = FlatFx::new(t, true, M::Fixed, 0);
            flat.grads.copy_from_slice(&fx.out);
            assert_eq!(run(&mut flat, FlatArgs::merge), PCGRAD_OK);
            let mut v = VarsFx::new(t, M::Fixed, 0);
            assert_eq!(run(&mut v, VarsArgs::merge), PCGRAD_OK);
            assert_eq!(bits32(&flat.merged), bits32(&v.merged()));
        }
        let mut fx = UnFx::new();
        assert_eq!(run(&mut fx, UnArgs::unflatten), PCGRAD_OK);
        let mut outs: Vec<Vec<f32>> = SEGS.iter().map(|&l| vec![0.0; l]).collect();
        let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(|o| &mut o[..]).collect();
        unflatten(&SEGS, &fx.flat, &mut refs).unwrap();
        assert_eq!(fx.outs, outs);
        assert_eq!(fx.outs.concat(), fx.flat);
    }

    #[test]
    fn rng_advances_only_on_success_with_a_shuffled_order() {
        let t = 3;
        // Sequential shuffled: advances, as the Rust API's PRNG does.
        let mut fx = FlatFx::new(t, true, M::Shuffled, 0);
        assert_eq!(run(&mut fx, FlatArgs::merge), PCGRAD_OK);
        assert_ne!(fx.rng, Rng::new(SEED));
        let mut rng = Rng::new(SEED);
        let mut ws = vec![0.0; crate::workspace_len(t).unwrap()];
        let hb = fx.has_grad();
        let layout = Layout::new(t, N, &SEGS, &hb).unwrap();
        PcGrad::new(&mut rng)
            .merge(
                &Flat::new(layout, &fx.grads).unwrap(),
                &mut [0.0; N],
                &mut ws,
            )
            .unwrap();
        assert_eq!(fx.rng, rng);
        // A second call advances it again.
        assert_eq!(run(&mut fx, FlatArgs::project), PCGRAD_OK);
        assert_ne!(fx.rng, rng);
        // Other orders and modes never touch it, even when it is set.
        for m in [M::Fixed, M::Explicit, M::Simultaneous] {
            let mut fx = FlatFx::new(t, true, m, 0);
            assert_eq!(run(&mut fx, FlatArgs::merge), PCGRAD_OK);
            assert_eq!(run(&mut fx, FlatArgs::project), PCGRAD_OK);
            assert_eq!(fx.rng, Rng::new(SEED));
            let mut v = VarsFx::new(t, m, 0);
            assert_eq!(run(&mut v, VarsArgs::merge), PCGRAD_OK);
            assert_eq!(v.rng, Rng::new(SEED));
            let mut p = PhFx::new(t, m);
            assert_eq!(run(&mut p, PhArgs::coefficients), PCGRAD_OK);
            assert_eq!(p.rng, Rng::new(SEED));
        }
        // Simultaneous mode and fixed order need no PRNG at all.
        for m in [M::Fixed, M::Simultaneous] {
            let mut fx = FlatFx::new(t, true, m, 0);
            let mut a = fx.args();
            a.cfg.rng = ptr::null_mut();
            assert_eq!(a.merge(), PCGRAD_OK);
        }
        // The phase API and the per-variable calls advance it on success.
        let mut v = VarsFx::new(t, M::Shuffled, 0);
        assert_eq!(run(&mut v, VarsArgs::project), PCGRAD_OK);
        assert_eq!(v.rng, rng);
        let mut p = PhFx::new(t, M::Shuffled);
        assert_eq!(run(&mut p, PhArgs::coefficients), PCGRAD_OK);
        assert_ne!(p.rng, Rng::new(SEED));
        // A failure (here NaN with check_finite) leaves it as it was.
        let mut fx = FlatFx::new(t, true, M::Shuffled, 0);
        fx.grads[1] = f32::NAN;
        fx.cfg.check_finite = 1;
        fails(&mut fx, PCGRAD_ERROR_NON_FINITE, FlatArgs::merge, |_| {});
        assert_eq!(fx.rng, Rng::new(SEED));
    }

    #[test]
    fn values_where_a_task_has_no_gradient_are_ignored() {
        for nonfinite in [f32::NAN, f32::INFINITY] {
            let mut clean = FlatFx::new(3, true, M::Fixed, 0);
            assert_eq!(run(&mut clean, FlatArgs::merge), PCGRAD_OK);
            let mut fx = FlatFx::new(3, true, M::Fixed, 0);
            for x in fx.grads.iter_mut().filter(|x| **x == GARBAGE) {
                *x = nonfinite;
            }
            fx.cfg.check_finite = 1;
            assert_eq!(run(&mut fx, FlatArgs::merge), PCGRAD_OK);
            assert_eq!(bits32(&fx.merged), bits32(&clean.merged));
        }
    }

    // -----------------------------------------------------------------------
    // Every status code with real bad input; after each failure every
    // caller buffer but the workspace is bitwise unchanged (`fails`).

    /// `fails` for each `(status, &|args| edit)` case in turn.
    macro_rules! cases {
        ($fx:expr, $call:expr; $( ($want:expr, &|$a:ident| $body:expr) ),* $(,)?) => {
            $( fails_case(stringify!($body), &mut $fx, $want, $call, |$a| { $body; }); )*
        };
    }

    /// Out-of-range values for each enum field of `pcgrad_config`.
    fn bad_enums() -> [(&'static str, u32); 12] {
        [
            ("mode", 2),
            ("mode", 3),
            ("mode", u32::MAX),
            ("order", 3),
            ("order", u32::MAX),
            ("reduction", 2),
            ("reduction", u32::MAX),
            ("check_finite", 2),
            ("check_finite", 3),
            ("check_finite", u32::MAX),
            ("matrix", 2),
            ("matrix", u32::MAX),
        ]
    }

    fn set_enum(c: &mut pcgrad_config, field: &str, v: u32) {
        match field {
            "mode" => c.mode = v,
            "order" => c.order = v,
            "reduction" => c.reduction = v,
            "check_finite" => c.check_finite = v,
            _ => c.matrix = v,
        }
    }

    /// Bad explicit tables for T = 3 (valid: `[2, 1, 2, 0, 1, 0]`), with the
    /// status each must give.
    fn bad_tables() -> [(Vec<u32>, pcgrad_status); 6] {
        [
            (vec![2, 2, 2, 0, 1, 0], PCGRAD_ERROR_INVALID_ORDER),
            (vec![0, 1, 2, 0, 1, 0], PCGRAD_ERROR_INVALID_ORDER),
            (vec![2, 1, 2, 0, 1, 3], PCGRAD_ERROR_INVALID_ORDER),
            (vec![2, 1, 2, 0, 1, u32::MAX], PCGRAD_ERROR_INVALID_ORDER),
            (vec![2, 1, 2, 0, 1], PCGRAD_ERROR_LENGTH_MISMATCH),
            (vec![2, 1, 2, 0, 1, 0, 1], PCGRAD_ERROR_LENGTH_MISMATCH),
        ]
    }

    /// The config-level failures every config-taking call shares.
    fn config_failures<F: Fixture>(
        new: impl Fn(M) -> F,
        call: impl Fn(&F::Args) -> pcgrad_status + Copy,
        cfg: impl Fn(&mut F::Args) -> &mut pcgrad_config + Copy,
        config: impl Fn(&mut F::Args) -> &mut Option<*const pcgrad_config> + Copy,
    ) {
        let mut fx = new(M::Fixed);
        fails(&mut fx, PCGRAD_ERROR_NULL_POINTER, call, |a| {
            *config(a) = Some(ptr::null())
        });
        fails(&mut fx, PCGRAD_ERROR_MISALIGNED, call, |a| {
            let p: *const pcgrad_config = cfg(a);
            *config(a) = Some(mis(p));
        });
        for (field, v) in bad_enums() {
            let case = std::format!("config.{field} = {v}");
            fails_case(&case, &mut fx, PCGRAD_ERROR_INVALID_ENUM, call, |a| {
                set_enum(cfg(a), field, v)
            });
        }
        // The PRNG: required (and aligned) for a shuffled order only.
        let mut fx = new(M::Shuffled);
        fails(&mut fx, PCGRAD_ERROR_NULL_POINTER, call, |a| {
            cfg(a).rng = ptr::null_mut()
        });
        fails(&mut fx, PCGRAD_ERROR_MISALIGNED, call, |a| {
            cfg(a).rng = mis_mut(cfg(a).rng)
        });
        // The PRNG inside the config struct that the call reads.
        fails(&mut fx, PCGRAD_ERROR_OVERLAP, call, |a| {
            let c = cfg(a);
            c.rng = (c as *mut pcgrad_config).cast();
        });
        // The explicit table.
        let mut fx = new(M::Explicit);
        fails(&mut fx, PCGRAD_ERROR_NULL_POINTER, call, |a| {
            cfg(a).order_table = ptr::null()
        });
        fails(&mut fx, PCGRAD_ERROR_MISALIGNED, call, |a| {
            cfg(a).order_table = mis(cfg(a).order_table)
        });
        fails(&mut fx, PCGRAD_ERROR_OVERFLOW, call, |a| {
            cfg(a).order_table_len = usize::MAX
        });
        for (table, want) in bad_tables() {
            fails(&mut fx, want, call, |a| {
                let c = cfg(a);
                (c.order_table, c.order_table_len) = (table.as_ptr(), table.len());
            });
        }
    }

    #[test]
    fn one_call_flat_refuses_bad_input() {
        type Call = fn(&FlatArgs) -> pcgrad_status;
        for (call, project) in [(FlatArgs::merge as Call, false), (FlatArgs::project, true)] {
            config_failures(
                |m| FlatFx::new(3, true, m, 0),
                call,
                |a| &mut a.cfg,
                |a| &mut a.config,
            );
            let mut fx = FlatFx::new(3, true, M::Shuffled, 0);
            let t = 3;
            use pcgrad_status::*;
            let bad_segs = [5usize, 1, 6];
            cases!(fx, call;
                (PCGRAD_ERROR_NULL_POINTER, &|a| a.grads = ptr::null_mut()),
                (PCGRAD_ERROR_NULL_POINTER, &|a| a.segments = ptr::null()),
                (PCGRAD_ERROR_NULL_POINTER, &|a| a.has_grad = ptr::null()),
                (PCGRAD_ERROR_NULL_POINTER, &|a| a.matrix = ptr::null_mut()),
                (PCGRAD_ERROR_NULL_POINTER, &|a| a.ws = ptr::null_mut()),
                (PCGRAD_ERROR_NO_TASKS, &|a| a.tasks = 0),
                (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.grads_len -= 1),
                (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.dim += 1),
                (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.merged_len -= 1),
                (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.matrix_len -= 1),
                (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.has_grad_len -= 1),
                (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.segments_len -= 1),
                (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| {
                    a.segments = bad_segs.as_ptr()
                }),
                (PCGRAD_ERROR_OVERFLOW, &|a| a.dim = usize::MAX),
                (PCGRAD_ERROR_OVERFLOW, &|a| a.dim = usize::MAX / 2 + 1),
                (PCGRAD_ERROR_OVERFLOW, &|a| a.grads_len = usize::MAX),
                (PCGRAD_ERROR_OVERFLOW, &|a| a.ws_len = usize::MAX),
                (PCGRAD_ERROR_OVERFLOW, &|a| a.matrix_len = usize::MAX / 4),
                (PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a| a.ws_len -= 1),
                (PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a| a.ws_len = 0),
                (PCGRAD_ERROR_MISALIGNED, &|a| a.grads = mis_mut(a.grads)),
                (PCGRAD_ERROR_MISALIGNED, &|a| a.segments = mis(a.segments)),
                (PCGRAD_ERROR_MISALIGNED, &|a| a.merged = mis_mut(a.merged)),
                (PCGRAD_ERROR_MISALIGNED, &|a| a.stats = mis_mut(a.stats)),
                (PCGRAD_ERROR_MISALIGNED, &|a| a.matrix = mis_mut(a.matrix)),
                (PCGRAD_ERROR_MISALIGNED, &|a| a.ws = mis_mut(a.ws)),
                // Outputs over inputs, outputs over each other.
                (PCGRAD_ERROR_OVERLAP, &|a| {
                    a.merged = a.grads.wrapping_add(2)
                }),
                (PCGRAD_ERROR_OVERLAP, &|a| a.matrix = a.ws.wrapping_add(5)),
                (PCGRAD_ERROR_OVERLAP, &|a| a.stats = a.ws.cast()),
                (PCGRAD_ERROR_OVERLAP, &|a| {
                    a.cfg.rng = a.ws.wrapping_add(1).cast()
                }),
            );
            // The config struct inside the workspace (zeroed here, so that
            // it reads as a valid config and the overlap check decides).
            let mut fx = FlatFx::new(t, true, M::Fixed, 0);
            fx.ws.fill(0.0);
            fails(&mut fx, PCGRAD_ERROR_OVERLAP, call, |a| {
                a.config = Some(a.ws.cast_const().wrapping_add(2).cast())
            });
            // has_grad bytes must be 0 or 1.
            let mut fx = FlatFx::new(t, true, M::Fixed, 0);
            fx.hg[4] = 2;
            fails(&mut fx, PCGRAD_ERROR_INVALID_ENUM, call, |_| {});
            fx.hg[4] = 255;
            fails(&mut fx, PCGRAD_ERROR_INVALID_ENUM, call, |_| {});
            // NaN / Inf with check_finite = 1 (and a shuffled PRNG that must
            // not advance).
            for x in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut fx = FlatFx::new(t, true, M::Shuffled, 0);
                fx.grads[2 * N + 12] = x;
                fx.cfg.check_finite = 1;
                fails(&mut fx, PCGRAD_ERROR_NON_FINITE, call, |_| {});
            }
            // The explicit table may not lie in an output.
            let mut fx = FlatFx::new(t, true, M::Explicit, 0);
            fails(&mut fx, PCGRAD_ERROR_OVERLAP, call, |a| {
                a.cfg.order_table = a.merged.cast_const().cast()
            });
            if project {
                // The in-place gradients are an output too.
                fails(&mut fx, PCGRAD_ERROR_OVERLAP, call, |a| {
                    a.cfg.order_table = a.grads.cast_const().cast()
                });
            } else {
                // ... but inputs may overlap each other.
                let mut fx = FlatFx::new(t, false, M::Fixed, 0);
                let mut a = fx.args();
                a.segments = ptr::null();
                assert_eq!(call(&a), PCGRAD_OK);
                // `merged` is required for merge; NULL with length 0 too.
                fails(&mut fx, PCGRAD_ERROR_NULL_POINTER, call, |a| {
                    (a.merged, a.merged_len) = (ptr::null_mut(), 0)
                });
                fails(&mut fx, PCGRAD_ERROR_NULL_POINTER, call, |a| {
                    a.merged = ptr::null_mut()
                });
            }
            if project {
                let mut fx = FlatFx::new(t, true, M::Fixed, 0);
                fails(&mut fx, PCGRAD_ERROR_NULL_POINTER, call, |a| {
                    a.merged = ptr::null_mut()
                });
            }
        }
    }

    #[test]
    fn per_variable_refuses_bad_input() {
        let t = 3;
        type Call = fn(&VarsArgs) -> pcgrad_status;
        for (call, project) in [(VarsArgs::merge as Call, false), (VarsArgs::project, true)] {
            config_failures(
                |m| VarsFx::new(t, m, 0),
                call,
                |a| &mut a.cfg,
                |a| &mut a.config,
            );
            let mut fx = VarsFx::new(t, M::Shuffled, 0);
            let huge = [usize::MAX, 1, 1];
            let big = [usize::MAX / 2, 0, 0];
            cases!(fx, call;
                (PCGRAD_ERROR_NULL_POINTER, &|a| a.grads = Some(ptr::null())),
                (PCGRAD_ERROR_NULL_POINTER, &|a| a.segments = ptr::null()),
                (PCGRAD_ERROR_NULL_POINTER, &|a| a.merged = Some(ptr::null())),
                (PCGRAD_ERROR_NULL_POINTER, &|a| a.mtab[1] = ptr::null_mut()),
                (PCGRAD_ERROR_NULL_POINTER, &|a| a.matrix = ptr::null_mut()),
                (PCGRAD_ERROR_NULL_POINTER, &|a| a.ws = ptr::null_mut()),
                (PCGRAD_ERROR_NO_TASKS, &|a| a.tasks = 0),
                (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.grads_len -= 1),
                (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.tasks = 2),
                (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.merged_len -= 1),
                (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.segments_len -= 1),
                (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.matrix_len += 1),
                (PCGRAD_ERROR_OVERFLOW, &|a| a.segments = huge.as_ptr()),
                (PCGRAD_ERROR_OVERFLOW, &|a| a.segments = big.as_ptr()),
                (PCGRAD_ERROR_OVERFLOW, &|a| a.grads_len = usize::MAX),
                (PCGRAD_ERROR_OVERFLOW, &|a| a.tasks = usize::MAX),
                (PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a| a.ws_len -= 1),
                (PCGRAD_ERROR_MISALIGNED, &|a| {
                    a.grads = Some(mis(a.gtab.as_ptr()))
                }),
                (PCGRAD_ERROR_MISALIGNED, &|a| a.gtab[4] = mis_mut(a.gtab[4])),
                (PCGRAD_ERROR_MISALIGNED, &|a| a.segments = mis(a.segments)),
                (PCGRAD_ERROR_MISALIGNED, &|a| {
                    a.merged = Some(mis(a.mtab.as_ptr()))
                }),
                (PCGRAD_ERROR_MISALIGNED, &|a| a.mtab[2] = mis_mut(a.mtab[2])),
                (PCGRAD_ERROR_MISALIGNED, &|a| a.stats = mis_mut(a.stats)),
                (PCGRAD_ERROR_MISALIGNED, &|a| a.matrix = mis_mut(a.matrix)),
                (PCGRAD_ERROR_MISALIGNED, &|a| a.ws = mis_mut(a.ws)),
                // A merged buffer over a gradient, two merged buffers over
                // each other, diagnostics or the PRNG in the workspace.
                (PCGRAD_ERROR_OVERLAP, &|a| a.mtab[0] = a.gtab[3]),
                (PCGRAD_ERROR_OVERLAP, &|a| {
                    a.mtab[1] = a.mtab[0].wrapping_add(4)
                }),
                (PCGRAD_ERROR_OVERLAP, &|a| a.matrix = a.ws.wrapping_add(3)),
                (PCGRAD_ERROR_OVERLAP, &|a| {
                    a.stats = a.ws.wrapping_add(9).cast()
                }),
                (PCGRAD_ERROR_OVERLAP, &|a| a.cfg.rng = a.ws.cast()),
            );
            // NaN / Inf with check_finite = 1.
            for x in [f32::NAN, f32::INFINITY] {
                let mut fx = VarsFx::new(t, M::Shuffled, 0);
                fx.cells[4][0] = x;
                fx.cfg.check_finite = 1;
                fails(&mut fx, PCGRAD_ERROR_NON_FINITE, call, |_| {});
            }
            let mut fx = VarsFx::new(t, M::Fixed, 0);
            if project {
                // Two gradient cells on one buffer: both are outputs.
                fails(&mut fx, PCGRAD_ERROR_OVERLAP, call, |a| {
                    a.gtab[3] = a.gtab[0]
                });
                // The pointer table itself inside an output buffer.
                // The pointer table itself lying in an output buffer (its
                // own cell 0, as if the caller reused the memory).
                let mut tab: Vec<*mut f32> = vec![ptr::null_mut(); t * S];
                fails(&mut fx, PCGRAD_ERROR_OVERLAP, call, |a| {
                    tab.copy_from_slice(&a.gtab);
                    tab[0] = tab.as_mut_ptr().cast();
                    a.grads = Some(tab.as_ptr());
                });
                // `merged` is optional for project: NULL with length 0 ...
                let mut a = fx.args();
                (a.merged, a.merged_len) = (Some(ptr::null()), 0);
                assert_eq!(call(&a), PCGRAD_OK);
                // ... but not with S entries.
                let mut fx = VarsFx::new(t, M::Fixed, 0);
                fails(&mut fx, PCGRAD_ERROR_NULL_POINTER, call, |a| {
                    a.merged = Some(ptr::null())
                });
            } else {
                // Read-only gradients may share a buffer.
                let mut a = fx.args();
                a.gtab[3] = a.gtab[0];
                assert_eq!(call(&a), PCGRAD_OK);
                let mut fx = VarsFx::new(t, M::Fixed, 0);
                fails(&mut fx, PCGRAD_ERROR_NULL_POINTER, call, |a| {
                    (a.merged, a.merged_len) = (Some(ptr::null()), 0)
                });
            }
        }
    }

    #[test]
    fn phases_refuse_bad_input() {
        let t = 3;
        type Call = fn(&PhArgs) -> pcgrad_status;
        let (gram, combine, coefs): (Call, Call, Call) =
            (PhArgs::gram_flat, PhArgs::combine, PhArgs::coefficients);
        let (merged, projected): (Call, Call) = (PhArgs::apply_merged, PhArgs::apply_projected);
        config_failures(
            |m| PhFx::new(t, m),
            coefs,
            |a| &mut a.cfg,
            |a| &mut a.config,
        );
        let mut fx = PhFx::new(t, M::Shuffled);
        // Arguments shared by phase 1 and phase 3.
        for call in [gram, merged, projected] {
            cases!(fx, call;
                (PCGRAD_ERROR_NULL_POINTER, &|a| a.grads = ptr::null_mut()),
                (PCGRAD_ERROR_NULL_POINTER, &|a| a.segments = ptr::null()),
                (PCGRAD_ERROR_NULL_POINTER, &|a| a.has_grad = ptr::null()),
                (PCGRAD_ERROR_NO_TASKS, &|a| a.tasks = 0),
                (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.grads_len += 1),
                (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.has_grad_len -= 1),
                (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.segments_len = 2),
                (PCGRAD_ERROR_OVERFLOW, &|a| a.dim = usize::MAX),
                (PCGRAD_ERROR_OVERFLOW, &|a| a.grads_len = usize::MAX),
                (PCGRAD_ERROR_INVALID_RANGE, &|a| (a.lo, a.hi) = (5, 4)),
                (PCGRAD_ERROR_INVALID_RANGE, &|a| {
                    (a.lo, a.hi) = (usize::MAX, 0)
                }),
                (PCGRAD_ERROR_MISALIGNED, &|a| a.grads = mis_mut(a.grads)),
                (PCGRAD_ERROR_MISALIGNED, &|a| a.segments = mis(a.segments)),
            );
            fx.hg[1] = 2;
            fails(&mut fx, PCGRAD_ERROR_INVALID_ENUM, call, |_| {});
            fx.hg[1] = 1;
        }
        // Phase 1.
        cases!(fx, gram;
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.gram = ptr::null_mut()),
            (PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a| a.gram_len -= 1),
            (PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a| a.gram_len = t * t),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.gram = mis_mut(a.gram)),
            (PCGRAD_ERROR_INVALID_RANGE, &|a| a.hi = N + 1),
        );
        // The Gram over the gradients (an f64-aligned arena holds both).
        let mut arena = vec![0.0f64; t * N + 2 * t * t];
        fails(&mut fx, PCGRAD_ERROR_OVERLAP, gram, |a| {
            a.grads = arena.as_mut_ptr().cast();
            a.gram = arena.as_mut_ptr().wrapping_add(t * N / 2 - 1);
        });
        // Combine.
        cases!(fx, combine;
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.partial = ptr::null()),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.gram = ptr::null_mut()),
            (PCGRAD_ERROR_NO_TASKS, &|a| a.tasks = 0),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.partial_len = t * t - 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.gram_len = t * t - 1),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.tasks = usize::MAX),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.partial_len = usize::MAX),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.partial = mis(a.partial)),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.gram = mis_mut(a.gram)),
            (PCGRAD_ERROR_OVERLAP, &|a| {
                a.partial = a.gram.wrapping_add(t * t)
            }),
        );
        // Phase 2.
        cases!(fx, coefs;
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.gram = ptr::null_mut()),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.coef = ptr::null_mut()),
            (PCGRAD_ERROR_NO_TASKS, &|a| a.tasks = 0),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.gram_len = t * t - 1),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.tasks = usize::MAX),
            (PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a| a.coef_len -= 1),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.gram = mis_mut(a.gram)),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.coef = mis_mut(a.coef)),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.stats = mis_mut(a.stats)),
            (PCGRAD_ERROR_OVERLAP, &|a| a.coef = a.gram.wrapping_add(2)),
            (PCGRAD_ERROR_OVERLAP, &|a| a.stats = a.coef.cast()),
            (PCGRAD_ERROR_OVERLAP, &|a| a.cfg.rng = a.gram.cast()),
            (PCGRAD_ERROR_OVERLAP, &|a| {
                a.cfg.rng = a.coef.wrapping_add(1).cast()
            }),
        );
        for x in [f64::NAN, f64::INFINITY] {
            let mut fx = PhFx::new(t, M::Shuffled);
            fx.gram[t + 1] = x;
            fx.cfg.check_finite = 1;
            fails(&mut fx, PCGRAD_ERROR_NON_FINITE, coefs, |_| {});
        }
        // Phase 3.
        for (call, project) in [(merged, false), (projected, true)] {
            let mut fx = PhFx::new(t, M::Fixed);
            cases!(fx, call;
                (PCGRAD_ERROR_NULL_POINTER, &|a| a.coef = ptr::null_mut()),
                (PCGRAD_ERROR_NULL_POINTER, &|a| a.tile = ptr::null_mut()),
                (PCGRAD_ERROR_NULL_POINTER, &|a| a.merged = ptr::null_mut()),
                (PCGRAD_ERROR_INVALID_ENUM, &|a| a.reduction = 2),
                (PCGRAD_ERROR_INVALID_ENUM, &|a| a.reduction = u32::MAX),
                (PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a| a.coef_len -= 1),
                (PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a| a.tile_len -= 1),
                (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.merged_len += 1),
                (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.merged_len -= 1),
                (PCGRAD_ERROR_INVALID_RANGE, &|a| {
                    (a.hi, a.merged_len) = (N + 1, N - 1)
                }),
                (PCGRAD_ERROR_INVALID_RANGE, &|a| {
                    (a.lo, a.hi, a.merged_len) = (3, 2, 0)
                }),
                (PCGRAD_ERROR_MISALIGNED, &|a| a.coef = mis_mut(a.coef)),
                (PCGRAD_ERROR_MISALIGNED, &|a| a.merged = mis_mut(a.merged)),
                (PCGRAD_ERROR_MISALIGNED, &|a| a.tile = mis_mut(a.tile)),
                (PCGRAD_ERROR_OVERLAP, &|a| {
                    a.merged = a.grads.wrapping_add(N)
                }),
                (PCGRAD_ERROR_OVERLAP, &|a| a.tile = a.coef.wrapping_add(1)),
            );
            // The merged output may be absent only for the projected pass.
            let mut a = fx.args();
            (a.merged, a.merged_len) = (ptr::null_mut(), 0);
            let want = if project {
                PCGRAD_OK
            } else {
                PCGRAD_ERROR_NULL_POINTER
            };
            assert_eq!(call(&a), want);
            if project {
                let mut fx = PhFx::new(t, M::Fixed);
                let mut arena = vec![0.0f64; t * N + engine::tile_len(t).unwrap()];
                // The tile over the in-place gradients.
                fails(&mut fx, PCGRAD_ERROR_OVERLAP, call, |a| {
                    a.grads = arena.as_mut_ptr().cast();
                    a.tile = arena.as_mut_ptr().wrapping_add(1);
                });
            }
        }
        // Coefficients for another T are refused by the apply phases.
        let mut fx = PhFx::new(t, M::Fixed);
        let mut other = PhFx::new(2, M::Fixed);
        let mut a = other.args();
        a.coef_len = 2 * 2 + 2 * 2;
        let c = a.coef;
        fails(&mut fx, PCGRAD_ERROR_WORKSPACE_TOO_SMALL, merged, |a| {
            (a.coef, a.coef_len) = (c, 8)
        });
    }

    #[test]
    fn pack_and_unflatten_refuse_bad_input() {
        let t = 3;
        let call = PackArgs::pack;
        let mut fx = PackFx::new(t);
        let huge = [usize::MAX, 1, 1];
        cases!(fx, call;
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.vars = Some(ptr::null())),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.segments = ptr::null()),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.out = ptr::null_mut()),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.has_grad = ptr::null_mut()),
            (PCGRAD_ERROR_NO_TASKS, &|a| a.tasks = 0),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.vars_len -= 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.out_len -= 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.has_grad_len -= 1),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.segments = huge.as_ptr()),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.tasks = usize::MAX),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.out_len = usize::MAX),
            (PCGRAD_ERROR_MISALIGNED, &|a| {
                a.vars = Some(mis(a.vtab.as_ptr()))
            }),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.vtab[0] = mis(a.vtab[0])),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.segments = mis(a.segments)),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.out = mis_mut(a.out)),
            (PCGRAD_ERROR_OVERLAP, &|a| a.has_grad = a.out.cast()),
            (PCGRAD_ERROR_OVERLAP, &|a| {
                a.vtab[4] = a.out.wrapping_add(N).cast_const()
            }),
        );
        let call = UnArgs::unflatten;
        let mut fx = UnFx::new();
        cases!(fx, call;
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.flat = ptr::null()),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.segments = ptr::null()),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.outs = Some(ptr::null())),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.otab[2] = ptr::null_mut()),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.flat_len -= 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.outs_len -= 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.segments_len -= 1),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.segments = huge.as_ptr()),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.flat_len = usize::MAX),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.flat = mis(a.flat)),
            (PCGRAD_ERROR_MISALIGNED, &|a| {
                a.outs = Some(mis(a.otab.as_ptr()))
            }),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.otab[1] = mis_mut(a.otab[1])),
            (PCGRAD_ERROR_OVERLAP, &|a| {
                a.otab[0] = a.flat.wrapping_add(3).cast_mut()
            }),
            (PCGRAD_ERROR_OVERLAP, &|a| {
                a.otab[1] = a.otab[2].wrapping_add(6)
            }),
        );
    }
}
