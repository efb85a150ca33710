#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/seeds/<target>/) and
the dictionary of special floats (fuzz/floats.dict): every conformance
vector of tests/data/conformance/ encoded in the targets' input format
(the header read by `problem_input`, then each target's choices), and the
edge cases of the tests (T = 1, zeros, identical and opposite rows, 1e-30
and 1e30, near f32::MAX, N not a multiple of 8, NaN and Inf with and
without check_finite). Deterministic: rerun after changing the format.

    python3 fuzz/make_seeds.py
"""
import glob
import json
import math
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Largest T and N each target reads (see its `problem_input` call).
LIMITS = {
    "ffi_flat": (16, 1100),
    "ffi_vars": (12, 200),
    "ffi_phases": (10, 300),
    "rust_api": (12, 200),
    "differential": (16, 1100),
}


def u8(v):
    return bytes([v & 0xFF])


def u16(v):
    return struct.pack("<H", v)


def u64(v):
    return struct.pack("<Q", v)


def f32_bits(x):
    return struct.pack("<f", x)


def header(tasks, dim, segments, has_grad, grads):
    """The bytes `problem_input` reads back as this problem."""
    out = u16(tasks - 1) + u8(1) + u16(dim)
    if segments:
        out += u8(1) + u16(len(segments) - 1)
        for s in segments[:-1]:
            out += u16(s)
    else:
        out += u8(0)
    if has_grad:
        out += u8(1) + b"".join(u8(0 if h else 2) for h in has_grad)
    else:
        out += u8(0)
    out += u16(0) + u8(0)  # scale 1, independent values
    for x in grads:
        out += u8(12) + f32_bits(x)  # raw bits
    return out


def table_bytes(orders):
    """The Fisher-Yates draws that turn each ascending row into `orders`."""
    out = b""
    for i, want in enumerate(orders):
        row = [j for j in range(len(orders)) if j != i]
        for k in range(len(row) - 1, 0, -1):
            r = row.index(want[k])
            assert r <= k
            out += u16(r)
            row[k], row[r] = row[r], row[k]
        assert row == list(want), (row, want)
    return out


def cfg_bytes(tasks, orders, mean, check=0, matrix=0):
    seq = orders is not None
    out = b""
    for v in (0 if seq else 1, 2 if seq else 0, 0 if mean else 1, check, matrix):
        out += u8(0) + u8(v)
    out += u8(0)  # threads
    table = orders if seq else [[j for j in range(tasks) if j != i] for i in range(tasks)]
    out += table_bytes(table)
    if not seq:
        out += u8(0)  # table pointer: its own buffer
    out += u8(0)  # no table mutation (read only when explicit)
    out += u64(0x9E3779B97F4A7C15)  # PRNG state
    if not seq:
        out += u16(0)  # unused PRNG: its own buffer
    out += u8(0)  # config pointer: its own
    return out


def tails(target, tasks, dim, orders, mean, check=0):
    """The per-target choices after the header (several per case)."""
    if target in ("ffi_flat", "ffi_vars"):
        return [u8(p) + cfg_bytes(tasks, orders, mean, check, m) for p in (0, 1) for m in (0, 1)]
    if target == "ffi_phases":
        cut = u16(1) + u16(dim // 2)
        return [u8(p) + cfg_bytes(tasks, orders, mean, check) + c for p in (0, 1) for c in (u16(0) + u16(0), cut + cut)]
    if target == "differential":
        if orders is None:
            mode = u8(3)
        else:
            mode = u8(1) + table_bytes(orders)
        return [mode + u8(0 if mean else 1) + u8(check)]
    return [b""]


def cases():
    for f in sorted(glob.glob(os.path.join(ROOT, "tests/data/conformance/*.json"))):
        d = json.load(open(f))
        t, n = d["num_tasks"], d["dim"]
        grads = [x for row in d["grads"] for x in row]
        has = [h for row in d["has_grad"] for h in row]
        yield (os.path.basename(f)[:-5], t, n, d["segments"], has, grads,
               d["orders"], d["reduction"] == "mean", 0)
    # Edge cases.
    inf, nan = math.inf, math.nan
    fixed = lambda t: [[j for j in range(t) if j != i] for i in range(t)]
    edge = [
        ("t1", 1, 9, [], [], [float(k) - 4 for k in range(9)]),
        ("zeros", 3, 8, [], [], [0.0] * 24),
        ("identical", 3, 7, [], [], [1.5, -2, 3, 0.25, 8, -1, 2] * 3),
        ("opposite", 2, 9, [], [], [1, 2, 3, 4, 5, 6, 7, 8, 9] + [-2, -4, -6, -8, -10, -12, -14, -16, -18]),
        ("tiny", 3, 5, [], [], [1e-30 * x for x in (1, -2, 3, -1, 2, -3, 1, 1, -1, 2, 3, -2, 1, 0, -1)]),
        ("huge", 3, 5, [], [], [1e30 * x for x in (1, -2, 3, -1, 2, -3, 1, 1, -1, 2, 3, -2, 1, 0, -1)]),
        ("subnormal", 2, 3, [], [], [1e-45, -3e-45, 1e-40, -1e-45, 2e-45, -1e-40]),
        # Issue 13's merged-path overflow reproducers (finite exact result).
        ("near_max", 2, 2, [], [], [3e38, 1e37, -3e38, 1e37]),
        ("near_max_1", 2, 1, [], [], [2e38, -2e38]),
        ("n17_masked", 3, 17, [5, 12], [True, False, True, True, False, True], [float((k * 7) % 11 - 5) for k in range(51)]),
        ("nan_inf", 2, 4, [], [], [1, nan, 3, 4, -1, inf, -3, 2]),
        ("nan_masked", 2, 4, [2, 2], [True, False, True, True], [1, 2, nan, inf, -1, 3, -3, 2]),
    ]
    for name, t, n, segs, has, grads in edge:
        for mean in (True, False):
            for seq in (True, False):
                for check in ((0, 1) if name.startswith("nan") else (0,)):
                    yield (f"edge_{name}_{'mean' if mean else 'sum'}_{'seq' if seq else 'sim'}_c{check}",
                           t, n, segs, has, grads, fixed(t) if seq else None, mean, check)


def main():
    for target, (max_t, max_n) in LIMITS.items():
        d = os.path.join(HERE, "seeds", target)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for name, t, n, segs, has, grads, orders, mean, check in cases():
            if t > max_t or n > max_n:
                continue
            h = header(t, n, segs, has, grads)
            for k, tail in enumerate(tails(target, t, n, orders, mean, check)):
                with open(os.path.join(d, f"{name}_{k}"), "wb") as f:
                    f.write(h + tail)
    specials = [0.0, -0.0, 1.0, -1.0, 3.4028234663852886e38, -3.4028234663852886e38, 3e38, 2e38,
                1e37, 1e30, 1e-30, 1.1754943508222875e-38, 1.401298464324817e-45, 1.1920928955078125e-07,
                math.nan, math.inf, -math.inf, 16777217.0]
    with open(os.path.join(HERE, "floats.dict"), "w") as f:
        f.write("# Special f32 values, little-endian, bare and as a raw-bits value\n")
        f.write("# (the byte 0x0c before the bits selects raw bits in `value`).\n")
        for i, x in enumerate(specials):
            bits = f32_bits(x)
            esc = "".join(f"\\x{c:02x}" for c in bits)
            f.write(f'f{i}="{esc}"\nv{i}="\\x0c{esc}"\n')


if __name__ == "__main__":
    main()
