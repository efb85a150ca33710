"""Shared fixtures of the Python suite: the repository's conformance vectors
(and ``PCGRAD_EXTRA_VECTORS``), and the summary line of the conformance run."""

import glob
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
REPO = os.path.dirname(os.path.dirname(HERE))
VECTORS = os.path.join(REPO, "tests", "data", "conformance")

# Filled by test_conformance.py, printed at the end of the run.
CONFORMANCE_PASSED = []


def vector_files():
    files = sorted(glob.glob(os.path.join(VECTORS, "*.json")))
    extra = os.environ.get("PCGRAD_EXTRA_VECTORS")
    if extra:
        found = sorted(glob.glob(os.path.join(extra, "**", "*.json"), recursive=True))
        if not found:
            raise RuntimeError(f"PCGRAD_EXTRA_VECTORS={extra} holds no *.json file")
        files += found
    if not files:
        raise RuntimeError(f"no conformance vectors in {VECTORS}")
    return files


def load_case(path):
    with open(path) as f:
        d = json.load(f)
    tasks, dim = d["num_tasks"], d["dim"]
    return {
        "name": d["name"],
        "mode": d["mode"],
        "reduction": d["reduction"],
        "tasks": tasks,
        "dim": dim,
        "segments": d["segments"],
        "has_grad": np.array(d["has_grad"], dtype=bool).reshape(tasks, len(d["segments"])),
        "orders": d.get("orders"),
        "grads": np.array(d["grads"], dtype=np.float32).reshape(tasks, dim),
        "merged": np.array(d["merged_f64_reference"], dtype=np.float64),
        "projected": np.array(d["projected_f64_reference"], dtype=np.float64).reshape(tasks, dim),
    }


def pytest_terminal_summary(terminalreporter):
    if CONFORMANCE_PASSED:
        terminalreporter.write_line(f"python conformance: {len(CONFORMANCE_PASSED)} cases passed")
