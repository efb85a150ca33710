//! **Unstable, for benchmarks only.** Not part of the crate's API: no
//! semantic-versioning promise covers this module, and it may change or go
//! in any release (as BLAKE3's `guts` module). It lets the roofline example
//! and the benches time the kernels of one instruction set against another
//! in one process: the kernels are chosen by an explicit [`Kernels`] value,
//! never by global state.

pub use crate::kernels::{Isa, Kernels};

use crate::engine::Stats;
use crate::error::Result;
use crate::kernels::Element;
use crate::layout::Gradients;
use crate::PcGrad;

/// [`PcGrad::merge`] on the calling thread with the kernels `k`, whatever
/// `pcgrad.threads` says; bitwise the result of [`PcGrad::merge`].
pub fn merge_on<F: Element, G: Gradients<F>>(
    k: Kernels,
    pcgrad: &mut PcGrad<'_>,
    grads: &G,
    merged: &mut [F],
    workspace: &mut [f64],
) -> Result<Stats> {
    pcgrad.merge_on(Some(k), grads, merged, workspace)
}
