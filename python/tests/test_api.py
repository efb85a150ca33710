"""The NumPy API against the float64 reference (reference.py): hypothesis
properties over random T, N, segments, masks, modes, orders, reductions and
scales 1e-30..1e30; edge cases; Rng, Stats, the per-variable path, pack /
unflatten, the three phases; and the GIL released during library calls."""

import copy
import pickle
import sys
import threading
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcgrad
from pcgrad import _core
from reference import expand_mask, reference

SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
SCALES = [1e-30, 1e-3, 1.0, 1e3, 1e30]
MARGIN = 1e-4


@st.composite
def problems(draw):
    tasks = draw(st.integers(1, 6))
    dim = draw(st.integers(1, 40))
    cuts = sorted(draw(st.lists(st.integers(1, dim - 1), max_size=3, unique=True))) if dim > 1 else []
    bounds = [0] + cuts + [dim]
    segments = [b - a for a, b in zip(bounds, bounds[1:])]
    nseg = len(segments)
    has_grad = np.array(draw(st.lists(st.lists(st.booleans(), min_size=nseg, max_size=nseg),
                                      min_size=tasks, max_size=tasks)), dtype=bool)
    seed = draw(st.integers(0, 2 ** 32 - 1))
    r = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["random", "conflict", "opposite", "identical", "zero"]))
    g = r.standard_normal((tasks, dim))
    if kind == "conflict":
        g[1:] -= 1.5 * g[0]
    elif kind == "opposite" and tasks > 1:
        g[1] = -g[0]
    elif kind == "identical" and tasks > 1:
        g[1] = g[0]
    elif kind == "zero":
        g[r.integers(tasks)] = 0.0
    scale = draw(st.sampled_from(SCALES))
    g = (g * scale).astype(np.float32)
    mode = draw(st.sampled_from(["sequential", "simultaneous"]))
    reduction = draw(st.sampled_from(["mean", "sum"]))
    orders = None
    if mode == "sequential" and draw(st.booleans()):
        orders = [list(r.permutation([j for j in range(tasks) if j != i])) for i in range(tasks)]
    use_mask = draw(st.booleans())
    return dict(grads=g, segments=segments if use_mask else None,
                has_grad=has_grad if use_mask else None, mode=mode, reduction=reduction,
                orders=orders)


def run_reference(p):
    return reference(p["grads"], p["mode"], p["orders"], p["reduction"], p["segments"], p["has_grad"])


def kwargs(p):
    kw = dict(mode=p["mode"], reduction=p["reduction"], segments=p["segments"], has_grad=p["has_grad"])
    if p["orders"] is not None:
        kw["order"] = np.array(p["orders"], dtype=np.int64).reshape(len(p["orders"]), -1)
    return kw


def tolerance(p):
    g = p["grads"]
    return 2e-5 * g.shape[0] * float(np.max(np.abs(g)))


@SETTINGS
@given(problems())
def test_merge_and_project_match_the_reference(p):
    m_ref, proj_ref, nproj, conflicts, margin = run_reference(p)
    g = p["grads"]
    snapshot = g.copy()
    merged, stats = pcgrad.merge(g, stats=True, **kwargs(p))
    assert np.array_equal(g, snapshot)
    assert merged.shape == (g.shape[1],) and merged.dtype == np.float32
    assert np.isfinite(merged).all()
    work = g.copy()
    merged2 = pcgrad.project(work, **kwargs(p))
    # the in-place path sums the projected rows: equal up to rounding
    np.testing.assert_allclose(merged2, merged, rtol=1e-6, atol=1e-6 * float(np.max(np.abs(g), initial=0)))
    mask = expand_mask(p["has_grad"], p["segments"], *g.shape)
    masked = np.where(mask, g, 0).astype(np.float64)
    np.testing.assert_allclose(stats.gram, masked @ masked.T, rtol=1e-5,
                               atol=1e-6 * float(np.max(np.abs(masked @ masked.T), initial=0.0)))
    if margin > MARGIN:  # every projection decision is clear of rounding
        tol = tolerance(p)
        np.testing.assert_allclose(merged, m_ref, rtol=0, atol=tol)
        np.testing.assert_allclose(work, proj_ref, rtol=0, atol=tol)
        assert stats.projections == nproj
        assert stats.conflicting_pairs == conflicts
    # float64 in, float64 out (computed in float64): the same values up to
    # float32 rounding
    m64 = pcgrad.merge(g.astype(np.float64), **kwargs(p))
    assert m64.dtype == np.float64
    if margin > MARGIN:
        tol = tolerance(p)
        np.testing.assert_allclose(m64, m_ref, rtol=0, atol=tol)
        np.testing.assert_allclose(m64, merged, rtol=0, atol=2 * tol)


@SETTINGS
@given(problems())
def test_per_variable_path_equals_the_flat_path(p):
    g = p["grads"]
    tasks, dim = g.shape
    seg = p["segments"] or [dim]
    hg = p["has_grad"] if p["has_grad"] is not None else np.ones((tasks, len(seg)), bool)
    kw = kwargs(p)
    kw.pop("has_grad")
    kw["segments"] = seg
    flat = pcgrad.merge(g, has_grad=hg, **kw)
    pieces = [[piece if hg[t, s] else None for s, piece in enumerate(np.split(g[t], np.cumsum(seg)[:-1]))]
              for t in range(tasks)]
    per_var = pcgrad.merge_vars(pieces, **kw)
    np.testing.assert_array_equal(np.concatenate(per_var), flat)
    packed, shapes, mask = pcgrad.pack(pieces, segments=seg)
    assert shapes == [(n,) for n in seg]
    np.testing.assert_array_equal(mask, hg)
    np.testing.assert_array_equal(packed, np.where(np.repeat(hg, seg, axis=1), g, 0))
    np.testing.assert_array_equal(pcgrad.merge(packed, has_grad=mask, **kw), flat)


@SETTINGS
@given(problems(), st.integers(0, 2 ** 64 - 1))
def test_shuffled_is_reproducible_from_a_saved_rng(p, seed):
    g = p["grads"]
    kw = kwargs(p)
    kw.pop("order", None)
    kw["mode"] = "sequential"
    rng = pcgrad.Rng(seed)
    saved = copy.copy(rng)
    first = pcgrad.merge(g, order="shuffled", rng=rng, **kw)
    second = pcgrad.merge(g, order="shuffled", rng=rng, **kw)
    replay = pcgrad.Rng(saved.state)
    np.testing.assert_array_equal(pcgrad.merge(g, order="shuffled", rng=replay, **kw), first)
    np.testing.assert_array_equal(pcgrad.merge(g, order="shuffled", rng=replay, **kw), second)
    assert replay == rng
    if g.shape[0] >= 3:
        assert rng.state != saved.state
    else:
        assert rng.state == saved.state  # one other task: nothing to shuffle
    # an int seed makes a fresh Rng each call
    np.testing.assert_array_equal(pcgrad.merge(g, order="shuffled", rng=seed, **kw),
                                  pcgrad.merge(g, order="shuffled", rng=pcgrad.Rng(seed), **kw))


@SETTINGS
@given(problems(), st.data())
def test_phases_over_shards_equal_one_call(p, data):
    g = p["grads"]
    tasks, dim = g.shape
    kw = dict(segments=p["segments"], has_grad=p["has_grad"])
    cuts = sorted(data.draw(st.lists(st.integers(0, dim), max_size=3)))
    bounds = [0] + cuts + [dim]
    G = np.zeros((tasks, tasks))
    for lo, hi in zip(bounds, bounds[1:]):
        pcgrad.gram(g, lo, hi, out=G, **kw)
    full = pcgrad.gram(g, **kw)
    # products accumulate in float32 within a short block: a shard cut moves rounding
    np.testing.assert_allclose(G, full, rtol=1e-6, atol=1e-6 * float(np.max(np.abs(full), initial=0)))
    order = "fixed" if p["orders"] is None else kwargs(p)["order"]
    coef = pcgrad.coefficients(full, mode=p["mode"], order=order)
    merged = np.concatenate([pcgrad.apply_merged(g, coef, lo, hi, reduction=p["reduction"], **kw)
                             for lo, hi in zip(bounds, bounds[1:])])
    np.testing.assert_array_equal(merged, pcgrad.merge(g, **kwargs(p)))
    work = g.copy()
    for lo, hi in zip(bounds, bounds[1:]):
        assert pcgrad.apply_projected(work, coef, lo, hi, reduction=p["reduction"], merged=False, **kw) is None
    ref = g.copy()
    pcgrad.project(ref, **kwargs(p))
    np.testing.assert_array_equal(work, ref)


def test_edge_cases():
    g = np.array([[1.0, 2.0, -3.0]], np.float32)
    np.testing.assert_array_equal(pcgrad.merge(g), g[0])           # T = 1
    z = np.zeros((3, 5), np.float32)
    np.testing.assert_array_equal(pcgrad.merge(z, mode="simultaneous"), np.zeros(5))
    a = np.array([[1.0, 2.0, 3.0], [-1.0, -2.0, -3.0]], np.float32)  # opposite
    for mode in ("sequential", "simultaneous"):
        np.testing.assert_allclose(pcgrad.merge(a, mode=mode), np.zeros(3), atol=1e-6)
    same = np.array([[1.0, -2.0, 0.5]] * 4, np.float32)
    np.testing.assert_allclose(pcgrad.merge(same), same[0], rtol=1e-6)
    np.testing.assert_allclose(pcgrad.merge(same, reduction="sum"), 4 * same[0], rtol=1e-6)
    empty = np.zeros((2, 0), np.float32)
    assert pcgrad.merge(empty).shape == (0,)
    lists = pcgrad.merge([[1, 0], [0, 1]])                          # an int list-of-lists
    assert lists.dtype == np.float64
    np.testing.assert_array_equal(lists, [0.5, 0.5])
    strided = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4) - 5)
    np.testing.assert_array_equal(pcgrad.merge(strided), pcgrad.merge(np.ascontiguousarray(strided)))
    big = np.random.default_rng(0).standard_normal((3, 1029)).astype(np.float32)  # not a SIMD multiple
    for threads in (1, 2, 3):
        np.testing.assert_array_equal(pcgrad.merge(big, threads=threads), pcgrad.merge(big))
    out = np.empty(1029, np.float64)
    assert pcgrad.merge(big, out=out) is out
    ro = big.copy()
    ro.flags.writeable = False  # merge only reads: a read-only array is fine, on every path
    for _ in range(3):
        np.testing.assert_array_equal(pcgrad.merge(ro), pcgrad.merge(big))
        np.testing.assert_array_equal(np.concatenate(pcgrad.merge_vars([[r] for r in ro])), pcgrad.merge(big))
    np.testing.assert_array_equal(pcgrad.gram(ro), pcgrad.gram(big))


def test_stats_and_rng_objects():
    g = np.array([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]], np.float32)
    merged, s = pcgrad.merge(g, stats=True)
    assert s.conflicting_pairs == 2 and s.projections >= 2
    assert s.gram.shape == (3, 3) and s.gram.dtype == np.float64
    np.testing.assert_allclose(s.gram, g.astype(np.float64) @ g.T.astype(np.float64))
    np.testing.assert_allclose(s.cosine[0, 1], -1 / np.sqrt(2))
    np.testing.assert_allclose(np.diagonal(s.cosine), 1.0)
    zero = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)
    assert pcgrad.merge(zero, stats=True)[1].cosine[0, 1] == 0.0
    assert "conflicting_pairs=2" in repr(s)
    _, s2 = pcgrad.project(g.copy(), stats=True, merged=False)
    assert s2.conflicting_pairs == 2
    r = pcgrad.Rng(2 ** 64 + 5)
    assert r.state == 5
    r.state = -1
    assert r.state == 2 ** 64 - 1
    c = copy.copy(r)
    assert c == r and c is not r and copy.deepcopy(r) == r
    assert pickle.loads(pickle.dumps(r)) == r
    assert "0xffffffffffffffff" in repr(r)
    pcgrad.merge(np.eye(4, dtype=np.float32) - 0.5, order="shuffled", rng=c)
    assert c != r


def test_merge_vars_keeps_shapes_and_writes_out():
    r = np.random.default_rng(1)
    w = [r.standard_normal((3, 4)).astype(np.float32) for _ in range(2)]
    b = [r.standard_normal(4).astype(np.float32) for _ in range(2)]
    head = r.standard_normal((4, 2)).astype(np.float32)
    grads = [[w[0], b[0], head], [w[1], b[1], None]]
    out = pcgrad.merge_vars(grads)
    assert [o.shape for o in out] == [(3, 4), (4,), (4, 2)]
    flat, shapes, mask = pcgrad.pack(grads)
    assert shapes == [(3, 4), (4,), (4, 2)]
    merged = pcgrad.merge(flat, segments=[12, 4, 8], has_grad=mask)
    np.testing.assert_array_equal(np.concatenate([o.ravel() for o in out]), merged)
    for a, b_ in zip(pcgrad.unflatten(merged, shapes), out):
        np.testing.assert_array_equal(a, b_)
    dst = [np.empty((3, 4), np.float64), np.empty(4, np.float32), np.empty(8, np.float32)]
    res = pcgrad.merge_vars(grads, out=dst)
    assert res[0] is dst[0]
    np.testing.assert_array_equal(dst[0], out[0].astype(np.float64))
    # a variable no task reaches needs its length from segments
    none_col = [[w[0], None], [w[1], None]]
    res = pcgrad.merge_vars(none_col, segments=[12, 3])
    np.testing.assert_array_equal(res[1], np.zeros(3))
    # float64 inputs give float64 results
    res64 = pcgrad.merge_vars([[x.astype(np.float64) for x in (w[0], b[0])], [w[1], b[1]]])
    assert res64[0].dtype == np.float64


def test_gil_is_released_during_the_library_call():
    """A worker thread runs one long library call; the main thread must get
    to run Python code while the worker's frame is at the line of the
    foreign call. With the switch interval set to 1 s the interpreter does
    not preempt the worker by itself, so the main thread runs only when the
    worker gives the GIL up: inside the C call."""
    g = np.random.default_rng(0).standard_normal((8, 2_000_000)).astype(np.float32)
    source = _core.__loader__.get_source(_core.__name__).splitlines()
    # the foreign calls: through ctypes in _flat, through the extension
    # module in merge's fast path
    calls = {}
    for func, marker in ((_core._flat, "status = f(*args)"), (_core.merge, "= _fast_merge(grads,")):
        code = func.__code__
        lines = {code.co_firstlineno + i for i, line in enumerate(source[code.co_firstlineno - 1:])
                 if marker in line}
        assert lines, marker
        calls[code] = lines
    seen = 0
    old = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    try:
        for _ in range(20):
            done = threading.Event()

            def work():
                pcgrad.merge(g, threads=1)
                done.set()

            th = threading.Thread(target=work)
            th.start()
            while not done.is_set():
                frame = sys._current_frames().get(th.ident)
                while frame is not None:
                    if frame.f_lineno in calls.get(frame.f_code, ()):
                        seen += 1
                        break
                    frame = frame.f_back
                time.sleep(0.0002)  # gives the GIL back so the worker can return
            th.join()
            if seen >= 5:
                break
    finally:
        sys.setswitchinterval(old)
    assert seen >= 5, f"the main thread ran only {seen} times during the foreign calls"


def test_concurrent_calls_share_nothing():
    r = np.random.default_rng(3)
    problems_ = [r.standard_normal((4, 5000)).astype(np.float32) for _ in range(8)]
    want = [pcgrad.merge(p) for p in problems_]
    got = [None] * len(problems_)

    def work(i):
        for _ in range(20):
            got[i] = pcgrad.merge(problems_[i])

    th = [threading.Thread(target=work, args=(i,)) for i in range(len(problems_))]
    for t in th:
        t.start()
    for t in th:
        t.join()
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_docstrings_and_signatures():
    import inspect
    for name in pcgrad.__all__:
        obj = getattr(pcgrad, name)
        if callable(obj):
            assert obj.__doc__ and len(obj.__doc__) > 40, name
    sig = inspect.signature(pcgrad.merge)
    assert list(sig.parameters) == ["grads", "mode", "order", "reduction", "segments", "has_grad", "rng",
                                    "threads", "check_finite", "out", "stats"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(sig.parameters.values())[1:])
    assert list(inspect.signature(pcgrad.project).parameters)[-1] == "merged"
    assert sig.parameters["order"].default == "fixed"


def test_import_pcgrad_does_not_import_torch():
    import subprocess
    code = ("import sys, pcgrad; assert 'torch' not in sys.modules; "
            "import pcgrad.torch; assert 'torch' in sys.modules; print(pcgrad.torch.PCGrad.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "PCGrad"


def test_float64_is_used_in_place_and_matches_the_float64_reference():
    """C-contiguous float64 arrays go to the ``_f64`` entry points: ``project``
    writes the caller's array itself, ``merge`` reads it without a copy, and
    both agree with the float64 reference far more tightly than the float32
    path can (its inputs alone are rounded to float32)."""
    rng = np.random.default_rng(9)
    for tasks, dim in ((1, 7), (2, 13), (3, 1029), (5, 33)):
        g = rng.standard_normal((tasks, dim))
        g[1:] -= 0.8 * g[0] if tasks > 1 else 0  # conflicts
        m_ref, proj_ref, _, _, _ = reference(g)
        scale = float(np.max(np.abs(g)))

        work = g.copy()
        addr = work.ctypes.data
        merged = pcgrad.project(work, threads=1)
        assert work.ctypes.data == addr and work.dtype == np.float64
        assert merged.dtype == np.float64
        np.testing.assert_allclose(work, proj_ref, rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(merged, m_ref, rtol=0, atol=1e-12 * scale)
        # project(merged=False) writes in place too, on the same values
        again = g.copy()
        assert pcgrad.project(again, merged=False) is None
        np.testing.assert_array_equal(again, work)

        snapshot = g.copy()
        m64 = pcgrad.merge(g)
        assert np.array_equal(g, snapshot)
        assert m64.dtype == np.float64
        np.testing.assert_array_equal(m64, merged)
        out = np.full(dim, np.nan)
        assert pcgrad.merge(g, out=out) is out
        np.testing.assert_array_equal(out, m64)

        err64 = float(np.max(np.abs(m64 - m_ref)))
        err32 = float(np.max(np.abs(pcgrad.merge(g.astype(np.float32)) - m_ref)))
        assert err64 <= 1e-12 * scale
        assert err32 > 1e-9 * scale  # float32 input rounding alone
        assert err64 < err32 / 1000


def test_float64_merge_reads_the_callers_buffer():
    """A C-contiguous float64 view of a larger buffer is merged in float64
    precision, and a failed in-place call (NaN with check_finite) leaves the
    caller's float64 array and ``out`` untouched."""
    base = np.arange(24, dtype=np.float64).reshape(4, 6) - 10.0
    view = base[1:3]  # C-contiguous rows of base: no copy needed
    assert view.flags.c_contiguous
    np.testing.assert_allclose(pcgrad.merge(view), reference(view)[0], rtol=0, atol=1e-13)
    bad = base.copy()
    bad[2, 3] = np.nan
    out = np.full(6, -1.0)
    snapshot = bad.copy()
    try:
        pcgrad.project(bad, check_finite=True, out=out)
    except pcgrad.Error:
        pass
    else:
        raise AssertionError("NaN with check_finite=True was accepted")
    np.testing.assert_array_equal(bad, snapshot)
    np.testing.assert_array_equal(out, np.full(6, -1.0))


@SETTINGS
@given(problems())
def test_float64_per_variable_and_phases_equal_the_float64_flat_path(p):
    """float64 per-variable gradients go to ``pcgrad_merge_vars_f64`` /
    ``pcgrad_project_vars_f64`` (in place, no float32 round trip) and float64
    phases to the ``_f64`` phase functions: bitwise the flat float64 call."""
    g = p["grads"].astype(np.float64) * (1 + 1e-9)  # values float32 cannot hold
    tasks, dim = g.shape
    seg = p["segments"] or [dim]
    hg = p["has_grad"] if p["has_grad"] is not None else np.ones((tasks, len(seg)), bool)
    kw = kwargs(p)
    kw.pop("has_grad")
    kw["segments"] = seg
    flat = pcgrad.merge(g, has_grad=hg, **kw)
    assert flat.dtype == np.float64
    cuts = np.cumsum(seg)[:-1]
    pieces = [[piece if hg[t, s] else None for s, piece in enumerate(np.split(g[t], cuts))]
              for t in range(tasks)]
    per_var = pcgrad.merge_vars(pieces, **kw)
    # (With no gradient present at all the result is float32 zeros.)
    assert all(v.dtype == (np.float64 if hg.any() else np.float32) for v in per_var)
    np.testing.assert_array_equal(np.concatenate(per_var), flat)
    # pack reads float64 pieces too (into its float32 buffer).
    packed, _, mask = pcgrad.pack(pieces, segments=seg)
    assert packed.dtype == np.float32
    np.testing.assert_array_equal(packed, np.where(np.repeat(hg, seg, axis=1), g, 0).astype(np.float32))
    np.testing.assert_array_equal(mask, hg)

    # In place: the caller's float64 arrays themselves receive the projection.
    work = g.copy()
    flat_work = g.copy()
    flat_merged = pcgrad.project(flat_work, has_grad=hg, **kw)
    cells = [[piece if hg[t, s] else None for s, piece in enumerate(np.split(work[t], cuts))]
             for t in range(tasks)]
    cells = [[None if c is None else c.copy() for c in row] for row in cells]
    ids = [[None if c is None else c.ctypes.data for c in row] for row in cells]
    merged = pcgrad.project_vars(cells, **kw)
    np.testing.assert_array_equal(np.concatenate(merged), flat_merged)
    for t in range(tasks):
        for s, c in enumerate(cells[t]):
            if c is not None:
                assert c.ctypes.data == ids[t][s] and c.dtype == np.float64
                lo = int(np.sum(seg[:s]))
                np.testing.assert_array_equal(c, flat_work[t, lo:lo + seg[s]])

    # The phases in float64.
    gram = pcgrad.gram(g, segments=seg, has_grad=hg)
    _, st_ = pcgrad.merge(g, has_grad=hg, stats=True, **kw)
    np.testing.assert_array_equal(gram, st_.gram)
    order = "fixed" if p["orders"] is None else kw["order"]
    coef = pcgrad.coefficients(gram, mode=p["mode"], order=order)
    m = pcgrad.apply_merged(g, coef, reduction=p["reduction"], segments=seg, has_grad=hg)
    assert m.dtype == np.float64
    np.testing.assert_array_equal(m, flat)
    w = g.copy()
    addr = w.ctypes.data
    mp = pcgrad.apply_projected(w, coef, reduction=p["reduction"], segments=seg, has_grad=hg)
    assert w.ctypes.data == addr
    np.testing.assert_array_equal(mp, flat_merged)
    np.testing.assert_array_equal(w, flat_work)
