"""A claim as a SymPy matrix expression, to recognise the engine's own forms."""
from __future__ import annotations

from ..claim import Term
from .limits import MAX_DIAGNOSE_TERMS
from .symbols import Meaning, parameter_layer, subterms

def to_sympy(t: Term, meaning: Meaning):
    """The claim as a SymPy matrix expression over the engine's quantities, or None when it has
    parts with no matrix form (entries, partials of entries)."""
    import sympy as sp
    from sympy import HadamardProduct, MatAdd, MatMul, Transpose

    from ..algebra import Elementwise, MatPartial, prime

    if t.op == "symbol":
        if t.indices or meaning.is_l2(t.name):
            return sp.Symbol(meaning.l2) if meaning.is_l2(t.name) else None
        if t.name == "m":
            return meaning.q.samples
        if t.name == "ones":
            return sp.OneMatrix(meaning.q.samples, 1)
        sym, _ = meaning.matrix(t)
        return sym
    if t.op == "number":
        return sp.nsimplify(t.value)
    if t.op == "partial":
        den = t.args[1]
        if den.indices:
            return None
        return MatPartial(meaning.q.loss, meaning.matrix(den)[0])
    if t.op == "apply":
        arg = t.args[0]
        if arg.op != "symbol" or meaning.table.get(arg.name) != "z" or t.name not in ("f", "g", "sigmoid", "relu", "tanh"):
            return None
        layer = meaning.layer("z", arg.label)
        name = meaning.q.layer_function[layer]
        if t.name not in ("f", "g") and meaning.q.activation(layer).name != t.name:
            return None
        return Elementwise(prime(name) if t.prime else name, meaning.q.matrix("z", layer))
    args = [to_sympy(a, meaning) for a in t.args]
    if any(a is None for a in args):
        return None
    if t.op in ("diag", "divide"):
        return None               # compared numerically only
    try:
        if t.op == "transpose":
            return Transpose(args[0]).doit() if not getattr(args[0], "is_Matrix", False) else Transpose(args[0])
        if t.op == "neg":
            return -args[0]
        if t.op == "recip":
            return 1 / args[0]
        a, b = args
        if t.op == "add":
            return MatAdd(a, b) if getattr(a, "is_Matrix", False) else a + b
        if t.op == "sub":
            return MatAdd(a, -b) if getattr(a, "is_Matrix", False) else a - b
        if t.op == "hadamard":
            return HadamardProduct(a, b)
        return MatMul(a, b) if getattr(a, "is_Matrix", False) or getattr(b, "is_Matrix", False) else a * b
    except Exception:            # SymPy refuses shapes that do not fit; the numeric judge explains why
        return None


def symbolically_equal(claim: Term, engine_results, meaning: Meaning) -> bool:
    import sympy as sp

    if sum(1 for _ in subterms(claim)) > MAX_DIAGNOSE_TERMS:
        return False
    expr = to_sympy(claim, meaning)
    if expr is None:
        return False
    for result in engine_results:
        try:
            if expr == result or sp.simplify(expr - result) == sp.ZeroMatrix(*result.shape):
                return True
        except Exception:
            continue
    return False


def engine_forms(result, param: str):
    """The engine's matrix-form results for a parameter: every right-hand side of its matrix chain."""
    which = parameter_layer(result, param)
    if which is None:
        return []
    try:
        d = result.get(*which, "matrix")
    except KeyError:
        return []
    return [s.rhs for s in d.steps]
