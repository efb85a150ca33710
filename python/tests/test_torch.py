"""pcgrad.torch against the float64 reference on a small multi-task model
(a shared trunk and task-specific heads, so some parameters have no gradient
for some tasks), the three CPU paths (per variable, packed, forced device
path) against each other, reproducibility of "shuffled" from a saved Rng,
and pcgrad.torch.merge."""

import copy

import numpy as np
import pytest
import torch

import pcgrad
import pcgrad.torch as pt
from reference import reference

TASKS = 3


class Net(torch.nn.Module):
    def __init__(self, dtype=torch.float32):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 6))
        self.heads = torch.nn.ModuleList([torch.nn.Linear(6, 1) for _ in range(TASKS)])
        self.unused = torch.nn.Linear(2, 2)  # reached by no task
        self.to(dtype)

    def losses(self, x, ys):
        h = torch.tanh(self.trunk(x))
        # task 2 uses heads 1 and 2: a head shared by two of three tasks
        outs = [self.heads[0](h), self.heads[1](h), self.heads[1](h) + self.heads[2](h)]
        return [torch.mean((o.squeeze(1) - y) ** 2) for o, y in zip(outs, ys)]


def batch(dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 5, generator=g, dtype=dtype)
    # opposite targets make the tasks' trunk gradients conflict
    y0 = x[:, 0] + x[:, 1]
    return x, [y0, -y0, x[:, 2]]


def task_grads(net, x, ys, params):
    """Per task, per parameter: the gradient or None (through autograd.grad)."""
    out = []
    for loss in net.losses(x, ys):
        gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        out.append([None if g is None else g.detach().to(torch.float64).numpy().ravel() for g in gs])
    return out


def reference_grads(net, x, ys, params, mode, orders, reduction):
    per = task_grads(net, x, ys, params)
    sizes = [p.numel() for p in params]
    has = np.array([[g is not None for g in row] for row in per])
    flat = np.stack([np.concatenate([np.zeros(n) if g is None else g for g, n in zip(row, sizes)])
                     for row in per]).astype(np.float32)  # the library reads float32
    merged, _, _, _, margin = reference(flat, mode, orders, reduction, sizes, has)
    return np.split(merged, np.cumsum(sizes)[:-1]), has, margin, float(np.max(np.abs(flat)))


def run(net, x, ys, **kw):
    path = kw.pop("cpu_path", "vars")
    opt = pt.PCGrad(torch.optim.SGD(net.parameters(), lr=0.1), **kw)
    opt.cpu_path = path
    opt.zero_grad()
    st = opt.pc_backward(net.losses(x, ys), stats=True)
    return [None if p.grad is None else p.grad.clone() for p in net.parameters()], st, opt


@pytest.mark.parametrize("mode", ["sequential", "simultaneous"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("path", ["vars", "packed", "device"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pc_backward_matches_the_reference(mode, reduction, path, dtype):
    net = Net(dtype)
    x, ys = batch(dtype)
    params = list(net.parameters())
    table = [[1, 2], [2, 0], [0, 1]]
    order = "fixed" if mode == "simultaneous" else np.array(table)
    got, st, _ = run(net, x, ys, mode=mode, order=order, reduction=reduction, cpu_path=path)
    want, has, margin, scale = reference_grads(net, x, ys, params, mode,
                                               None if mode == "simultaneous" else table, reduction)
    assert margin > 1e-4
    assert st.conflicting_pairs >= 1  # tasks 0 and 1 pull the trunk apart
    for p, g, w, reached in zip(params, got, want, has.any(axis=0)):
        if not reached:
            assert g is None  # the unused layer keeps grad None
            continue
        assert g.shape == p.shape and g.dtype == p.dtype
        np.testing.assert_allclose(g.to(torch.float64).numpy().ravel(), w, rtol=0, atol=5e-5 * scale)


def test_the_three_cpu_paths_agree_and_shuffled_replays():
    net = Net()
    x, ys = batch()
    a, _, opt_a = run(net, x, ys, seed=123)
    b, _, _ = run(net, x, ys, seed=123, cpu_path="packed")
    c, _, _ = run(net, x, ys, seed=123, cpu_path="device")
    for ga, gb, gc in zip(a, b, c):
        if ga is None:
            assert gb is None and gc is None
            continue
        assert torch.equal(ga, gb)
        torch.testing.assert_close(gc, ga, rtol=1e-5, atol=1e-6)
    # the Rng advanced; a saved copy replays the next step exactly
    assert opt_a.rng != pcgrad.Rng(123)
    saved = copy.copy(opt_a.rng)
    opt_a.zero_grad()
    opt_a.pc_backward(net.losses(x, ys))
    step2 = [None if p.grad is None else p.grad.clone() for p in net.parameters()]
    replay = pt.PCGrad(torch.optim.SGD(net.parameters(), lr=0.1), seed=0)
    replay.rng = saved
    replay.zero_grad()
    replay.pc_backward(net.losses(x, ys))
    for g, p in zip(step2, net.parameters()):
        assert (g is None and p.grad is None) or torch.equal(g, p.grad)


def test_training_steps_are_reproducible_and_change_the_weights():
    def train(seed):
        net = Net()
        opt = pt.PCGrad(torch.optim.SGD(net.parameters(), lr=0.05), seed=seed)
        for step in range(5):
            x, ys = batch(seed=step)
            opt.zero_grad()
            opt.pc_backward(net.losses(x, ys))
            opt.step()
        return [p.detach().clone() for p in net.parameters()]
    w1, w2 = train(7), train(7)
    assert all(torch.equal(a, b) for a, b in zip(w1, w2))
    assert not all(torch.equal(a, b) for a, b in zip(w1, list(Net().parameters())))


def test_merge_convenience():
    g = torch.randn(4, 1000, generator=torch.Generator().manual_seed(2))
    m = pt.merge(g)
    assert m.dtype == torch.float32 and m.shape == (1000,)
    np.testing.assert_array_equal(m.numpy(), pcgrad.merge(g.numpy()))
    md = pt.merge(g, device_path=True)
    torch.testing.assert_close(md, m, rtol=1e-5, atol=1e-6)
    m64 = pt.merge(g.double(), mode="simultaneous")
    assert m64.dtype == torch.float64
    # float64 is computed in float64 (pcgrad_merge_flat_f64): the NumPy
    # float64 result exactly, the float32 one up to float32 rounding
    np.testing.assert_array_equal(m64.numpy(), pcgrad.merge(g.double().numpy(), mode="simultaneous"))
    np.testing.assert_allclose(m64.numpy(), pcgrad.merge(g.numpy(), mode="simultaneous"), rtol=0,
                               atol=1e-6 * float(g.abs().max()))
    s1 = pt.merge(g, order="shuffled", rng=5)
    s2 = pt.merge(g, order="shuffled", rng=5, device_path=True)
    torch.testing.assert_close(s1, s2, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="grads"):
        pt.merge(g.numpy())
    with pytest.raises(ValueError, match="grads"):
        pt.merge(g[0])


def test_bad_input():
    net = Net()
    x, ys = batch()
    opt = pt.PCGrad(torch.optim.SGD(net.parameters(), lr=0.1))
    assert opt.optimizer is not None
    with pytest.raises(ValueError, match="objectives"):
        opt.pc_backward([])
    with pytest.raises(ValueError, match="objectives"):
        opt.pc_backward([torch.ones(3)])
    with pytest.raises(ValueError, match="reaches"):
        opt.pc_backward([torch.ones((), requires_grad=True) * 2.0])
    with pytest.raises(TypeError, match="optimizer"):
        pt.PCGrad(net)
    with pytest.raises(ValueError, match="mode"):
        pt.PCGrad(torch.optim.SGD(net.parameters(), lr=0.1), mode="both")
    nan = [net.losses(x, ys)[0] * float("nan")] + net.losses(x, ys)[1:]
    opt.zero_grad()
    opt.pc_backward(nan)  # no check_finite: NaN propagates, no crash
    assert torch.isnan(net.trunk[0].weight.grad).any()
