"""How derive() + checks scale, against naive SymPy (the whole scalar loss diffed by every weight).

Prints medians of repeated runs and ratios measured in the same run:
    python benchmarks/derive_scaling.py [--repeats 3] [--naive-cap 60]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time

from derive import network
from derive.checks import check
from derive.engine import derive
from timing import median_time


def matrix_level(depth):
    spec = network(f"deep{depth}", "n", [("n", "tanh")] * depth)
    report = check(derive(spec, levels=("matrix",)), trials=1)
    assert report.passed, report.to_json()["failures"][:3]


def concrete_level(width):
    spec = network(f"c{width}", width, [(width, "sigmoid")] * 3)
    report = check(derive(spec, levels=("concrete",)), trials=1)
    assert report.passed


def naive_sympy(width, out):
    """Build the scalar loss of a width-(width x 3 layers) sigmoid net and diff it by every weight."""
    import sympy as sp

    start = time.perf_counter()
    a = list(sp.symbols(f"x1:{width + 1}"))
    weights = []
    for l in range(1, 4):
        w = sp.Matrix(width, width, lambda j, k: sp.Symbol(f"w{l}_{j}{k}"))
        b = [sp.Symbol(f"b{l}_{j}") for j in range(width)]
        weights += list(w) + b
        a = [1 / (1 + sp.exp(-(sum(w[j, k] * a[k] for k in range(width)) + b[j]))) for j in range(width)]
    y = sp.symbols(f"y1:{width + 1}")
    loss = sp.Rational(1, 2) * sum((ai - yi) ** 2 for ai, yi in zip(a, y))
    for w in weights:
        sp.diff(loss, w)
    out.put(time.perf_counter() - start)


def naive_time(width, cap):
    queue = mp.Queue()
    proc = mp.Process(target=naive_sympy, args=(width, queue))
    proc.start()
    proc.join(cap)
    if proc.is_alive():
        proc.terminate()
        proc.join()
        return None
    return queue.get()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-cap", type=float, default=60.0)
    args = parser.parse_args()
    print("derive() + every step check + gradient cross-check, median of", args.repeats, "runs\n")
    print(f"{'matrix level, tanh, depth':<34}{'seconds':>10}{'ms/layer':>10}")
    base = None
    for depth in (10, 100, 1000):
        t = median_time(lambda: matrix_level(depth), args.repeats, warm_up=False)
        base = base or t / depth
        print(f"{depth:<34}{t:>10.3f}{1000 * t / depth:>10.2f}")
    print(f"\n{'concrete level, sigmoid, 3 layers':<34}{'derive':>10}{'naive':>10}{'ratio':>10}")
    for width in (4, 8):
        ours = median_time(lambda: concrete_level(width), args.repeats, warm_up=False)
        naive = naive_time(width, args.naive_cap)
        naive_text = f"{naive:10.2f}" if naive is not None else f"{'>' + str(int(args.naive_cap)):>10}"
        ratio = naive / ours if naive is not None else args.naive_cap / ours
        prefix = "" if naive is not None else ">"
        print(f"{f'{width}-{width}-{width}-{width}':<34}{ours:>10.3f}{naive_text}{prefix + f'{ratio:.0f}x':>10}")


if __name__ == "__main__":
    main()
