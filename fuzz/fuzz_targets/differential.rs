//! Differential: the library's fast path (`PcGrad::merge` and
//! `PcGrad::project` over `Flat` buffers) against the direct-loop float64
//! reference of `tests/common/reference.rs`, in every mode (sequential
//! fixed, explicit and shuffled; simultaneous), both reductions, f32 and
//! f64 elements. The merge runs on the kernels of every instruction set
//! this CPU reaches, passed explicitly (`pcgrad::bench::merge_on`), and the
//! levels must agree bitwise; the projection runs on the best kernels (its
//! apply pass is held bitwise across instruction sets by the per-ISA kernel
//! tests in `src/kernels/tests.rs`). Build with `RUSTFLAGS="--cfg pcgrad_scalar"` for the
//! scalar (Cortex-M) kernels (`scripts/fuzz.sh` does both).

#![no_main]

use libfuzzer_sys::fuzz_target;
use pcgrad::bench::{merge_on, Isa, Kernels};
use pcgrad::{Element, Flat, FlatMut, Layout, Mode, Order, PcGrad, Reduction, Rng};
use pcgrad_fuzz::*;

fuzz_target!(|data: &[u8]| run(data));

/// The kernels of every instruction set this CPU runs (passed explicitly
/// to each call through the unstable `pcgrad::bench` module).
fn levels() -> Vec<Kernels> {
    Isa::ALL.iter().filter_map(|&i| Kernels::new(i)).collect()
}

fn run(data: &[u8]) {
    let mut b = Bytes::new(data);
    let (sh, g) = problem_input(&mut b, 16, 1100);
    let t = sh.tasks;
    let orders = match b.u8() % 4 {
        0 => Orders::Fixed,
        1 => Orders::Explicit(order_table(&mut b, t)),
        2 => Orders::Shuffled(b.u64()),
        _ => Orders::Simultaneous,
    };
    let mean = !b.bool();
    let check = b.bool();
    let e = Expect::new(&sh, &g, &orders, mean);
    let g64: Vec<f64> = g.iter().map(|&x| x as f64).collect();
    let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
    for level in levels() {
        let (m, p) = both(level, &sh, &g, &orders, mean, check, &e);
        // f64 elements: the same paths, compared with the reference only.
        both(level, &sh, &g64, &orders, mean, check, &e);
        match &first {
            None => first = Some((m, p)),
            Some((m0, p0)) => {
                // Bitwise, except that every NaN is one value: NaN input
                // promises NaN out, not its payload.
                let bits = |v: &[f32]| {
                    v.iter()
                        .map(|x| if x.is_nan() { f32::NAN } else { *x }.to_bits())
                        .collect::<Vec<_>>()
                };
                assert_eq!(
                    bits(&m),
                    bits(m0),
                    "merged differs between SIMD levels ({level:?})"
                );
                assert_eq!(
                    bits(&p),
                    bits(p0),
                    "projected differs between SIMD levels ({level:?})"
                );
            }
        }
    }
}

/// Runs merge and project; returns both results as f32 (f64 results
/// rounded) after checking them against the reference.
fn both<F: Element>(
    k: Kernels,
    sh: &Shape,
    g: &[F],
    orders: &Orders,
    mean: bool,
    check: bool,
    e: &Expect,
) -> (Vec<f32>, Vec<f32>) {
    let (t, n) = (sh.tasks, sh.dim);
    let has: Vec<bool> = sh.has_grad.clone();
    let layout = Layout::new(t, n, &sh.segments, &has).expect("a valid layout");
    let mut ws = vec![0.0; pcgrad::workspace_len(t).expect("workspace")];
    let red = if mean {
        Reduction::Mean
    } else {
        Reduction::Sum
    };
    let run = |f: &mut dyn FnMut(&mut PcGrad<'_>) -> pcgrad::Result<pcgrad::Stats>| {
        let mut rng;
        let mode = match orders {
            Orders::Fixed => Mode::Sequential(Order::Fixed),
            Orders::Explicit(table) => Mode::Sequential(Order::Explicit(table)),
            Orders::Shuffled(s) => {
                rng = Rng::new(*s);
                Mode::Sequential(Order::Shuffled(&mut rng))
            }
            Orders::Simultaneous => Mode::Simultaneous,
        };
        let mut pc = PcGrad::with_mode(mode).reduction(red).check_finite(check);
        f(&mut pc)
    };
    let refused = check && !e.finite;
    let to32 = |v: &[F]| {
        v.iter()
            .map(|&x| Element::to_f64(x) as f32)
            .collect::<Vec<f32>>()
    };
    let to64 = |v: &[F]| v.iter().map(|&x| Element::to_f64(x)).collect::<Vec<f64>>();

    let mut merged = vec![F::zero(); n];
    let flat = Flat::new(layout, g).expect("flat");
    let st = run(&mut |pc| merge_on(k, pc, &flat, &mut merged, &mut ws));
    if refused {
        assert_eq!(st, Err(pcgrad::Error::NonFinite));
        return (Vec::new(), Vec::new());
    }
    let stats = st.expect("merge of a valid problem");
    e.check_stats(t, stats.conflicting_pairs, stats.projections);
    let m32 = to32(&merged);
    check64(e, "merge", &to64(&merged), &e.r.merged, true);

    let mut proj = g.to_vec();
    let mut merged2 = vec![F::zero(); n];
    let mut flat = FlatMut::new(layout, &mut proj).expect("flat");
    let st2 = run(&mut |pc| pc.project(&mut flat, Some(&mut merged2), &mut ws));
    assert_eq!(st2, Ok(stats), "project and merge stats differ");
    check64(e, "project merged", &to64(&merged2), &e.r.merged, false);
    check64(e, "project projected", &to64(&proj), &e.r.projected, false);
    (m32, to32(&proj))
}

fn check64(e: &Expect, what: &str, got: &[f64], want: &[f64], merged_path: bool) {
    // The reference check works on f32 values; an f64 result is checked
    // after rounding, against the same f32-relative tolerance.
    let g32: Vec<f32> = got.iter().map(|&x| x as f32).collect();
    e.check(what, &g32, want, &all(want.len()), merged_path);
}
