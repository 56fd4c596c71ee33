"""The concrete level of a convolution: every entry of dL/dK (and dL/dx) written out, against naive SymPy
(the weighted inputs built entry by entry and differentiated), measured in the same run.

    python benchmarks/conv_concrete.py [--repeats 5]

The issue's case is a 1-channel 5 x 5 image with a 3 x 3 kernel; larger images show how it grows.
"""
from __future__ import annotations

import argparse

import sympy as sp

from derive.blocks import derive_blocks, from_mapping
from derive.blocks.engine import _Builder
from derive.blocks.expand import expand_entries
from derive.blocks.symbols import Table
from timing import median_time


def spec(side: int, kernel: int = 3):
    return from_mapping({"name": f"conv{side}", "input": {"channels": 1, "height": side, "width": side},
                         "layers": [{"kind": "conv", "channels": 1, "kernel": kernel, "activation": "tanh"},
                                    {"units": 2, "activation": "identity"}], "loss": "squared_error"})


def derive_written_out(side: int):
    """The index-level derivations, then every kernel entry written out (no cap on the terms)."""
    s = spec(side)
    b = _Builder(Table(s))
    derivation = b.kernel_index(1)
    return expand_entries(derivation[0].lhs, derivation[-1], b.t, max_terms=10 ** 6)


def naive(side: int, kernel: int = 3):
    """z_ij = sum_pq K_pq x_(i+p-1, j+q-1); L = sum_ij g_ij z_ij; dL/dK_pq by sympy.diff, entry by entry."""
    x = sp.Matrix(side, side, lambda i, j: sp.Symbol(f"x{i}_{j}"))
    K = sp.Matrix(kernel, kernel, lambda p, q: sp.Symbol(f"K{p}_{q}"))
    out = side - kernel + 1
    loss = sum(sp.Symbol(f"g{i}_{j}") * sum(K[p, q] * x[i + p, j + q] for p in range(kernel) for q in range(kernel))
               for i in range(out) for j in range(out))
    return [sp.diff(loss, K[p, q]) for p in range(kernel) for q in range(kernel)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("dL/dK of a 3 x 3 kernel written out (every entry a sum of products), median of", args.repeats)
    print(f"{'image':>8} {'terms':>7} {'derive':>9} {'naive SymPy':>12} {'ratio':>7}")
    for side in (5, 8, 12, 16):
        ours = median_time(lambda: derive_written_out(side), args.repeats)
        theirs = median_time(lambda: naive(side), args.repeats)
        terms = sum(len(sp.Add.make_args(st.rhs)) for st in derive_written_out(side))
        print(f"{side:>3} x {side:<3} {terms:>7} {ours:>8.3f}s {theirs:>11.3f}s {theirs / ours:>6.1f}x")
    full = median_time(lambda: derive_blocks(spec(5)), args.repeats)
    print(f"\nthe whole 5 x 5 network (index level, the output layer's matrix form, every entry written out): "
          f"{full:.3f}s")


if __name__ == "__main__":
    main()
