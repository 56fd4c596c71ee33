"""Searching for the slip: single (and paired) changes of a wrong claim that make it right."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..claim import Term, base_name, render
from ..errors import DeriveError
from .limits import MAX_DIAGNOSE_TERMS, MAX_PAIR_SECONDS, MAX_PAIR_TERMS, MAX_PAIR_TRIALS
from .symbols import Meaning, at, free_letters, replace_at, subterms
from .values import close, evaluate, letters_of
from .verdict import ShapeError


def mutations(t: Term, meaning: Meaning):
    """Single changes of the claim, most common slips first: (changed claim, diagnosis)."""
    yield Term("neg", (t,)), "sign error: the claim has the wrong sign"
    for k, text in ((2.0, "2"), (0.5, "1/2")):
        yield Term("mul", (Term("number", value=k), t)), f"constant factor off: the claim is missing a factor {text}"
    yield Term("mul", (Term("recip", (Term("symbol", name="m"),)), t)), "constant factor off: the 1/m of the mean is missing"
    yield Term("mul", (Term("symbol", name="m"), t)), "constant factor off: an extra 1/m"
    spec = meaning.result.spec
    if spec.loss.l2 is not None:
        lam = Term("symbol", name=meaning.l2) if meaning.l2 else Term("number", value=float(spec.loss.l2))
        for layer in range(1, meaning.q.depth + 1):
            w = Term("symbol", name=base_name(meaning.n.weights), label=layer)
            yield Term("add", (t, Term("mul", (lam, w)))), f"the L2 term is missing: + λ {render(w)}"
    subs = list(subterms(t))
    for path, s in subs:
        if s.op in ("add", "sub"):            # e.g. an L2 term added to a bias gradient
            kept, dropped = s.args[0], s.args[1]
            yield replace_at(t, path, kept), f"an extra term: {render(dropped)} does not belong in {render(s)}"
            if s.op == "add":
                yield replace_at(t, path, dropped), f"an extra term: {render(kept)} does not belong in {render(s)}"
    for path, s in subs:
        if s.op == "transpose":
            yield replace_at(t, path, s.args[0]), f"extra transpose: {render(s)} should be {render(s.args[0])}"
    for path, s in subs:
        if s.op in ("symbol", "mul", "partial") and not (path and at(t, path[:-1]).op == "transpose"):
            yield replace_at(t, path, Term("transpose", (s,))), f"missing transpose: {render(s)} should be ({render(s)})^T"
    for path, s in subs:
        if s.op == "mul":
            yield replace_at(t, path, replace(s, args=s.args[::-1])), \
                f"wrong order of a product: {render(s)} should be {render(replace(s, args=s.args[::-1]))}"
    for path, s in subs:
        if s.op == "hadamard":
            yield replace_at(t, path, replace(s, op="mul")), f"⊙ where a matrix product belongs in {render(s)}"
        if s.op == "mul":
            yield replace_at(t, path, replace(s, op="hadamard")), f"a matrix product where ⊙ belongs in {render(s)}"
    for path, s in subs:
        if s.op == "symbol" and s.label is not None:
            for delta in (-1, 1):
                moved = replace(s, label=s.label + delta)
                yield replace_at(t, path, moved), f"wrong layer index: {render(s)} should be {render(moved)}"
    for path, s in subs:       # w_{jk} for w_{kj}: the index-level form of a missing transpose
        if s.op == "symbol" and len(s.indices) == 2 and s.indices[0] != s.indices[1]:
            flipped = replace(s, indices=s.indices[::-1])
            yield replace_at(t, path, flipped), f"indices of {render(s)} swapped (a missing transpose): " \
                                                 f"should be {render(flipped)}"
    for path, s in subs:       # delta_1 o_2 for delta_2 o_1: the two entry indices swapped
        if s.op == "mul" and all(a.op == "symbol" and len(a.indices) == 1 for a in s.args) and \
                s.args[0].indices != s.args[1].indices:
            a, b = s.args
            swapped = replace(s, args=(replace(a, indices=b.indices), replace(b, indices=a.indices)))
            yield replace_at(t, path, swapped), f"entry indices swapped: {render(s)} should be {render(swapped)}"
    for path, s in subs:
        if s.op == "symbol" and s.indices and all(isinstance(i, int) for i in s.indices):
            for k in range(len(s.indices)):
                for delta in (-1, 1):
                    moved = replace(s, indices=s.indices[:k] + (s.indices[k] + delta,) + s.indices[k + 1:])
                    if moved.indices[k] >= 1:
                        yield replace_at(t, path, moved), f"wrong entry index: {render(s)} should be {render(moved)}"
    z = meaning.n.pre.lstrip("\\")
    for letter in free_letters(t):      # index level: a missing f'(z_j) factor
        for layer in range(1, meaning.q.depth + 1):
            label = layer + meaning.n.node_shift
            factor = Term("apply", (Term("symbol", name=z, label=label, indices=(letter,)),), name="f", prime=True)
            yield Term("mul", (t, factor)), f"missing σ' factor: multiply by f'({z}{label}_{letter})"
    for path, s in subs:
        if s.op in ("symbol", "mul", "hadamard", "partial", "add", "sub", "neg"):
            for layer in range(1, meaning.q.depth + 1):
                label = layer + meaning.n.node_shift
                factor = Term("apply", (Term("symbol", name=z, label=label),), name="f", prime=True)
                yield replace_at(t, path, Term("hadamard", (s, factor))), \
                    f"missing σ' factor: {render(s)} should be multiplied (⊙) by f'({z}{label})"
    for path, s in subs:
        if s.op == "hadamard":
            for keep in (0, 1):
                yield replace_at(t, path, s.args[keep]), f"extra factor: {render(s.args[1 - keep])} does not belong"


def find_fix(meaning, instances, truth, claim, anchor=None) -> tuple[str, Term | None]:
    """The single change of the claim that makes it right; failing that, two changes at once
    (within a budget). Returns (diagnosis, the changed claim) or ("", None)."""
    size = sum(1 for _ in subterms(claim))
    if size > MAX_DIAGNOSE_TERMS:
        return "", None
    try:
        letters = [letters_of(meaning, anchor or truth, inst) for inst in instances[:2]]
        expected = [evaluate(truth, meaning, inst, ls) for inst, ls in zip(instances[:2], letters)]
    except (ShapeError, DeriveError):
        return "", None

    def fixes(changed) -> bool:
        try:
            return all(close(evaluate(changed, meaning, inst, ls), e)
                       for inst, ls, e in zip(instances[:2], letters, expected))
        except (ShapeError, DeriveError, ValueError, FloatingPointError, KeyError):
            return False

    with np.errstate(all="ignore"):
        singles = list(mutations(claim, meaning))
        for changed, text in singles:
            if fixes(changed):
                return text, changed
        if size > MAX_PAIR_TERMS:
            return "", None
        import time

        deadline, trials = time.monotonic() + MAX_PAIR_SECONDS, 0
        for first, first_text in singles:
            for changed, text in mutations(first, meaning):
                trials += 1
                if trials > MAX_PAIR_TRIALS or time.monotonic() > deadline:
                    return "", None
                if fixes(changed):
                    return f"two slips at once: (1) {first_text}; (2) {text}", changed
    return "", None
