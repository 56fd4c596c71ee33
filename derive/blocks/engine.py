"""derive_blocks(spec): the forward pass and, stage by stage from the loss down, the derivative of the loss
by every node and parameter, at index level (entries, with sums and Iverson brackets) and in matrix
form (samples as columns). Each stage applies its local rule to named quantities, so the cost is
linear in depth and independent of width.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp
from sympy import KroneckerDelta as kd, Sum, Transpose, HadamardProduct, MatMul, MatAdd, OneMatrix

from ..algebra import Diag, Elementwise, MatPartial, Partial
from ..steps import (ActivationDerivative, ActivationIdentity, ChainRule, Definition, DeltaDefinition, Derivation,
                     Differentiate, KroneckerCollapse, LossDerivative, MatrixLift, Simplification, Simplify,
                     SoftmaxJacobian, Step, Substitute)
from .losses import LossRules
from .plan import Stage, skips_from, stages
from .spec import BlockSpec
from .symbols import INDEX, Table, f, f_prime, fn

LEVELS = ("index", "matrix")
I, J, K, P, S, T = (INDEX[n] for n in ("i", "j", "k", "p", "s", "t"))
COMBINED_LOSSES = ("binary_cross_entropy", "cross_entropy", "nll", "softmax_cross_entropy", "hinge")


@dataclass(frozen=True)
class BlockDerivation:
    spec: BlockSpec
    table: Table = field(repr=False, compare=False)
    forward: tuple[Step, ...]
    derivations: tuple[Derivation, ...]

    def get(self, topic: str, layer: int, level: str) -> Derivation:
        for d in self.derivations:
            if (d.topic, d.layer, d.level) == (topic, layer, level):
                return d
        raise KeyError(f"no {level}-level derivation of {topic}{layer}")

    def has(self, topic: str, layer: int, level: str = "matrix") -> bool:
        return any((d.topic, d.layer, d.level) == (topic, layer, level) for d in self.derivations)

    @property
    def parameters(self) -> tuple[str, ...]:
        out = []
        for l, layer in enumerate(self.spec.layers, start=1):
            out.append(f"W{l}")
            if layer.bias:
                out.append(f"b{l}")
            if layer.norm:
                out += [f"gamma{l}", f"beta{l}"]
        return tuple(out)

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.level for d in self.derivations))

    def backward_order(self) -> tuple[Derivation, ...]:
        """The matrix-level derivations in the order a backward pass computes them."""
        return tuple(d for d in self.derivations if d.level == "matrix")

    def __repr__(self) -> str:
        sizes = " → ".join(str(s) for s in self.table.sizes)
        return (f"<BlockDerivation {self.spec.name!r}: {sizes}, {len(self.derivations)} derivations; "
                f"parameters {', '.join(self.parameters)}>")


def derive_blocks(spec: BlockSpec, levels: tuple[str, ...] = LEVELS) -> BlockDerivation:
    t = Table(spec)
    b = _Builder(t)
    out: list[Derivation] = []
    wanted = set(levels)
    for level in ("index", "matrix"):
        if level in wanted:
            out.append(Derivation("loss", spec.depth, level, tuple(b.loss.steps(level)), t))
    for l in range(spec.depth, 0, -1):
        plan = stages(spec, l)
        for stage in reversed(plan):
            if stage.kind == "linear" or (stage.kind == "act" and l == spec.depth and
                                          spec.loss.kind in COMBINED_LOSSES):
                continue
            for level in ("index", "matrix"):
                if level in wanted:
                    out += b.stage(stage, level)
        for topic in ("weight", "bias", "input"):
            if topic == "bias" and not spec.layers[l - 1].bias or topic == "input" and l == 1:
                continue
            for level in ("index", "matrix"):
                if level in wanted:
                    out.append(Derivation(topic, l, level, tuple(getattr(b, f"{topic}_{level}")(l)), t))
    return BlockDerivation(spec, t, tuple(b.forward()), tuple(out))


class _Builder:
    def __init__(self, t: Table):
        self.t, self.spec = t, t.spec
        self.L = t.spec.depth
        self.m = t.samples
        self.loss = LossRules(self)

    # ---------------------------------------------------------------- shorthands
    def e(self, kind, l=None):
        return self.t.entry(kind, l)

    def M(self, kind, l=None):
        return self.t.matrix(kind, l)

    def n(self, l):
        return self.t.n(l)

    def node_entry(self, kind, l, j=J, s=S):
        return self.e(kind, l if not (kind == "a" and l == 0) else 0)[j, s]

    def grad(self, kind, l, j=J, s=S):
        """dL / d(node entry); for z it is the error term delta."""
        return Partial(self.t.loss, self.e(kind, l)[j, s])

    def grad_m(self, kind, l):
        return MatPartial(self.t.loss, self.M(kind, l))

    def ones(self, rows, cols):
        return OneMatrix(rows, cols)

    def z_sum(self, l, row, dummy, s=S):
        a, b = self.e("a", l - 1), self.e("b", l)
        total = Sum(sp.Mul(self.e("W", l)[row, dummy], a[dummy, s], evaluate=False), (dummy, 1, self.n(l - 1)))
        return total + b[row] if self.spec.layers[l - 1].bias else total

    def inv_sqrt(self, l, at):
        """(v + epsilon)^(-1/2) of the statistic at index `at` (unit j for batch norm, sample s for layer norm)."""
        return sp.Pow(self.e("var", l)[at] + self.t.eps[l], sp.Rational(-1, 2), evaluate=False)

    def free(self, *pairs):
        return tuple(pairs)

    # ------------------------------------------------------------------- forward
    def forward(self) -> list[Step]:
        out: list[Step] = []
        for l in range(1, self.L + 1):
            for stage in stages(self.spec, l):
                out += self.forward_stage(stage)
        out += self.loss.forward()
        return out

    def forward_stage(self, st: Stage) -> list[Step]:
        l, m, n = st.layer, self.m, self.n(st.layer)
        free = ((J, n), (S, m))
        fact = lambda what: (("what", what), ("layer", l), ("stage", st.kind))
        x_e = self.e(st.inp, l if st.inp != "a" else l - 1)
        out_e, out_m = self.e(st.out, l), self.M(st.out, l)
        x_m = self.M(st.inp, l if st.inp != "a" else l - 1)
        if st.kind == "linear":
            W = self.M("W", l)
            rhs = MatMul(W, x_m)
            if self.spec.layers[l - 1].bias:
                rhs = MatAdd(rhs, MatMul(self.M("b", l), self.ones(1, m)))
            return [Definition(out_e[J, S], self.z_sum(l, J, I), "forward", free, fact("z")),
                    Definition(out_m, rhs, "forward", (), fact("z_matrix"))]
        if st.kind == "norm":
            return self.forward_norm(l)
        if st.kind == "act":
            name = self.spec.layers[l - 1].activation
            if name == "softmax":
                entry = sp.exp(x_e[J, S]) / Sum(sp.exp(x_e[I, S]), (I, 1, n))
            elif name == "log_softmax":
                entry = x_e[J, S] - sp.log(Sum(sp.exp(x_e[I, S]), (I, 1, n)))
            else:
                entry = f(l)(x_e[J, S])
            matrix = Elementwise(name if name in ("softmax", "log_softmax") else f"act_{l}", x_m)
            return [Definition(out_e[J, S], entry, "forward", free, fact("act")),
                    Definition(out_m, matrix, "forward", (), fact("act_matrix"))]
        if st.kind == "dropout":
            c = self.keep_scale(l)
            return [Definition(out_e[J, S], c * self.e("r", l)[J, S] * x_e[J, S], "forward", free, fact("dropout")),
                    Definition(out_m, c * HadamardProduct(self.M("r", l), x_m), "forward", (), fact("dropout_matrix"))]
        if st.kind == "skip":
            q = self.spec.source_of(l)
            return [Definition(out_e[J, S], x_e[J, S] + self.e("a", q)[J, S], "forward", free,
                               fact("skip") + (("from", q),)),
                    Definition(out_m, MatAdd(x_m, self.M("a", q)), "forward", (), fact("skip_matrix") + (("from", q),))]
        raise ValueError(st.kind)

    def keep_scale(self, l):
        p = self.spec.layers[l - 1].dropout
        return sp.Integer(1) / (1 - sp.Rational(p.numerator, p.denominator))

    def norm_axes(self, l):
        """(the statistic's index, the index it runs over, its bound): unit j over samples for batch norm,
        sample s over units for layer norm; and the dummy of the sums."""
        if self.spec.layers[l - 1].norm == "batch":
            return J, S, self.m, T
        return S, J, self.n(l), I

    def forward_norm(self, l) -> list[Step]:
        n, m = self.n(l), self.m
        at, over, count, dummy = self.norm_axes(l)
        z, zh, u = self.e("z", l), self.e("zhat", l), self.e("u", l)
        mu, var, g, be = self.e("mu", l), self.e("var", l), self.e("gamma", l), self.e("beta", l)
        batch = self.spec.layers[l - 1].norm == "batch"
        moved = lambda idx: z[J, idx] if batch else z[idx, S]
        free_stat = ((at, n if batch else m),)
        free = ((J, n), (S, m))
        facts = lambda what: (("what", what), ("layer", l), ("stage", "norm"), ("norm", "batch" if batch else "layer"))
        steps = [Definition(mu[at], sp.Mul(1 / count, Sum(moved(dummy), (dummy, 1, count)), evaluate=False),
                            "forward", free_stat, facts("mean")),
                 Definition(var[at], sp.Mul(1 / count, Sum((moved(dummy) - mu[at]) ** 2, (dummy, 1, count)),
                                            evaluate=False), "forward", free_stat, facts("variance")),
                 Definition(zh[J, S], sp.Mul(z[J, S] - mu[at], self.inv_sqrt(l, at), evaluate=False),
                            "forward", free, facts("normalize")),
                 Definition(u[J, S], g[J] * zh[J, S] + be[J], "forward", free, facts("scale_shift"))]
        Z, Mu, V = self.M("z", l), self.M("mu", l), self.M("var", l)
        if batch:
            centered = MatAdd(Z, -MatMul(Mu, self.ones(1, m)))
            rows = [Definition(Mu, sp.Mul(1 / count, MatMul(Z, self.ones(m, 1)), evaluate=False), "forward", (),
                               facts("mean_matrix")),
                    Definition(V, sp.Mul(1 / count, MatMul(HadamardProduct(centered, centered), self.ones(m, 1)),
                                         evaluate=False), "forward", (), facts("variance_matrix")),
                    Definition(self.M("zhat", l), MatMul(Diag(self.inv_sqrt_m(l)), centered), "forward", (),
                               facts("normalize_matrix"))]
        else:
            centered = MatAdd(Z, -MatMul(self.ones(n, 1), Mu))
            rows = [Definition(Mu, sp.Mul(1 / count, MatMul(self.ones(1, n), Z), evaluate=False), "forward", (),
                               facts("mean_matrix")),
                    Definition(V, sp.Mul(1 / count, MatMul(self.ones(1, n), HadamardProduct(centered, centered)),
                                         evaluate=False), "forward", (), facts("variance_matrix")),
                    Definition(self.M("zhat", l), MatMul(centered, Diag(Transpose(self.inv_sqrt_m(l)))), "forward",
                               (), facts("normalize_matrix"))]
        rows.append(Definition(self.M("u", l), MatAdd(MatMul(Diag(self.M("gamma", l)), self.M("zhat", l)),
                                                     MatMul(self.M("beta", l), self.ones(1, m))),
                               "forward", (), facts("scale_shift_matrix")))
        return steps + rows

    def inv_sqrt_m(self, l):
        V = self.M("var", l)
        return sp.HadamardPower(MatAdd(V, self.t.eps[l] * self.ones(*V.shape)), sp.Rational(-1, 2))

    # ------------------------------------------------------------------ backward
    def stage(self, st: Stage, level: str) -> list[Derivation]:
        method = getattr(self, f"{st.kind}_{level}")
        if st.kind == "norm":
            return [Derivation(topic, st.layer, level, tuple(steps), self.t) for topic, steps in method(st)]
        return [Derivation(st.kind, st.layer, level, tuple(method(st)), self.t)]

    def upstream(self, st: Stage, level: str, j=J, s=S):
        """dL/d(the stage's output): for the output layer's first stage, what the loss gave."""
        if level == "index":
            return self.grad(st.out, st.layer, j, s)
        return self.grad_m(st.out, st.layer)

    def lhs(self, st: Stage, level: str):
        """The derivative the stage gives: of its input node (delta where the input is z)."""
        if st.inp == "z":
            return self.e("delta", st.layer)[J, S] if level == "index" else self.M("delta", st.layer)
        return self.grad(st.inp, st.layer) if level == "index" else self.grad_m(st.inp, st.layer)

    def act_index(self, st: Stage):
        l, n, m = st.layer, self.n(st.layer), self.m
        x, o = self.e(st.inp, l), self.e(st.out, l)
        free = ((J, n), (S, m))
        steps = []
        if st.inp == "z":
            steps.append(DeltaDefinition(self.lhs(st, "index"), self.grad("z", l), "index", free, (("layer", l),)))
        head = self.grad(st.inp, l)
        r1 = Sum(self.grad(st.out, l, K, S) * Partial(o[K, S], x[J, S]), (K, 1, n))
        steps.append(ChainRule(head, r1, "index", free, (("via", st.out), ("dummy", K), ("layer", l),
                                                          ("why", "same_sample"))))
        r2 = Sum(self.grad(st.out, l, K, S) * kd(K, J) * f_prime(l)(x[J, S]), (K, 1, n))
        steps.append(ActivationDerivative(r1, r2, "index", free, (("layer", l), ("dummy", K), ("to", J))))
        r3 = sp.Mul(self.grad(st.out, l), f_prime(l)(x[J, S]), evaluate=False)
        steps.append(KroneckerCollapse(r2, r3, "index", free, (("dummy", K), ("to", J))))
        return steps

    def act_matrix(self, st: Stage):
        l = st.layer
        rhs = HadamardProduct(self.grad_m(st.out, l), Elementwise(f"actprime_{l}", self.M(st.inp, l)))
        out = [MatrixLift(self.lhs(st, "matrix"), rhs, "matrix", (), (("pattern", "hadamard"), ("layer", l)))]
        return out

    def dropout_index(self, st: Stage):
        l, free = st.layer, ((J, self.n(st.layer)), (S, self.m))
        x, o = self.e(st.inp, l), self.e(st.out, l)
        r1 = sp.Mul(self.grad(st.out, l), Partial(o[J, S], x[J, S]), evaluate=False)
        steps = [ChainRule(self.grad(st.inp, l), r1, "index", free, (("via", st.out), ("layer", l), ("why", "only_entry")))]
        r2 = sp.Mul(self.keep_scale(l), self.e("r", l)[J, S], self.grad(st.out, l), evaluate=False)
        steps.append(Differentiate(r1, r2, "index", free, (("wrt", "dropout"), ("layer", l))))
        return steps

    def dropout_matrix(self, st: Stage):
        l = st.layer
        rhs = self.keep_scale(l) * HadamardProduct(self.M("r", l), self.grad_m(st.out, l))
        return [MatrixLift(self.grad_m(st.inp, l), rhs, "matrix", (), (("pattern", "hadamard"), ("layer", l)))]

    def skip_index(self, st: Stage):
        l, free = st.layer, ((J, self.n(st.layer)), (S, self.m))
        x, o = self.e(st.inp, l), self.e(st.out, l)
        r1 = sp.Mul(self.grad(st.out, l), Partial(o[J, S], x[J, S]), evaluate=False)
        steps = [ChainRule(self.grad(st.inp, l), r1, "index", free, (("via", st.out), ("layer", l), ("why", "only_entry")))]
        steps.append(Differentiate(r1, self.grad(st.out, l), "index", free,
                                   (("wrt", "skip"), ("layer", l), ("from", self.spec.source_of(l)))))
        return steps

    def skip_matrix(self, st: Stage):
        l = st.layer
        return [MatrixLift(self.grad_m(st.inp, l), self.grad_m(st.out, l), "matrix", (),
                           (("pattern", "identity"), ("layer", l)))]

    # ------------------------------------------------------------ normalization
    def norm_index(self, st: Stage):
        l, n, m = st.layer, self.n(st.layer), self.m
        at, over, count, dummy = self.norm_axes(l)
        batch = self.spec.layers[l - 1].norm == "batch"
        z, zh, u = self.e("z", l), self.e("zhat", l), self.e("u", l)
        mu, var, g = self.e("mu", l), self.e("var", l), self.e("gamma", l)
        free = ((J, n), (S, m))
        # the entries that share a statistic with (j, s): the same row (batch) or column (layer)
        other = (lambda x, d: x[J, d]) if batch else (lambda x, d: x[d, S])
        kind = "batch" if batch else "layer"
        # gamma and beta: every sample's u_js holds gamma_j
        gamma_steps = [
            ChainRule(Partial(self.t.loss, g[J]), Sum(self.grad("u", l, J, S) * Partial(u[J, S], g[J]), (S, 1, m)),
                      "index", ((J, n),), (("via", "u"), ("layer", l), ("why", "every_sample"))),
            Differentiate(Sum(self.grad("u", l, J, S) * Partial(u[J, S], g[J]), (S, 1, m)),
                          Sum(self.grad("u", l, J, S) * zh[J, S], (S, 1, m)), "index", ((J, n),),
                          (("wrt", "gamma"), ("layer", l)))]
        beta = self.e("beta", l)
        beta_steps = [
            ChainRule(Partial(self.t.loss, beta[J]), Sum(self.grad("u", l, J, S) * Partial(u[J, S], beta[J]), (S, 1, m)),
                      "index", ((J, n),), (("via", "u"), ("layer", l), ("why", "every_sample"))),
            Differentiate(Sum(self.grad("u", l, J, S) * Partial(u[J, S], beta[J]), (S, 1, m)),
                          Sum(self.grad("u", l, J, S), (S, 1, m)), "index", ((J, n),), (("wrt", "beta"), ("layer", l)))]
        zhat_steps = [
            ChainRule(self.grad("zhat", l), sp.Mul(self.grad("u", l), Partial(u[J, S], zh[J, S]), evaluate=False),
                      "index", free, (("via", "u"), ("layer", l), ("why", "only_entry"))),
            Differentiate(sp.Mul(self.grad("u", l), Partial(u[J, S], zh[J, S]), evaluate=False),
                          sp.Mul(g[J], self.grad("u", l), evaluate=False), "index", free,
                          (("wrt", "zhat"), ("layer", l)))]
        # delta: z_js reaches L through every normalized entry that shares its statistics
        d = self.e("delta", l)
        sd = ((J, n), (S, m), (dummy, count))
        G = lambda idx: self.grad("zhat", l, *((J, idx) if batch else (idx, S)))
        Zh = lambda idx: other(zh, idx)
        r1 = Sum(G(dummy) * Partial(Zh(dummy), z[J, S]), (dummy, 1, count))
        steps = [DeltaDefinition(d[J, S], self.grad("z", l), "index", free, (("layer", l),)),
                 ChainRule(self.grad("z", l), r1, "index", free, (("via", "zhat"), ("dummy", dummy), ("layer", l),
                                                                   ("why", "shared_" + kind)))]
        side = Partial(Zh(dummy), z[J, S])
        t1 = Partial(sp.Mul(other(z, dummy) - mu[at], self.inv_sqrt(l, at), evaluate=False), z[J, S])
        steps.append(Substitute(side, t1, "index", sd, (("what", "zhat"), ("layer", l))))
        dmu, dvar = Partial(mu[at], z[J, S]), Partial(var[at], z[J, S])
        t2 = (kd(dummy, over) - dmu) * self.inv_sqrt(l, at) \
            - sp.Mul(sp.Rational(1, 2), other(z, dummy) - mu[at],
                     sp.Pow(var[at] + self.t.eps[l], sp.Rational(-3, 2), evaluate=False), dvar, evaluate=False)
        steps.append(Differentiate(t1, t2, "index", sd, (("wrt", "quotient"), ("layer", l))))
        # the statistics' derivatives
        steps.append(Substitute(dmu, Partial(sp.Mul(1 / count, Sum(other(z, dummy), (dummy, 1, count)),
                                                    evaluate=False), z[J, S]), "index", free,
                                (("what", "mean"), ("layer", l))))
        steps.append(Differentiate(steps[-1].rhs, 1 / count, "index", free, (("wrt", "mean"), ("layer", l))))
        v1 = Partial(sp.Mul(1 / count, Sum((other(z, dummy) - mu[at]) ** 2, (dummy, 1, count)), evaluate=False), z[J, S])
        steps.append(Substitute(dvar, v1, "index", free, (("what", "variance"), ("layer", l))))
        v2 = sp.Mul(2 / count, Sum((other(z, dummy) - mu[at]) * (kd(dummy, over) - 1 / count), (dummy, 1, count)),
                    evaluate=False)
        steps.append(Differentiate(v1, v2, "index", free, (("wrt", "variance"), ("layer", l))))
        v3 = sp.Mul(2 / count, z[J, S] - mu[at], evaluate=False) - \
            sp.Mul(2 / count ** 2, Sum(other(z, dummy) - mu[at], (dummy, 1, count)), evaluate=False)
        steps.append(KroneckerCollapse(v2, v3, "index", free, (("dummy", dummy), ("to", over))))
        v4 = sp.Mul(2 / count, z[J, S] - mu[at], evaluate=False)
        steps.append(Simplify(v3, v4, "index", free, (("why", "centered_sum"), ("dummy", dummy))))
        # back into the side: the normalized entries appear
        t3 = (kd(dummy, over) - 1 / count) * self.inv_sqrt(l, at) \
            - (other(z, dummy) - mu[at]) * (z[J, S] - mu[at]) / count * sp.Pow(var[at] + self.t.eps[l], sp.Rational(-3, 2),
                                                                               evaluate=False)
        steps.append(Substitute(t2, t3, "index", sd, (("what", "statistics"),)))
        t4 = sp.Mul(self.inv_sqrt(l, at), kd(dummy, over) - 1 / count - Zh(dummy) * zh[J, S] / count, evaluate=False)
        steps.append(Substitute(t3, t4, "index", sd, (("what", "normalized"), ("layer", l))))
        r2 = Sum(G(dummy) * t4, (dummy, 1, count))
        steps.append(Substitute(r1, r2, "index", free, (("what", "side"),)))
        r3 = sp.Mul(self.inv_sqrt(l, at) / count,
                    count * self.grad("zhat", l) - Sum(G(dummy), (dummy, 1, count))
                    - zh[J, S] * Sum(G(dummy) * Zh(dummy), (dummy, 1, count)), evaluate=False)
        steps.append(KroneckerCollapse(r2, r3, "index", free, (("dummy", dummy), ("to", over), ("why", "three_terms"))))
        U = lambda idx: self.grad("u", l, *((J, idx) if batch else (idx, S)))
        gam = lambda idx: g[J] if batch else g[idx]
        if batch:   # gamma_j is one number across the row: it leaves every sum
            r4 = sp.Mul(g[J] * self.inv_sqrt(l, at) / count,
                        count * self.grad("u", l) - Sum(U(dummy), (dummy, 1, count))
                        - zh[J, S] * Sum(U(dummy) * Zh(dummy), (dummy, 1, count)), evaluate=False)
        else:
            r4 = sp.Mul(self.inv_sqrt(l, at) / count,
                        count * g[J] * self.grad("u", l) - Sum(gam(dummy) * U(dummy), (dummy, 1, count))
                        - zh[J, S] * Sum(gam(dummy) * U(dummy) * Zh(dummy), (dummy, 1, count)), evaluate=False)
        steps.append(Substitute(r3, r4, "index", free, (("what", "gamma_u"), ("layer", l))))
        return [("gamma", gamma_steps), ("beta", beta_steps), ("zhat", zhat_steps), ("norm", steps)]

    def norm_matrix(self, st: Stage):
        l, m, n = st.layer, self.m, self.n(st.layer)
        batch = self.spec.layers[l - 1].norm == "batch"
        GU, Zh = self.grad_m("u", l), self.M("zhat", l)
        gamma = [MatrixLift(MatPartial(self.t.loss, self.M("gamma", l)),
                            MatMul(HadamardProduct(GU, Zh), self.ones(m, 1)), "matrix", (),
                            (("pattern", "row_sums"), ("layer", l)))]
        beta = [MatrixLift(MatPartial(self.t.loss, self.M("beta", l)), MatMul(GU, self.ones(m, 1)), "matrix", (),
                           (("pattern", "row_sums"), ("layer", l)))]
        zhat = [MatrixLift(self.grad_m("zhat", l), MatMul(Diag(self.M("gamma", l)), GU), "matrix", (),
                           (("pattern", "diag"), ("layer", l)))]
        G = self.grad_m("zhat", l)
        if batch:
            spread = lambda X: MatMul(X, self.ones(m, 1), self.ones(1, m))
            inner = MatAdd(m * G, -spread(G), -HadamardProduct(Zh, spread(HadamardProduct(G, Zh))))
            rhs = MatMul(sp.Integer(1) / m, Diag(self.inv_sqrt_m(l)), inner)
        else:
            spread = lambda X: MatMul(self.ones(n, 1), self.ones(1, n), X)
            inner = MatAdd(n * G, -spread(G), -HadamardProduct(Zh, spread(HadamardProduct(G, Zh))))
            rhs = MatMul(1 / n, inner, Diag(Transpose(self.inv_sqrt_m(l))))
        delta = [MatrixLift(self.M("delta", l), rhs, "matrix", (),
                            (("pattern", "three_terms_" + ("batch" if batch else "layer")), ("layer", l)))]
        return [("gamma", gamma), ("beta", beta), ("zhat", zhat), ("norm", delta)]

    # ------------------------------------------------------------- the linear map
    def weight_index(self, l):
        n, m, w = self.n(l), self.m, self.e("W", l)
        z, a, d = self.e("z", l), self.e("a", l - 1), self.e("delta", l)
        free = ((J, n), (K, self.n(l - 1)))
        r1 = Sum(sp.Mul(self.grad("z", l), Partial(z[J, S], w[J, K]), evaluate=False), (S, 1, m))
        s = [ChainRule(Partial(self.t.loss, w[J, K]), r1, "index", free, (("via", "z"), ("only", J), ("layer", l),
                                                                            ("why", "every_sample")))]
        side_free = free + ((S, m),)
        t1 = Partial(self.z_sum(l, J, I), w[J, K])
        s.append(Substitute(Partial(z[J, S], w[J, K]), t1, "index", side_free, (("what", "z"), ("layer", l))))
        t2 = Sum(kd(I, K) * a[I, S], (I, 1, self.n(l - 1)))
        s.append(Differentiate(t1, t2, "index", side_free, (("wrt", "w"), ("dummy", I), ("to", K), ("layer", l))))
        s.append(KroneckerCollapse(t2, a[K, S], "index", side_free, (("dummy", I), ("to", K))))
        r2 = Sum(sp.Mul(self.grad("z", l), a[K, S], evaluate=False), (S, 1, m))
        s.append(Substitute(r1, r2, "index", free, (("what", "side"),)))
        s.append(DeltaDefinition(r2, Sum(sp.Mul(d[J, S], a[K, S], evaluate=False), (S, 1, m)), "index", free,
                                 (("layer", l),)))
        return s

    def weight_matrix(self, l):
        return [MatrixLift(MatPartial(self.t.loss, self.M("W", l)),
                           MatMul(self.M("delta", l), Transpose(self.M("a", l - 1))), "matrix", (),
                           (("pattern", "outer_column"), ("layer", l)))]

    def bias_index(self, l):
        n, m, b, z, d = self.n(l), self.m, self.e("b", l), self.e("z", l), self.e("delta", l)
        free = ((J, n),)
        r1 = Sum(sp.Mul(self.grad("z", l), Partial(z[J, S], b[J]), evaluate=False), (S, 1, m))
        s = [ChainRule(Partial(self.t.loss, b[J]), r1, "index", free, (("via", "z"), ("only", J), ("layer", l),
                                                                        ("why", "every_sample")))]
        r2 = Sum(self.grad("z", l), (S, 1, m))
        s.append(Differentiate(r1, r2, "index", free, (("wrt", "b"), ("layer", l))))
        s.append(DeltaDefinition(r2, Sum(d[J, S], (S, 1, m)), "index", free, (("layer", l),)))
        return s

    def bias_matrix(self, l):
        return [MatrixLift(MatPartial(self.t.loss, self.M("b", l)), MatMul(self.M("delta", l), self.ones(self.m, 1)),
                           "matrix", (), (("pattern", "row_sums"), ("layer", l)))]

    def input_index(self, l):
        """dL/da^(l-1): through z^l and, for every skip from layer l - 1, through that layer's output."""
        src, n_src, m = l - 1, self.n(l - 1), self.m
        a, z, w, d = self.e("a", src), self.e("z", l), self.e("W", l), self.e("delta", l)
        free = ((K, n_src), (S, m))
        skips = list(skips_from(self.spec, src))
        via_z = Sum(sp.Mul(self.grad("z", l, P, S), Partial(z[P, S], a[K, S]), evaluate=False), (P, 1, self.n(l)))
        # a^q = h^q + a^(l-1) holds a^(l-1)_ks once, with coefficient 1: that path adds dL/da^q_ks itself
        via_skip = [self.grad("a", q, K, S) for q in skips]
        r1 = sp.Add(via_z, *via_skip, evaluate=False) if skips else via_z
        s = [ChainRule(Partial(self.t.loss, a[K, S]), r1, "index", free,
                       (("via", "z"), ("dummy", P), ("layer", l), ("skips", tuple(skips)), ("why", "consumers")))]
        side_free = ((P, self.n(l)), (K, n_src), (S, m))
        t1 = Partial(self.z_sum(l, P, I), a[K, S])
        s.append(Substitute(Partial(z[P, S], a[K, S]), t1, "index", side_free, (("what", "z"), ("layer", l))))
        t2 = Sum(w[P, I] * kd(I, K), (I, 1, n_src))
        s.append(Differentiate(t1, t2, "index", side_free, (("wrt", "a"), ("dummy", I), ("layer", l))))
        s.append(KroneckerCollapse(t2, w[P, K], "index", side_free, (("dummy", I), ("to", K))))
        back = Sum(sp.Mul(w[P, K], d[P, S], evaluate=False), (P, 1, self.n(l)))
        r2 = sp.Add(back, *[self.grad("a", q, K, S) for q in skips], evaluate=False) if skips else back
        s.append(Substitute(r1, r2, "index", free, (("what", "side_delta"), ("skips", tuple(skips)))))
        return s

    def input_matrix(self, l):
        src = l - 1
        skips = list(skips_from(self.spec, src))
        back = MatMul(Transpose(self.M("W", l)), self.M("delta", l))
        rhs = MatAdd(back, *[self.grad_m("a", q) for q in skips]) if skips else back
        return [MatrixLift(self.grad_m("a", src), rhs, "matrix", (),
                           (("pattern", "backward_column"), ("layer", l), ("skips", tuple(skips))))]
