"""The Python demo runs (two epochs) and prints its table and plot."""

import os
import subprocess
import sys

from conftest import REPO


def test_multitask_torch_demo_runs(tmp_path):
    plot = tmp_path / "curves.png"
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "examples", "python", "multitask_torch.py"),
         "--epochs", "2", "--plot", str(plot)],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    for label in ("plain sum", "PCGrad sequ.", "PCGrad simu.", "digit acc", "steps with conflict"):
        assert label in out, out
    assert plot.stat().st_size > 10_000
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
