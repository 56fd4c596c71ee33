"""derive(spec): the forward equations and, for every layer, delta^l, dL/dW^l and dL/db^l as steps.

Each layer applies its local rule to named quantities (z, a, delta stay symbols), so the cost
is independent of width and linear in depth; the whole loss is never differentiated at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp
from sympy import KroneckerDelta as kd, Sum, Transpose, HadamardProduct, MatMul, MatAdd, OneMatrix

from . import rules
from .algebra import GENERAL, Diag, Elementwise, MatPartial, Partial, Quantities, index, prime
from .notation import profile
from .spec import NetworkSpec
from .steps import (ActivationDerivative, ActivationIdentity, BatchLift, ChainRule, Definition, DeltaDefinition,
                    Derivation, Differentiate, Expand, KroneckerCollapse, LossDerivative, MatrixLift, Penalty,
                    SampleSum, Simplification, Simplify, SoftmaxJacobian, Step, Substitute, Accumulate)

LEVELS = ("index", "matrix", "batch", "concrete")
CONCRETE_MAX_PARAMETERS = 400

J, K, P, I, S = (index(n) for n in ("j", "k", "p", "i", "s"))


@dataclass(frozen=True)
class NetworkDerivation:
    """Everything derived for one network: forward equations and one Derivation per quantity and level."""

    spec: NetworkSpec
    quantities: Quantities = field(repr=False, compare=False)
    forward: tuple[Step, ...]
    derivations: tuple[Derivation, ...]
    general: tuple[Derivation, ...] = ()    # written once for a general layer l, checked at each instance

    def get(self, topic: str, layer: int | None, level: str) -> Derivation:
        for d in self.derivations:
            if d.topic == topic and d.layer == layer and d.level == level:
                return d
        raise KeyError(f"no {level}-level derivation of {topic}{layer or ''}")

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.level for d in self.derivations))

    def gradient(self, parameter: str):
        """The final matrix-form result for a parameter (batch form when samples != 1), named as
        `derive verify --param` takes it: 'W2', 'b1', the notation's 'Theta2', 'w2'. A Gradient:
        `.expr` is the SymPy expression; it prints (and shows in notebooks) in the spec's notation."""
        from .display import Gradient
        from .errors import DeriveError
        from .notation import parse_parameter

        name = parse_parameter(parameter)
        layer = name.label if name else 0
        if name is None or name.kind == "delta" or name.indices or not 1 <= layer <= self.spec.depth or \
                (name.kind == "b" and not self.spec.layers[layer - 1].bias):
            raise DeriveError(f"gradient({parameter!r}): this network's parameters are "
                              f"{', '.join(self.parameters)} (the weights may also be named as the notation "
                              "writes them, e.g. Theta1 in Ng's)")
        topic = "bias" if name.kind == "b" else "weight"
        level = "batch" if self.quantities.samples != 1 else "matrix"
        return Gradient(f"{name.kind}{layer}", self.get(topic, layer, level).result.rhs, self)

    def evaluate(self, parameters, x, y=None, constants=None):
        """Every gradient at these numbers, from the derived formulas, as NumPy arrays in the document's
        layout; see derive.numeric.evaluate."""
        from .numeric import evaluate

        return evaluate(self, parameters, x, y, constants)

    def latex(self, notation: str | None = None) -> str:
        """Every gradient, aligned, in the spec's notation."""
        from .display import latex

        return latex(self, notation)

    def _repr_markdown_(self) -> str:
        """Jupyter: the network, the forward pass and every gradient, in the spec's notation."""
        from .display import markdown

        return markdown(self)

    def __repr__(self) -> str:
        """Short: the network and what was derived (the dataclass's own repr runs to pages)."""
        sizes = " → ".join(str(s) for s in self.quantities.sizes)
        return (f"<NetworkDerivation {self.spec.name!r}: {sizes}, {self.spec.notation} notation, "
                f"{len(self.derivations)} derivations at levels {', '.join(self.levels)}; "
                f"parameters {', '.join(self.parameters)}>")

    @property
    def parameters(self) -> tuple[str, ...]:
        out = []
        for l, layer in enumerate(self.spec.layers, start=1):
            out.append(f"W{l}")
            if layer.bias:
                out.append(f"b{l}")
        return tuple(out)


def derive(spec: NetworkSpec, levels: tuple[str, ...] | None = None) -> NetworkDerivation:
    from .spec import require_dense

    require_dense(spec, "derive.engine.derive (for such a network call derive.blocks.derive_blocks)")
    q = Quantities(spec)
    n_params = _parameter_count(spec)
    if levels is None:
        levels = ["index", "matrix"]
        if q.samples != 1:
            levels.append("batch")
        if spec.is_concrete and n_params <= CONCRETE_MAX_PARAMETERS:
            levels.append("concrete")
    unknown = set(levels) - set(LEVELS)
    if unknown:
        raise ValueError(f"unknown level {sorted(unknown)}; levels are {', '.join(LEVELS)}")
    if "concrete" in levels and not spec.is_concrete:
        raise ValueError("the concrete level needs every size to be a number")
    builder = _Builder(q)
    out: list[Derivation] = []
    wanted = set(levels)
    L = spec.depth
    by_level = {"index": (builder.delta_index, builder.weight_index, builder.bias_index),
                "matrix": (builder.delta_matrix, builder.weight_matrix, builder.bias_matrix),
                "batch": (None, builder.batch_weight, builder.batch_bias)}
    for l in range(L, 0, -1):
        for level in ("index", "matrix", "batch"):
            method = builder.delta_batch if level == "batch" else by_level[level][0]
            steps = tuple(method(l)) if level in wanted else ()
            if steps:                        # no batch delta where it does not hold column by column
                out.append(Derivation("delta", l, level, steps, q))
    for l in range(L, 0, -1):
        for topic, position in (("weight", 1), ("bias", 2)):
            if topic == "bias" and not spec.layers[l - 1].bias:
                continue
            for level in ("index", "matrix", "batch"):
                if level in wanted:
                    out.append(Derivation(topic, l, level, tuple(by_level[level][position](l)), q))
    if "concrete" in wanted:
        out += builder.concrete()
    general = _general(builder, wanted)
    return NetworkDerivation(spec, q, tuple(builder.forward()), tuple(out), general)


def general_groups(spec: NetworkSpec) -> dict[str, tuple[int, ...]]:
    """The layers one general derivation can stand for, per topic, from the top down: those whose
    derivation has the same shape as the topmost one's (the activation of l and the bias of l + 1 for
    delta; the bias of l for the weights). A group needs two layers; the rest are derived one by one."""
    layers, L = spec.layers, spec.depth
    keys = {"delta": (lambda l: (layers[l - 1].activation, layers[l - 1].slope, layers[l].bias), range(L - 1, 0, -1)),
            "weight": (lambda l: layers[l - 1].bias, range(L, 0, -1)),
            "bias": (lambda l: layers[l - 1].bias, [l for l in range(L, 0, -1) if layers[l - 1].bias])}
    out = {}
    for topic, (key, candidates) in keys.items():
        candidates = list(candidates)
        group = tuple(l for l in candidates if key(l) == key(candidates[0])) if candidates else ()
        if len(group) >= 2:
            out[topic] = group
    return out


def general_offset(spec: NetworkSpec, topic: str) -> int:
    """l minus the engine's layer in a general derivation of this topic. delta speaks of a layer of units:
    where the notation numbers the input layer 1 (Ng, 000), l is that number, so the general line reads
    as the notes write it: delta^(l) = (Theta^(l))^T delta^(l+1) .* g'(z^(l)). Weights keep their label."""
    return profile(spec.notation, spec.symbols).node_shift if topic == "delta" else 0


def _general(builder: "_Builder", wanted: set[str]) -> tuple[Derivation, ...]:
    q, l = builder.q, GENERAL
    methods = {"delta": {"index": builder.hidden_delta, "matrix": builder.hidden_delta_matrix,
                         "batch": builder.delta_batch},
               "weight": {"index": builder.weight_index, "matrix": builder.weight_matrix, "batch": builder.batch_weight},
               "bias": {"index": builder.bias_index, "matrix": builder.bias_matrix, "batch": builder.batch_bias}}
    out = []
    for topic, group in general_groups(q.spec).items():
        offset = general_offset(q.spec, topic)
        values = tuple(g + offset for g in group)           # the values of l, as printed
        q.representative = values[0]
        try:
            for level, method in methods[topic].items():
                steps = tuple(method(l - offset)) if level in wanted else ()
                if steps:
                    out.append(Derivation(topic, None, level, steps, q, values))
        finally:
            q.representative = None
    # what the documents print about l afterwards (the activation of l) is the delta group's
    q.representative = next((d.instances[0] for d in out if d.topic == "delta"), None)
    return tuple(out)


def _scaled(c, matrix):
    return matrix if c == 1 else c * matrix


def _parameter_count(spec: NetworkSpec) -> int:
    if not spec.is_concrete:
        return 0
    sizes = spec.sizes
    return sum(sizes[l] * sizes[l - 1] + (sizes[l] if spec.layers[l - 1].bias else 0) for l in range(1, len(sizes)))


class _Builder:
    def __init__(self, q: Quantities):
        self.q = q
        spec = q.spec
        self.L = spec.depth
        self.loss_row = rules.LOSSES[spec.loss.kind]
        scale = spec.loss.scale if spec.loss.scale is not None else None
        self.scale = (sp.Rational(scale.numerator, scale.denominator) if scale is not None
                      else self.loss_row.default_scale)
        l2 = spec.loss.l2
        self.l2 = (None if l2 is None else sp.Symbol(l2) if isinstance(l2, str)
                   else sp.Rational(l2.numerator, l2.denominator))
        batch = q.samples != 1
        # With one sample the per-sample loss is the loss; the penalty joins it there.
        self.penalty_in_sample = self.l2 is not None and not batch
        self.reduction = (sp.Integer(1) / q.samples if spec.loss.reduction == "mean" else sp.Integer(1))

    # ----------------------------------------------------------------- shorthands
    def n(self, l):
        return self.q.size(l)

    def e(self, kind, l=None, batch=False):
        return self.q.entry(kind, l, batch)

    def m(self, kind, l=None, batch=False):
        return self.q.matrix(kind, l, batch)

    def w(self, l, to, frm):
        """The weight of layer l from unit frm of layer l-1 to unit `to`, in the notation's index order."""
        W = self.e("W", l)
        return W[to, frm] if self.q.index_order == "to_from" else W[frm, to]

    def backward_product(self, W, delta):
        """The entries sum_k w_kj delta_k as a matrix product, per layout (this is where transposes move)."""
        return {"column": lambda: MatMul(Transpose(W), delta), "transposed": lambda: MatMul(W, delta),
                "row": lambda: MatMul(delta, Transpose(W))}[self.q.layout]()

    def outer(self, delta, a):
        """Entries delta_j a_k arranged like W."""
        return {"column": lambda: MatMul(delta, Transpose(a)), "transposed": lambda: MatMul(a, Transpose(delta)),
                "row": lambda: MatMul(Transpose(a), delta)}[self.q.layout]()

    def jacobian_product(self, a, g):
        """The softmax Jacobian diag(a) - a a^T (symmetric) applied to g, per layout."""
        if self.q.layout == "row":
            return MatMul(g, MatAdd(Diag(a), -MatMul(Transpose(a), a)))
        return MatMul(MatAdd(Diag(a), -MatMul(a, Transpose(a))), g)

    def residual(self, a, y):
        return y - a if self.q.residual == "target_minus_output" else a - y

    def data_loss(self):
        """The symbol whose derivatives the chain rule follows (the penalty does not depend on z)."""
        return sp.Symbol("L_data") if self.penalty_in_sample else self.q.loss

    def z_sum(self, l, row, dummy):
        a, b = self.e("a", l - 1), self.e("b", l)
        total = Sum(sp.Mul(self.w(l, row, dummy), a[dummy], evaluate=False), (dummy, 1, self.n(l - 1)))
        return total + b[row] if self.q.layer_spec(l).bias else total

    def fprime_entry(self, l, j):
        return self.q.f_prime(l)(self.e("z", l)[j])

    def fprime_matrix(self, l):
        return Elementwise(prime(self.q.function_name(l)), self.m("z", l))

    def output_identity(self, l, j):
        """f'(z_j) in terms of the output a_j, or None when the textbook keeps f'(z)."""
        row = self.q.activation(l)
        return None if row.derivative_in_output is None else row.derivative_in_output(self.e("a", l)[j])

    def output_identity_matrix(self, l):
        name = self.q.activation(l).name
        a = self.m("a", l)
        ones = OneMatrix(*a.shape)
        if name == "sigmoid":
            return HadamardProduct(a, MatAdd(ones, -a))
        if name == "tanh":
            return MatAdd(ones, -HadamardProduct(a, a))
        if name == "identity":
            return ones
        return None

    # -------------------------------------------------------------------- forward
    def forward(self) -> list[Step]:
        steps = []
        for l in range(1, self.L + 1):
            z, a = self.e("z", l), self.e("a", l)
            one = self.n(l) == 1             # a single unit: its index is 1, not a letter that runs over 1..1
            j, free = (sp.Integer(1), ()) if one else (J, ((J, self.n(l)),))
            steps.append(Definition(z[j], self.z_sum(l, j, I), "forward", free, (("what", "z"), ("layer", l))))
            if self.q.activation(l).vector:
                value = sp.exp(z[j]) / Sum(sp.exp(z[I]), (I, 1, self.n(l)))
            else:
                value = self.q.f(l)(z[j])
            steps.append(Definition(a[j], value, "forward", free, (("what", "a"), ("layer", l))))
        for l in range(1, self.L + 1):
            for batch in ((False, True) if self.q.samples != 1 else (False,)):
                steps += self.forward_matrix(l, batch)
        a, y = self.e("a", self.L), self.e("y")
        if self.loss_row.term is not None:
            # the constant stands before the sum, as textbooks write 1/2 sum_k (a_k - y_k)^2
            term = (self.scale * Sum((y[J] - a[J]) ** 2, (J, 1, self.n(self.L)))
                    if self.loss_row.name == "squared_error" and self.q.residual == "target_minus_output"
                    else self.scale * Sum(self.loss_row.term(a[J], y[J], sp.Integer(1)), (J, 1, self.n(self.L))))
            per_sample = term
            if self.penalty_in_sample:
                per_sample = per_sample + self.penalty_expr()
            steps.append(Definition(self.q.loss, per_sample, "forward", (), (("what", "loss"),)))
        if self.q.samples != 1:     # the loss of the batch: what every batch-level gradient differentiates
            total = self.reduction * Sum(self.q.sample_loss()[S], (S, 1, self.q.samples))
            if self.l2 is not None:
                total = total + self.penalty_expr()
            steps.append(Definition(self.q.loss, total, "batch", (),
                                    (("what", "loss_batch"), ("reduction", self.q.spec.loss.reduction),
                                     ("penalty", self.l2))))
        return steps

    def forward_matrix(self, l, batch):
        W, b = self.m("W", l), self.m("b", l)
        a_prev, z = self.m("a", l - 1, batch), self.m("z", l, batch)
        linear = {"column": lambda: MatMul(W, a_prev), "transposed": lambda: MatMul(Transpose(W), a_prev),
                  "row": lambda: MatMul(a_prev, W)}[self.q.layout]()
        if self.q.spec.layers[l - 1].bias:
            if batch:   # the bias is broadcast to every sample: b 1^T, or 1 b in row layout
                m = self.q.samples
                b = MatMul(b, OneMatrix(1, m)) if self.q.layout != "row" else MatMul(OneMatrix(m, 1), b)
            linear = MatAdd(linear, b)
        level = "batch" if batch else "forward"
        facts = (("what", "z_matrix"), ("layer", l), ("batch", batch))
        return [Definition(z, linear, level, (), facts),
                Definition(self.m("a", l, batch), Elementwise(self.q.layer_function[l], z), level, (),
                           (("what", "a_matrix"), ("layer", l), ("batch", batch)))]

    def penalty_expr(self):
        terms = []
        for l in range(1, self.L + 1):
            terms.append(sp.Mul(self.l2 / 2, Sum(self.w(l, J, K) ** 2, (J, 1, self.n(l)), (K, 1, self.n(l - 1))),
                                evaluate=False))
        return sp.Add(*terms)

    # ---------------------------------------------------------------------- delta
    def delta_index(self, l):
        return self.output_delta()[0] if l == self.L else self.hidden_delta(l)

    def delta_matrix(self, l):
        return self.output_delta()[1] if l == self.L else self.hidden_delta_matrix(l)

    def output_delta(self):
        L, q = self.L, self.q
        Ld = self.data_loss()
        a, z, y, d = self.e("a", L), self.e("z", L), self.e("y"), self.e("delta", L)
        free = ((J, self.n(L)),)
        row = q.activation(L)
        simp = rules.simplification_for(row.name, self.loss_row.name)
        steps = [DeltaDefinition(d[J], Partial(Ld, z[J]), "index", free)]
        rhs = Sum(Partial(Ld, a[P]) * Partial(a[P], z[J]), (P, 1, self.n(L)))
        steps.append(ChainRule(steps[-1].rhs, rhs, "index", free, (("via", "a"), ("dummy", P), ("layer", L))))
        grad = (lambda k: self.loss_grad_entry(a[k], y[k])) if self.loss_row.grad_entry else None
        Ma, My, Mz, Md = self.m("a", L), self.m("y"), self.m("z", L), self.m("delta", L)
        grad_vec = self.loss_gradient_matrix()
        mats = [DeltaDefinition(Md, MatPartial(Ld, Mz), "matrix")]
        if not row.vector:
            fp = self.fprime_entry(L, J)
            rhs2 = Sum(Partial(Ld, a[P]) * kd(P, J) * q.f_prime(L)(z[J]), (P, 1, self.n(L)))
            steps.append(ActivationDerivative(rhs, rhs2, "index", free, (("layer", L), ("dummy", P), ("to", J))))
            rhs3 = Partial(Ld, a[J]) * fp
            steps.append(KroneckerCollapse(rhs2, rhs3, "index", free, (("dummy", P), ("to", J))))
            m_rhs = HadamardProduct(MatPartial(Ld, Ma), self.fprime_matrix(L))
            mats.append(MatrixLift(Md, m_rhs, "matrix", (), (("pattern", "hadamard"),)))
            cur, cur_m = rhs3, m_rhs
            if grad is not None:
                cur2 = grad(J) * fp
                steps.append(LossDerivative(cur, cur2, "index", free, (("loss", self.loss_row.name),)))
                cur_m2 = HadamardProduct(grad_vec, self.fprime_matrix(L))
                mats.append(LossDerivative(cur_m, cur_m2, "matrix", (), (("loss", self.loss_row.name),)))
                cur, cur_m = cur2, cur_m2
            ident = self.output_identity(L, J)
            if ident is not None:
                factor = grad(J) if grad is not None else Partial(Ld, a[J])
                nxt = sp.Mul(factor, ident, evaluate=False)   # keep the textbook order: dl/da times f'(z)
                steps.append(ActivationIdentity(cur, nxt, "index", free, (("activation", row.name), ("layer", L))))
                ident_m = self.output_identity_matrix(L)
                left = grad_vec if grad is not None else MatPartial(Ld, Ma)
                nxt_m = left if row.name == "identity" else HadamardProduct(left, ident_m)
                mats.append(ActivationIdentity(cur_m, nxt_m, "matrix", (), (("activation", row.name),)))
                cur, cur_m = nxt, nxt_m
            if simp is not None:
                if simp.form == "a_minus_y":
                    final, final_m = self.scale * (a[J] - y[J]), _scaled(self.scale, MatAdd(Ma, -My))
                else:           # y (a - 1)
                    ones = OneMatrix(*Ma.shape)
                    final = self.scale * y[J] * (a[J] - 1)
                    final_m = _scaled(self.scale, HadamardProduct(My, MatAdd(Ma, -ones)))
                steps.append(Simplification(cur, final, "index", free, (("rule", simp.name), ("condition", simp.condition))))
                mats.append(Simplification(cur_m, final_m, "matrix", (), (("rule", simp.name), ("condition", simp.condition))))
            return steps, mats
        # softmax output: the full Jacobian
        jac = a[P] * (kd(P, J) - a[J])
        rhs2 = Sum(Partial(Ld, a[P]) * jac, (P, 1, self.n(L)))
        steps.append(SoftmaxJacobian(rhs, rhs2, "index", free, (("layer", L), ("dummy", P), ("to", J))))
        m_rhs = self.jacobian_product(Ma, MatPartial(Ld, Ma))
        mats.append(MatrixLift(Md, m_rhs, "matrix", (), (("pattern", "jacobian"),)))
        if grad is None:
            final = a[J] * (Partial(Ld, a[J]) - Sum(Partial(Ld, a[P]) * a[P], (P, 1, self.n(L))))
            steps.append(KroneckerCollapse(rhs2, final, "index", free, (("dummy", P), ("to", J))))
            return steps, mats
        rhs3 = Sum(sp.Mul(grad(P), jac, evaluate=False), (P, 1, self.n(L)))   # a_k cancels in the next step
        steps.append(LossDerivative(rhs2, rhs3, "index", free, (("loss", self.loss_row.name),)))
        m_rhs3 = self.jacobian_product(Ma, grad_vec)
        mats.append(LossDerivative(m_rhs, m_rhs3, "matrix", (), (("loss", self.loss_row.name),)))
        if simp is not None:   # softmax + cross-entropy
            rhs4 = Sum(-self.scale * y[P] * (kd(P, J) - a[J]), (P, 1, self.n(L)))
            steps.append(Simplify(rhs3, rhs4, "index", free, (("cancel", a[P]),)))
            rhs5 = self.scale * (-y[J] + a[J] * Sum(y[P], (P, 1, self.n(L))))
            steps.append(KroneckerCollapse(rhs4, rhs5, "index", free, (("dummy", P), ("to", J))))
            steps.append(Simplification(rhs5, self.scale * (a[J] - y[J]), "index", free,
                                        (("rule", simp.name), ("condition", simp.condition))))
            mats.append(Simplification(m_rhs3, _scaled(self.scale, MatAdd(Ma, -My)), "matrix", (),
                                       (("rule", simp.name), ("condition", simp.condition))))
        else:
            g = lambda k: self.loss_grad_entry(a[k], y[k])
            final = a[J] * (g(J) - Sum(g(P) * a[P], (P, 1, self.n(L))))
            steps.append(KroneckerCollapse(rhs3, final, "index", free, (("dummy", P), ("to", J))))
        return steps, mats

    def loss_grad_entry(self, a, y):
        if self.loss_row.name == "squared_error" and self.q.residual == "target_minus_output":
            return sp.Mul(-2 * self.scale, y - a, evaluate=False)   # E = sum (t - o)^2 gives -2 (t - o)
        return self.loss_row.grad_entry(a, y, self.scale)

    def loss_gradient_matrix(self):
        """dl/da^L as a vector expression, read off the loss table's entry formula."""
        name, c = self.loss_row.name, self.scale
        Ma, My = self.m("a", self.L), self.m("y")
        if name == "squared_error":
            if self.q.residual == "target_minus_output":
                return MatMul(-2 * c, MatAdd(My, -Ma), evaluate=False)
            return 2 * c * MatAdd(Ma, -My)
        if name == "generic":
            return MatPartial(self.data_loss(), Ma)
        ones = OneMatrix(*Ma.shape)
        recip = Elementwise("reciprocal", Ma)
        if name == "cross_entropy":
            return -c * HadamardProduct(My, recip)
        # binary cross-entropy
        return c * MatAdd(-HadamardProduct(My, recip),
                          HadamardProduct(MatAdd(ones, -My), Elementwise("reciprocal", MatAdd(ones, -Ma))))

    def hidden_delta(self, l):
        q, Ld = self.q, self.data_loss()
        a, z, d, dn = self.e("a", l), self.e("z", l), self.e("delta", l), self.e("delta", l + 1)
        zn = self.e("z", l + 1)
        free = ((J, self.n(l)),)
        side_free = ((K, self.n(l + 1)), (J, self.n(l)))
        s = [DeltaDefinition(d[J], Partial(Ld, z[J]), "index", free)]
        r1 = Sum(Partial(Ld, zn[K]) * Partial(zn[K], z[J]), (K, 1, self.n(l + 1)))
        s.append(ChainRule(s[-1].rhs, r1, "index", free, (("via", "z"), ("dummy", K), ("layer", l + 1))))
        r2 = Sum(dn[K] * Partial(zn[K], z[J]), (K, 1, self.n(l + 1)))
        s.append(DeltaDefinition(r1, r2, "index", free, (("layer", l + 1),)))
        side_lhs = Partial(zn[K], z[J])
        t1 = Partial(self.z_sum(l + 1, K, I), z[J])
        s.append(Substitute(side_lhs, t1, "index", side_free, (("what", "z"), ("layer", l + 1))))
        t2 = Sum(self.w(l + 1, K, I) * Partial(a[I], z[J]), (I, 1, self.n(l)))
        s.append(Differentiate(t1, t2, "index", side_free, (("wrt", "z"), ("layer", l))))
        row = q.activation(l)
        if not row.vector:
            t3 = Sum(self.w(l + 1, K, I) * kd(I, J) * q.f_prime(l)(z[J]), (I, 1, self.n(l)))
            s.append(ActivationDerivative(t2, t3, "index", side_free, (("layer", l), ("dummy", I), ("to", J))))
            t4 = self.w(l + 1, K, J) * self.fprime_entry(l, J)
            s.append(KroneckerCollapse(t3, t4, "index", side_free, (("dummy", I), ("to", J))))
            r3 = Sum(dn[K] * t4, (K, 1, self.n(l + 1)))
            s.append(Substitute(r2, r3, "index", free, (("what", "side"),)))
            back_sum = Sum(sp.Mul(self.w(l + 1, K, J), dn[K], evaluate=False), (K, 1, self.n(l + 1)))
            r4 = sp.Mul(self.fprime_entry(l, J), back_sum, evaluate=False)
            s.append(Simplify(r3, r4, "index", free, (("factor_out", self.fprime_entry(l, J)), ("dummy", K))))
            ident = self.output_identity(l, J)
            if ident is not None:
                r5 = sp.Mul(ident, back_sum, evaluate=False)
                s.append(ActivationIdentity(r4, r5, "index", free, (("activation", row.name), ("layer", l))))
            return s
        t3 = Sum(self.w(l + 1, K, I) * a[I] * (kd(I, J) - a[J]), (I, 1, self.n(l)))
        s.append(SoftmaxJacobian(t2, t3, "index", side_free, (("layer", l), ("dummy", I), ("to", J))))
        t4 = a[J] * (self.w(l + 1, K, J) - Sum(self.w(l + 1, K, I) * a[I], (I, 1, self.n(l))))
        s.append(KroneckerCollapse(t3, t4, "index", side_free, (("dummy", I), ("to", J))))
        r3 = Sum(dn[K] * t4, (K, 1, self.n(l + 1)))
        s.append(Substitute(r2, r3, "index", free, (("what", "side"),)))
        return s

    def hidden_delta_matrix(self, l):
        Ld, row = self.data_loss(), self.q.activation(l)
        Mw, Mdn, Md = self.m("W", l + 1), self.m("delta", l + 1), self.m("delta", l)
        back = self.backward_product(Mw, Mdn)
        mats = [DeltaDefinition(Md, MatPartial(Ld, self.m("z", l)), "matrix")]
        if row.vector:
            m1 = self.jacobian_product(self.m("a", l), back)
            mats.append(MatrixLift(Md, m1, "matrix", (), (("pattern", "softmax_" + self.q.layout), ("layer", l + 1))))
            return mats
        m1 = HadamardProduct(back, self.fprime_matrix(l))
        entry_sum = Sum(sp.Mul(self.w(l + 1, K, J), self.e("delta", l + 1)[K], evaluate=False), (K, 1, self.n(l + 1)))
        mats.append(MatrixLift(Md, m1, "matrix", (), (("pattern", "backward_" + self.q.layout), ("layer", l + 1),
                                                       ("entry", entry_sum), ("index", J),
                                                       ("fprime", self.fprime_entry(l, J)))))
        ident_m = self.output_identity_matrix(l)
        if ident_m is not None:
            m2 = back if row.name == "identity" else HadamardProduct(back, ident_m)
            mats.append(ActivationIdentity(m1, m2, "matrix", (), (("activation", row.name),)))
        return mats

    def delta_batch(self, l):
        """Delta^l for the batch: the per-sample delta^l as its columns (rows), so the matrix form holds
        with every per-sample matrix replaced by its batch matrix. Not where the formula is not column
        by column: a softmax Jacobian, or a generic loss whose dL/dA is the batch loss's."""
        if self.q.samples == 1:
            return []
        layers = (l,) if l == self.L else (l, l + 1)
        rhs = self.delta_matrix(l)[-1].rhs
        if any(self.q.activation(k).vector for k in layers) or rhs.has(MatPartial):
            return []
        return [BatchLift(self.m("delta", l, True), self.q.batch_form(rhs), "batch", (), (("pattern", "columns"),))]

    # ---------------------------------------------------------- weights and biases
    def weight_index(self, l):
        Ld, L = self.data_loss(), self.q.loss
        z, a, d = self.e("z", l), self.e("a", l - 1), self.e("delta", l)
        w = self.w(l, J, K)
        free = ((J, self.n(l)), (K, self.n(l - 1)))
        s: list[Step] = []
        pen = self.l2 * w if self.penalty_in_sample else sp.Integer(0)
        if self.penalty_in_sample:
            s.append(Penalty(Partial(L, w), Partial(Ld, w) + pen, "index", free, (("lam", self.l2),)))
        r1 = sp.Mul(Partial(Ld, z[J]), Partial(z[J], w), evaluate=False) + pen
        s.append(ChainRule(Partial(Ld, w) + pen, r1, "index", free, (("via", "z"), ("only", J), ("layer", l))))
        t1 = Partial(self.z_sum(l, J, I), w)
        s.append(Substitute(Partial(z[J], w), t1, "index", free, (("what", "z"), ("layer", l))))
        t2 = Sum(kd(I, K) * a[I], (I, 1, self.n(l - 1)))
        s.append(Differentiate(t1, t2, "index", free, (("wrt", "w"), ("dummy", I), ("to", K), ("layer", l))))
        s.append(KroneckerCollapse(t2, a[K], "index", free, (("dummy", I), ("to", K))))
        r2 = sp.Mul(Partial(Ld, z[J]), a[K], evaluate=False) + pen
        s.append(Substitute(r1, r2, "index", free, (("what", "side"),)))
        r3 = sp.Mul(d[J], a[K], evaluate=False) + pen
        s.append(DeltaDefinition(r2, r3, "index", free, (("layer", l),)))
        return s

    def weight_matrix(self, l):
        Mw, Md, Ma = self.m("W", l), self.m("delta", l), self.m("a", l - 1)
        result = self.outer(Md, Ma)
        if self.penalty_in_sample:
            result = MatAdd(result, self.l2 * Mw)
        at = (J, K) if self.q.layout == "column" else (K, J)      # (row, column): rows are target units in W a
        return [MatrixLift(MatPartial(self.q.loss, Mw), result, "matrix", (),
                           (("pattern", "outer_" + self.q.layout), ("layer", l),
                            ("entry", sp.Mul(self.e("delta", l)[J], self.e("a", l - 1)[K], evaluate=False)),
                            ("at", at)))]

    def bias_index(self, l):
        Ld = self.data_loss()
        b, z, d = self.e("b", l), self.e("z", l), self.e("delta", l)
        free = ((J, self.n(l)),)
        r1 = sp.Mul(Partial(Ld, z[J]), Partial(z[J], b[J]), evaluate=False)
        s = [ChainRule(Partial(Ld, b[J]), r1, "index", free, (("via", "z"), ("only", J), ("layer", l)))]
        t1 = Partial(self.z_sum(l, J, I), b[J])
        s.append(Substitute(Partial(z[J], b[J]), t1, "index", free, (("what", "z"), ("layer", l))))
        s.append(Differentiate(t1, sp.Integer(1), "index", free, (("wrt", "b"),)))
        s.append(Substitute(r1, Partial(Ld, z[J]), "index", free, (("what", "side"),)))
        s.append(DeltaDefinition(Partial(Ld, z[J]), d[J], "index", free, (("layer", l),)))
        return s

    def bias_matrix(self, l):
        return [MatrixLift(MatPartial(self.q.loss, self.m("b", l)), self.m("delta", l), "matrix", (),
                           (("pattern", "vector"),))]

    # ---------------------------------------------------------------------- batch
    def batch_weight(self, l):
        q, L = self.q, self.q.loss
        Ls = q.sample_loss()
        D, A = self.e("delta", l, True), self.e("a", l - 1, True)
        c, m = self.reduction, q.samples
        w = self.w(l, J, K)
        free = ((J, self.n(l)), (K, self.n(l - 1)))
        pen = self.l2 * w if self.l2 is not None else sp.Integer(0)
        r1 = c * Sum(Partial(Ls[S], w), (S, 1, m)) + pen
        s = [SampleSum(Partial(L, w), r1, "batch", free,
                       (("reduction", q.spec.loss.reduction), ("penalty", self.l2)))]
        r2 = c * Sum(D[J, S] * A[K, S], (S, 1, m)) + pen
        s.append(Substitute(r1, r2, "batch", free, (("what", "per_sample"),)))
        MD, MA, acc = self.m("delta", l, True), self.m("a", l - 1, True), self.m("acc", l)
        product = self.outer(MD, MA)
        one_sample = self.outer(self.m("delta", l), self.m("a", l - 1))
        s.append(Accumulate(acc, product, "batch", (), (("term", one_sample), ("layer", l))))
        pen_m = self.l2 * self.m("W", l) if self.l2 is not None else None
        lifted = _scaled(c, acc) if pen_m is None else MatAdd(_scaled(c, acc), pen_m)
        s.append(BatchLift(MatPartial(L, self.m("W", l)), lifted, "batch", (), (("pattern", "accumulated"),)))
        final = _scaled(c, product) if pen_m is None else MatAdd(_scaled(c, product), pen_m)
        s.append(Substitute(lifted, final, "batch", (), (("what", "accumulator"),)))
        return tuple(s)

    def batch_bias(self, l):
        q, L = self.q, self.q.loss
        b, Ls, D = self.e("b", l), q.sample_loss(), self.e("delta", l, True)
        c, m = self.reduction, q.samples
        free = ((J, self.n(l)),)
        r1 = c * Sum(Partial(Ls[S], b[J]), (S, 1, m))
        s = [SampleSum(Partial(L, b[J]), r1, "batch", free, (("reduction", q.spec.loss.reduction),))]
        r2 = c * Sum(D[J, S], (S, 1, m))
        s.append(Substitute(r1, r2, "batch", free, (("what", "per_sample"),)))
        MD = self.m("delta", l, True)
        summed = MatMul(OneMatrix(1, m), MD) if q.layout == "row" else MatMul(MD, OneMatrix(m, 1))
        s.append(BatchLift(MatPartial(L, self.m("b", l)), _scaled(c, summed), "batch", (), (("pattern", "ones"),)))
        return tuple(s)

    # ------------------------------------------------------------------- concrete
    def concrete(self) -> list[Derivation]:
        """Every entry of every gradient written out, built from the delta recurrence so it stays small.

        With a generic loss and one output y, the entries are also given as dy/dw (sums of path
        products, as 000_*.txt writes them) and dL/dw = dL/dy dy/dw.
        """
        q = self.q
        sizes = [int(s) for s in q.sizes]
        out_index, _ = self.output_delta()
        top = out_index[-1].rhs
        deltas = self._unroll([top.xreplace({J: sp.Integer(j)}).doit() for j in range(1, sizes[self.L] + 1)])
        through_output = self.loss_row.name == "generic" and sizes[self.L] == 1
        if through_output:
            y_out = self.e("a", self.L)[1]
            ident = self.output_identity(self.L, sp.Integer(1))
            output_deltas = self._unroll([ident if ident is not None else self.fprime_entry(self.L, sp.Integer(1))])
        out = []
        for l in range(self.L, 0, -1):
            a = self.e("a", l - 1)
            params = [(self.w(l, j, k), j, k) for j in range(1, sizes[l] + 1) for k in range(1, sizes[l - 1] + 1)]
            if q.spec.layers[l - 1].bias:
                params += [(self.e("b", l)[j], j, None) for j in range(1, sizes[l] + 1)]
            for topic in ("weight", "bias"):
                steps = []
                for param, j, k in params:
                    if (k is None) != (topic == "bias"):
                        continue
                    factor = a[k] if k is not None else sp.Integer(1)
                    entry = (("entry", (j, k) if k is not None else (j,)),)
                    if through_output:
                        path = output_deltas[l][j - 1] * factor
                        steps.append(Expand(Partial(y_out, param), path, "concrete", (), entry + (("of", "output"),)))
                        chain = sp.Mul(Partial(self.data_loss(), y_out), Partial(y_out, param), evaluate=False)
                        if self.penalty_in_sample and k is not None:
                            chain = self.l2 * param + chain
                        steps.append(Expand(Partial(q.loss, param), chain, "concrete", (), entry + (("of", "chain"),)))
                        continue
                    rhs = deltas[l][j - 1] * factor
                    if self.penalty_in_sample and k is not None:
                        rhs = rhs + self.l2 * param
                    steps.append(Expand(Partial(q.loss, param), rhs, "concrete", (), entry))
                if steps:
                    out.append(Derivation(topic, l, "concrete", tuple(steps), q))
        return out

    def _unroll(self, top: list[sp.Expr]) -> dict[int, list[sp.Expr]]:
        """delta^l_j for every layer from the output values, by the recurrence, in raw weights."""
        q, sizes = self.q, [int(s) for s in self.q.sizes]
        deltas = {self.L: top}
        for l in range(self.L - 1, 0, -1):
            row = q.activation(l)
            back = [sp.Add(*[self.w(l + 1, k, i) * deltas[l + 1][k - 1] for k in range(1, sizes[l + 1] + 1)])
                    for i in range(1, sizes[l] + 1)]
            column = []
            for j in range(1, sizes[l] + 1):
                if row.vector:
                    a = self.e("a", l)
                    column.append(sp.Add(*[a[j] * ((1 if i == j else 0) - a[i]) * back[i - 1]
                                           for i in range(1, sizes[l] + 1)]))
                    continue
                ident = self.output_identity(l, sp.Integer(j))
                column.append((ident if ident is not None else self.fprime_entry(l, sp.Integer(j))) * back[j - 1])
            deltas[l] = column
        return deltas
