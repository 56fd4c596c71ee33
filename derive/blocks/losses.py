"""The loss of a block network: its definition, and its derivative by the output (entry-wise losses) or
by the output layer's weighted input (a loss paired with its output activation, where the textbook
cancellation gives delta^L = c (a - y) or its kin)."""
from __future__ import annotations

import sympy as sp
from sympy import KroneckerDelta as kd, Sum, HadamardProduct, MatAdd, MatMul, OneMatrix

from ..algebra import Elementwise, MatPartial, Partial
from ..steps import (ActivationIdentity, ChainRule, Definition, DeltaDefinition, Differentiate, KroneckerCollapse,
                     LossDerivative, MatrixLift, Simplification, Simplify, SoftmaxJacobian, Substitute)
from .symbols import INDEX, fn

I, J, K, S, T = (INDEX[n] for n in ("i", "j", "k", "s", "t"))


class LossRules:
    def __init__(self, builder):
        self.b = builder
        spec = builder.spec
        self.kind = spec.loss.kind
        scale = spec.loss.scale
        self.scale = (sp.Rational(scale.numerator, scale.denominator) if scale is not None
                      else sp.Rational(1, 2) if self.kind == "squared_error" else sp.Integer(1))
        self.c = sp.Integer(1) / builder.m if spec.loss.reduction == "mean" else sp.Integer(1)
        self.kappa = sp.Rational(spec.loss.delta.numerator, spec.loss.delta.denominator)
        self.margin = sp.Rational(spec.loss.margin.numerator, spec.loss.margin.denominator)

    # the per-sample loss, as a sum over the output units k of sample t
    def term(self, t=T):
        b, L = self.b, self.b.L
        a, y, n = b.e("a", L), b.e("y"), b.n(L)
        k = K
        if self.kind == "squared_error":
            body = (a[k, t] - y[k, t]) ** 2
        elif self.kind == "huber":
            r = a[k, t] - y[k, t]
            body = sp.Piecewise((r ** 2 / 2, sp.Abs(r) <= self.kappa), (self.kappa * (sp.Abs(r) - self.kappa / 2), True))
        elif self.kind == "cross_entropy":
            body = -y[k, t] * sp.log(a[k, t])
        elif self.kind == "binary_cross_entropy":
            body = -(y[k, t] * sp.log(a[k, t]) + (1 - y[k, t]) * sp.log(1 - a[k, t]))
        elif self.kind == "nll":
            body = -y[k, t] * a[k, t]
        elif self.kind == "softmax_cross_entropy":
            z = b.e("z", L)
            return sp.log(Sum(sp.exp(z[k, t]), (k, 1, n))) - Sum(y[k, t] * z[k, t], (k, 1, n))
        elif self.kind == "hinge":
            z = b.e("z", L)
            correct = Sum(y[I, t] * z[I, t], (I, 1, n))
            body = (1 - y[k, t]) * sp.Max(0, z[k, t] - correct + self.margin)
        else:
            raise ValueError(self.kind)
        return Sum(body, (k, 1, n))

    def total(self):
        inner = sp.Mul(self.scale, self.term(T), evaluate=False) if self.scale != 1 else self.term(T)
        return sp.Mul(self.c, Sum(inner, (T, 1, self.b.m)), evaluate=False) if self.c != 1 else Sum(inner, (T, 1, self.b.m))

    def forward(self):
        return [Definition(self.b.t.loss, self.total(), "forward", (), (("what", "loss"), ("loss", self.kind),
                                                                         ("reduction", self.b.spec.loss.reduction)))]

    # ---------------------------------------------------------------- backward
    def steps(self, level: str):
        return getattr(self, f"{self.kind}_{level}")() if hasattr(self, f"{self.kind}_{level}") else \
            (self.entrywise_index() if level == "index" else self.entrywise_matrix())

    def facts(self, **extra):
        return (("loss", self.kind),) + tuple(extra.items())

    def entrywise_index(self):
        """Squared error and Huber: dL/da^L_js, entry by entry (only sample s's term k = j holds a_js)."""
        b, L = self.b, self.b.L
        a, y = b.e("a", L), b.e("y")
        free = ((J, b.n(L)), (S, b.m))
        head = Partial(b.t.loss, a[J, S])
        r1 = Partial(self.total(), a[J, S])
        steps = [Substitute(head, r1, "index", free, (("what", "loss"),))]
        r = a[J, S] - y[J, S]
        c = self.c * self.scale
        if self.kind == "squared_error":
            steps.append(Differentiate(r1, sp.Mul(2 * c, r, evaluate=False) if 2 * c != 1 else r, "index", free,
                                       self.facts(wrt="loss", only="js")))
            return steps
        piece = sp.Piecewise((r, sp.Abs(r) <= self.kappa), (self.kappa * sp.sign(r), True))
        r2 = sp.Mul(c, piece, evaluate=False) if c != 1 else piece
        steps.append(Differentiate(r1, r2, "index", free, self.facts(wrt="loss", only="js")))
        r3 = sp.Mul(c, fn("clip")(r), evaluate=False) if c != 1 else fn("clip")(r)
        steps.append(Simplify(r2, r3, "index", free, (("why", "clip"), ("kappa", self.kappa))))
        return steps

    def entrywise_matrix(self):
        b, L = self.b, self.b.L
        A, Y = b.M("a", L), b.M("y")
        c = self.c * self.scale
        diff = MatAdd(A, -Y)
        if self.kind == "squared_error":
            rhs = MatMul(2 * c, diff) if 2 * c != 1 else diff
        else:
            rhs = MatMul(c, Elementwise("clip", diff)) if c != 1 else Elementwise("clip", diff)
        return [MatrixLift(MatPartial(b.t.loss, A), rhs, "matrix", (), (("pattern", "entrywise"),))]

    def _delta_head(self):
        b, L = self.b, self.b.L
        free = ((J, b.n(L)), (S, b.m))
        return free, [DeltaDefinition(b.e("delta", L)[J, S], Partial(b.t.loss, b.e("z", L)[J, S]), "index", free,
                                      (("layer", L),))]

    def binary_cross_entropy_index(self):
        b, L = self.b, self.b.L
        a, y, z = b.e("a", L), b.e("y"), b.e("z", L)
        free, steps = self._delta_head()
        c = self.c * self.scale
        r1 = sp.Mul(Partial(b.t.loss, a[J, S]), Partial(a[J, S], z[J, S]), evaluate=False)
        steps.append(ChainRule(steps[-1].rhs, r1, "index", free, (("via", "a"), ("layer", L), ("why", "only_entry"))))
        grad = c * (-y[J, S] / a[J, S] + (1 - y[J, S]) / (1 - a[J, S]))
        r2 = sp.Mul(grad, sp.Function(f"actprime_{L}")(z[J, S]), evaluate=False)
        steps.append(LossDerivative(r1, r2, "index", free, self.facts()))
        r3 = sp.Mul(grad, a[J, S] * (1 - a[J, S]), evaluate=False)
        steps.append(ActivationIdentity(r2, r3, "index", free, (("activation", "sigmoid"), ("layer", L))))
        steps.append(Simplification(r3, sp.Mul(c, a[J, S] - y[J, S], evaluate=False) if c != 1 else a[J, S] - y[J, S],
                                    "index", free, (("rule", "sigmoid_bce"), ("condition", ""))))
        return steps

    def _a_minus_y_matrix(self, pattern, A=None):
        b, L = self.b, self.b.L
        A = A if A is not None else b.M("a", L)
        c = self.c * self.scale
        diff = MatAdd(A, -b.M("y"))
        return [MatrixLift(b.M("delta", L), MatMul(c, diff) if c != 1 else diff, "matrix", (),
                           (("pattern", pattern),))]

    def binary_cross_entropy_matrix(self):
        return self._a_minus_y_matrix("entrywise")

    def cross_entropy_index(self):
        b, L = self.b, self.b.L
        a, y, z, n = b.e("a", L), b.e("y"), b.e("z", L), b.n(L)
        free, steps = self._delta_head()
        c = self.c * self.scale
        r1 = Sum(Partial(b.t.loss, a[K, S]) * Partial(a[K, S], z[J, S]), (K, 1, n))
        steps.append(ChainRule(steps[-1].rhs, r1, "index", free, (("via", "a"), ("dummy", K), ("layer", L),
                                                                   ("why", "same_sample"))))
        r2 = Sum(-c * y[K, S] / a[K, S] * Partial(a[K, S], z[J, S]), (K, 1, n))
        steps.append(LossDerivative(r1, r2, "index", free, self.facts()))
        r3 = Sum(-c * y[K, S] / a[K, S] * a[K, S] * (kd(K, J) - a[J, S]), (K, 1, n))
        steps.append(SoftmaxJacobian(r2, r3, "index", free, (("layer", L), ("dummy", K), ("to", J))))
        r4 = sp.Mul(c, a[J, S] * Sum(y[K, S], (K, 1, n)) - y[J, S], evaluate=False)
        steps.append(KroneckerCollapse(r3, r4, "index", free, (("dummy", K), ("to", J))))
        steps.append(Simplification(r4, sp.Mul(c, a[J, S] - y[J, S], evaluate=False) if c != 1 else a[J, S] - y[J, S],
                                    "index", free, (("rule", "one_hot"), ("condition", "one_hot"))))
        return steps

    def cross_entropy_matrix(self):
        return self._a_minus_y_matrix("softmax_ce")

    def nll_index(self):
        b, L = self.b, self.b.L
        a, y, z, n = b.e("a", L), b.e("y"), b.e("z", L), b.n(L)
        free, steps = self._delta_head()
        c = self.c * self.scale
        r1 = Sum(Partial(b.t.loss, a[K, S]) * Partial(a[K, S], z[J, S]), (K, 1, n))
        steps.append(ChainRule(steps[-1].rhs, r1, "index", free, (("via", "a"), ("dummy", K), ("layer", L),
                                                                   ("why", "same_sample"))))
        r2 = Sum(-c * y[K, S] * Partial(a[K, S], z[J, S]), (K, 1, n))
        steps.append(LossDerivative(r1, r2, "index", free, self.facts()))
        r3 = Sum(-c * y[K, S] * (kd(K, J) - sp.exp(a[J, S])), (K, 1, n))
        steps.append(Differentiate(r2, r3, "index", free, (("wrt", "log_softmax"), ("layer", L))))
        r4 = sp.Mul(c, sp.exp(a[J, S]) * Sum(y[K, S], (K, 1, n)) - y[J, S], evaluate=False)
        steps.append(KroneckerCollapse(r3, r4, "index", free, (("dummy", K), ("to", J))))
        final = sp.exp(a[J, S]) - y[J, S]
        steps.append(Simplification(r4, sp.Mul(c, final, evaluate=False) if c != 1 else final, "index", free,
                                    (("rule", "one_hot"), ("condition", "one_hot"))))
        return steps

    def nll_matrix(self):
        b, L = self.b, self.b.L
        return self._a_minus_y_matrix("exp_log_softmax", Elementwise("exp", b.M("a", L)))

    def softmax_cross_entropy_index(self):
        b, L = self.b, self.b.L
        y, z, n = b.e("y"), b.e("z", L), b.n(L)
        free, steps = self._delta_head()
        c = self.c * self.scale
        r1 = Partial(self.total(), z[J, S])
        steps.append(Substitute(steps[-1].rhs, r1, "index", free, (("what", "loss"),)))
        soft = sp.exp(z[J, S]) / Sum(sp.exp(z[K, S]), (K, 1, n))
        r2 = sp.Mul(c, soft - y[J, S], evaluate=False) if c != 1 else soft - y[J, S]
        steps.append(Differentiate(r1, r2, "index", free, (("wrt", "logsumexp"), ("layer", L))))
        return steps

    def softmax_cross_entropy_matrix(self):
        b, L = self.b, self.b.L
        return self._a_minus_y_matrix("softmax_logits", Elementwise("softmax", b.M("z", L)))

    def hinge_index(self):
        b, L = self.b, self.b.L
        y, z, n = b.e("y"), b.e("z", L), b.n(L)
        free, steps = self._delta_head()
        c = self.c * self.scale
        r1 = Partial(self.total(), z[J, S])
        steps.append(Substitute(steps[-1].rhs, r1, "index", free, (("what", "loss"),)))
        correct = Sum(y[I, S] * z[I, S], (I, 1, n))
        active = lambda k: fn("step")(z[k, S] - correct + self.margin)
        r2 = sp.Mul(c, Sum((1 - y[K, S]) * active(K) * (kd(K, J) - y[J, S]), (K, 1, n)), evaluate=False)
        steps.append(Differentiate(r1, r2, "index", free, (("wrt", "hinge"), ("layer", L))))
        r3 = sp.Mul(c, (1 - y[J, S]) * active(J) - y[J, S] * Sum((1 - y[K, S]) * active(K), (K, 1, n)), evaluate=False)
        steps.append(KroneckerCollapse(r2, r3, "index", free, (("dummy", K), ("to", J))))
        return steps

    def hinge_matrix(self):
        b, L = self.b, self.b.L
        Z, Y, n, m = b.M("z", L), b.M("y"), b.n(L), b.m
        ones = OneMatrix(n, m)
        spread = lambda X: MatMul(OneMatrix(n, 1), OneMatrix(1, n), X)
        margin = Elementwise("step", MatAdd(Z, -spread(HadamardProduct(Y, Z)), self.margin * ones))
        active = HadamardProduct(MatAdd(ones, -Y), margin)
        rhs = MatAdd(active, -HadamardProduct(Y, spread(active)))
        c = self.c * self.scale
        return [MatrixLift(b.M("delta", L), MatMul(c, rhs) if c != 1 else rhs, "matrix", (), (("pattern", "hinge"),))]
