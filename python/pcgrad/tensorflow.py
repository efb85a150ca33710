"""TensorFlow front end of :mod:`pcgrad`: a drop-in for the TensorFlow classes
``PCGrad`` and ``PPCGrad`` that this library was ported from (TensorFlow is
imported here, not by ``import pcgrad``).

Change one import and keep the training step::

    from pcgrad.tensorflow import PCGrad        # was: from pcgrad import PCGrad

    pcgrad = PCGrad(reduction="mean")

    @tf.function
    def train_step(x, ys):
        with tf.GradientTape(persistent=True) as tape:
            losses = [loss_fn(y, model(x)) for y in ys]
        grads = pcgrad.pc_backward(tape, losses, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

The methods have the original names, arguments and return values:

- ``pack_grad(tape, losses, variables) -> (grads_list, shapes, has_grads_list)``;
- ``project_conflicting(grads, has_grads) -> merged flat gradient``;
- ``pc_backward(tape, losses, variables) -> one gradient per variable``.

**Semantics.** By default both classes compute what the originals compute:
the *simultaneous* projection, g'_i = g_i - sum over j with g_i.g_j < 0 of
(g_i.g_j / |g_j|^2) g_j, every dot product taken with the original g_i (the
original ``PCGrad`` loops over the tasks like the paper's Algorithm 1 but never
updates the gradient it takes dot products with, so its result is this; its
``random.shuffle`` therefore changes nothing; ``PPCGrad`` computes the same
thing in parallel). ``mode="sequential"`` gives the paper's Algorithm 1
(each dot product with the already projected gradient), in the task order
``order``: ``"shuffled"`` (a fresh random permutation per task per step, from
a :class:`pcgrad.Rng` seeded by ``seed``), ``"fixed"`` (ascending) or a
(T, T-1) integer table. ``reduction="mean"`` averages the coordinates every
task has a gradient for and sums the task-specific ones (the original rule);
``"sum"`` sums everywhere. A task with zero gradient projects nothing (no
division by zero).

**Execution.** The projection runs in the C library on the CPU, called
directly in eager mode and through :func:`tf.numpy_function` inside
:func:`tf.function` (the op is stateful, so it runs once per step, and its
outputs carry the variables' static shapes so Keras code downstream traces).
A graph holding it cannot be exported to a SavedModel (a limit of
``tf.numpy_function``); the training step needs no export. The library
computes in float32 with float64 accumulation; float64 gradients are
converted once and the results are float64 again. Other dtypes (float16,
bfloat16, integers) raise ``TypeError``. ``PPCGrad``'s parallelism is the
library's own threads (``threads``, 0 = all cores; results are bitwise
identical for every thread count).

Bad input (mismatched lists, no losses, a variable no task's loss reaches, a
non-persistent tape with several losses) raises a Python exception naming the
argument before any work is done.
"""

import os

import numpy as np
import tensorflow as tf

from . import _capi as _c
from . import _core

__all__ = ["PCGrad", "PPCGrad"]

_FLOATS = (tf.float32, tf.float64)


def _dtype_of(x):
    return tf.as_dtype(x.dtype)


def _runs(masks):
    """(segments, has_grad) of T per-coordinate masks: the maximal runs of
    coordinates over which no task's mask changes."""
    m = np.stack([np.asarray(h).reshape(-1) != 0 for h in masks])
    dim = m.shape[1]
    if dim == 0:
        return [0], np.ones((m.shape[0], 1), dtype=bool)
    starts = np.concatenate(([0], np.flatnonzero((m[:, 1:] != m[:, :-1]).any(axis=0)) + 1))
    segments = np.diff(np.concatenate((starts, [dim]))).tolist()
    return segments, m[:, starts]


class PCGrad:
    """PCGrad gradient surgery for TensorFlow, over the pcgrad C library.

    ``PCGrad(reduction="mean", *, mode="simultaneous", order="shuffled",
    seed=None, threads=0)``:

    - ``reduction``: ``"mean"`` (1/T on variables every task reaches, sum on
      task-specific ones: the original rule) or ``"sum"``;
    - ``mode``: ``"simultaneous"`` (the default: the original classes'
      result) or ``"sequential"`` (the paper's Algorithm 1);
    - ``order`` (sequential mode only): ``"shuffled"`` (a fresh random task
      order per task per step, as in the paper), ``"fixed"`` (ascending) or a
      (T, T-1) integer table (row i: the tasks j != i in visiting order);
    - ``seed``: the seed of the shuffled order's :class:`pcgrad.Rng`
      (``self.rng``, advanced every step; default 64 random bits from the OS);
    - ``threads``: the library's worker threads, 0 = all cores.

    See the module documentation for the methods and the semantics."""

    _name = "PCGrad"

    def __init__(self, reduction="mean", *, mode="simultaneous", order="shuffled", seed=None,
                 threads=0):
        fn = f"pcgrad.tensorflow.{self._name}"
        if reduction not in ("mean", "sum"):
            raise ValueError(f"{fn}: reduction must be 'mean' or 'sum', got {reduction!r}")
        _core._enum(fn, "mode", mode, _core._MODES)
        _core._threads(fn, threads)
        if isinstance(order, str):
            if order not in ("fixed", "shuffled"):
                raise ValueError(f"{fn}: order must be 'fixed', 'shuffled' or a (T, T-1) table, got {order!r}")
        else:
            order = np.array(order)
            if order.dtype.kind not in "iu" or order.ndim != 2:
                raise TypeError(f"{fn}: an order table must be a 2-D integer array, got {order!r}")
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        elif not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise TypeError(f"{fn}: seed must be an int or None, got {type(seed).__name__}")
        self.reduction = reduction
        self.mode = mode
        self.order = order
        self.threads = threads
        #: The :class:`pcgrad.Rng` of ``order="shuffled"`` (sequential mode);
        #: save ``copy.copy(self.rng)`` to replay a run.
        self.rng = _core.Rng(seed)

    # -- the library call -------------------------------------------------

    def _options(self, fn, tasks):
        """Keyword arguments of the library call for T tasks (checked now, so a
        bad order table fails here and not inside a graph)."""
        if self.mode == "simultaneous":
            kw = dict(mode="simultaneous", order="fixed", rng=None)
        else:
            kw = dict(mode="sequential", order=self.order,
                      rng=self.rng if isinstance(self.order, str) and self.order == "shuffled" else None)
        _core._config(fn, tasks, kw["mode"], kw["order"], self.reduction, kw["rng"], self.threads,
                      False, _c.MATRIX_GRAM)
        kw.update(reduction=self.reduction, threads=self.threads)
        return kw

    @staticmethod
    def _run(fn, inputs, tout, shapes):
        """``fn(*numpy arrays) -> list of numpy arrays`` on ``inputs``: directly
        in eager mode, as one stateful ``tf.numpy_function`` op in a graph."""
        if tf.executing_eagerly():
            # np.asarray shares the tensor's memory (read-only); .numpy() copies
            outs = fn(*[np.asarray(x) for x in inputs])
            return [tf.convert_to_tensor(o) for o in outs]
        outs = tf.numpy_function(fn, inputs, tout, stateful=True)
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        outs = list(outs)
        for o, s in zip(outs, shapes):
            o.set_shape(s)
        return outs

    # -- the original methods ---------------------------------------------

    def _task_grads(self, fn, tape, losses, variables):
        """(losses, variables, per-task gradient lists with None) after the checks."""
        if not isinstance(tape, tf.GradientTape):
            raise TypeError(f"{fn}: tape must be a tf.GradientTape, got {type(tape).__name__}")
        if isinstance(losses, (tf.Tensor, tf.Variable, np.ndarray)) or not hasattr(losses, "__iter__"):
            raise TypeError(f"{fn}: losses must be a list of loss tensors, one per task, "
                            f"got {type(losses).__name__}")
        losses = list(losses)
        if not losses:
            raise ValueError(f"{fn}: losses is empty (one loss per task)")
        if isinstance(variables, (tf.Tensor, tf.Variable, np.ndarray)) or not hasattr(variables, "__iter__"):
            raise TypeError(f"{fn}: variables must be a list of variables, got {type(variables).__name__}")
        variables = list(variables)
        if not variables:
            raise ValueError(f"{fn}: variables is empty")
        for s, v in enumerate(variables):
            if _dtype_of(v) not in _FLOATS:
                raise TypeError(f"{fn}: variables[{s}] ({getattr(v, 'name', '?')}) is {_dtype_of(v).name}; "
                                "pcgrad supports float32 and float64")
        per_task = []
        for t, loss in enumerate(losses):
            try:
                grads = tape.gradient(loss, variables)
            except RuntimeError as e:
                if "persistent" in str(e):
                    raise RuntimeError(f"{fn}: a tape used for several losses must be persistent: "
                                       f"tf.GradientTape(persistent=True) ({e})") from e
                raise
            row = []
            for s, g in enumerate(grads):
                if g is not None:
                    if isinstance(g, tf.IndexedSlices):
                        g = tf.convert_to_tensor(g)
                    if g.dtype not in _FLOATS:
                        raise TypeError(f"{fn}: the gradient of losses[{t}] for variables[{s}] is "
                                        f"{g.dtype.name}; pcgrad supports float32 and float64")
                row.append(g)
            per_task.append(row)
        return losses, variables, per_task

    def pack_grad(self, tape, losses, variables):
        """Computes each task's gradient and flattens it, as the original
        ``pack_grad``. ``tape`` is a ``tf.GradientTape`` (persistent when
        there are several losses), ``losses`` one loss tensor per task,
        ``variables`` the model's variables.

        Returns ``(grads_list, shapes, has_grads_list)``: one flat gradient
        tensor per task (zeros where the task's loss does not reach a
        variable), the variables' shapes, and one flat mask per task (1 where
        the task has a gradient, 0 elsewhere; the variables' dtype)."""
        fn = f"pcgrad.tensorflow.{self._name}.pack_grad"
        _, variables, per_task = self._task_grads(fn, tape, losses, variables)
        shapes = [v.shape for v in variables]
        grads_list, has_grads_list = [], []
        for row in per_task:
            flat, mask = [], []
            for g, v in zip(row, variables):
                dt = _dtype_of(v)
                if g is None:
                    flat.append(tf.zeros([int(np.prod(v.shape, dtype=np.int64))], dtype=dt))
                    mask.append(tf.zeros([int(np.prod(v.shape, dtype=np.int64))], dtype=dt))
                else:
                    flat.append(tf.reshape(tf.cast(g, dt), [-1]))
                    mask.append(tf.ones([int(np.prod(v.shape, dtype=np.int64))], dtype=dt))
            grads_list.append(tf.concat(flat, axis=0))
            has_grads_list.append(tf.concat(mask, axis=0))
        return grads_list, shapes, has_grads_list

    def project_conflicting(self, grads, has_grads):
        """Projects conflicting task gradients and returns the merged flat
        gradient, as the original ``project_conflicting``: ``grads`` is a list
        of T flat gradients (float32 or float64, one dtype, the same length),
        ``has_grads`` the list of T flat masks of ``pack_grad`` (nonzero where
        the task has a gradient). Where a mask is 0 the gradient must be 0 (as
        ``pack_grad`` makes it): the coordinate is task-specific, not shared;
        a nonzero value there raises ``ValueError``.

        The caller's list is left as it is (the original shuffles it in
        place, which does not change its result)."""
        fn = f"pcgrad.tensorflow.{self._name}.project_conflicting"
        if isinstance(grads, (tf.Tensor, np.ndarray)) or not hasattr(grads, "__iter__"):
            raise TypeError(f"{fn}: grads must be a list of T flat gradient tensors")
        if isinstance(has_grads, (tf.Tensor, np.ndarray)) or not hasattr(has_grads, "__iter__"):
            raise TypeError(f"{fn}: has_grads must be a list of T flat mask tensors")
        grads = [tf.convert_to_tensor(g) for g in grads]
        has_grads = [tf.convert_to_tensor(h) for h in has_grads]
        tasks = len(grads)
        if tasks == 0:
            raise ValueError(f"{fn}: grads is empty (one gradient per task)")
        if len(has_grads) != tasks:
            raise ValueError(f"{fn}: grads has {tasks} entries, has_grads has {len(has_grads)}")
        dt = grads[0].dtype
        if dt not in _FLOATS:
            raise TypeError(f"{fn}: grads[0] is {dt.name}; pcgrad supports float32 and float64")
        dim = None
        for name, lst in (("grads", grads), ("has_grads", has_grads)):
            for t, x in enumerate(lst):
                if name == "grads" and x.dtype != dt:
                    raise TypeError(f"{fn}: grads[{t}] is {x.dtype.name}, grads[0] is {dt.name}")
                if name == "has_grads" and not (x.dtype.is_floating or x.dtype.is_integer or x.dtype.is_bool):
                    raise TypeError(f"{fn}: has_grads[{t}] must be numeric or bool, got {x.dtype.name}")
                if x.shape.rank is not None and x.shape.rank != 1:
                    raise ValueError(f"{fn}: {name}[{t}] must be 1-D (flat), got shape {x.shape}")
                n = x.shape[0] if x.shape.rank == 1 else None
                if n is not None:
                    if dim is None:
                        dim = n
                    elif n != dim:
                        raise ValueError(f"{fn}: {name}[{t}] has {n} values, grads[0] has {dim}")
        kw = self._options(fn, tasks)
        np_dt = dt.as_numpy_dtype

        def merge(*arrays):
            g, h = arrays[:tasks], arrays[tasks:]
            n = g[0].size
            for t, x in enumerate(list(g) + list(h)):
                if x.ndim != 1 or x.size != n:
                    name = "grads" if t < tasks else "has_grads"
                    raise ValueError(f"{fn}: {name}[{t % tasks}] has shape {x.shape}, grads[0] has ({n},)")
            if all(bool(x.all()) for x in h):
                rows = [[x] for x in g]
                segments = None
            else:
                segments, hg = _runs(h)
                bounds = np.concatenate(([0], np.cumsum(segments)))
                rows = []
                for t in range(tasks):
                    if np.any(g[t][~(h[t] != 0)]):
                        raise ValueError(f"{fn}: grads[{t}] is nonzero where has_grads[{t}] is 0")
                    rows.append([g[t][bounds[s]:bounds[s + 1]] if hg[t, s] else None
                                 for s in range(len(segments))])
            pieces = _core.merge_vars(rows, segments=segments, **kw)
            out = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
            return [out.astype(np_dt, copy=False)]

        return self._run(merge, grads + has_grads, [dt], [tf.TensorShape([dim])])[0]

    def pc_backward(self, tape, losses, variables):
        """Computes each task's gradient, projects conflicting ones and returns
        the merged gradients, one per variable and shaped like it, ready for
        ``optimizer.apply_gradients(zip(grads, variables))``: the original
        ``pc_backward`` (``pack_grad``, ``project_conflicting``,
        ``un_flatten_grad``) in one library call over the per-variable
        gradients, with no packing copy. A variable that no task's loss
        reaches raises ``ValueError`` (it would get no update)."""
        fn = f"pcgrad.tensorflow.{self._name}.pc_backward"
        losses, variables, per_task = self._task_grads(fn, tape, losses, variables)
        tasks, nvars = len(per_task), len(variables)
        for s, v in enumerate(variables):
            if all(per_task[t][s] is None for t in range(tasks)):
                raise ValueError(f"{fn}: no loss reaches variables[{s}] ({getattr(v, 'name', '?')}): "
                                 "leave it out of variables")
        kw = self._options(fn, tasks)
        pattern = [[g is not None for g in row] for row in per_task]
        dtypes = [_dtype_of(v) for v in variables]
        shapes = [tf.TensorShape(v.shape) for v in variables]
        np_shapes = [tuple(int(d) for d in v.shape) for v in variables]
        lengths = [int(np.prod(s, dtype=np.int64)) for s in np_shapes]
        inputs = [g for row in per_task for g in row if g is not None]

        def merge(*arrays):
            it = iter(arrays)
            rows = [[next(it) if pattern[t][s] else None for s in range(nvars)] for t in range(tasks)]
            for t in range(tasks):
                for s in range(nvars):
                    a = rows[t][s]
                    if a is not None and a.size != lengths[s]:
                        raise ValueError(f"{fn}: the gradient of losses[{t}] for variables[{s}] has "
                                         f"{a.size} values, the variable has {lengths[s]}")
            merged = _core.merge_vars(rows, segments=lengths, **kw)
            return [m.reshape(shp).astype(d.as_numpy_dtype, copy=False)
                    for m, shp, d in zip(merged, np_shapes, dtypes)]

        return self._run(merge, inputs, dtypes, shapes)


class PPCGrad(PCGrad):
    """The original ``PPCGrad`` (the parallel PCGrad): the same arguments,
    methods and results as :class:`PCGrad` (its default computes the same
    simultaneous projection); the parallel work is done by the library's
    threads (``threads``, 0 = all cores) instead of ``tf.vectorized_map``."""

    _name = "PPCGrad"
