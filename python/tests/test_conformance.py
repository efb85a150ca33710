"""Every conformance vector (tests/data/conformance/*.json and, when set, every
*.json under PCGRAD_EXTRA_VECTORS) through pcgrad.merge, pcgrad.project,
pcgrad.merge_vars and pcgrad.project_vars, and through the suite's own float64
reference: merged and projected gradients within 1e-5 of the largest absolute
input value of the vectors' float64 results. The run ends with the line
``python conformance: K cases passed``."""

import os

import numpy as np
import pytest

import pcgrad
from conftest import CONFORMANCE_PASSED, load_case, vector_files
from reference import reference

TOL = 1e-5
REF_TOL = 1e-9

FILES = vector_files()


def split(row, segments):
    return np.split(row, np.cumsum(segments)[:-1])


def close(got, want, tol, what, name):
    got = np.asarray(got, dtype=np.float64)
    err = np.max(np.abs(got - want)) if want.size else 0.0
    assert err <= tol, f"{name}: {what} differs from the vector by {err:e} (tolerance {tol:e})"


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(f)[:-5] for f in FILES])
def test_vector(path):
    c = load_case(path)
    name, g, seg, hg = c["name"], c["grads"], c["segments"], c["has_grad"]
    tasks = c["tasks"]
    tol = TOL * max(float(np.max(np.abs(g))) if g.size else 0.0, 1e-30)
    kw = dict(mode=c["mode"], reduction=c["reduction"])
    if c["mode"] == "sequential":
        kw["order"] = np.array(c["orders"], dtype=np.int64).reshape(tasks, max(tasks - 1, 0))
    mask = np.repeat(hg, seg, axis=1)

    # the suite's own reference reproduces the vector
    ref_m, ref_p, _, _, _ = reference(g, c["mode"], c["orders"], c["reduction"], seg, hg)
    close(ref_m, c["merged"], REF_TOL * max(1.0, tol / TOL), "reference merged", name)

    snapshot = g.copy()
    close(pcgrad.merge(g, segments=seg, has_grad=hg, **kw), c["merged"], tol, "merge f32", name)
    assert np.array_equal(g, snapshot), f"{name}: merge wrote into its input"
    m64 = pcgrad.merge(g.astype(np.float64), segments=seg, has_grad=hg, **kw)
    assert m64.dtype == np.float64
    close(m64, c["merged"], tol, "merge f64", name)

    work = g.copy()
    merged = pcgrad.project(work, segments=seg, has_grad=hg, **kw)
    close(merged, c["merged"], tol, "project merged", name)
    close(work, c["projected"], tol, "project projected", name)
    work64 = g.astype(np.float64)
    assert pcgrad.project(work64, segments=seg, has_grad=hg, merged=False, **kw) is None
    close(work64, c["projected"], tol, "project f64 projected", name)

    per_var = [[None if not hg[t, s] else piece for s, piece in enumerate(split(g[t], seg))]
               for t in range(tasks)]
    mv = pcgrad.merge_vars(per_var, segments=seg, **kw)
    close(np.concatenate(mv) if mv else np.zeros(0), c["merged"], tol, "merge_vars", name)

    work = g.copy()
    per_var = [[None if not hg[t, s] else piece for s, piece in enumerate(split(work[t], seg))]
               for t in range(tasks)]
    pv = pcgrad.project_vars(per_var, segments=seg, **kw)
    close(np.concatenate(pv) if pv else np.zeros(0), c["merged"], tol, "project_vars merged", name)
    # cells without a gradient receive nothing: compare the present ones only
    close(np.where(mask, work, 0.0), np.where(mask, c["projected"], 0.0), tol,
          "project_vars projected", name)
    assert np.array_equal(work[~mask], g[~mask]), f"{name}: project_vars wrote into a None cell"
    CONFORMANCE_PASSED.append(name)
