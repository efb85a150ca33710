"""Sharded PCGrad over torch.distributed (gloo, CPU, loopback).

    python examples/python/sharded_torch.py --ranks 4

starts RANKS processes with torch.multiprocessing (or runs under torchrun,
which sets RANK/WORLD_SIZE) and:

1. merge_sharded: a (T, N) gradient array split into column shards across
   the ranks; each rank's merged shard against one-process pcgrad.merge of
   the whole array, both strategies, chunk-aligned and unaligned shards;
2. data-parallel training: a shared trunk and three task heads, every rank
   its own batches, DataParallelPCGrad (reduce-scatter, sharded PCGrad,
   all-gather) for a few steps, per-task losses printed by rank 0;
3. bytes per step: what one rank writes to its sockets (Linux
   /proc/self/io wchar, so framing and the collective algorithm's relaying
   are included) for one DataParallelPCGrad step against all-reducing the T
   full task gradients and merging locally, mean over ranks.
"""

import argparse
import datetime
import os
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import pcgrad
import pcgrad.torch.distributed as pd


def wchar():
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def say(*a):
    if dist.get_rank() == 0:
        print(*a, flush=True)


def part1(rank, world):
    tasks, n = 4, 6 * pd.CHUNK + 1234
    g = np.random.default_rng(0).standard_normal((tasks, n)).astype(np.float32)
    g[1] -= g[0]  # conflicts
    ref = pcgrad.merge(g, order="shuffled", rng=pcgrad.Rng(42))
    scale = float(np.abs(g).max())
    for name, align in (("chunk-aligned", pd.CHUNK), ("unaligned", 1000)):
        b = pd.shard_bounds(n, world, align)
        lo, hi = b[rank], b[rank + 1]
        for strategy in pd.STRATEGIES:
            m = pd.merge_sharded(torch.from_numpy(g[:, lo:hi].copy()), strategy=strategy, order="shuffled",
                                 rng=pcgrad.Rng(42)).numpy()
            res = torch.tensor([float(np.array_equal(m, ref[lo:hi])),
                                float(np.abs(m - ref[lo:hi]).max(initial=0.0)) / scale], dtype=torch.float64)
            allr = [torch.empty(2, dtype=torch.float64) for _ in range(world)]
            dist.all_gather(allr, res)
            bitwise = all(r[0] == 1 for r in allr)
            worst = max(float(r[1]) for r in allr)
            say(f"merge_sharded {strategy:13s} {name:13s} bounds {b}: "
                f"{'bitwise equal to one process' if bitwise else 'not bitwise'}, "
                f"max error {worst:.1e} of max|input|")


class Net(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = torch.nn.Sequential(torch.nn.Linear(16, hidden), torch.nn.Tanh(),
                                         torch.nn.Linear(hidden, hidden), torch.nn.Tanh())
        self.heads = torch.nn.ModuleList([torch.nn.Linear(hidden, 1) for _ in range(3)])

    def losses(self, x, ys):
        h = self.trunk(x)
        return [torch.mean((head(h).squeeze(1) - y) ** 2) for head, y in zip(self.heads, ys)]


def batch(step, rank, size=32):
    g = torch.Generator().manual_seed(1000 * step + rank)
    x = torch.randn(size, 16, generator=g)
    y = x[:, 0] - x[:, 1]
    return x, [y, -y + 0.5 * x[:, 2], torch.sin(x[:, 3])]


def part2(rank, world, steps):
    net = Net(64)
    opt = pd.DataParallelPCGrad(torch.optim.SGD(net.parameters(), lr=0.05), strategy="deterministic",
                                mode="sequential", order="shuffled", seed=7, align=256)
    for step in range(steps):
        x, ys = batch(step, rank)
        opt.zero_grad()
        losses = net.losses(x, ys)
        st = opt.pc_backward(losses, stats=True)
        opt.step()
        mean = torch.tensor([float(v.detach()) for v in losses]) / world
        dist.all_reduce(mean)
        if step % max(1, steps // 5) == 0 or step == steps - 1:
            say(f"step {step:3d}: task losses (mean over ranks) {', '.join(f'{v:.4f}' for v in mean.tolist())}; "
                f"conflicting pairs {st.conflicting_pairs}")


def part3(rank, world, tasks, n):
    # one parameter vector of n values, task t's loss a_t . w: its gradient is a_t
    w = torch.nn.Parameter(torch.zeros(n))
    a = torch.from_numpy(np.random.default_rng(rank).standard_normal((tasks, n)).astype(np.float32))
    opt = pd.DataParallelPCGrad(torch.optim.SGD([w], lr=0.0), strategy="allreduce", order="fixed", seed=1)
    rows = []
    for strategy in ("allreduce", "deterministic", "full all-reduce"):
        opt.strategy = "deterministic" if strategy == "deterministic" else "allreduce"
        for rep in range(2):  # the first call warms the connections up; report the second
            dist.barrier()
            losses = [(w * a[t]).sum() for t in range(tasks)]
            before = wchar()
            if strategy == "full all-reduce":
                grads = torch.stack([torch.autograd.grad(l, w)[0] for l in losses])
                dist.all_reduce(grads)
                grads /= world
                merged = pcgrad.merge(grads.numpy())
                w.grad = torch.from_numpy(merged)
            else:
                opt.pc_backward(losses)
            sent = wchar() - before
        tot = torch.tensor([float(sent)], dtype=torch.float64)
        dist.all_reduce(tot)
        rows.append((strategy, tot.item() / world))
    say(f"| {world} | {tasks} | {n} | " + " | ".join(f"{b:,.0f}" for _, b in rows)
        + f" | {rows[2][1] / rows[0][1]:.2f} |")


def main(rank, world, port, steps):
    if port is not None:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120))
    say(f"{world} ranks, gloo over loopback, pcgrad {pcgrad.__version__} (library {pcgrad.library_version})")
    part1(rank, world)
    part2(rank, world, steps)
    say("bytes one rank writes per step (mean over ranks):")
    say("| ranks | T | N | DataParallelPCGrad, allreduce | DataParallelPCGrad, deterministic "
        "| all-reduce of the T gradients + local merge | ratio |")
    say("|---:|---:|---:|---:|---:|---:|---:|")
    for tasks in (3, 8):
        for n in (26627, 1 << 20):
            part3(rank, world, tasks, n)
    dist.destroy_process_group()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, default=4, help="processes to start (ignored under torchrun)")
    ap.add_argument("--steps", type=int, default=30, help="training steps of part 2")
    args = ap.parse_args()
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # torchrun
        main(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), None, args.steps)
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free = s.getsockname()[1]
        mp.spawn(main, args=(args.ranks, free, args.steps), nprocs=args.ranks)
