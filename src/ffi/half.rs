//! The flat one-call entry points over half-precision gradients, bf16 and
//! f16 as `uint16_t` buffers (feature `half`, which `pcgrad-capi` enables):
//! the generic bodies of `flat.rs` at `bf16` and `f16`, so every check and
//! status is theirs.

use half::{bf16, f16};

use super::flat::{merge_flat, merge_flat_to, project_flat};
use super::types::*;
use crate::engine::ToF32;

/// `pcgrad_merge_flat` over bfloat16 gradients: the same arguments, checks,
/// statuses and overlap rules, with `grads` (T * N values) and `merged` (N
/// values) holding bfloat16 bit patterns as `uint16_t` (the storage of
/// `torch.bfloat16` and of GCC's and Clang's `__bf16`), used in place,
/// never copied. The Gram matrix is the one `pcgrad_merge_flat` computes for the
/// same values as floats (float lanes per block of 256 columns, double
/// across blocks); each merged value is rounded once, to nearest even,
/// from its double sum.
///
/// # Safety
///
/// As `pcgrad_merge_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_merge_flat_bf16(
    config: *const pcgrad_config,
    grads: *const u16,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    merged: *mut u16,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller; `bf16` is a `u16` (repr(transparent)),
    // with its size and alignment, and every bit pattern is a value.
    unsafe {
        merge_flat::<bf16>(
            config,
            grads.cast(),
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
            merged.cast(),
            merged_len,
            stats,
            matrix,
            matrix_len,
            workspace,
            workspace_len,
        )
    }
}

/// `pcgrad_merge_flat_bf16` with the merged output as floats: the same
/// arguments, checks, statuses and overlap rules (`merged` may overlap no
/// other buffer, `grads` included), with `merged` (N values) of `float`
/// instead of `uint16_t`; a failed call writes nothing. The Gram matrix and
/// the double sums are `pcgrad_merge_flat_bf16`'s; each merged value is
/// rounded once, to nearest even, from its double sum to float (so it keeps
/// the precision that the bfloat16 output drops). Rounded to bfloat16, it is
/// `pcgrad_merge_flat_bf16`'s output except where it lies exactly midway
/// between two bfloat16 values (there that call rounds the double sum once).
///
/// # Safety
///
/// As `pcgrad_merge_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_merge_flat_bf16_f32(
    config: *const pcgrad_config,
    grads: *const u16,
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
    // SAFETY: forwarded to the caller; `bf16` is a `u16` (repr(transparent)),
    // with its size and alignment, and every bit pattern is a value.
    unsafe {
        merge_flat_to::<bf16, ToF32>(
            config,
            grads.cast(),
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
        )
    }
}

/// `pcgrad_merge_flat` over IEEE binary16 (half) gradients: the same arguments, checks,
/// statuses and overlap rules, with `grads` (T * N values) and `merged` (N
/// values) holding IEEE binary16 (half) bit patterns as `uint16_t` (the storage of
/// `torch.float16`, `numpy.float16` and `_Float16`), used in place, never
/// copied. The Gram matrix is the one `pcgrad_merge_flat` computes for the
/// same values as floats (float lanes per block of 256 columns, double
/// across blocks); each merged value is rounded once, to nearest even,
/// from its double sum.
///
/// # Safety
///
/// As `pcgrad_merge_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_merge_flat_f16(
    config: *const pcgrad_config,
    grads: *const u16,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    merged: *mut u16,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller; `f16` is a `u16` (repr(transparent)),
    // with its size and alignment, and every bit pattern is a value.
    unsafe {
        merge_flat::<f16>(
            config,
            grads.cast(),
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
            merged.cast(),
            merged_len,
            stats,
            matrix,
            matrix_len,
            workspace,
            workspace_len,
        )
    }
}

/// `pcgrad_merge_flat_f16` with the merged output as floats: the same
/// arguments, checks, statuses and overlap rules (`merged` may overlap no
/// other buffer, `grads` included), with `merged` (N values) of `float`
/// instead of `uint16_t`; a failed call writes nothing. The Gram matrix and
/// the double sums are `pcgrad_merge_flat_f16`'s; each merged value is
/// rounded once, to nearest even, from its double sum to float (so it keeps
/// the precision that the binary16 output drops). Rounded to binary16, it is
/// `pcgrad_merge_flat_f16`'s output except where it lies exactly midway
/// between two binary16 values (there that call rounds the double sum once).
///
/// # Safety
///
/// As `pcgrad_merge_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_merge_flat_f16_f32(
    config: *const pcgrad_config,
    grads: *const u16,
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
    // SAFETY: forwarded to the caller; `f16` is a `u16` (repr(transparent)),
    // with its size and alignment, and every bit pattern is a value.
    unsafe {
        merge_flat_to::<f16, ToF32>(
            config,
            grads.cast(),
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
        )
    }
}

/// `pcgrad_project_flat` over bfloat16 gradients: the same arguments, checks,
/// statuses and overlap rules, with `grads` and `merged` holding bfloat16
/// bit patterns as `uint16_t` (as `pcgrad_merge_flat_bf16`). Each projected
/// and merged value is rounded once, to nearest even, from its double
/// value; the merged output is bitwise `pcgrad_merge_flat_bf16`'s.
///
/// # Safety
///
/// As `pcgrad_merge_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_project_flat_bf16(
    config: *const pcgrad_config,
    grads: *mut u16,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    merged: *mut u16,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller; `bf16` is a `u16` (repr(transparent)),
    // with its size and alignment, and every bit pattern is a value.
    unsafe {
        project_flat::<bf16>(
            config,
            grads.cast(),
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
            merged.cast(),
            merged_len,
            stats,
            matrix,
            matrix_len,
            workspace,
            workspace_len,
        )
    }
}

/// `pcgrad_project_flat` over IEEE binary16 (half) gradients: the same arguments, checks,
/// statuses and overlap rules, with `grads` and `merged` holding IEEE binary16 (half)
/// bit patterns as `uint16_t` (as `pcgrad_merge_flat_f16`). Each projected
/// and merged value is rounded once, to nearest even, from its double
/// value; the merged output is bitwise `pcgrad_merge_flat_f16`'s.
///
/// # Safety
///
/// As `pcgrad_merge_flat`.
#[no_mangle]
pub unsafe extern "C" fn pcgrad_project_flat_f16(
    config: *const pcgrad_config,
    grads: *mut u16,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    has_grad: *const u8,
    has_grad_len: usize,
    tasks: usize,
    dim: usize,
    merged: *mut u16,
    merged_len: usize,
    stats: *mut pcgrad_stats,
    matrix: *mut f64,
    matrix_len: usize,
    workspace: *mut f64,
    workspace_len: usize,
) -> pcgrad_status {
    // SAFETY: forwarded to the caller; `f16` is a `u16` (repr(transparent)),
    // with its size and alignment, and every bit pattern is a value.
    unsafe {
        project_flat::<f16>(
            config,
            grads.cast(),
            grads_len,
            segments,
            segments_len,
            has_grad,
            has_grad_len,
            tasks,
            dim,
            merged.cast(),
            merged_len,
            stats,
            matrix,
            matrix_len,
            workspace,
            workspace_len,
        )
    }
}

// The C ABI takes `uint16_t` for both types: their layout must be a u16's.
const _: () = assert!(core::mem::size_of::<bf16>() == 2 && core::mem::align_of::<bf16>() == 2);
const _: () = assert!(core::mem::size_of::<f16>() == 2 && core::mem::align_of::<f16>() == 2);
