//! `libpcgrad` for the Python wheel: re-exports the C library of the `capi`
//! crate unchanged, so the Python package calls exactly the functions that
//! C users link (include/pcgrad.h).

pub use pcgrad_capi::*;
