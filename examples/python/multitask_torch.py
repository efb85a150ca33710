"""Multi-task learning on real data with pcgrad.torch.PCGrad.

scikit-learn's bundled handwritten digits (1797 8x8 images, shipped inside the
package: no download) with three tasks on one shared trunk and a head each:

- ``digit``: which digit (10 classes),
- ``parity``: odd or even,
- ``gt4``: greater than 4 or not.

Three runs from the same initial weights, the same minibatch order and the
same seed: plain summing of the task losses, PCGrad sequential (the paper's
Algorithm 1, shuffled order) and PCGrad simultaneous (the seed's PCGrad and
PPCGrad), both with reduction="sum" so that PCGrad equals plain summing
whenever no gradients conflict. Prints per-task held-out losses and
accuracies and how often the task gradients conflicted; saves a plot of the
per-task held-out loss curves.

    python examples/python/multitask_torch.py [--epochs 40] [--plot multitask_torch.png]
"""

import argparse
import copy
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import pcgrad.torch as pt

TASKS = ["digit", "parity", "gt4"]


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = torch.nn.Sequential(
            torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32), torch.nn.ReLU()
        )
        self.heads = torch.nn.ModuleList(
            [torch.nn.Linear(32, 10), torch.nn.Linear(32, 2), torch.nn.Linear(32, 2)]
        )

    def forward(self, x):
        h = self.trunk(x)
        return [head(h) for head in self.heads]


def labels(y):
    return [y, y % 2, (y > 4).long()]


def losses(net, x, ys):
    return [torch.nn.functional.cross_entropy(o, y) for o, y in zip(net(x), ys)]


def evaluate(net, x, ys):
    with torch.no_grad():
        outs = net(x)
        loss = [float(torch.nn.functional.cross_entropy(o, y)) for o, y in zip(outs, ys)]
        acc = [float((o.argmax(1) == y).float().mean()) for o, y in zip(outs, ys)]
    return loss, acc


def train(method, init, data, epochs, batch, lr, seed):
    x_tr, ys_tr, x_te, ys_te = data
    net = copy.deepcopy(init)
    sgd = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    opt = None
    if method != "sum":
        opt = pt.PCGrad(sgd, mode=method, reduction="sum", order="shuffled", seed=seed)
    order_gen = torch.Generator().manual_seed(seed)
    curves = []
    steps = conflicted = pairs = projections = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(x_tr), generator=order_gen)
        for k in range(0, len(perm), batch):
            idx = perm[k: k + batch]
            ls = losses(net, x_tr[idx], [y[idx] for y in ys_tr])
            if opt is None:
                sgd.zero_grad()
                sum(ls).backward()
                sgd.step()
            else:
                opt.zero_grad()
                st = opt.pc_backward(ls, stats=True)
                opt.step()
                conflicted += st.conflicting_pairs > 0
                pairs += st.conflicting_pairs
                projections += st.projections
            steps += 1
        curves.append(evaluate(net, x_te, ys_te)[0])
    seconds = time.perf_counter() - t0
    loss, acc = evaluate(net, x_te, ys_te)
    return dict(curves=np.array(curves), loss=loss, acc=acc, steps=steps, conflicted=conflicted,
                pairs=pairs, projections=projections, seconds=seconds)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default="multitask_torch.png", help="PNG file of the curves ('' for none)")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    digits = load_digits()
    x = digits.data.astype(np.float32) / 16.0
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=args.seed, stratify=y)
    data = (torch.from_numpy(x_tr), labels(torch.from_numpy(y_tr)),
            torch.from_numpy(x_te), labels(torch.from_numpy(y_te)))
    init = Net()  # one initialisation, deep-copied into every run

    runs = {}
    for method in ("sum", "sequential", "simultaneous"):
        runs[method] = train(method, init, data, args.epochs, args.batch, args.lr, args.seed)

    print(f"digits: {len(x_tr)} train / {len(x_te)} held out, {args.epochs} epochs, batch {args.batch}, "
          f"SGD lr {args.lr} momentum 0.9, seed {args.seed}")
    print(f"{'method':14s}" + "".join(f"{t + ' loss':>13s}{t + ' acc':>11s}" for t in TASKS)
          + f"{'steps with conflict':>21s}{'pairs/step':>12s}{'proj/step':>11s}{'s':>7s}")
    for method, r in runs.items():
        row = "".join(f"{l:13.4f}{a:11.3f}" for l, a in zip(r["loss"], r["acc"]))
        if method == "sum":
            extra = f"{'-':>21s}{'-':>12s}{'-':>11s}"
        else:
            extra = (f"{100.0 * r['conflicted'] / r['steps']:20.1f}%{r['pairs'] / r['steps']:12.2f}"
                     f"{r['projections'] / r['steps']:11.2f}")
        label = "plain sum" if method == "sum" else f"PCGrad {method[:4]}."
        print(f"{label:14s}{row}{extra}{r['seconds']:7.1f}")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(TASKS), figsize=(12, 3.6))
        epochs = np.arange(1, args.epochs + 1)
        for k, (ax, task) in enumerate(zip(axes, TASKS)):
            for method, r in runs.items():
                ax.plot(epochs, r["curves"][:, k], label="plain sum" if method == "sum" else f"PCGrad {method}")
            ax.set_title(f"{task}: held-out loss")
            ax.set_xlabel("epoch")
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
