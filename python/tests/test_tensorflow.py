"""pcgrad.tensorflow, the drop-in for the TensorFlow ``PCGrad``/``PPCGrad``
classes: every conformance vector through ``project_conflicting`` (the vectors
are the original classes' output), ``pc_backward`` on a Keras model with
task-specific heads against the float64 reference, eager and ``tf.function``
results identical, static shapes kept in graphs, the original document's
example training step run as written with only its import changed, the
Keras demo, and the errors. TensorFlow is imported once (``tf_import``)."""

import contextlib
import copy
import importlib.util
import io
import os

import numpy as np
import pytest

from tf_import import keras, tf
import pcgrad
from pcgrad.tensorflow import PCGrad, PPCGrad
from conftest import REPO, load_case, vector_files
from reference import reference

FILES = vector_files()
TOL = 1e-5


def close(got, want, scale, what):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    tol = TOL * max(scale, 1e-30)
    assert err <= tol, f"{what}: differs by {err:e} (tolerance {tol:e})"


def flat_masks(case):
    mask = np.repeat(case["has_grad"], case["segments"], axis=1)
    grads = np.where(mask, case["grads"], 0).astype(np.float32)  # as pack_grad makes them
    return grads, mask


def surgeon(cls, case):
    if case["mode"] == "simultaneous":
        return cls(reduction=case["reduction"])
    t = case["tasks"]
    table = np.array(case["orders"], dtype=np.int64).reshape(t, max(t - 1, 0))
    return cls(reduction=case["reduction"], mode="sequential", order=table)


# ---------------------------------------------------------------------------
# conformance vectors


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(f)[:-5] for f in FILES])
def test_conformance_vector_through_project_conflicting(path):
    c = load_case(path)
    grads, mask = flat_masks(c)
    scale = float(np.max(np.abs(grads))) if grads.size else 0.0
    classes = (PCGrad, PPCGrad) if c["mode"] == "simultaneous" else (PCGrad,)
    for cls in classes:
        pc = surgeon(cls, c)
        g = [tf.constant(row) for row in grads]
        h = [tf.constant(row.astype(np.float32)) for row in mask]
        eager = pc.project_conflicting(g, h)
        assert eager.dtype == tf.float32 and eager.shape == (c["dim"],)
        close(eager, c["merged"], scale, f"{c['name']} {cls.__name__} eager")
        if cls is PCGrad:  # (PPCGrad is the same code: one graph per vector)
            graph = tf.function(lambda a, b: pc.project_conflicting(a, b))(g, h)
            np.testing.assert_array_equal(graph.numpy(), eager.numpy())
        m64 = pc.project_conflicting([tf.constant(r, tf.float64) for r in grads],
                                     [tf.constant(r, tf.float64) for r in mask])
        assert m64.dtype == tf.float64
        close(m64, c["merged"], scale, f"{c['name']} {cls.__name__} float64")


# ---------------------------------------------------------------------------
# project_conflicting on edge cases, against the float64 reference


def _edge_cases():
    rng = np.random.default_rng(7)
    a = rng.standard_normal(13)
    yield "T1", a[None, :]
    yield "zero", np.stack([np.zeros(13), a, -a])
    yield "identical", np.stack([a, a, a])
    yield "opposite", np.stack([a, -a])
    yield "tiny", rng.standard_normal((4, 37)) * 1e-30
    yield "huge", rng.standard_normal((4, 37)) * 1e30
    yield "N17_T5", rng.standard_normal((5, 17))


@pytest.mark.parametrize("name,grads", list(_edge_cases()), ids=[n for n, _ in _edge_cases()])
def test_edge_cases_against_reference(name, grads):
    grads = grads.astype(np.float32)
    tasks, dim = grads.shape
    scale = float(np.max(np.abs(grads)))
    ones = [tf.ones(dim)] * tasks
    for reduction in ("mean", "sum"):
        want = reference(grads, "simultaneous", None, reduction)[0]
        got = PCGrad(reduction).project_conflicting([tf.constant(r) for r in grads], ones)
        close(got, want, scale, f"{name} simultaneous {reduction}")
        want = reference(grads, "sequential", None, reduction)[0]
        got = PCGrad(reduction, mode="sequential", order="fixed").project_conflicting(
            [tf.constant(r) for r in grads], ones)
        close(got, want, scale, f"{name} sequential {reduction}")


def test_project_conflicting_leaves_the_callers_list_alone():
    g = [tf.constant([1.0, 0.0]), tf.constant([-1.0, 1.0]), tf.constant([0.0, -1.0])]
    h = [tf.ones(2)] * 3
    before = list(g)
    PCGrad().project_conflicting(g, h)
    assert all(x is y for x, y in zip(g, before))


# ---------------------------------------------------------------------------
# pc_backward on a Keras model with task-specific heads


def heads_model(dtype="float32", seed=3):
    """A shared trunk and three heads; task t's loss reads head t only, task 2
    also reads head 0 (so head 0 is shared by tasks 0 and 2)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((6,), dtype=dtype)
    z = keras.layers.Dense(5, activation="tanh", dtype=dtype, name="trunk")(inp)
    outs = [keras.layers.Dense(k, dtype=dtype, name=f"head{t}")(z) for t, k in enumerate((3, 2, 4))]
    model = keras.Model(inp, outs)
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.standard_normal((16, 6)), dtype=dtype)
    ys = [tf.constant(rng.integers(0, k, 16)) for k in (3, 2, 4)]
    return model, x, ys


def task_losses(model, x, ys):
    o = model(x)
    ce = keras.losses.sparse_categorical_crossentropy
    return [tf.reduce_mean(ce(ys[0], o[0], from_logits=True)),
            tf.reduce_mean(ce(ys[1], o[1], from_logits=True)),
            tf.reduce_mean(ce(ys[2], o[2], from_logits=True)) + 0.1 * tf.reduce_sum(o[0] ** 2) / 16]


def backward(pc, model, x, ys):
    with tf.GradientTape(persistent=True) as tape:
        losses = task_losses(model, x, ys)
    packed, shapes, masks = pc.pack_grad(tape, losses, model.trainable_variables)
    merged = pc.pc_backward(tape, losses, model.trainable_variables)
    return packed, shapes, masks, merged


def segments_of(model):
    return [int(np.prod(v.shape)) for v in model.trainable_variables]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pc_backward_keras_against_reference(dtype):
    model, x, ys = heads_model(dtype)
    seg = segments_of(model)
    table = np.array([[2, 1], [0, 2], [1, 0]])
    for reduction in ("mean", "sum"):
        for mode, order, orders in (("simultaneous", "shuffled", None),
                                    ("sequential", "fixed", None),
                                    ("sequential", table, table.tolist())):
            pc = PCGrad(reduction, mode=mode, order=order)
            packed, shapes, masks, merged = backward(pc, model, x, ys)
            g = np.stack([p.numpy() for p in packed])
            m = np.stack([h.numpy() for h in masks]) != 0
            # the heads each task does not reach: zeros and a false mask
            bounds = np.cumsum([0] + seg)
            hg = np.array([[bool(m[t, bounds[s]]) for s in range(len(seg))] for t in range(3)])
            assert hg.tolist() == [[True] * 4 + [False] * 4,
                                   [True] * 2 + [False] * 2 + [True] * 2 + [False] * 2,
                                   [True] * 4 + [False] * 2 + [True] * 2]
            assert not np.any(g[~m])
            assert [tuple(s) for s in shapes] == [tuple(v.shape) for v in model.trainable_variables]
            want = reference(g, mode, orders, reduction, seg, hg)[0]
            assert len(merged) == len(model.trainable_variables)
            for out, v in zip(merged, model.trainable_variables):
                assert out.dtype == tf.as_dtype(dtype) and tuple(out.shape) == tuple(v.shape)
            got = np.concatenate([o.numpy().reshape(-1) for o in merged])
            close(got, want, float(np.max(np.abs(g))), f"{dtype} {mode} {reduction}")
            # pack_grad + project_conflicting gives the same merged gradient
            flat = pc.project_conflicting(packed, masks)
            close(flat, want, float(np.max(np.abs(g))), f"{dtype} {mode} {reduction} flat")


def test_sum_and_mean_follow_the_rule_on_heads():
    """mean = sum / T on the shared trunk, = sum on the task-specific heads."""
    model, x, ys = heads_model()
    _, _, _, mean = backward(PCGrad("mean"), model, x, ys)
    _, _, _, total = backward(PCGrad("sum"), model, x, ys)
    for s, (a, b) in enumerate(zip(mean, total)):
        factor = 1 / 3 if s < 2 else 1.0
        np.testing.assert_allclose(a.numpy(), b.numpy() * factor, rtol=1e-5, atol=1e-7)


def test_eager_and_tf_function_identical_with_static_shapes():
    model, x, ys = heads_model()
    for make in (lambda: PPCGrad("sum", seed=11),
                 lambda: PCGrad(mode="sequential", order="shuffled", seed=11)):
        pc_e, pc_g = make(), make()
        traced_shapes = []

        @tf.function
        def step(x):
            with tf.GradientTape(persistent=True) as tape:
                losses = task_losses(model, x, ys)
            packed, _, masks = pc_g.pack_grad(tape, losses, model.trainable_variables)
            out = pc_g.pc_backward(tape, losses, model.trainable_variables)
            traced_shapes.append([o.shape for o in out])
            return packed, out

        for _ in range(2):  # the shuffled order advances identically in both
            with tf.GradientTape(persistent=True) as tape:
                losses = task_losses(model, x, ys)
            eager_packed, _, _ = pc_e.pack_grad(tape, losses, model.trainable_variables)
            eager = pc_e.pc_backward(tape, losses, model.trainable_variables)
            graph_packed, graph = step(x)
            for a, b in zip(eager_packed, graph_packed):
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
            for a, b in zip(eager, graph):
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
        assert pc_e.rng == pc_g.rng
        assert traced_shapes and all(
            [tuple(s) for s in shp] == [tuple(v.shape) for v in model.trainable_variables]
            and all(s.is_fully_defined() for s in shp) for shp in traced_shapes)

    # the same gradients in, bitwise the same merged gradient out
    g = [tf.constant(r) for r in np.random.default_rng(1).standard_normal((4, 301)).astype(np.float32)]
    h = [tf.ones(301)] * 4
    h[2] = tf.concat([tf.ones(100), tf.zeros(201)], 0)
    g[2] = g[2] * h[2]
    for pc in (PCGrad(), PCGrad("sum", mode="sequential", order="fixed")):
        e = pc.project_conflicting(g, h)
        f = tf.function(pc.project_conflicting)(g, h)
        assert f.shape == (301,)
        np.testing.assert_array_equal(e.numpy(), f.numpy())


def test_shuffled_sequential_replays_from_seed_and_rng():
    grads = np.random.default_rng(5).standard_normal((5, 40)).astype(np.float32)
    g = [tf.constant(r) for r in grads]
    h = [tf.ones(40)] * 5
    a = PCGrad(mode="sequential", seed=42)
    b = PCGrad(mode="sequential", seed=42)
    saved = copy.copy(a.rng)
    first = [a.project_conflicting(g, h).numpy() for _ in range(3)]
    assert a.rng != saved  # advances every call
    second = [b.project_conflicting(g, h).numpy() for _ in range(3)]
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x, y)
    # and the library with the same Rng state agrees
    np.testing.assert_array_equal(first[0], pcgrad.merge(grads, order="shuffled", rng=saved))


# ---------------------------------------------------------------------------
# the original document's example, as written (only the import changed)


# The example of the original document, as written there but for its import
# (``from pcgrad import PCGrad``); it leaves ``train_dataset`` to the reader.
SEED_EXAMPLE = """
import tensorflow as tf
from pcgrad.tensorflow import PCGrad
# Define model and tasks
model = tf.keras.Sequential([
    tf.keras.layers.Dense(64, activation='relu', input_shape=(784,)),
    tf.keras.layers.Dense(10)
])
# Instantiate PCGrad
pcgrad = PCGrad(reduction='mean')
optimizer = tf.keras.optimizers.SGD(learning_rate=0.01)
# Custom training step with PCGrad
@tf.function
def train_step(x_batch, y_batch_tasks):
    # y_batch_tasks is a list of labels per task
    with tf.GradientTape(persistent=True) as tape:
        losses = [
            tf.keras.losses.sparse_categorical_crossentropy(y, model(x_batch), from_logits=True)
            for y in y_batch_tasks
        ]
    # Compute PCGrad-adjusted gradients
    pc_grads = pcgrad.pc_backward(tape, losses, model.trainable_variables)
    # Apply gradients
    optimizer.apply_gradients(zip(pc_grads, model.trainable_variables))
# Example training loop
for epoch in range(10):
    for x_batch, y_batch_tasks in train_dataset:
        train_step(x_batch, y_batch_tasks)
"""


class _Batches:
    """``train_dataset`` for the example: a tf.data pipeline of 48 samples in
    batches of 32 and 16 with three label tasks, which also records the model's
    weights when the first epoch starts (for the replay below)."""

    def __init__(self, ns, dataset):
        self.ns, self.dataset, self.w0 = ns, dataset, None

    def __iter__(self):
        if self.w0 is None:
            self.w0 = [v.numpy().copy() for v in self.ns["model"].trainable_variables]
        return iter(self.dataset)


@pytest.mark.filterwarnings("ignore:Do not pass an `input_shape`")  # Keras 3 on the example's layer
def test_seed_example_training_step_as_written():
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((48, 784)).astype(np.float32)
    ys = tuple(rng.integers(0, 10, 48) for _ in range(3))
    dataset = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(32)
    ns = {}
    ns["train_dataset"] = batches = _Batches(ns, dataset)
    exec(compile(SEED_EXAMPLE, "seed_example", "exec"), ns)
    model, optimizer = ns["model"], ns["optimizer"]
    assert isinstance(ns["pcgrad"], PCGrad)

    # The same 20 steps (10 epochs of 2 batches) by hand: float64 reference projection, plain SGD.
    w0 = batches.w0
    ref = keras.Sequential([keras.Input((784,)), keras.layers.Dense(64, activation="relu"),
                            keras.layers.Dense(10)])
    for v, w in zip(ref.trainable_variables, w0):
        v.assign(w)
    seg = [w.size for w in w0]
    for epoch in range(10):
        for x_batch, y_batch_tasks in dataset:
            with tf.GradientTape(persistent=True) as tape:
                losses = [keras.losses.sparse_categorical_crossentropy(y, ref(x_batch), from_logits=True)
                          for y in y_batch_tasks]
            g = np.stack([np.concatenate([d.numpy().reshape(-1) for d in
                                          tape.gradient(loss, ref.trainable_variables)])
                          for loss in losses])
            merged = reference(g, "simultaneous", None, "mean", seg)[0]
            start = 0
            for v, n in zip(ref.trainable_variables, seg):
                v.assign(v.numpy() - 0.01 * merged[start:start + n].reshape(v.shape).astype(np.float32))
                start += n
    assert int(optimizer.iterations.numpy()) == 20
    for v, r, w in zip(model.trainable_variables, ref.trainable_variables, w0):
        assert not np.array_equal(v.numpy(), w)
        np.testing.assert_allclose(v.numpy(), r.numpy(), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------
# the Keras demo (one short run, in this process: TensorFlow is loaded once)


def test_multitask_keras_demo_runs():
    path = os.path.join(REPO, "examples", "python", "multitask_keras.py")
    spec = importlib.util.spec_from_file_location("multitask_keras", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        results = mod.main(["--epochs", "2"])
    out = buf.getvalue()
    for label in ("plain sum", "PCGrad", "digit acc", "parity acc", "conflicting steps"):
        assert label in out, out
    for name, accs in results.items():
        assert len(accs) == 3 and all(0.0 <= a <= 1.0 for a in accs), (name, accs)
        assert accs[1] > 0.6, (name, accs)  # parity learnt after two epochs


# ---------------------------------------------------------------------------
# errors


def test_bad_input_raises_clear_exceptions():
    model, x, ys = heads_model()
    variables = model.trainable_variables
    with pytest.raises(ValueError, match="reduction"):
        PCGrad("avg")
    with pytest.raises(ValueError, match="mode"):
        PPCGrad(mode="parallel")
    with pytest.raises(ValueError, match="order"):
        PCGrad(mode="sequential", order="random")
    with pytest.raises(TypeError, match="seed"):
        PCGrad(seed="x")
    pc = PCGrad()
    with tf.GradientTape(persistent=True) as tape:
        losses = task_losses(model, x, ys)
    with pytest.raises(ValueError, match="losses is empty"):
        pc.pc_backward(tape, [], variables)
    with pytest.raises(ValueError, match="losses is empty"):
        pc.pack_grad(tape, [], variables)
    with pytest.raises(TypeError, match="losses must be a list"):
        pc.pc_backward(tape, tf.stack(losses), variables)
    with pytest.raises(ValueError, match="variables is empty"):
        pc.pc_backward(tape, losses, [])
    with pytest.raises(TypeError, match="tape"):
        pc.pc_backward(None, losses, variables)
    # a variable no task reaches (here: one outside the model)
    stray = tf.Variable(tf.zeros(3), name="stray")
    with pytest.raises(ValueError, match=r"no loss reaches variables\[8\]"):
        pc.pc_backward(tape, losses, list(variables) + [stray])
    # an order table of the wrong shape, found before any graph is built
    with pytest.raises(ValueError, match="order table"):
        PCGrad(mode="sequential", order=[[1], [0]]).pc_backward(tape, losses, variables)
    with pytest.raises(ValueError, match="order table"):
        tf.function(lambda: PCGrad(mode="sequential", order=[[1], [0]]).pc_backward(
            tape, losses, variables))()
    # a non-persistent tape with several losses
    with tf.GradientTape() as once:
        losses1 = task_losses(model, x, ys)
    with pytest.raises(RuntimeError, match="persistent"):
        pc.pc_backward(once, losses1, variables)
    # other dtypes
    v16 = tf.Variable(tf.ones(3, tf.float16))
    with tf.GradientTape(persistent=True) as tape16:
        l16 = [tf.reduce_sum(v16 * 2), tf.reduce_sum(v16 ** 2)]
    with pytest.raises(TypeError, match="float16"):
        pc.pc_backward(tape16, l16, [v16])
    with pytest.raises(TypeError, match="float16"):
        pc.project_conflicting([tf.ones(3, tf.float16)] * 2, [tf.ones(3)] * 2)
    with pytest.raises(TypeError, match=r"grads\[1\] is float64"):
        pc.project_conflicting([tf.ones(3), tf.ones(3, tf.float64)], [tf.ones(3)] * 2)
    # mismatched lists
    with pytest.raises(ValueError, match="grads is empty"):
        pc.project_conflicting([], [])
    with pytest.raises(ValueError, match="has_grads has 1"):
        pc.project_conflicting([tf.ones(3)] * 2, [tf.ones(3)])
    with pytest.raises(ValueError, match=r"grads\[1\] has 4 values"):
        pc.project_conflicting([tf.ones(3), tf.ones(4)], [tf.ones(3)] * 2)
    with pytest.raises(ValueError, match=r"has_grads\[0\] has 2 values"):
        pc.project_conflicting([tf.ones(3)] * 2, [tf.ones(2), tf.ones(3)])
    with pytest.raises(ValueError, match="1-D"):
        pc.project_conflicting([tf.ones((3, 1))] * 2, [tf.ones(3)] * 2)
    with pytest.raises(TypeError, match="list"):
        pc.project_conflicting(tf.ones((2, 3)), [tf.ones(3)] * 2)
    # a value where the mask says "no gradient"
    with pytest.raises(ValueError, match=r"grads\[1\] is nonzero where has_grads\[1\] is 0"):
        pc.project_conflicting([tf.ones(3)] * 2, [tf.ones(3), tf.constant([1.0, 0.0, 1.0])])
    # lengths known only when the graph runs: a TensorFlow error that names it
    f = tf.function(lambda a, b: pc.project_conflicting([a, b], [tf.ones_like(a), tf.ones_like(b)]),
                    input_signature=[tf.TensorSpec([None])] * 2)
    with pytest.raises(tf.errors.OpError, match=r"grads\[1\] has shape"):
        f(tf.ones(3), tf.ones(4))
