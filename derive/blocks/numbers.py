"""A numeric instance of a block network (float64, seeded) and an evaluator for step expressions.

The forward pass is computed node by node from the plan. An unevaluated derivative d num / d den
is a central difference: the entry of den is moved and every later node recomputed, so it is the
total derivative the derivation means, computed without any of derive's formulas.
"""
from __future__ import annotations

import itertools

import numpy as np
import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixExpr

from ..algebra import Diag, Elementwise, MatPartial, Partial
from ..rules import _softmax_np as _softmax     # column-wise, the max subtracted
from .plan import stages
from .spec import BlockSpec
from .symbols import Direct, Shift, Table

ATTENTION_NODES = ("q", "kk", "v", "sc", "pr")

EPS = 1e-5
KINK_MARGIN = 1e-3
CLASSIFICATION = ("cross_entropy", "nll", "softmax_cross_entropy", "hinge")


def activation_np(table: Table, l: int, derivative: bool = False):
    name = table.spec.layers[l - 1].activation
    if name == "softmax":
        return lambda z: _softmax(z)
    if name == "log_softmax":
        return lambda z: z - _logsumexp(z)
    row = table.activation(l)
    return row.numpy_derivative if derivative else row.numpy


def _logsumexp(z):
    top = z.max(axis=0, keepdims=True)
    return top + np.log(np.exp(z - top).sum(axis=0, keepdims=True))


def loss_np(spec: BlockSpec, out: np.ndarray, y: np.ndarray) -> float:
    loss, m = spec.loss, out.shape[1]
    c = 1.0 / m if loss.reduction == "mean" else 1.0
    kind = loss.kind
    scale = float(loss.scale) if loss.scale is not None else (0.5 if kind == "squared_error" else 1.0)
    if kind == "squared_error":
        per = ((out - y) ** 2).sum()
    elif kind == "huber":
        r, k = np.abs(out - y), float(loss.delta)
        per = np.where(r <= k, r ** 2 / 2, k * (r - k / 2)).sum()
    elif kind == "cross_entropy":
        per = -(y * np.log(out)).sum()
    elif kind == "binary_cross_entropy":
        per = -(y * np.log(out) + (1 - y) * np.log(1 - out)).sum()
    elif kind == "nll":
        per = -(y * out).sum()
    elif kind == "softmax_cross_entropy":
        per = (_logsumexp(out).sum() - (y * out).sum())
    elif kind == "hinge":
        correct = (y * out).sum(axis=0, keepdims=True)
        per = ((1 - y) * np.maximum(0.0, out - correct + float(loss.margin))).sum()
    else:
        raise ValueError(kind)
    return c * scale * per


class Instance:
    """Numbers for every leaf (inputs, targets, parameters, dropout masks) and every node."""

    def __init__(self, table: Table, seed: int = 0):
        self.table, self.spec = table, table.spec
        rng = np.random.default_rng(seed)
        drawn: dict = {}         # one number per symbol: a size named twice (n_1, or m for units and samples) is one
        draw = lambda s, low: int(s) if s.is_Integer else drawn.setdefault(s, int(rng.integers(low, 5)))
        self.m = draw(table.samples, 3)
        self.sizes = [draw(s, 2) for s in table.sizes]
        for k, layer in enumerate(self.spec.layers, start=1):     # a skip keeps its sizes equal
            source = self.spec.source_of(k)
            if source is not None:
                self.sizes[k] = self.sizes[source]
        sym = {s: v for s, v in zip(table.sizes, self.sizes) if not s.is_Integer}
        if not table.samples.is_Integer:
            sym[table.samples] = self.m
        self.keys = {}
        for l, layer in enumerate(self.spec.layers, start=1):
            if layer.kind == "attention":
                key = table.key_size(l)
                value = int(key) if key.is_Integer else sym.get(key, int(rng.integers(2, 5)))
                sym.setdefault(key, value)
                self.keys[l] = value
        self.symbols = {**sym, **{e: float(self.spec.layers[l - 1].eps) for l, e in table.eps.items()}}
        self.leaves: dict[tuple, np.ndarray] = {}
        self._gradients: dict[tuple, np.ndarray] = {}
        self._derivatives: dict[tuple, float] = {}
        self.pins: dict[tuple, float] = {}          # moved entries of a recurrent layer, kept as its steps rerun
        self.definitions: dict[tuple, object] = {}  # (kind, layer) -> its index-level definition (direct derivatives)
        for attempt in range(50):
            self._draw(rng)
            self.values = self.forward(self.leaves)
            if self.kink_distance(self.values) > KINK_MARGIN:
                break

    def _draw(self, rng):
        n, m, spec = self.sizes, self.m, self.spec
        leaves = {("a", 0): rng.normal(size=spec.input_map if spec.has_maps else (n[0], m))}
        for l, layer in enumerate(spec.layers, start=1):
            before = spec.map_shape(l - 1)
            if layer.kind == "pool":
                continue
            if layer.kind == "conv":
                shape = (layer.units, before[0], *(layer.kernel for _ in before[1:]))
                fan_in = before[0] * layer.kernel ** (len(before) - 1)
                leaves[("K", l)] = rng.normal(size=shape) * (1.5 / np.sqrt(fan_in))
                if layer.bias:     # mostly positive before a ReLU: windows of zeros would tie in a max pool
                    low = 0.3 if layer.activation in ("relu", "leaky_relu") else -0.4
                    leaves[("b", l)] = rng.uniform(low, low + 0.8, size=(layer.units, 1))
                continue
            if before is not None:       # a dense layer reading a feature map: a weight per map entry
                leaves[("W", l)] = rng.normal(size=(n[l], *before)) * (1.2 / np.sqrt(n[l - 1]))
                if layer.bias:
                    leaves[("b", l)] = rng.normal(size=(n[l], 1)) * 0.4
                continue
            if layer.kind == "attention":
                dk = self.keys[l]
                for name, rows in (("WQ", dk), ("WK", dk), ("WV", n[l])):
                    leaves[(name, l)] = rng.normal(size=(rows, n[l - 1])) * (1.0 / np.sqrt(n[l - 1]))
                continue
            if layer.kind == "rnn":
                leaves[("U", l)] = rng.normal(size=(n[l], n[l])) * (0.8 / np.sqrt(n[l]))
            leaves[("W", l)] = rng.normal(size=(n[l], n[l - 1])) * (1.2 / np.sqrt(n[l - 1]))
            if layer.bias:
                leaves[("b", l)] = rng.normal(size=(n[l], 1)) * 0.4
            if layer.norm:
                leaves[("gamma", l)] = rng.uniform(0.5, 1.5, size=(n[l], 1))
                leaves[("beta", l)] = rng.normal(size=(n[l], 1)) * 0.3
            if layer.dropout is not None:
                keep = rng.random(size=(n[l], m)) >= float(layer.dropout)
                keep.flat[0] = True
                leaves[("r", l)] = keep.astype(float)
        kind = spec.loss.kind
        if kind in CLASSIFICATION:
            y = np.zeros((n[-1], m))
            y[rng.integers(0, n[-1], size=m), np.arange(m)] = 1.0
        elif kind == "binary_cross_entropy":
            y = rng.uniform(0.1, 0.9, size=(n[-1], m))
        else:
            y = rng.normal(size=(n[-1], m))
        leaves[("y", None)] = y
        self.leaves = leaves

    # ------------------------------------------------------------------ forward
    def order(self) -> list[tuple]:
        out = []
        for l in range(1, self.spec.depth + 1):
            for stage in stages(self.spec, l):
                if stage.kind == "norm":
                    out += [("mu", l), ("var", l), ("zhat", l)]
                if stage.kind == "attend":
                    out += [(k, l) for k in ATTENTION_NODES]
                out.append((stage.out, l))
        return out + [("L", None)]

    def forward(self, leaves: dict, start: int = 0, values: dict | None = None) -> dict:
        """Every node from position `start` of the order on, the earlier ones taken from `values`."""
        vals = dict(values or {})
        vals.update(leaves)
        order = self.order()
        plan = {(s.out, l): s for l in range(1, self.spec.depth + 1) for s in stages(self.spec, l)}
        for key in order[start:]:
            if key in leaves and key[0] != "a":
                continue
            vals[key] = self._node(key, plan.get(key), vals)
        return vals

    def _node(self, key, stage, v):
        kind, l = key
        spec = self.spec
        if kind == "L":
            return np.asarray(loss_np(spec, v[("a", spec.depth)], v[("y", None)]))
        layer = spec.layers[l - 1] if l else None
        axis = 1 if layer is not None and layer.norm == "batch" else 0
        if kind == "mu":
            return v[("z", l)].mean(axis=axis, keepdims=True)
        if kind == "var":
            return ((v[("z", l)] - v[("mu", l)]) ** 2).mean(axis=axis, keepdims=True)
        if kind == "zhat":
            return (v[("z", l)] - v[("mu", l)]) / np.sqrt(v[("var", l)] + float(layer.eps))
        if kind in ("q", "kk", "v"):
            return v[({"q": "WQ", "kk": "WK", "v": "WV"}[kind], l)] @ v[("a", l - 1)]
        if kind == "sc":
            return v[("kk", l)].T @ v[("q", l)] / np.sqrt(self.keys[l])
        if kind == "pr":
            return _softmax(v[("sc", l)])
        x = v[(stage.inp, l if stage.inp != "a" else l - 1)]
        if stage.kind == "conv":
            return conv_np(x, v[("K", l)], v[("b", l)][:, 0] if layer.bias else None, layer.stride, layer.padding)
        if stage.kind == "pool":
            return pool_np(x, layer.kernel, layer.mode)
        if stage.kind == "linear" and spec.map_shape(l - 1) is not None:        # a weight per map entry
            z = np.tensordot(v[("W", l)], x, axes=x.ndim)[:, None]
            return z + v[("b", l)] if layer.bias else z
        if stage.kind == "recur":
            return self._recur(l, x, v)
        if stage.kind == "attend":
            return v[("v", l)] @ v[("pr", l)]
        if stage.kind == "act" and layer.kind == "rnn":
            return v[("_state", l)]
        if stage.kind == "linear":
            z = v[("W", l)] @ x
            return z + v[("b", l)] if layer.bias else z
        if stage.kind == "norm":
            return v[("gamma", l)] * v[("zhat", l)] + v[("beta", l)]
        if stage.kind == "act":
            return activation_np(self.table, l)(x)
        if stage.kind == "dropout":
            return v[("r", l)] * x / (1.0 - float(layer.dropout))
        if stage.kind == "skip":
            return x + v[("a", spec.source_of(l))]
        raise ValueError(stage.kind)

    def _recur(self, l, x, v):
        """z_t = W x_t + U a_(t-1) + b, a_t = f(z_t), step by step (a_0 = 0); pinned entries stay moved."""
        layer = self.spec.layers[l - 1]
        W, U = v[("W", l)], v[("U", l)]
        f = activation_np(self.table, l)
        z, a = np.zeros((W.shape[0], x.shape[1])), np.zeros((W.shape[0], x.shape[1]))
        state = np.zeros((W.shape[0], 1))
        for t in range(x.shape[1]):
            z[:, t:t + 1] = W @ x[:, t:t + 1] + U @ state + (v[("b", l)] if layer.bias else 0)
            for (key, entry), value in self.pins.items():
                if key == ("z", l) and entry[1] == t:
                    z[entry] = value
            a[:, t:t + 1] = f(z[:, t:t + 1])
            for (key, entry), value in self.pins.items():
                if key == ("a", l) and entry[1] == t:
                    a[entry] = value
            state = a[:, t:t + 1]
        v[("_state", l)] = a
        return z

    def kink_distance(self, values: dict) -> float:
        spec, worst = self.spec, np.inf
        for l, layer in enumerate(spec.layers, start=1):
            if layer.activation in ("relu", "leaky_relu") and layer.kind != "pool":
                pre = values[("u", l)] if layer.norm else values[("z", l)]
                worst = min(worst, float(np.abs(pre).min()))
            if layer.norm:           # a batch of nearly equal entries: normalization is curved on the scale of
                worst = min(worst, float(np.sqrt(values[("var", l)].min())) / 50)     # its deviation
            if layer.kind == "pool" and layer.mode == "max":      # no ties for the largest entry of a window
                x = values[("a", l - 1)]
                for position in itertools.product(*(range(n // layer.kernel) for n in x.shape[1:])):
                    window = x[(slice(None),) + tuple(slice(layer.kernel * i, layer.kernel * (i + 1)) for i in position)]
                    top = np.sort(window.reshape(x.shape[0], -1), axis=1)
                    if top.shape[1] > 1:
                        worst = min(worst, float((top[:, -1] - top[:, -2]).min()))
        out, y = values[("a", spec.depth)], self.leaves[("y", None)]
        if spec.loss.kind == "huber":
            worst = min(worst, float(np.abs(np.abs(out - y) - float(spec.loss.delta)).min()))
        if spec.loss.kind == "hinge":
            margins = out - (y * out).sum(axis=0, keepdims=True) + float(spec.loss.margin)
            worst = min(worst, float(np.abs(margins[y == 0]).min()))
        return worst

    # --------------------------------------------------------------- derivatives
    def moved(self, den: tuple, den_entry: tuple, step: float) -> dict:
        """Every value after one entry of a node or leaf is moved by `step` and the later nodes recomputed."""
        order = self.order()
        start = order.index(den) + 1 if den in order else self.first_reader(den)
        if den[0] in ("z", "a") and den[1] and self.spec.layers[den[1] - 1].kind == "rnn":
            # a step of a recurrent layer: rerun its steps with the entry pinned, so later steps see it
            self.pins = {(den, den_entry): float(self.values[den][den_entry]) + step}
            try:
                return self.forward(self.leaves, order.index(("z", den[1])), dict(self.values))
            finally:
                self.pins = {}
        moved = dict(self.values)
        moved.update({k: v for k, v in self.leaves.items() if k not in moved})
        moved[den] = moved[den].copy()
        moved[den][den_entry] += step
        leaves = {k: (moved[k] if k == den else v) for k, v in self.leaves.items()}
        return self.forward(leaves, start, moved)

    def first_reader(self, leaf: tuple) -> int:
        """The first node a moved leaf can change: a parameter or mask of layer l is read from layer l on."""
        if leaf[0] in ("a", "y") or leaf[1] is None:
            return 0
        order = self.order()
        return next(i for i, key in enumerate(order) if key[1] == leaf[1])

    def derivative(self, num: tuple, num_entry: tuple, den: tuple, den_entry: tuple) -> float:
        """d num[num_entry] / d den[den_entry] by a central difference through the forward pass (kept: the
        same entry's derivative appears in many steps and sums)."""
        key = (num, num_entry, den, den_entry)
        if key not in self._derivatives:
            step = self.step(den, den_entry)
            moved = [self.moved(den, den_entry, sign * step) for sign in (1.0, -1.0)]
            out = [float(np.asarray(values[num])[num_entry]) for values in moved]
            self._derivatives[key] = (out[0] - out[1]) / (2 * step)
        return self._derivatives[key]

    def step(self, den: tuple, den_entry: tuple) -> float:
        """EPS, or a thousandth of an entry smaller than 0.01: the log of a small probability (cross-entropy)
        is curved on its own scale, and a central difference must stay well inside it."""
        if den != ("a", self.spec.depth) or self.spec.loss.kind not in ("cross_entropy", "binary_cross_entropy"):
            return EPS          # elsewhere a tiny step only adds rounding (a z near 0 is no probability)
        values = self.values.get(den, self.leaves.get(den))
        value = abs(float(values[den_entry])) if values is not None else 1.0
        return EPS if value == 0 else max(min(EPS, value / 1000), 1e-12)

    def gradient(self, den: tuple) -> np.ndarray:
        """dL / d den, every entry (kept: delta^l is read many times)."""
        if den in self._gradients:
            return self._gradients[den]
        value = self.values[den] if den in self.values else self.leaves[den]
        grad = np.zeros_like(value)
        for entry in itertools.product(*(range(s) for s in value.shape)):
            grad[entry] = self.derivative(("L", None), (), den, entry)
        self._gradients[den] = grad
        return grad


def conv_np(x: np.ndarray, kernel: np.ndarray, bias, stride: int, padding: int) -> np.ndarray:
    """z[c, i, j] = sum_d,p,q K[c, d, p, q] x[d, s i + p - P, s j + q - P] + b[c] (a cross-correlation, 0-based,
    entries outside the map 0); 1-D or 2-D."""
    spatial = x.ndim - 1
    padded = np.pad(x, [(0, 0)] + [(padding, padding)] * spatial)
    k = kernel.shape[2]
    outs = [(n + 2 * padding - k) // stride + 1 for n in x.shape[1:]]
    z = np.zeros((kernel.shape[0], *outs))
    for position in itertools.product(*(range(o) for o in outs)):
        window = padded[(slice(None),) + tuple(slice(stride * i, stride * i + k) for i in position)]
        z[(slice(None),) + position] = np.tensordot(kernel, window, axes=1 + spatial)
    if bias is not None:
        z += bias.reshape((-1,) + (1,) * spatial)
    return z


def pool_np(x: np.ndarray, size: int, mode: str) -> np.ndarray:
    outs = [n // size for n in x.shape[1:]]
    out = np.zeros((x.shape[0], *outs))
    for position in itertools.product(*(range(o) for o in outs)):
        window = x[(slice(None),) + tuple(slice(size * i, size * i + size) for i in position)]
        flat = window.reshape(x.shape[0], -1)
        out[(slice(None),) + position] = flat.max(axis=1) if mode == "max" else flat.mean(axis=1)
    return out


class EvaluationError(Exception):
    pass


class Evaluator:
    """The value of a step expression at an instance, with integer values for the free indices.
    `known` gives values for matrix derivatives dL/dX (the cross-check feeds the engine's own results
    back; the step checks leave it empty, so every derivative is a central difference)."""

    def __init__(self, inst: Instance, bindings: dict | None = None, known: dict | None = None,
                 values: dict | None = None):
        self.inst, self.bindings, self.known = inst, dict(bindings or {}), known if known is not None else {}
        self.table = inst.table
        self.values = values if values is not None else inst.values     # a moved forward pass, inside a derivative

    def __call__(self, e):
        return self._eval(e)

    def _key(self, name: str) -> tuple:
        atom = self.table.atom(name)
        return (atom.kind, atom.layer)

    def _value(self, key):
        if key[0] == "y":
            return self.inst.leaves[key]
        if key in self.values:
            return self.values[key]
        if key in self.inst.leaves:
            return self.inst.leaves[key]
        if key[0] == "delta":          # delta^l is dL/dz^l: the engine's value in the cross-check, else numbers
            return self.known.get(("z", key[1])) if ("z", key[1]) in self.known else self.inst.gradient(("z", key[1]))
        return self.inst.values[key]

    def _index(self, i) -> int:
        value = self._eval(i)
        if abs(value - round(value)) > 1e-9:
            raise EvaluationError(f"index {i} is not an integer")
        return int(round(value))

    def _shaped(self, key):
        """An array of the quantity's shape (delta has z's; its values are not computed for this)."""
        return self.inst.values[("z", key[1])] if key[0] == "delta" else self._value(key)

    def _entry(self, e: sp.Indexed) -> tuple[tuple, tuple]:
        key = self._key(e.base.label.name)
        value = self._shaped(key)
        idx = [self._index(i) - 1 for i in e.indices]
        if value.ndim == 2 and len(idx) == 1:        # a vector: per unit (n x 1) or per sample (1 x m)
            idx = [idx[0], 0] if value.shape[1] == 1 else [0, idx[0]]
        return key, tuple(idx)

    def _outside(self, e: sp.Indexed) -> bool:
        """An entry before the first step or after the last (a_0 = 0, delta_(T+1) = 0): it is 0."""
        key, idx = self._entry(e)
        shape = self._shaped(key).shape
        return any(not 0 <= i < n for i, n in zip(idx, shape))

    def _eval(self, e):
        if isinstance(e, MatrixExpr):
            return self._matrix(e)
        if e.is_Number:
            return float(e)
        if isinstance(e, sp.Symbol):
            if e in self.bindings:
                return float(self.bindings[e])
            if e in self.inst.symbols:
                return float(self.inst.symbols[e])
            if e.name == "L":
                return float(self.values[("L", None)])
            raise EvaluationError(f"no value for {e}")
        if isinstance(e, sp.Indexed):
            atom = self.table.atom(e.base.label.name)
            if atom.kind == "delta" and ("z", atom.layer) not in self.known:
                # an error term by its definition dL/dz, entry by entry (a step reads a few entries)
                key, idx = self._entry(e)
                shape = self.inst.values[("z", atom.layer)].shape
                if any(not 0 <= i < n for i, n in zip(idx, shape)):
                    return 0.0
                return self.inst.derivative(("L", None), (), ("z", atom.layer), idx)
            if self._outside(e):
                return 0.0
            key, idx = self._entry(e)
            return float(self._value(key)[idx])
        if isinstance(e, sp.Add):
            return sum(self._eval(a) for a in e.args)
        if isinstance(e, sp.Mul):
            out = 1.0
            for a in e.args:
                out *= self._eval(a)
            return out
        if isinstance(e, sp.Pow):
            return self._eval(e.base) ** self._eval(e.exp)
        if isinstance(e, sp.Sum):
            return self._sum(e)
        if isinstance(e, sp.ceiling):
            return float(np.ceil(self._eval(e.args[0]) - 1e-12))
        if isinstance(e, sp.KroneckerDelta):
            return 1.0 if self._index(e.args[0]) == self._index(e.args[1]) else 0.0
        if isinstance(e, Partial):
            return self._partial(e)
        if isinstance(e, sp.Piecewise):
            for value, cond in e.args:
                if cond == sp.true or bool(self._condition(cond)):
                    return self._eval(value)
            raise EvaluationError("no piece applies")
        if isinstance(e, (sp.Max, sp.Min)):
            values = [self._eval(a) for a in e.args]
            return max(values) if isinstance(e, sp.Max) else min(values)
        if isinstance(e, sp.Abs):
            return abs(self._eval(e.args[0]))
        if isinstance(e, sp.Function) and type(e).__name__ == "windowmax":      # the largest term of the sum
            return self._sum(e.args[0], take=max)
        if isinstance(e, sp.Function):
            return float(self._function(type(e).__name__, np.asarray([[self._eval(a) for a in e.args]]))[0, 0])
        raise EvaluationError(f"cannot evaluate {type(e).__name__}")

    def _condition(self, cond):
        if isinstance(cond, sp.core.relational.Relational):
            lhs, rhs = self._eval(cond.lhs), self._eval(cond.rhs)
            return {"<=": lhs <= rhs, "<": lhs < rhs, ">=": lhs >= rhs, ">": lhs > rhs}[cond.rel_op]
        raise EvaluationError(f"cannot evaluate the condition {cond}")

    def _function(self, name: str, x: np.ndarray) -> np.ndarray:
        if name.startswith("act_") or name.startswith("actprime_"):
            kind, _, l = name.partition("_")
            return activation_np(self.table, int(l), derivative=kind == "actprime")(x)
        table = {"exp": np.exp, "log": np.log, "step": lambda v: (v > 0).astype(float),
                 "reciprocal": lambda v: 1.0 / v}
        if name == "clip":             # r limited to [-kappa, kappa], kappa the Huber threshold
            kappa = float(self.inst.spec.loss.delta)
            return np.clip(x, -kappa, kappa)
        if name == "softmax":
            return _softmax(x)
        if name == "log_softmax":
            return x - _logsumexp(x)
        if name == "sign":
            return np.sign(x)
        if name == "same":          # [x = y]: the largest entry of a pooling window is the window's output
            return (np.abs(x[:, :1] - x[:, 1:2]) <= 1e-12 * np.maximum(1.0, np.abs(x[:, :1]))).astype(float)
        if name not in table:
            raise EvaluationError(f"unknown function {name}")
        return table[name](x)

    def _sum(self, e: sp.Sum, take=None):
        (var, low, high), rest = e.limits[0], e.limits[1:]
        body = sp.Sum(e.function, *rest) if rest else e.function
        values = []
        for value in range(self._index(low), self._index(high) + 1):
            inner = Evaluator(self.inst, {**self.bindings, var: value}, self.known, self.values)
            values.append(inner._sum(body, take) if take is not None and isinstance(body, sp.Sum) else inner._eval(body))
        return take(values) if take is not None else sum(values)

    def _partial(self, e: Partial) -> float:
        den = e.den
        if not isinstance(den, sp.Indexed):
            raise EvaluationError("a derivative by something other than an entry")
        if isinstance(e.num, sp.Indexed) and self._outside(e.num) or self._outside(den):
            return 0.0          # a step that does not exist (after the last): nothing depends on it
        den_key, den_idx = self._entry(den)
        if isinstance(e, Direct):
            return self._direct(e, den_key, den_idx)
        if isinstance(e.num, sp.Symbol) and e.num.name == "L":
            if den_key in self.known:          # the cross-check: what the derived formulas gave before
                return float(self.known[den_key][den_idx])
            num_key, num_idx = ("L", None), ()
        elif isinstance(e.num, sp.Indexed):
            num_key, num_idx = self._entry(e.num)
        else:      # a formula: its value after the entry is moved and the forward pass recomputed
            out = [Evaluator(self.inst, self.bindings, self.known, self.inst.moved(den_key, den_idx, sign * EPS))
                   ._eval(e.num) for sign in (1.0, -1.0)]
            return (out[0] - out[1]) / (2 * EPS)
        return self.inst.derivative(num_key, num_idx, den_key, den_idx)

    def _direct(self, e, den_key, den_idx) -> float:
        """A derivative with every other quantity held fixed: the formula (or the entry's definition) at
        the entry moved, nothing recomputed."""
        num, bindings = e.num, dict(self.bindings)
        if isinstance(num, sp.Indexed):
            key, idx = self._entry(num)
            definition = self.inst.definitions[key]
            for (symbol, _), value in zip(definition.free, idx):
                bindings[symbol] = value + 1
            num = definition.rhs
        out = []
        for sign in (1.0, -1.0):
            values = dict(self.values)
            base = values[den_key] if den_key in values else self.inst.leaves[den_key]
            values[den_key] = base.copy()
            values[den_key][den_idx] += sign * EPS
            out.append(Evaluator(self.inst, bindings, self.known, values)._eval(num))
        return (out[0] - out[1]) / (2 * EPS)

    # ------------------------------------------------------------------ matrices
    def _shape(self, e) -> tuple[int, int]:
        return tuple(int(round(self._eval(d))) for d in e.shape)

    def _matrix(self, e) -> np.ndarray:
        if isinstance(e, sp.MatrixSymbol):
            key = self._key(e.name)
            return np.asarray(self._value(key), dtype=float)
        if isinstance(e, MatPartial):
            key = self._key(e.den.name)
            if key in self.known:
                return self.known[key]
            return self.inst.gradient(key)
        if isinstance(e, sp.MatMul):
            out = None
            scalar = 1.0
            for a in e.args:
                if isinstance(a, MatrixExpr):
                    v = self._matrix(a)
                    out = v if out is None else out @ v
                else:
                    scalar *= self._eval(a)
            return scalar * out
        if isinstance(e, sp.MatAdd):
            return sum(self._matrix(a) for a in e.args)
        if isinstance(e, sp.Transpose):
            return self._matrix(e.arg).T
        if isinstance(e, sp.HadamardProduct):
            out = self._matrix(e.args[0])
            for a in e.args[1:]:
                out = out * self._matrix(a)
            return out
        if isinstance(e, sp.HadamardPower):
            return self._matrix(e.base) ** self._eval(e.exp)
        if isinstance(e, (sp.OneMatrix, sp.Identity)) and e.shape == (1, 1):
            return np.ones((1, 1))
        if isinstance(e, sp.OneMatrix):
            return np.ones(self._shape(e))
        if isinstance(e, sp.Identity):
            return np.eye(self._shape(e)[0])
        if isinstance(e, sp.ZeroMatrix):
            return np.zeros(self._shape(e))
        if isinstance(e, Elementwise):
            return self._function(e.function, self._matrix(e.arg))
        if isinstance(e, Diag):
            return np.diag(self._matrix(e.vector).ravel())
        if isinstance(e, Shift):
            return np.eye(self._shape(e)[0], k=-1)
        raise EvaluationError(f"cannot evaluate the matrix expression {type(e).__name__}")
