"""Step checks (every step, at random instances) and the numeric cross-check of the gradients."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .errors import DeriveError
from .engine import NetworkDerivation, derive
from .evaluate import EvaluationError, Evaluator
from .oracle import Instance, make_instance
from .steps import Step

STEP_RTOL, STEP_ATOL = 1e-6, 1e-9
GRAD_EPS, GRAD_ATOL, GRAD_RTOL = 1e-6, 1e-5, 1e-3      # as torch.autograd.gradcheck
MAX_INDEX_SAMPLES = 12
ENTRYWISE_MAX_PARAMETERS, ENTRYWISE_MAX_DEPTH = 2000, 30
PER_PARAMETER_DIRECTION_MAX_DEPTH = 200


@dataclass(frozen=True)
class StepCheck:
    derivation: str
    position: int          # 1-based within its derivation
    kind: str
    justified: bool
    passed: bool
    max_error: float
    points: int            # how many (instance, index) points were compared
    message: str = ""


@dataclass(frozen=True)
class GradientCheck:
    parameter: str
    mode: str              # entrywise | direction | joint-direction
    max_abs_error: float
    max_rel_error: float
    worst_entry: tuple[int, ...] | None
    passed: bool
    message: str = ""


@dataclass(frozen=True)
class CheckReport:
    steps: tuple[StepCheck, ...]
    gradients: tuple[GradientCheck, ...]

    @property
    def steps_failed(self) -> int:
        return sum(not s.passed for s in self.steps)

    @property
    def passed(self) -> bool:
        return self.steps_failed == 0 and all(g.passed for g in self.gradients)

    def __repr__(self) -> str:
        return (f"<CheckReport {'passed' if self.passed else 'FAILED'}: {len(self.steps) - self.steps_failed}/"
                f"{len(self.steps)} steps, {sum(g.passed for g in self.gradients)}/{len(self.gradients)} gradients>")

    def _repr_html_(self) -> str:
        """A notebook table: every parameter's cross-check, and the steps that failed."""
        from .escape import html_text

        rows = "".join(f"<tr><td>{html_text(g.parameter)}</td><td>{g.max_abs_error:.1e}</td><td>{g.max_rel_error:.1e}"
                       f"</td><td>{html_text(g.mode)}</td><td>{'yes' if g.passed else '<b>no</b>'}</td></tr>"
                       for g in self.gradients)
        failed = "".join(f"<li>{html_text(s.derivation)} step {s.position}: {html_text(s.message)}</li>"
                         for s in self.steps if not s.passed)
        return (f"<p><b>{'All checks passed' if self.passed else 'Some checks FAILED'}</b>: "
                f"{len(self.steps) - self.steps_failed} of {len(self.steps)} steps.</p>"
                "<table><tr><th>parameter</th><th>max abs error</th><th>max rel error</th><th>mode</th>"
                f"<th>passed</th></tr>{rows}</table>" + (f"<ul>{failed}</ul>" if failed else ""))

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "parameters": {g.parameter: {"max_abs_error": _finite(g.max_abs_error),
                                         "max_rel_error": _finite(g.max_rel_error),
                                         "worst_entry": list(g.worst_entry) if g.worst_entry else None,
                                         "mode": g.mode, "passed": g.passed,
                                         **({"message": g.message} if g.message else {})} for g in self.gradients},
            "steps_checked": len(self.steps),
            "steps_failed": self.steps_failed,
            "failures": [{"derivation": s.derivation, "step": s.position, "kind": s.kind,
                          "max_error": _finite(s.max_error), "message": s.message} for s in self.steps if not s.passed],
            "unjustified_steps": sum(not s.justified for s in self.steps),
        }


def _finite(x: float) -> float | None:
    """JSON has no NaN or Infinity: a non-finite error is reported as null (and the check as failed)."""
    return float(x) if np.isfinite(x) else None


MAX_CHECKED_PARAMETERS = 2_000_000


def check(result: NetworkDerivation, trials: int | None = None, seed: int = 0) -> CheckReport:
    q = result.quantities
    sizes = [int(s) if s.is_Integer else 4 for s in q.sizes]
    count = sum(a * b for a, b in zip(sizes[1:], sizes[:-1]))
    if count > MAX_CHECKED_PARAMETERS:
        raise DeriveError(f"{count} weights are too many to check numerically here (at most "
                          f"{MAX_CHECKED_PARAMETERS}); give the sizes as symbols (n_1, ...) to check the "
                          "derivation at small concrete sizes")
    if trials is None:
        trials = 1 if q.depth > 50 else 2
    instances = [make_instance(q, seed + t) for t in range(trials)]
    steps: list[StepCheck] = []
    groups = [("forward", "forward", result.forward)] + [(d.key, d.level, d.steps) for d in result.derivations]
    # a derivation for the general layer l is checked at every layer it is written for
    groups += [(f"{d.key} at l = {value}", d.level, d.at(value).steps) for d in result.general for value in d.instances]
    for key, level, group in groups:
        count = 1 if level == "concrete" else trials
        views = {lv: [_view(inst, lv) for inst in instances[:count]] for lv in ("batch", level)}
        rng = np.random.default_rng(seed)
        shared = {id(v): Evaluator(v) for vs in views.values() for v in vs}   # entries share subexpressions
        for position, step in enumerate(group, start=1):
            chosen = views["batch" if step.level == "batch" else level]
            steps.append(check_step(step, chosen, key, position, rng, shared))
    return CheckReport(tuple(steps), tuple(cross_check(result, seed=seed + 1000)))


def _view(inst: Instance, level: str) -> Instance:
    """Single-sample derivations speak of the loss of one sample."""
    return inst if level == "batch" or inst.q.samples == 1 else inst.sample_view(0)


def check_step(step: Step, instances: list[Instance], key: str, position: int, rng,
               shared: dict | None = None) -> StepCheck:
    worst, points = 0.0, 0
    try:
        for inst in instances:
            for bindings in _index_points(step, inst, rng):
                evaluate = (shared or {}).get(id(inst)) if not bindings else None
                evaluate = evaluate or Evaluator(inst, bindings)
                lhs, rhs = evaluate(step.lhs), evaluate(step.rhs)
                lhs, rhs = np.asarray(lhs, dtype=float), np.asarray(rhs, dtype=float)
                if lhs.shape != rhs.shape:
                    return StepCheck(key, position, step.kind, step.justified, False, float("inf"), points,
                                     f"shapes differ: {lhs.shape} and {rhs.shape}")
                if not (np.all(np.isfinite(lhs)) and np.all(np.isfinite(rhs))):
                    # NaN compares false with everything, so it must fail here rather than pass by default
                    return StepCheck(key, position, step.kind, step.justified, False, float("inf"), points,
                                     f"a side is not finite at {bindings or 'the instance'}: {lhs.tolist()} "
                                     f"and {rhs.tolist()}")
                scale = np.maximum(np.abs(lhs), np.abs(rhs))
                excess = np.abs(lhs - rhs) / (STEP_ATOL + STEP_RTOL * scale)
                worst = max(worst, float(np.max(excess)) if excess.size else 0.0)
                points += 1
    except (EvaluationError, KeyError, ValueError, IndexError, FloatingPointError, ZeroDivisionError) as exc:
        return StepCheck(key, position, step.kind, step.justified, False, float("inf"), points, f"cannot evaluate: {exc}")
    passed = worst <= 1.0 and points > 0
    return StepCheck(key, position, step.kind, step.justified, passed, worst, points,
                     "" if passed else "the two sides differ" if points else "nothing was compared")


def _index_points(step: Step, inst: Instance, rng):
    if not step.free:
        yield {}
        return
    ranges = []
    for symbol, bound in step.free:
        upper = int(round(Evaluator(inst)(bound)))
        ranges.append(range(1, upper + 1))
    names = [symbol for symbol, _ in step.free]
    combos = list(itertools.product(*ranges))
    if len(combos) > MAX_INDEX_SAMPLES:
        picks = rng.choice(len(combos), size=MAX_INDEX_SAMPLES, replace=False)
        combos = [combos[i] for i in sorted(picks)]
    for combo in combos:
        yield dict(zip(names, combo))


# ------------------------------------------------------------------ numeric cross-check

def engine_gradients(result: NetworkDerivation, inst: Instance) -> dict[str, np.ndarray]:
    """Evaluate the engine's matrix-form results, with deltas from the engine's own recurrence."""
    q = result.quantities
    columns: dict[int, list[np.ndarray]] = {l: [] for l in range(1, q.depth + 1)}
    for s in range(inst.samples):
        view = (inst.sample_view(s) if inst.samples > 1 else inst).with_values({})
        for l in range(q.depth, 0, -1):
            delta = np.asarray(Evaluator(view)(result.get("delta", l, "matrix").result.rhs), dtype=float)
            if q.layout == "row":      # the instance keeps vectors as columns
                delta = delta.T
            columns[l].append(delta)
            view.overrides[("delta", l)] = delta   # one view for all layers: its forward cache stays warm
    deltas = {("delta", l): np.hstack(columns[l]) for l in columns}
    level = "batch" if q.samples != 1 else "matrix"
    full = inst.with_values(deltas)
    grads = {}
    for name in result.parameters:
        topic = "weight" if name[0] == "W" else "bias"
        value = np.asarray(Evaluator(full)(result.get(topic, int(name[1:]), level).result.rhs), dtype=float)
        # back to the instance's storage: W as (to, from), vectors as columns
        transposed = q.layout != "column" if name[0] == "W" else q.layout == "row"
        grads[name] = value.T if transposed else value
    return grads


def with_matrix_results(result: NetworkDerivation) -> NetworkDerivation:
    needs = {"matrix"} | ({"batch"} if result.quantities.samples != 1 else set())
    return result if needs <= set(result.levels) else derive(result.spec, levels=tuple(sorted(needs)))


def cross_check(result: NetworkDerivation, seed: int = 1000) -> list[GradientCheck]:
    result = with_matrix_results(result)
    q = result.quantities
    inst = make_instance(q, seed)
    try:
        analytic = engine_gradients(result, inst)
    except (EvaluationError, ValueError, KeyError) as exc:       # e.g. a result whose shapes do not multiply
        return [GradientCheck(name, "shape", float("inf"), float("inf"), None, False, f"cannot evaluate: {exc}")
                for name in result.parameters]
    params = {name: (inst.weights if name[0] == "W" else inst.biases)[int(name[1:])] for name in analytic}
    misshapen = [name for name in analytic if analytic[name].shape != params[name].shape]
    if misshapen or not all(np.all(np.isfinite(g)) for g in analytic.values()):
        return [GradientCheck(name, "shape", float("inf"), float("inf"), None, False,
                              f"the result is {analytic[name].shape[0]}x{analytic[name].shape[1]}, the parameter "
                              f"{params[name].shape[0]}x{params[name].shape[1]}") if name in misshapen else
                GradientCheck(name, "entrywise", float("inf"), float("inf"), None, bool(np.all(np.isfinite(g))),
                              "" if np.all(np.isfinite(g)) else "the result is not finite")
                for name, g in analytic.items()]
    total = sum(p.size for p in params.values())
    if total <= ENTRYWISE_MAX_PARAMETERS and q.depth <= ENTRYWISE_MAX_DEPTH:
        checks = [_entrywise(inst, name, analytic[name]) for name in analytic]
        if q.index_order == "from_to":   # report w_jk in the notation's own order
            checks = [g if g.parameter[0] != "W" else
                      GradientCheck(g.parameter, g.mode, g.max_abs_error, g.max_rel_error, g.worst_entry[::-1], g.passed)
                      for g in checks]
        return checks
    rng = np.random.default_rng(seed)
    if q.depth <= PER_PARAMETER_DIRECTION_MAX_DEPTH:
        return [_direction(inst, {name: rng.normal(size=analytic[name].shape)}, analytic, name) for name in analytic]
    joint = _direction(inst, {n: rng.normal(size=g.shape) for n, g in analytic.items()}, analytic, "all")
    return [GradientCheck(n, "joint-direction", joint.max_abs_error, joint.max_rel_error, None, joint.passed)
            for n in analytic]


def _moved(inst: Instance, moves: dict[str, np.ndarray], t: float) -> float:
    weights, biases = dict(inst.weights), dict(inst.biases)
    for name, v in moves.items():
        table = weights if name[0] == "W" else biases
        table[int(name[1:])] = table[int(name[1:])] + t * v
    return inst.total_loss(weights, biases)


def _entrywise(inst: Instance, name: str, analytic: np.ndarray) -> GradientCheck:
    numeric = np.zeros_like(analytic)
    for entry in np.ndindex(*analytic.shape):
        v = np.zeros_like(analytic)
        v[entry] = 1.0
        numeric[entry] = (_moved(inst, {name: v}, GRAD_EPS) - _moved(inst, {name: v}, -GRAD_EPS)) / (2 * GRAD_EPS)
    diff = np.abs(numeric - analytic)
    allowed = GRAD_ATOL + GRAD_RTOL * np.abs(numeric)
    worst = np.unravel_index(int(np.argmax(diff / allowed)), diff.shape)
    rel = diff / np.maximum(np.maximum(np.abs(numeric), np.abs(analytic)), 1e-12)
    return GradientCheck(name, "entrywise", float(diff.max()), float(rel.max()),
                         tuple(int(i) + 1 for i in worst), bool((diff <= allowed).all()))


def _direction(inst: Instance, moves: dict[str, np.ndarray], analytic: dict, name: str) -> GradientCheck:
    numeric = (_moved(inst, moves, GRAD_EPS) - _moved(inst, moves, -GRAD_EPS)) / (2 * GRAD_EPS)
    predicted = sum(float((analytic[n] * v).sum()) for n, v in moves.items())
    diff = abs(numeric - predicted)
    rel = diff / max(abs(numeric), abs(predicted), 1e-12)
    return GradientCheck(name, "direction", diff, rel, None, diff <= GRAD_ATOL + GRAD_RTOL * abs(numeric))
