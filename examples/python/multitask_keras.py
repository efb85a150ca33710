"""Multi-task learning on real data with pcgrad.tensorflow.PCGrad, the
TensorFlow drop-in.

The training step of the original TensorFlow document (a Keras
``Sequential`` model, SGD, a ``tf.function`` step with one ``pc_backward``
per step), on scikit-learn's bundled handwritten digits (1797 8x8 images,
shipped inside the package: no download) with three label tasks read from
slices of the model's one output layer:

- ``digit``: which digit (10 classes),
- ``parity``: odd or even,
- ``gt4``: greater than 4 or not.

Four runs from the same initial weights and the same minibatch order: plain
summing of the task losses, PCGrad with ``reduction="sum"`` (simultaneous,
the original classes' projection; equal to plain summing on a step without
conflict), the same in the paper's sequential mode, and PCGrad with the
original default ``reduction="mean"`` (the same direction, a third of the
step). Prints each task's held-out accuracy and the share of steps on which
two task gradients conflicted.

    python examples/python/multitask_keras.py [--epochs 30] [--lr 0.05]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from pcgrad.tensorflow import PCGrad

TASKS = ["digit", "parity", "gt4"]
SLICES = [(0, 10), (10, 12), (12, 14)]


def data(seed):
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)

    def tasks(y):
        return [y.astype(np.int64), (y % 2).astype(np.int64), (y > 4).astype(np.int64)]

    return xtr, tasks(ytr), xte, tasks(yte)


def make_model():
    return tf.keras.Sequential([
        tf.keras.Input((64,)),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(14),  # logits of the three tasks, side by side
    ])


def task_losses(logits, y_tasks):
    return [tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
        y, logits[:, a:b], from_logits=True)) for y, (a, b) in zip(y_tasks, SLICES)]


def train(name, weights, xtr, ytr, args):
    model = make_model()
    model.set_weights(weights)
    optimizer = tf.keras.optimizers.SGD(learning_rate=args.lr)
    surgeon = {"PCGrad sum": PCGrad(reduction="sum"),
               "PCGrad sequ. sum": PCGrad(reduction="sum", mode="sequential", seed=args.seed),
               "PCGrad mean": PCGrad(reduction="mean")}.get(name)
    probe = PCGrad()  # pack_grad only: the per-task gradients, to count conflicts

    @tf.function
    def train_step(x_batch, y_batch_tasks):
        with tf.GradientTape(persistent=True) as tape:
            losses = task_losses(model(x_batch), y_batch_tasks)
            total = tf.add_n(losses)
        flat, _, _ = probe.pack_grad(tape, losses, model.trainable_variables)
        g = tf.stack(flat)
        gram = tf.linalg.matmul(g, g, transpose_b=True)
        conflict = tf.reduce_any(gram < 0)
        if surgeon is None:
            grads = tape.gradient(total, model.trainable_variables)
        else:
            grads = surgeon.pc_backward(tape, losses, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return conflict

    order = np.random.default_rng(args.seed)
    steps = conflicts = 0
    for _ in range(args.epochs):
        perm = order.permutation(len(xtr))
        for k in range(0, len(perm) - args.batch + 1, args.batch):
            idx = perm[k:k + args.batch]
            conflicts += int(train_step(tf.constant(xtr[idx]), [tf.constant(y[idx]) for y in ytr]))
            steps += 1
    return model, conflicts / max(steps, 1)


def accuracies(model, x, y_tasks):
    logits = model(tf.constant(x)).numpy()
    return [float(np.mean(np.argmax(logits[:, a:b], axis=1) == y)) for y, (a, b) in zip(y_tasks, SLICES)]


def main(argv=None):
    ap = argparse.ArgumentParser(description="plain summing vs pcgrad.tensorflow.PCGrad on digits")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    tf.keras.utils.set_random_seed(args.seed)
    xtr, ytr, xte, yte = data(args.seed)
    weights = make_model().get_weights()
    print(f"digits: {len(xtr)} train, {len(xte)} held out; {args.epochs} epochs, batch {args.batch}, "
          f"SGD lr {args.lr}, seed {args.seed}")
    print(f"{'run':<18}" + "".join(f"{t + ' acc':>12}" for t in TASKS) + f"{'conflicting steps':>19}{'s':>7}")
    results = {}
    for name in ("plain sum", "PCGrad sum", "PCGrad sequ. sum", "PCGrad mean"):
        t0 = time.perf_counter()
        model, share = train(name, weights, xtr, ytr, args)
        accs = accuracies(model, xte, yte)
        results[name] = accs
        print(f"{name:<18}" + "".join(f"{a:>12.3f}" for a in accs)
              + f"{share:>18.0%}{time.perf_counter() - t0:>8.1f}", flush=True)
    return results


if __name__ == "__main__":
    main()
