"""pcgrad.tensorflow against the original TensorFlow algorithm, both inside
``tf.function``.

The original classes (``PCGrad`` and ``PPCGrad``, documented in the seed
document this library was ported from) are transcribed here from that
description as plain TensorFlow code, for timing only:

- ``tf loop``: the ``PCGrad`` class, for each task i and each task j (j = i
  included, as written there): the dot product of the original g_i with g_j,
  and if it is negative, subtract (dot / |g_j|^2) g_j (an ``if`` on a tensor,
  ``tf.cond`` in a graph); then the mean over shared coordinates and the sum
  over task-specific ones;
- ``tf vmap``: the ``PPCGrad`` class, the same projection of every task at
  once with ``tf.vectorized_map`` (the condition as a ``tf.where``).

Both are checked against ``pcgrad.tensorflow.PCGrad().project_conflicting``
on the same inputs before they are timed. Every row: T tasks, N parameters,
random normal float32 gradients (about half the pairs conflict), all
coordinates shared; medians of ``--repeat`` calls after a warm-up call, the
three interleaved call by call.

    python benches/python_tf.py            # T in {2, 4, 8}, N in {1e4, 1e6}
    python benches/python_tf.py --tasks 2 4 --dims 10000 --repeat 50
"""

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

import pcgrad
from pcgrad.tensorflow import PCGrad


def loop_project_conflicting(grads, has_grads, reduction="mean"):
    """The original ``PCGrad.project_conflicting``, transcribed."""
    shared = tf.cast(tf.reduce_prod(tf.stack([tf.cast(h, tf.int32) for h in has_grads]), axis=0),
                     tf.bool)
    pc_grad = list(grads)
    for i in range(len(pc_grad)):
        g_i = pc_grad[i]  # the original gradient: the dot products never see the updates
        for g_j in grads:
            dot = tf.tensordot(g_i, g_j, axes=1)

            def project(p=pc_grad[i], g_j=g_j, dot=dot):
                return p - dot * g_j / tf.reduce_sum(tf.square(g_j))

            pc_grad[i] = tf.cond(dot < 0, project, lambda p=pc_grad[i]: p)
    stacked = tf.stack(pc_grad)
    mask = tf.cast(shared, stacked.dtype)
    if reduction == "mean":
        merged_shared = tf.reduce_mean(stacked * mask, axis=0)
    else:
        merged_shared = tf.reduce_sum(stacked * mask, axis=0)
    return merged_shared + tf.reduce_sum(stacked * (1.0 - mask), axis=0)


def vmap_project_conflicting(grads, has_grads, reduction="mean"):
    """The original ``PPCGrad.project_conflicting`` (``tf.vectorized_map``
    over the tasks), transcribed."""
    shared = tf.cast(tf.reduce_prod(tf.stack([tf.cast(h, tf.int32) for h in has_grads]), axis=0),
                     tf.bool)
    stacked_in = tf.stack(grads)

    def one(g_i):
        p = g_i
        for j in range(len(grads)):
            g_j = stacked_in[j]
            dot = tf.reduce_sum(g_i * g_j)
            p = p - tf.where(dot < 0, dot / tf.reduce_sum(tf.square(g_j)), 0.0) * g_j
        return p

    stacked = tf.vectorized_map(one, stacked_in)
    mask = tf.cast(shared, stacked.dtype)
    if reduction == "mean":
        merged_shared = tf.reduce_mean(stacked * mask, axis=0)
    else:
        merged_shared = tf.reduce_sum(stacked * mask, axis=0)
    return merged_shared + tf.reduce_sum(stacked * (1.0 - mask), axis=0)


def medians_ms(fns, args, repeat):
    """Median ms of each function, the calls interleaved round-robin so that
    every function sees the same machine load."""
    for fn in fns:
        fn(*args).numpy()  # trace and warm up
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn(*args).numpy()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) * 1e3 for ts in times]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--dims", type=int, nargs="+", default=[10_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=0, help="calls per row (default: by size)")
    args = ap.parse_args(argv)

    surgeon = PCGrad()
    ours = tf.function(lambda g, h: surgeon.project_conflicting(g, h))
    loop = tf.function(loop_project_conflicting)
    vmap = tf.function(vmap_project_conflicting)

    print(f"# TensorFlow {tf.__version__}, pcgrad {pcgrad.__version__} (library "
          f"{pcgrad.library_version}), {platform.machine()}, {os.cpu_count()} cores, "
          f"TensorFlow intra-op threads {tf.config.threading.get_intra_op_parallelism_threads() or 'auto'}")
    print("| T | N | tf loop ms | tf vmap ms | pcgrad.tensorflow ms | vs loop | vs vmap |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for dim in args.dims:
        for tasks in args.tasks:
            g = rng.standard_normal((tasks, dim)).astype(np.float32)
            grads = [tf.constant(r) for r in g]
            masks = [tf.ones(dim)] * tasks
            want = ours(grads, masks).numpy()
            scale = float(np.max(np.abs(want)))
            for name, f in (("loop", loop), ("vmap", vmap)):
                err = float(np.max(np.abs(f(grads, masks).numpy() - want)))
                if err > 1e-4 * scale:
                    raise SystemExit(f"tf {name} transcription differs from pcgrad.tensorflow at "
                                     f"T={tasks} N={dim}: {err:e}")
            repeat = args.repeat or (51 if dim <= 100_000 else 11)
            t_loop, t_vmap, t_ours = medians_ms((loop, vmap, ours), (grads, masks), repeat)
            print(f"| {tasks} | {dim:.0e} | {t_loop:.3f} | {t_vmap:.3f} | {t_ours:.3f} | "
                  f"{t_loop / t_ours:.1f}x | {t_vmap / t_ours:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
