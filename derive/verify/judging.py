"""Judging a claim against the truth at random instances; the entry point for one claim."""
from __future__ import annotations

import numpy as np

from ..claim import Term, parse_claim, split_equals
from ..errors import DeriveError
from ..oracle import make_instance
from .limits import MAX_SEEDS, MAX_SUM_WORK, MAX_TERMS, SIZE_GUESS, TRIALS
from .slips import find_fix
from .symbolic import engine_forms, symbolically_equal
from .symbols import Meaning, mixed_message, subterms, target
from .values import close, evaluate, letters_of, readings
from .verdict import ShapeError, Verdict


def instances_for(result, batch: bool, seeds=range(TRIALS)):
    out = []
    for seed in seeds:
        inst = make_instance(result.quantities, seed=seed)
        out.append(inst if batch or inst.samples == 1 else inst.sample_view(0))
    return out


def telling_instances(result, batch: bool, truth: Term, meaning, anchor) -> list:
    """TRIALS instances at which the true value is not all zeros, where there are such among the
    first MAX_SEEDS: a ReLU unit that is off at every instance tried would pass any claim."""
    def tells(inst) -> bool | None:
        try:
            return bool(np.any(evaluate(truth, meaning, inst, letters_of(meaning, anchor or truth, inst))))
        except (ShapeError, DeriveError, ValueError, KeyError):
            return None             # the judge reports why the truth cannot be evaluated

    chosen = instances_for(result, batch)
    told = [tells(inst) for inst in chosen]
    if all(t is not False for t in told):
        return chosen
    telling = [inst for inst, t in zip(chosen, told) if t]
    for seed in range(TRIALS, MAX_SEEDS):
        if len(telling) == TRIALS:
            break
        inst = instances_for(result, batch, (seed,))[0]
        if tells(inst):
            telling.append(inst)
    return telling + [inst for inst, t in zip(chosen, told) if not t][:TRIALS - len(telling)]


def judge(result, truth: Term, claim: Term, anchor: Term | None = None, diagnose: bool = True) -> Verdict:
    """anchor: the term whose index letters free indices refer to (a derivation's first left side).
    diagnose=False skips the search for the slip (a derivation needs it for one line only)."""
    meaning = Meaning(result)
    written = claim                     # slips are searched for in the claim as written (slips.find_fix)
    truth, claim = meaning.normalize(truth), meaning.normalize(claim)
    anchor = meaning.normalize(anchor) if anchor is not None else None
    mixed = meaning.mixed_symbol(claim)
    if mixed is not None:
        return Verdict("unparseable", diagnosis=mixed_message(mixed, meaning))
    batch = meaning.uses_batch(claim) or meaning.uses_batch(truth)
    instances = telling_instances(result, batch, truth, meaning, anchor)

    with readings() as notes:
        verdict = _judge_at(instances, meaning, truth, claim, written, anchor, diagnose)
    verdict.readings = notes
    return verdict


def _judge_at(instances, meaning, truth: Term, claim: Term, written: Term, anchor, diagnose: bool) -> Verdict:
    def wrong(verdict: str, counterexample, fallback: str) -> Verdict:
        with readings():          # the changed claims tried are not the claim: their readings are not noted
            text, fix = find_fix(meaning, instances, truth, written, anchor) if diagnose else ("", None)
        return Verdict(verdict, None, counterexample, text or fallback, fix=fix)

    for inst in instances:
        letters = letters_of(meaning, anchor or truth, inst)
        try:
            with readings():
                expected = evaluate(truth, meaning, inst, letters)
        except ShapeError as exc:
            return Verdict("shape_mismatch", None, None, f"the line it is compared with does not fit: {exc}")
        try:
            claimed = evaluate(claim, meaning, inst, letters)
        except ShapeError as exc:
            return wrong("shape_mismatch", {"sizes": list(inst.sizes), "problem": str(exc)}, str(exc))
        if not np.all(np.isfinite(np.asarray(claimed, dtype=float))):
            kind = "NaN" if np.any(np.isnan(np.asarray(claimed, dtype=float))) else "infinite"
            return Verdict("incorrect", None, {"sizes": list(inst.sizes), "problem": f"the claim is {kind}"},
                           f"the claim is {kind} at a random instance (sizes {list(inst.sizes)}), where the "
                           "gradient is finite: a division by zero, a log of 0 or an overflow such as e^{710}")
        if np.shape(claimed) != np.shape(expected) and np.size(claimed) != np.size(expected) or (
                np.ndim(claimed) and np.ndim(expected) and np.shape(claimed) != np.shape(expected)):
            return wrong("shape_mismatch", {"sizes": list(inst.sizes), "expected_shape": list(np.shape(expected)),
                                            "claimed_shape": list(np.shape(claimed))},
                         f"the claim is {shape_text(claimed)} but the gradient is {shape_text(expected)}")
        if not close(claimed, expected):
            return wrong("incorrect", counterexample(meaning, inst, expected, claimed),
                         "no common slip, alone or two at once, explains the difference")
    return Verdict("correct", diagnosis=f"agrees at {len(instances)} random instances")


def shape_text(x):
    return "a scalar" if np.ndim(x) == 0 else f"{np.shape(x)[0]}x{np.shape(x)[1]}"


def counterexample(meaning, inst, expected, claimed) -> dict:
    """Where the claim and the gradient differ most, and the instance: only what the network has (its
    input, target when the loss has one, weights, biases unless folded into Theta, lambda), named and
    laid out as the notation writes them (from-to's W^1 is 2x3, Ng's Theta^(1) has the bias as column 0)."""
    expected, claimed = np.atleast_2d(expected), np.atleast_2d(claimed).reshape(np.atleast_2d(expected).shape)
    worst = np.unravel_index(int(np.argmax(np.abs(expected - claimed))), expected.shape)
    return {"sizes": list(inst.sizes), "worst_entry": [int(i) + 1 for i in worst],
            "expected": float(expected[worst]), "claimed": float(claimed[worst]),
            "values": instance_values(meaning, inst)}


MAX_LISTED_VALUES = 60


def instance_values(meaning, inst) -> dict:
    from ..numeric import document_point

    q, n, spec = meaning.q, meaning.n, meaning.result.spec
    point = document_point(meaning.result, inst)
    batch = inst.samples > 1
    listed = lambda a: np.asarray(a, dtype=float).round(6).tolist()
    as_written = lambda v: v.reshape(1, -1) if q.layout == "row" and not batch else v     # a row vector stays a row
    unlabelled = n.layer_labels == "if_deep" and q.depth == 1          # Rashid's one layer: W, not W^1
    name = lambda tex, label=None: tex + ("" if label is None or unlabelled else
                                          "^{" + n.layer.replace("l", str(label)) + "}")
    values = {name(n.batch_input if batch else n.input): listed(as_written(point["x"]))}
    if spec.loss.kind != "generic":
        values[name(n.batch_target if batch else n.target)] = listed(as_written(point["y"]))
    if sum(w.size for w in inst.weights.values()) <= MAX_LISTED_VALUES:
        for layer in range(1, q.depth + 1):
            weights, bias = point["parameters"][f"W{layer}"], point["parameters"].get(f"b{layer}")
            if n.bias_folded and bias is not None:       # Theta^(l) = [b | W~], as Ng writes it
                values[name(n.bias, layer)] = listed(np.hstack([bias.reshape(-1, 1), weights]))
                continue
            values[name(n.weights, layer)] = listed(weights)
            if bias is not None:
                values[name(n.bias, layer)] = listed(bias)
    if meaning.l2:
        values["\\lambda"] = meaning.l2_value(inst)
    return values


def verify_claim(result, param: str, text: str) -> Verdict:
    goal = target(result, param)
    try:
        *left, right = split_equals(text)             # a leading "dL/dW = " is allowed
        claim = parse_claim(right, before="".join(part + "=" for part in left))
        check_size(claim)
    except DeriveError as exc:
        return Verdict("unparseable", None, None, str(exc))
    try:
        verdict = judge(result, goal, claim)
    except DeriveError as exc:
        return Verdict("unparseable", None, None, str(exc))
    except RecursionError:
        return Verdict("unparseable", None, None, "claim: nested too deeply to evaluate")
    except (ArithmeticError, ValueError) as exc:
        return Verdict("unparseable", None, None, f"claim: cannot be evaluated ({type(exc).__name__}: {exc})")
    if verdict.verdict == "correct" and symbolically_equal(claim, engine_forms(result, param), Meaning(result)):
        verdict.diagnosis = "symbolically the engine's own result, and " + verdict.diagnosis
    return verdict


def check_size(t: Term) -> None:
    count = sum(1 for _ in subterms(t))
    if count > MAX_TERMS:
        raise DeriveError(f"claim: {count} operations is too large; at most {MAX_TERMS} are accepted")
    work = _sum_work(t)
    if work > MAX_SUM_WORK:
        raise DeriveError(f"claim: its sums nest to about {work:.0f} terms; at most {MAX_SUM_WORK} are evaluated")


def _sum_work(t: Term) -> float:
    """How many terms the nested sums of t add up, with a sum up to a size taken as SIZE_GUESS."""
    inner = max((_sum_work(a) for a in t.args), default=1.0)
    if t.op != "sum":
        return inner
    upper = t.value if t.value is not None else SIZE_GUESS
    return upper * inner
