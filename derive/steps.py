"""Step records and the Derivation container.

A step is an equation lhs = rhs of SymPy expressions plus the rule that justifies it. Each
rule is a frozen dataclass whose docstring is the identity it applies; `kind` names the
template that explains it in words (templates/steps/<kind>.tex.j2).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import sympy as sp

Bounds = tuple[tuple[sp.Symbol, sp.Expr], ...]   # free index -> its upper bound (from 1)


@dataclass(frozen=True)
class Step:
    lhs: sp.Basic
    rhs: sp.Basic
    level: str = "index"                 # index | matrix | batch | concrete | forward
    free: Bounds = ()                    # the free indices and their ranges
    facts: tuple[tuple[str, object], ...] = ()   # what the prose needs: dummies, names, conditions
    kind: ClassVar[str] = "step"
    justified: ClassVar[bool] = True

    def fact(self, key: str, default=None):
        return dict(self.facts).get(key, default)


def _rule(kind: str, doc: str, justified: bool = True):
    cls = type(kind.title().replace("_", ""), (Step,), {"__doc__": doc, "kind": kind, "justified": justified,
                                                         "__module__": __name__})
    return dataclass(frozen=True)(cls)


Definition = _rule("definition", "z^l_j = sum_i w^l_ji a^{l-1}_i + b^l_j, a^l_j = f(z^l_j), L = l(a^L, y)")
ChainRule = _rule("chain_rule", "dL/dw = sum_p dL/dz_p dz_p/dw  (w reaches L only through z)")
Substitute = _rule("substitute", "replace a quantity by its definition or an earlier result")
Differentiate = _rule("differentiate", "d(sum_i w_pi a_i + b_p)/dw_jk = sum_i delta_pj delta_ik a_i")
KroneckerCollapse = _rule("kronecker_collapse", "sum_i delta_ik x_i = x_k  (k in the range of i)")
DeltaDefinition = _rule("delta_definition", "delta^l_j = dL/dz^l_j")
LossDerivative = _rule("loss_derivative", "dl/da_k from the loss table, e.g. d(1/2 sum_k (a_k - y_k)^2)/da_k = a_k - y_k")
ActivationDerivative = _rule("activation_derivative", "da_k/dz_j = delta_kj f'(z_j) for an elementwise f")
ActivationIdentity = _rule("activation_identity", "f'(z) in terms of the output: sigma' = sigma(1 - sigma), tanh' = 1 - tanh^2")
SoftmaxJacobian = _rule("softmax_jacobian", "d softmax(z)_k / dz_j = a_k (delta_kj - a_j)")
Simplify = _rule("simplify", "algebra on one expression: factor, cancel, collect")
Simplification = _rule("simplification", "a textbook cancellation with its condition (sigmoid + BCE, softmax + CE)")
MatrixLift = _rule("matrix_lift", "entries (j, k) equal delta_j a_k for all j, k  <=>  the matrix is delta a^T")
SampleSum = _rule("sample_sum", "L = (1/m) sum_s L_s, so dL/dw = (1/m) sum_s dL_s/dw")
BatchLift = _rule("batch_lift", "sum_s u^(s) (v^(s))^T = U V^T with the samples as columns")
Accumulate = _rule("accumulate", "G := 0; for each sample s: G := G + delta^(s) (a^(s))^T; so G = Delta A^T")
Penalty = _rule("penalty", "d(lambda/2 sum w^2)/dw_jk = lambda w_jk")
Expand = _rule("expand", "write the result out in the raw weights and inputs (concrete sizes)")
Unjustified = _rule("unjustified", "an equality the engine cannot justify by a rule", justified=False)

STEP_KINDS = tuple(cls.kind for cls in (
    Definition, ChainRule, Substitute, Differentiate, KroneckerCollapse, DeltaDefinition, LossDerivative,
    ActivationDerivative, ActivationIdentity, SoftmaxJacobian, Simplify, Simplification, MatrixLift,
    SampleSum, BatchLift, Accumulate, Penalty, Expand, Unjustified))


@dataclass(frozen=True)
class Derivation:
    """The argument for one quantity (dL/dW^l, dL/db^l, delta^l, ...) at one level.

    `topic` is 'weight', 'bias', 'delta', 'forward', and `level` one of index, matrix,
    batch, concrete. The last step's rhs is the result.
    """

    topic: str
    layer: int | None
    level: str
    steps: tuple[Step, ...]
    quantities: object = field(default=None, compare=False, repr=False)   # for display only
    instances: tuple[int, ...] = ()      # for the general layer l: the values of l it is written for

    @property
    def key(self) -> str:
        return f"{self.topic}{'_l' if self.instances else self.layer or ''}:{self.level}"

    def at(self, layer: int) -> "Derivation":
        """The general derivation at one value of l (as printed), every step instantiated."""
        mapping = self.quantities.instance_map(layer)
        at = lambda e: e.xreplace(mapping) if isinstance(e, sp.Basic) else e
        steps = tuple(type(s)(at(s.lhs), at(s.rhs), s.level, tuple((i, at(b)) for i, b in s.free), s.facts)
                      for s in self.steps)
        return Derivation(self.topic, layer, self.level, steps, self.quantities)

    @property
    def result(self) -> Step:
        return self.steps[-1]

    def _repr_markdown_(self) -> str:
        """Jupyter: each step's justification in words, then its equation."""
        from .display import markdown

        return markdown(self)

    def _repr_latex_(self) -> str:  # Jupyter: MathJax and KaTeX both render aligned
        from .notation import profile
        from .render import aligned_chain

        q = self.quantities
        return "$$" + aligned_chain(self, q, profile(q.spec.notation, q.spec.symbols)) + "$$"
