"""Phase 2 of the Gram-based methods against torchjd's aggregators, in one
process: for each method and T, the median time of pcgrad.method_weights on
the T x T Gram matrix and of torchjd's weighting on the same Gram matrix
(`aggregator.weighting(G)`, torchjd's own phase 2), float64, single thread.

    PCGRAD_LIBRARY=target/release/libpcgrad.so PYTHONPATH=python \\
        python benches/methods_torchjd.py
"""

import time

import numpy as np
import torch
import torchjd.aggregation as tja

import pcgrad

torch.set_num_threads(1)
METHODS = [("MGDA", "mgda"), ("IMTLG", "imtl_g"), ("AlignedMTL", "aligned_mtl")]


def median_time(f, reps):
    f()
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
    for tj, ours in METHODS:
        for t in (2, 4, 8, 16, 64):
            j = rng.standard_normal((t, 4 * t))
            g = j @ j.T
            gt = torch.from_numpy(g)
            agg = getattr(tja, tj)()
            weighting = agg.weighting  # torchjd's Gram -> weights stage
            reps = 200 if t <= 16 else 50
            a = median_time(lambda: pcgrad.method_weights(g, method=ours), reps)
            b = median_time(lambda: weighting(gt), reps)
            print(f"| {tj} | {t} | {a * 1e6:.1f} | {b * 1e6:.1f} | {b / a:.1f} |")


if __name__ == "__main__":
    main()
