"""Numbers for SymPy step expressions at a numeric instance.

A small tree walker rather than lambdify: it knows our quantities (looked up in the
instance), unevaluated partial derivatives (from the oracle, or a central difference), sums
with symbolic bounds, Kronecker deltas and the matrix classes, and shares repeated
subexpressions through a cache.
"""
from __future__ import annotations

import numpy as np
import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixExpr

from .algebra import Diag, Elementwise, MatPartial, Partial
from .oracle import Instance

PARTIAL_EPS = 1e-5
LOSS_KINDS = ("L", "L_data")   # the total loss and the loss without the penalty


class EvaluationError(Exception):
    pass


class Evaluator:
    def __init__(self, inst: Instance, bindings: dict[sp.Symbol, int] | None = None):
        self.inst = inst
        self.bindings = dict(bindings or {})
        self.cache: dict = {}

    def __call__(self, expr):
        key = expr
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        value = self._eval(expr)
        if not self.bindings or not (expr.free_symbols & self.bindings.keys()):
            self.cache[key] = value
        return value

    # --------------------------------------------------------------------- scalars
    def _eval(self, e):
        if isinstance(e, MatrixExpr):
            return self._matrix(e)
        if e.is_Number:
            return float(e)
        if isinstance(e, sp.Symbol):
            return self._symbol(e)
        if isinstance(e, sp.Indexed):
            return self._entry(e)
        if isinstance(e, sp.Add):
            return sum(self(arg) for arg in e.args)
        if isinstance(e, sp.Mul):
            out = 1.0
            for arg in e.args:
                out = out * self(arg)
            return out
        if isinstance(e, sp.Pow):
            return self(e.base) ** self(e.exp)
        if isinstance(e, sp.Sum):
            return self._sum(e)
        if isinstance(e, sp.KroneckerDelta):
            return 1.0 if self._int(e.args[0]) == self._int(e.args[1]) else 0.0
        if isinstance(e, Partial):
            return self._partial(e)
        if isinstance(e, sp.exp):
            return float(np.exp(self(e.args[0])))
        if isinstance(e, sp.log):
            return float(np.log(self(e.args[0])))
        if isinstance(e, sp.core.function.AppliedUndef):
            row, derivative = self.inst.q.function_row(type(e).__name__)
            x = np.array([[self(e.args[0])]])
            return float((row.numpy_derivative if derivative else row.numpy)(x)[0, 0])
        raise EvaluationError(f"cannot evaluate {type(e).__name__}: {e}")

    def _symbol(self, s):
        if s in self.bindings:
            return float(self.bindings[s])
        if s in self.inst.constants:
            return float(self.inst.constants[s])
        if s.name in LOSS_KINDS:
            return float(self.inst.value(s.name))
        raise EvaluationError(f"no value for symbol {s}")

    def _int(self, e) -> int:
        if e.is_Integer:
            return int(e)
        value = self(e)
        if abs(value - round(value)) > 1e-9:
            raise EvaluationError(f"index {e} is not an integer")
        return int(round(value))

    def _locate(self, e: sp.Indexed):
        atom = self.inst.q.atom(e.base.label)
        idx = [self._int(i) - 1 for i in e.indices]
        if atom.kind == "W":   # the instance stores W as (to, from)
            return atom, (idx[0], idx[1]) if self.inst.q.index_order == "to_from" else (idx[1], idx[0])
        if atom.kind == "L":  # L_s: per-sample loss
            return atom, (idx[0],)
        return atom, (idx[0], idx[1] if len(idx) > 1 else 0)

    def _entry(self, e: sp.Indexed):
        atom, where = self._locate(e)
        if atom.kind == "L":
            return float(self.inst.value("L_s")[where])
        return float(self.inst.value(atom.kind, atom.layer)[where])

    def _sum(self, e: sp.Sum):
        body, limits = e.function, e.limits
        (var, lo, hi), rest = limits[0], limits[1:]
        inner = sp.Sum(body, *rest) if rest else body
        total = 0.0
        saved = self.bindings.get(var)
        for value in range(self._int(lo), self._int(hi) + 1):
            self.bindings[var] = value
            total += self(inner)
        if saved is None:
            self.bindings.pop(var, None)
        else:
            self.bindings[var] = saved
        return total

    def _partial(self, e: Partial):
        num, den = e.num, e.den
        if not isinstance(den, sp.Indexed):
            raise EvaluationError(f"cannot differentiate by {den}")
        atom, where = self._locate(den)
        # Fast path: derivatives of the loss come from the oracle's backward pass.
        if isinstance(num, sp.Symbol) and num.name in LOSS_KINDS and atom.kind in ("W", "b", "z", "a") and not atom.batch:
            if atom.kind == "a" and atom.layer == 0:
                return self._central(num, atom, where)
            return float(self.inst.grad(atom.kind, atom.layer, num.name)[where])
        if isinstance(num, sp.Indexed) and self.inst.q.atom(num.base.label).kind == "L":
            sample = self._int(num.indices[0]) - 1
            return float(self.inst.sample_grad(atom.kind, atom.layer, sample)[where])
        return self._central(num, atom, where)

    def _central(self, num, atom, where):
        values = []
        for h in (PARTIAL_EPS, -PARTIAL_EPS):
            moved = Evaluator(self.inst.perturbed(atom.kind, atom.layer, where, h), self.bindings)
            values.append(moved(num))
        return (values[0] - values[1]) / (2 * PARTIAL_EPS)

    # -------------------------------------------------------------------- matrices
    def _orient(self, atom, array):
        """The instance stores W as (to, from) and vectors as columns; the layout may transpose them."""
        layout = self.inst.q.layout
        if atom.kind in ("W", "acc"):
            return array if layout == "column" else array.T
        return array.T if layout == "row" else array

    def _matrix(self, e):
        if isinstance(e, sp.MatrixSymbol):
            atom = self.inst.q.atom(e.name)
            return self._orient(atom, self.inst.value(atom.kind, atom.layer))
        if isinstance(e, sp.MatMul):
            out = None
            for arg in e.args:
                v = self(arg)
                if out is None:
                    out = v
                elif np.ndim(out) == 0 or np.ndim(v) == 0:
                    out = out * v
                else:
                    out = out @ v
            return out
        if isinstance(e, sp.MatAdd):
            return sum(self(arg) for arg in e.args)
        if isinstance(e, sp.Transpose):
            return self(e.arg).T
        if isinstance(e, sp.HadamardProduct):
            out = self(e.args[0])
            for arg in e.args[1:]:
                out = out * self(arg)
            return out
        if isinstance(e, sp.HadamardPower):
            return self(e.base) ** self(e.exp)
        if isinstance(e, Elementwise):
            x = self(e.arg)
            if e.function == "reciprocal":
                return 1.0 / x
            row, derivative = self.inst.q.function_row(e.function)
            fn = row.numpy_derivative if derivative else row.numpy
            return fn(x.T).T if self.inst.q.layout == "row" else fn(x)   # softmax runs along a column
        if isinstance(e, Diag):
            return np.diag(self(e.vector).reshape(-1))
        if isinstance(e, sp.OneMatrix):
            return np.ones((self._int(e.shape[0]), self._int(e.shape[1])))
        if isinstance(e, sp.Identity):
            return np.eye(self._int(e.shape[0]))
        if isinstance(e, sp.ZeroMatrix):
            return np.zeros((self._int(e.shape[0]), self._int(e.shape[1])))
        if isinstance(e, MatPartial):
            atom = self.inst.q.atom(e.den.name)
            return self._orient(atom, self.inst.grad(atom.kind, atom.layer, e.num.name))
        if isinstance(e, sp.ImmutableMatrix):
            return np.array([[self(x) for x in row] for row in e.tolist()], dtype=float)
        raise EvaluationError(f"cannot evaluate matrix {type(e).__name__}: {e}")
