//! The C ABI (DESIGN section 5): the only module with raw pointers and
//! `extern "C"`. `include/pcgrad.h` is generated from this file by cbindgen.
//!
//! Conventions, for every `pcgrad_*` function:
//!
//! - Every function returns a [`pcgrad_status`] (except
//!   [`pcgrad_status_str`] and [`pcgrad_version`]): `PCGRAD_OK` (0) or a
//!   negative error equal to [`Error::code`](crate::Error::code), never renumbered.
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

// The order of these declarations is the order of the header's
// functions (cbindgen reads the files in this order).

/// The status, config and stats types and the enum constants.
mod types;

/// Pointer, overlap, config and diagnostics checks.
mod check;

/// Size queries, the default config, static strings.
mod sizes;

/// The one-call flat entry points.
mod flat;

/// The one-call per-variable entry points, pack and unflatten.
mod vars;

/// The three phases.
mod phases;

pub use flat::*;
pub use phases::*;
pub use sizes::*;
pub use types::*;
pub use vars::*;

#[cfg(test)]
mod tests;
