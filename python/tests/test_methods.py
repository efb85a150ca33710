"""The Gram-based methods from Python (pcgrad.aggregate, pcgrad.method_weights):
the Rust values of the C example, bad inputs, and a cross-check against
torchjd's aggregators on the same Jacobians (the residual is printed per
method)."""

import os

import numpy as np
import pytest
import torch
import torchjd.aggregation as tja

import pcgrad

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ["pcgrad", "ppcgrad", "mgda", "upgrad", "dualproj", "cagrad", "imtl_g",
         "aligned_mtl", "nash_mtl", "gradvac", "mean", "sum", "random"]

# The gradients of c_examples/methods_test.c.
G = np.array([[1.0, 0.0, 2.0, 0.0, 1.0, 0.5],
              [-1.0, 1.0, 0.0, 0.5, 0.0, -1.0],
              [0.5, 0.5, -1.0, 1.0, 0.25, 0.0]], dtype=np.float32)


def _want_table():
    rows = []
    with open(os.path.join(HERE, "..", "..", "c_examples", "methods_want.inc")) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append([float(x) for x in line[1:line.index("}")].split(",")])
    return np.array(rows)


def test_weights_equal_the_rust_values_of_the_c_example():
    want = _want_table()
    gram = G.astype(np.float64) @ G.astype(np.float64).T
    assert want.shape == (13, 3)
    for k, name in enumerate(KINDS):
        w = pcgrad.method_weights(gram, method=name, state=pcgrad.MethodState(3, rng=1))
        np.testing.assert_allclose(w, want[k], rtol=1e-15, atol=1e-15, err_msg=name)


@pytest.mark.parametrize("name", KINDS)
def test_aggregate_is_weights_times_jacobian(name):
    rng = np.random.default_rng(7)
    for t in (1, 2, 5):
        j = rng.standard_normal((t, 37)).astype(np.float32)
        gram = j.astype(np.float64) @ j.astype(np.float64).T
        w = pcgrad.method_weights(gram, method=name, state=pcgrad.MethodState(t, rng=3))
        merged = pcgrad.aggregate(j, method=name, state=pcgrad.MethodState(t, rng=3))
        want = w @ j.astype(np.float64)
        if name in ("pcgrad", "ppcgrad"):
            want = want / t  # merge's default mean reduction
        assert np.all(np.isfinite(w))
        np.testing.assert_allclose(merged, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=name)


def test_state_advances_and_failed_calls_leave_it():
    j = np.array([[1.0, 0.0], [-0.5, 1.0]], dtype=np.float32)
    st = pcgrad.MethodState(2)
    pcgrad.aggregate(j, method="nash_mtl", state=st)
    assert st.step == 1
    before = (st.alpha.copy(), st.step)
    with pytest.raises(pcgrad.Error) as e:
        pcgrad.aggregate(j, method="nash_mtl", state=st, max_norm=-1.0)
    assert e.value.status == -12
    assert st.step == before[1] and np.array_equal(st.alpha, before[0])


def test_bad_inputs_raise_naming_the_argument():
    gram = np.eye(3)
    with pytest.raises(pcgrad.Error) as e:
        pcgrad.method_weights(gram, method="cagrad", c=-0.5)
    assert e.value.status == -12
    with pytest.raises(pcgrad.Error) as e:
        pcgrad.method_weights(gram, method="mgda", tol=float("nan"))
    assert e.value.status == -12
    bad = np.eye(3)
    bad[0, 0] = -1.0
    with pytest.raises(pcgrad.Error) as e:
        pcgrad.method_weights(bad, method="upgrad")
    assert e.value.status == -13
    nan = np.eye(3)
    nan[1, 1] = np.nan
    with pytest.raises(pcgrad.Error) as e:
        pcgrad.method_weights(nan, method="mgda")
    assert e.value.status == -6
    with pytest.raises(ValueError, match="method"):
        pcgrad.method_weights(gram, method="nope")
    with pytest.raises(TypeError, match="unknown method parameter"):
        pcgrad.method_weights(gram, method="mgda", gamma=1.0)
    with pytest.raises(ValueError, match="gram"):
        pcgrad.method_weights(np.ones((2, 3)), method="mgda")
    with pytest.raises(ValueError, match="scale"):
        pcgrad.method_weights(gram, method="aligned_mtl", scale="max")
    with pytest.raises(ValueError, match="state"):
        pcgrad.aggregate(np.ones((2, 4), np.float32), method="gradvac", state=pcgrad.MethodState(3))


def _jacobians():
    rng = np.random.default_rng(12)
    out = []
    for t in (2, 3, 5):
        for _ in range(3):
            out.append(rng.standard_normal((t, 40)).astype(np.float32))
    # conflicting: two nearly opposite gradients and a third
    out.append(np.array([[1.0, 0.2, 0.0], [-1.0, 0.1, 0.3], [0.2, 1.0, -0.5]], dtype=np.float32))
    # conflicting: T = 2 at about 170 degrees; T = 5 with a near-opposite
    # pair and rows of norms 0.3 .. 3. (Rows scaled 1e-2 .. 1e2 give a Gram
    # of condition 1e8, beyond float32 input: the Jacobian's own rounding
    # then moves the weights of either side by O(1), so no comparison; the
    # Rust tests cover such scales against float64 references.)
    g0 = rng.standard_normal(40)
    g1 = -0.95 * g0 + 0.15 * rng.standard_normal(40)
    out.append(np.stack([g0, g1]).astype(np.float32))
    j5 = rng.standard_normal((5, 40))
    j5[1] = -0.9 * j5[0] + 0.3 * j5[1]
    j5 *= np.array([1.0, 1.0, 0.3, 3.0, 2.0])[:, None]
    out.append(j5.astype(np.float32))
    return out


# torchjd aggregators with this package's method and parameters for the same
# definition, and the tolerance on the merged vector relative to its largest
# entry. torchjd's solvers need its extras (quadprog-projector: qpsolvers +
# quadprog; cagrad: cvxpy + clarabel; nash-mtl: cvxpy + ecos), pinned in
# requirements-test.txt. The tolerances are what each solver allows on these
# float32 Jacobians (torchjd's Gram is float64 of the same values, ours is
# accumulated from float32 into float64, and the merged vector is float32, so
# 1e-6 of max |merged| is the floor for an exactly solved method):
# - MGDA, IMTL-G, Aligned-MTL, GradVac: 1e-5 (closed forms or the same
#   Frank-Wolfe steps; measured 1.2e-7 to 2.2e-7).
# - UPGrad, DualProj: 1e-5. Both solve the same box QPs on the same
#   H = G / tr(G) + 1e-4 I (torchjd's normalize and reg_eps; this package's
#   DualCone.reg default): quadprog's dual active set is exact up to rounding,
#   as is this package's block principal pivoting (measured 5.3e-8, 9.0e-8).
# - CAGrad (c = 0.4, this package's default, and c = 1): 2e-4 (twice the
#   bound below; measured 5.0e-5 and 7.8e-5). torchjd solves
#   the simplex problem by cvxpy/Clarabel (interior point, its default
#   tolerances about 1e-8 in the objective, so about 1e-4 in w where the
#   problem is flat) on G / tr(G); this package solves it exactly on
#   G / tr(G) + 1e-8 I, which moves the weights by about 1e-8. Where the hull
#   of the gradients touches 0 (|g_w| < 1e-4) torchjd returns zero weights and
#   this package the ridge's solution: not comparable, and none of the
#   Jacobians below is such a case (asserted).
# - NashMTL, clipped (the default max_norm = 1) and unclipped: 1e-3. torchjd
#   (after the official code) solves alpha_i (G alpha)_i = 1 on the raw G by
#   at most 20 cvxpy/ECOS convex programs, stopping once
#   |G alpha / |G|_F - 1 / alpha| < 1e-3; this package runs damped Newton to
#   near rounding (measured 5.4e-7 apart at most). The scales differ: this
#   package solves alpha_i (G alpha)_i = 1 on G / |G|_F
#   (src/methods docs), so its alpha is torchjd's times sqrt(|G|_F). With
#   torchjd's alpha, |J^T alpha|^2 = alpha^T G alpha = T, so its default
#   max_norm = 1 always clips for T >= 2, and this package's clips whenever
#   T |G|_F > 1 (every Jacobian below): the clipped merged vectors are then
#   the same by definition. Unclipped (torchjd max_norm = 0, here 1e300)
#   this package's weights are compared after dividing by sqrt(|G|_F), and
#   both fixed points are checked directly: torchjd's alpha to its own 1e-3
#   stop, this package's to 1e-5 (measured 1.1e-6 on the 170 degree pair,
#   below 1.5e-8 elsewhere).
TORCHJD = {
    "MGDA": (lambda t: tja.MGDA(), "mgda", {}, 1e-5),
    "IMTLG": (lambda t: tja.IMTLG(), "imtl_g", {}, 1e-5),
    "AlignedMTL": (lambda t: tja.AlignedMTL(), "aligned_mtl", {}, 1e-5),
    # T = 2 only below: one other task, so the visiting order is the same.
    "GradVac": (lambda t: tja.GradVac(), "gradvac", {}, 1e-5),
    "UPGrad": (lambda t: tja.UPGrad(), "upgrad", {}, 1e-5),
    "DualProj": (lambda t: tja.DualProj(), "dualproj", {}, 1e-5),
    "CAGrad(c=0.4)": (lambda t: tja.CAGrad(c=0.4), "cagrad", {"c": 0.4}, 2e-4),
    "CAGrad(c=1)": (lambda t: tja.CAGrad(c=1.0), "cagrad", {"c": 1.0}, 2e-4),
    # Two steps, each side's state carried over (torchjd warm starts from its
    # last alpha, this package from MethodState.alpha).
    "NashMTL": (lambda t: tja.NashMTL(n_tasks=t), "nash_mtl", {}, 1e-3),
    # No clipping (torchjd: max_norm = 0; this package: a bound never
    # reached), so that the scale of alpha is compared too, not only its
    # direction (this package's divided by sqrt(|G|_F), see above).
    "NashMTL(unclipped)": (lambda t: tja.NashMTL(n_tasks=t, max_norm=0.0), "nash_mtl",
                           {"max_norm": 1e300}, 1e-3),
}
STEPS = {"GradVac": 2, "NashMTL": 2, "NashMTL(unclipped)": 2}


@pytest.mark.parametrize("name", sorted(TORCHJD))
def test_agrees_with_torchjd(name):
    make, ours, params, tol = TORCHJD[name]
    worst = 0.0
    for j in _jacobians():
        t = j.shape[0]
        if name == "GradVac" and t != 2:
            continue
        agg = make(t)
        st = pcgrad.MethodState(t)
        j64 = j.astype(np.float64)
        if name.startswith("CAGrad"):
            w = agg.gramian_weighting(torch.from_numpy(j64 @ j64.T)).numpy()
            assert np.abs(w).max() > 0.0, "torchjd's zero-weight branch: not comparable"
        for step in range(STEPS.get(name, 1)):  # the state carried over
            theirs = agg(torch.from_numpy(j64)).numpy()
            mine = pcgrad.aggregate(j, method=ours, state=st, **params).astype(np.float64)
            res = np.abs(mine - theirs).max() / max(np.abs(theirs).max(), 1e-300)
            if name.startswith("NashMTL"):
                g = j64 @ j64.T
                fro = np.linalg.norm(g)
                a_mine, a_theirs = st.alpha, agg.weighting.prvs_alpha.astype(np.float64)
                assert np.abs(a_mine * (g / fro @ a_mine) - 1.0).max() < 1e-5
                assert np.abs(a_theirs * (g @ a_theirs) - 1.0).max() < 1e-3
                if name == "NashMTL(unclipped)":
                    res = np.abs(mine / np.sqrt(fro) - theirs).max() / np.abs(theirs).max()
            worst = max(worst, res)
    print(f"torchjd {name}: max residual {worst:.2e} (relative to max |merged|)")
    assert worst <= tol, f"{name}: residual {worst:.2e} > {tol:.0e}"
