"""The concrete level of a feature map's gradients: every entry of a small conv layer's kernel (and input)
gradient written out as the sum of its products, from the index-level result with the numbers put in;
entries outside a map (padding, the edges of the full convolution) are 0 and drop out."""
from __future__ import annotations

import itertools

import sympy as sp

from ..steps import Expand

CONCRETE_MAX_TERMS = 160          # entries x terms; a larger layer keeps its index-level form only


def expand_entries(subject, result, table, max_terms: int = CONCRETE_MAX_TERMS):
    """subject: what the derivation is about (dL/dK_cdpq); result: its last step, whose right side is written
    out at every value of the free indices."""
    names = [symbol for symbol, _ in result.free]
    bounds = [int(bound) for _, bound in result.free]
    steps, terms = [], 0
    for combo in itertools.product(*(range(1, b + 1) for b in bounds)):
        values = {symbol: sp.Integer(v) for symbol, v in zip(names, combo)}
        rhs = _inside(result.rhs.xreplace(values).doit(), table)
        terms += max(1, len(sp.Add.make_args(rhs)))
        if terms > max_terms:
            return None
        steps.append(Expand(subject.xreplace(values), rhs, "concrete", (), (("entry", combo),)))
    return steps


def _inside(expr, table):
    """Entries with a number outside their map's range are 0 (padding; positions no output reads)."""
    def outside(e):
        if not isinstance(e, sp.Indexed) or not all(i.is_Integer for i in e.indices):
            return False
        atom = table.atom(e.base.label.name)
        shape = table.shape("z" if atom.kind == "delta" else atom.kind, atom.layer)
        shape = [n for n in shape if not (len(shape) > len(e.indices) and n == 1)]
        return any(not 1 <= int(i) <= int(n) for i, n in zip(e.indices, shape))
    return expr.replace(outside, lambda e: sp.Integer(0))
