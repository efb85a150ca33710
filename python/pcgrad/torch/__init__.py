"""PyTorch front end of :mod:`pcgrad` (torch is imported here, not by
``import pcgrad``).

- :class:`PCGrad` wraps an optimizer with the interface of the popular
  PyTorch port (``pc_backward(objectives)``, ``zero_grad()``, ``step()``,
  ``optimizer``): one loss per task, the merged gradient lands in each
  parameter's ``.grad``. A parameter a task's loss does not reach (a
  task-specific head) has ``grad is None`` for that task and becomes its
  ``has_grad = False`` segment.
- CPU float32/float64 parameters go through the library's per-variable entry
  point over the gradients' own memory (no packing copy). Parameters on any
  other device (CUDA, MPS, ...) take the *device path*: the T x T Gram matrix
  and the apply step run as torch ops on that device, and the library
  computes the coefficients from the Gram matrix (the C phase 2), so the
  projection semantics are the library's everywhere.
- :func:`merge` is the convenience for one (T, N) tensor.

A package, so that front ends for distributed training can live beside it
(``pcgrad.torch.distributed``).
"""

import os

import numpy as np
import torch

from .. import _core

__all__ = ["PCGrad", "merge"]

_CPU_DTYPES = (torch.float32, torch.float64)


def _numpy_view(t):
    """A NumPy array sharing ``t``'s memory (CPU, contiguous)."""
    return t.detach().numpy()


def _device_gram(cols, tasks, device):
    """The (T, T) float64 Gram matrix from per-variable lists of
    (task indices, stacked (k, n) gradients)."""
    g = torch.zeros((tasks, tasks), dtype=torch.float64, device=device)
    for idx, x in cols:
        part = (x @ x.T).to(device=device, dtype=torch.float64)
        ix = torch.as_tensor(idx, device=device)
        g[ix.unsqueeze(1), ix.unsqueeze(0)] += part
    return g


def _device_merge(per_var, tasks, mode, order, reduction, rng, stats):
    """The device path over ``per_var[s] = [grad of task t or None]``:
    returns (merged per variable (None where no task has one), Stats or None)."""
    cols = []
    device = None
    for s, grads in enumerate(per_var):
        idx = [t for t, g in enumerate(grads) if g is not None]
        if idx:
            x = torch.stack([grads[t].reshape(-1) for t in idx])
            device = x.device
            cols.append((idx, x))
        else:
            cols.append((idx, None))
    present = [(idx, x) for idx, x in cols if x is not None]
    if not present:
        raise ValueError("pcgrad.torch: no task has a gradient for any parameter")
    gram = _device_gram(present, tasks, device).cpu().numpy()
    out = _core.coefficients(gram, mode=mode, order=order, rng=rng, stats=stats)
    coef, st = out if stats else (out, None)
    b_all = torch.as_tensor(coef[tasks * tasks: tasks * tasks + tasks], device=device)
    merged = []
    for (idx, x), grads in zip(cols, per_var):
        if x is None:
            merged.append(None)
            continue
        b = b_all[torch.as_tensor(idx, device=device)].to(device=x.device, dtype=x.dtype)
        m = b @ x
        if reduction == "mean" and len(idx) == tasks:
            m = m / tasks
        merged.append(m.reshape(grads[idx[0]].shape))
    return merged, st


def _cpu_ok(t):
    return t.device.type == "cpu" and t.dtype in _CPU_DTYPES and t.layout == torch.strided


class PCGrad:
    """PCGrad around a torch optimizer.

    ``PCGrad(optimizer, *, reduction="mean", mode="sequential",
    order="shuffled", seed=None, threads=0)``:

    - ``mode``: ``"sequential"`` (the paper's Algorithm 1) or
      ``"simultaneous"``; ``order``: ``"shuffled"`` (a fresh random task order
      per task per step, the paper's and the PyTorch port's), ``"fixed"`` or a
      (T, T-1) table; ``reduction``: ``"mean"`` (1/T on parameters every task
      reaches, sum on task-specific ones) or ``"sum"``.
    - ``seed``: the seed of the shuffled order's :class:`pcgrad.Rng`
      (``self.rng``; default: 64 random bits from the OS). Save
      ``copy.copy(self.rng)`` to replay a run.
    - ``threads``: the library's worker threads, 0 = all cores.

    Usage, as with the popular port::

        opt = pcgrad.torch.PCGrad(torch.optim.SGD(model.parameters(), lr=0.1))
        opt.zero_grad()
        opt.pc_backward([loss_a, loss_b, loss_c])
        opt.step()
    """

    def __init__(self, optimizer, *, reduction="mean", mode="sequential", order="shuffled",
                 seed=None, threads=0):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"pcgrad.torch.PCGrad: optimizer must be a torch.optim.Optimizer, "
                            f"got {type(optimizer).__name__}")
        _core._enum("pcgrad.torch.PCGrad", "reduction", reduction, _core._REDUCTIONS)
        _core._enum("pcgrad.torch.PCGrad", "mode", mode, _core._MODES)
        _core._threads("pcgrad.torch.PCGrad", threads)
        if isinstance(order, str) and order not in ("fixed", "shuffled"):
            raise ValueError(f"pcgrad.torch.PCGrad: order must be 'fixed', 'shuffled' or a table, got {order!r}")
        self._optim = optimizer
        self.reduction = reduction
        self.mode = mode
        self.order = order
        self.threads = threads
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        #: The :class:`pcgrad.Rng` of the shuffled order (advanced every step).
        self.rng = _core.Rng(seed)
        #: ``"vars"``: the per-variable entry point over the gradients' own
        #: memory (the default, measured faster); ``"packed"``: one packed
        #: (T, N) buffer through pcgrad.pack/merge/unflatten; ``"device"``:
        #: force the device path (torch Gram and apply, library coefficients)
        #: even on the CPU.
        self.cpu_path = "vars"

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
        seen = set()
        params = []
        for group in self._optim.param_groups:
            for p in group["params"]:
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        return params

    def pc_backward(self, objectives, *, stats=False):
        """Back-propagates each task's loss, projects conflicting gradients and
        stores the merged gradient in every parameter's ``.grad`` (``None``
        where no task reaches the parameter). ``objectives`` is a sequence of
        scalar losses, one per task. With ``stats=True`` returns the step's
        :class:`pcgrad.Stats` (conflicting pairs, projections, Gram and
        cosine matrices)."""
        if isinstance(objectives, torch.Tensor):
            objectives = list(objectives) if objectives.dim() > 0 else [objectives]
        objectives = list(objectives)
        if not objectives:
            raise ValueError("pcgrad.torch.PCGrad.pc_backward: objectives is empty (one loss per task)")
        for k, obj in enumerate(objectives):
            if not isinstance(obj, torch.Tensor) or obj.numel() != 1:
                raise ValueError(f"pcgrad.torch.PCGrad.pc_backward: objectives[{k}] must be a scalar tensor")
        params = self._params()
        if not params:
            raise ValueError("pcgrad.torch.PCGrad.pc_backward: the optimizer has no trainable parameters")
        tasks = len(objectives)
        per_task = []
        for t, obj in enumerate(objectives):
            for p in params:
                p.grad = None
            obj.backward(retain_graph=t < tasks - 1)
            # The task's gradient tensors themselves: backward made fresh
            # ones, and setting .grad to None hands the next task fresh ones.
            per_task.append([p.grad for p in params])
        for p in params:
            p.grad = None
        reached = [any(per_task[t][s] is not None for t in range(tasks)) for s in range(len(params))]
        if not any(reached):
            raise ValueError("pcgrad.torch.PCGrad.pc_backward: no loss reaches any parameter")
        idx = [s for s in range(len(params)) if reached[s]]
        grads = [[per_task[t][s] for s in idx] for t in range(tasks)]
        chosen = [params[s] for s in idx]
        merged, st = _merge_params(grads, chosen, self.mode, self.order, self.reduction, self.rng,
                                   self.threads, self.cpu_path, stats)
        for p, m in zip(chosen, merged):
            p.grad = m
        return st


def _merge_params(grads, params, mode, order, reduction, rng, threads, path, stats):
    """Merged gradient tensors, one per parameter (like the parameter)."""
    tasks = len(grads)
    flat = [g for row in grads for g in row if g is not None]
    cpu = all(_cpu_ok(g) for g in flat) and all(_cpu_ok(p) for p in params)
    if not cpu or path == "device":
        per_var = [[grads[t][s] for t in range(tasks)] for s in range(len(params))]
        merged, st = _device_merge(per_var, tasks, mode, order, reduction, rng, stats)
        return [m.to(p.dtype) for m, p in zip(merged, params)], st
    # CPU: NumPy views of the gradient tensors (contiguous: autograd makes
    # them so; anything else is copied once by .contiguous()).
    views = [[None if g is None else _numpy_view(g.contiguous()) for g in row] for row in grads]
    outs = [torch.empty_like(p, memory_format=torch.contiguous_format) for p in params]
    out_views = [_numpy_view(o) for o in outs]
    segments = [p.numel() for p in params]
    if path == "packed":
        packed, _, has_grad = _core.pack(views, segments=segments)
        res = _core.merge(packed, mode=mode, order=order, reduction=reduction, segments=segments,
                          has_grad=has_grad, rng=rng, threads=threads, stats=stats)
        merged, st = res if stats else (res, None)
        for o, piece in zip(out_views, _core.unflatten(merged, [p.shape for p in params])):
            o[...] = piece
        return outs, st
    if path != "vars":
        raise ValueError(f"pcgrad.torch: cpu_path must be 'vars', 'packed' or 'device', got {path!r}")
    res = _core.merge_vars(views, mode=mode, order=order, reduction=reduction, segments=segments,
                           rng=rng, threads=threads, out=out_views, stats=stats)
    st = res[1] if stats else None
    return outs, st


def merge(grads, *, mode="sequential", order="fixed", reduction="mean", rng=None, threads=0,
          device_path=False):
    """The merged gradient (N values) of a (T, N) tensor of task gradients, as
    :func:`pcgrad.merge`. A CPU float32 or float64 contiguous tensor is read
    in place (zero copy); a tensor on another device
    (or ``device_path=True``) takes the device path (torch Gram and apply on
    its device, library coefficients). Returns a tensor on ``grads``'s device
    and of its dtype."""
    if not isinstance(grads, torch.Tensor):
        raise TypeError(f"pcgrad.torch.merge: grads must be a torch.Tensor, got {type(grads).__name__}")
    if grads.dim() != 2:
        raise ValueError(f"pcgrad.torch.merge: grads must be 2-D (T, N), got shape {tuple(grads.shape)}")
    if not grads.dtype.is_floating_point:
        raise TypeError(f"pcgrad.torch.merge: grads must be floating point, got {grads.dtype}")
    if _cpu_ok(grads) and not device_path:
        g = grads.detach().contiguous()
        return torch.from_numpy(_core.merge(_numpy_view(g), mode=mode, order=order, reduction=reduction,
                                            rng=rng, threads=threads))
    tasks = grads.shape[0]
    if tasks == 0:
        raise _core.Error(-2, "pcgrad.torch.merge")
    merged, _ = _device_merge([[grads[t].detach() for t in range(tasks)]], tasks, mode, order,
                              reduction, _rng_for(order, rng), False)
    return merged[0]


def _rng_for(order, rng):
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return _core.Rng(rng)
    return rng
