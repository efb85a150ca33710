//! On-device multi-task learning on a Cortex-M4F with PCGrad every step.
//!
//! A tiny network (shared softsign trunk, one linear head per task) learns
//! three regression tasks whose gradients conflict, from data it draws
//! itself. Everything lives in static buffers: parameters, the T x N task
//! gradients, the merged gradient and the library's workspace. There is no
//! heap and no allocator. Each step computes the per-task gradients by hand,
//! merges them with sequential PCGrad (shuffled order, caller-owned PRNG,
//! mean reduction over shared coordinates) and takes an SGD step.
//!
//! Over semihosting the firmware prints the per-task losses, the workspace
//! the library needs for several T, and the stack high-water mark of one
//! PCGrad call (the region below the stack pointer is painted with a pattern
//! before each call and scanned after it; the bytes are counted from the
//! stack pointer at the library call, so the firmware's own frames are not
//! included). It exits with a failure status if
//! a task's loss does not fall, if no gradient was ever projected, or if the
//! library returns an error.
//!
//! With `--no-default-features` the merge is a plain sum (same reduction
//! rule, no projection) and the library is not linked: the footprint script
//! diffs the section sizes of the two builds.
#![no_std]
#![no_main]

use core::arch::asm;
use core::ptr::{addr_of_mut, read_volatile, write_volatile};

use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprintln};

/// Inputs.
const D: usize = 4;
/// Shared hidden units.
const H: usize = 8;
/// Tasks.
const T: usize = 3;
/// Parameter segments: trunk weights (H x D), trunk bias (H), one head per
/// task (H weights + 1 bias).
const SEGMENTS: [usize; 2 + T] = [H * D, H, H + 1, H + 1, H + 1];
/// Parameters, flattened.
const N: usize = H * D + H + T * (H + 1);
/// Which task has a gradient for which segment (T x S, row-major): every
/// task reaches the trunk, each head only its own task.
#[cfg(feature = "pcgrad")]
const HAS_GRAD: [bool; T * (2 + T)] = {
    let mut m = [false; T * (2 + T)];
    let mut t = 0;
    while t < T {
        m[t * (2 + T)] = true;
        m[t * (2 + T) + 1] = true;
        m[t * (2 + T) + 2 + t] = true;
        t += 1;
    }
    m
};
/// Workspace doubles for T tasks: 2T^2 + T^2 + 2T + 32(T + 1) (checked
/// against `pcgrad::workspace_len` at start-up).
#[cfg(not(feature = "upgrad"))]
const WS_LEN: usize = 3 * T * T + 2 * T + 32 * (T + 1);
/// With UPGrad, the same plus its phase-2 scratch, 2T^2 + 8T (checked
/// against `pcgrad::methods::aggregate_workspace_len` at start-up).
#[cfg(feature = "upgrad")]
const WS_LEN: usize = 3 * T * T + 2 * T + 32 * (T + 1) + 2 * T * T + 8 * T;

const BATCH: usize = 8;
const STEPS: usize = 600;
/// Steps per reported loss average.
const WINDOW: usize = 100;
const LR: f32 = 0.1;
/// Each task's loss over the last window must be below this fraction of its
/// loss over the first window.
const MAX_RATIO: f32 = 0.5;

/// Bytes painted below the stack pointer before each merge call.
const PAINT_BYTES: usize = 8192;
const PATTERN: u32 = 0xC0DE_5EED;

static mut PARAMS: [f32; N] = [0.0; N];
static mut GRADS: [f32; T * N] = [0.0; T * N];
static mut MERGED: [f32; N] = [0.0; N];
#[cfg_attr(not(feature = "pcgrad"), allow(dead_code))]
static mut WS: [f64; WS_LEN] = [0.0; WS_LEN];

/// The firmware's own data generator (xorshift32), independent of the
/// library so the plain-sum build links none of it.
struct XorShift(u32);

impl XorShift {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        (self.next() >> 8) as f32 * (2.0 / (1u32 << 24) as f32) - 1.0
    }
}

fn softsign(z: f32) -> f32 {
    z / (1.0 + z.abs())
}

fn dot(a: &[f32; D], b: &[f32; D]) -> f32 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// Task targets: task 1 pulls against task 0 on the shared direction U,
/// task 2 is on a larger scale.
fn targets(x: &[f32; D]) -> [f32; T] {
    const U: [f32; D] = [0.6, -0.5, 0.4, 0.5];
    const V: [f32; D] = [0.5, 0.5, -0.5, 0.5];
    const W: [f32; D] = [-0.4, 0.6, 0.5, 0.4];
    let (u, v, w) = (dot(&U, x), dot(&V, x), dot(&W, x));
    [
        softsign(2.0 * u) + 0.5 * v,
        -softsign(2.0 * u) + 0.5 * v + 0.3 * w,
        3.0 * softsign(u + w),
    ]
}

/// Offset of task t's head in the parameter vector.
const fn head(t: usize) -> usize {
    H * D + H + t * (H + 1)
}

/// Fills `grads` (row t = task t's gradient of its mean batch loss) and
/// returns the per-task batch losses.
fn task_gradients(params: &[f32; N], grads: &mut [f32; T * N], rng: &mut XorShift) -> [f32; T] {
    grads.fill(0.0);
    let mut loss = [0.0f32; T];
    let scale = 1.0 / BATCH as f32;
    for _ in 0..BATCH {
        let x: [f32; D] = core::array::from_fn(|_| rng.uniform());
        let y = targets(&x);
        let mut z = [0.0f32; H];
        let mut a = [0.0f32; H];
        for h in 0..H {
            let w = &params[h * D..(h + 1) * D];
            z[h] = params[H * D + h] + w.iter().zip(&x).map(|(w, x)| w * x).sum::<f32>();
            a[h] = softsign(z[h]);
        }
        for t in 0..T {
            let hd = head(t);
            let pred = params[hd + H] + (0..H).map(|h| params[hd + h] * a[h]).sum::<f32>();
            let e = pred - y[t];
            loss[t] += 0.5 * e * e * scale;
            let dy = e * scale;
            let g = &mut grads[t * N..(t + 1) * N];
            for h in 0..H {
                g[hd + h] += dy * a[h];
                let s = 1.0 + z[h].abs();
                let dz = dy * params[hd + h] / (s * s);
                g[H * D + h] += dz;
                for d in 0..D {
                    g[h * D + d] += dz * x[d];
                }
            }
            g[hd + H] += dy;
        }
    }
    loss
}

/// What one merge reports.
#[derive(Default)]
struct StepStats {
    conflicting_pairs: usize,
    projections: usize,
}

/// The merge's PRNG state and error type.
#[cfg(feature = "pcgrad")]
type MergeRng = pcgrad::Rng;
#[cfg(feature = "pcgrad")]
type MergeError = pcgrad::Error;
#[cfg(not(feature = "pcgrad"))]
type MergeRng = NoRng;
/// The plain-sum merge draws no random numbers.
#[cfg(not(feature = "pcgrad"))]
struct NoRng;
#[cfg(not(feature = "pcgrad"))]
type MergeError = core::convert::Infallible;

/// One PCGrad merge: sequential, shuffled order, mean reduction. Stores
/// the stack pointer at the library call in `call_sp`.
#[cfg(feature = "pcgrad")]
#[inline(never)]
fn merge(
    grads: &[f32; T * N],
    merged: &mut [f32; N],
    ws: &mut [f64; WS_LEN],
    rng: &mut MergeRng,
    call_sp: &mut usize,
) -> Result<StepStats, MergeError> {
    let layout = pcgrad::Layout::new(T, N, &SEGMENTS, &HAS_GRAD)?;
    let grads = pcgrad::Flat::new(layout, grads)?;
    *call_sp = stack_pointer();
    let s = library_merge(&mut pcgrad::PcGrad::new(rng), &grads, merged, ws)?;
    Ok(StepStats {
        conflicting_pairs: s.conflicting_pairs,
        projections: s.projections,
    })
}

/// The library call alone, in a frame of its own: whatever the optimiser
/// inlines of the library lands in this frame, which the stack measurement
/// includes (it counts from the stack pointer at this call).
#[cfg(feature = "pcgrad")]
#[inline(never)]
fn library_merge(
    pcgrad: &mut pcgrad::PcGrad<'_>,
    grads: &pcgrad::Flat<'_, f32>,
    merged: &mut [f32],
    ws: &mut [f64],
) -> Result<pcgrad::Stats, MergeError> {
    #[cfg(not(feature = "upgrad"))]
    return pcgrad.merge(grads, merged, ws);
    #[cfg(feature = "upgrad")]
    {
        // UPGrad leaves the PCGrad configuration (and its PRNG) unused.
        let _ = pcgrad;
        let mut method = pcgrad::methods::Method::UpGrad(Default::default());
        pcgrad::methods::aggregate(&mut method, grads, merged, ws)?;
        // Conflicting pairs from the Gram matrix left in the workspace.
        let mut conflicting_pairs = 0;
        for i in 0..T {
            for j in i + 1..T {
                conflicting_pairs += usize::from(ws[i * T + j] < 0.0);
            }
        }
        Ok(pcgrad::Stats {
            conflicting_pairs,
            projections: 0,
        })
    }
}

/// The plain-sum merge of the footprint baseline: the same reduction rule
/// (mean over the shared trunk, sum over the heads), no projection.
#[cfg(not(feature = "pcgrad"))]
#[inline(never)]
fn merge(
    grads: &[f32; T * N],
    merged: &mut [f32; N],
    _ws: &mut [f64; WS_LEN],
    _rng: &mut MergeRng,
    call_sp: &mut usize,
) -> Result<StepStats, MergeError> {
    *call_sp = stack_pointer();
    let shared = SEGMENTS[0] + SEGMENTS[1];
    for (n, m) in merged.iter_mut().enumerate() {
        let s: f32 = (0..T).map(|t| grads[t * N + n]).sum();
        *m = if n < shared { s / T as f32 } else { s };
    }
    Ok(StepStats::default())
}

/// The current stack pointer.
#[inline(always)]
fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads SP into a register; no memory access, no stack use.
    unsafe { asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// Runs one merge with the stack below the current stack pointer painted,
/// and returns its result and the bytes of stack the library call used
/// (everything below the stack pointer at that call: the library's frames,
/// not the firmware's). `None` for the bytes means the merge ran past the
/// painted region.
#[inline(never)]
fn measured_merge(
    grads: &[f32; T * N],
    merged: &mut [f32; N],
    ws: &mut [f64; WS_LEN],
    rng: &mut MergeRng,
) -> (Result<StepStats, MergeError>, Option<usize>) {
    let sp = stack_pointer() & !3;
    let bottom = sp - PAINT_BYTES;
    // Painting below SP is safe: nothing else runs (no interrupts are
    // enabled), and this frame is already allocated above SP.
    for a in (bottom..sp).step_by(4) {
        // SAFETY: `bottom..sp` is free stack inside RAM (the stack starts
        // at the top of 4 MiB of RAM; the statics are a few KiB).
        unsafe { write_volatile(a as *mut u32, PATTERN) };
    }
    let mut call_sp = sp;
    let r = merge(grads, merged, ws, rng, &mut call_sp);
    let mut lowest = sp;
    for a in (bottom..sp).step_by(4) {
        // SAFETY: as above.
        if unsafe { read_volatile(a as *const u32) } != PATTERN {
            lowest = a;
            break;
        }
    }
    let used = (lowest > bottom).then_some(call_sp.saturating_sub(lowest));
    (r, used)
}

#[entry]
fn main() -> ! {
    if run() {
        hprintln!("result: PASS");
        debug::exit(debug::EXIT_SUCCESS);
    } else {
        hprintln!("result: FAIL");
        debug::exit(debug::EXIT_FAILURE);
    }
    halt()
}

fn run() -> bool {
    // SAFETY: `run` is called once, from `main`, before anything else
    // touches these statics, and nothing else (no interrupt) ever does: each
    // gets exactly one live reference.
    let (params, grads, merged, ws) = unsafe {
        (
            &mut *addr_of_mut!(PARAMS),
            &mut *addr_of_mut!(GRADS),
            &mut *addr_of_mut!(MERGED),
            &mut *addr_of_mut!(WS),
        )
    };
    let mut ok = true;
    hprintln!(
        "pcgrad firmware: Cortex-M4F, T={} tasks, N={} parameters, batch {}, {} steps",
        T,
        N,
        BATCH,
        STEPS
    );

    #[cfg(feature = "upgrad")]
    {
        hprintln!("method: UPGrad (pcgrad::methods::aggregate, weights on every coordinate)");
        let m = pcgrad::methods::Method::UpGrad(Default::default());
        match pcgrad::methods::aggregate_workspace_len(&m, T) {
            Ok(n) if n == WS_LEN => {
                hprintln!("upgrad workspace T={} doubles={} bytes={}", T, n, n * 8)
            }
            _ => {
                hprintln!(
                    "aggregate_workspace_len({}) differs from the static workspace",
                    T
                );
                ok = false;
            }
        }
    }
    #[cfg(feature = "pcgrad")]
    let mut merge_rng = {
        #[cfg(not(feature = "upgrad"))]
        hprintln!("method: PCGrad (sequential, shuffled order, mean reduction)");
        for t in [1usize, 2, 3, 4, 8, 16] {
            match pcgrad::workspace_len(t) {
                Ok(n) => hprintln!("workspace T={} doubles={} bytes={}", t, n, n * 8),
                Err(_) => ok = false,
            }
        }
        if !cfg!(feature = "upgrad") && pcgrad::workspace_len(T) != Ok(WS_LEN) {
            hprintln!("workspace_len({}) differs from the static workspace", T);
            ok = false;
        }
        pcgrad::Rng::new(2020)
    };
    #[cfg(not(feature = "pcgrad"))]
    let mut merge_rng = {
        hprintln!("method: plain sum (footprint baseline, library not linked)");
        NoRng
    };

    let mut data = XorShift(0x1234_5678);
    for p in params.iter_mut() {
        *p = 0.5 * data.uniform();
    }

    let mut window = [0.0f32; T];
    let mut first = [0.0f32; T];
    let mut stack_max = 0usize;
    let mut conflict_steps = 0usize;
    let mut projections = 0usize;
    for step in 1..=STEPS {
        let loss = task_gradients(params, grads, &mut data);
        for t in 0..T {
            window[t] += loss[t] / WINDOW as f32;
        }
        let (r, used) = measured_merge(grads, merged, ws, &mut merge_rng);
        match used {
            Some(b) => stack_max = stack_max.max(b),
            None => {
                hprintln!("stack use exceeds the {} painted bytes", PAINT_BYTES);
                return false;
            }
        }
        match r {
            Ok(s) => {
                conflict_steps += usize::from(s.conflicting_pairs > 0);
                projections += s.projections;
            }
            Err(e) => {
                hprintln!("merge failed at step {}: {:?}", step, e);
                return false;
            }
        }
        for (p, m) in params.iter_mut().zip(merged.iter()) {
            *p -= LR * m;
        }
        if step % WINDOW == 0 {
            hprintln!(
                "step {:4}  loss task0 {:.4}  task1 {:.4}  task2 {:.4}",
                step,
                window[0],
                window[1],
                window[2]
            );
            if step == WINDOW {
                first = window;
            }
            if step < STEPS {
                window = [0.0; T];
            }
        }
    }

    for t in 0..T {
        let fell = window[t] < MAX_RATIO * first[t];
        hprintln!(
            "task {} loss {:.4} -> {:.4} ({})",
            t,
            first[t],
            window[t],
            if fell { "fell" } else { "DID NOT FALL ENOUGH" }
        );
        ok &= fell;
    }
    hprintln!(
        "conflicting steps {} of {}, projections {}",
        conflict_steps,
        STEPS,
        projections
    );
    if cfg!(feature = "pcgrad") && !cfg!(feature = "upgrad") && projections == 0 {
        hprintln!("no gradient was ever projected");
        ok = false;
    }
    hprintln!("stack_bytes={}", stack_max);
    ok
}

#[exception]
unsafe fn HardFault(ef: &ExceptionFrame) -> ! {
    hprintln!("hard fault: {:?}", ef);
    debug::exit(debug::EXIT_FAILURE);
    halt()
}

/// Prints the panic message and its source location. (The library never
/// panics on any input; its bounds checks still cost flash, and printing
/// their locations keeps a 16-byte record per check: see `quiet-panic`.)
#[cfg(not(feature = "quiet-panic"))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    halt()
}

/// Reports a panic without its message or location, so that the linker
/// drops the location records of the bounds checks (the handler that
/// `libpcgrad.a` brings for C firmware is silent too).
#[cfg(feature = "quiet-panic")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    hprintln!("panic");
    debug::exit(debug::EXIT_FAILURE);
    halt()
}

/// Parks the core after the semihosting exit (QEMU has already stopped).
fn halt() -> ! {
    loop {
        core::hint::spin_loop();
    }
}
