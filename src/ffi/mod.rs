//! The C ABI: the only module with raw pointers and `extern "C"` (behind
//! the `capi` feature, which only the `pcgrad-capi` crate enables).
//! `include/pcgrad.h` is generated from this module and its submodules by
//! cbindgen; its conventions are written once, here (the header and the
//! README point at this file).
//!
//! # Conventions, for every `pcgrad_*` function
//!
//! - Every function returns a [`pcgrad_status`] (except
//!   [`pcgrad_status_str`] and [`pcgrad_version`]): `PCGRAD_OK` (0) or a
//!   negative error equal to [`Error::code`](crate::Error::code), never
//!   renumbered. The codes and texts are one table in `src/error.rs`.
//! - Argument order (CMSIS-DSP): configuration, const inputs, sizes, outputs,
//!   workspace. Every buffer pointer is followed by its length in elements.
//! - Required buffers: NULL gives `PCGRAD_ERROR_NULL_POINTER`, a misaligned
//!   pointer `PCGRAD_ERROR_MISALIGNED`, a byte size past `PTRDIFF_MAX` or the
//!   end of the address space `PCGRAD_ERROR_OVERFLOW`.
//! - **One rule for every optional buffer with a length** (`segments`,
//!   `has_grad`, `matrix`, the optional `merged`): length 0 means absent,
//!   whatever the pointer (which is then neither checked nor read); a
//!   non-zero length with NULL is `PCGRAD_ERROR_NULL_POINTER`. `stats` has no
//!   length: NULL means not wanted. Pointers in the config that its mode and
//!   order do not use (`rng` unless the order is shuffled, `order_table`
//!   unless it is explicit, both only in sequential mode) are ignored: not
//!   checked, not read, not part of the overlap check. A used `order_table`
//!   that is NULL with T >= 2 is `PCGRAD_ERROR_NULL_POINTER`.
//! - The diagnostic `matrix` of the one-call entry points needs the
//!   `diagnostics` feature (on by default, off in the bare-metal build):
//!   without it a matrix (length not 0) that passes its pointer and length
//!   checks gives `PCGRAD_ERROR_UNSUPPORTED`, never a silently unwritten
//!   matrix.
//! - Check order: pointers, then shapes and lengths, then contents (mask
//!   bytes, order tables, finiteness): a wrong length is reported as a
//!   length error whatever the bytes hold.
//! - Everything is validated before anything is written: a failed call
//!   leaves every caller buffer untouched except the workspace (scratch).
//! - Output buffers may not overlap any other buffer of the call
//!   (`PCGRAD_ERROR_OVERLAP`); in-place projection writes the gradients over
//!   themselves. Read-only inputs may overlap each other. The check sorts
//!   the outputs: O(B log B) for B buffers.
//! - The library keeps no state: calls on different buffers may run on
//!   different threads at the same time.
//! - Enumerations cross the ABI as `uint32_t` fields checked on entry
//!   (`PCGRAD_ERROR_INVALID_ENUM` when out of range), flags as 0 or 1.
//!
//! # Writing an entry point
//!
//! Every entry point reads "check each argument in one line, build, call",
//! inside `status((|| { ... })())`:
//!
//! 1. `Config::read(config, tasks)?` for the config;
//!    `FlatArgs::check(..)?` or `VarsArgs::check(..)?` for the gradient
//!    shape (never re-list its checks); `req(p, len)?` / `opt(p, len)?` for
//!    every other buffer (the one pointer checker); `Diag::check(..)?` for
//!    `stats` and `matrix`; `check_workspace(..)?` for scratch.
//! 2. `disjoint_fixed(&[outputs as Span], &[inputs as Span])?` (or
//!    `disjoint` with the outputs copied into the workspace by `spans_in`
//!    for the per-variable calls): the one overlap checker.
//! 3. One `unsafe` block with a SAFETY comment that turns the checked
//!    pointers into slices (`view`, `view_mut`, `FlatArgs::flat`, ...) and
//!    calls the safe core.
//!
//! The tests (`tests/`) hold fixtures (`mod.rs`), results equal to the Rust
//! API (`calls.rs`) and the bad-input tables (`refusals.rs`).
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

/// The flat entry points over bf16 and f16 (`uint16_t`) gradients.
#[cfg(feature = "half")]
mod half;

/// The one-call per-variable entry points, pack and unflatten.
mod vars;

/// The three phases.
mod phases;

/// The Gram-based methods: phase 2 and the one-call aggregation.
mod methods;

pub use flat::*;
#[cfg(feature = "half")]
pub use half::*;
pub use methods::*;
pub use phases::*;
pub use sizes::*;
pub use types::*;
pub use vars::*;

// The C ABI suite compares the diagnostic matrix with the Rust API's.
#[cfg(all(test, feature = "diagnostics"))]
mod tests;

/// The refusal of the diagnostic matrix in a build without it.
#[cfg(all(test, not(feature = "diagnostics")))]
mod no_diagnostics_tests;
