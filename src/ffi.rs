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

use crate::api::{cosine_matrix, workspace_len, PcGrad};
use crate::engine::{self, coefficients, Coefficients, Mode, Order, Reduction, Stats};
use crate::error::{Error, Result};
use crate::layout::{Flat, FlatMut, Gradients, Layout, PerVariable, PerVariableMut};
use crate::parallel;
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
    /// NULL.
    pub order_table: *const u32,
    /// The number of entries of `order_table`: T * (T - 1).
    pub order_table_len: usize,
    /// The PRNG state, read and advanced only when `order` is
    /// `PCGRAD_ORDER_SHUFFLED` in sequential mode; else may be NULL.
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
fn req<T>(p: *const T, len: usize) -> Result<()> {
    if p.is_null() {
        return Err(Error::NullPointer);
    }
    if !p.is_aligned() {
        return Err(Error::Misaligned);
    }
    match len.checked_mul(size_of::<T>()) {
        Some(b) if b <= isize::MAX as usize && (p as usize).checked_add(b).is_some() => Ok(()),
        _ => Err(Error::Overflow),
    }
}

/// An optional buffer: NULL with length 0 is absent (false).
fn opt<T>(p: *const T, len: usize) -> Result<bool> {
    if p.is_null() {
        if len != 0 {
            return Err(Error::NullPointer);
        }
        return Ok(false);
    }
    req(p, len).map(|()| true)
}

/// An address range, for the overlap checks.
#[derive(Clone, Copy, Debug)]
struct Region {
    lo: usize,
    hi: usize,
}

impl Region {
    /// `len` elements at `p` (already checked by [`req`]); NULL is empty.
    fn of<T>(p: *const T, len: usize) -> Region {
        let lo = p as usize;
        if p.is_null() {
            return Region { lo: 0, hi: 0 };
        }
        Region {
            lo,
            hi: lo.saturating_add(len.saturating_mul(size_of::<T>())),
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
            req(raw.order_table, raw.order_table_len)?;
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
            // SAFETY: checked by `req`, read-only for the call.
            Mode::Sequential(Order::Explicit(unsafe {
                slice::from_raw_parts(self.raw.order_table, self.raw.order_table_len)
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
        if !stats.is_null() {
            req(stats, 1)?;
        }
        if opt(matrix, matrix_len)? {
            let tt = tasks.checked_mul(tasks).ok_or(Error::Overflow)?;
            if matrix_len != tt {
                return Err(Error::LengthMismatch);
            }
        }
        Ok(Diag {
            stats,
            matrix,
            matrix_len,
        })
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
        req(merged, merged_len)?;
        let diag = Diag::check(stats, matrix, matrix_len, tasks)?;
        check_workspace(workspace, workspace_len, crate::workspace_len(tasks)?)?;
        let [d0, d1] = diag.regions();
        let [c0, c1] = cfg.inputs(config);
        let outs = [
            Region::of(merged, merged_len),
            Region::of(workspace, workspace_len),
            d0,
            d1,
            cfg.output(),
        ];
        let ins = [
            c0,
            c1,
            Region::of(grads, grads_len),
            Region::of(segments, segments_len),
            Region::of(has_grad, has_grad_len),
        ];
        disjoint(&|f| each(&outs, f), &|f| each(&ins, f))?;
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
        let [d0, d1] = diag.regions();
        let [c0, c1] = cfg.inputs(config);
        let outs = [
            Region::of(grads, grads_len),
            Region::of(merged, merged_len),
            Region::of(workspace, workspace_len),
            d0,
            d1,
            cfg.output(),
        ];
        let ins = [
            c0,
            c1,
            Region::of(segments, segments_len),
            Region::of(has_grad, has_grad_len),
        ];
        disjoint(&|f| each(&outs, f), &|f| each(&ins, f))?;
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

/// Phases 1 and 2 over the whole problem (as the one-call `PcGrad` does),
/// then `apply` once per variable (segment `k`, coordinates `lo..hi`), so
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
    let n = grads.layout().dim();
    if cfg.uses_table {
        // SAFETY: checked by `Config::check` and the overlap checks.
        engine::check_order_table(
            unsafe { view(cfg.raw.order_table, cfg.raw.order_table_len) },
            t,
        )?;
    }
    let gl = engine::gram_workspace_len(t)?;
    let cl = engine::coefficients_len(t)?;
    let (gram, rest) = ws.split_at_mut(gl);
    gram.fill(0.0);
    let w = parallel::workers(cfg.raw.threads, t.saturating_mul(n));
    parallel::accumulate_gram(&*grads, gram, w)?;
    if cfg.check_finite && (0..t).any(|i| !gram[i * t + i].is_finite()) {
        return Err(Error::NonFinite);
    }
    let (coef_ws, tile) = rest.split_at_mut(cl);
    // SAFETY: as in `pcgrad_of`.
    let mut mode = unsafe { cfg.mode() };
    let (coef, stats) = coefficients(gram, t, &mut mode, coef_ws)?;
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
