"""Phase 2 of the Gram-based methods against torchjd's aggregators, in one
process: for each method and T, the median time of pcgrad.method_weights on
the T x T Gram matrix and of torchjd's Gram-to-weights stage on the same Gram
matrix (`aggregator.gramian_weighting(G)`; Nash-MTL, a matrix weighting in
torchjd, gets the Jacobian: `aggregator.weighting(J)`), float64, one torch
thread. The stateful Nash-MTL keeps its state on both sides (each warm starts
from its last solution).

    PCGRAD_LIBRARY=target/release/libpcgrad.so PYTHONPATH=python \\
        python benches/methods_torchjd.py

torchjd's UPGrad and DualProj need qpsolvers + quadprog, CAGrad and NashMTL
cvxpy (+ clarabel, ecos): python/requirements-test.txt pins them.
"""

import time

import numpy as np
import torch
import torchjd.aggregation as tja

import pcgrad

torch.set_num_threads(1)
# (label, torchjd constructor taking T, this package's method, its parameters)
METHODS = [
    ("MGDA", lambda t: tja.MGDA(), "mgda", {}),
    ("IMTLG", lambda t: tja.IMTLG(), "imtl_g", {}),
    ("AlignedMTL", lambda t: tja.AlignedMTL(), "aligned_mtl", {}),
    ("UPGrad", lambda t: tja.UPGrad(), "upgrad", {}),
    ("DualProj", lambda t: tja.DualProj(), "dualproj", {}),
    ("CAGrad(c=0.4)", lambda t: tja.CAGrad(c=0.4), "cagrad", {"c": 0.4}),
    ("NashMTL", lambda t: tja.NashMTL(n_tasks=t), "nash_mtl", {}),
]


def median_time(f, reps, budget=2.0):
    """Median of `reps` calls after one warm-up, fewer when a call is slow
    (at most about `budget` seconds, at least 5 calls)."""
    t0 = time.perf_counter()
    f()
    first = time.perf_counter() - t0
    reps = max(5, min(reps, int(budget / max(first, 1e-9))))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main():
    rng = np.random.default_rng(0)
    print("| method | T | pcgrad (us) | torchjd (us) | torchjd / pcgrad |")
    print("|---|---|---|---|---|")
    for tj, make, ours, params in METHODS:
        for t in (2, 4, 8, 16, 64):
            j = rng.standard_normal((t, 4 * t))
            g = j @ j.T
            agg = make(t)
            if tj == "NashMTL":
                jt = torch.from_numpy(j)
                weighting = agg.weighting  # torchjd's matrix -> weights stage
                theirs = lambda: weighting(jt)  # noqa: E731
                st = pcgrad.MethodState(t)
                mine = lambda: pcgrad.method_weights(g, method=ours, state=st, **params)  # noqa: E731
            else:
                gt = torch.from_numpy(g)
                weighting = agg.gramian_weighting  # torchjd's Gram -> weights stage
                theirs = lambda: weighting(gt)  # noqa: E731
                mine = lambda: pcgrad.method_weights(g, method=ours, **params)  # noqa: E731
            reps = 200 if t <= 16 else 50
            a = median_time(mine, reps)
            b = median_time(theirs, reps)
            print(f"| {tj} | {t} | {a * 1e6:.1f} | {b * 1e6:.1f} | {b / a:.1f} |", flush=True)


if __name__ == "__main__":
    main()
