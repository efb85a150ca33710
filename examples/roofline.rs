//! The roofline benchmark: how close the one-call paths come to the least
//! time the machine needs for their memory traffic and their Gram
//! arithmetic (docs/architecture.md, "Measuring").
//!
//! ```sh
//! cargo run --release --features parallel --example roofline             # full grid
//! cargo run --release --features parallel --example roofline -- --quick  # < 30 s
//! ```
//!
//! For every (T, N) it times, in this one process and interleaved rep by
//! rep, the paths and their limits, each limit on the same thread count and
//! with the same split of the columns over threads as its path:
//!
//! - **memory roof** of the least traffic of each path, done by streaming
//!   kernels (`pcgrad::bench`: the widest vectors the CPU has, AVX-512F or
//!   AVX chosen at run time, eight independent accumulators; a row at a
//!   time or four rows in lockstep, the faster counts): the merged
//!   path must read J (the Gram pass) and then read J and write the N
//!   outputs (the apply pass); the in-place projected path must read J,
//!   then read J, write J and write N. The write is timed with ordinary and
//!   with non-temporal stores and the faster one counts. Passes are
//!   separated by a join, as the path's are.
//! - **compute roof**: the T(T+1)/2 products per column of the Gram pass at
//!   the vector multiply-add rate of the selected kernels' lane operation
//!   (`pcgrad::bench::peak`, measured on as many threads at the start).
//! - **projected compute roof**: the Gram pass's compute roof plus the
//!   in-place apply's `f64` products per column (each g'_i combines the
//!   rows whose coefficient A_ij is not zero, a multiply then an add in
//!   `f64`: at most T^2; counted from the call's workspace) at the rate of
//!   the selected
//!   kernels' `f64` lane operation (`pcgrad::bench::peak_f64`, four
//!   independent accumulators, measured like the probe above).
//! - limit = max(memory, compute); ratio = time / limit.
//!
//! The merged paths and their memory roof read the same buffer (so both
//! find it in the same cache state: a copy of J that the limit's kernels
//! had just read would be warmer than the path's own in the L3 rows); the
//! projected path rewrites its own copy.
//!
//! Paths: the one-call merged path (`PpcGrad`) on one thread and on all
//! cores, the in-place projected path (all cores), the direct loop of the
//! TensorFlow/PyTorch ports (O(T^2) passes, one thread) and the serial
//! merged path again on the compile-time kernels (`portable1`: the `wide`
//! backend, SSE2 on a default x86-64 build; gain = portable1 / merged1, the
//! row that shows a run-time kernel losing). Times are medians. The last
//! lines give the worst ratios over the target sets and the smallest
//! dispatch gain. Options: `--quick` (T 2, 8, 16 x N 1e4, 1e5, 1e6),
//! `--threads K` (default: all cores).
//!
//! With the feature `half` (`--features parallel,half`; a workspace build
//! has it anyway, `pcgrad-capi` enables it), a second table follows: per
//! (T, N), the merged call over bf16 and over f16 rows (output in the same
//! type) on one thread and on all cores, against its own memory roof (read
//! J, then read J and write N, at 2 bytes an element: the `f32` streaming
//! kernels over the same bytes viewed as half as many `f32` words,
//! `bench::words`, on the call's own buffer) and the `f32` rows' compute
//! roof (the blocks are widened to `f32` lanes, so the Gram's products run
//! at the `f32` lane rate), with the time over the `f32` merged time of the
//! same (T, N) and thread count, and a last line per type with its worst
//! ratio. Half as many reps as the `f32` rows, at least 3.

#[path = "../tests/common/direct.rs"]
mod direct;

use pcgrad::bench::{self, Isa, Kernels};
use pcgrad::{Flat, FlatMut, Layout, PpcGrad};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Runs every job, the last on the calling thread (as the library's pool).
fn run_jobs<R: Send>(jobs: Vec<impl FnOnce() -> R + Send>) -> Vec<R> {
    std::thread::scope(|s| {
        let mut jobs = jobs;
        let last = jobs.pop();
        let hs: Vec<_> = jobs.into_iter().map(|j| s.spawn(j)).collect();
        let mine = last.map(|j| j());
        let mut out: Vec<R> = hs.into_iter().filter_map(|h| h.join().ok()).collect();
        out.extend(mine);
        out
    })
}

/// The Gram pass's split: worker k of w takes chunks
/// k * chunks / w .. (k + 1) * chunks / w of `engine::CHUNK` columns.
fn gram_ranges(n: usize, w: usize) -> Vec<(usize, usize)> {
    let chunk = pcgrad::engine::CHUNK;
    let chunks = n.div_ceil(chunk);
    let w = w.min(chunks).max(1);
    (0..w)
        .map(|k| {
            (
                (k * chunks / w) * chunk,
                n.min((k + 1) * chunks / w * chunk),
            )
        })
        .collect()
}

/// The apply pass's split: cuts at k * n / w moved down to a multiple of
/// the kernels' block.
fn apply_ranges(n: usize, w: usize) -> Vec<(usize, usize)> {
    let mut cuts = vec![0];
    for k in 1..w {
        let c = k * n / w / bench::BLOCK * bench::BLOCK;
        cuts.push(c.max(*cuts.last().unwrap_or(&0)));
    }
    cuts.push(n);
    cuts.windows(2).map(|c| (c[0], c[1])).collect()
}

/// Memory roof of the Gram pass: every row's columns of each worker's range
/// read once, a row at a time or (`four`) four rows in lockstep. `view`
/// gives the `f32` words of a row's range (the range itself for `f32`; for
/// bf16/f16, the same bytes as half as many words: `bench::words`).
fn read_pass<E: Sync>(
    x: &[E],
    t: usize,
    n: usize,
    w: usize,
    four: bool,
    view: fn(&[E]) -> &[f32],
) -> f32 {
    let jobs: Vec<_> = gram_ranges(n, w)
        .into_iter()
        .map(|(lo, hi)| {
            move || {
                let rows: Vec<&[f32]> = (0..t).map(|r| view(&x[r * n + lo..r * n + hi])).collect();
                if four {
                    rows.chunks(4).map(bench::read4).sum::<f32>()
                } else {
                    rows.iter().map(|r| bench::read(r)).sum::<f32>()
                }
            }
        })
        .collect();
    run_jobs(jobs).into_iter().sum()
}

/// Memory roof of an apply pass: read every row, write `out` (and the
/// rows, when `rows_too`), over the apply split; `view` as in
/// [`read_pass`] (the views of a range are cut to the shortest of them).
#[allow(clippy::too_many_arguments)]
fn write_pass<E: Send>(
    x: &mut [E],
    out: &mut [E],
    t: usize,
    n: usize,
    w: usize,
    rows_too: bool,
    nt: bool,
    view: fn(&mut [E]) -> &mut [f32],
) {
    let ranges = apply_ranges(n, w);
    let mut per: Vec<Vec<&mut [E]>> = ranges.iter().map(|_| Vec::with_capacity(t)).collect();
    for row in x.chunks_mut(n).take(t) {
        let mut rest = row;
        for (k, &(lo, hi)) in ranges.iter().enumerate() {
            let (a, b) = rest.split_at_mut(hi - lo);
            per[k].push(a);
            rest = b;
        }
    }
    let mut outs = Vec::with_capacity(ranges.len());
    let mut rest = out;
    for &(lo, hi) in &ranges {
        let (a, b) = rest.split_at_mut(hi - lo);
        outs.push(a);
        rest = b;
    }
    let jobs: Vec<_> = per
        .into_iter()
        .zip(outs)
        .map(|(rows, o)| {
            move || {
                let o = view(o);
                let mut rows: Vec<&mut [f32]> = rows.into_iter().map(view).collect();
                let len = rows.iter().map(|r| r.len()).fold(o.len(), usize::min);
                bench::read_write(&mut rows, &mut o[..len], rows_too, nt)
            }
        })
        .collect();
    run_jobs(jobs);
}

/// The `f32` rows as themselves (the `view` of [`read_pass`]).
fn same(x: &[f32]) -> &[f32] {
    x
}

/// [`same`], mutable (the `view` of [`write_pass`]).
fn same_mut(x: &mut [f32]) -> &mut [f32] {
    x
}

/// Steps of one compute-roof probe (`bench::peak`, about 0.2 ms).
const PEAK_ITERS: usize = 50_000;

/// One half type's medians at one (T, N), `reps` reps interleaved: its
/// memory roof on 1 and `w` threads (read J at 2 bytes an element, then
/// read J and write N at 2 bytes: the `f32` streaming kernels over the same
/// bytes viewed as half as many `f32` words, `bench::words`) and its merged
/// call (bf16 or f16 rows in, the merged gradient out in the same type) on
/// one thread and on `threads`. The call and its roof read the same buffer.
/// Returns (mem1, memP, merged1, mergedP) in seconds.
#[cfg(feature = "half")]
fn half_times<H>(
    grads: &[f32],
    t: usize,
    n: usize,
    w: usize,
    threads: usize,
    reps: usize,
) -> [f64; 4]
where
    H: pcgrad::Element,
    [H]: half::slice::HalfFloatSliceExt,
{
    use half::slice::HalfFloatSliceExt;
    let mut x: Vec<H> = grads.iter().map(|&g| H::from_f64(g as f64)).collect();
    let mut out = vec![H::zero(); n];
    let mut merged = vec![H::zero(); n];
    let mut ws = vec![0.0f64; pcgrad::workspace_len(t).expect("workspace")];
    let layout = Layout::dense(t, n).expect("layout");
    // o + 0 read, o + 1 four-row read, o + 2 write, o + 3 non-temporal
    // write, for o = 0 (one thread) and 4 (w); 8 merged1, 9 mergedP.
    let mut v: [Vec<Duration>; 10] = Default::default();
    let mut sink = 0.0f32;
    for _ in 0..reps {
        for (i, &ww) in [1, w].iter().enumerate() {
            let o = 4 * i;
            for four in [false, true] {
                v[o + four as usize].push(time(&mut || {
                    sink += read_pass(x.reinterpret_cast(), t, n, ww, four, bench::words)
                }));
            }
            for (j, nt) in [false, true].into_iter().enumerate() {
                v[o + 2 + j].push(time(&mut || {
                    write_pass(
                        x.reinterpret_cast_mut(),
                        out.reinterpret_cast_mut(),
                        t,
                        n,
                        ww,
                        false,
                        nt,
                        bench::words_mut,
                    )
                }));
            }
        }
        let flat = Flat::new(layout, &x).expect("flat");
        v[8].push(time(&mut || {
            PpcGrad::new()
                .merge(&flat, &mut merged, &mut ws)
                .expect("merge")
        }));
        v[9].push(time(&mut || {
            PpcGrad::new()
                .threads(threads)
                .merge(&flat, &mut merged, &mut ws)
                .expect("merge")
        }));
    }
    black_box(sink);
    let m = v.map(|mut d| median(&mut d));
    let mem = |o: usize| m[o].min(m[o + 1]) + m[o + 2].min(m[o + 3]);
    [mem(0), mem(4), m[8], m[9]]
}

/// [`half_times`] of one half type.
#[cfg(feature = "half")]
type HalfTimes = fn(&[f32], usize, usize, usize, usize, usize) -> [f64; 4];

/// Gradients with conflicts: a shared direction with alternating sign plus
/// noise.
fn make_grads(tasks: usize, dim: usize) -> Vec<f32> {
    let mut s: u32 = 12345;
    let mut next = move || {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    let shared: Vec<f32> = (0..dim).map(|_| next()).collect();
    let mut out = Vec::with_capacity(tasks * dim);
    for t in 0..tasks {
        let sign = if t % 2 == 1 { -0.7 } else { 0.9 };
        out.extend(shared.iter().map(|&c| sign * c + next()));
    }
    out
}

fn median(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

fn time<R>(f: &mut impl FnMut() -> R) -> Duration {
    let t0 = Instant::now();
    black_box(f());
    t0.elapsed()
}

/// Data and unified cache sizes by level (bytes) of CPU 0, from sysfs, and
/// where they came from.
fn caches() -> ([usize; 3], &'static str) {
    let mut out = [0usize; 3];
    for i in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            continue;
        };
        if kind.trim() == "Instruction" {
            continue;
        }
        let size = size.trim();
        let bytes = match size.strip_suffix('K') {
            Some(k) => k.parse::<usize>().ok().map(|k| k << 10),
            None => match size.strip_suffix('M') {
                Some(m) => m.parse::<usize>().ok().map(|m| m << 20),
                None => size.parse().ok(),
            },
        };
        if let (Ok(l @ 1..=3), Some(b)) = (level.trim().parse::<usize>(), bytes) {
            out[l - 1] = b;
        }
    }
    if out.iter().all(|&b| b > 0) {
        (out, "sysfs")
    } else {
        ([32 << 10, 1 << 20, 32 << 20], "default, sysfs unreadable")
    }
}

/// The CPU's model name and family/model from /proc/cpuinfo.
fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |k: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|n| n.trim() == k))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "{} (family {}, model {})",
        field("model name"),
        field("cpu family"),
        field("model")
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<usize>().ok())
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = opt("--threads").unwrap_or(cores).max(1);
    let (ts, ns): (&[usize], &[usize]) = if quick {
        (&[2, 8, 16], &[10_000, 100_000, 1_000_000])
    } else {
        (&[2, 4, 8, 16], &[10_000, 100_000, 1_000_000, 10_000_000])
    };
    let ([l1, l2, l3], cache_src) = caches();
    let kernels = Kernels::best();
    println!(
        "command: cargo run --release --features parallel{} --example roofline --{}",
        if cfg!(feature = "half") { ",half" } else { "" },
        args.iter()
            .skip(1)
            .map(|a| format!(" {a}"))
            .collect::<String>()
    );
    println!(
        "machine: {}, {cores} cores, L1d {} KiB, L2 {} KiB per core, L3 {} MiB ({cache_src})",
        cpu_model(),
        l1 >> 10,
        l2 >> 10,
        l3 >> 20
    );
    println!(
        "SIMD: run-time kernels {:?} (compile-time backend {}), streaming roof kernels {}; {threads} threads",
        kernels.isa(),
        if cfg!(target_feature = "avx512f") {
            "AVX-512"
        } else if cfg!(target_feature = "avx2") {
            "AVX2"
        } else if cfg!(target_feature = "avx") {
            "AVX"
        } else {
            "SSE2"
        },
        bench::stream_isa()
    );
    println!(
        "compute roof: T(T+1)/2 N products at the {:?} Gram lane operation's rate (8-lane multiply, then add; 12 independent accumulators), measured on one thread with every rep; P threads: P times that",
        kernels.isa()
    );
    println!("memory roof: merged = read J, then read J + write N; projected = read J, then read J + write J + write N (streaming kernels, same threads and column split as the path)");
    println!(
        "projected compute roof: the Gram compute roof plus nz N f64 products (the in-place apply's combination of rows; nz = the non-zero coefficients A_ij, at most T^2) at the {:?} f64 lane operation's rate (multiply, then add; 4 independent 8-lane accumulators), measured like the Gram probe",
        kernels.isa()
    );
    println!("limit = max(memory, compute), ms; ratio = time / limit; level = the cache the working set T x N + N floats fits (L1/L2 per core, L3 shared)");
    println!(
        "P = the path's worker count (all cores when each has >= {} elements, else 1); gain = portable1 / merged1 (compile-time backend against the run-time kernels)",
        pcgrad::parallel::MIN_WORK
    );
    println!(
        "{:>3} {:>9} {:>7} {:>5} | {:>7} {:>7} {:>8} {:>5} | {:>1} {:>7} {:>7} {:>8} {:>5} | {:>7} {:>7} {:>8} {:>5} | {:>9} {:>7} | {:>9} {:>5}",
        "T", "N", "MiB", "level", "mem1", "comp1", "merged1", "ratio", "P", "memP", "compP", "mergedP",
        "ratio", "projmem", "projc", "projP", "ratio", "direct1", "speedup", "portable1", "gain"
    );
    let portable = Kernels::new(Isa::Portable).expect("the portable kernels run everywhere");
    // Worst ratios over the target sets: merged at N >= 1e5 (1.25),
    // projected at N >= 1e5 (1.5), both at N < 1e5 (2.0).
    let mut worst: [Option<(f64, usize, usize)>; 3] = [None; 3];
    let mut note = |i: usize, r: f64, t: usize, n: usize| {
        if worst[i].is_none_or(|w: (f64, usize, usize)| r > w.0) {
            worst[i] = Some((r, t, n));
        }
    };
    let mut worst_gain: Option<(f64, usize, usize)> = None;
    let mut sink = 0.0f32;
    // The half-precision rows (bf16, then f16), their worst ratios and the
    // range of their time over the f32 time.
    #[cfg(feature = "half")]
    let mut half_rows: [Vec<String>; 2] = Default::default();
    #[cfg(feature = "half")]
    let mut half_worst: [Option<(f64, usize, usize)>; 2] = [None; 2];
    #[cfg(feature = "half")]
    let mut half_vs = [(f64::INFINITY, 0.0f64); 2];
    for &t in ts {
        for &n in ns {
            let bytes = (t + 1) * n * 4;
            let grads = make_grads(t, n);
            // The merged paths' input and the limit kernels' buffer (the
            // projected limit negates it: the merged paths then see -J,
            // the same work).
            let mut lim = grads.clone();
            let mut lim_out = vec![0.0f32; n];
            let mut scratch = grads.clone();
            let mut proj = grads.clone();
            let mut merged = vec![0.0f32; n];
            let mut ws = vec![0.0f64; pcgrad::workspace_len(t).expect("workspace")];
            let layout = Layout::dense(t, n).expect("layout");
            let w = pcgrad::parallel::workers(threads, t * n);
            let level = if bytes <= l1 {
                "L1"
            } else if bytes <= l2 {
                "L2"
            } else if bytes <= l3 {
                "L3"
            } else {
                "DRAM"
            };
            // Reps: enough for ~0.25 s of the merged path, 3 to 25 (quick:
            // 3 to 15).
            let probe = time(&mut || {
                PpcGrad::new()
                    .merge(
                        &Flat::new(layout, &lim).expect("flat"),
                        &mut merged,
                        &mut ws,
                    )
                    .expect("merge")
            })
            .as_secs_f64();
            let cap = if quick { 15 } else { 25 };
            let reps = ((0.25 / probe.max(1e-9)) as usize).clamp(3, cap);
            // The half-precision rows: half as many reps, at least 3.
            #[cfg(feature = "half")]
            let half_reps = (reps / 2).max(3);
            // 0..5 and 5..10: the limit's passes on 1 and w threads (read;
            // merged write, ordinary and non-temporal; projected write,
            // both), 10 merged1, 11 mergedP, 12 projP, 13 portable1,
            // 14 the compute probe, 15 and 16 the four-row reads on 1 and
            // w threads, 17 the direct loop, 18 the f64 compute probe.
            let mut v: [Vec<Duration>; 19] = Default::default();
            // The direct loop costs O(T^2) passes: at most 3 reps in the quick set.
            let mut direct_reps = if quick { reps.min(3) } else { reps };
            // The non-zero coefficients of the projected call (the same
            // every rep: each starts from J).
            let mut nonzero = t * t;
            for r in 0..reps {
                for (i, &ww) in [1, w].iter().enumerate() {
                    let o = i * 5;
                    v[o].push(time(&mut || sink += read_pass(&lim, t, n, ww, false, same)));
                    v[15 + i].push(time(&mut || sink += read_pass(&lim, t, n, ww, true, same)));
                    for (j, nt) in [false, true].into_iter().enumerate() {
                        v[o + 1 + j].push(time(&mut || {
                            write_pass(&mut lim, &mut lim_out, t, n, ww, false, nt, same_mut)
                        }));
                        v[o + 3 + j].push(time(&mut || {
                            write_pass(&mut lim, &mut lim_out, t, n, ww, true, nt, same_mut)
                        }));
                    }
                }
                v[14].push(time(&mut || {
                    sink += bench::peak(kernels, black_box(PEAK_ITERS))
                }));
                v[18].push(time(&mut || {
                    sink += bench::peak_f64(kernels, black_box(PEAK_ITERS)) as f32
                }));
                let flat = Flat::new(layout, &lim).expect("flat");
                v[10].push(time(&mut || {
                    PpcGrad::new()
                        .merge(&flat, &mut merged, &mut ws)
                        .expect("merge")
                }));
                v[11].push(time(&mut || {
                    PpcGrad::new()
                        .threads(threads)
                        .merge(&flat, &mut merged, &mut ws)
                        .expect("merge")
                }));
                // Every projected call starts from J (untimed copy): the
                // same work each rep, as a training step projects fresh
                // gradients (projecting its own output again would find
                // fewer conflicts rep by rep).
                proj.copy_from_slice(&grads);
                v[12].push(time(&mut || {
                    let mut g = FlatMut::new(layout, &mut proj).expect("flatmut");
                    PpcGrad::new()
                        .threads(threads)
                        .project(&mut g, None, &mut ws)
                        .expect("project")
                }));
                // The coefficients A (T x T) follow the Gram in the
                // workspace; the apply skips the zero ones.
                let a0 = pcgrad::engine::gram_workspace_len(t).expect("len");
                let nz = ws[a0..a0 + t * t].iter().filter(|&&a| a != 0.0).count();
                nonzero = nz;
                v[13].push(time(&mut || {
                    bench::merge_on(portable, &mut PpcGrad::new(), &flat, &mut merged, &mut ws)
                        .expect("merge")
                }));
                if r < direct_reps {
                    let d = time(&mut || {
                        direct::direct_merge(&grads, t, n, true, true, &mut scratch, &mut merged)
                    });
                    if r == 0 && d.as_secs_f64() > 0.5 {
                        direct_reps = 1;
                    }
                    v[17].push(d);
                }
            }
            let m: Vec<f64> = v
                .iter_mut()
                .map(|x| if x.is_empty() { 0.0 } else { median(x) })
                .collect();
            let products = (t * (t + 1) / 2 * n) as f64;
            // Products per second of one core; w cores give w times that
            // (the ideal: a probe on several threads of this shared machine
            // mostly times the scheduler).
            let rate = (PEAK_ITERS * bench::PEAK_PRODUCTS) as f64 / m[14];
            let comp = |ww: usize| products / (ww as f64 * rate);
            // The faster read (a row at a time or four in lockstep), then
            // the faster write (ordinary or non-temporal stores).
            let read = |o: usize| m[o].min(m[15 + o / 5]);
            let mem = |o: usize| read(o) + m[o + 1].min(m[o + 2]);
            let pmem = |o: usize| read(o) + m[o + 3].min(m[o + 4]);
            let (mem1, memp, projmem) = (mem(0), mem(5), pmem(5));
            let (lim1, limp) = (mem1.max(comp(1)), memp.max(comp(w)));
            // The in-place apply's f64 products per column (one per
            // non-zero coefficient), on w cores.
            let rate64 = (PEAK_ITERS * bench::PEAK_F64_PRODUCTS) as f64 / m[18];
            let projcomp = comp(w) + (nonzero * n) as f64 / (w as f64 * rate64);
            let projlim = projmem.max(projcomp);
            let (r1, rp, rj) = (m[10] / lim1, m[11] / limp, m[12] / projlim);
            if n >= 100_000 {
                note(0, r1, t, n);
                note(0, rp, t, n);
                note(1, rj, t, n);
            } else {
                for r in [r1, rp, rj] {
                    note(2, r, t, n);
                }
            }
            let gain = m[13] / m[10];
            if worst_gain.is_none_or(|w| gain < w.0) {
                worst_gain = Some((gain, t, n));
            }
            let ms = |s: f64| s * 1e3;
            println!(
                "{:>3} {:>9} {:>7.1} {:>5} | {:>7.3} {:>7.3} {:>8.3} {:>5.2} | {:>1} {:>7.3} {:>7.3} {:>8.3} {:>5.2} | {:>7.3} {:>7.3} {:>8.3} {:>5.2} | {:>9.3} {:>6.1}x | {:>9.3} {:>5.2}",
                t,
                n,
                bytes as f64 / (1 << 20) as f64,
                level,
                ms(mem1),
                ms(comp(1)),
                ms(m[10]),
                r1,
                w,
                ms(memp),
                ms(comp(w)),
                ms(m[11]),
                rp,
                ms(projmem),
                ms(projcomp),
                ms(m[12]),
                rj,
                ms(m[17]),
                m[17] / m[10],
                ms(m[13]),
                gain,
            );
            #[cfg(feature = "half")]
            {
                let types: [(&str, HalfTimes); 2] = [
                    ("bf16", half_times::<pcgrad::bf16>),
                    ("f16", half_times::<pcgrad::f16>),
                ];
                for (k, (name, f)) in types.into_iter().enumerate() {
                    let [hm1, hmp, h1, hp] = f(&grads, t, n, w, threads, half_reps);
                    let (hl1, hlp) = (hm1.max(comp(1)), hmp.max(comp(w)));
                    let (q1, qp) = (h1 / hl1, hp / hlp);
                    for q in [q1, qp] {
                        if half_worst[k].is_none_or(|w: (f64, usize, usize)| q > w.0) {
                            half_worst[k] = Some((q, t, n));
                        }
                    }
                    for s in [h1 / m[10], hp / m[11]] {
                        let (lo, hi) = &mut half_vs[k];
                        *lo = lo.min(s);
                        *hi = hi.max(s);
                    }
                    half_rows[k].push(format!(
                        "{:>4} {:>3} {:>9} {:>7.1} {:>5} | {:>7.3} {:>7.3} {:>8.3} {:>5.2} {:>6.2} | {:>1} {:>7.3} {:>7.3} {:>8.3} {:>5.2} {:>6.2}",
                        name,
                        t,
                        n,
                        (t + 1) as f64 * n as f64 * 2.0 / (1 << 20) as f64,
                        level,
                        ms(hm1),
                        ms(comp(1)),
                        ms(h1),
                        q1,
                        h1 / m[10],
                        w,
                        ms(hmp),
                        ms(comp(w)),
                        ms(hp),
                        qp,
                        hp / m[11],
                    ));
                }
            }
        }
    }
    black_box(sink);
    let names = [
        "merged, N >= 1e5 (target 1.25)",
        "projected, N >= 1e5 (target 1.5)",
        "N < 1e5 (target 2.0)",
    ];
    for (name, w) in names.iter().zip(worst) {
        if let Some((r, t, n)) = w {
            println!("roofline: worst ratio {r:.2} at T={t} N={n}: {name}");
        }
    }
    if let Some((g, t, n)) = worst_gain {
        println!(
            "roofline: smallest dispatch gain {g:.2} at T={t} N={n} (run-time {:?} kernels against the compile-time backend; below 1.0 the run-time selection loses)",
            kernels.isa()
        );
    }
    #[cfg(feature = "half")]
    {
        println!();
        println!("half precision: the merged call over bf16 (f16) rows, output in the same type; memory roof = read J, then read J + write N at 2 bytes an element (the f32 streaming kernels over the same bytes); compute roof = the f32 rows' (the blocks are widened to f32 lanes); ratio = time / max(memory, compute); /f32 = this time / the f32 merged time of the same (T, N) and threads");
        println!(
            "{:>4} {:>3} {:>9} {:>7} {:>5} | {:>7} {:>7} {:>8} {:>5} {:>6} | {:>1} {:>7} {:>7} {:>8} {:>5} {:>6}",
            "type", "T", "N", "MiB", "level", "mem1", "comp1", "merged1", "ratio", "/f32", "P",
            "memP", "compP", "mergedP", "ratio", "/f32"
        );
        for rows in &half_rows {
            for r in rows {
                println!("{r}");
            }
        }
        for (k, name) in ["bf16", "f16"].iter().enumerate() {
            if let Some((r, t, n)) = half_worst[k] {
                let (lo, hi) = half_vs[k];
                println!(
                    "roofline: worst {name} ratio {r:.2} at T={t} N={n} (merged, serial and threaded, every N); {name} / f32 time {lo:.2} to {hi:.2}"
                );
            }
        }
    }
}
