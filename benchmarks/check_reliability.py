"""How often `derive check` fails a correct network (target: never), and how many planted errors it
and the printed read-back catch.

    python benchmarks/check_reliability.py [--networks 1000] [--seed 0]

Random networks: depth 1-4, width 1-4 or symbolic, every activation, every loss with its allowed
outputs, mean or sum, L2 or not, samples 1 / 2 / m, all five notations. For each network:
  * derive + check (every step, the gradient cross-check): a failure is a false failure;
  * one planted error in one random step (x2, a sign, a transposed matrix or swapped indices,
    a dropped factor): the step check must fail;
  * one planted error in the printed document (an index pair swapped or a transpose dropped in
    one printed equation): the read-back must fail.
"""
from __future__ import annotations

import argparse
import random
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from derive import network                       # noqa: E402
from derive.checks import check                   # noqa: E402
from derive.engine import derive                  # noqa: E402
from derive.readback import read_back             # noqa: E402
from derive.render import render_document         # noqa: E402

ACTS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "softplus", "softmax"]
OUTPUTS = {"squared_error": ACTS, "generic": ACTS, "binary_cross_entropy": ["sigmoid"],
           "cross_entropy": ["sigmoid", "softmax"]}
NOTATIONS = ["nielsen", "ng", "rashid", "fromto", "rowvec"]


def random_network(rng: random.Random):
    depth = rng.randint(1, 4)
    loss = rng.choice(sorted(OUTPUTS))
    symbolic = rng.random() < 0.3
    layers = []
    for l in range(1, depth + 1):
        act = rng.choice(OUTPUTS[loss] if l == depth else ACTS)
        low = 2 if act == "softmax" or (l == depth and loss == "cross_entropy") else 1
        layer = {"units": f"n_{l}" if symbolic else rng.randint(low, 4), "activation": act,
                 "bias": rng.random() < 0.7 or l == depth}
        if act == "leaky_relu" and rng.random() < 0.5:
            layer["slope"] = "1/5"
        layers.append(layer)
    loss_spec = {"kind": loss, "reduction": rng.choice(["mean", "sum"])}
    if rng.random() < 0.4:
        loss_spec["l2"] = rng.choice(["lam", "1/10"])
    return network("r", "n_0" if symbolic else rng.randint(1, 4), layers, loss=loss_spec,
                   samples=rng.choice([1, 1, 2, "m"]), notation=rng.choice(NOTATIONS))


def plant_in_step(result, rng: random.Random):
    """The network's derivation with one step's right side changed; None when no change applies."""
    candidates = [(d, i) for d in result.derivations for i, s in enumerate(d.steps) if d.level != "concrete"]
    d, i = rng.choice(candidates)
    step = d.steps[i]
    kind = rng.choice(["double", "negate", "swap"])
    rhs = step.rhs
    if kind == "swap":
        free = [symbol for symbol, _ in step.free]
        if len(free) == 2:
            rhs = rhs.xreplace({free[0]: free[1], free[1]: free[0]})
        elif isinstance(rhs, sp.MatrixExpr) and rhs.shape[0] != rhs.shape[1]:
            rhs = sp.Transpose(rhs)
        else:
            kind = "double"
    if kind == "double":
        rhs = 2 * rhs
    elif kind == "negate":
        rhs = -rhs
    if rhs == step.rhs or (isinstance(rhs, sp.Basic) and sp.simplify(rhs - step.rhs) == 0
                           if not isinstance(rhs, sp.MatrixExpr) else False):
        return None, kind
    steps = d.steps[:i] + (replace(step, rhs=rhs),) + d.steps[i + 1:]
    planted = replace(d, steps=steps)
    return replace(result, derivations=tuple(planted if x is d else x for x in result.derivations)), kind


SWAP = re.compile(r"(w\^\{[^}]*\}_\{)(\w)(\w)(\})")


def plant_in_print(tex: str, rng: random.Random):
    """One printed equation with a weight's index pair swapped or a transpose dropped."""
    lines = tex.splitlines()
    options = [(n, "swap") for n, line in enumerate(lines) if "&=" in line and
               any(m.group(2) != m.group(3) for m in SWAP.finditer(line))]
    options += [(n, "transpose") for n, line in enumerate(lines) if "&=" in line and "^{T}" in line]
    if not options:
        return None, None
    n, kind = rng.choice(options)
    if kind == "swap":
        m = next(m for m in SWAP.finditer(lines[n]) if m.group(2) != m.group(3))
        lines[n] = lines[n][:m.start()] + m.group(1) + m.group(3) + m.group(2) + m.group(4) + lines[n][m.end():]
    else:
        lines[n] = lines[n].replace("^{T}", "", 1)
    return "\n".join(lines), kind


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--networks", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    false_failures, planted_steps, caught_steps, planted_prints, caught_prints = [], 0, 0, 0, 0
    skipped = 0
    start = time.perf_counter()
    for number in range(args.networks):
        spec = random_network(rng)
        result = derive(spec)
        report = check(result, seed=number)
        if not report.passed:
            false_failures.append((number, spec, report.to_json()))
        mutated, _ = plant_in_step(result, rng)
        if mutated is None:
            skipped += 1
        else:
            planted_steps += 1
            caught_steps += check(mutated, seed=number, trials=1).steps_failed > 0
        tex = render_document(result, None, "en")
        broken, kind = plant_in_print(tex, rng)
        if broken is not None:
            planted_prints += 1
            caught_prints += not read_back(result, broken).passed
        if (number + 1) % 100 == 0:
            print(f"  {number + 1} networks, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print(f"correct networks checked: {args.networks}; false failures: {len(false_failures)} "
          f"({100 * len(false_failures) / args.networks:.2f}%)")
    for number, spec, report in false_failures[:10]:
        print(f"  #{number}: {spec}\n     {report['failures'][:2]} {report['parameters']}")
    print(f"planted errors in one step: {planted_steps} ({skipped} draws left the step unchanged); "
          f"caught by the step check: {caught_steps} ({100 * caught_steps / max(planted_steps, 1):.1f}%)")
    print(f"planted errors in one printed equation: {planted_prints}; caught by the read-back: {caught_prints} "
          f"({100 * caught_prints / max(planted_prints, 1):.1f}%)")
    print(f"time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
