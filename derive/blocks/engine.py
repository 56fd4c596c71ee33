"""derive_blocks(spec): the forward pass and, stage by stage from the loss down, the derivative of the loss
by every node and parameter, at index level (entries, with sums and Iverson brackets) and in matrix
form (samples as columns). Each stage applies its local rule to named quantities, so the cost is
linear in depth and independent of width.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import sympy as sp
from sympy import KroneckerDelta as kd, Sum, Transpose, HadamardProduct, MatMul, MatAdd, OneMatrix

from ..algebra import Diag, Elementwise, MatPartial, Partial
from .symbols import Direct, Shift
from ..steps import (ActivationDerivative, ChainRule, Definition, DeltaDefinition, Derivation, Differentiate,
                     KroneckerCollapse, MatrixLift, Simplify, SoftmaxJacobian, Step, Substitute)
from .losses import LossRules
from .plan import Stage, skips_from, stages
from .spec import BlockSpec
from .symbols import INDEX, Table, f, f_prime, fn
from .expand import expand_entries

LEVELS = ("index", "matrix")
I, J, K, P, S, T, R = (INDEX[n] for n in ("i", "j", "k", "p", "s", "t", "r"))
C, D, Q, U_, E, F_, G_ = (INDEX[n] for n in ("c", "d", "q", "u", "e", "f", "g"))
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
            if layer.kind == "attention":
                out += [f"WQ{l}", f"WK{l}", f"WV{l}"]
                continue
            if layer.kind == "pool":
                continue
            out.append(f"K{l}" if layer.kind == "conv" else f"W{l}")
            if layer.kind == "rnn":
                out.append(f"U{l}")
            if layer.bias:
                out.append(f"b{l}")
            if layer.norm:
                out += [f"gamma{l}", f"beta{l}"]
        return tuple(out)

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.level for d in self.derivations))

    def backward_order(self) -> tuple[Derivation, ...]:
        """The derivations a backward pass runs, in its order: the matrix form, or the index form where a
        topic has none (the feature maps of conv and pool layers)."""
        out = []
        for d in self.derivations:
            if d.level == "matrix" or (d.level == "index" and not self.has(d.topic, d.layer, "matrix")):
                out.append(d)
        return tuple(out)

    def __repr__(self) -> str:
        sizes = " → ".join(str(s) for s in self.table.sizes)
        return (f"<BlockDerivation {self.spec.name!r}: {sizes}, {len(self.derivations)} derivations; "
                f"parameters {', '.join(self.parameters)}>")


def derive_blocks(spec: BlockSpec, levels: tuple[str, ...] | None = None) -> BlockDerivation:
    """levels: index and matrix by default, and for a network of feature maps the concrete level (every
    entry of a small conv layer's gradients written out)."""
    if levels is None:
        levels = LEVELS + (("concrete",) if spec.has_maps else ())
    t = Table(spec)
    b = _Builder(t)
    out: list[Derivation] = []
    wanted = set(levels)
    if spec.has_maps and "matrix" in wanted:       # a feature map's result is its index-level form
        wanted.add("index")
    for level in ("index", "matrix"):
        if level in wanted:
            out.append(Derivation("loss", spec.depth, level, tuple(b.loss.steps(level)), t))
    for l in range(spec.depth, 0, -1):
        plan = stages(spec, l)
        for stage in reversed(plan):
            if stage.kind in ("linear", "recur", "conv", "pool") or (stage.kind == "act" and l == spec.depth and
                                                     spec.loss.kind in COMBINED_LOSSES):
                continue
            for level in ("index", "matrix"):
                if level in wanted:
                    out += b.stage(stage, level)
        kind = spec.layers[l - 1].kind
        topics = {"dense": ("weight", "bias"), "rnn": ("weight", "recurrent", "bias"), "conv": ("kernel", "bias"),
                  "attention": ("wq", "wk", "wv"), "pool": ()}[kind] + ("input",)
        on_maps = spec.map_shape(l - 1) is not None or kind == "conv"
        for topic in topics:
            if topic == "bias" and not spec.layers[l - 1].bias or topic == "input" and l == 1:
                continue
            for level in ("index", "matrix"):
                if level in wanted and not (on_maps and level == "matrix"):
                    out.append(Derivation(topic, l, level, tuple(getattr(b, f"{topic}_{level}")(l)), t))
    if "concrete" in wanted:
        out += b.concrete_maps()
    forward = tuple(b.forward())
    if t.samples == 1 and spec.has_maps:      # one sample: its column index is dropped
        forward, out = _one_column(forward), [replace(d, steps=_one_column(d.steps)) for d in out]
    return BlockDerivation(spec, t, forward, tuple(out))


def _one_column(steps):
    """Steps of a network of one sample without its column index s: sums over s (one term) are their
    term, and s is 1."""
    def drop(e):
        if not isinstance(e, sp.Basic):
            return e
        e = e.replace(lambda x: isinstance(x, Sum) and any(lim[0] == S for lim in x.limits),
                      lambda x: (x.function.xreplace({S: sp.Integer(1)}) if len(x.limits) == 1 else
                                 Sum(x.function.xreplace({S: sp.Integer(1)}), *[lim for lim in x.limits if lim[0] != S])))
        return e.xreplace({S: sp.Integer(1)})
    facts = lambda st: tuple((k, "only_entry" if (k, v) == ("why", "every_sample") else v) for k, v in st.facts)
    return tuple(type(st)(drop(st.lhs), drop(st.rhs), st.level, tuple((i, b) for i, b in st.free if i != S),
                          facts(st)) for st in steps)


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
        if self.spec.layers[l - 1].kind == "rnn":      # the state of the step before (a_(., 0) = 0)
            state = Sum(sp.Mul(self.e("U", l)[row, dummy], self.e("a", l)[dummy, s - 1], evaluate=False),
                        (dummy, 1, self.n(l)))
            total = sp.Add(total, state, evaluate=False)
        return total + b[row] if self.spec.layers[l - 1].bias else total

    def rnn(self, l) -> bool:
        return self.spec.layers[l - 1].kind == "rnn"

    def inv_sqrt(self, l, at):
        """(v + epsilon)^(-1/2) of the statistic at index `at` (unit j for batch norm, sample s for layer norm)."""
        return sp.Pow(self.e("var", l)[at] + self.t.eps[l], sp.Rational(-1, 2), evaluate=False)

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
        if st.kind in ("conv", "pool") or (st.kind == "act" and self.spec.map_shape(l) is not None):
            return self.forward_map(st)
        if st.kind == "linear" and self.spec.map_shape(l - 1) is not None:
            rows = self.spec.map_shape(l - 1)
            idx = self.map_index(len(rows), (C, R, U_))
            body = sp.Mul(self.e("W", l)[(J,) + idx], self.e("a", l - 1)[idx], evaluate=False)
            total = self.map_sum(body, idx, rows)
            if self.spec.layers[l - 1].bias:
                total = total + self.e("b", l)[J]
            return [Definition(self.e(st.out, l)[J, S], total, "forward", free, fact("z_map"))]
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
        if st.kind == "recur":
            rhs = MatAdd(MatMul(self.M("W", l), x_m),
                         MatMul(self.M("U", l), self.M("a", l), Transpose(Shift(self.m))))
            if self.spec.layers[l - 1].bias:
                rhs = MatAdd(rhs, MatMul(self.M("b", l), self.ones(1, m)))
            return [Definition(out_e[J, S], self.z_sum(l, J, I), "forward", free, fact("z_recurrent")),
                    Definition(out_m, rhs, "forward", (), fact("z_recurrent_matrix"))]
        if st.kind == "attend":
            return self.forward_attention(st)
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
        if self.spec.map_shape(st.layer) is not None:           # a feature map: entry by entry only
            if level == "matrix":
                return []
            return [Derivation(st.kind, st.layer, level, tuple(getattr(self, f"map_{st.kind}")(st)), self.t)]
        method = getattr(self, f"{st.kind}_{level}")
        if st.kind in ("norm", "attend"):
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
        fresh = R if batch else P      # the statistics' own summation letter: the side's dummy is free there
        steps.append(Substitute(dmu, Partial(sp.Mul(1 / count, Sum(other(z, fresh), (fresh, 1, count)),
                                                    evaluate=False), z[J, S]), "index", free,
                                (("what", "mean"), ("layer", l))))
        steps.append(Differentiate(steps[-1].rhs, 1 / count, "index", free, (("wrt", "mean"), ("layer", l))))
        v1 = Partial(sp.Mul(1 / count, Sum((other(z, fresh) - mu[at]) ** 2, (fresh, 1, count)), evaluate=False), z[J, S])
        steps.append(Substitute(dvar, v1, "index", free, (("what", "variance"), ("layer", l))))
        v2 = sp.Mul(2 / count, Sum((other(z, fresh) - mu[at]) * (kd(fresh, over) - 1 / count), (fresh, 1, count)),
                    evaluate=False)
        steps.append(Differentiate(v1, v2, "index", free, (("wrt", "variance"), ("layer", l))))
        v3 = sp.Mul(2 / count, z[J, S] - mu[at], evaluate=False) - \
            sp.Mul(2 / count ** 2, Sum(other(z, fresh) - mu[at], (fresh, 1, count)), evaluate=False)
        steps.append(KroneckerCollapse(v2, v3, "index", free, (("dummy", fresh), ("to", over))))
        v4 = sp.Mul(2 / count, z[J, S] - mu[at], evaluate=False)
        steps.append(Simplify(v3, v4, "index", free, (("why", "centered_sum"), ("dummy", fresh))))
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
    def weight_index(self, l, param="W", node="z"):
        if param == "W" and self.spec.map_shape(l - 1) is not None:
            return self.map_weight_index(l)
        return self.vector_weight_index(l, param, node)

    def map_weight_index(self, l):
        """dL/dw_jc..: a dense layer reading a feature map has a weight per map entry."""
        before = self.spec.map_shape(l - 1)
        idx = (C, R, U_)[:len(before)]
        w, z, a, d = self.e("W", l), self.e("z", l), self.e("a", l - 1), self.e("delta", l)
        free = ((J, self.n(l)),) + tuple(zip(idx, (sp.Integer(n) for n in before)))
        r1 = sp.Mul(Partial(self.t.loss, z[J, S]), Partial(z[J, S], w[(J,) + idx]), evaluate=False)
        s = [ChainRule(Partial(self.t.loss, w[(J,) + idx]), r1, "index", free, (("via", "z"), ("layer", l),
                                                                                ("why", "only_entry")))]
        r2 = sp.Mul(Partial(self.t.loss, z[J, S]), a[idx], evaluate=False)
        s.append(Differentiate(r1, r2, "index", free, (("wrt", "w_map"), ("layer", l))))
        s.append(DeltaDefinition(r2, sp.Mul(d[J, S], a[idx], evaluate=False), "index", free, (("layer", l),)))
        return s

    def vector_weight_index(self, l, param="W", node="z"):
        """dL/dw_jk summed over the columns: every sample (time step, token) uses the weight. In a recurrent
        layer the derivative of z_jt by the weight is the direct one, the state a_(t-1) held fixed: its own
        dependence on the weight is carried by delta_(t-1)."""
        n, m, w = self.t.shape(param, l)[0], self.m, self.e(param, l)
        z = self.e(node, l)
        src = l if param == "U" else l - 1
        a, shift = self.e("a", src), (-1 if param == "U" else 0)
        n_src = self.n(src)
        free = ((J, n), (K, n_src))
        partial = Direct if self.rnn(l) else Partial
        r1 = Sum(sp.Mul(self.grad(node, l), partial(z[J, S], w[J, K]), evaluate=False), (S, 1, m))
        why = "every_step" if self.spec.is_sequence else "every_sample"
        s = [ChainRule(Partial(self.t.loss, w[J, K]), r1, "index", free, (("via", node), ("only", J), ("layer", l),
                                                                            ("why", why), ("direct", self.rnn(l))))]
        side_free = free + ((S, m),)
        definition = self.z_sum(l, J, I) if node == "z" else \
            Sum(sp.Mul(w[J, I], self.e("a", l - 1)[I, S], evaluate=False), (I, 1, self.n(l - 1)))
        t1 = partial(definition, w[J, K])
        s.append(Substitute(partial(z[J, S], w[J, K]), t1, "index", side_free, (("what", node), ("layer", l))))
        t2 = Sum(kd(I, K) * a[I, S + shift], (I, 1, n_src))
        s.append(Differentiate(t1, t2, "index", side_free, (("wrt", "w"), ("dummy", I), ("to", K), ("layer", l),
                                                            ("param", param))))
        s.append(KroneckerCollapse(t2, a[K, S + shift], "index", side_free, (("dummy", I), ("to", K))))
        r2 = Sum(sp.Mul(self.grad(node, l), a[K, S + shift], evaluate=False), (S, 1, m))
        s.append(Substitute(r1, r2, "index", free, (("what", "side"),)))
        if node == "z":
            d = self.e("delta", l)
            s.append(DeltaDefinition(r2, Sum(sp.Mul(d[J, S], a[K, S + shift], evaluate=False), (S, 1, m)), "index",
                                     free, (("layer", l),)))
        return s

    def weight_matrix(self, l, param="W", node="z"):
        g = self.M("delta", l) if node == "z" else self.grad_m(node, l)
        if param == "U":       # the states a_0 .. a_(T-1): A N^T; so the sum over t is Delta N A^T
            rhs = MatMul(g, Shift(self.m), Transpose(self.M("a", l)))
        else:
            rhs = MatMul(g, Transpose(self.M("a", l - 1)))
        return [MatrixLift(MatPartial(self.t.loss, self.M(param, l)), rhs, "matrix", (),
                           (("pattern", "outer_column"), ("layer", l), ("param", param)))]

    def recurrent_index(self, l):
        return self.vector_weight_index(l, "U")

    def recurrent_matrix(self, l):
        return self.weight_matrix(l, "U")

    def wq_index(self, l):
        return self.weight_index(l, "WQ", "q")

    def wq_matrix(self, l):
        return self.weight_matrix(l, "WQ", "q")

    def wk_index(self, l):
        return self.weight_index(l, "WK", "kk")

    def wk_matrix(self, l):
        return self.weight_matrix(l, "WK", "kk")

    def wv_index(self, l):
        return self.weight_index(l, "WV", "v")

    def wv_matrix(self, l):
        return self.weight_matrix(l, "WV", "v")

    def bias_index(self, l):
        if self.spec.layers[l - 1].kind == "conv":
            return self.conv_bias_index(l)
        n, m, b, z, d = self.n(l), self.m, self.e("b", l), self.e("z", l), self.e("delta", l)
        free = ((J, n),)
        partial = Direct if self.rnn(l) else Partial
        r1 = Sum(sp.Mul(self.grad("z", l), partial(z[J, S], b[J]), evaluate=False), (S, 1, m))
        why = "every_step" if self.spec.is_sequence else "every_sample"
        s = [ChainRule(Partial(self.t.loss, b[J]), r1, "index", free, (("via", "z"), ("only", J), ("layer", l),
                                                                        ("why", why), ("direct", self.rnn(l))))]
        r2 = Sum(self.grad("z", l), (S, 1, m))
        s.append(Differentiate(r1, r2, "index", free, (("wrt", "b"), ("layer", l))))
        s.append(DeltaDefinition(r2, Sum(d[J, S], (S, 1, m)), "index", free, (("layer", l),)))
        return s

    def bias_matrix(self, l):
        return [MatrixLift(MatPartial(self.t.loss, self.M("b", l)), MatMul(self.M("delta", l), self.ones(self.m, 1)),
                           "matrix", (), (("pattern", "row_sums"), ("layer", l)))]

    def readers(self, l):
        """How layer l reads a^(l-1): (node, weight, rows) for each of its linear maps."""
        if self.spec.layers[l - 1].kind == "attention":
            return [("q", "WQ", self.t.key_size(l)), ("kk", "WK", self.t.key_size(l)), ("v", "WV", self.n(l))]
        return [("z", "W", self.n(l))]

    def input_index(self, l):
        if self.spec.map_shape(l - 1) is not None:
            return self.map_input_index(l)
        return self.vector_input_index(l)

    def vector_input_index(self, l):
        """dL/da^(l-1)_ks: through every linear map of layer l, every skip from layer l - 1 (coefficient 1) and,
        when layer l - 1 is recurrent, through its own weighted input at the next step."""
        src, n_src, m = l - 1, self.n(l - 1), self.m
        a = self.e("a", src)
        free = ((K, n_src), (S, m))
        skips = list(skips_from(self.spec, src))
        readers = self.readers(l)
        via = [Sum(sp.Mul(self.grad(node, l, P, S), Partial(self.e(node, l)[P, S], a[K, S]), evaluate=False),
                   (P, 1, rows)) for node, _, rows in readers]
        recurrent = self.rnn(src)
        if recurrent:
            zs = self.e("z", src)
            via.append(Sum(sp.Mul(self.grad("z", src, P, S + 1), Partial(zs[P, S + 1], a[K, S]), evaluate=False),
                           (P, 1, n_src)))
        # a^q = h^q + a^(l-1) holds a^(l-1)_ks once, with coefficient 1: that path adds dL/da^q_ks itself
        via += [self.grad("a", q, K, S) for q in skips]
        r1 = sp.Add(*via, evaluate=False) if len(via) > 1 else via[0]
        s = [ChainRule(Partial(self.t.loss, a[K, S]), r1, "index", free,
                       (("via", readers[0][0]), ("dummy", P), ("layer", l), ("skips", tuple(skips)),
                        ("recurrent", recurrent), ("why", "consumers")))]
        side_free = ((P, self.n(l)), (K, n_src), (S, m))
        terms = []
        if readers[0][0] == "z":
            z, w = self.e("z", l), self.e("W", l)
            t1 = Partial(self.z_sum(l, P, I, S), a[K, S])
            s.append(Substitute(Partial(z[P, S], a[K, S]), t1, "index", side_free, (("what", "z"), ("layer", l))))
            t2 = Sum(w[P, I] * kd(I, K), (I, 1, n_src))
            s.append(Differentiate(t1, t2, "index", side_free, (("wrt", "a"), ("dummy", I), ("layer", l))))
            s.append(KroneckerCollapse(t2, w[P, K], "index", side_free, (("dummy", I), ("to", K))))
            terms.append(Sum(sp.Mul(w[P, K], self.e("delta", l)[P, S], evaluate=False), (P, 1, self.n(l))))
        else:
            for node, param, rows in readers:
                w = self.e(param, l)
                s.append(Differentiate(Partial(self.e(node, l)[P, S], a[K, S]), w[P, K], "index",
                                       ((P, rows), (K, n_src), (S, m)), (("wrt", "projection"), ("layer", l))))
                terms.append(Sum(sp.Mul(w[P, K], self.grad(node, l, P, S), evaluate=False), (P, 1, rows)))
        if recurrent:
            u = self.e("U", src)
            s.append(Differentiate(Partial(self.e("z", src)[P, S + 1], a[K, S]), u[P, K], "index",
                                   ((P, n_src), (K, n_src), (S, m - 1)), (("wrt", "state"), ("layer", src))))
            terms.append(Sum(sp.Mul(u[P, K], self.e("delta", src)[P, S + 1], evaluate=False), (P, 1, n_src)))
        terms += [self.grad("a", q, K, S) for q in skips]
        r2 = sp.Add(*terms, evaluate=False) if len(terms) > 1 else terms[0]
        s.append(Substitute(r1, r2, "index", free, (("what", "side_delta"), ("skips", tuple(skips)),
                                                    ("recurrent", recurrent))))
        return s

    def input_matrix(self, l):
        src = l - 1
        skips = list(skips_from(self.spec, src))
        if self.spec.layers[l - 1].kind == "attention":
            terms = [MatMul(Transpose(self.M(param, l)), self.grad_m(node, l)) for node, param, _ in self.readers(l)]
        else:
            terms = [MatMul(Transpose(self.M("W", l)), self.M("delta", l))]
        if self.rnn(src):      # Delta N: the error terms of the next step (0 after the last)
            terms.append(MatMul(Transpose(self.M("U", src)), self.M("delta", src), Shift(self.m)))
        terms += [self.grad_m("a", q) for q in skips]
        rhs = MatAdd(*terms) if len(terms) > 1 else terms[0]
        return [MatrixLift(self.grad_m("a", src), rhs, "matrix", (),
                           (("pattern", "backward_column"), ("layer", l), ("skips", tuple(skips)),
                            ("recurrent", self.rnn(src))))]

    # ---------------------------------------------------------------- attention
    def forward_attention(self, st: Stage) -> list[Step]:
        l, m = st.layer, self.m
        a, A = self.e("a", l - 1), self.M("a", l - 1)
        dk = self.t.key_size(l)
        scale = sp.Pow(sp.sqrt(dk), -1, evaluate=False)        # printed 1/sqrt(d), as the definition reads
        q, kk, v, sc, pr, o = (self.e(k, l) for k in ("q", "kk", "v", "sc", "pr", st.out))
        fact = lambda what: (("what", what), ("layer", l), ("stage", "attend"))
        out = []
        for node, param, rows in self.readers(l):
            out.append(Definition(self.e(node, l)[I, S], Sum(sp.Mul(self.e(param, l)[I, K], a[K, S], evaluate=False),
                                                              (K, 1, self.n(l - 1))), "forward",
                                  ((I, rows), (S, m)), fact("projection")))
        out.append(Definition(sc[T, S], sp.Mul(scale, Sum(kk[I, T] * q[I, S], (I, 1, dk)), evaluate=False), "forward",
                              ((T, m), (S, m)), fact("score")))
        out.append(Definition(pr[T, S], sp.exp(sc[T, S]) / Sum(sp.exp(sc[R, S]), (R, 1, m)), "forward",
                              ((T, m), (S, m)), fact("attention_weights")))
        out.append(Definition(o[J, S], Sum(v[J, T] * pr[T, S], (T, 1, m)), "forward", ((J, self.n(l)), (S, m)),
                              fact("attention_output")))
        for node, param, _ in self.readers(l):
            out.append(Definition(self.M(node, l), MatMul(self.M(param, l), A), "forward", (), fact("projection_matrix")))
        out.append(Definition(self.M("sc", l), MatMul(scale, Transpose(self.M("kk", l)), self.M("q", l)), "forward", (),
                              fact("score_matrix")))
        out.append(Definition(self.M("pr", l), Elementwise("softmax", self.M("sc", l)), "forward", (),
                              fact("attention_weights_matrix")))
        out.append(Definition(self.M(st.out, l), MatMul(self.M("v", l), self.M("pr", l)), "forward", (),
                              fact("attention_output_matrix")))
        return out

    def attend_index(self, st: Stage):
        l, m, n, dk = st.layer, self.m, self.n(st.layer), self.t.key_size(st.layer)
        q, kk, v, sc, pr, o = (self.e(k, l) for k in ("q", "kk", "v", "sc", "pr", st.out))
        G = lambda node, *ix: self.grad(node, l, *ix)
        scale = 1 / sp.sqrt(dk)
        out = []
        # values: o_js = sum_t v_jt p_ts
        r1 = Sum(sp.Mul(G(st.out, J, S), Partial(o[J, S], v[J, T]), evaluate=False), (S, 1, m))
        vs = [ChainRule(G("v", J, T), r1, "index", ((J, n), (T, m)), (("via", st.out), ("layer", l),
                                                                         ("why", "every_query")))]
        vs.append(Differentiate(r1, Sum(sp.Mul(G(st.out, J, S), pr[T, S], evaluate=False), (S, 1, m)), "index",
                                ((J, n), (T, m)), (("wrt", "values"), ("layer", l))))
        out.append(("att_v", vs))
        r1 = Sum(sp.Mul(G(st.out, J, S), Partial(o[J, S], pr[T, S]), evaluate=False), (J, 1, n))
        ps = [ChainRule(G("pr", T, S), r1, "index", ((T, m), (S, m)), (("via", st.out), ("layer", l),
                                                                         ("why", "same_query")))]
        ps.append(Differentiate(r1, Sum(sp.Mul(G(st.out, J, S), v[J, T], evaluate=False), (J, 1, n)), "index",
                                ((T, m), (S, m)), (("wrt", "weights"), ("layer", l))))
        out.append(("att_p", ps))
        r1 = Sum(sp.Mul(G("pr", R, S), Partial(pr[R, S], sc[T, S]), evaluate=False), (R, 1, m))
        ss = [ChainRule(G("sc", T, S), r1, "index", ((T, m), (S, m)), (("via", "pr"), ("layer", l),
                                                                         ("why", "same_query")))]
        r2 = Sum(G("pr", R, S) * pr[R, S] * (kd(R, T) - pr[T, S]), (R, 1, m))
        ss.append(SoftmaxJacobian(r1, r2, "index", ((T, m), (S, m)), (("layer", l), ("dummy", R), ("to", T))))
        r3 = sp.Mul(pr[T, S], G("pr", T, S) - Sum(G("pr", R, S) * pr[R, S], (R, 1, m)), evaluate=False)
        ss.append(KroneckerCollapse(r2, r3, "index", ((T, m), (S, m)), (("dummy", R), ("to", T))))
        out.append(("att_s", ss))
        r1 = Sum(sp.Mul(G("sc", T, S), Partial(sc[T, S], q[I, S]), evaluate=False), (T, 1, m))
        qs = [ChainRule(G("q", I, S), r1, "index", ((I, dk), (S, m)), (("via", "sc"), ("layer", l),
                                                                          ("why", "every_key")))]
        qs.append(Differentiate(r1, sp.Mul(scale, Sum(G("sc", T, S) * kk[I, T], (T, 1, m)), evaluate=False), "index",
                                ((I, dk), (S, m)), (("wrt", "query"), ("layer", l))))
        out.append(("att_q", qs))
        r1 = Sum(sp.Mul(G("sc", T, S), Partial(sc[T, S], kk[I, T]), evaluate=False), (S, 1, m))
        ks = [ChainRule(G("kk", I, T), r1, "index", ((I, dk), (T, m)), (("via", "sc"), ("layer", l),
                                                                           ("why", "every_query")))]
        ks.append(Differentiate(r1, sp.Mul(scale, Sum(G("sc", T, S) * q[I, S], (S, 1, m)), evaluate=False), "index",
                                ((I, dk), (T, m)), (("wrt", "key"), ("layer", l))))
        out.append(("att_k", ks))
        return out

    def attend_matrix(self, st: Stage):
        l, m = st.layer, self.m
        GO, P_, V = self.grad_m(st.out, l), self.M("pr", l), self.M("v", l)
        scale = 1 / sp.sqrt(self.t.key_size(l))
        GP, GS = self.grad_m("pr", l), self.grad_m("sc", l)
        spread = MatMul(self.ones(m, 1), self.ones(1, m), HadamardProduct(P_, GP))
        return [("att_v", [MatrixLift(self.grad_m("v", l), MatMul(GO, Transpose(P_)), "matrix", (),
                                      (("pattern", "outer_column"), ("layer", l)))]),
                ("att_p", [MatrixLift(GP, MatMul(Transpose(V), GO), "matrix", (), (("pattern", "backward_column"),))]),
                ("att_s", [MatrixLift(GS, HadamardProduct(P_, MatAdd(GP, -spread)), "matrix", (),
                                      (("pattern", "softmax_columns"), ("layer", l)))]),
                ("att_q", [MatrixLift(self.grad_m("q", l), MatMul(scale, self.M("kk", l), GS), "matrix", (),
                                      (("pattern", "backward_column"),))]),
                ("att_k", [MatrixLift(self.grad_m("kk", l), MatMul(scale, self.M("q", l), Transpose(GS)), "matrix", (),
                                      (("pattern", "outer_column"),))])]

    # ------------------------------------------------------------- feature maps
    def map_index(self, dims: int, letters):
        """The index tuple of a map entry: (channel, row) or (channel, row, column)."""
        return tuple(letters[:dims])

    def map_sum(self, body, idx, shape):
        limits = [(i, 1, sp.Integer(n)) for i, n in zip(idx, shape)]
        return Sum(body, *reversed(limits))

    def position(self, l, out, offset):
        """The input row read by output row `out` at kernel offset `offset`: stride (out - 1) + offset - padding."""
        layer = self.spec.layers[l - 1]
        return layer.stride * (out - 1) + offset - layer.padding

    def conv_sum(self, l, c, outs, channel, offsets):
        """z_c,i(,j) = sum over input channels and kernel offsets of K a, + b_c."""
        layer, before = self.spec.layers[l - 1], self.spec.map_shape(l - 1)
        a, k = self.e("a", l - 1), self.e("K", l)
        reads = tuple(self.position(l, o, f) for o, f in zip(outs, offsets))
        body = sp.Mul(k[(c, channel) + offsets], a[(channel,) + reads], evaluate=False)
        limits = [(channel, 1, sp.Integer(before[0]))] + [(f, 1, sp.Integer(layer.kernel)) for f in offsets]
        total = Sum(body, *reversed(limits))
        return total + self.e("b", l)[c] if layer.bias else total

    def out_letters(self, dims):
        return (I, J)[:dims - 1]

    def forward_map(self, st: Stage) -> list[Step]:
        l = st.layer
        shape = self.spec.map_shape(l)
        dims = len(shape)
        outs = self.out_letters(dims)
        free = tuple(zip((C,) + outs, (sp.Integer(n) for n in shape)))
        out_e = self.e(st.out, l)
        fact = lambda what: (("what", what), ("layer", l), ("stage", st.kind))
        if st.kind == "conv":
            offsets = (P, Q)[:dims - 1]
            return [Definition(out_e[(C,) + outs], self.conv_sum(l, C, outs, D, offsets), "forward", free,
                               fact("conv"))]
        if st.kind == "act":
            x = self.e(st.inp, l)
            return [Definition(out_e[(C,) + outs], f(l)(x[(C,) + outs]), "forward", free, fact("act"))]
        layer = self.spec.layers[l - 1]          # pooling
        k = layer.kernel
        offsets = (P, Q)[:dims - 1]
        reads = tuple(k * (o - 1) + f for o, f in zip(outs, offsets))
        entry = self.e("a", l - 1)[(C,) + reads]
        limits = [(f, 1, sp.Integer(k)) for f in offsets]
        if layer.mode == "avg":
            body = sp.Mul(sp.Integer(1) / k ** len(offsets), Sum(entry, *reversed(limits)), evaluate=False)
        else:
            body = fn("windowmax")(Sum(entry, *reversed(limits)))
        return [Definition(out_e[(C,) + outs], body, "forward", free, fact("pool_" + layer.mode))]

    def map_act(self, st: Stage):
        """delta_ci(j) = dL/da_ci(j) f'(z_ci(j)): each output entry holds one weighted input."""
        l = st.layer
        shape = self.spec.map_shape(l)
        idx = (C,) + self.out_letters(len(shape))
        free = tuple(zip(idx, (sp.Integer(n) for n in shape)))
        z, o = self.e("z", l), self.e(st.out, l)
        r1 = sp.Mul(self.grad_at(st.out, l, idx), Partial(o[idx], z[idx]), evaluate=False)
        steps = [DeltaDefinition(self.e("delta", l)[idx], Partial(self.t.loss, z[idx]), "index", free, (("layer", l),)),
                 ChainRule(Partial(self.t.loss, z[idx]), r1, "index", free, (("via", st.out), ("layer", l),
                                                                             ("why", "only_entry")))]
        steps.append(Differentiate(r1, sp.Mul(self.grad_at(st.out, l, idx), f_prime(l)(z[idx]), evaluate=False),
                                   "index", free, (("wrt", "activation"), ("layer", l))))
        return steps

    def grad_at(self, kind, l, idx):
        return Partial(self.t.loss, self.e(kind, l)[idx])

    def kernel_index(self, l):
        """dL/dK_cd(pq): every output position uses the kernel: a correlation of the input with delta."""
        shape, before = self.spec.map_shape(l), self.spec.map_shape(l - 1)
        dims = len(shape)
        outs, offsets, dummies = self.out_letters(dims), (P, Q)[:dims - 1], (F_, G_)[:dims - 1]
        k, z, a, d = self.e("K", l), self.e("z", l), self.e("a", l - 1), self.e("delta", l)
        kernel = self.spec.layers[l - 1].kernel
        free = ((C, sp.Integer(shape[0])), (D, sp.Integer(before[0]))) + tuple((f, sp.Integer(kernel)) for f in offsets)
        out_limits = [(o, 1, sp.Integer(n)) for o, n in zip(outs, shape[1:])]
        over = lambda body: Sum(body, *reversed(out_limits))
        param = k[(C, D) + offsets]
        r1 = over(sp.Mul(Partial(self.t.loss, z[(C,) + outs]), Partial(z[(C,) + outs], param), evaluate=False))
        s = [ChainRule(Partial(self.t.loss, param), r1, "index", free, (("via", "z"), ("layer", l),
                                                                         ("why", "every_position")))]
        side_free = free + tuple((o, sp.Integer(n)) for o, n in zip(outs, shape[1:]))
        t1 = Partial(self.conv_sum(l, C, outs, E, dummies), param)
        s.append(Substitute(Partial(z[(C,) + outs], param), t1, "index", side_free, (("what", "z"), ("layer", l))))
        reads = tuple(self.position(l, o, g) for o, g in zip(outs, dummies))
        brackets = sp.Mul(kd(E, D), *[kd(g, f) for g, f in zip(dummies, offsets)], evaluate=False)
        limits = [(E, 1, sp.Integer(before[0]))] + [(g, 1, sp.Integer(kernel)) for g in dummies]
        t2 = Sum(sp.Mul(brackets, a[(E,) + reads], evaluate=False), *reversed(limits))
        s.append(Differentiate(t1, t2, "index", side_free, (("wrt", "kernel"), ("layer", l))))
        t3 = a[(D,) + tuple(self.position(l, o, f) for o, f in zip(outs, offsets))]
        s.append(KroneckerCollapse(t2, t3, "index", side_free, (("dummy", E), ("to", D), ("why", "kernel"))))
        r2 = over(sp.Mul(Partial(self.t.loss, z[(C,) + outs]), t3, evaluate=False))
        s.append(Substitute(r1, r2, "index", free, (("what", "side"),)))
        s.append(DeltaDefinition(r2, over(sp.Mul(d[(C,) + outs], t3, evaluate=False)), "index", free,
                                 (("layer", l), ("why", "correlation"))))
        return s

    def conv_bias_index(self, l):
        shape = self.spec.map_shape(l)
        outs = self.out_letters(len(shape))
        z, d, b = self.e("z", l), self.e("delta", l), self.e("b", l)
        over = lambda body: Sum(body, *reversed([(o, 1, sp.Integer(n)) for o, n in zip(outs, shape[1:])]))
        free = ((C, sp.Integer(shape[0])),)
        r1 = over(sp.Mul(Partial(self.t.loss, z[(C,) + outs]), Partial(z[(C,) + outs], b[C]), evaluate=False))
        s = [ChainRule(Partial(self.t.loss, b[C]), r1, "index", free, (("via", "z"), ("layer", l),
                                                                       ("why", "every_position")))]
        r2 = over(Partial(self.t.loss, z[(C,) + outs]))
        s.append(Differentiate(r1, r2, "index", free, (("wrt", "b"), ("layer", l))))
        s.append(DeltaDefinition(r2, over(d[(C,) + outs]), "index", free, (("layer", l),)))
        return s

    def map_input_index(self, l):
        """dL/da^(l-1) for a map read by layer l: a conv (the kernel spread back over the positions that read
        the entry: for stride 1 a full convolution with the flipped kernel), a pool (the window's output),
        or a dense layer (a weight per map entry)."""
        layer, before = self.spec.layers[l - 1], self.spec.map_shape(l - 1)
        dims = len(before)
        ins = (R, U_)[:dims - 1]
        idx = (D,) + ins
        free = tuple(zip(idx, (sp.Integer(n) for n in before)))
        a = self.e("a", l - 1)
        if layer.kind == "dense":
            z, w, d = self.e("z", l), self.e("W", l), self.e("delta", l)
            n = self.n(l)
            r1 = Sum(sp.Mul(Partial(self.t.loss, z[P, S]), Partial(z[P, S], a[idx]), evaluate=False), (P, 1, n))
            s = [ChainRule(Partial(self.t.loss, a[idx]), r1, "index", free, (("via", "z"), ("dummy", P), ("layer", l),
                                                                              ("why", "consumers")))]
            s.append(Differentiate(Partial(z[P, S], a[idx]), w[(P,) + idx], "index", ((P, n),) + free,
                                   (("wrt", "a"), ("layer", l))))
            s.append(Substitute(r1, Sum(sp.Mul(w[(P,) + idx], d[P, S], evaluate=False), (P, 1, n)), "index", free,
                                (("what", "side_delta"),)))
            return s
        shape = self.spec.map_shape(l)
        outs = self.out_letters(dims)
        out_limits = [(o, 1, sp.Integer(n)) for o, n in zip(outs, shape[1:])]
        over = lambda body: Sum(body, *reversed(out_limits))
        if layer.kind == "pool":
            k = layer.kernel
            o = self.e("a", l)
            r1 = over(sp.Mul(Partial(self.t.loss, o[(D,) + outs]), Partial(o[(D,) + outs], a[idx]), evaluate=False))
            s = [ChainRule(Partial(self.t.loss, a[idx]), r1, "index", free, (("via", "a"), ("layer", l),
                                                                              ("why", "same_channel")))]
            windows = sp.Mul(*[kd(sp.ceiling(r / k), o_) for r, o_ in zip(ins, outs)], evaluate=False)
            if layer.mode == "max":
                local = sp.Mul(windows, fn("same")(a[idx], o[(D,) + outs]), evaluate=False)
            else:
                local = sp.Mul(sp.Integer(1) / k ** len(outs), windows, evaluate=False)
            r2 = over(sp.Mul(Partial(self.t.loss, o[(D,) + outs]), local, evaluate=False))
            s.append(Differentiate(r1, r2, "index", free, (("wrt", "pool_" + layer.mode), ("layer", l))))
            mine = (D,) + tuple(sp.ceiling(r / k) for r in ins)
            final = Partial(self.t.loss, o[mine])
            final = sp.Mul(final, fn("same")(a[idx], o[mine]), evaluate=False) if layer.mode == "max" else \
                sp.Mul(sp.Integer(1) / k ** len(outs), final, evaluate=False)
            s.append(KroneckerCollapse(r2, final, "index", free, (("why", "window"), ("layer", l))))
            return s
        # conv
        z, d = self.e("z", l), self.e("delta", l)
        dummies = (F_, G_)[:dims - 1]
        kernel = layer.kernel
        ch = sp.Integer(shape[0])
        r1 = Sum(over(sp.Mul(Partial(self.t.loss, z[(C,) + outs]), Partial(z[(C,) + outs], a[idx]), evaluate=False)),
                 (C, 1, ch))
        s = [ChainRule(Partial(self.t.loss, a[idx]), r1, "index", free, (("via", "z"), ("layer", l),
                                                                          ("why", "every_output")))]
        side_free = free + ((C, ch),) + tuple((o, sp.Integer(n)) for o, n in zip(outs, shape[1:]))
        t1 = Partial(self.conv_sum(l, C, outs, E, dummies), a[idx])
        s.append(Substitute(Partial(z[(C,) + outs], a[idx]), t1, "index", side_free, (("what", "z"), ("layer", l))))
        k_ = self.e("K", l)
        hits = [kd(self.position(l, o, g), r) for o, g, r in zip(outs, dummies, ins)]
        limits = [(E, 1, sp.Integer(before[0]))] + [(g, 1, sp.Integer(kernel)) for g in dummies]
        t2 = Sum(sp.Mul(k_[(C, E) + dummies], kd(E, D), *hits, evaluate=False), *reversed(limits))
        s.append(Differentiate(t1, t2, "index", side_free, (("wrt", "input_map"), ("layer", l))))
        g_limits = [(g, 1, sp.Integer(kernel)) for g in dummies]
        t3 = Sum(sp.Mul(k_[(C, D) + dummies], *hits, evaluate=False), *reversed(g_limits))
        s.append(KroneckerCollapse(t2, t3, "index", side_free, (("dummy", E), ("to", D))))
        r2 = Sum(over(sp.Mul(d[(C,) + outs], t3, evaluate=False)), (C, 1, ch))
        s.append(Substitute(r1, r2, "index", free, (("what", "side_delta"),)))
        if layer.stride == 1:        # each bracket picks the one output position that reads (r, u) at offset g
            reach = tuple(r - g + 1 + layer.padding for r, g in zip(ins, dummies))
            r3 = Sum(sp.Mul(k_[(C, D) + dummies], d[(C,) + reach], evaluate=False), *reversed(g_limits), (C, 1, ch))
            s.append(KroneckerCollapse(r2, r3, "index", free, (("why", "full_convolution"), ("layer", l))))
        return s

    def concrete_maps(self):
        """Every entry of a small conv layer's kernel and input gradient written out as sums of products."""
        out = []
        for l, layer in enumerate(self.spec.layers, start=1):
            if layer.kind != "conv":
                continue
            for topic in ("kernel", "input"):
                if topic == "input" and l == 1:
                    continue
                derivation = self.kernel_index(l) if topic == "kernel" else self.map_input_index(l)
                steps = expand_entries(derivation[0].lhs, derivation[-1], self.t)
                if steps is not None:
                    out.append(Derivation(topic, l, "concrete", tuple(steps), self.t))
        return out
