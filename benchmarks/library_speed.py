"""The library's numeric API on a small teaching network (2-4-1 sigmoid, XOR's four samples):
result.evaluate (the derived formulas walked as a tree), derive.gradient_function (the same
derivation compiled to NumPy in memory) and PyTorch autograd on the same numbers.

    python benchmarks/library_speed.py [--repeats 200]

Prints medians and ratios measured in the same run; PyTorch is skipped when not installed.
"""
from __future__ import annotations

import argparse

import numpy as np

import derive
from timing import interleaved_medians


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    result = derive.derive(derive.network("xor", 2, [(4, "sigmoid"), (1, "sigmoid")], loss="squared_error",
                                          samples=4))
    point = derive.random_point(result, seed=0)
    P, x, y = point["parameters"], point["x"], point["y"]
    f = derive.gradient_function(result)
    candidates = {"result.evaluate (tree walk)": lambda: result.evaluate(P, x, y),
                  "gradient_function (compiled NumPy)": lambda: f(P, x, y)}
    try:
        import torch

        torch.set_default_dtype(torch.float64)
        tw = {k: torch.tensor(v, requires_grad=True) for k, v in P.items()}
        tx, ty = torch.tensor(x), torch.tensor(y)

        def autograd():
            for t in tw.values():
                t.grad = None
            a1 = torch.sigmoid(tw["W1"] @ tx + tw["b1"][:, None])
            a2 = torch.sigmoid(tw["W2"] @ a1 + tw["b2"][:, None])
            (0.5 * ((a2 - ty) ** 2).sum() / 4).backward()
            return {k: t.grad for k, t in tw.items()}
        want = autograd()
        got = f(P, x, y)
        worst = max(float(np.abs(got[k] - want[k].numpy()).max()) for k in got)
        print(f"gradient_function against PyTorch: max abs difference {worst:.1e}")
        candidates["PyTorch autograd"] = autograd
    except ImportError:
        print("PyTorch is not installed: its row is skipped")
    medians = interleaved_medians(candidates, args.repeats)
    base = medians["gradient_function (compiled NumPy)"]
    for name, seconds in medians.items():
        print(f"{name:38} {seconds * 1e6:10.1f} µs   {seconds / base:7.2f}× gradient_function")


if __name__ == "__main__":
    main()
