"""Sharded PCGrad over ``torch.distributed`` (any backend with ``all_gather``,
``all_reduce``, ``all_gather_into_tensor``, ``isend``/``irecv`` and
``broadcast``; tested with gloo on the CPU).

PCGrad needs every dot product g_i . g_j over the whole model, but the
coefficients depend on the T x T Gram matrix alone. Each rank holds a
contiguous column shard of every task's gradient (rank order = column
order), and:

1. computes the partial Gram of its shard through the library
   (:func:`pcgrad.gram`);
2. combines the partials across ranks, then derives the coefficients
   through the library (:func:`pcgrad.coefficients`) from the same Gram,
   config and PRNG state on every rank;
3. applies them to its own shard (:func:`pcgrad.apply_merged`).

Two strategies for the combination:

- ``"allreduce"``: one ``all_reduce`` of the upper triangle of the partial
  Gram, T(T+1)/2 doubles. The order of the additions is the backend's:
  within rounding of one process, not bitwise.
- ``"deterministic"``: one ``all_gather`` of one partial per Gram chunk piece
  of every shard (the shard cut at the global multiples of :data:`CHUNK`),
  added on every rank in rank order (= column order) with
  :func:`pcgrad.gram_combine`. Bitwise reproducible for a given partition,
  and **bitwise identical to one process** (:func:`pcgrad.merge` on the
  whole array) when every shard boundary is a multiple of :data:`CHUNK`.

Status agreement: every rank makes the same collectives in the same order
whatever its input, so no rank waits for one that gave up. (a) Before the
combination an ``all_gather`` of a small record per rank (its local status,
T, its column count, the strategy, a fingerprint of mode/order/reduction/
``check_finite`` and the PRNG state); (b) the combination (the
deterministic strategy also carries each rank's phase-1 status); (c) after
the coefficients an ``all_reduce`` (MIN) of their status, where a NaN or
infinity anywhere (``check_finite=True``) becomes ``PCGRAD_ERROR_NON_FINITE``
on every rank. Any failure makes **every** rank raise :class:`pcgrad.Error`
with the same status (the first failing rank in rank order; the failing
rank chains its own exception as ``__cause__``), before any output is
written and with the ``Rng`` unchanged, so the next step can go on.

:class:`DataParallelPCGrad` is the optimizer wrapper for data-parallel (DDP-style)
training: per-task gradients are reduce-scattered into column shards instead
of all-reduced whole, PCGrad runs sharded, and the merged gradient is
all-gathered into every parameter's ``.grad``.
"""

import hashlib
import os

import numpy as np
import torch
import torch.distributed as dist

from .. import _capi as _c
from .. import _core

__all__ = ["CHUNK", "STRATEGIES", "DataParallelPCGrad", "merge_sharded", "shard_bounds"]

#: The library's Gram chunk (``CHUNK`` of the Rust engine, ``PCGRAD_GRAM_CHUNK``
#: of the MPI example): the Gram pass sums the partials of the aligned column
#: chunks [k C, (k + 1) C) in increasing k. Shard boundaries at its multiples
#: make the ``"deterministic"`` strategy bitwise identical to one process.
CHUNK = 8192

#: The combination strategies of :func:`merge_sharded`.
STRATEGIES = ("allreduce", "deterministic")

# record fields (int64) of agreement (a)
_STATUS, _TASKS, _DIM, _TOTAL, _STRATEGY, _CONFIG, _RNG = range(7)
_REC = 7


class _Fail(Exception):
    """A local failure with the status to agree on."""

    def __init__(self, status, cause=None):
        super().__init__(status)
        self.status = status
        self.cause = cause


def _bad(status, kind, message):
    """A local failure of ``status`` whose cause is ``kind(message)``."""
    return _Fail(status, kind(message))


def _status_of(exc):
    """The status a local exception becomes (Python-side checks have none)."""
    if isinstance(exc, _Fail):
        return exc.status
    if isinstance(exc, _core.Error):
        return exc.status
    if isinstance(exc, TypeError):
        return _c.ERROR_INVALID_ENUM
    return _c.ERROR_LENGTH_MISMATCH


def _raise(fn, status, rank, failing, cause):
    where = f"{fn} (rank {failing} failed)" if failing is not None and failing != rank else fn
    err = _core.Error(status, where)
    if cause is not None and failing == rank:
        raise err from cause
    raise err


def _i64(u):
    """A uint64 as a signed int64 (for an int64 tensor)."""
    u &= (1 << 64) - 1
    return u - (1 << 64) if u >= 1 << 63 else u


def _fingerprint(mode, order, reduction, check_finite):
    if isinstance(order, str):
        o = order
    else:
        o = np.asarray(order).tolist()
    h = hashlib.blake2b(repr((mode, o, reduction, bool(check_finite))).encode(), digest_size=8)
    return _i64(int.from_bytes(h.digest(), "little"))


def _pieces(a, b):
    """The aligned Gram chunks that the columns [a, b) touch, as (lo, hi)
    ranges relative to a."""
    out = []
    c = a
    while c < b:
        e = min(b, (c // CHUNK + 1) * CHUNK)
        out.append((c - a, e - a))
        c = e
    return out


def _pack(g):
    return g[np.triu_indices(g.shape[0])]


def _unpack(p, t):
    g = np.zeros((t, t), dtype=np.float64)
    iu = np.triu_indices(t)
    g[iu] = p
    g.T[iu] = p
    return g


def _group_info(group):
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("pcgrad.torch.distributed: torch.distributed is not initialized "
                           "(call torch.distributed.init_process_group first)")
    return dist.get_rank(group), dist.get_world_size(group)


def _local_checks(fn, local_grads, strategy, mode, order, reduction, rng, out):
    """Everything a rank can judge alone; returns the float32 NumPy view of
    the shard (T, n) and the NumPy view of ``out`` (or None)."""
    if strategy not in STRATEGIES:
        raise _bad(_c.ERROR_INVALID_ENUM, ValueError, f"{fn}: strategy must be one of {STRATEGIES}, got {strategy!r}")
    try:
        _core._enum(fn, "mode", mode, _core._MODES)
        _core._enum(fn, "reduction", reduction, _core._REDUCTIONS)
    except ValueError as e:
        raise _Fail(_c.ERROR_INVALID_ENUM, e) from None
    if isinstance(order, str) and order not in ("fixed", "shuffled"):
        raise _bad(_c.ERROR_INVALID_ENUM, ValueError,
                   f"{fn}: order must be 'fixed', 'shuffled' or a table, got {order!r}")
    if rng is not None and not isinstance(rng, _core.Rng):
        raise _bad(_c.ERROR_INVALID_ORDER, TypeError, f"{fn}: rng must be a pcgrad.Rng or an int seed")
    if not isinstance(local_grads, torch.Tensor):
        raise _bad(_c.ERROR_INVALID_ENUM, TypeError,
                   f"{fn}: local_grads must be a torch.Tensor, got {type(local_grads).__name__}")
    if local_grads.dim() != 2:
        raise _bad(_c.ERROR_LENGTH_MISMATCH, ValueError,
                   f"{fn}: local_grads must be 2-D (T, n_local), got shape {tuple(local_grads.shape)}")
    if local_grads.shape[0] == 0:
        raise _bad(_c.ERROR_NO_TASKS, ValueError, f"{fn}: local_grads has no task (T = 0)")
    if local_grads.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise _bad(_c.ERROR_INVALID_ENUM, TypeError,
                   f"{fn}: local_grads must be floating point, got {local_grads.dtype}")
    g = local_grads.detach().to("cpu", torch.float32).contiguous().numpy()
    o = None
    if out is not None:
        n = g.shape[1]
        if not isinstance(out, torch.Tensor) or out.dtype != torch.float32 or out.device.type != "cpu" \
                or not out.is_contiguous():
            raise _bad(_c.ERROR_INVALID_ENUM, TypeError, f"{fn}: out must be a contiguous CPU float32 tensor")
        if tuple(out.shape) != (n,):
            raise _bad(_c.ERROR_LENGTH_MISMATCH, ValueError,
                       f"{fn}: out must have shape ({n},), got {tuple(out.shape)}")
        o = out.detach().numpy()
    return g, o


def merge_sharded(local_grads, group=None, *, strategy="allreduce", mode="sequential", order="fixed",
                  reduction="mean", segments=None, has_grad=None, rng=None, check_finite=False,
                  dim=None, out=None, stats=False):
    """The merged PCGrad gradient of this rank's column shard, every rank
    calling it collectively (same T, strategy, mode, order, reduction,
    ``check_finite`` and PRNG state on every rank).

    - ``local_grads``: a (T, n_local) tensor, this rank's contiguous columns
      of every task's gradient; shards are laid out in rank order (rank r
      holds the columns after those of rank r - 1) and may be uneven or
      empty. float32 CPU contiguous tensors are read in place; anything
      else is converted to CPU float32 once.
    - ``group``: the process group (default: the world).
    - ``strategy``: ``"allreduce"`` or ``"deterministic"`` (module docstring).
    - ``mode``, ``order``, ``reduction``, ``check_finite``: as
      :func:`pcgrad.merge`; ``rng`` a :class:`pcgrad.Rng` (or an int seed)
      holding the same state on every rank, advanced alike on every rank.
    - ``segments`` / ``has_grad``: the variable layout of **this shard**
      (segment lengths summing to n_local, a (T, S_local) mask), as
      :func:`pcgrad.merge`.
    - ``dim``: if given, the total column count, checked against the sum of
      the shards (``PCGRAD_ERROR_LENGTH_MISMATCH`` on every rank otherwise).
    - ``out``: a contiguous CPU float32 (n_local,) tensor to write into.

    Returns the merged shard, an (n_local,) float32 CPU tensor (``out`` if
    given), or ``(merged, pcgrad.Stats)`` with ``stats=True`` (the Stats of
    the whole model, the same on every rank). Raises :class:`pcgrad.Error`
    on every rank if any rank's input is bad (see the module docstring)."""
    fn = "pcgrad.torch.distributed.merge_sharded"
    rank, world = _group_info(group)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        rng = _core.Rng(rng)
    status, cause, g, o, partial = _c.OK, None, None, None, None
    try:
        g, o = _local_checks(fn, local_grads, strategy, mode, order, reduction, rng, out)
        # validate segments/has_grad against the shard now (a library call
        # over no columns) so that phase 1 cannot fail after agreement (a)
        _core.gram(g, 0, 0, segments=segments, has_grad=has_grad)
        if strategy == "allreduce":
            partial = _pack(_core.gram(g, segments=segments, has_grad=has_grad))
    except Exception as e:  # noqa: BLE001 - every local failure becomes the agreed status
        status, cause = _status_of(e), (e.cause if isinstance(e, _Fail) else e)
    tasks = 0 if g is None else g.shape[0]
    n_local = 0 if g is None else g.shape[1]
    cfg = _fingerprint(mode, order, reduction, check_finite) if status == _c.OK else 0
    reads_rng = mode == "sequential" and isinstance(order, str) and order == "shuffled"
    rec = torch.tensor([status, tasks, n_local, -1 if dim is None else int(dim),
                        STRATEGIES.index(strategy) if strategy in STRATEGIES else -1, cfg,
                        _i64(rng.state) if (reads_rng and rng is not None) else 0], dtype=torch.int64)

    # (a) the first agreement
    recs = [torch.empty(_REC, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(recs, rec, group=group)
    allr = torch.stack(recs).tolist()
    verdict, failing = _c.OK, None
    for r, x in enumerate(allr):
        if x[_STATUS] != _c.OK:
            verdict, failing = x[_STATUS], r
            break
    if verdict == _c.OK:
        r0 = allr[0]
        total = sum(x[_DIM] for x in allr)
        for r, x in enumerate(allr):
            if x[_TASKS] != r0[_TASKS]:
                verdict = _c.ERROR_LENGTH_MISMATCH
            elif x[_TOTAL] >= 0 and x[_TOTAL] != total:
                verdict = _c.ERROR_LENGTH_MISMATCH
            elif x[_STRATEGY] != r0[_STRATEGY]:
                verdict = _c.ERROR_INVALID_ENUM
            elif x[_CONFIG] != r0[_CONFIG] or x[_RNG] != r0[_RNG]:
                verdict = _c.ERROR_INVALID_ORDER
            if verdict != _c.OK:
                failing = r
                break
    if verdict != _c.OK:
        _raise(fn, verdict, rank, failing, cause)

    # (b) the combination
    t = tasks
    p = t * (t + 1) // 2
    if strategy == "allreduce":
        buf = torch.from_numpy(partial)
        dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=group)
        gram = _unpack(buf.numpy(), t)
    else:
        offsets = np.cumsum([0] + [x[_DIM] for x in allr]).tolist()
        counts = [len(_pieces(offsets[r], offsets[r + 1])) for r in range(world)]
        width = 1 + max(counts) * p
        send = np.zeros(width, dtype=np.float64)
        try:
            for k, (lo, hi) in enumerate(_pieces(offsets[rank], offsets[rank + 1])):
                send[1 + k * p: 1 + (k + 1) * p] = _pack(_core.gram(g, lo, hi, segments=segments,
                                                                    has_grad=has_grad))
        except Exception as e:  # noqa: BLE001 - validated above; kept for the agreement
            send[0], cause = _status_of(e), e
        recv = torch.empty(world * width, dtype=torch.float64)
        dist.all_gather_into_tensor(recv, torch.from_numpy(send), group=group)
        allp = recv.numpy().reshape(world, width)
        for r in range(world):
            if allp[r, 0] != 0:
                _raise(fn, int(allp[r, 0]), rank, r, cause)
        gram = np.zeros((t, t), dtype=np.float64)
        for r in range(world):
            for k in range(counts[r]):
                _core.gram_combine(_unpack(allp[r, 1 + k * p: 1 + (k + 1) * p], t), gram)

    # phase 2, then (c) the second agreement
    before = rng.state if rng is not None else None
    cstatus, coef, st, cause = _c.OK, None, None, None
    try:
        res = _core.coefficients(gram, mode=mode, order=order, rng=rng, check_finite=check_finite,
                                 stats=stats)
        coef, st = res if stats else (res, None)
    except Exception as e:  # noqa: BLE001
        cstatus, cause = _status_of(e), e
    agreed = torch.tensor([cstatus], dtype=torch.int32)
    dist.all_reduce(agreed, op=dist.ReduceOp.MIN, group=group)
    agreed = int(agreed.item())
    if agreed != _c.OK:
        if rng is not None:
            rng.state = before  # as if not called, on every rank
        _raise(fn, agreed, rank, rank if cstatus == agreed else None, cause)

    # phase 3 on the local shard (its arguments passed the checks of (a))
    if o is None:
        merged = torch.empty(n_local, dtype=torch.float32)
        o = merged.numpy()
    else:
        merged = out
    if n_local:
        _core.apply_merged(g, coef, 0, n_local, reduction=reduction, segments=segments,
                           has_grad=has_grad, out=o)
    return (merged, st) if stats else merged


def _ring_reduce_scatter(blocks, rank, world, group):
    """Ring reduce-scatter of ``blocks`` (world, ...): returns the sum over
    the ranks of block ``rank``, after world - 1 steps in each of which a
    rank sends one block to the next rank and receives one from the previous
    (so each rank sends (world - 1) / world of its data once; gloo's own
    reduce_scatter all-reduces the whole tensor, measured twice the bytes).
    The order of the additions is fixed for a given world size."""
    if world == 1:
        return blocks[0].clone()

    def peer(r):
        return r if group is None else dist.get_global_rank(group, r)

    nxt, prv = peer((rank + 1) % world), peer((rank - 1) % world)
    acc = blocks.clone()
    incoming = torch.empty_like(blocks[0])
    for step in range(world - 1):
        out_i = (rank - step - 1) % world
        in_i = (rank - step - 2) % world
        reqs = [dist.isend(acc[out_i], nxt, group=group), dist.irecv(incoming, prv, group=group)]
        for q in reqs:
            q.wait()
        acc[in_i] += incoming
    return acc[rank]


def shard_bounds(dim, world, align=CHUNK):
    """The column boundaries [b_0 = 0, b_1, ..., b_world = dim] of an even
    split of ``dim`` columns into ``world`` shards, each inner boundary
    rounded up to a multiple of ``align`` (so with ``align=CHUNK`` the
    deterministic strategy is bitwise identical to one process; small
    models then leave the last ranks empty shards)."""
    if align < 1:
        raise ValueError(f"pcgrad.torch.distributed.shard_bounds: align must be >= 1, got {align}")
    b = [min(dim, -(-(r * dim // world) // align) * align) for r in range(world)]
    return b + [dim]


class DataParallelPCGrad:
    """PCGrad for data-parallel training, with the interface of
    :class:`pcgrad.torch.PCGrad` (``pc_backward``, ``zero_grad``, ``step``,
    ``optimizer``). Every rank holds the whole model and its own batch.

    ``pc_backward(objectives)`` back-propagates each task's loss on the local
    batch into one (T, N) float32 buffer, **reduce-scatters** it (a ring of
    point-to-point sends: sum over ranks, then / world as DDP averages) so that rank r holds columns
    ``bounds[r]:bounds[r+1]`` of every task's data-parallel mean gradient,
    runs :func:`merge_sharded` on that shard, and **all-gathers** the merged
    shards into every parameter's ``.grad``. Per rank and step that sends
    about (R-1)/R (T + 1) 4N bytes plus the Gram (a ring all-reduce of the T
    gradients would send 2 (R-1)/R T 4N); see the README for measurements.

    - ``group``: the process group (default: the world).
    - ``strategy``, ``mode``, ``order``, ``reduction``, ``check_finite``: as
      :func:`merge_sharded` / :class:`pcgrad.torch.PCGrad`.
    - ``seed``: the shuffled order's seed, the same on every rank (default:
      rank 0 draws one and broadcasts it). ``self.rng`` is the
      :class:`pcgrad.Rng`.
    - ``align``: shard boundaries at multiples of ``align`` (default
      :data:`CHUNK`, bitwise-exact phases under ``"deterministic"``).

    A parameter no task reaches on any rank keeps ``grad = None``; a
    parameter some task does not reach is that task's ``has_grad = False``
    segment (agreed across ranks by an all-reduce of the (T, S) mask).
    Parameters must be CPU tensors (gloo). ``optimizer`` is a
    ``torch.optim.Optimizer`` or any object with ``param_groups`` (a list of
    dicts with ``"params"``), ``step()`` and ``zero_grad()``."""

    def __init__(self, optimizer, group=None, *, strategy="allreduce", mode="sequential",
                 order="shuffled", reduction="mean", seed=None, align=CHUNK, check_finite=False):
        fn = "pcgrad.torch.distributed.DataParallelPCGrad"
        if not all(hasattr(optimizer, a) for a in ("param_groups", "step", "zero_grad")):
            raise TypeError(f"{fn}: optimizer must be a torch.optim.Optimizer (or have param_groups, step "
                            f"and zero_grad), got {type(optimizer).__name__}")
        if strategy not in STRATEGIES:
            raise ValueError(f"{fn}: strategy must be one of {STRATEGIES}, got {strategy!r}")
        _core._enum(fn, "mode", mode, _core._MODES)
        _core._enum(fn, "reduction", reduction, _core._REDUCTIONS)
        if isinstance(align, bool) or not isinstance(align, int) or align < 1:
            raise ValueError(f"{fn}: align must be a positive integer, got {align!r}")
        _group_info(group)
        self._optim = optimizer
        self.group = group
        self.strategy = strategy
        self.mode = mode
        self.order = order
        self.reduction = reduction
        self.align = align
        self.check_finite = check_finite
        if seed is None:
            s = torch.tensor([_i64(int.from_bytes(os.urandom(8), "little"))], dtype=torch.int64)
            dist.broadcast(s, src=dist.get_global_rank(group, 0) if group is not None else 0, group=group)
            seed = int(s.item()) & ((1 << 64) - 1)
        #: The :class:`pcgrad.Rng` of the shuffled order (the same on every rank).
        self.rng = _core.Rng(seed)
        #: Bytes this rank handed to the collectives in the last
        #: ``pc_backward`` (payload, not wire bytes): a dict with
        #: ``reduce_scatter``, ``gram`` and ``all_gather``.
        self.last_payload = None

    @property
    def optimizer(self):
        """The wrapped optimizer."""
        return self._optim

    def zero_grad(self, set_to_none=True):
        """Clears the gradients of the wrapped optimizer's parameters."""
        return self._optim.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        """One step of the wrapped optimizer with the merged gradients."""
        return self._optim.step(closure) if closure is not None else self._optim.step()

    def _params(self):
        seen, params = set(), []
        for group in self._optim.param_groups:
            for p in group["params"]:
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        return params

    def pc_backward(self, objectives, *, stats=False):
        """Back-propagates each task's local loss, runs sharded PCGrad on the
        data-parallel mean gradients and stores the merged gradient in every
        parameter's ``.grad`` (the same on every rank). Collective: every
        rank calls it. A bad input on any rank (a different number of
        losses, a non-finite gradient with ``check_finite``) raises
        :class:`pcgrad.Error` on every rank and leaves ``.grad`` as None.
        With ``stats=True`` returns the step's :class:`pcgrad.Stats`."""
        fn = "pcgrad.torch.distributed.DataParallelPCGrad.pc_backward"
        rank, world = _group_info(self.group)
        params = self._params()
        sizes = [p.numel() for p in params]
        n = sum(sizes)
        status, cause = _c.OK, None
        try:
            if isinstance(objectives, torch.Tensor):
                objectives = list(objectives) if objectives.dim() > 0 else [objectives]
            objectives = list(objectives)
            if not objectives:
                raise _Fail(_c.ERROR_NO_TASKS, ValueError(f"{fn}: objectives is empty (one loss per task)"))
            for k, obj in enumerate(objectives):
                if not isinstance(obj, torch.Tensor) or obj.numel() != 1:
                    raise _Fail(_c.ERROR_LENGTH_MISMATCH, ValueError(f"{fn}: objectives[{k}] must be a scalar tensor"))
            if any(p.device.type != "cpu" for p in params):
                raise _Fail(_c.ERROR_INVALID_ENUM, TypeError(f"{fn}: parameters must be CPU tensors"))
            if not params:
                raise _Fail(_c.ERROR_NO_TASKS, ValueError(f"{fn}: the optimizer has no trainable parameters"))
            # the local backward passes, before the agreement (a failure
            # here is agreed on too)
            tasks = len(objectives)
            offsets = np.cumsum([0] + sizes).tolist()
            buf = torch.zeros((tasks, n), dtype=torch.float32)
            has = torch.zeros((tasks, len(sizes)), dtype=torch.uint8)
            try:
                for t, obj in enumerate(objectives):
                    for p in params:
                        p.grad = None
                    obj.backward(retain_graph=t < tasks - 1)
                    for s, p in enumerate(params):
                        if p.grad is not None:
                            buf[t, offsets[s]:offsets[s + 1]] = p.grad.reshape(-1)
                            has[t, s] = 1
            finally:
                for p in params:
                    p.grad = None
        except Exception as e:  # noqa: BLE001
            status, cause = _status_of(e), (e.cause if isinstance(e, _Fail) else e)
        tasks = len(objectives) if status == _c.OK else 0
        # agreement on the shapes before the big collectives (their sizes
        # must match on every rank, or they would hang)
        rec = torch.tensor([status, tasks, n, len(sizes)], dtype=torch.int64)
        recs = [torch.empty(4, dtype=torch.int64) for _ in range(world)]
        dist.all_gather(recs, rec, group=self.group)
        allr = torch.stack(recs).tolist()
        for r, x in enumerate(allr):
            if x[0] != _c.OK:
                _raise(fn, x[0], rank, r, cause)
        for r, x in enumerate(allr):
            if x[1:] != allr[0][1:]:
                _raise(fn, _c.ERROR_LENGTH_MISMATCH, rank, r, None)

        # the (T, S) mask: a task reaches a parameter if it does on any rank
        dist.all_reduce(has, op=dist.ReduceOp.MAX, group=self.group)

        bounds = shard_bounds(n, world, self.align)
        widths = [bounds[r + 1] - bounds[r] for r in range(world)]
        wmax = max(widths)
        lo, w = bounds[rank], widths[rank]
        blocks = torch.zeros((world, tasks, wmax), dtype=torch.float32)
        for r in range(world):
            blocks[r, :, :widths[r]] = buf[:, bounds[r]:bounds[r + 1]]
        del buf
        shard = _ring_reduce_scatter(blocks, rank, world, self.group)
        del blocks
        local = (shard[:, :w] / world).contiguous()

        # this shard's variable layout: the pieces of the parameters in [lo, lo + w)
        seg, cols = [], []
        for s in range(len(sizes)):
            a, b = max(offsets[s], lo), min(offsets[s + 1], lo + w)
            if a < b:
                seg.append(b - a)
                cols.append(s)
        has_np = has.numpy().astype(bool)
        res = merge_sharded(local, self.group, strategy=self.strategy, mode=self.mode, order=self.order,
                            reduction=self.reduction, segments=seg if seg else None,
                            has_grad=has_np[:, cols] if seg else None, rng=self.rng,
                            check_finite=self.check_finite, dim=n, stats=stats)
        merged, st = res if stats else (res, None)

        send_m = torch.zeros(wmax, dtype=torch.float32)
        send_m[:w] = merged
        full = torch.empty(world * wmax, dtype=torch.float32)
        dist.all_gather_into_tensor(full, send_m, group=self.group)
        full = full.view(world, wmax)
        flat = torch.cat([full[r, :widths[r]] for r in range(world)])
        reached = has_np.any(axis=0)
        for s, p in enumerate(params):
            if reached[s]:
                p.grad = flat[offsets[s]:offsets[s + 1]].view_as(p).to(p.dtype).clone()
        t = tasks
        gram_bytes = 8 * t * (t + 1) // 2 if self.strategy == "allreduce" else \
            8 * (1 + t * (t + 1) // 2 * max(len(_pieces(bounds[r], bounds[r + 1])) for r in range(world)))
        self.last_payload = {"reduce_scatter": 4 * (world - 1) * tasks * wmax, "gram": gram_bytes + 8 * _REC + 4,
                             "all_gather": 4 * wmax}
        return st
