//! The C static and shared libraries of `pcgrad` (`libpcgrad.a`,
//! `libpcgrad.so`): every `pcgrad_*` function of `include/pcgrad.h`,
//! defined in the core crate's `ffi` module and re-exported here.
#![no_std]

#[cfg(feature = "std")]
extern crate std;

pub use pcgrad_core::ffi::*;

/// Bare-metal builds (no `std`) stop on a panic. The library never panics
/// on any input a caller can pass (every bad input is a status), so this
/// is reached only through a library bug.
#[cfg(not(feature = "std"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
