"""PCGrad gradient surgery for multi-task learning, over the pcgrad C library.

The functions call ``libpcgrad`` (the C ABI of ``include/pcgrad.h``, the same
library C users link) through :mod:`ctypes`, with no copy of C-contiguous
float32 gradients and the GIL released during each call:

- :func:`merge` / :func:`project`: a (T, N) gradient array, merged (and, for
  ``project``, projected in place);
- :func:`merge_vars` / :func:`project_vars`: per-variable gradients
  (``grads[t][s]`` an array or ``None``), no packing copy;
- :func:`pack` / :func:`unflatten`: the seed's ``pack_grad`` / ``un_flatten_grad``;
- :func:`gram`, :func:`gram_combine`, :func:`coefficients`,
  :func:`apply_merged`, :func:`apply_projected`: the three phases, for
  gradients sharded across processes;
- :class:`Rng` (the ``order="shuffled"`` state), :class:`Stats` (diagnostics),
  :class:`Error` (a library status, a ``ValueError``).

``pcgrad.torch`` is the PyTorch front end (imported on first use; torch is not
a dependency of this package).
"""

from ._capi import VERSION as _LIB_VERSION
from ._core import (
    Error,
    MethodState,
    aggregate,
    method_weights,
    Rng,
    Stats,
    apply_merged,
    apply_projected,
    coefficients,
    gram,
    gram_combine,
    merge,
    merge_vars,
    pack,
    project,
    project_vars,
    unflatten,
    workspace_len,
)

__version__ = "0.1.0"
#: The version string of the C library in use (``pcgrad_version()``).
library_version = _LIB_VERSION

__all__ = [
    "Error",
    "MethodState",
    "Rng",
    "Stats",
    "apply_merged",
    "aggregate",
    "apply_projected",
    "coefficients",
    "gram",
    "gram_combine",
    "library_version",
    "method_weights",
    "merge",
    "merge_vars",
    "pack",
    "project",
    "project_vars",
    "unflatten",
    "workspace_len",
]


def __getattr__(name):
    # `pcgrad.torch` without importing torch at `import pcgrad`.
    if name == "torch":
        import importlib

        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'pcgrad' has no attribute {name!r}")
