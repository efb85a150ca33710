"""The NumPy API of :mod:`pcgrad` over the C library (see ``pcgrad/__init__.py``)."""

import ctypes
import threading

import numpy as np

from . import _capi as _c

__all__ = [
    "Error",
    "Rng",
    "Stats",
    "merge",
    "project",
    "merge_vars",
    "project_vars",
    "pack",
    "unflatten",
    "gram",
    "gram_combine",
    "coefficients",
    "apply_merged",
    "apply_projected",
    "workspace_len",
]

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_SIZE_T = np.dtype(np.uintp)
_U64 = (1 << 64) - 1
_VP = ctypes.c_void_p
_Z = ctypes.c_size_t

_MODES = {"sequential": _c.MODE_SEQUENTIAL, "simultaneous": _c.MODE_SIMULTANEOUS}
_REDUCTIONS = {"mean": _c.REDUCTION_MEAN, "sum": _c.REDUCTION_SUM}

# The hot entry points without argtypes: every argument is passed as a
# prebuilt ctypes object, which ctypes converts faster than Python integers
# through argtypes (measured: benches/python_peers.py --overhead).
_merge_flat = _c.lib["pcgrad_merge_flat"]
_project_flat = _c.lib["pcgrad_project_flat"]
_merge_flat.restype = ctypes.c_int
_project_flat.restype = ctypes.c_int
# The same over float64 gradients (the library reads and writes them in
# place; no float32 copy).
_merge_flat64 = _c.lib["pcgrad_merge_flat_f64"]
_project_flat64 = _c.lib["pcgrad_project_flat_f64"]
_merge_flat64.restype = ctypes.c_int
_project_flat64.restype = ctypes.c_int


class Error(ValueError):
    """A status the C library returned: ``status`` is its stable integer code
    (``PCGRAD_ERROR_*`` of ``pcgrad.h``, negative), ``message`` the library's
    description of it, ``function`` the Python function that called it.

    A failed call leaves every caller array unchanged (and an ``Rng`` where
    it was)."""

    def __init__(self, status, function="pcgrad"):
        self.status = int(status)
        self.function = function
        self.message = _c.status_str(self.status)
        super().__init__(f"{function}: {self.message} (pcgrad status {self.status})")

    def __reduce__(self):
        return (Error, (self.status, self.function))


def _check(status, function):
    if status != _c.OK:
        raise Error(status, function)


class Rng:
    """The library's PRNG (``struct pcgrad_rng``, SplitMix64): the state of the
    ``order="shuffled"`` draws.

    ``Rng(seed)`` starts from ``seed`` (any integer, taken modulo 2**64).
    ``state`` reads and sets the 64-bit state. Every successful sequential
    call with ``order="shuffled"`` and T >= 3 advances it, like the C struct,
    so successive training steps visit tasks in different orders;
    ``copy.copy(rng)`` (or saving ``state``) replays a run exactly. Calls that
    share one ``Rng`` from several threads are serialised on its lock."""

    __slots__ = ("_struct", "_lock", "__weakref__")

    def __init__(self, seed=0):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"pcgrad.Rng: seed must be an integer, got {type(seed).__name__}")
        self._struct = _c.RngStruct(int(seed) & _U64)
        self._lock = threading.Lock()

    @property
    def state(self):
        """The 64-bit generator state (an int in [0, 2**64))."""
        return int(self._struct.state)

    @state.setter
    def state(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"pcgrad.Rng.state must be an integer, got {type(value).__name__}")
        self._struct.state = int(value) & _U64

    def __copy__(self):
        return Rng(self.state)

    def __deepcopy__(self, memo):
        return Rng(self.state)

    def __getstate__(self):
        return self.state

    def __setstate__(self, state):
        self._struct = _c.RngStruct(int(state) & _U64)
        self._lock = threading.Lock()

    def __eq__(self, other):
        return isinstance(other, Rng) and other.state == self.state

    def __hash__(self):
        return hash(("pcgrad.Rng", self.state))

    def __repr__(self):
        return f"pcgrad.Rng(state={self.state:#018x})"


class Stats:
    """Diagnostics of one call (``stats=True``).

    - ``conflicting_pairs``: unordered pairs i < j with g_i . g_j < 0;
    - ``projections``: projections applied (at most T (T - 1));
    - ``gram``: the (T, T) float64 Gram matrix g_i . g_j of the original
      gradients (zero where a task has no gradient);
    - ``cosine``: the (T, T) float64 cosine matrix derived from it (0 for a
      zero gradient)."""

    __slots__ = ("conflicting_pairs", "projections", "gram", "cosine")

    def __init__(self, conflicting_pairs, projections, gram, cosine):
        self.conflicting_pairs = conflicting_pairs
        self.projections = projections
        self.gram = gram
        self.cosine = cosine

    def __repr__(self):
        return (
            f"pcgrad.Stats(conflicting_pairs={self.conflicting_pairs}, "
            f"projections={self.projections}, T={self.gram.shape[0]})"
        )


def _make_stats(st, matrix):
    diag = np.sqrt(np.maximum(np.diagonal(matrix), 0.0))
    denom = np.outer(diag, diag)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = np.where(denom > 0.0, matrix / np.where(denom > 0.0, denom, 1.0), 0.0)
    return Stats(int(st.conflicting_pairs), int(st.projections), matrix, cosine)


def _addr(a):
    """The address of an array's data; for an empty array, a valid aligned
    dummy address (the C API takes NULL only for optional buffers)."""
    if a.size == 0:
        return _DUMMY_ADDR
    return a.__array_interface__["data"][0]


_DUMMY = np.zeros(8, dtype=np.float64)
_DUMMY_ADDR = _DUMMY.__array_interface__["data"][0]


_from_buffer = ctypes.c_char.from_buffer
_byref = ctypes.byref


def _ptr(a):
    """A pointer argument to the data of array ``a``, fast: through the buffer
    protocol for a writable non-empty array, else through its address."""
    try:
        return _byref(_from_buffer(a))
    except (TypeError, ValueError, BufferError):
        return _VP(_addr(a))


# ---------------------------------------------------------------------------
# argument checks (all before the library is called, naming the argument)


def _grads2d(fn, grads, inplace, f64_ok=False):
    """Returns (array the library reads, the caller's float64 array or None).

    With ``f64_ok`` (the calls that have a ``_f64`` entry point) float64
    input is passed as float64: a C-contiguous float64 array as it is, in
    place, anything else float64 as one float64 copy."""
    a = grads
    if a.__class__ is np.ndarray and a.dtype is _F32 and a.ndim == 2 and a.flags.c_contiguous:
        if inplace and not a.flags.writeable:
            raise TypeError(f"{fn}: grads must be writable (it is projected in place)")
        return a, None
    if inplace:
        if not isinstance(a, np.ndarray):
            raise TypeError(
                f"{fn}: grads must be a writable C-contiguous float32 or float64 numpy array "
                f"(it is projected in place), got {type(a).__name__}"
            )
        if a.dtype != _F32 and a.dtype != _F64:
            raise TypeError(f"{fn}: grads must be float32 or float64, got {a.dtype}")
        if a.ndim != 2:
            raise ValueError(f"{fn}: grads must be 2-D (T, N), got shape {a.shape}")
        if not a.flags.c_contiguous or not a.flags.writeable:
            raise TypeError(f"{fn}: grads must be a writable C-contiguous array (it is projected in place)")
        if a.dtype == _F64:
            if f64_ok:
                return a, None
            return np.ascontiguousarray(a, dtype=_F32), a
        return a, None
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
        if a.dtype.kind in "iu" and a.dtype != _F32:
            a = a.astype(_F64)
    if a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8):
        raise TypeError(f"{fn}: grads must be float32 or float64, got {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{fn}: grads must be 2-D (T, N), got shape {a.shape}")
    if f64_ok and a.dtype.itemsize == 8:
        return np.ascontiguousarray(a, dtype=_F64), None
    f64 = a if a.dtype.itemsize == 8 else None
    return np.ascontiguousarray(a, dtype=_F32), f64


def _segments(fn, segments, dim):
    if segments is None:
        return None, 0, 1
    if isinstance(segments, np.ndarray):
        s = segments
        if s.ndim != 1:
            raise ValueError(f"{fn}: segments must be 1-D, got shape {s.shape}")
        if s.size and s.dtype.kind not in "iu":
            raise TypeError(f"{fn}: segments must hold integers, got {s.dtype}")
        if s.size and s.dtype.kind == "i" and (s < 0).any():
            raise ValueError(f"{fn}: segments must be non-negative, got {s.tolist()}")
    else:
        try:
            items = list(segments)
        except TypeError:
            raise TypeError(f"{fn}: segments must be a sequence of integers, got {type(segments).__name__}") from None
        for x in items:
            if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
                raise TypeError(f"{fn}: segments must hold integers, got {x!r}")
            if x < 0 or x > _U64:
                raise ValueError(f"{fn}: segments must be in [0, 2**64), got {x}")
        s = np.array(items, dtype=np.uint64)
    if s.size == 0 and dim:
        # the C API reads a zero-length segment list as "absent"
        raise ValueError(f"{fn}: segments is empty (give None for one segment)")
    s = np.ascontiguousarray(s, dtype=_SIZE_T)
    return s, s.size, s.size


def _has_grad(fn, has_grad, tasks, nseg):
    if has_grad is None:
        return None
    h = np.asarray(has_grad)
    if h.shape != (tasks, nseg):
        raise ValueError(f"{fn}: has_grad must have shape (T, S) = {(tasks, nseg)}, got {h.shape}")
    if h.dtype != np.bool_:
        if h.dtype.kind not in "iu" or not np.isin(h, (0, 1)).all():
            raise TypeError(f"{fn}: has_grad must be a bool array (or 0/1 integers), got {h.dtype}")
    return np.ascontiguousarray(h, dtype=np.uint8)


def _threads(fn, threads):
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"{fn}: threads must be an integer, got {type(threads).__name__}")
    if threads < 0:
        raise ValueError(f"{fn}: threads must be >= 0 (0 = all cores), got {threads}")
    return int(threads)


def _enum(fn, name, value, table):
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError(f"{fn}: {name} must be one of {sorted(table)}, got {value!r}") from None


_CONFIGS = {}


class _Config:
    """A pcgrad_config plus what it points at (kept alive for the call)."""

    __slots__ = ("struct", "ptr", "table", "rng")


def _config(fn, tasks, mode, order, reduction, rng, threads, check_finite, matrix):
    # Fast path: the same plain arguments as an earlier call (exact types
    # only, so that 1 is not taken for True).
    plain = (rng is None and order.__class__ is str and check_finite.__class__ is bool
             and threads.__class__ is int and mode.__class__ is str and reduction.__class__ is str)
    if plain:
        cfg = _CONFIGS_BY_ARGS.get((mode, order, reduction, check_finite, threads, matrix))
        if cfg is not None:
            return cfg
    cfg = _config_slow(fn, tasks, mode, order, reduction, rng, threads, check_finite, matrix)
    if plain and len(_CONFIGS_BY_ARGS) < 256:
        _CONFIGS_BY_ARGS[(mode, order, reduction, check_finite, threads, matrix)] = cfg
    return cfg


_CONFIGS_BY_ARGS = {}


def _config_slow(fn, tasks, mode, order, reduction, rng, threads, check_finite, matrix):
    m = _enum(fn, "mode", mode, _MODES)
    red = _enum(fn, "reduction", reduction, _REDUCTIONS)
    if check_finite is not True and check_finite is not False:
        raise TypeError(f"{fn}: check_finite must be True or False, got {check_finite!r}")
    th = _threads(fn, threads)
    table = None
    if isinstance(order, str):
        if order == "fixed":
            o = _c.ORDER_FIXED
        elif order == "shuffled":
            o = _c.ORDER_SHUFFLED
        else:
            raise ValueError(f"{fn}: order must be 'fixed', 'shuffled' or a (T, T-1) integer table, got {order!r}")
    else:
        t = np.asarray(order)
        if t.dtype.kind not in "iu":
            raise TypeError(f"{fn}: an order table must hold integers, got {t.dtype}")
        if t.shape != (tasks, max(tasks - 1, 0)):
            raise ValueError(f"{fn}: the order table must have shape (T, T-1) = {(tasks, max(tasks - 1, 0))}, got {t.shape}")
        if t.size and (t.min() < 0 or t.max() > 0xFFFFFFFF):
            raise ValueError(f"{fn}: order table entries must be task indices in [0, T), got {t.tolist()}")
        table = np.ascontiguousarray(t, dtype=np.uint32)
        o = _c.ORDER_EXPLICIT
    r = None
    if o == _c.ORDER_SHUFFLED:
        if rng is None:
            if m == _c.MODE_SEQUENTIAL:
                raise ValueError(f"{fn}: order='shuffled' needs rng= (a pcgrad.Rng, or an int seed)")
        elif isinstance(rng, Rng):
            r = rng
        elif isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
            r = Rng(rng)
        else:
            raise TypeError(f"{fn}: rng must be a pcgrad.Rng or an int seed, got {type(rng).__name__}")
    elif rng is not None and not isinstance(rng, (Rng, int, np.integer)):
        raise TypeError(f"{fn}: rng must be a pcgrad.Rng or an int seed, got {type(rng).__name__}")
    key = (m, o, red, check_finite, matrix, th)
    if table is None and r is None:
        cfg = _CONFIGS.get(key)
        if cfg is not None:
            return cfg
    cfg = _Config()
    s = _c.ConfigStruct(m, o, red, 1 if check_finite else 0, matrix, th)
    if table is not None:
        s.order_table = _addr(table) if table.size else None
        s.order_table_len = table.size
    if r is not None:
        s.rng = ctypes.addressof(r._struct)
    cfg.struct = s
    cfg.ptr = _VP(ctypes.addressof(s))
    cfg.table = table
    cfg.rng = r
    if table is None and r is None and len(_CONFIGS) < 256:
        _CONFIGS[key] = cfg
    return cfg


_tls = threading.local()


def _workspace(length):
    """A per-thread scratch buffer of ``length`` doubles (the library writes
    only scratch there; one call per thread at a time)."""
    cache = _tls.__dict__.get("ws")
    if cache is None:
        cache = _tls.ws = {}
    w = cache.get(length)
    if w is None:
        buf = np.empty(max(length, 1), dtype=_F64)
        w = (buf, _VP(_addr(buf)), _Z(length))
        if len(cache) > 64:
            cache.clear()
        cache[length] = w
    return w


def workspace_len(tasks, variables=None):
    """The doubles of workspace the flat calls (or, with ``variables``, the
    per-variable calls) need for ``tasks`` tasks: ``pcgrad_workspace_len``
    and ``pcgrad_workspace_len_vars``. The Python functions allocate it
    themselves; this is for sizing and for C users."""
    if variables is None:
        status, n = _c.size_query("pcgrad_workspace_len", tasks)
    else:
        status, n = _c.size_query("pcgrad_workspace_len_vars", tasks, variables)
    _check(status, "pcgrad.workspace_len")
    return n


def _ws_len_flat(tasks, fn):
    status, n = _c.size_query("pcgrad_workspace_len", tasks)
    _check(status, fn)
    return n


_WS_FLAT = {}
_PLANS = {}
_Z0 = _Z(0)  # never mutated


def _out1d(fn, out, dim, name="out", elem=_F32):
    """Returns (buffer of ``elem`` the library writes, the caller's array to
    copy it into afterwards or None)."""
    if out is None:
        return np.empty(dim, dtype=elem), None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy array, got {type(out).__name__}")
    if out.dtype != _F32 and out.dtype != _F64:
        raise TypeError(f"{fn}: {name} must be float32 or float64, got {out.dtype}")
    if out.shape != (dim,):
        raise ValueError(f"{fn}: {name} must have shape ({dim},), got {out.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise TypeError(f"{fn}: {name} must be a writable C-contiguous array")
    if out.dtype != elem:
        return np.empty(dim, dtype=elem), out
    return out, None


def _flat(fn, grads, project, want_merged, mode, order, reduction, segments, has_grad, rng,
          threads, check_finite, out, stats):
    g, g64 = _grads2d(fn, grads, project, f64_ok=True)
    is64 = g.dtype == _F64
    tasks, dim = g.shape
    seg, seg_len, nseg = _segments(fn, segments, dim)
    hg = _has_grad(fn, has_grad, tasks, nseg)
    cfg = _config(fn, tasks, mode, order, reduction, rng, threads, check_finite,
                  _c.MATRIX_GRAM)
    if want_merged:
        merged, m64 = _out1d(fn, out, dim, elem=_F64 if is64 else _F32)
        if m64 is None and out is None and g64 is not None:
            m64 = np.empty(dim, dtype=_F64)
        mptr = _ptr(merged)
        mlen = dim
    else:
        if out is not None:
            raise ValueError(f"{fn}: out is given but merged=False")
        merged = m64 = mptr = None
        mlen = 0
    wl = _WS_FLAT.get(tasks)
    if wl is None:
        wl = _WS_FLAT[tasks] = _ws_len_flat(tasks, fn) if tasks else 0
    ws, wsp, wsl = _workspace(wl)
    if stats:
        st = _c.StatsStruct()
        matrix = np.zeros((tasks, tasks), dtype=_F64)
        stp, mxp, mxl = _byref(st), _ptr(matrix), _Z(matrix.size)
    else:
        st = matrix = stp = mxp = None
        mxl = _Z0
    if is64:
        f = _project_flat64 if project else _merge_flat64
    else:
        f = _project_flat if project else _merge_flat
    plan = _PLANS.get((tasks, dim))
    if plan is None:
        plan = (_Z(tasks * dim), _Z(tasks), _Z(dim))
        if len(_PLANS) > 1024:
            _PLANS.clear()
        _PLANS[(tasks, dim)] = plan
    zlen, zt, zn = plan
    args = (
        cfg.ptr,
        _ptr(g), zlen,
        None if seg is None else _ptr(seg), _Z(seg_len) if seg_len else _Z0,
        None if hg is None else _ptr(hg), _Z(hg.size) if hg is not None else _Z0,
        zt, zn,
        mptr, zn if mlen else _Z0,
        stp, mxp, mxl,
        wsp, wsl,
    )
    r = cfg.rng
    if r is None:
        status = f(*args)
    else:
        with r._lock:
            status = f(*args)
    if status:
        raise Error(status, fn)
    if project and g64 is not None:
        g64[...] = g
    if merged is not None and m64 is not None:
        m64[...] = merged
        merged = m64
    if stats:
        return merged, _make_stats(st, matrix)
    return merged


def merge(grads, *, mode="sequential", order="fixed", reduction="mean", segments=None,
          has_grad=None, rng=None, threads=0, check_finite=False, out=None, stats=False):
    """Projects conflicting task gradients (PCGrad) and returns the merged
    gradient, N values; ``grads`` is only read.

    - ``grads``: a (T, N) array, row t the gradient of task t. A C-contiguous
      float32 or float64 numpy array is used in place (zero copy; the library
      computes in that type with float64 accumulation, through
      ``pcgrad_merge_flat`` or ``pcgrad_merge_flat_f64``); a non-contiguous
      one or any other array-like (lists, objects with ``__array__``) is
      converted once to a contiguous copy, float64 for float64 (or integer)
      input, float32 otherwise. The result has the type computed in.
    - ``mode``: ``"sequential"`` (the paper's Algorithm 1: each dot product with
      the already projected gradient) or ``"simultaneous"`` (every dot product
      with the original gradient: the seed's ``PCGrad``/``PPCGrad``).
    - ``order``: ``"fixed"`` (ascending task index), ``"shuffled"`` (a fresh
      permutation per task per call drawn from ``rng``) or a (T, T-1) integer
      table (row i: the tasks j != i in visiting order). Sequential mode only.
    - ``reduction``: ``"mean"`` (1/T on coordinates every task has, sum on
      task-specific ones: the seed's rule) or ``"sum"``.
    - ``segments``: S variable lengths summing to N (default: one segment);
      ``has_grad``: a (T, S) bool array, False where task t has no gradient
      for segment s (its values there are ignored, taken as zero).
    - ``rng``: a :class:`pcgrad.Rng`, advanced by the call (required for
      ``order="shuffled"``; an int seed makes a fresh one).
    - ``threads``: worker threads of the library, 0 = all cores (results are
      bitwise identical for every value). ``check_finite``: refuse NaN/Inf
      with :class:`pcgrad.Error`.
    - ``out``: an optional float32 or float64 (N,) array for the result (zero
      copy when its type is the one computed in). ``stats=True`` returns ``(merged, pcgrad.Stats)``.

    Raises ``TypeError``/``ValueError`` naming the argument before the library
    is called, :class:`pcgrad.Error` for a library status; a failed call
    changes no caller array. The GIL is released during the library call."""
    # The common case in one call of the extension module: grads exactly a
    # C-contiguous float32 or float64 (T, N) numpy array and plain options (see
    # python/native/src/lib.rs). Anything else, or a library status, returns
    # None, and the general path below checks every argument (naming it) and
    # raises.
    res = _fast_merge(grads, mode, order, reduction, segments, has_grad, rng, threads,
                      check_finite, out, stats)
    if res is not None:
        return res
    return _flat("pcgrad.merge", grads, False, True, mode, order, reduction, segments, has_grad,
                 rng, threads, check_finite, out, stats)


_ndarray = np.ndarray
_native = _c._native


def _numpy_api():
    """NumPy's C-API capsule (numpy._core in NumPy 2, numpy.core before)."""
    try:
        from numpy._core import _multiarray_umath as m
    except ImportError:
        from numpy.core import _multiarray_umath as m
    return m._ARRAY_API


# The extension module's entry points, unless PCGRAD_LIBRARY names another
# build (then every call goes through that one) or its self-check on NumPy's
# array layout fails (then every call takes the general path).
if _native is not None and _c.LIBRARY_PATH == _native.__file__ and _native._init(
        np.ndarray, _F32, _F64, _numpy_api()):
    _fast_merge = _native.merge_flat
    _fast_project = _native.project_flat
else:
    def _fast_merge(*args):
        return None

    _fast_project = _fast_merge


def project(grads, *, mode="sequential", order="fixed", reduction="mean", segments=None,
            has_grad=None, rng=None, threads=0, check_finite=False, out=None, stats=False,
            merged=True):
    """Projects ``grads`` **in place** (row t becomes task t's projected
    gradient g'_t on every coordinate) and returns the merged gradient, or
    ``None`` with ``merged=False``.

    ``grads`` must be a writable C-contiguous float32 or float64 numpy array
    (else ``TypeError``); both are projected in place by the library
    (float64 through ``pcgrad_project_flat_f64``, no copy). The other
    arguments are those of :func:`pcgrad.merge`; with ``stats=True`` the
    result is ``(merged, pcgrad.Stats)``."""
    # The common case, as in merge (the extension module also checks that
    # grads is writable).
    res = _fast_project(grads, mode, order, reduction, segments, has_grad, rng, threads,
                        check_finite, out, stats, merged)
    if res is not None:
        return None if res is True else res
    return _flat("pcgrad.project", grads, True, merged, mode, order, reduction, segments,
                 has_grad, rng, threads, check_finite, out, stats)


# ---------------------------------------------------------------------------
# per variable


def _vars_table(fn, grads, segments, inplace, elem=None):
    """Returns (tasks, S, lengths, shapes, pointer table, keepalive, writebacks, elem).

    The element type of the call, ``elem`` (when not given: float64 when any
    present gradient is float64, else float32); arrays of that type that are
    C-contiguous are used in place (zero copy), others are converted once
    (and, in place, copied back after the call)."""
    if isinstance(grads, np.ndarray) or not hasattr(grads, "__len__"):
        raise TypeError(f"{fn}: grads must be a sequence of T sequences of S arrays (or None)")
    rows = [list(r) if not isinstance(r, np.ndarray) else None for r in grads]
    if any(r is None for r in rows):
        raise TypeError(f"{fn}: grads[t] must be a sequence of S arrays (or None), not an array")
    tasks = len(rows)
    nvars = len(rows[0]) if rows else (0 if segments is None else len(segments))
    for t, r in enumerate(rows):
        if len(r) != nvars:
            raise ValueError(f"{fn}: grads[{t}] has {len(r)} entries, grads[0] has {nvars}")
    lengths = [None] * nvars
    shapes = [None] * nvars
    if segments is not None:
        seg, _, nseg = _segments(fn, segments, None)
        if nseg != nvars:
            raise ValueError(f"{fn}: segments has {nseg} entries for {nvars} variables")
        lengths = [int(x) for x in seg]
        shapes = [(n,) for n in lengths]
    # First pass: check every cell, find the element type of the call.
    arrays = []
    any_f64 = False
    for t, r in enumerate(rows):
        for s, a in enumerate(r):
            if a is None:
                arrays.append(None)
                continue
            if inplace:
                if not isinstance(a, np.ndarray) or a.dtype not in (_F32, _F64) \
                        or not a.flags.c_contiguous or not a.flags.writeable:
                    raise TypeError(
                        f"{fn}: grads[{t}][{s}] must be a writable C-contiguous float32/float64 numpy array "
                        "(it is projected in place)"
                    )
            elif not isinstance(a, np.ndarray):
                a = np.asarray(a)
                if a.dtype.kind in "iu":
                    a = a.astype(_F64)
            if a.dtype != _F32 and a.dtype != _F64:
                raise TypeError(f"{fn}: grads[{t}][{s}] must be float32 or float64, got {a.dtype}")
            any_f64 = any_f64 or a.dtype == _F64
            if lengths[s] is None:
                lengths[s] = a.size
                shapes[s] = a.shape
            elif a.size != lengths[s]:
                raise ValueError(
                    f"{fn}: grads[{t}][{s}] has {a.size} values, variable {s} has {lengths[s]}"
                )
            arrays.append(a)
    for s, n in enumerate(lengths):
        if n is None:
            raise ValueError(
                f"{fn}: no task has a gradient for variable {s} and segments= is not given (its length is unknown)"
            )
    if elem is None:
        elem = _F64 if any_f64 else _F32
    keep = []
    writeback = []
    ptrs = (_VP * max(tasks * nvars, 1))()
    for c, a in enumerate(arrays):
        if a is None:
            ptrs[c] = None
            continue
        buf = np.ascontiguousarray(a, dtype=elem).reshape(-1)
        if inplace and a.dtype != elem:
            writeback.append((a.reshape(-1), buf))
        keep.append(buf)
        ptrs[c] = _addr(buf)
    return tasks, nvars, lengths, shapes, ptrs, keep, writeback, elem


def _vars(fn, grads, project, want_merged, mode, order, reduction, segments, rng, threads,
          check_finite, out, stats):
    tasks, nvars, lengths, shapes, ptrs, keep, writeback, elem = _vars_table(
        fn, grads, segments, project)
    cfg = _config(fn, tasks, mode, order, reduction, rng, threads, check_finite, _c.MATRIX_GRAM)
    seg = np.asarray(lengths, dtype=_SIZE_T)
    outs = None
    final = None
    mtab = None
    if want_merged:
        if out is None:
            final = [np.empty(shapes[s], dtype=elem) for s in range(nvars)]
        else:
            final = list(out)
            if len(final) != nvars:
                raise ValueError(f"{fn}: out has {len(final)} arrays for {nvars} variables")
            for s, o in enumerate(final):
                if not isinstance(o, np.ndarray) or o.dtype not in (_F32, _F64) \
                        or not o.flags.c_contiguous or not o.flags.writeable:
                    raise TypeError(f"{fn}: out[{s}] must be a writable C-contiguous float32/float64 array")
                if o.size != lengths[s]:
                    raise ValueError(f"{fn}: out[{s}] has {o.size} values, variable {s} has {lengths[s]}")
        outs = [o.reshape(-1) if o.dtype == elem else np.empty(lengths[s], dtype=elem)
                for s, o in enumerate(final)]
        mtab = (_VP * max(nvars, 1))(*[_addr(o) for o in outs])
    status, wl = _c.size_query("pcgrad_workspace_len_vars", tasks, nvars)
    _check(status, fn)
    ws, wsp, wsl = _workspace(wl)
    if stats:
        st = _c.StatsStruct()
        matrix = np.zeros((tasks, tasks), dtype=_F64)
        stp, mxp, mxl = ctypes.addressof(st), _addr(matrix), matrix.size
    else:
        st = matrix = stp = mxp = None
        mxl = 0
    if elem == _F64:
        f = _c.lib.pcgrad_project_vars_f64 if project else _c.lib.pcgrad_merge_vars_f64
    else:
        f = _c.lib.pcgrad_project_vars if project else _c.lib.pcgrad_merge_vars
    args = (
        cfg.ptr.value, ctypes.addressof(ptrs), tasks * nvars, _addr(seg), nvars,
        tasks, ctypes.addressof(mtab) if mtab is not None else None, nvars if want_merged else 0,
        stp, mxp, mxl, wsp.value, wsl.value,
    )
    r = cfg.rng
    if r is None:
        status = f(*args)
    else:
        with r._lock:
            status = f(*args)
    _check(status, fn)
    for dst, src in writeback:
        dst[...] = src
    if final is not None:
        for o, b in zip(final, outs):
            if o.dtype != elem:
                o.reshape(-1)[...] = b
    if stats:
        return final, _make_stats(st, matrix)
    return final


def merge_vars(grads, *, mode="sequential", order="fixed", reduction="mean", segments=None,
               rng=None, threads=0, check_finite=False, out=None, stats=False):
    """PCGrad over per-variable gradients, with no packing copy: ``grads[t][s]``
    is task t's gradient for variable s (an array of any shape, the same size
    for every task) or ``None`` when the task has none for it (a task-specific
    head). Returns one merged array per variable, shaped like its gradients
    (float32, or float64 when any input is float64).

    The call computes in float64 (``pcgrad_merge_vars_f64``) when any
    present gradient is float64, else in float32 (``pcgrad_merge_vars``);
    C-contiguous arrays of that type are read in place, others are converted
    once.
    ``segments`` gives the variable sizes (needed only when no task has a
    gradient for some variable); ``out`` an optional list of S writable
    C-contiguous float32/float64 arrays to write into. The other arguments
    are those of :func:`pcgrad.merge`."""
    return _vars("pcgrad.merge_vars", grads, False, True, mode, order, reduction, segments, rng,
                 threads, check_finite, out, stats)


def project_vars(grads, *, mode="sequential", order="fixed", reduction="mean", segments=None,
                 rng=None, threads=0, check_finite=False, out=None, stats=False, merged=True):
    """Projects per-variable gradients **in place** (every present
    ``grads[t][s]``, a writable C-contiguous float32/float64 array, becomes
    task t's projected gradient on variable s) and returns the merged
    gradients as :func:`merge_vars` does (``None`` with ``merged=False``)."""
    return _vars("pcgrad.project_vars", grads, True, merged, mode, order, reduction, segments,
                 rng, threads, check_finite, out, stats)


def pack(grads, *, segments=None):
    """Packs per-variable gradients into one flat buffer, as the seed's
    ``pack_grad``: ``grads[t][s]`` is an array or ``None``. Returns
    ``(flat, shapes, has_grad)``: ``flat`` the (T, N) float32 array (zeros where
    a gradient is ``None``), ``shapes`` the variables' shapes (for
    :func:`unflatten`) and ``has_grad`` the (T, S) bool mask, ready for
    :func:`merge` with ``segments=[prod(shape) ...]``."""
    fn = "pcgrad.pack"
    # pcgrad_pack reads float32 buffers.
    tasks, nvars, lengths, shapes, ptrs, keep, _, _ = _vars_table(fn, grads, segments, False, _F32)
    seg = np.asarray(lengths, dtype=_SIZE_T)
    dim = int(sum(lengths))
    flat = np.empty((tasks, dim), dtype=_F32)
    hg = np.empty((tasks, nvars), dtype=np.uint8)
    status = _c.lib.pcgrad_pack(
        ctypes.addressof(ptrs), tasks * nvars, _addr(seg), nvars, tasks,
        _addr(flat), flat.size, _addr(hg), hg.size,
    )
    _check(status, fn)
    return flat, [tuple(s) for s in shapes], hg.astype(bool)


def unflatten(flat, shapes):
    """Splits a flat gradient (N values) into arrays of the given shapes, as
    the seed's ``un_flatten_grad``; float32 in, float32 out (float64 input is
    converted once, and the pieces are float64)."""
    fn = "pcgrad.unflatten"
    f = np.asarray(flat)
    if f.dtype != _F32 and f.dtype != _F64:
        raise TypeError(f"{fn}: flat must be float32 or float64, got {f.dtype}")
    if f.ndim != 1:
        raise ValueError(f"{fn}: flat must be 1-D, got shape {f.shape}")
    shp = [tuple(int(d) for d in (s if hasattr(s, "__len__") else (s,))) for s in shapes]
    lengths = [int(np.prod(s, dtype=np.int64)) for s in shp]
    if any(n < 0 for n in lengths):
        raise ValueError(f"{fn}: shapes must have non-negative dimensions, got {shp}")
    src = np.ascontiguousarray(f, dtype=_F32)
    outs = [np.empty(n, dtype=_F32) for n in lengths]
    seg = np.asarray(lengths, dtype=_SIZE_T)
    tab = (_VP * max(len(outs), 1))(*[_addr(o) for o in outs])
    status = _c.lib.pcgrad_unflatten(
        _addr(src), src.size, _addr(seg), len(lengths),
        ctypes.addressof(tab), len(outs),
    )
    _check(status, fn)
    dt = f.dtype
    return [o.reshape(s).astype(dt, copy=False) for o, s in zip(outs, shp)]


# ---------------------------------------------------------------------------
# the three phases


def _range(fn, lo, hi, dim):
    for name, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{fn}: {name} must be an integer, got {type(v).__name__}")
        if v < 0:
            raise ValueError(f"{fn}: {name} must be >= 0, got {v}")
    return int(lo), int(hi)


def gram(grads, lo=0, hi=None, *, segments=None, has_grad=None, out=None):
    """Phase 1: the Gram contribution g_i[lo:hi] . g_j[lo:hi] of the columns
    ``lo..hi`` (default: all) of a (T, N) gradient array, as a (T, T) float64
    array. With ``out`` (a (T, T) float64 array) the contribution is **added**
    into it, so shards accumulate; the result of a sum of shards equals the
    one-call Gram up to the order of addition."""
    fn = "pcgrad.gram"
    g, _ = _grads2d(fn, grads, False, f64_ok=True)
    tasks, dim = g.shape
    lo, hi = _range(fn, lo, dim if hi is None else hi, dim)
    seg, seg_len, nseg = _segments(fn, segments, dim)
    hg = _has_grad(fn, has_grad, tasks, nseg)
    if out is not None:
        if not isinstance(out, np.ndarray) or out.dtype != _F64 or out.shape != (tasks, tasks) \
                or not out.flags.c_contiguous or not out.flags.writeable:
            raise TypeError(f"{fn}: out must be a writable C-contiguous (T, T) float64 array")
    status, glen = _c.size_query("pcgrad_gram_len", tasks)
    _check(status, fn)
    buf = np.zeros(max(glen, 1), dtype=_F64)
    if out is not None:
        buf[: tasks * tasks] = out.reshape(-1)
    f = _c.lib.pcgrad_gram_flat_f64 if g.dtype == _F64 else _c.lib.pcgrad_gram_flat
    status = f(
        _addr(g), g.size, None if seg is None else _addr(seg), seg_len,
        None if hg is None else _addr(hg), 0 if hg is None else hg.size,
        tasks, dim, lo, hi, _addr(buf), glen,
    )
    _check(status, fn)
    res = buf[: tasks * tasks].reshape(tasks, tasks)
    if out is not None:
        out[...] = res
        return out
    return res.copy()


def gram_combine(partial, gram):
    """Adds a partial (T, T) Gram matrix into ``gram`` in place
    (``pcgrad_gram_combine``): add partials in a fixed order for bitwise
    reproducible sums. Returns ``gram``."""
    fn = "pcgrad.gram_combine"
    p = np.ascontiguousarray(partial, dtype=_F64)
    if not isinstance(gram, np.ndarray) or gram.dtype != _F64 or gram.ndim != 2 \
            or gram.shape[0] != gram.shape[1] or not gram.flags.c_contiguous or not gram.flags.writeable:
        raise TypeError(f"{fn}: gram must be a writable C-contiguous (T, T) float64 array")
    if p.shape != gram.shape:
        raise ValueError(f"{fn}: partial has shape {p.shape}, gram {gram.shape}")
    tasks = gram.shape[0]
    status = _c.lib.pcgrad_gram_combine(_addr(p), p.size, tasks, _addr(gram), gram.size)
    _check(status, fn)
    return gram


def coefficients(gram, *, mode="sequential", order="fixed", rng=None, check_finite=False,
                 stats=False):
    """Phase 2: the PCGrad coefficients from a full symmetric (T, T) Gram
    matrix (the sum of every shard's :func:`gram`), as a float64 array of
    ``T*T + 2T`` values to pass to :func:`apply_merged` or
    :func:`apply_projected` (its first T*T values are the matrix A of
    g'_i = sum_j A_ij g_j). A shuffled order advances ``rng``: give every
    shard the same state. ``stats=True`` returns ``(coef, pcgrad.Stats)``."""
    fn = "pcgrad.coefficients"
    if not isinstance(gram, np.ndarray):
        gram = np.asarray(gram)
    if gram.dtype.kind not in "fiu":
        raise TypeError(f"{fn}: gram must be a float64 (T, T) array, got {gram.dtype}")
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"{fn}: gram must be square (T, T), got shape {gram.shape}")
    g = np.ascontiguousarray(gram, dtype=_F64)
    tasks = g.shape[0]
    cfg = _config(fn, tasks, mode, order, "mean", rng, 0, check_finite, _c.MATRIX_GRAM)
    status, clen = _c.size_query("pcgrad_coefficients_len", tasks)
    _check(status, fn)
    coef = np.zeros(clen, dtype=_F64)
    st = _c.StatsStruct()
    args = (cfg.ptr.value, _addr(g), g.size, tasks, ctypes.addressof(st), _addr(coef), coef.size)
    r = cfg.rng
    if r is None:
        status = _c.lib.pcgrad_coefficients(*args)
    else:
        with r._lock:
            status = _c.lib.pcgrad_coefficients(*args)
    _check(status, fn)
    if stats:
        return coef, _make_stats(st, g.copy())
    return coef


def _apply(fn, grads, coef, lo, hi, reduction, segments, has_grad, project, want_merged, out):
    g, _ = _grads2d(fn, grads, project, f64_ok=True)
    is64 = g.dtype == _F64
    tasks, dim = g.shape
    lo, hi = _range(fn, lo, dim if hi is None else hi, dim)
    seg, seg_len, nseg = _segments(fn, segments, dim)
    hg = _has_grad(fn, has_grad, tasks, nseg)
    red = _enum(fn, "reduction", reduction, _REDUCTIONS)
    c = np.asarray(coef)
    if c.dtype != _F64 or c.ndim != 1:
        raise TypeError(f"{fn}: coef must be the 1-D float64 array of pcgrad.coefficients")
    c = np.ascontiguousarray(c)
    width = max(hi - lo, 0)
    if want_merged:
        merged, m64 = _out1d(fn, out, width, elem=_F64 if is64 else _F32)
    else:
        merged = m64 = None
    status, tl = _c.size_query("pcgrad_tile_len", tasks)
    _check(status, fn)
    tile = np.empty(max(tl, 1), dtype=_F64)
    if is64:
        f = _c.lib.pcgrad_apply_projected_flat_f64 if project else _c.lib.pcgrad_apply_merged_flat_f64
    else:
        f = _c.lib.pcgrad_apply_projected_flat if project else _c.lib.pcgrad_apply_merged_flat
    status = f(
        _addr(g), g.size, None if seg is None else _addr(seg), seg_len,
        None if hg is None else _addr(hg), 0 if hg is None else hg.size,
        _addr(c), c.size, tasks, dim, red, lo, hi,
        None if merged is None else _addr(merged), 0 if merged is None else merged.size,
        _addr(tile), tl,
    )
    _check(status, fn)
    if merged is not None and m64 is not None:
        m64[...] = merged
        merged = m64
    return merged


def apply_merged(grads, coef, lo=0, hi=None, *, reduction="mean", segments=None, has_grad=None,
                 out=None):
    """Phase 3: the merged gradient over columns ``lo..hi`` (``hi - lo``
    values) from the coefficients of :func:`coefficients`; ``grads`` is only
    read. ``segments``/``has_grad`` describe the whole (T, N) array, as in
    :func:`merge`."""
    return _apply("pcgrad.apply_merged", grads, coef, lo, hi, reduction, segments, has_grad,
                  False, True, out)


def apply_projected(grads, coef, lo=0, hi=None, *, reduction="mean", segments=None,
                    has_grad=None, merged=True, out=None):
    """Phase 3 in place: writes the projected gradients over columns
    ``lo..hi`` of ``grads`` (a writable C-contiguous float32/float64 array)
    and returns the merged gradient there (``None`` with ``merged=False``)."""
    return _apply("pcgrad.apply_projected", grads, coef, lo, hi, reduction, segments, has_grad,
                  True, merged, out)


# ---------------------------------------------------------------------------
# The Gram-based methods (pcgrad_method_weights, pcgrad_aggregate_flat).
# Kept in one block at the end of the file.

__all__ += ["MethodState", "method_weights", "aggregate"]

# Python keyword -> (pcgrad_method field, kind) for the float parameters.
_METHOD_FLOATS = ("tol", "reg", "c", "rank_tol", "eps", "beta", "max_norm")
_METHOD_INTS = ("max_iters", "update_every")


class MethodState:
    """The caller-owned state of the stateful methods between training
    steps, for ``tasks`` tasks: GradVac's (T, T) EMA targets, Nash-MTL's last
    solution and call counter, and the PRNG of Random and GradVac
    (``rng``: a :class:`Rng` or an int seed). A call advances it only when
    it succeeds."""

    def __init__(self, tasks, rng=0):
        if isinstance(tasks, bool) or not isinstance(tasks, (int, np.integer)) or tasks < 1:
            raise ValueError(f"pcgrad.MethodState: tasks must be a positive integer, got {tasks!r}")
        self.tasks = int(tasks)
        self.targets = np.zeros((self.tasks, self.tasks), dtype=_F64)
        self.alpha = np.zeros(self.tasks, dtype=_F64)
        self._step = np.zeros(1, dtype=np.uint64)
        self.rng = rng if isinstance(rng, Rng) else Rng(rng)

    @property
    def step(self):
        """Nash-MTL's call counter."""
        return int(self._step[0])


def _method(fn, method, tasks, state, params):
    """The ``pcgrad_method`` struct of a call (and the objects it points into)."""
    if not isinstance(method, str) or method not in _c.METHODS:
        raise ValueError(f"{fn}: method must be one of {sorted(_c.METHODS)}, got {method!r}")
    m = _c.MethodStruct()
    m.kind = _c.METHODS[method]
    for name, value in params.items():
        if name in _METHOD_FLOATS:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise TypeError(f"{fn}: {name} must be a number, got {type(value).__name__}")
            setattr(m, name, float(value))
        elif name in _METHOD_INTS:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2**32:
                raise ValueError(f"{fn}: {name} must be an integer in [0, 2**32), got {value!r}")
            setattr(m, name, int(value))
        elif name == "scale":
            m.scale = _enum(fn, "scale", value, _c.ALIGNED_SCALES)
        else:
            raise TypeError(f"{fn}: unknown method parameter {name!r}")
    if state is None:
        state = MethodState(tasks)
    elif not isinstance(state, MethodState):
        raise TypeError(f"{fn}: state must be a pcgrad.MethodState, got {type(state).__name__}")
    elif state.tasks != tasks:
        raise ValueError(f"{fn}: state is for {state.tasks} tasks, the call has {tasks}")
    m.rng = ctypes.addressof(state.rng._struct)
    m.targets = _addr(state.targets)
    m.targets_len = state.targets.size
    m.nash_alpha = _addr(state.alpha)
    m.nash_alpha_len = state.alpha.size
    m.nash_step = _addr(state._step)
    return m, state


def method_weights(gram, method="upgrad", state=None, **params):
    """Phase 2 of a method (``pcgrad_method_weights``): the T weights w of
    its update ``w @ J`` from the (T, T) Gram matrix ``gram`` = J J^T
    (float64). ``method`` is one of ``"pcgrad"``, ``"ppcgrad"``, ``"mgda"``,
    ``"upgrad"``, ``"dualproj"``, ``"cagrad"``, ``"imtl_g"``,
    ``"aligned_mtl"``, ``"nash_mtl"``, ``"gradvac"``, ``"mean"``, ``"sum"``,
    ``"random"``; ``params`` are the fields of ``pcgrad_method`` (``tol``,
    ``reg``, ``c``, ``rank_tol``, ``eps``, ``beta``, ``max_norm``,
    ``max_iters``, ``update_every``, ``scale``), zero or absent meaning the
    paper's default. ``state`` is a :class:`MethodState` (a fresh one when
    absent). A non-PSD Gram raises :class:`Error` (``PCGRAD_ERROR_NOT_PSD``)."""
    fn = "pcgrad.method_weights"
    g = np.asarray(gram)
    if g.dtype.kind not in "fiu":
        raise TypeError(f"{fn}: gram must be a float array, got {g.dtype}")
    if g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] == 0:
        raise ValueError(f"{fn}: gram must have shape (T, T) with T >= 1, got {g.shape}")
    g = np.ascontiguousarray(g, dtype=_F64)
    t = g.shape[0]
    m, state = _method(fn, method, t, state, params)
    status, need = _c.size_query("pcgrad_method_workspace_len", ctypes.addressof(m), t)
    _check(status, fn)
    ws, wsp, wsl = _workspace(need)
    w = np.empty(t, dtype=_F64)
    status = _c.lib.pcgrad_method_weights(ctypes.addressof(m), _addr(g), g.size, t, _addr(w), t, wsp, wsl)
    _check(status, fn)
    return w


def aggregate(grads, method="upgrad", state=None, **params):
    """One call of a method (``pcgrad_aggregate_flat``): the Gram pass, the
    method's weights and the apply pass over a (T, N) gradient array
    (float32, or float64 converted), returning the merged gradient
    ``w @ J`` (float32, N values). Arguments as :func:`method_weights`.
    For ``"pcgrad"`` / ``"ppcgrad"`` the result is :func:`merge`'s with the
    default config (mean reduction)."""
    fn = "pcgrad.aggregate"
    a, _ = _grads2d(fn, grads, False)
    t, n = a.shape
    if t == 0:
        raise ValueError(f"{fn}: grads must have at least one task (row)")
    m, state = _method(fn, method, t, state, params)
    status, need = _c.size_query("pcgrad_aggregate_workspace_len", ctypes.addressof(m), t)
    _check(status, fn)
    ws, wsp, wsl = _workspace(need)
    out = np.empty(n, dtype=_F32)
    status = _c.lib.pcgrad_aggregate_flat(
        ctypes.addressof(m), _addr(a), a.size, None, 0, None, 0, t, n, _addr(out), n, wsp, wsl
    )
    _check(status, fn)
    return out
