"""Every step of a block derivation checked at random instances, and the gradients cross-checked.

A step's two sides are evaluated with central differences for every derivative in them, so a step is
judged by the forward pass alone. The cross-check then runs the derived matrix formulas backward (each
stage fed the previous stage's result, as a backward pass would) and compares every parameter's
gradient with central differences of the loss.
"""
from __future__ import annotations

import itertools

import numpy as np
import sympy as sp

from ..checks import CheckReport, GradientCheck, StepCheck, GRAD_ATOL, GRAD_RTOL, \
    MAX_INDEX_SAMPLES
from .engine import BlockDerivation
from .numbers import EvaluationError, Evaluator, Instance

# central differences inside a step are accurate to about 1e-9 of the scale
BLOCK_STEP_RTOL, BLOCK_STEP_ATOL = 1e-5, 1e-7
ENTRYWISE_MAX = 600


def instance(result: BlockDerivation, seed: int) -> Instance:
    """A numeric instance that knows the network's index-level definitions (for direct derivatives)."""
    inst = Instance(result.table, seed)
    for step in result.forward:
        if isinstance(step.lhs, sp.Indexed) and step.free:
            atom = result.table.atom(step.lhs.base.label.name)
            inst.definitions[(atom.kind, atom.layer)] = step
    return inst


def check_blocks(result: BlockDerivation, trials: int = 2, seed: int = 0) -> CheckReport:
    instances = [instance(result, seed + t) for t in range(trials)]
    groups = [("forward", result.forward)] + [(d.key, d.steps) for d in result.derivations]
    out = []
    rng = np.random.default_rng(seed)
    for key, steps in groups:
        for position, step in enumerate(steps, start=1):
            out.append(check_step(step, instances, key, position, rng))
    return CheckReport(tuple(out), tuple(cross_check(result, seed + 1000)))


def check_step(step, instances, key, position, rng) -> StepCheck:
    worst, points = 0.0, 0
    try:
        for inst in instances:
            for bindings in _points(step, inst, rng):
                ev = Evaluator(inst, bindings)
                lhs, rhs = np.asarray(ev(step.lhs), dtype=float), np.asarray(ev(step.rhs), dtype=float)
                if lhs.shape != rhs.shape:
                    return StepCheck(key, position, step.kind, step.justified, False, float("inf"), points,
                                     f"shapes differ: {lhs.shape} and {rhs.shape}")
                if not (np.all(np.isfinite(lhs)) and np.all(np.isfinite(rhs))):
                    return StepCheck(key, position, step.kind, step.justified, False, float("inf"), points,
                                     "a side is not finite")
                scale = np.maximum(np.abs(lhs), np.abs(rhs))
                excess = np.abs(lhs - rhs) / (BLOCK_STEP_ATOL + BLOCK_STEP_RTOL * scale)
                worst = max(worst, float(excess.max()) if excess.size else 0.0)
                points += 1
    except (EvaluationError, KeyError, ValueError, IndexError, ZeroDivisionError) as exc:
        return StepCheck(key, position, step.kind, step.justified, False, float("inf"), points,
                         f"cannot evaluate: {exc}")
    passed = worst <= 1.0 and points > 0
    return StepCheck(key, position, step.kind, step.justified, passed, worst, points,
                     "" if passed else "the two sides differ" if points else "nothing was compared")


def _points(step, inst, rng):
    if not step.free:
        yield {}
        return
    names = [s for s, _ in step.free]
    ranges = [range(1, int(round(Evaluator(inst)(bound))) + 1) for _, bound in step.free]
    combos = list(itertools.product(*ranges))
    if len(combos) > MAX_INDEX_SAMPLES:
        combos = [combos[i] for i in sorted(rng.choice(len(combos), MAX_INDEX_SAMPLES, replace=False))]
    for combo in combos:
        yield dict(zip(names, combo))


PARAMETER_KINDS = ("W", "U", "K", "b", "gamma", "beta", "WQ", "WK", "WV")


def engine_gradients(result: BlockDerivation, inst: Instance) -> dict[str, np.ndarray]:
    """Every parameter's gradient from the derived matrix formulas, run as a backward pass."""
    known: dict[tuple, np.ndarray] = {}
    ev = Evaluator(inst, known=known)
    grads = {}

    def store(d, value):
        lhs = d.steps[0].lhs          # the quantity the derivation is about (a chain continues from it)
        if d.level == "index":          # entries: the quantity is the Indexed (delta) or the one differentiated by
            base = (lhs if isinstance(lhs, sp.Indexed) else lhs.den).base.label.name
            atom = result.table.atom(base)
            target = inst.leaves.get((atom.kind, atom.layer))
            if target is not None and target.size == value.size:
                value = value.reshape(target.shape)
        else:
            atom = result.table.atom(lhs.name if hasattr(lhs, "name") else lhs.den.name)
        if atom.kind == "delta":
            known[("z", atom.layer)] = value
        elif atom.kind in PARAMETER_KINDS:
            grads[f"{atom.kind}{atom.layer}"] = value
        else:
            known[(atom.kind, atom.layer)] = value

    for d in result.backward_order():
        src = d.layer - 1
        if d.topic == "input" and result.spec.layers[src - 1].kind == "rnn":
            # dL/dA^src and Delta^src each need the other at the next step: run the pair T + 1 times from
            # Delta = 0, as backpropagation through time runs the steps backward (the shift N is nilpotent)
            act = result.get("act", src, "matrix")
            known[("z", src)] = np.zeros_like(inst.values[("z", src)])
            for _ in range(inst.m + 1):
                store(d, np.asarray(ev(d.result.rhs), dtype=float))
                store(act, np.asarray(ev(act.result.rhs), dtype=float))
            continue
        store(d, entries(d.result, inst, known) if d.level == "index" else np.asarray(ev(d.result.rhs), dtype=float))
    return grads


def entries(step, inst: Instance, known: dict) -> np.ndarray:
    """An index-level result at every value of its free indices (a feature map's gradient)."""
    bounds = [int(round(Evaluator(inst)(bound))) for _, bound in step.free]
    out = np.zeros(bounds)
    for combo in itertools.product(*(range(n) for n in bounds)):
        bindings = {symbol: i + 1 for (symbol, _), i in zip(step.free, combo)}
        out[combo] = Evaluator(inst, bindings, known)(step.rhs)
    return out


def _split(name: str) -> tuple[str, int]:
    kind = name.rstrip("0123456789")
    return kind, int(name[len(kind):])


def cross_check(result: BlockDerivation, seed: int = 1000) -> list[GradientCheck]:
    inst = instance(result, seed)
    try:
        analytic = engine_gradients(result, inst)
    except (EvaluationError, ValueError, KeyError) as exc:
        return [GradientCheck(p, "shape", float("inf"), float("inf"), None, False, f"cannot evaluate: {exc}")
                for p in result.parameters]
    out = []
    total = sum(v.size for v in analytic.values())
    rng = np.random.default_rng(seed)
    for name in result.parameters:
        g = analytic.get(name)
        key = _split(name)
        leaf = inst.leaves[key]
        if g is None or g.shape != leaf.shape:
            out.append(GradientCheck(name, "shape", float("inf"), float("inf"), None, False,
                                     "no result" if g is None else f"the result is {g.shape}, the parameter {leaf.shape}"))
            continue
        if total <= ENTRYWISE_MAX:
            numeric = inst.gradient(key)
            diff = np.abs(numeric - g)
            allowed = GRAD_ATOL + GRAD_RTOL * np.abs(numeric)
            worst = np.unravel_index(int(np.argmax(diff / allowed)), diff.shape)
            rel = diff / np.maximum(np.maximum(np.abs(numeric), np.abs(g)), 1e-12)
            out.append(GradientCheck(name, "entrywise", float(diff.max()), float(rel.max()),
                                     tuple(int(i) + 1 for i in worst), bool((diff <= allowed).all())))
        else:
            v = rng.normal(size=g.shape)
            numeric = directional(inst, key, v)
            predicted = float((g * v).sum())
            diff = abs(numeric - predicted)
            out.append(GradientCheck(name, "direction", diff, diff / max(abs(numeric), abs(predicted), 1e-12), None,
                                     diff <= GRAD_ATOL + GRAD_RTOL * abs(numeric)))
    return out


def directional(inst: Instance, key: tuple, v: np.ndarray, eps: float = 1e-6) -> float:
    values = []
    for sign in (1.0, -1.0):
        leaves = dict(inst.leaves)
        leaves[key] = leaves[key] + sign * eps * v
        values.append(float(inst.forward(leaves)[("L", None)]))
    return (values[0] - values[1]) / (2 * eps)
