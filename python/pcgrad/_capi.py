"""The C ABI of ``libpcgrad`` (``include/pcgrad.h``) through :mod:`ctypes`.

The shared library is the one bundled in the wheel (the extension module
``pcgrad._native``, which is libpcgrad plus two fast entry points);
``PCGRAD_LIBRARY`` in the environment points at another build of the same
library (for example ``target/release/libpcgrad.so``). Every function is
declared with its exact C prototype. ``ctypes.CDLL`` releases the GIL around
each foreign call, so other Python threads run while the library works.

Private module: the public API is in :mod:`pcgrad`.
"""

import ctypes
import os

__all__ = []

# Status codes of enum pcgrad_status (stable, never renumbered).
OK = 0
ERROR_NULL_POINTER = -1
ERROR_NO_TASKS = -2
ERROR_LENGTH_MISMATCH = -3
ERROR_OVERFLOW = -4
ERROR_WORKSPACE_TOO_SMALL = -5
ERROR_NON_FINITE = -6
ERROR_OVERLAP = -7
ERROR_INVALID_ENUM = -8
ERROR_INVALID_ORDER = -9
ERROR_INVALID_RANGE = -10
ERROR_MISALIGNED = -11
ERROR_INVALID_PARAMETER = -12
ERROR_NOT_PSD = -13
ERROR_UNSUPPORTED = -14

MODE_SEQUENTIAL = 0
MODE_SIMULTANEOUS = 1
ORDER_FIXED = 0
ORDER_SHUFFLED = 1
ORDER_EXPLICIT = 2
REDUCTION_MEAN = 0
REDUCTION_SUM = 1
MATRIX_GRAM = 0
MATRIX_COSINE = 1


class RngStruct(ctypes.Structure):
    """``struct pcgrad_rng``."""

    _fields_ = [("state", ctypes.c_uint64)]


class ConfigStruct(ctypes.Structure):
    """``struct pcgrad_config``."""

    _fields_ = [
        ("mode", ctypes.c_uint32),
        ("order", ctypes.c_uint32),
        ("reduction", ctypes.c_uint32),
        ("check_finite", ctypes.c_uint32),
        ("matrix", ctypes.c_uint32),
        ("threads", ctypes.c_size_t),
        ("order_table", ctypes.c_void_p),
        ("order_table_len", ctypes.c_size_t),
        ("rng", ctypes.c_void_p),
    ]


class StatsStruct(ctypes.Structure):
    """``struct pcgrad_stats``."""

    _fields_ = [("conflicting_pairs", ctypes.c_size_t), ("projections", ctypes.c_size_t)]


# pcgrad_method.kind (PCGRAD_METHOD_*, never renumbered) by Python name.
METHODS = {
    "pcgrad": 0,
    "ppcgrad": 1,
    "mgda": 2,
    "upgrad": 3,
    "dualproj": 4,
    "cagrad": 5,
    "imtl_g": 6,
    "aligned_mtl": 7,
    "nash_mtl": 8,
    "gradvac": 9,
    "mean": 10,
    "sum": 11,
    "random": 12,
}
ALIGNED_SCALES = {"min": 0, "median": 1, "mean": 2}


class MethodStruct(ctypes.Structure):
    """``struct pcgrad_method``."""

    _fields_ = [
        ("kind", ctypes.c_uint32),
        ("max_iters", ctypes.c_uint32),
        ("update_every", ctypes.c_uint32),
        ("scale", ctypes.c_uint32),
        ("tol", ctypes.c_double),
        ("reg", ctypes.c_double),
        ("c", ctypes.c_double),
        ("rank_tol", ctypes.c_double),
        ("eps", ctypes.c_double),
        ("beta", ctypes.c_double),
        ("max_norm", ctypes.c_double),
        ("config", ctypes.c_void_p),
        ("rng", ctypes.c_void_p),
        ("targets", ctypes.c_void_p),
        ("targets_len", ctypes.c_size_t),
        ("nash_alpha", ctypes.c_void_p),
        ("nash_alpha_len", ctypes.c_size_t),
        ("nash_step", ctypes.c_void_p),
    ]


def _find_library():
    path = os.environ.get("PCGRAD_LIBRARY")
    if path:
        return path
    if _native is None:
        raise ImportError(
            "pcgrad: the bundled library pcgrad._native is missing"
            + " (build the package with `pip install ./python` or `maturin build`)"
        )
    return _native.__file__


try:
    # The bundled library: libpcgrad built as the extension module
    # pcgrad._native (see python/native), loaded both as a module (its fast
    # entry points) and, below, through ctypes (every C function).
    from . import _native
except ImportError:  # only with PCGRAD_LIBRARY, else _find_library says so
    _native = None

LIBRARY_PATH = _find_library()
lib = ctypes.CDLL(LIBRARY_PATH)

_p = ctypes.c_void_p
_z = ctypes.c_size_t
_u32 = ctypes.c_uint32

# name: argument types (pointers as void*, passed as integer addresses).
_PROTOTYPES = {
    "pcgrad_workspace_len": [_z, _p],
    "pcgrad_workspace_len_vars": [_z, _z, _p],
    "pcgrad_gram_len": [_z, _p],
    "pcgrad_coefficients_len": [_z, _p],
    "pcgrad_tile_len": [_z, _p],
    "pcgrad_config_default": [_p],
    "pcgrad_merge_flat": [_p, _p, _z, _p, _z, _p, _z, _z, _z, _p, _z, _p, _p, _z, _p, _z],
    "pcgrad_project_flat": [_p, _p, _z, _p, _z, _p, _z, _z, _z, _p, _z, _p, _p, _z, _p, _z],
    "pcgrad_merge_flat_f64": [_p, _p, _z, _p, _z, _p, _z, _z, _z, _p, _z, _p, _p, _z, _p, _z],
    "pcgrad_project_flat_f64": [_p, _p, _z, _p, _z, _p, _z, _z, _z, _p, _z, _p, _p, _z, _p, _z],
    "pcgrad_merge_vars": [_p, _p, _z, _p, _z, _z, _p, _z, _p, _p, _z, _p, _z],
    "pcgrad_project_vars": [_p, _p, _z, _p, _z, _z, _p, _z, _p, _p, _z, _p, _z],
    "pcgrad_merge_vars_f64": [_p, _p, _z, _p, _z, _z, _p, _z, _p, _p, _z, _p, _z],
    "pcgrad_project_vars_f64": [_p, _p, _z, _p, _z, _z, _p, _z, _p, _p, _z, _p, _z],
    "pcgrad_pack": [_p, _z, _p, _z, _z, _p, _z, _p, _z],
    "pcgrad_unflatten": [_p, _z, _p, _z, _p, _z],
    "pcgrad_gram_flat": [_p, _z, _p, _z, _p, _z, _z, _z, _z, _z, _p, _z],
    "pcgrad_gram_flat_f64": [_p, _z, _p, _z, _p, _z, _z, _z, _z, _z, _p, _z],
    "pcgrad_gram_combine": [_p, _z, _z, _p, _z],
    "pcgrad_coefficients": [_p, _p, _z, _z, _p, _p, _z],
    "pcgrad_apply_merged_flat": [_p, _z, _p, _z, _p, _z, _p, _z, _z, _z, _u32, _z, _z, _p, _z, _p, _z],
    "pcgrad_apply_projected_flat": [_p, _z, _p, _z, _p, _z, _p, _z, _z, _z, _u32, _z, _z, _p, _z, _p, _z],
    "pcgrad_apply_merged_flat_f64": [_p, _z, _p, _z, _p, _z, _p, _z, _z, _z, _u32, _z, _z, _p, _z, _p, _z],
    "pcgrad_apply_projected_flat_f64": [_p, _z, _p, _z, _p, _z, _p, _z, _z, _z, _u32, _z, _z, _p, _z, _p, _z],
    "pcgrad_method_workspace_len": [_p, _z, _p],
    "pcgrad_aggregate_workspace_len": [_p, _z, _p],
    "pcgrad_method_weights": [_p, _p, _z, _z, _p, _z, _p, _z],
    "pcgrad_aggregate_flat": [_p, _p, _z, _p, _z, _p, _z, _z, _z, _p, _z, _p, _z],
}

for _name, _args in _PROTOTYPES.items():
    _f = getattr(lib, _name)
    _f.argtypes = _args
    _f.restype = ctypes.c_int  # enum pcgrad_status
lib.pcgrad_status_str.argtypes = [ctypes.c_int32]
lib.pcgrad_status_str.restype = ctypes.c_char_p
lib.pcgrad_version.argtypes = []
lib.pcgrad_version.restype = ctypes.c_char_p


def status_str(status):
    """The library's description of a status code."""
    return lib.pcgrad_status_str(status).decode("utf-8", "replace")


def size_query(name, *args):
    """Calls one of the ``pcgrad_*_len`` queries and returns its result."""
    out = ctypes.c_size_t(0)
    status = getattr(lib, name)(*args, ctypes.addressof(out))
    return status, out.value


VERSION = lib.pcgrad_version().decode()
