//! PCGrad gradient surgery for multi-task learning, without heap allocation:
//! an allocation-free `no_std` core that projects conflicting task gradients
//! in place over caller-provided `f32` (or `f64`) buffers.
//!
//! PCGrad (Yu et al., 2020, "Gradient Surgery for Multi-Task Learning")
//! projects each task's gradient g_i onto the normal plane of every other
//! task gradient g_j it conflicts with (g_i . g_j < 0), then merges them.
//! This crate implements both variants of the reference:
//!
//! - **sequential** ([`Mode::Sequential`], [`PcGrad::new`]): the paper's
//!   Algorithm 1, visiting the other tasks in a fixed, shuffled (caller-owned
//!   [`Rng`]) or explicit order, each dot product taken with the already
//!   projected gradient;
//! - **simultaneous** ([`Mode::Simultaneous`], [`PpcGrad::new`]): every dot
//!   product taken with the original gradient. This is what the seed's
//!   TensorFlow `PPCGrad` computes, and numerically also what its `PCGrad`
//!   class computes.
//!
//! "The seed", throughout these docs, is the TensorFlow implementation this
//! library was ported from: classes `PCGrad` and `PPCGrad` and helpers
//! `pack_grad` and `un_flatten_grad`.
//!
//! The merged gradient is `w(n) sum_i g'_i[n]` with `w = 1/T` on shared
//! coordinates under [`Reduction::Mean`] (the default) and 1 elsewhere.
//!
//! # How it is fast
//!
//! Every g'_i is a linear combination of the original gradients, so the
//! whole surgery reduces to (1) one streaming pass that builds the T x T Gram
//! matrix with a SIMD micro-kernel, (2) O(T^3) scalar work on the Gram matrix
//! and (3) one streaming pass that writes the merged (and, on request, the
//! projected) gradients. The phases are public ([`engine`]) so N can be
//! sharded across threads or machines.
//!
//! # Example
//!
//! ```
//! use pcgrad::{Flat, Layout, PcGrad, Rng, workspace_len};
//!
//! // Two tasks, three parameters; the gradients conflict.
//! let grads = [1.0f32, 0.0, 1.0, /* task 1 */ -1.0, 1.0, 0.0];
//! let layout = Layout::dense(2, 3)?;
//! let mut merged = [0.0f32; 3];
//! let mut ws = [0.0f64; 112];
//! assert!(ws.len() >= workspace_len(2)?);
//! let mut rng = Rng::new(1);
//! let stats = PcGrad::new(&mut rng).merge(&Flat::new(layout, &grads)?, &mut merged, &mut ws)?;
//! assert_eq!(stats.conflicting_pairs, 1);
//! # Ok::<(), pcgrad::Error>(())
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---------|---------|--------------|
//! | `std` | yes | `impl std::error::Error for Error` |
//! | `parallel` | no | implies `std`; the two passes on threads ([`PcGrad::threads`], [`parallel`]), bitwise the same result for every thread count |
//! | `half` | no | `bf16` and `f16` gradients (the `half` crate's types) for every generic entry point: the `f32` kernels on blocks widened on the stack, the Gram in `f32` lanes per block and `f64` across blocks, outputs in the input's type rounded once |
//! | `capi` | no | the C ABI, `ffi` (every `#[no_mangle]` `pcgrad_*` function); enabled by the `pcgrad-capi` crate that builds the C libraries, not meant for Rust users |
//!
//! Without default features the crate needs only `core`: no `alloc`, no
//! global allocator, no panic handler of its own.
//!
//! # Global state
//!
//! None that a caller can change: every call works on its arguments only.
//! The one mutable global is the cache of the detected CPU features (x86-64
//! with `std`: which of the AVX and AVX-512 kernels this CPU runs), written
//! once by the first call that needs it; every value it can hold gives
//! bitwise the same results.
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

mod api;
#[doc(hidden)]
pub mod bench;
pub mod engine;
mod error;
#[cfg(feature = "capi")]
#[allow(unsafe_code)]
pub mod ffi;
mod kernels;
mod layout;
pub mod methods;
pub mod parallel;
mod rng;

pub use api::{cosine_matrix, pack, unflatten, workspace_gram, workspace_len, PcGrad, PpcGrad};
pub use engine::{Mode, Order, Reduction, Stats};
pub use error::{Error, Result};
/// The half-precision element types (feature `half`), from the `half`
/// crate: bf16 (8-bit significand, the range of `f32`) and IEEE binary16.
#[cfg(feature = "half")]
pub use half::{bf16, f16};
pub use kernels::Element;
pub use layout::{
    Flat, FlatMut, Gradients, GradientsMut, Layout, PerVariable, PerVariableMut, Segment,
};
pub use rng::Rng;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
