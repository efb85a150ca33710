"""pcgrad.torch.distributed over gloo on the CPU: one job of 4 processes
(torch.multiprocessing spawn, loopback, a free port) runs every check on
process groups of 1, 2 and 4 ranks (new_group([0]), new_group([0, 1]), the
world), since starting processes is the slow part.

Per group: every rank's merged shard against a one-process pcgrad.merge of
the same data, for both strategies, sequential fixed / sequential shuffled
(two steps from the same seed on every rank) / simultaneous, mean and sum,
dense and with segments and task-specific masks, T = 1..5, random,
identical, opposite, zero and mixed 1e-30 / 1e30 gradients: bitwise with
shard boundaries at multiples of CHUNK under "deterministic" (the
partitions include an empty shard), within 1e-6 of the largest input
otherwise; bad input on one rank (wrong length, bad mask shape, NaN with
check_finite, a different config) raises pcgrad.Error with the same status
on every rank, leaves the Rng unchanged, and the next call still works;
DataParallelPCGrad against the one-process PCGrad of the mean of the
ranks' task gradients, and its error agreement."""

import datetime
import json
import os
import socket
import time

import numpy as np
import torch
import torch.multiprocessing as mp

import pcgrad
from pcgrad import _capi

WORLD = 4
N = 5 * 8192 + 77  # five whole chunks and a partial one
TIMEOUT = 240  # seconds for the whole job; a hang fails the test


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cases():
    """(name, (T, N) float32 grads, global segments or None, has_grad or None)."""
    rng = np.random.default_rng(7)
    out = []
    g = rng.standard_normal((3, N)).astype(np.float32)
    out.append(("random3", g, None, None))
    out.append(("T1", rng.standard_normal((1, N)).astype(np.float32), None, None))
    base = rng.standard_normal((5, N))
    base[1] -= 1.5 * base[0]  # conflicting pairs
    base[3] = -base[2] + 0.1 * base[4]
    out.append(("conflict5", base.astype(np.float32), None, None))
    a = rng.standard_normal(N).astype(np.float32)
    out.append(("identical", np.stack([a, a, a]), None, None))
    out.append(("opposite", np.stack([a, -a, rng.standard_normal(N).astype(np.float32)]), None, None))
    z = rng.standard_normal((3, N)).astype(np.float32)
    z[1] = 0
    out.append(("zero", z, None, None))
    m = rng.standard_normal((4, N))
    m[1] *= 1e-30
    m[2] *= 1e30
    m[3] = -m[2] * 0.5 + 1e29 * rng.standard_normal(N)
    out.append(("mixed1e30", m.astype(np.float32), None, None))
    # a trunk and three heads (task t reaches head t only), like a multi-task model
    segs = [N - 3 * 4000 - 77, 4000, 4000, 4077]
    has = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1]], dtype=bool)
    h = rng.standard_normal((3, N)).astype(np.float32)
    h[1, : segs[0]] -= h[0, : segs[0]]
    out.append(("heads", h, segs, has))
    return out


CONFIGS = [("sequential", "fixed"), ("sequential", "shuffled"), ("simultaneous", "fixed")]


def _partitions(world):
    c = 8192
    aligned = {1: [0, N], 2: [0, 3 * c, N], 4: [0, c, 3 * c, 3 * c, N]}[world]
    unaligned = {1: [0, N], 2: [0, 12345, N], 4: [0, 1000, 20001, 33333, N]}[world]
    return [("aligned", aligned), ("unaligned", unaligned)]


def _local_layout(segs, has, lo, hi):
    """The shard [lo, hi)'s segments and has_grad columns."""
    if segs is None:
        return None, None
    off = np.cumsum([0] + segs)
    seg, cols = [], []
    for s in range(len(segs)):
        a, b = max(off[s], lo), min(off[s + 1], hi)
        if a < b:
            seg.append(int(b - a))
            cols.append(s)
    if not seg:
        return None, None
    return seg, has[:, cols]


def _expect_error(fn, status):
    try:
        fn()
    except pcgrad.Error as e:
        assert e.status == status, (e.status, status, str(e))
        return
    raise AssertionError(f"no pcgrad.Error (expected status {status})")


def _check_merge(pd, group, world, rank, summary):
    for name, grads, segs, has in _cases():
        tasks = grads.shape[0]
        scale = float(np.max(np.abs(grads)))
        for mode, order in CONFIGS:
            for reduction in ("mean", "sum"):
                steps = 2 if order == "shuffled" else 1
                rref = pcgrad.Rng(99)
                refs = [pcgrad.merge(grads, mode=mode, order=order, reduction=reduction, segments=segs,
                                     has_grad=has, rng=rref if order == "shuffled" else None)
                        for _ in range(steps)]
                for pname, bounds in _partitions(world):
                    lo, hi = bounds[rank], bounds[rank + 1]
                    local = torch.from_numpy(np.ascontiguousarray(grads[:, lo:hi]))
                    lseg, lhas = _local_layout(segs, has, lo, hi)
                    for strategy in pd.STRATEGIES:
                        rsh = pcgrad.Rng(99)
                        where = (name, pname, strategy, mode, order, reduction, world, rank)
                        for ref in refs:
                            got = pd.merge_sharded(local, group, strategy=strategy, mode=mode, order=order,
                                                   reduction=reduction, segments=lseg, has_grad=lhas,
                                                   rng=rsh if order == "shuffled" else None, dim=N).numpy()
                            want = ref[lo:hi]
                            exact = bool(np.array_equal(got, want))
                            err = float(np.max(np.abs(got.astype(np.float64) - want), initial=0.0))
                            s = summary.setdefault(f"{strategy}/{pname}", {"calls": 0, "bitwise": 0, "max_rel": 0.0})
                            s["calls"] += 1
                            s["bitwise"] += exact
                            s["max_rel"] = max(s["max_rel"], err / scale if scale > 0 else err)
                            if strategy == "deterministic" and pname == "aligned":
                                assert exact, where
                            else:
                                assert err <= 1e-6 * scale, (where, err, scale)
                        assert rref.state == rsh.state, where
                        if tasks >= 3 and order == "shuffled" and mode == "sequential":
                            assert rsh.state != pcgrad.Rng(99).state, where


def _check_errors(pd, group, world, rank):
    rng = np.random.default_rng(3)
    grads = rng.standard_normal((3, N)).astype(np.float32)
    bounds = _partitions(world)[1][1]
    lo, hi = bounds[rank], bounds[rank + 1]
    bad_rank = world - 1
    mine = rank == bad_rank
    local = torch.from_numpy(np.ascontiguousarray(grads[:, lo:hi]))
    for strategy in pd.STRATEGIES:
        kw = dict(strategy=strategy, dim=N)
        # wrong length: one more task row on one rank
        wrong = torch.cat([local, local[:1]]) if mine else local
        if world > 1:
            _expect_error(lambda: pd.merge_sharded(wrong, group, **kw), _capi.ERROR_LENGTH_MISMATCH)
        # wrong length: a shard of another width than dim says
        _expect_error(lambda: pd.merge_sharded(local[:, : max(hi - lo - 1, 0)] if mine and hi > lo else local,
                                               group, **kw),
                      _capi.ERROR_LENGTH_MISMATCH)
        # a has_grad mask of the wrong shape on one rank
        _expect_error(lambda: pd.merge_sharded(local, group, segments=[hi - lo],
                                               has_grad=np.ones((2 if mine else 3, 1), bool), **kw),
                      _capi.ERROR_LENGTH_MISMATCH)
        # an out buffer of the wrong length on one rank, left untouched
        out = torch.full((hi - lo + (1 if mine else 0),), 7.0)
        _expect_error(lambda: pd.merge_sharded(local, group, out=out, **kw), _capi.ERROR_LENGTH_MISMATCH)
        assert bool((out == 7.0).all())
        # NaN on one rank with check_finite: every rank, Rng unchanged
        nan = local.clone()
        if mine and hi > lo:
            nan[1, (hi - lo) // 2] = float("nan")
        r = pcgrad.Rng(5)
        _expect_error(lambda: pd.merge_sharded(nan, group, order="shuffled", rng=r, check_finite=True, **kw),
                      _capi.ERROR_NON_FINITE)
        assert r.state == pcgrad.Rng(5).state
        if world > 1:  # a different config (mode) on one rank
            _expect_error(lambda: pd.merge_sharded(local, group, mode="simultaneous" if mine else "sequential", **kw),
                          _capi.ERROR_INVALID_ORDER)
            # a different PRNG state on one rank
            _expect_error(lambda: pd.merge_sharded(local, group, order="shuffled", rng=6 if mine else 5, **kw),
                          _capi.ERROR_INVALID_ORDER)
        # the next call works and is right
        got = pd.merge_sharded(local, group, order="shuffled", rng=r, **kw).numpy()
        want = pcgrad.merge(grads, order="shuffled", rng=pcgrad.Rng(5))[lo:hi]
        assert np.max(np.abs(got - want), initial=0.0) <= 1e-6 * np.max(np.abs(grads))


class _SGD:
    """Plain SGD with the optimizer interface DataParallelPCGrad reads (the
    first torch.optim optimizer of a process imports torch._dynamo: about
    9 s of CPU per process here, on every rank at once)."""

    def __init__(self, params, lr):
        self.param_groups = [{"params": list(params), "lr": lr}]

    def zero_grad(self, set_to_none=True):
        for p in self.param_groups[0]["params"]:
            p.grad = None

    @torch.no_grad()
    def step(self):
        for p in self.param_groups[0]["params"]:
            if p.grad is not None:
                p -= self.param_groups[0]["lr"] * p.grad


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = torch.nn.Sequential(torch.nn.Linear(6, 24), torch.nn.Tanh(), torch.nn.Linear(24, 16))
        self.heads = torch.nn.ModuleList([torch.nn.Linear(16, 1) for _ in range(3)])
        self.unused = torch.nn.Linear(2, 2)

    def losses(self, x, ys):
        h = torch.tanh(self.trunk(x))
        return [torch.mean((head(h).squeeze(1) - y) ** 2) for head, y in zip(self.heads, ys)]


def _batch(k):
    g = torch.Generator().manual_seed(100 + k)
    x = torch.randn(8, 6, generator=g)
    y0 = x[:, 0] + x[:, 1]
    return x, [y0, -y0 + 0.3 * x[:, 2], x[:, 3]]


def _check_ddp(pd, group, world, rank, summary):
    for strategy, align, mode, order in (("deterministic", 64, "sequential", "shuffled"),
                                         ("allreduce", 1, "simultaneous", "fixed"),
                                         ("allreduce", pd.CHUNK, "sequential", "fixed")):
        net = _Net()
        params = [p for p in net.parameters()]
        opt = pd.DataParallelPCGrad(_SGD(params, lr=0.1), group, strategy=strategy, mode=mode,
                                    order=order, seed=11, align=align)
        ref_rng = pcgrad.Rng(11)
        for step in range(2):
            # the one-process reference: the mean over the ranks' batches of each task's gradient
            sizes = [p.numel() for p in params]
            acc = np.zeros((3, sum(sizes)))
            has = np.zeros((3, len(params)), bool)
            for r in range(world):
                x, ys = _batch(10 * step + r)
                for t, loss in enumerate(net.losses(x, ys)):
                    gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
                    acc[t] += np.concatenate([np.zeros(n) if g is None else g.double().numpy().ravel()
                                              for g, n in zip(gs, sizes)])
                    has[t] |= [g is not None for g in gs]
            mean = (acc / world).astype(np.float32)
            ref = pcgrad.merge(mean, mode=mode, order=order, segments=sizes, has_grad=has,
                               rng=ref_rng if order == "shuffled" else None)
            x, ys = _batch(10 * step + rank)
            opt.zero_grad()
            opt.pc_backward(net.losses(x, ys))
            off = 0
            scale = float(np.max(np.abs(mean)))
            for p, n, reached in zip(params, sizes, has.any(axis=0)):
                if not reached:
                    assert p.grad is None
                else:
                    err = float(np.max(np.abs(p.grad.numpy().ravel() - ref[off:off + n])))
                    assert err <= 1e-6 * scale, (strategy, align, step, err, scale)
                    s = summary.setdefault("ddp", {"calls": 0, "max_rel": 0.0})
                    s["max_rel"] = max(s["max_rel"], err / scale)
                off += n
            summary["ddp"]["calls"] += 1
            opt.step()
            assert opt.rng.state == ref_rng.state
    # bad input on one rank: a missing loss, then a NaN gradient with check_finite
    net = _Net()
    opt = pd.DataParallelPCGrad(_SGD(net.parameters(), lr=0.1), group, seed=1, check_finite=True)
    x, ys = _batch(rank)
    losses = net.losses(x, ys)
    if world > 1:
        _expect_error(lambda: opt.pc_backward(losses[:2] if rank == world - 1 else losses),
                      _capi.ERROR_LENGTH_MISMATCH)
        # a local backward failure (a loss without a graph) on one rank
        losses = net.losses(x, ys)
        if rank == world - 1:
            losses[0] = losses[0].detach()
        _expect_error(lambda: opt.pc_backward(losses), _capi.ERROR_LENGTH_MISMATCH)
    losses = net.losses(x, ys)
    if rank == world - 1:
        losses[1] = losses[1] * float("nan")
    _expect_error(lambda: opt.pc_backward(losses), _capi.ERROR_NON_FINITE)
    assert all(p.grad is None for p in net.parameters())
    opt.pc_backward(net.losses(x, ys))  # and the next step works
    assert net.trunk[0].weight.grad is not None


def _worker(rank, port, outdir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    import torch.distributed as dist

    import pcgrad.torch.distributed as pd

    torch.set_num_threads(1)  # 4 processes on few cores: no spinning intra-op pools
    t0 = time.perf_counter()
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=120))
    groups = {1: dist.new_group([0]), 2: dist.new_group([0, 1]), 4: None}
    result = {"init": time.perf_counter() - t0}
    for world in (1, 2, 4):
        if rank < world:
            t0 = time.perf_counter()
            summary = {}
            _check_merge(pd, groups[world], world, rank, summary)
            t1 = time.perf_counter()
            _check_errors(pd, groups[world], world, rank)
            t2 = time.perf_counter()
            _check_ddp(pd, groups[world], world, rank, summary)
            summary["seconds"] = [t1 - t0, t2 - t1, time.perf_counter() - t2]
            result[str(world)] = summary
        dist.barrier()
    with open(os.path.join(outdir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


def test_sharded_gloo_1_2_4_ranks(tmp_path):
    ctx = mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + TIMEOUT
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            raise AssertionError(f"the distributed job did not finish in {TIMEOUT} s (a rank hangs)")
    results = [json.load(open(tmp_path / f"rank{r}.json")) for r in range(WORLD)]
    print("seconds: init", results[0]["init"], {w: results[0][w]["seconds"] for w in ("1", "2", "4")})
    for world in ("1", "2", "4"):
        for key in sorted(results[0][world]):
            if key == "seconds":
                continue
            calls = sum(res[world][key]["calls"] for res in results if world in res)
            rel = max(res[world][key]["max_rel"] for res in results if world in res)
            bit = sum(res[world][key].get("bitwise", 0) for res in results if world in res)
            bits = "" if key == "ddp" else f", {bit} bitwise"
            print(f"ranks {world} {key}: {calls} results{bits}, max error / max|input| {rel:.2e}")
        exact = results[0][world]["deterministic/aligned"]
        assert exact["bitwise"] == exact["calls"]


def test_shard_bounds_and_no_process_group():
    import pcgrad.torch.distributed as pd

    assert pd.shard_bounds(N, 4) == [0, 2 * 8192, 3 * 8192, 4 * 8192, N]
    assert pd.shard_bounds(N, 4, align=1) == [0, N // 4, N // 2, 3 * N // 4, N]
    assert pd.shard_bounds(100, 3) == [0, 100, 100, 100]  # small: the last ranks empty
    assert pd.shard_bounds(0, 2) == [0, 0, 0]
    try:
        pd.shard_bounds(10, 2, align=0)
        raise AssertionError("align=0 accepted")
    except ValueError as e:
        assert "align" in str(e)
    try:
        pd.DataParallelPCGrad(object())
        raise AssertionError("not an optimizer accepted")
    except TypeError as e:
        assert "optimizer" in str(e)
    try:
        pd.merge_sharded(torch.zeros(2, 3))
        raise AssertionError("no error without a process group")
    except RuntimeError as e:
        assert "init_process_group" in str(e)
