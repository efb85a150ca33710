"""pcgrad from Python against its peers, in one process.

1. Per-call overhead at T = 2, N = 16 (float32), every variant interleaved
   in this process: the C call itself (a small C loop, compiled here with
   `cc`, over the library's own pcgrad_merge_flat), the bare ctypes and cffi
   floors (a call with no arguments), pcgrad_merge_flat through ctypes and
   through cffi (ABI mode over include/pcgrad.h) with the pointers taken from
   the arrays on every call, the extension module's entry point, and the
   full `pcgrad.merge` and `pcgrad.project`.
2. `pcgrad.merge` against torchjd's `PCGrad` aggregator on the same (T, N)
   arrays (torch.from_numpy shares the memory): both the paper's Algorithm 1
   with a shuffled order and a sum over tasks; T in {2, 4, 8, 16}, N in
   {1e4, 1e6, 1e7}, on one thread and on all cores; medians and ratios.
3. The CPU paths of `pcgrad.torch.PCGrad`: per-variable (zero copy) against
   one packed buffer, on a model-like set of parameter tensors.

    python benches/python_peers.py            # everything
    python benches/python_peers.py --quick    # fewer sizes and repetitions

Run in the environment of scripts/python-env.sh after `pip install ./python`.
Prints Markdown tables.
"""

import argparse
import ctypes
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import pcgrad
from pcgrad import _capi

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
HEADER = os.path.join(REPO, "include", "pcgrad.h")

# The C call itself, timed in this process: a loop in C over the library's
# pcgrad_merge_flat (the very function the Python calls reach, through its
# address), compiled here with `cc` into a small shared object.
C_FLOOR = r"""
#include "pcgrad.h"
#include <time.h>
typedef enum pcgrad_status (*merge_fn)(const struct pcgrad_config *, const float *, size_t,
    const size_t *, size_t, const uint8_t *, size_t, size_t, size_t, float *, size_t,
    struct pcgrad_stats *, double *, size_t, double *, size_t);
static double now(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
/* microseconds per call of `calls` calls at T = 2, N = 16; negative on a status */
double floor_loop(merge_fn f, int calls) {
    enum { T = 2, N = 16 };
    float g[T * N], m[N]; double ws[112]; pcgrad_config c = {0};
    for (int i = 0; i < T * N; i++) g[i] = (float)((i * 37 % 11) - 5);
    double t0 = now();
    for (int k = 0; k < calls; k++) {
        if (f(&c, g, T * N, 0, 0, 0, 0, T, N, m, N, 0, 0, 0, ws, 112)) return -1.0;
        __asm__ volatile("" ::"r"(m) : "memory");
    }
    return (now() - t0) / calls * 1e6;
}
"""


def per_call(fn, calls, reps):
    """Median and minimum per-call time in microseconds over ``reps`` batches:
    CPU time of this thread (time.thread_time), so that the time the
    scheduler gives other processes of a loaded machine is not counted (the
    C loop measures the same clock)."""
    times = []
    for _ in range(reps):
        t0 = time.thread_time()
        for _ in range(calls):
            fn()
        times.append((time.thread_time() - t0) / calls * 1e6)
    return statistics.median(times), min(times)


def c_floor_fn():
    """A function of no arguments that times one batch of the C loop (us per
    call), or None without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None
    d = tempfile.mkdtemp()
    src, so = os.path.join(d, "floor.c"), os.path.join(d, "floor.so")
    with open(src, "w") as f:
        f.write(C_FLOOR)
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-I", os.path.dirname(HEADER), src, "-o", so], check=True)
    loop = ctypes.CDLL(so).floor_loop
    loop.restype = ctypes.c_double
    loop.argtypes = [ctypes.c_void_p, ctypes.c_int]
    addr = ctypes.cast(_capi.lib.pcgrad_merge_flat, ctypes.c_void_p).value
    shutil.rmtree(d)

    def batch(calls=200000):
        t = loop(addr, calls)
        if t < 0:
            raise RuntimeError("pcgrad_merge_flat returned a status")
        return t

    return batch


def cffi_lib():
    import cffi

    ffi = cffi.FFI()
    with open(HEADER) as f:
        src = f.read()
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    src = "\n".join(l for l in src.splitlines()
                    if not l.strip().startswith("#") and 'extern "C"' not in l and not l.strip().startswith("}  //"))
    ffi.cdef(src)
    return ffi, ffi.dlopen(_capi.LIBRARY_PATH)


def overhead(quick):
    T, N = 2, 16
    calls = 20000 if quick else 50000
    reps = 5 if quick else 15
    g = np.random.default_rng(0).standard_normal((T, N)).astype(np.float32)
    ws = np.empty(pcgrad.workspace_len(T))
    cfg = _capi.ConfigStruct()

    # ctypes, as pcgrad._core does it: prebuilt size arguments, pointers from
    # the arrays through the buffer protocol, a fresh output per call
    f = _capi.lib["pcgrad_merge_flat"]
    f.restype = ctypes.c_int
    vp, zz = ctypes.c_void_p, ctypes.c_size_t
    cp, zl, z0, zt, zn = vp(ctypes.addressof(cfg)), zz(T * N), zz(0), zz(T), zz(N)
    wsp, wl = vp(ws.ctypes.data), zz(ws.size)
    fb, byref = ctypes.c_char.from_buffer, ctypes.byref

    def raw_ctypes():
        out = np.empty(N, np.float32)
        if f(cp, byref(fb(g)), zl, None, z0, None, z0, zt, zn, byref(fb(out)), zn, None, None, z0, wsp, wl):
            raise RuntimeError
        return out

    bare = _capi.lib["pcgrad_version"]
    bare.restype = ctypes.c_void_p
    ffi, L = cffi_lib()
    cfgc = ffi.new("pcgrad_config *")
    wsc = ffi.cast("double *", ws.ctypes.data)
    null, ffb, mf = ffi.NULL, ffi.from_buffer, L.pcgrad_merge_flat
    nws = ws.size

    def raw_cffi():
        out = np.empty(N, np.float32)
        if mf(cfgc, ffb("float[]", g), T * N, null, 0, null, 0, T, N, ffb("float[]", out), N, null, null, 0,
              wsc, nws):
            raise RuntimeError
        return out

    fast = pcgrad._core._native.merge_flat
    args = ("sequential", "fixed", "mean", None, None, None, 0, False, None, False)
    assert np.array_equal(raw_ctypes(), raw_cffi()) and np.array_equal(raw_ctypes(), pcgrad.merge(g))
    assert np.array_equal(raw_ctypes(), fast(g, *args))
    gp = g.copy()
    rows = {}
    floor = c_floor_fn()
    cases = [("C loop over the same library (the C call itself)", floor),
             ("bare ctypes call (no arguments)", bare),
             ("bare cffi call (no arguments)", L.pcgrad_version),
             ("pcgrad_merge_flat via ctypes", raw_ctypes),
             ("pcgrad_merge_flat via cffi", raw_cffi),
             ("pcgrad._native.merge_flat (the extension's entry point)", lambda: fast(g, *args)),
             ("pcgrad.merge (full checks)", lambda: pcgrad.merge(g)),
             ("pcgrad.project (in place, full checks)", lambda: pcgrad.project(gp))]
    # interleaved rounds, so that machine load hits every case alike
    for _ in range(reps):
        for name, fn in cases:
            if fn is None:
                continue
            if fn is floor:
                t = floor()
                rows.setdefault(name, []).append((t, t))
            else:
                rows.setdefault(name, []).append(per_call(fn, calls, 1))
    result = {name: (statistics.median(m for m, _ in v), min(b for _, b in v)) for name, v in rows.items()}
    c = result.get(cases[0][0], (None,))[0]
    print("\n### Per-call overhead, T = 2, N = 16, float32 (microseconds per call)\n")
    print(f"{reps} interleaved rounds of {calls} calls each, CPU time of the calling thread; "
          "median and best round.\n")
    print("| call | median | best | minus the C call (median) | / the C call |")
    print("|------|-------:|-----:|--------------------------:|-------------:|")
    for name, (med, best) in result.items():
        extra = f"{med - c:.3f}" if c is not None and ("merge" in name or "project" in name) else "-"
        ratio = f"{med / c:.2f}" if c is not None else "-"
        print(f"| {name} | {med:.3f} | {best:.3f} | {extra} | {ratio} |")
    return result, c


def peers(quick):
    import torch
    from torchjd.aggregation import PCGrad as TorchjdPCGrad

    aggregator = TorchjdPCGrad()
    sizes = [10_000, 1_000_000] if quick else [10_000, 1_000_000, 10_000_000]
    tasks_list = [2, 4, 8] if quick else [2, 4, 8, 16]
    cores = os.cpu_count() or 1
    print("\n### pcgrad.merge against torchjd's PCGrad aggregator (same arrays, sequential shuffled, sum)\n")
    print(f"torch {torch.__version__}; each (T, N) on one thread (torch.set_num_threads(1), pcgrad threads=1) "
          f"and on all {cores} cores (both libraries {cores} threads); per library, rounds of a block of "
          "pcgrad reps then a block of torchjd reps, the first rep of each block not counted (torch's "
          "OpenMP workers keep spinning for a while after its calls and would otherwise take the cores "
          "from the pcgrad call that follows); medians over all rounds\n")
    print("| T | N | threads | pcgrad.merge (ms) | torchjd PCGrad (ms) | torchjd / pcgrad |")
    print("|--:|--:|--:|------------------:|--------------------:|-----------------:|")
    rng = pcgrad.Rng(1)
    ratios = {}
    threads_before = torch.get_num_threads()
    for n in sizes:
        for t in tasks_list:
            g = np.random.default_rng(t * 7 + n).standard_normal((t, n), dtype=np.float32)
            jt = torch.from_numpy(g)  # the same memory
            block = 3 if n >= 10_000_000 else (6 if n >= 1_000_000 else 25)
            rounds = 3
            for threads in (1, cores):
                torch.set_num_threads(threads)
                ours, theirs = [], []
                pcgrad.merge(g, order="shuffled", rng=rng, reduction="sum", threads=threads)  # warm-up
                with torch.no_grad():
                    aggregator(jt)
                # sanity: with T = 2 the order cannot matter, the two must agree
                if t == 2:
                    a = pcgrad.merge(g, order="shuffled", rng=rng, reduction="sum", threads=threads)
                    b = aggregator(jt).numpy()
                    scale = float(np.max(np.abs(g)))
                    assert np.max(np.abs(a - b)) <= 1e-4 * scale * max(1.0, np.sqrt(n) / 100), (t, n)
                for _ in range(rounds):
                    for k in range(block + 1):
                        t0 = time.perf_counter()
                        pcgrad.merge(g, order="shuffled", rng=rng, reduction="sum", threads=threads)
                        if k:
                            ours.append(time.perf_counter() - t0)
                    for k in range(block + 1):
                        t0 = time.perf_counter()
                        with torch.no_grad():
                            aggregator(jt)
                        if k:
                            theirs.append(time.perf_counter() - t0)
                mo, mt = statistics.median(ours) * 1e3, statistics.median(theirs) * 1e3
                ratios[(t, n, threads)] = mt / mo
                print(f"| {t} | {n:.0e} | {threads} | {mo:.3f} | {mt:.3f} | {mt / mo:.1f} |")
            del g, jt
    torch.set_num_threads(threads_before)
    worst = min(ratios, key=ratios.get)
    print(f"\nsmallest torchjd / pcgrad: {ratios[worst]:.2f} at T = {worst[0]}, N = {worst[1]:.0e}, "
          f"{worst[2]} thread(s)")
    return ratios


def torch_paths(quick):
    import torch

    from pcgrad import torch as pt

    print("\n### pcgrad.torch CPU paths: per variable (zero copy) against one packed buffer\n")
    print("| T | parameters | N | per variable (ms) | packed (ms) | packed / per variable |")
    print("|--:|-----------:|--:|------------------:|------------:|----------------------:|")
    gen = torch.Generator().manual_seed(0)
    shapes = [(512, 512), (512,)] * 8 + [(512, 10), (10,)] * 4
    res = {}
    for t in (2, 4, 8):
        params = [torch.zeros(s) for s in shapes]
        grads = [[None if (k >= 16 and (k - 16) // 2 != tt % 4) else torch.randn(s, generator=gen)
                  for k, s in enumerate(shapes)] for tt in range(t)]
        times = {}
        for path in ("vars", "packed"):
            ts = []
            for _ in range(5 if quick else 15):
                t0 = time.perf_counter()
                pt._merge_params(grads, params, "sequential", "fixed", "mean", None, 0, path, False)
                ts.append(time.perf_counter() - t0)
            times[path] = statistics.median(ts) * 1e3
        a = pt._merge_params(grads, params, "sequential", "fixed", "mean", None, 0, "vars", False)[0]
        b = pt._merge_params(grads, params, "sequential", "fixed", "mean", None, 0, "packed", False)[0]
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        n = sum(int(np.prod(s)) for s in shapes)
        res[t] = times["packed"] / times["vars"]
        print(f"| {t} | {len(shapes)} | {n:.2e} | {times['vars']:.3f} | {times['packed']:.3f} | {res[t]:.2f} |")
    return res


def main():
    ap = argparse.ArgumentParser(description="pcgrad from Python against its peers")
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    ap.add_argument("--only", choices=["overhead", "peers", "torch"], help="one part only")
    args = ap.parse_args()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"machine: {cpu}, {os.cpu_count()} logical cores, load average {os.getloadavg()[0]:.1f} at the start; "
          f"Python {platform.python_version()}, numpy {np.__version__}, pcgrad {pcgrad.__version__} "
          f"(library {pcgrad.library_version})")
    if args.only in (None, "overhead"):
        overhead(args.quick)
    if args.only in (None, "peers"):
        peers(args.quick)
    if args.only in (None, "torch"):
        torch_paths(args.quick)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    sys.exit(main())
