"""Every bad-input class of c_examples/status_test.c that the Python API can
express, through the Python API: the exception class, its status or the
argument it names, and every caller array (and Rng) unchanged afterwards.
The classes the wrappers cannot produce (a NULL required pointer, a short
workspace: the wrappers own both) go through the raw ctypes layer, which
must return the status rather than crash."""

import ctypes
import threading

import numpy as np
import pytest

import pcgrad
from pcgrad import _capi

T, N = 3, 6


def fixture():
    g = np.array(
        [[1.0, 0.0, 2.0, 0.0, 1.0, 0.5],
         [-1.0, 1.0, 0.0, 0.5, 0.0, -1.0],
         [0.5, 0.5, -1.0, 1.0, 0.25, 0.0]], dtype=np.float32)
    return g


def misaligned(shape, fill):
    """A writable float32 array whose data pointer is 1 byte off alignment."""
    n = int(np.prod(shape))
    buf = bytearray(4 * n + 8)
    a = np.frombuffer(buf, dtype=np.float32, count=n, offset=1).reshape(shape)
    a[...] = fill
    assert not a.flags.aligned
    return a


def expect(exc, fn, *arrays, status=None, names=None, rng=None):
    snaps = [a.copy() for a in arrays]
    state = None if rng is None else rng.state
    with pytest.raises(exc) as info:
        fn()
    if status is not None:
        assert isinstance(info.value, pcgrad.Error), info.value
        assert info.value.status == status, str(info.value)
        assert info.value.message == _capi.status_str(status)
        assert str(status) in str(info.value)
    if names is not None:
        assert names in str(info.value), str(info.value)
    for a, s in zip(arrays, snaps):
        np.testing.assert_array_equal(a, s)
        assert a.tobytes() == s.tobytes()
    if rng is not None:
        assert rng.state == state


def test_error_is_value_error():
    assert issubclass(pcgrad.Error, ValueError)
    e = pcgrad.Error(-3, "pcgrad.merge")
    assert e.status == -3 and "buffer length" in e.message and "pcgrad.merge" in str(e)


def test_no_tasks():
    g0 = np.zeros((0, 4), np.float32)
    expect(pcgrad.Error, lambda: pcgrad.merge(g0), g0, status=_capi.ERROR_NO_TASKS)
    expect(pcgrad.Error, lambda: pcgrad.project(g0), g0, status=_capi.ERROR_NO_TASKS)
    expect(pcgrad.Error, lambda: pcgrad.merge_vars([]), status=_capi.ERROR_NO_TASKS)
    expect(pcgrad.Error, lambda: pcgrad.pack([]), status=_capi.ERROR_NO_TASKS)
    expect(pcgrad.Error, lambda: pcgrad.gram(g0), g0, status=_capi.ERROR_NO_TASKS)


def test_length_mismatch():
    g = fixture()
    out = np.full(N, -7.0, np.float32)
    for seg in ([4, 3], [4, 1], [7], [0, 0]):
        expect(pcgrad.Error, lambda: pcgrad.merge(g, segments=seg, out=out), g, out,
               status=_capi.ERROR_LENGTH_MISMATCH)
        expect(pcgrad.Error, lambda: pcgrad.project(g, segments=seg), g,
               status=_capi.ERROR_LENGTH_MISMATCH)
    flat = np.arange(6, dtype=np.float32)
    expect(pcgrad.Error, lambda: pcgrad.unflatten(flat, [(2,), (3,)]), flat,
           status=_capi.ERROR_LENGTH_MISMATCH)
    # caught before the library, naming the argument
    expect(ValueError, lambda: pcgrad.merge(g, out=np.zeros(N + 1, np.float32)), g, names="out")
    expect(ValueError, lambda: pcgrad.merge(g, segments=[4, 2], has_grad=np.ones((T, 3), bool)), g,
           names="has_grad")
    expect(ValueError, lambda: pcgrad.merge(g, has_grad=np.ones((T, 2), bool)), g, names="has_grad")
    expect(ValueError, lambda: pcgrad.merge(g, order=[[1, 2], [0, 2]]), g, names="order")
    expect(ValueError, lambda: pcgrad.merge(g, segments=[]), g, names="segments")
    expect(ValueError, lambda: pcgrad.merge_vars([[g[0]], [g[1, :5]], [g[2]]]), g, names="grads[1][0]")
    expect(ValueError, lambda: pcgrad.merge_vars([[g[0], g[0]], [g[1]], [g[2], None]]), g, names="grads[1]")
    expect(ValueError, lambda: pcgrad.merge_vars([[g[0], None], [g[1], None]]), g, names="variable 1")


def test_overflow():
    g = fixture()
    big = 2 ** 63
    expect(pcgrad.Error, lambda: pcgrad.merge(g, segments=[big, big, 6]), g,
           status=_capi.ERROR_OVERFLOW)
    expect(pcgrad.Error, lambda: pcgrad.merge(g, segments=[2 ** 64 - 1, 7]), g,
           status=_capi.ERROR_OVERFLOW)
    expect(ValueError, lambda: pcgrad.merge(g, segments=[2 ** 64, 0]), g, names="segments")
    expect(ValueError, lambda: pcgrad.merge(g, segments=[-1, 7]), g, names="segments")


def test_non_finite():
    for bad in (np.nan, np.inf, -np.inf):
        for mode in ("sequential", "simultaneous"):
            g = fixture()
            g[1, 3] = bad
            out = np.full(N, 3.0, np.float32)
            expect(pcgrad.Error, lambda: pcgrad.merge(g, mode=mode, check_finite=True, out=out), g, out,
                   status=_capi.ERROR_NON_FINITE)
            expect(pcgrad.Error, lambda: pcgrad.project(g, mode=mode, check_finite=True), g,
                   status=_capi.ERROR_NON_FINITE)
            heads = [[g[0, :4], g[0, 4:].copy()], [g[1, :4], None], [g[2, :4], g[2, 4:].copy()]]
            expect(pcgrad.Error, lambda: pcgrad.project_vars(heads, mode=mode, check_finite=True),
                   heads[0][0], heads[1][0], heads[2][1], status=_capi.ERROR_NON_FINITE)
    g = fixture()
    G = pcgrad.gram(g)
    G[0, 0] = np.nan
    expect(pcgrad.Error, lambda: pcgrad.coefficients(G, check_finite=True), G,
           status=_capi.ERROR_NON_FINITE)
    # without the check a NaN is no error: it only propagates
    assert np.isnan(pcgrad.merge(np.where(np.arange(N) == 2, np.nan, fixture()).astype(np.float32))).any()


def test_overlap():
    g = fixture()
    expect(pcgrad.Error, lambda: pcgrad.merge(g, out=g[1]), g, status=_capi.ERROR_OVERLAP)
    expect(pcgrad.Error, lambda: pcgrad.project(g, out=g[2]), g, status=_capi.ERROR_OVERLAP)
    rows = [[g[0]], [g[1]], [g[2]]]
    expect(pcgrad.Error, lambda: pcgrad.merge_vars(rows, out=[g[0]]), g, status=_capi.ERROR_OVERLAP)
    w = fixture()
    shared = [[w[0]], [w[0]], [w[2]]]
    expect(pcgrad.Error, lambda: pcgrad.project_vars(shared), w, status=_capi.ERROR_OVERLAP)
    two = np.zeros(N, np.float32)
    pieces = [[g[0, :4], g[0, 4:]], [g[1, :4], g[1, 4:]], [g[2, :4], g[2, 4:]]]
    expect(pcgrad.Error, lambda: pcgrad.merge_vars(pieces, out=[two[:4], two[2:4]]), g, two,
           status=_capi.ERROR_OVERLAP)
    c = pcgrad.coefficients(pcgrad.gram(g))
    expect(pcgrad.Error, lambda: pcgrad.apply_merged(g, c, 0, N, out=g[0]), g, c,
           status=_capi.ERROR_OVERLAP)


def test_invalid_enum_caught_before_the_library():
    g = fixture()
    for kw, name in (({"mode": "parallel"}, "mode"), ({"mode": 1}, "mode"),
                     ({"reduction": "max"}, "reduction"), ({"order": "random"}, "order"),
                     ({"check_finite": 1}, "check_finite"), ({"threads": -1}, "threads"),
                     ({"threads": 1.5}, "threads")):
        expect((ValueError, TypeError), lambda: pcgrad.merge(g, **kw), g, names=name)
    expect(TypeError, lambda: pcgrad.merge(g, segments=[4, 2], has_grad=np.full((T, 2), 2)), g,
           names="has_grad")
    c = pcgrad.coefficients(pcgrad.gram(g))
    expect(ValueError, lambda: pcgrad.apply_merged(g, c, reduction="median"), g, names="reduction")


def test_invalid_order():
    g = fixture()
    rng = pcgrad.Rng(7)
    for table in ([[1, 1], [0, 2], [0, 1]],      # a duplicate
                  [[1, 2], [1, 2], [0, 1]],      # row 1 visits task 1
                  [[1, 3], [0, 2], [0, 1]],      # entry = T
                  [[1, 2], [0, 2], [0, 0xFFFFFFFF]]):
        expect(pcgrad.Error, lambda: pcgrad.merge(g, order=table, rng=rng), g,
               status=_capi.ERROR_INVALID_ORDER, rng=rng)
        expect(pcgrad.Error, lambda: pcgrad.project(g, order=table), g, status=_capi.ERROR_INVALID_ORDER)
    expect(ValueError, lambda: pcgrad.merge(g, order=[[1, -2], [0, 2], [0, 1]]), g, names="order")
    expect(TypeError, lambda: pcgrad.merge(g, order=[[1.0, 2.0], [0, 2], [0, 1]]), g, names="order")


def test_invalid_range():
    g = fixture()
    c = pcgrad.coefficients(pcgrad.gram(g))
    for lo, hi in ((4, 2), (0, N + 1), (N + 1, N + 2)):
        expect(pcgrad.Error, lambda: pcgrad.gram(g, lo, hi), g, status=_capi.ERROR_INVALID_RANGE)
        expect(pcgrad.Error, lambda: pcgrad.apply_projected(g, c, lo, hi, merged=False), g, c,
               status=_capi.ERROR_INVALID_RANGE)
    expect(pcgrad.Error, lambda: pcgrad.apply_merged(g, c, 0, N + 1), g, c,
           status=_capi.ERROR_INVALID_RANGE)
    expect(ValueError, lambda: pcgrad.gram(g, -1, 2), g, names="lo")


def test_misaligned():
    g = misaligned((T, N), fixture())
    expect(pcgrad.Error, lambda: pcgrad.merge(g), g, status=_capi.ERROR_MISALIGNED)
    expect(pcgrad.Error, lambda: pcgrad.project(g), g, status=_capi.ERROR_MISALIGNED)
    ok = fixture()
    out = misaligned((N,), 5.0)
    expect(pcgrad.Error, lambda: pcgrad.merge(ok, out=out), ok, out, status=_capi.ERROR_MISALIGNED)
    v = misaligned((N,), fixture()[1])
    expect(pcgrad.Error, lambda: pcgrad.merge_vars([[ok[0]], [v], [ok[2]]]), ok, v,
           status=_capi.ERROR_MISALIGNED)
    flat = misaligned((N,), 1.0)
    expect(pcgrad.Error, lambda: pcgrad.unflatten(flat, [(4,), (2,)]), flat, status=_capi.ERROR_MISALIGNED)


def test_wrong_types_and_shapes_name_the_argument():
    g = fixture()
    expect(TypeError, lambda: pcgrad.merge(g.astype(np.float16)), names="grads")
    expect(TypeError, lambda: pcgrad.merge(g.astype(np.int32)), names="grads")
    expect(TypeError, lambda: pcgrad.merge(np.array([["a", "b"]])), names="grads")
    expect(ValueError, lambda: pcgrad.merge(g[0]), names="grads")
    expect(ValueError, lambda: pcgrad.merge(g[None]), names="grads")
    expect(TypeError, lambda: pcgrad.project(g.tolist()), names="grads")
    expect(TypeError, lambda: pcgrad.project(g[:, ::2]), g, names="grads")
    ro = fixture()
    ro.flags.writeable = False
    expect(TypeError, lambda: pcgrad.project(ro), ro, names="grads")
    expect(TypeError, lambda: pcgrad.project(g.astype(np.float16)), names="grads")
    expect(TypeError, lambda: pcgrad.merge(g, out=np.zeros(N, np.int32)), g, names="out")
    expect(TypeError, lambda: pcgrad.merge(g, out=[0.0] * N), g, names="out")
    expect(TypeError, lambda: pcgrad.merge(g, segments=[4.0, 2.0]), g, names="segments")
    expect(TypeError, lambda: pcgrad.merge(g, order="shuffled", rng="seed"), g, names="rng")
    expect(ValueError, lambda: pcgrad.merge(g, order="shuffled"), g, names="rng")
    expect(TypeError, lambda: pcgrad.merge_vars(g), g, names="grads")
    expect(TypeError, lambda: pcgrad.project_vars([[g[0].tolist()], [g[1]], [g[2]]]), g, names="grads[0][0]")
    expect(TypeError, lambda: pcgrad.Rng(1.5), names="seed")
    expect(TypeError, lambda: pcgrad.coefficients(np.array([["x"]])), names="gram")
    expect(ValueError, lambda: pcgrad.coefficients(np.zeros((2, 3))), names="gram")
    expect(TypeError, lambda: pcgrad.gram(g, out=np.zeros((T, T), np.float32)), g, names="out")


def test_raw_layer_null_and_workspace_statuses_do_not_crash():
    g = fixture()
    merged = np.full(N, 9.0, np.float32)
    ws_len = pcgrad.workspace_len(T)
    ws = np.zeros(ws_len, np.float64)
    cfg = _capi.ConfigStruct()
    f = _capi.lib.pcgrad_merge_flat
    base = [ctypes.addressof(cfg), g.ctypes.data, T * N, None, 0, None, 0, T, N,
            merged.ctypes.data, N, None, None, 0, ws.ctypes.data, ws_len]
    for index, status in ((0, _capi.ERROR_NULL_POINTER), (1, _capi.ERROR_NULL_POINTER),
                          (9, _capi.ERROR_NULL_POINTER), (14, _capi.ERROR_NULL_POINTER)):
        args = list(base)
        args[index] = None
        assert f(*args) == status
    args = list(base)
    args[15] = ws_len - 1
    assert f(*args) == _capi.ERROR_WORKSPACE_TOO_SMALL
    args = list(base)
    args[3], args[4] = None, 2  # segments NULL with a length
    assert f(*args) == _capi.ERROR_NULL_POINTER
    np.testing.assert_array_equal(merged, np.full(N, 9.0, np.float32))
    np.testing.assert_array_equal(g, fixture())
    assert f(*base) == _capi.OK
    np.testing.assert_allclose(merged, pcgrad.merge(g), rtol=0, atol=0)
    with pytest.raises(pcgrad.Error) as info:
        pcgrad.workspace_len(0)
    assert info.value.status == _capi.ERROR_NO_TASKS
    assert _capi.status_str(-99) == "unknown status"


def test_a_failed_call_from_a_thread_raises_there():
    g = fixture()
    errors = []

    def worker():
        try:
            pcgrad.merge(g, segments=[1, 1])
        except pcgrad.Error as e:
            errors.append(e.status)

    th = [threading.Thread(target=worker) for _ in range(4)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    assert errors == [_capi.ERROR_LENGTH_MISMATCH] * 4
