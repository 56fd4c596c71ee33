"""Searching for the slip: single (and paired) changes of a wrong claim that make it right."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..claim import Term, base_name, render
from ..errors import DeriveError
from ..evaluate import Evaluator
from .limits import MAX_DIAGNOSE_TERMS, MAX_PAIR_SECONDS, MAX_PAIR_TERMS, MAX_PAIR_TRIALS
from .symbols import Meaning, at, free_letters, replace_at, subterms
from .values import close, evaluate, letters_of, value_of
from .verdict import ShapeError


def mutations(t: Term, meaning: Meaning):
    """Single changes of the claim, most common slips first: (changed claim, diagnosis). A change inside
    a written matrix says which entry (row, column) it is in."""
    subs = list(subterms(t))
    where = lambda path: _matrix_entry(t, path)
    yield Term("neg", (t,)), "sign error: the claim has the wrong sign"
    for k, text in ((2.0, "2"), (0.5, "1/2")):
        yield Term("mul", (Term("number", value=k), t)), f"constant factor off: the claim is missing a factor {text}"
    yield Term("mul", (Term("recip", (Term("symbol", name="m"),)), t)), "constant factor off: the 1/m of the mean is missing"
    yield Term("mul", (Term("symbol", name="m"), t)), "constant factor off: an extra 1/m"
    yield from _sample_sums(t, subs, meaning)
    spec = meaning.result.spec
    if spec.loss.l2 is not None:
        yield from _missing_penalty(t, meaning)
        yield from _penalty_factors(t, subs, meaning)
    for path, s in subs:
        if path and at(t, path[:-1]).op in ("add", "sub"):      # 1/m on the data term only
            yield replace_at(t, path, Term("mul", (Term("recip", (Term("symbol", name="m"),)), s))), \
                f"constant factor off: the 1/m of the mean is missing on {render(s)}"
    for path, s in subs:
        if s.op == "sub":
            yield replace_at(t, path, replace(s, op="add")), \
                f"sign error: {render(s.args[1])} is added, not subtracted, in {render(s)}{where(path)}"
        if s.op == "add":
            yield replace_at(t, path, replace(s, op="sub")), \
                f"sign error: {render(s.args[1])} is subtracted, not added, in {render(s)}{where(path)}"
    yield from _scalar_output_gradient(t, subs, meaning)
    for path, s in subs:
        if s.op == "elementary" and s.name == "exp":
            inner = s.args[0].args[0] if s.args[0].op == "neg" else Term("neg", (s.args[0],))
            yield replace_at(t, path, replace(s, args=(inner,))), \
                f"sign error in an exponent: {render(s)} should be {render(replace(s, args=(inner,)))}"
    for path, s in subs:
        if s.op in ("add", "sub"):            # e.g. an L2 term added to a bias gradient
            kept, dropped = s.args[0], s.args[1]
            yield replace_at(t, path, kept), f"an extra term: {render(dropped)} does not belong in {render(s)}"
            if s.op == "add":
                yield replace_at(t, path, dropped), f"an extra term: {render(kept)} does not belong in {render(s)}"
    for path, s in subs:
        if s.op == "transpose":
            yield replace_at(t, path, s.args[0]), Slip(f"extra transpose: {render(s)} should be {render(s.args[0])}",
                                                        s.args[0])
    for path, s in subs:
        if s.op in ("symbol", "mul", "star", "partial") and not (path and at(t, path[:-1]).op == "transpose"):
            yield replace_at(t, path, Term("transpose", (s,))), \
                Slip(f"missing transpose: {render(s)} should be ({render(s)})^T", s)
    for path, s in subs:
        if s.op in ("mul", "star"):
            yield replace_at(t, path, replace(s, args=s.args[::-1])), \
                f"wrong order of a product: {render(s)} should be {render(replace(s, args=s.args[::-1]))}"
    yield from _chains(t, subs)
    for path, s in subs:
        if s.op == "hadamard":
            yield replace_at(t, path, replace(s, op="mul")), f"⊙ where a matrix product belongs in {render(s)}"
        if s.op in ("mul", "star"):
            yield replace_at(t, path, replace(s, op="hadamard")), f"a matrix product where ⊙ belongs in {render(s)}"
    yield from _layers(t, subs, meaning)
    for path, s in subs:       # w_{jk} for w_{kj}: the index-level form of a missing transpose
        if s.op == "symbol" and len(s.indices) == 2 and s.indices[0] != s.indices[1]:
            flipped = replace(s, indices=s.indices[::-1])
            yield replace_at(t, path, flipped), f"indices of {render(s)} swapped (a missing transpose): " \
                                                 f"should be {render(flipped)}{where(path)}"
    for path, s in subs:       # delta_1 o_2 for delta_2 o_1: the two entry indices swapped
        if s.op in ("mul", "star") and all(a.op == "symbol" and len(a.indices) == 1 for a in s.args) and \
                s.args[0].indices != s.args[1].indices:
            a, b = s.args
            swapped = replace(s, args=(replace(a, indices=b.indices), replace(b, indices=a.indices)))
            yield replace_at(t, path, swapped), f"entry indices swapped: {render(s)} should be {render(swapped)}{where(path)}"
    for path, s in subs:
        if s.op == "symbol" and s.indices and all(isinstance(i, int) for i in s.indices):
            for k in range(len(s.indices)):
                for delta in (-1, 1, -2, 2):
                    moved = replace(s, indices=s.indices[:k] + (s.indices[k] + delta,) + s.indices[k + 1:])
                    if moved.indices[k] >= 1:
                        yield replace_at(t, path, moved), \
                            f"wrong entry index: {render(s)} should be {render(moved)}{where(path)}"
    yield from _index_letters(t, subs, meaning)
    z = meaning.n.pre.lstrip("\\")
    for letter in free_letters(t):      # index level: a missing f'(z_j) factor
        for layer in range(1, meaning.q.depth + 1):
            label = layer + meaning.n.node_shift
            factor = Term("apply", (Term("symbol", name=z, label=label, indices=(letter,)),), name="f", prime=True)
            yield Term("mul", (t, factor)), f"missing σ' factor: multiply by f'({z}{label}_{letter})"
    for path, s in subs:
        if s.op in ("symbol", "mul", "star", "hadamard", "partial", "add", "sub", "neg"):
            for layer in range(1, meaning.q.depth + 1):
                label = layer + meaning.n.node_shift
                factor = Term("apply", (Term("symbol", name=z, label=label),), name="f", prime=True)
                yield replace_at(t, path, Term("hadamard", (s, factor))), \
                    f"missing σ' factor: {render(s)} should be multiplied (⊙) by f'({z}{label})"
    yield from _extra_factors(t, subs, meaning)
    yield from _pre_for_act(t, subs, meaning)
    act = base_name(meaning.n.act)
    for path, s in subs:       # tanh' is 1 - a^2: the square forgotten
        if s.op == "symbol" and s.name == act:
            yield replace_at(t, path, Term("hadamard", (s, s))), f"a square is missing: {render(s)} should be " \
                                                                 f"{render(s)} ⊙ {render(s)}"


class Slip(str):
    """A diagnosis with the part of the claim it is about, to explain it with that part's shape."""

    def __new__(cls, text: str, focus: Term):
        out = super().__new__(cls, text)
        out.focus = focus
        return out


def _explained(text: str, meaning: Meaning, inst) -> str:
    """A transpose slip with the shapes that show it: W2 is 1x4 here, so (W2)^T is 4x1."""
    focus = getattr(text, "focus", None)
    if focus is None:
        return text
    try:
        shape = np.shape(value_of(meaning.normalize(focus), meaning, Evaluator(inst), inst.samples))
    except (ShapeError, DeriveError, ValueError, TypeError, KeyError):
        return text
    if len(shape) != 2 or shape[0] == shape[1]:
        return text
    return f"{text} ({render(focus)} is {shape[0]}x{shape[1]} here and its transpose {shape[1]}x{shape[0]})"


def _extra_factors(t: Term, subs, meaning: Meaning):
    """A factor of an entry-wise product that does not belong, alone or with its neighbour (a ⊙ (1 - a),
    the sigmoid's derivative, written where softmax or sigmoid with cross-entropy has cancelled it)."""
    q, loss = meaning.q, meaning.result.spec.loss.kind
    last = q.activation(q.depth).name
    cancels = (last == "softmax" and loss == "cross_entropy") or (last == "sigmoid" and loss == "binary_cross_entropy")
    why = (f" (with {last} and {'cross-entropy' if loss == 'cross_entropy' else 'binary cross-entropy'} the output "
           f"delta is {base_name(meaning.n.act)} - {base_name(meaning.n.target)}: the activation's derivative "
           "cancels)") if cancels else ""
    for path, s in subs:
        if s.op != "hadamard" or (path and at(t, path[:-1]).op == "hadamard"):
            continue
        factors = _flatten(s)
        for size in (1, 2):
            for i in range(len(factors) - size + 1):
                kept = factors[:i] + factors[i + size:]
                if not kept:
                    continue
                dropped = " ⊙ ".join(render(f) for f in factors[i:i + size])
                yield replace_at(t, path, _build(kept, "hadamard")), \
                    f"{'an extra derivative factor' if cancels else 'extra factor'}: {dropped} does not belong{why}"


def _matrix_entry(t: Term, path) -> str:
    """' in row r, column c of the written matrix' when path runs through a bmatrix entry."""
    node = t
    for k, step in enumerate(path):
        if node.op == "matrix" and k + 1 < len(path):
            return f" (in row {step + 1}, column {path[k + 1] + 1} of the written matrix)"
        node = node.args[step]
    return ""


def _replace_all(t: Term, old: Term, new: Term) -> Term:
    """Every occurrence of the symbol old replaced: a slip made once is usually copied (1 - z ⊙ z)."""
    if t == old:
        return new
    return replace(t, args=tuple(_replace_all(a, old, new) for a in t.args)) if t.args else t


def _layers(t: Term, subs, meaning: Meaning):
    """A wrong layer label, at one occurrence or at all of them; x where a^1 belongs and back."""
    symbols = [(p, s) for p, s in subs if s.op == "symbol"]
    for path, s in symbols:
        if s.label is not None:
            for delta in (-1, 1):
                moved = replace(s, label=s.label + delta)
                yield replace_at(t, path, moved), f"wrong layer index: {render(s)} should be {render(moved)}" \
                                                  f"{_matrix_entry(t, path)}"
    seen = set()
    for _, s in symbols:
        if s.label is not None and s not in seen and sum(1 for _, o in symbols if o == s) > 1:
            seen.add(s)
            for delta in (-1, 1):
                moved = replace(s, label=s.label + delta)
                yield _replace_all(t, s, moved), f"wrong layer index: {render(s)} should be {render(moved)} " \
                                                 f"(each time it appears)"
    first = Term("symbol", name=base_name(meaning.n.act), label=1 + meaning.n.node_shift)
    for path, s in symbols:
        if meaning.table.get(s.name) == "input" and s.label is None:
            moved = replace(first, indices=s.indices)
            yield replace_at(t, path, moved), f"wrong layer: {render(s)} (the input) should be {render(moved)}"


def _chains(t: Term, subs):
    """A product of several factors, flattened: two neighbours swapped ((AB)^T is B^T A^T, not A^T B^T),
    or two neighbours multiplied entry by entry where the rest are matrix products."""
    for path, s in subs:
        if s.op not in ("mul", "star") or (path and at(t, path[:-1]).op == s.op):
            continue
        factors = _flatten(s)
        if not 3 <= len(factors) <= MAX_CHAIN:
            continue
        for i in range(len(factors) - 1):
            a, b = factors[i], factors[i + 1]
            swapped = factors[:i] + [b, a] + factors[i + 2:]
            both = a.op == "transpose" and b.op == "transpose"
            yield replace_at(t, path, _build(swapped, s.op)), (
                f"wrong order of a product: {render(a)} {render(b)} should be {render(b)} {render(a)}"
                + (" (the transpose of a product reverses its order)" if both else ""))
        for i in range(len(factors) - 1):          # (f_i ... f_j) ⊙ f_{j+1}: the run before it, entry-wise
            for j in range(i, len(factors) - 1):
                run, b = _build(factors[i:j + 1], s.op), factors[j + 1]
                grouped = factors[:i] + [Term("hadamard", (run, b))] + factors[j + 2:]
                yield replace_at(t, path, _build(grouped, s.op)), \
                    f"a matrix product where ⊙ belongs: {render(run)} {render(b)} should be {render(run)} ⊙ {render(b)}"


MAX_CHAIN = 10          # longer products are searched only by the changes above


def _flatten(t: Term) -> list:
    return [f for a in t.args for f in (_flatten(a) if a.op == t.op else [a])]


def _build(factors: list, op: str) -> Term:
    out = factors[0]
    for f in factors[1:]:
        out = Term(op, (out, f))
    return out


def _missing_penalty(t: Term, meaning: Meaning):
    """+ lambda W^l at matrix level; + lambda w^l_{jk} with the claim's own letters at index level."""
    lam = Term("symbol", name=meaning.l2) if meaning.l2 else Term("number", value=float(meaning.result.spec.loss.l2))
    letters = free_letters(t)
    for layer in range(1, meaning.q.depth + 1):
        if len(letters) == 2:
            for pair in (tuple(letters), tuple(letters[::-1])):
                w = Term("symbol", name=base_name(meaning.n.weight), label=layer, indices=pair)
                yield Term("add", (t, Term("mul", (lam, w)))), f"the L2 term is missing: + λ {render(w)}"
        else:
            w = Term("symbol", name=base_name(meaning.n.weights), label=layer)
            yield Term("add", (t, Term("mul", (lam, w)))), f"the L2 term is missing: + λ {render(w)}"


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
            changed = meaning.normalize(changed)       # the claim as written, changed, then read
            return all(close(evaluate(changed, meaning, inst, ls), e)
                       for inst, ls, e in zip(instances[:2], letters, expected))
        except (ShapeError, DeriveError, ValueError, TypeError, FloatingPointError, KeyError):
            return False

    with np.errstate(all="ignore"):
        singles = list(mutations(claim, meaning))
        for changed, text in singles:
            if fixes(changed):
                return _explained(text, meaning, instances[0]), changed
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


def _sample_sums(t: Term, subs, meaning: Meaning):
    """A bias gradient of a batch adds the samples' deltas: Delta 1 (each row summed; 1^T Delta in the
    row layout, where samples are rows). Forgetting it leaves a matrix where a vector belongs."""
    if not meaning.uses_batch(t) or free_letters(t):
        return
    ones = Term("symbol", name="ones")
    batch_symbols = [(p, s) for p, s in subs if s.op == "symbol" and not s.indices and
                     meaning.table.get(s.name, "").startswith("batch_")]
    for path, s in [((), t)] + batch_symbols:
        summed = Term("mul", (s, ones)) if meaning.q.layout != "row" else Term("mul", (Term("transpose", (ones,)), s))
        how = f"{render(s)} 1, each row summed" if meaning.q.layout != "row" else f"1^T {render(s)}, each column summed"
        yield replace_at(t, path, summed), (f"the sum over the samples is missing: a bias gradient adds up the batch's "
                                            f"deltas ({how})")


def _penalty_factors(t: Term, subs, meaning: Meaning):
    """The penalty (lambda/2) sum w^2 has the gradient lambda W: a factor 2 (or 1/2) on it is a slip."""
    lam = meaning.l2
    for path, s in subs:
        if s.op == "mul" and any(a.op == "symbol" and (a.name == lam or meaning.is_l2(a.name)) for a in s.args):
            for k, text in ((0.5, "an extra factor 2"), (2.0, "a missing factor 2")):
                yield replace_at(t, path, Term("mul", (Term("number", value=k), s))), \
                    (f"the penalty term has {text}: the derivative of (λ/2) Σ w² by W is λ W, so the term is "
                     f"{render(Term('mul', (Term('number', value=k), s)))}")


def _scalar_output_gradient(t: Term, subs, meaning: Meaning):
    """With a generic loss L(y_out) every gradient carries the scalar dL/dy_out once, as a factor of the
    whole: missing, doubled, or placed inside a term where it multiplies only part of the claim."""
    if not meaning.n.output or meaning.result.spec.loss.kind != "generic":
        return
    scalar = Term("partial", (Term("symbol", name=meaning.n.loss.lstrip("\\")), Term("symbol", name="y_out")))
    written = [(p, s) for p, s in subs if s.op == "partial" and s.args[1].op == "symbol" and s.args[1].name == "y_out"]
    if not written:
        yield Term("mul", (t, scalar)), f"the scalar {render(scalar)} is missing: it multiplies the whole gradient"
    for path, s in written:
        parent = at(t, path[:-1]) if path else None
        if parent is not None and parent.op in ("mul", "star", "hadamard"):
            rest = parent.args[1 - path[-1]]
            moved = replace_at(t, path[:-1], rest)
            yield moved, f"the scalar {render(s)} appears once too often: it multiplies the gradient once"
            yield Term("mul", (moved, s)), (f"the scalar {render(s)} is misplaced: it multiplies the whole gradient, "
                                            f"not only {render(rest)}")


def _pre_for_act(t: Term, subs, meaning: Meaning):
    """z written where a belongs (tanh' as 1 - z^2 instead of 1 - a^2), or a where z belongs: at every
    occurrence of the symbol, as a slip in a formula is copied, then at one."""
    pre, act = base_name(meaning.n.pre), base_name(meaning.n.act)
    if pre == act:
        return
    symbols = [(p, s) for p, s in subs if s.op == "symbol" and s.name in (pre, act)]
    for every in (True, False):
        for path, s in symbols:
            other = act if s.name == pre else pre
            moved = replace(s, name=other)
            changed = _replace_all(t, s, moved) if every else replace_at(t, path, moved)
            yield changed, (f"{s.name} written for {other}: {render(s)} should be {render(moved)}"
                            + (" (the activation, not the weighted input)" if other == act else
                               " (the weighted input, not the activation)") + _matrix_entry(t, path))


def _index_letters(t: Term, subs, meaning: Meaning):
    """An index letter changed: o_k where o_j belongs (the claim's letters and the notation's j, k, i)."""
    if not free_letters(t):
        return
    letters = sorted({i for _, s in subs if s.op == "symbol" for i in s.indices if isinstance(i, str)}
                     | {s.name for _, s in subs if s.op == "sum"} | {meaning.n.index_name(c) for c in "jki"})
    for path, s in subs:
        if s.op != "symbol":
            continue
        for k, letter in enumerate(s.indices):
            if not isinstance(letter, str):
                continue
            for other in letters:
                if other != letter:
                    moved = replace(s, indices=s.indices[:k] + (other,) + s.indices[k + 1:])
                    yield replace_at(t, path, moved), f"index letter: {render(s)} should be {render(moved)}"
