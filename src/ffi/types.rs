//! The C types of the ABI: the status, the config and stats structs, and
//! the constants of their fields.

use crate::error::{Error, Result, ERRORS};
use crate::rng::Rng;

/// Major version of the library (matches `PCGRAD_VERSION_MAJOR`).
pub const PCGRAD_VERSION_MAJOR: u32 = 0;
/// Minor version of the library (matches `PCGRAD_VERSION_MINOR`).
pub const PCGRAD_VERSION_MINOR: u32 = 1;
/// Patch version of the library (matches `PCGRAD_VERSION_PATCH`).
pub const PCGRAD_VERSION_PATCH: u32 = 0;

pub(super) const fn parse_u32(s: &str) -> u32 {
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
/// drawn from `*pcgrad_config.rng`, which advances on success. The exact
/// draw, for replaying it elsewhere: for each task i in ascending order, the
/// other tasks in ascending order are shuffled by Fisher-Yates from the top
/// (k = T - 2 down to 1: swap entries k and r), with r uniform in 0..=k
/// from SplitMix64 (state += 0x9E3779B97F4A7C15, then the usual mix):
/// x = the high 32 bits of the output, m = x * (k + 1) as 64 bits, rejected
/// and redrawn while (m mod 2^32) < (2^32 - (k + 1)) mod (k + 1), then
/// r = m >> 32. That is T (T - 2) draws per call plus the (rare, p <
/// (k + 1) / 2^32) rejections.
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
/// are stable and never renumbered or reused. The errors, their codes and
/// texts come from one table (`src/error.rs`); the docs of the enumerators
/// below are its `doc` column (a test holds them equal).
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
    /// The call asks for a feature this build leaves out (the diagnostic
    /// matrix without the `diagnostics` feature).
    PCGRAD_ERROR_UNSUPPORTED = -14,
}

impl From<Error> for pcgrad_status {
    fn from(e: Error) -> Self {
        ERROR_STATUS[e as usize]
    }
}

/// The enumerators of the errors, in the order of the error table
/// (`crate::error::ERRORS`), which the assertion below holds them to.
const ERROR_STATUS: [pcgrad_status; ERRORS.len()] = {
    use pcgrad_status::*;
    [
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
        PCGRAD_ERROR_UNSUPPORTED,
    ]
};

const _: () = {
    let mut k = 0;
    while k < ERRORS.len() {
        assert!(ERROR_STATUS[k] as i32 == ERRORS[k].error.code());
        k += 1;
    }
};

pub(super) fn status(r: Result<()>) -> pcgrad_status {
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
    /// Worker threads for the streaming passes: 0 = all cores; a larger
    /// request is capped at the cores the process may use. Used only by a
    /// library built with the `parallel` feature (the default host build);
    /// results are bitwise identical for every value.
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

/// Counts that come for free with the projection. They follow the
/// library's own rounding: a pair conflicts when its computed Gram entry is
/// negative, so at an exact tie (orthogonal gradients) the rounding of the
/// computed dot product decides.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct pcgrad_stats {
    /// Unordered pairs i < j with g_i . g_j < 0.
    pub conflicting_pairs: usize,
    /// Projections applied (at most T * (T - 1)).
    pub projections: usize,
}
