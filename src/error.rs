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
}

impl Error {
    /// The stable status code of this error (always negative).
    pub const fn code(self) -> i32 {
        match self {
            Error::NullPointer => -1,
            Error::NoTasks => -2,
            Error::LengthMismatch => -3,
            Error::Overflow => -4,
            Error::WorkspaceTooSmall => -5,
            Error::NonFinite => -6,
            Error::Overlap => -7,
            Error::InvalidEnum => -8,
            Error::InvalidOrder => -9,
            Error::InvalidRange => -10,
            Error::Misaligned => -11,
            Error::InvalidParameter => -12,
            Error::NotPsd => -13,
        }
    }

    /// A short static description, also returned by `pcgrad_status_str`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Error::NullPointer => "a required pointer is NULL",
            Error::NoTasks => "the number of tasks is zero",
            Error::LengthMismatch => "a buffer length does not match the shape",
            Error::Overflow => "a size computation overflows",
            Error::WorkspaceTooSmall => "the workspace is too small",
            Error::NonFinite => "an input holds NaN or infinity",
            Error::Overlap => "an output buffer overlaps an input buffer",
            Error::InvalidEnum => "an enum value is out of range",
            Error::InvalidOrder => "an explicit order is not a permutation of the other tasks",
            Error::InvalidRange => "a coordinate range is inverted or runs past N",
            Error::Misaligned => "a pointer is not aligned for its element type",
            Error::InvalidParameter => "a method parameter is negative or out of range",
            Error::NotPsd => "the Gram matrix is not positive semidefinite",
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
