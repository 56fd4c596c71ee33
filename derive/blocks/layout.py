"""The row layout (notation: rowvec): samples, steps or tokens as rows, as NumPy code and most deep
learning texts write a batch (Z = X W + 1 b; attention softmax(Q K^T / sqrt(d)) V).

The engine derives in the column layout. Every quantity of the row layout is the transpose of its
column one (X_row = X^T, W_row = W^T, b_row = b^T, ...), so a matrix equation lhs = rhs becomes
lhs^T = rhs^T with the transpose pushed down to the quantities, which keep their names; an entry
with two indices is printed with them swapped (w_{kj} is from unit k to unit j). The printed lines
are read back in the row layout's own meaning (readback.py), not trusted to this transformation.
"""
from __future__ import annotations

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixExpr

from ..algebra import Diag, Elementwise, MatPartial
from ..steps import Step
from .symbols import Shift


def rows(e):
    """e^T written with the row layout's quantities (each column quantity M is M_row^T)."""
    if not isinstance(e, MatrixExpr):
        return e
    if isinstance(e, sp.MatrixSymbol):
        return sp.MatrixSymbol(e.name, e.shape[1], e.shape[0])
    if isinstance(e, sp.Transpose):
        inner = rows(e.arg)
        return inner.arg if isinstance(inner, sp.Transpose) else sp.Transpose(inner)
    if isinstance(e, sp.MatMul):
        scalars = [a for a in e.args if not isinstance(a, MatrixExpr)]
        matrices = [rows(a) for a in reversed([a for a in e.args if isinstance(a, MatrixExpr)])]
        return sp.MatMul(*scalars, *matrices, evaluate=False)
    if isinstance(e, sp.MatAdd):
        return sp.MatAdd(*[rows(a) for a in e.args], evaluate=False)
    if isinstance(e, sp.HadamardProduct):
        return sp.HadamardProduct(*[rows(a) for a in e.args], evaluate=False)
    if isinstance(e, sp.HadamardPower):
        return sp.HadamardPower(rows(e.base), e.exp)
    if isinstance(e, MatPartial):
        return MatPartial(e.num, rows(e.den))
    if isinstance(e, Elementwise):
        return Elementwise(e.function, rows(e.arg))
    if isinstance(e, Diag):              # a diagonal matrix is its own transpose, whichever way its vector lies
        inner = rows(e.vector)
        return Diag(inner.arg if isinstance(inner, sp.Transpose) else inner)
    if isinstance(e, Shift):
        return sp.Transpose(e)
    if isinstance(e, sp.OneMatrix):
        return sp.OneMatrix(e.shape[1], e.shape[0])
    if isinstance(e, sp.ZeroMatrix):
        return sp.ZeroMatrix(e.shape[1], e.shape[0])
    if isinstance(e, sp.Identity):
        return e
    raise TypeError(f"row layout: no rule for {type(e).__name__}")


def step_in_rows(step: Step) -> Step:
    """A matrix-level step as the row layout writes it; an index-level step is unchanged (its entries
    are printed with their two indices swapped)."""
    if not isinstance(step.lhs, MatrixExpr) and not isinstance(step.rhs, MatrixExpr):
        return step
    from dataclasses import replace

    return replace(step, lhs=rows(step.lhs), rhs=rows(step.rhs))
