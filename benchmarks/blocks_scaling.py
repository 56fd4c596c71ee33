"""How the derivation of networks with batch norm and skips scales, against naive SymPy (the whole
scalar loss of a small batch-norm network differentiated by every weight), measured in the same run.

    python benchmarks/blocks_scaling.py [--repeats 3] [--naive-cap 60]

Prints medians: the matrix-level derivation of residual networks with batch norm (100 layers is the
target: under 2 s), the same with the index level and every step checked, and the ratio to naive SymPy
at the depths naive SymPy finishes.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time

from derive.blocks import check_blocks, derive_blocks, from_mapping
from timing import median_time


def residual_bn(depth: int, samples="m", units="n"):
    layers = [{"units": units, "activation": "relu", "norm": "batch", "bias": False, "name": f"h{l}",
               **({"skip": f"h{l - 2}"} if l > 2 else {})} for l in range(1, depth)]
    layers.append({"units": 3, "activation": "softmax"})
    return from_mapping({"name": f"res{depth}", "input": units, "samples": samples, "layers": layers,
                         "loss": "cross_entropy"})


def naive_sympy(depth: int, out):
    """The scalar loss of a concrete batch-norm net (3 units, 3 samples), diffed by every weight."""
    import sympy as sp

    start = time.perf_counter()
    n, m = 3, 3
    x = sp.Matrix(n, m, lambda j, s: sp.Symbol(f"x{j}{s}"))
    weights, a = [], x
    for l in range(depth):
        W = sp.Matrix(n, n, lambda j, k: sp.Symbol(f"w{l}_{j}{k}"))
        weights += list(W)
        z = W * a
        rows = []
        for j in range(n):
            mu = sum(z[j, s] for s in range(m)) / m
            var = sum((z[j, s] - mu) ** 2 for s in range(m)) / m
            rows.append([(z[j, s] - mu) / sp.sqrt(var + sp.Rational(1, 10 ** 5)) for s in range(m)])
        a = sp.Matrix(rows).applyfunc(sp.tanh)
    loss = sum((a[j, s] - sp.Symbol(f"y{j}{s}")) ** 2 for j in range(n) for s in range(m)) / 2
    for w in weights:
        sp.diff(loss, w)
    out.put(time.perf_counter() - start)


def naive_time(depth: int, cap: float):
    queue = mp.Queue()
    proc = mp.Process(target=naive_sympy, args=(depth, queue))
    proc.start()
    proc.join(cap)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return None
    return queue.get()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-cap", type=float, default=60.0)
    args = parser.parse_args()
    print("residual network with batch norm (symbolic n units, m samples), median of", args.repeats)
    print(f"{'layers':>7} {'matrix level':>13} {'index+matrix':>13} {'+ every step checked':>21}")
    for depth in (10, 50, 100):
        spec = residual_bn(depth)
        matrix = median_time(lambda: derive_blocks(spec, levels=("matrix",)), args.repeats)
        both = median_time(lambda: derive_blocks(spec), args.repeats)
        checked = median_time(lambda: check_blocks(derive_blocks(spec), trials=1), 1) if depth <= 10 else None
        shown = "-" if checked is None else f"{checked:.2f}s"
        print(f"{depth:>7} {matrix:>12.3f}s {both:>12.3f}s {shown:>21}")
    print("\nagainst naive SymPy (3 units, 3 samples, batch norm + tanh per layer), the same depth:")
    for depth in (1, 2, 3):
        ours = median_time(lambda: derive_blocks(residual_bn(depth + 1, samples=3, units=3)), args.repeats)
        naive = naive_time(depth, args.naive_cap)
        ratio = f"{naive / ours:.0f}x" if naive else f"> {args.naive_cap / ours:.0f}x (naive SymPy did not finish in {args.naive_cap:.0f} s)"
        shown = "-" if naive is None else f"{naive:.2f}s"
        print(f"  {depth} layer(s): derive {ours:.3f}s, naive SymPy {shown}; ratio {ratio}")


if __name__ == "__main__":
    main()
