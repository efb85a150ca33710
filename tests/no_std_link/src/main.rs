//! Links every public entry of pcgrad into a bare-metal binary without an
//! allocator. Built (not run) by the test script for thumbv7em-none-eabihf.
#![no_std]
#![no_main]

use core::hint::black_box;
use pcgrad::{engine, Flat, FlatMut, Layout, Mode, Order, PcGrad, PpcGrad, Reduction, Rng};

const T: usize = 3;
const N: usize = 37;

static mut SINK: f32 = 0.0;

fn run() -> Result<f32, pcgrad::Error> {
    let mut grads = [0.0f32; T * N];
    for (k, g) in grads.iter_mut().enumerate() {
        *g = black_box(k as f32 * 0.25 - 3.0);
    }
    let mut merged = [0.0f32; N];
    let mut ws = [0.0f64; 512];
    let layout = Layout::dense(T, N)?;
    let mut rng = Rng::new(black_box(7));
    PcGrad::new(&mut rng).merge(&Flat::new(layout, &grads)?, &mut merged, &mut ws)?;
    PpcGrad::new()
        .reduction(Reduction::Sum)
        .project(&mut FlatMut::new(layout, &mut grads)?, Some(&mut merged), &mut ws)?;
    let mut mode = Mode::Sequential(Order::Fixed);
    let (gram, rest) = ws.split_at_mut(engine::gram_workspace_len(T)?);
    gram.fill(0.0);
    engine::accumulate_gram(&Flat::new(layout, &grads)?, 0, N, gram)?;
    let (coef, _) = engine::coefficients(gram, T, &mut mode, rest)?;
    let _ = coef.b();
    // The Gram-based methods: phase 2 and the one-call aggregate.
    let mut method = pcgrad::methods::Method::UpGrad(Default::default());
    let mut w = [0.0f64; T];
    let mut mws = [0.0f64; 512];
    let g = [black_box(2.0), -1.0, 0.5, -1.0, 3.0, 0.0, 0.5, 0.0, 1.0];
    pcgrad::methods::method_weights(&mut method, &g, T, &mut w, &mut mws)?;
    let mut aligned = pcgrad::methods::Method::AlignedMtl(Default::default());
    pcgrad::methods::method_weights(&mut aligned, &g, T, &mut w, &mut mws)?;
    pcgrad::methods::aggregate(&mut method, &Flat::new(layout, &grads)?, &mut merged, &mut mws)?;
    Ok(merged[0] + w[0] as f32)
}

/// The entry point the linker keeps.
#[no_mangle]
pub extern "C" fn _start() -> ! {
    let v = run().unwrap_or(-1.0);
    // SAFETY: single-threaded bare-metal program; nothing else accesses SINK.
    unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!(SINK), v) };
    loop {}
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
