//! The error type: every bad input is a value, never a panic.

use core::fmt;

/// Why a call was refused. A call that returns an error has written nothing
/// to any caller buffer.
///
/// Each variant has a stable negative code ([`Error::code`]) that the C API
/// returns as its status; codes are never renumbered or reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// A required pointer was NULL (C API only).
    NullPointer,
    /// The number of tasks T was zero.
    NoTasks,
    /// A buffer length does not match what the shape requires (for example a
    /// gradient buffer that is not T x N, or segment lengths that do not sum
    /// to N).
    LengthMismatch,
    /// T * N, T * T or another size computation overflows `usize`.
    Overflow,
    /// The workspace is shorter than [`workspace_len`](crate::workspace_len).
    WorkspaceTooSmall,
    /// An input gradient holds NaN or an infinity and the caller asked for
    /// finiteness checking.
    NonFinite,
    /// An output buffer overlaps an input buffer (C API only; Rust borrows
    /// make this impossible).
    Overlap,
    /// An enum value passed from C is out of range.
    InvalidEnum,
    /// An explicit visiting order is not a permutation of the other tasks.
    InvalidOrder,
    /// A coordinate range is empty-inverted or runs past N.
    InvalidRange,
    /// A pointer is not aligned for its element type (C API only).
    Misaligned,
    /// A method parameter is negative, NaN or out of its range (for example
    /// a negative regularisation or a GradVac `beta` above 1).
    InvalidParameter,
    /// A Gram matrix is not positive semidefinite (a negative diagonal
    /// entry, a 2 x 2 principal minor or an eigenvalue below
    /// `-`[`PSD_TOL`](crate::methods::PSD_TOL) after normalisation by the
    /// trace): no set of gradients has it.
    NotPsd,
    /// The call asks for something this build of the library leaves out
    /// (C API only): a diagnostic matrix from a `pcgrad-capi` built without
    /// its `diagnostics` feature.
    Unsupported,
}

/// The one table of errors: row k is the error with code -(k + 1), its C
/// enumerator, its short text ([`Error::as_str`], `pcgrad_status_str`) and
/// the doc of its C enumerator (`pcgrad_status` in `include/pcgrad.h`; a
/// test checks the header against this column).
pub(crate) const ERRORS: [Row; 14] = [
    Row {
        error: Error::NullPointer,
        name: "PCGRAD_ERROR_NULL_POINTER",
        text: c"a required pointer is NULL",
        doc: "A required pointer is NULL, or an optional one is NULL with a non-zero length.",
    },
    Row {
        error: Error::NoTasks,
        name: "PCGRAD_ERROR_NO_TASKS",
        text: c"the number of tasks is zero",
        doc: "The number of tasks is zero.",
    },
    Row {
        error: Error::LengthMismatch,
        name: "PCGRAD_ERROR_LENGTH_MISMATCH",
        text: c"a buffer length does not match the shape",
        doc: "A buffer length does not match the shape.",
    },
    Row {
        error: Error::Overflow,
        name: "PCGRAD_ERROR_OVERFLOW",
        text: c"a size computation overflows",
        doc: "T * N or another size computation overflows.",
    },
    Row {
        error: Error::WorkspaceTooSmall,
        name: "PCGRAD_ERROR_WORKSPACE_TOO_SMALL",
        text: c"the workspace is too small",
        doc: "The workspace is shorter than the documented length.",
    },
    Row {
        error: Error::NonFinite,
        name: "PCGRAD_ERROR_NON_FINITE",
        text: c"an input holds NaN or infinity",
        doc: "An input holds NaN or infinity and `check_finite` is set.",
    },
    Row {
        error: Error::Overlap,
        name: "PCGRAD_ERROR_OVERLAP",
        text: c"an output buffer overlaps an input buffer",
        doc: "An output buffer overlaps another buffer of the call.",
    },
    Row {
        error: Error::InvalidEnum,
        name: "PCGRAD_ERROR_INVALID_ENUM",
        text: c"an enum value is out of range",
        doc: "An enumeration or flag value is out of range.",
    },
    Row {
        error: Error::InvalidOrder,
        name: "PCGRAD_ERROR_INVALID_ORDER",
        text: c"an explicit order is not a permutation of the other tasks",
        doc: "An explicit order table is not a permutation of the other tasks.",
    },
    Row {
        error: Error::InvalidRange,
        name: "PCGRAD_ERROR_INVALID_RANGE",
        text: c"a coordinate range is inverted or runs past N",
        doc: "A coordinate range is inverted or runs past N.",
    },
    Row {
        error: Error::Misaligned,
        name: "PCGRAD_ERROR_MISALIGNED",
        text: c"a pointer is not aligned for its element type",
        doc: "A pointer is not aligned for its element type.",
    },
    Row {
        error: Error::InvalidParameter,
        name: "PCGRAD_ERROR_INVALID_PARAMETER",
        text: c"a method parameter is negative or out of range",
        doc: "A method parameter is negative or out of range.",
    },
    Row {
        error: Error::NotPsd,
        name: "PCGRAD_ERROR_NOT_PSD",
        text: c"the Gram matrix is not positive semidefinite",
        doc: "A Gram matrix is not positive semidefinite.",
    },
    Row {
        error: Error::Unsupported,
        name: "PCGRAD_ERROR_UNSUPPORTED",
        text: c"the library was built without the requested feature",
        doc: "The call asks for a feature this build leaves out (the diagnostic matrix without the `diagnostics` feature).",
    },
];

// The [`ERRORS`] columns a program reads at run time, each on its own: a
// run-time index into `ERRORS` would keep every name and doc string of the
// table in the binary (about 1 KiB of a Cortex-M firmware).

/// The short descriptions, by row.
pub(crate) const TEXTS: [&core::ffi::CStr; ERRORS.len()] = {
    let mut out = [c""; ERRORS.len()];
    let mut k = 0;
    while k < ERRORS.len() {
        out[k] = ERRORS[k].text;
        k += 1;
    }
    out
};

/// The errors, by row.
const BY_ROW: [Error; ERRORS.len()] = {
    let mut out = [Error::NullPointer; ERRORS.len()];
    let mut k = 0;
    while k < ERRORS.len() {
        out[k] = ERRORS[k].error;
        k += 1;
    }
    out
};

/// The text of status 0 (`pcgrad_status_str(PCGRAD_OK)`).
#[cfg(feature = "capi")]
const SUCCESS_TEXT: &core::ffi::CStr = c"success";

/// The text of a status that is no code (`pcgrad_status_str`).
#[cfg(feature = "capi")]
const UNKNOWN_TEXT: &core::ffi::CStr = c"unknown status";

/// Bytes of [`STATUS_TEXTS`].
#[cfg(feature = "capi")]
const STATUS_TEXTS_LEN: usize = {
    let mut n = SUCCESS_TEXT.to_bytes_with_nul().len() + UNKNOWN_TEXT.to_bytes_with_nul().len();
    let mut k = 0;
    while k < ERRORS.len() {
        n += TEXTS[k].to_bytes_with_nul().len();
        k += 1;
    }
    n
};

/// Every text of `pcgrad_status_str`, each NUL-terminated, one after the
/// other: status 0 ("success"), then the errors from code -1 down, then
/// "unknown status". The function walks it to the k-th text: a table of
/// pointers would add 8 bytes per row to a firmware's flash.
#[cfg(feature = "capi")]
pub(crate) static STATUS_TEXTS: [u8; STATUS_TEXTS_LEN] = {
    const fn put(out: &mut [u8; STATUS_TEXTS_LEN], at: usize, s: &core::ffi::CStr) -> usize {
        let b = s.to_bytes_with_nul();
        let mut i = 0;
        while i < b.len() {
            out[at + i] = b[i];
            i += 1;
        }
        at + b.len()
    }
    let mut out = [0u8; STATUS_TEXTS_LEN];
    let mut at = put(&mut out, 0, SUCCESS_TEXT);
    let mut k = 0;
    while k < ERRORS.len() {
        at = put(&mut out, at, TEXTS[k]);
        k += 1;
    }
    put(&mut out, at, UNKNOWN_TEXT);
    out
};

/// One row of [`ERRORS`].
pub(crate) struct Row {
    /// The error.
    pub(crate) error: Error,
    /// Its C enumerator.
    #[cfg_attr(
        not(all(test, feature = "capi", feature = "diagnostics")),
        allow(dead_code)
    )]
    pub(crate) name: &'static str,
    /// Its short description, NUL-terminated for C.
    pub(crate) text: &'static core::ffi::CStr,
    /// The doc of its C enumerator.
    #[cfg_attr(
        not(all(test, feature = "capi", feature = "diagnostics")),
        allow(dead_code)
    )]
    pub(crate) doc: &'static str,
}

// Row k holds the error whose code is -(k + 1).
const _: () = {
    let mut k = 0;
    while k < ERRORS.len() {
        assert!(ERRORS[k].error as usize == k);
        k += 1;
    }
};

impl Error {
    /// The stable status code of this error (always negative): its row of
    /// the error table.
    pub const fn code(self) -> i32 {
        -(self as i32) - 1
    }

    /// The error with status code `code`, if there is one.
    pub const fn from_code(code: i32) -> Option<Error> {
        if code < 0 && code >= -(ERRORS.len() as i32) {
            Some(BY_ROW[(-code - 1) as usize])
        } else {
            None
        }
    }

    /// A short static description, also returned by `pcgrad_status_str`.
    pub const fn as_str(self) -> &'static str {
        match TEXTS[self as usize].to_str() {
            Ok(s) => s,
            Err(_) => panic!("the error texts are ASCII"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Shorthand for `core::result::Result<T, pcgrad::Error>`.
pub type Result<T> = core::result::Result<T, Error>;
