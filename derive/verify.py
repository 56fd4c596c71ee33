"""Judging a claimed gradient formula, or a multi-line derivation, against the engine.

Claims are read by our own grammar (claim.py), their symbols resolved through the spec's notation
(W^{2}, \\Theta^{(2)}, \\delta^{(3)}, x, y, \\hat y), and compared numerically with the true value
at several random instances (several concrete sizes when sizes are symbolic). When a claim is
wrong, single changes of the claim are tried (sign, constant, transpose, order, \\odot against a
matrix product, layer index, a missing sigma'); the one that makes it right is the diagnosis.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np

from .claim import Term, base_name, parse_claim, render
from .errors import DeriveError
from .evaluate import PARTIAL_EPS, Evaluator
from .notation import profile
from .oracle import make_instance

TRIALS = 3
LATEX_NAMES = {"hat_y": r"\hat{y}", "y_out": r"y_{\mathrm{out}}", "bold_delta": r"\boldsymbol{\delta}",
               "ones": r"\mathbf{1}"}     # claim names that are not plain letters -> how to write them
MAX_SEEDS = 40             # instances tried in search of ones where the truth is not zero
RTOL, ATOL = 1e-6, 1e-9
MAX_TERMS = 2_000          # nodes in a claim: beyond this it is refused
MAX_DIAGNOSE_TERMS = 300   # the mutation search tries O(nodes) changes, each O(nodes)
MAX_PAIR_TERMS = 60        # two slips at once are looked for in claims up to this size,
MAX_PAIR_TRIALS = 5000     # with at most this many pairs tried
MAX_PAIR_SECONDS = 2.0     # and for at most this long
MAX_SUM = 10_000           # the largest range a sum may run over
MAX_SUM_WORK = 200_000     # the terms nested sums may add up to, together
SIZE_GUESS = 10            # a sum up to a size (n_1, m) runs over a small concrete size when judged
MAX_DERIVATION_LINES = 400


PER_SAMPLE_KINDS = ("z", "a", "delta", "input", "y", "output")


class ShapeError(Exception):
    pass


@dataclass
class Verdict:
    verdict: str                          # correct | incorrect | shape_mismatch | unparseable
    first_wrong_line: int | None = None
    counterexample: dict | None = None
    diagnosis: str = ""
    lines: list = field(default_factory=list)
    fix: Term | None = None                            # the changed claim that is right, when one was found
    sides: dict | None = None                          # a derivation's wrong equality: both sides
    terms: list = field(default_factory=list)          # (file line, parsed term) of a derivation
    fix_of: tuple | None = None                        # (what the fix equals, the anchor of its index letters)

    def to_json(self) -> dict:
        out = {"verdict": self.verdict, "first_wrong_line": self.first_wrong_line,
               "counterexample": self.counterexample, "diagnosis": self.diagnosis}
        if self.lines:
            out["lines"] = self.lines
        if self.sides:
            out["sides"] = self.sides
        return out

    @property
    def exit_code(self) -> int:
        return {"correct": 0, "incorrect": 1, "shape_mismatch": 1}.get(self.verdict, 2)


# ------------------------------------------------------------------------ meaning of symbols

class Meaning:
    """Symbols of a claim -> the engine's quantities, in the spec's notation."""

    def __init__(self, result):
        self.result, self.q = result, result.quantities
        spec = result.spec
        self.n = profile(spec.notation, spec.symbols)
        table = {}
        for kind, names in (("W", (self.n.weights, self.n.weight, "W", "w")), ("b", (self.n.bias, "b")),
                            ("z", (self.n.pre,)), ("a", (self.n.act,)), ("delta", (self.n.delta, "delta")),
                            ("input", (self.n.input,)), ("y", (self.n.target,)), ("L", (self.n.loss, "L")),
                            ("acc", (self.n.accumulator,)),     # before batch_delta: Ng's Delta is the accumulator
                            ("batch_delta", (self.n.batch_delta, "Delta")), ("batch_a", (self.n.batch_act,)),
                            ("batch_input", (self.n.batch_input,)), ("batch_y", (self.n.batch_target,)),
                            ("batch_z", (self.n.batch_pre,))):
            for name in names:
                table.setdefault(base_name(name), kind)
        if self.n.bias_folded:
            table.pop(base_name(self.n.bias), None)
            for name in (self.n.weights, self.n.weight):     # Ng: Theta, and tilde Theta without column 0
                table[base_name(name)] = "W"
        table["hat_y"] = "output"
        if self.n.output:
            table["y_out"] = "output"
        self.l2 = spec.loss.l2 if isinstance(spec.loss.l2, str) else None
        self.table = table

    def is_l2(self, name: str) -> bool:
        """The spec's name for a symbolic L2 strength, or \\lambda, which the documents print for it."""
        return self.l2 is not None and name in (self.l2, "lambda")

    def normalize(self, t: Term) -> Term:
        """Resolve what the notation leaves to the reader: Ng's Theta_{i0} is the bias b_i, and in a
        one-layer network where the input and the output share a name (Rashid's o), the index letter
        tells the layer (o_j before the weights, o_k after them: w_jk runs from j to k)."""
        shared = (base_name(self.n.input) == base_name(self.n.act) and self.q.depth == 1
                  and self.n.layer_labels == "if_deep")
        roles: dict[str, int] = {}
        if shared:
            for _, s in _subterms(t):
                if s.op == "symbol" and self.table.get(s.name) == "W" and len(s.indices) == 2:
                    first, second = s.indices
                    before, after = (second, first) if self.q.index_order == "to_from" else (first, second)
                    for letter, layer in ((before, 0), (after, 1)):
                        if isinstance(letter, str):
                            roles.setdefault(letter, layer)
                if s.op == "sum" and s.indices and s.name not in roles:
                    limit = s.indices[0].replace("{", "").replace("}", "").replace("_", "")
                    hits = [l for l, size in enumerate(self.q.sizes) if str(size).replace("_", "") == limit]
                    if len(hits) == 1:
                        roles[s.name] = hits[0]
            roles.setdefault(self.n.index_name("k"), 0)
            roles.setdefault(self.n.index_name("j"), 1)
            pairs = [s.indices for _, s in _subterms(t) if s.op == "iverson"]
            for _ in pairs:                     # [i = j]: i runs where j does
                for first, second in pairs:
                    if first in roles and second not in roles:
                        roles[second] = roles[first]
                    elif second in roles and first not in roles:
                        roles[first] = roles[second]
        act, batch_act = base_name(self.n.act), base_name(self.n.batch_act)
        shared_batch = shared and base_name(self.n.batch_input) == batch_act
        unit = 1 if self.q.layout == "row" else 0          # which index of a batch entry names the unit

        def walk(s: Term) -> Term:
            if s.op == "symbol":
                if self.n.bias_folded and self.table.get(s.name) == "W" and len(s.indices) == 2 and s.indices[1] == 0:
                    return replace(s, name=s.name + "_col0", indices=s.indices[:1])
                if shared and s.name == act and s.label is None and len(s.indices) == 1 and s.indices[0] in roles:
                    return replace(s, label=roles[s.indices[0]])
                if shared_batch and s.name == batch_act and s.label is None and len(s.indices) == 2 \
                        and s.indices[unit] in roles:                  # Rashid's O_{js}: the batch of o_j
                    return replace(s, label=roles[s.indices[unit]])
                return s
            return replace(s, args=tuple(walk(a) for a in s.args)) if s.args else s
        return walk(t)

    def size_names(self) -> dict:
        """n_2, n2 -> the size symbol (or number) of the network, m -> the sample count."""
        if not hasattr(self, "_size_names"):
            self._size_names = {str(s).replace("_", ""): s for s in self.q.sizes + (self.q.samples,)}
        return self._size_names

    def is_loss(self, t: Term, total: bool = False) -> bool:
        """L (or L_data, L^{(s)}) as a symbol of its own; total: only the loss the oracle differentiates
        backwards (L or L_data of the instance, not one sample's L^{(s)} within a batch)."""
        if t.op != "symbol" or self.table.get(t.name.removesuffix("_data")) != "L":
            return False
        return not (total and t.sample is not None)

    def symbols(self) -> str:
        return ", ".join(sorted(LATEX_NAMES.get(k, k) for k in self.table if k not in ("hat_y",)))

    def layer(self, kind: str, label: int | None) -> int:
        depth = self.q.depth
        if label is None:
            if depth == 1 and kind in ("W", "b", "z", "a", "delta"):
                return 1
            raise DeriveError(f"claim: {kind} needs a layer label, e.g. {kind}^{{2}}")
        layer = label - (self.n.node_shift if kind in ("z", "a", "delta") else 0)
        low = 0 if kind == "a" else 1
        if not low <= layer <= depth:
            raise DeriveError(f"claim: layer label {label} is out of range for this network "
                              f"({self.n.label(low, kind in ('z', 'a', 'delta'))} to "
                              f"{self.n.label(depth, kind in ('z', 'a', 'delta'))})")
        return layer

    def matrix(self, t: Term):
        """A symbol -> (MatrixSymbol, is_batch)."""
        kind = self.table.get(t.name)
        if self.n.bias_folded and kind is None and t.name.endswith("_col0") and \
                self.table.get(t.name.removesuffix("_col0")) == "W":        # Ng's bias column Theta_{.0}
            return self.q.matrix("b", self.layer("b", t.label)), False
        if kind is None:
            if t.name == "m" or self.is_l2(t.name):
                return None, True
            raise DeriveError(f"claim: unknown symbol {t.name!r}; in the {self.n.name} notation the symbols are "
                              f"{self.symbols()} (with layer labels), m, \\mathbf{{1}} and \\hat y")
        batch = kind.startswith("batch_")
        kind = kind.removeprefix("batch_")
        if kind == "input":
            return self.q.matrix("a", 0, batch), batch
        if kind == "output":
            return self.q.matrix("a", self.q.depth, batch), batch
        if kind == "y":
            return self.q.matrix("y", None, batch), batch
        if kind == "L":
            raise DeriveError("claim: the loss appears only as \\frac{\\partial L}{\\partial ...}")
        return self.q.matrix(kind, self.layer(kind, t.label), batch), batch

    def uses_batch(self, t: Term) -> bool:
        """A batch symbol (X, A, Delta, the accumulator, m, L^{(s)}); the ones vector is neither."""
        if t.op == "symbol":
            kind = self.table.get(t.name, "")
            return kind.startswith("batch_") or kind == "acc" or t.name == "m" or t.sample is not None
        return any(self.uses_batch(a) for a in t.args)

    def mixed_symbol(self, t: Term) -> Term | None:
        """A per-sample symbol (x, a, z, delta, y) in a term that also has batch symbols: per-sample
        symbols stay per-sample, so such a term has no reading (delta^2 (a^1)^T / m is not the batch's
        Delta^2 (A^1)^T / m). None when the term does not mix them."""
        if not self.uses_batch(t):
            return None
        return next((s for _, s in _subterms(t) if s.op == "symbol" and s.sample is None and
                     self.table.get(s.name) in PER_SAMPLE_KINDS), None)


# ---------------------------------------------------------------------------- evaluation

def _value(t: Term, meaning: Meaning, ev: Evaluator, samples: int, env: dict | None = None):
    q = meaning.q
    env = env or {}
    if t.op == "sum":
        var, total = t.name, 0.0
        for value in range(1, _upper(t, meaning, ev) + 1):
            total = total + _value(t.args[0], meaning, ev, samples, {**env, var: value})
        return total
    if t.op == "number":
        return t.value
    if t.op == "symbol":
        if t.name == "m":
            return float(samples)
        if t.name == "ones":          # sized by its neighbour: see _Ones
            return _Ones()
        if meaning.is_l2(t.name):
            import sympy as sp

            return float(ev.inst.constants[sp.Symbol(meaning.l2)])
        if meaning.is_loss(t):
            return _loss_value(t, ev, env)
        if t.sample is not None:
            return _sample_value(t, meaning, ev, env)
        sym, _ = meaning.matrix(t)
        return _entry(np.asarray(ev(sym), dtype=float), _bind(t, env), meaning, sym)
    if t.op == "indicator":
        value = _value(t.args[0], meaning, ev, samples, env)
        if isinstance(value, (_Ones, _Spread)):
            raise ShapeError(f"{render(t)}: a vector of ones in a bracket has no length")
        out = (np.asarray(value, dtype=float) > t.value).astype(float)
        return float(out) if np.ndim(out) == 0 else out
    if t.op == "iverson":
        first, second = (env.get(i, i) for i in t.indices)
        if isinstance(first, str) or isinstance(second, str):
            raise DeriveError(f"claim: index {first if isinstance(first, str) else second!r} of "
                              f"{render(t)} is neither summed over nor free")
        return 1.0 if first == second else 0.0
    if t.op == "partial" and not meaning.is_loss(t.args[0], total=True):
        return _local_partial(t, meaning, ev, samples, env)
    if t.op == "partial":
        from .algebra import MatPartial

        num, den = t.args
        data = num.name.endswith("_data")
        if meaning.table.get(num.name.removesuffix("_data")) != "L":
            raise DeriveError(f"claim: only derivatives of the loss are understood, not of {num.name!r}")
        sym, _ = meaning.matrix(den)        # by a, z or delta the data part's derivative is the loss's
        import sympy as sp

        loss = sp.Symbol("L_data") if data else q.loss
        return _entry(np.asarray(ev(MatPartial(loss, sym)), dtype=float), _bind(den, env), meaning, sym)
    if t.op == "elementary":
        arg = np.asarray(_value(t.args[0], meaning, ev, samples, env), dtype=float)
        with np.errstate(all="ignore"):
            out = np.exp(arg) if t.name == "exp" else np.log(arg)
        return float(out) if np.ndim(out) == 0 else out
    if t.op == "power":         # entry by entry, as (1 + e^{-z})^2 is meant
        return np.asarray(_value(t.args[0], meaning, ev, samples, env), dtype=float) ** t.value
    if t.op == "matrix":
        cells = [[_value(c, meaning, ev, samples, env) for c in r.args] for r in t.args]
        if any(np.ndim(c) for r in cells for c in r):
            raise ShapeError(f"{render(t)}: a bmatrix of matrices is not supported; write its entries")
        return np.array(cells, dtype=float)
    if t.op == "apply":
        arg = _value(t.args[0], meaning, ev, samples, env)
        row = _activation(t, meaning)
        fn = row.numpy_derivative if t.prime else row.numpy
        if np.ndim(arg) == 0:
            return float(fn(np.array([[float(arg)]]))[0, 0])
        x = np.asarray(arg, dtype=float)
        return fn(x.T).T if q.layout == "row" else fn(x)
    vals = [_value(a, meaning, ev, samples, env) for a in t.args]
    ones = [v for v in vals if isinstance(v, _Ones)]
    if ones and t.op in ("transpose", "neg", "mul"):
        if t.op == "transpose":
            return replace(vals[0], row=not vals[0].row)
        if t.op == "neg":
            return replace(vals[0], scale=-vals[0].scale)
        a, b = vals                   # c 1, 1^T A (sums the rows of A), A 1 (sums its columns)
        if len(ones) == 1 and np.ndim(a if ones[0] is b else b) == 0:
            one = ones[0]
            return replace(one, scale=one.scale * float(a if one is b else b))
        if isinstance(a, _Ones) and not isinstance(b, _Ones) and np.ndim(b) == 2:
            if not a.row and b.shape[0] == 1:
                return _Spread(a.scale * b)      # 1 b: the row b repeated, as many rows as its neighbour has
            if a.row:
                return a.scale * (np.ones((1, b.shape[0])) @ b)
        if isinstance(b, _Ones) and not isinstance(a, _Ones) and np.ndim(a) == 2:
            if b.row and a.shape[1] == 1:
                return _Spread(b.scale * a)      # b 1^T: the column b repeated
            if not b.row:
                return b.scale * (a @ np.ones((a.shape[1], 1)))
        side = a if isinstance(b, _Ones) else b
        if np.ndim(side) == 2 and not isinstance(side, _Ones):
            raise ShapeError(f"{render(t)}: a {'row' if (a if isinstance(a, _Ones) else b).row else 'column'} of ones "
                             f"does not multiply a {side.shape[0]}x{side.shape[1]} matrix on that side")
        raise ShapeError(f"{render(t)}: a vector of ones needs a matrix beside it to know its length")
    vals = [v.scale if isinstance(v, _Ones) else v for v in vals]       # 1 - a: entry by entry
    spread = [v for v in vals if isinstance(v, _Spread)]
    if spread:
        full = [v for v in vals if not isinstance(v, _Spread) and np.ndim(v) == 2]
        if t.op not in ("add", "sub", "hadamard", "divide") or not full:
            raise ShapeError(f"{render(t)}: a vector times \\mathbf{{1}} needs a matrix beside it to know its size")
        vals = [np.broadcast_to(v.vector, full[0].shape) if isinstance(v, _Spread) else v for v in vals]
    if t.op == "transpose":
        return np.asarray(vals[0]).T
    if t.op == "neg":
        return -vals[0]
    if t.op == "recip":             # 1/0 is inf here, and a value that is not finite is never judged equal
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.divide(1.0, np.asarray(vals[0], dtype=float))
        return float(out) if np.ndim(out) == 0 else out
    if t.op == "diag":
        v = np.asarray(vals[0], dtype=float)
        if np.ndim(v) != 2 or 1 not in v.shape:
            raise ShapeError(f"{render(t)}: diag takes a vector")
        return np.diag(v.ravel())
    a, b = vals
    if t.op in ("add", "sub"):
        _same_shape(a, b, "+" if t.op == "add" else "-", t)
        return a + b if t.op == "add" else a - b
    if t.op in ("hadamard", "divide"):
        _same_shape(a, b, "⊙" if t.op == "hadamard" else "⊘", t)
        with np.errstate(divide="ignore", invalid="ignore"):
            return a * b if t.op == "hadamard" else np.asarray(a, dtype=float) / b
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        return a * b
    if a.shape[1] != b.shape[0]:
        raise ShapeError(f"{render(t)}: a {a.shape[0]}x{a.shape[1]} matrix times a {b.shape[0]}x{b.shape[1]} one")
    return a @ b


def _loss_value(t: Term, ev: Evaluator, env: dict) -> float:
    """L (the instance's loss: one sample's in a single-sample view), L_data, or L^{(s)}."""
    if t.sample is not None:
        s = env.get(t.sample, t.sample)
        if isinstance(s, str):
            raise DeriveError(f"claim: sample index {s!r} of {render(t)} is neither summed over nor free")
        losses = np.asarray(ev.inst.value("L_s"), dtype=float).reshape(-1)
        if not 1 <= s <= losses.size:
            raise ShapeError(f"{render(t)}: sample {s} is out of range 1..{losses.size}")
        return float(losses[s - 1])
    return float(ev.inst.value("L_data" if t.name.endswith("_data") else "L"))


def _sample_value(t: Term, meaning: Meaning, ev: Evaluator, env: dict):
    """x^{(i)}, delta^{2(i)}: the quantity of sample i, taken from the batch's matrix (a column, or a
    row in the row layout), then read like the per-sample symbol."""
    s = env.get(t.sample, t.sample)
    if isinstance(s, str):
        raise DeriveError(f"claim: sample index {s!r} of {render(t)} is neither summed over nor free")
    sym, _ = meaning.matrix(replace(t, sample=None, indices=()))
    atom = meaning.q.atom(sym.name)
    if atom.kind not in ("z", "a", "delta", "y") or atom.batch:
        raise DeriveError(f"claim: {render(t)}: only x, a, z, delta and y have a value per sample")
    whole = np.asarray(ev(meaning.q.matrix(atom.kind, atom.layer, True)), dtype=float)
    row = meaning.q.layout == "row"
    count = whole.shape[0] if row else whole.shape[1]
    if not 1 <= s <= count:
        raise ShapeError(f"{render(t)}: sample {s} is out of range 1..{count}")
    one = whole[[s - 1], :] if row else whole[:, [s - 1]]
    return _entry(one, _bind(replace(t, sample=None), env), meaning, sym)


def _storage_entry(t: Term, meaning: Meaning, env: dict) -> tuple[str, int, tuple[int, int]]:
    """The quantity an entry such as w^{2}_{jk} or z^{1}_{k} names, and where the instance stores it
    (W as (to, from), vectors as columns): what a partial derivative by it moves."""
    bound = _bind(t, env)
    kind = meaning.table.get(t.name.removesuffix("_col0"), "")
    if kind not in ("W", "b", "z", "a", "input") or any(isinstance(i, str) for i in bound.indices):
        raise DeriveError(f"claim: cannot differentiate by {render(t)}; derivatives by entries of W, b, z "
                          "and a are understood")
    if kind == "input":
        return "a", 0, (bound.indices[0] - 1, 0) if bound.indices else (0, 0)
    layer = meaning.layer(kind, t.label)
    if t.name.endswith("_col0") and len(bound.indices) == 1:          # Ng's Theta_{i0}: the bias b_i
        return "b", layer, (bound.indices[0] - 1, 0)
    if kind == "W":
        if len(bound.indices) != 2:
            raise DeriveError(f"claim: a weight entry needs two indices, e.g. {t.name}_{{12}}")
        to, frm = bound.indices if meaning.q.index_order == "to_from" else bound.indices[::-1]
        return "W", layer, (to - 1, frm - 1)
    if len(bound.indices) != 1 and not (kind == "a" and layer == meaning.q.depth and meaning.n.output):
        raise DeriveError(f"claim: {t.name} takes one index, e.g. {t.name}_{{1}}")
    return kind, layer, ((bound.indices[0] if bound.indices else 1) - 1, 0)


def _local_partial(t: Term, meaning: Meaning, ev: Evaluator, samples: int, env: dict):
    """d(expression)/d(entry) by a central difference of the expression's value: the entry is moved in
    the instance and everything downstream of it recomputed. The derivatives of the loss come from
    the oracle's backward pass instead (see the loss branch)."""
    num, den = t.args
    kind, layer, where = _storage_entry(den, meaning, env)
    stored = ev.inst.value(kind, layer)
    if not all(0 <= i < n for i, n in zip(where, stored.shape)):
        raise ShapeError(f"{render(den)}: index out of range")
    values = []
    for h in (PARTIAL_EPS, -PARTIAL_EPS):
        moved = Evaluator(ev.inst.perturbed(kind, layer, where, h))
        values.append(np.asarray(_value(num, meaning, moved, samples, env), dtype=float))
    out = (values[0] - values[1]) / (2 * PARTIAL_EPS)
    return float(out.reshape(())) if np.size(out) == 1 else out


@dataclass(frozen=True)
class _Spread:
    """A row (column) times a vector of ones: the row repeated down (the column across) a matrix
    whose size comes from the matrix it is added to, as in Z = X W + 1 b."""
    vector: np.ndarray


@dataclass(frozen=True)
class _Ones:
    """scale · \\mathbf{1}: a vector of ones whose length comes from the matrix it multiplies;
    beside + - ⊙ it is the number `scale` entry by entry, as documents write 1 - a. \\mathbf{1} is a
    column and \\mathbf{1}^T a row: 1^T A sums the rows of A, A 1 its columns, b 1^T and 1 b repeat b."""
    scale: float = 1.0
    row: bool = False


def _bind(t: Term, env: dict) -> Term:
    if not any(isinstance(i, str) for i in t.indices):
        return t
    missing = [i for i in t.indices if isinstance(i, str) and i not in env]
    if missing:
        raise DeriveError(f"claim: index {missing[0]!r} of {render(t)} is neither summed over nor an index of "
                          f"the parameter")
    return replace(t, indices=tuple(env[i] if isinstance(i, str) else i for i in t.indices))


def _dimension(t: Term, position: int, meaning: Meaning) -> int:
    """How far index number `position` of symbol t runs, from the (instance) sizes."""
    sym, _ = meaning.matrix(replace(t, indices=()))
    rows, cols = sym.shape
    atom = meaning.q.atom(sym.name)
    if atom.kind in ("W", "acc"):
        to_from = (rows, cols) if meaning.q.layout == "column" else (cols, rows)
        size = to_from[position] if meaning.q.index_order == "to_from" else to_from[1 - position]
    else:
        size = rows if meaning.q.layout != "row" else cols
    return size


def _upper(t: Term, meaning: Meaning, ev: Evaluator) -> int:
    import sympy as sp

    if t.value is not None:
        if t.value > MAX_SUM:
            raise DeriveError(f"claim: a sum over more than {MAX_SUM} terms is not evaluated")
        return int(t.value)
    size = None
    if t.indices:                                   # \sum_{k=1}^{n_2}: a size symbol of the spec
        name = t.indices[0]
        size = meaning.size_names().get(name.replace("_", ""))
        if size is None:
            raise DeriveError(f"claim: the upper limit {name!r} of a sum is not a size of this network; sizes: "
                              + ", ".join(str(s) for s in meaning.q.sizes))
    else:                                           # \sum_k: how far k runs where it is used
        for _, s in _subterms(t.args[0]):
            if s.op == "symbol" and t.name in s.indices:
                size = _dimension(s, s.indices.index(t.name), meaning)
                break
        if size is None:
            raise DeriveError(f"claim: the sum over {t.name} has no limit and {t.name} is not used as an index")
    value = ev(size) if isinstance(size, sp.Basic) and not size.is_Integer else size
    if float(value) > MAX_SUM:
        raise DeriveError(f"claim: a sum over more than {MAX_SUM} terms is not evaluated")
    return int(round(float(value)))


def free_letters(t: Term, bound=frozenset()) -> list[str]:
    if t.op == "sum":
        return free_letters(t.args[0], bound | {t.name})
    out = [i for i in t.indices if isinstance(i, str) and i not in bound] if t.op in ("symbol", "iverson") else []
    if t.sample is not None and t.sample not in bound:
        out.append(t.sample)
    for a in t.args:
        out += [i for i in free_letters(a, bound) if i not in out]
    return list(dict.fromkeys(out))


def _entry(value, t: Term, meaning: Meaning, sym):
    """w^{l}_{jk} in the notation's index order -> the entry of the layout-oriented matrix."""
    if not t.indices:
        return value
    q = meaning.q
    atom = q.atom(sym.name)
    kind = atom.kind
    if atom.batch and kind != "W":          # X_{pq}: row p, column q of the matrix as laid out
        if len(t.indices) != 2:
            raise DeriveError(f"claim: an entry of the batch matrix {t.name} needs two indices (row, column)")
        row, col = t.indices
        if not (1 <= row <= value.shape[0] and 1 <= col <= value.shape[1]):
            raise ShapeError(f"{render(t)}: entry ({row}, {col}) is outside the "
                             f"{value.shape[0]}x{value.shape[1]} matrix")
        return float(value[row - 1, col - 1])
    if kind == "W":
        if len(t.indices) != 2:
            raise DeriveError(f"claim: a weight entry needs two indices, e.g. {t.name}_{{12}}")
        to, frm = t.indices if q.index_order == "to_from" else t.indices[::-1]
        row, col = (to, frm) if q.layout == "column" else (frm, to)
    else:
        if len(t.indices) != 1:
            raise DeriveError(f"claim: {t.name} takes one index, e.g. {t.name}_{{1}}")
        flat = value.reshape(-1)
        if not 1 <= t.indices[0] <= flat.size:
            raise ShapeError(f"{render(t)}: index {t.indices[0]} is out of range 1..{flat.size}")
        return float(flat[t.indices[0] - 1])
    if not (1 <= row <= value.shape[0] and 1 <= col <= value.shape[1]):
        raise ShapeError(f"{render(t)}: index out of range")
    return float(value[row - 1, col - 1])


def _same_shape(a, b, op, t):
    if np.ndim(a) and np.ndim(b) and np.shape(a) != np.shape(b) and 1 not in (np.size(a), np.size(b)):
        raise ShapeError(f"{render(t)}: {op} of a {np.shape(a)[0]}x{np.shape(a)[1]} and a "
                         f"{np.shape(b)[0]}x{np.shape(b)[1]} matrix")


def mixed_message(symbol: Term) -> str:
    return (f"the claim mixes the per-sample {render(symbol)} with batch symbols (m, the batch matrices, the "
            f"accumulator): a per-sample symbol is one sample's; write the batch's matrices (e.g. Delta, A, X) "
            f"throughout, or leave out m and the batch symbols for one sample")


def _activation(t: Term, meaning: Meaning):
    row = _activation_row(t, meaning)
    if t.prime and row.vector:
        raise DeriveError(f"claim: {render(t)}: {row.name} has a Jacobian, not an entry-wise derivative; with "
                          "cross-entropy the output delta is a - y, otherwise write the Jacobian "
                          "(\\operatorname{diag}(a) - a a^T) times the gradient")
    return row


def _activation_row(t: Term, meaning: Meaning):
    from . import rules

    arg = t.args[0]
    layer = meaning.layer("z", arg.label) if arg.op == "symbol" and meaning.table.get(arg.name) in ("z", "batch_z") \
        else None
    if t.name in ("sigmoid", "relu", "tanh", "softplus", "identity"):
        return rules.activation(t.name)
    if t.name == "leaky_relu":        # with the layer's slope when the layer is a leaky ReLU
        own = meaning.q.activation(layer) if layer is not None else None
        return own if own is not None and own.name == "leaky_relu" else rules.activation("leaky_relu")
    if layer is not None:             # f, g, softmax: the layer's own activation
        return meaning.q.activation(layer)
    raise DeriveError(f"claim: cannot tell which layer's activation {t.name}(...) means; write it of z, "
                      f"e.g. {t.name}'(z^{{2}})")


# ------------------------------------------------------------------------------ judging

def target(result, param: str) -> Term:
    """What a claim is about, as a term: dL/dW^l, dL/db^l, delta^l, or one of their entries."""
    m = re.fullmatch(r"(W|b|delta)([0-9]+)(?:\[([0-9]+)(?:,\s*([0-9]+))?\])?", param.strip())
    if not m:
        raise DeriveError(f"--param {param!r}: expected a parameter such as W2, b1 or delta2, or one entry "
                          f"in the notation's index order such as W1[2,2] or b1[3]")
    kind, layer = m.group(1), int(m.group(2))
    indices = tuple(int(g) for g in m.group(3, 4) if g)
    if indices and len(indices) != (2 if kind == "W" else 1):
        raise DeriveError(f"--param {param}: {'a weight entry needs two indices' if kind == 'W' else 'one index'}")
    if not 1 <= layer <= result.spec.depth or (kind == "b" and not result.spec.layers[layer - 1].bias):
        raise DeriveError(f"--param {param}: the network has no such parameter; it has "
                          + ", ".join(result.parameters))
    meaning = Meaning(result)
    n = meaning.n
    if kind == "delta":
        return Term("symbol", name=n.delta.lstrip("\\"), label=layer + n.node_shift, indices=indices)
    name = base_name(n.weights if kind == "W" else n.bias)
    if kind == "b" and n.bias_folded:
        raise DeriveError("--param b: in Ng's notation the bias is column 0 of Theta; verify the Theta matrix")
    return Term("partial", (Term("symbol", name=n.loss.lstrip("\\")),
                            Term("symbol", name=name, label=layer, indices=indices)))


def _instances(result, batch: bool, seeds=range(TRIALS)):
    out = []
    for seed in seeds:
        inst = make_instance(result.quantities, seed=seed)
        out.append(inst if batch or inst.samples == 1 else inst.sample_view(0))
    return out


def _telling_instances(result, batch: bool, truth: Term, meaning, anchor) -> list:
    """TRIALS instances at which the true value is not all zeros, where there are such among the
    first MAX_SEEDS: a ReLU unit that is off at every instance tried would pass any claim."""
    def tells(inst) -> bool | None:
        try:
            return bool(np.any(_evaluate(truth, meaning, inst, _letters(meaning, anchor or truth, inst))))
        except (ShapeError, DeriveError, ValueError, KeyError):
            return None             # the judge reports why the truth cannot be evaluated

    chosen = _instances(result, batch)
    told = [tells(inst) for inst in chosen]
    if all(t is not False for t in told):
        return chosen
    telling = [inst for inst, t in zip(chosen, told) if t]
    for seed in range(TRIALS, MAX_SEEDS):
        if len(telling) == TRIALS:
            break
        inst = _instances(result, batch, (seed,))[0]
        if tells(inst):
            telling.append(inst)
    return telling + [inst for inst, t in zip(chosen, told) if not t][:TRIALS - len(telling)]


def _close(a, b) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape and not (a.size == b.size == 1):
        return False
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return False                # inf "equals" inf only by a tolerance that scales with it: never a match
    scale = max(np.max(np.abs(a), initial=0), np.max(np.abs(b), initial=0), 1e-12)
    return bool(np.all(np.abs(a.reshape(b.shape) - b) <= ATOL * scale + RTOL * np.maximum(np.abs(a.reshape(b.shape)), np.abs(b))))


def _evaluate(t: Term, meaning, inst, letters: tuple = ()):
    """The value of a term; with free index letters, the matrix of all its entries, arranged like the
    parameter (letters in the notation's order: first letter, second letter)."""
    ev = Evaluator(inst)
    free = free_letters(t)
    if not free:
        value = _value(t, meaning, ev, inst.samples)
        if isinstance(value, (_Ones, _Spread)):
            raise ShapeError(f"{render(t)}: a vector of ones alone has no length")
        return value
    stray = [f for f in free if not letters or f not in letters[1]]
    if stray:
        raise DeriveError(f"claim: free index {stray[0]!r} is not summed over; the parameter's entries are written "
                          "with " + (", ".join(letters[1]) if letters else "no free index (give the whole matrix)"))
    kind, sizes = letters[0], letters[2]
    q = meaning.q
    if kind == "W":
        first, second = letters[1]
        to_n, from_n = sizes
        shape = (to_n, from_n) if q.layout == "column" else (from_n, to_n)
        out = np.zeros(shape)
        for to in range(1, to_n + 1):
            for frm in range(1, from_n + 1):
                a, b = (to, frm) if q.index_order == "to_from" else (frm, to)
                value = _value(t, meaning, ev, inst.samples, {first: a, second: b})
                out[(to - 1, frm - 1) if q.layout == "column" else (frm - 1, to - 1)] = value
        return out
    (letter,) = letters[1]
    n = sizes[0]
    column = np.array([[_value(t, meaning, ev, inst.samples, {letter: j})] for j in range(1, n + 1)], dtype=float)
    return column.T if q.layout == "row" else column


def _letters(meaning: Meaning, truth: Term, inst):
    """(kind, the notation's index letters of the parameter, its sizes) for expanding free indices."""
    sym_term = truth.args[1] if truth.op == "partial" else truth
    if sym_term.op != "symbol" or any(isinstance(i, int) for i in sym_term.indices):
        return ()
    written = sym_term.indices                    # d/dw_{jk}: the letters as the derivation writes them
    sym_term = replace(sym_term, indices=())
    sym, _ = meaning.matrix(sym_term)
    atom = meaning.q.atom(sym.name)
    n = meaning.n
    value = np.asarray(Evaluator(inst)(sym))
    if atom.kind == "W":
        letters = (n.index_name("j"), n.index_name("k")) if meaning.q.index_order == "to_from" \
            else (n.index_name("k"), n.index_name("j"))
        shape = value.shape if meaning.q.layout == "column" else value.shape[::-1]
        return ("W", tuple(written) if len(written) == 2 else letters, shape)
    return (atom.kind, tuple(written) if len(written) == 1 else (n.index_name("j"),), (value.size,))


def judge(result, truth: Term, claim: Term, anchor: Term | None = None, diagnose: bool = True) -> Verdict:
    """anchor: the term whose index letters free indices refer to (a derivation's first left side).
    diagnose=False skips the search for the slip (a derivation needs it for one line only)."""
    meaning = Meaning(result)
    truth, claim = meaning.normalize(truth), meaning.normalize(claim)
    anchor = meaning.normalize(anchor) if anchor is not None else None
    mixed = meaning.mixed_symbol(claim)
    if mixed is not None:
        return Verdict("unparseable", diagnosis=mixed_message(mixed))
    batch = meaning.uses_batch(claim) or meaning.uses_batch(truth)
    instances = _telling_instances(result, batch, truth, meaning, anchor)

    def wrong(verdict: str, counterexample, fallback: str) -> Verdict:
        text, fix = _find_fix(meaning, instances, truth, claim, anchor) if diagnose else ("", None)
        return Verdict(verdict, None, counterexample, text or fallback, fix=fix)

    for inst in instances:
        letters = _letters(meaning, anchor or truth, inst)
        try:
            expected = _evaluate(truth, meaning, inst, letters)
        except ShapeError as exc:
            return Verdict("shape_mismatch", None, None, f"the line it is compared with does not fit: {exc}")
        try:
            claimed = _evaluate(claim, meaning, inst, letters)
        except ShapeError as exc:
            return wrong("shape_mismatch", {"sizes": list(inst.sizes), "problem": str(exc)}, str(exc))
        if not np.all(np.isfinite(np.asarray(claimed, dtype=float))):
            kind = "NaN" if np.any(np.isnan(np.asarray(claimed, dtype=float))) else "infinite"
            return Verdict("incorrect", None, {"sizes": list(inst.sizes), "problem": f"the claim is {kind}"},
                           f"the claim is {kind} at a random instance (sizes {list(inst.sizes)}), where the "
                           "gradient is finite: a division by zero, a log of 0 or an overflow such as e^{710}")
        if np.shape(claimed) != np.shape(expected) and np.size(claimed) != np.size(expected) or (
                np.ndim(claimed) and np.ndim(expected) and np.shape(claimed) != np.shape(expected)):
            return wrong("shape_mismatch", {"sizes": list(inst.sizes), "expected_shape": list(np.shape(expected)),
                                            "claimed_shape": list(np.shape(claimed))},
                         f"the claim is {_shape(claimed)} but the gradient is {_shape(expected)}")
        if not _close(claimed, expected):
            return wrong("incorrect", _counterexample(inst, expected, claimed),
                         "no common slip, alone or two at once, explains the difference")
    return Verdict("correct", diagnosis=f"agrees at {len(instances)} random instances")


def _shape(x):
    return "a scalar" if np.ndim(x) == 0 else f"{np.shape(x)[0]}x{np.shape(x)[1]}"


def _counterexample(inst, expected, claimed) -> dict:
    expected, claimed = np.atleast_2d(expected), np.atleast_2d(claimed).reshape(np.atleast_2d(expected).shape)
    worst = np.unravel_index(int(np.argmax(np.abs(expected - claimed))), expected.shape)
    values = {"x": inst.x.ravel().round(6).tolist(), "y": inst.y.ravel().round(6).tolist()}
    if sum(w.size for w in inst.weights.values()) <= 40:
        values.update({f"W{l}": w.round(6).tolist() for l, w in inst.weights.items()})
        values.update({f"b{l}": b.ravel().round(6).tolist() for l, b in inst.biases.items()})
    return {"sizes": list(inst.sizes), "worst_entry": [int(i) + 1 for i in worst],
            "expected": float(expected[worst]), "claimed": float(claimed[worst]), "values": values}


# -------------------------------------------------------------------------------- diagnosis

def _subterms(t: Term, path=()):
    yield path, t
    for i, a in enumerate(t.args):
        yield from _subterms(a, path + (i,))


def _replace_at(t: Term, path, new: Term) -> Term:
    if not path:
        return new
    args = list(t.args)
    args[path[0]] = _replace_at(args[path[0]], path[1:], new)
    return replace(t, args=tuple(args))


def _mutations(t: Term, meaning: Meaning):
    """Single changes of the claim, most common slips first: (changed claim, diagnosis)."""
    yield Term("neg", (t,)), "sign error: the claim has the wrong sign"
    for k, text in ((2.0, "2"), (0.5, "1/2")):
        yield Term("mul", (Term("number", value=k), t)), f"constant factor off: the claim is missing a factor {text}"
    yield Term("mul", (Term("recip", (Term("symbol", name="m"),)), t)), "constant factor off: the 1/m of the mean is missing"
    yield Term("mul", (Term("symbol", name="m"), t)), "constant factor off: an extra 1/m"
    spec = meaning.result.spec
    if spec.loss.l2 is not None:
        lam = Term("symbol", name=meaning.l2) if meaning.l2 else Term("number", value=float(spec.loss.l2))
        for layer in range(1, meaning.q.depth + 1):
            w = Term("symbol", name=base_name(meaning.n.weights), label=layer)
            yield Term("add", (t, Term("mul", (lam, w)))), f"the L2 term is missing: + λ {render(w)}"
    subs = list(_subterms(t))
    for path, s in subs:
        if s.op in ("add", "sub"):            # e.g. an L2 term added to a bias gradient
            kept, dropped = s.args[0], s.args[1]
            yield _replace_at(t, path, kept), f"an extra term: {render(dropped)} does not belong in {render(s)}"
            if s.op == "add":
                yield _replace_at(t, path, dropped), f"an extra term: {render(kept)} does not belong in {render(s)}"
    for path, s in subs:
        if s.op == "transpose":
            yield _replace_at(t, path, s.args[0]), f"extra transpose: {render(s)} should be {render(s.args[0])}"
    for path, s in subs:
        if s.op in ("symbol", "mul", "partial") and not (path and _at(t, path[:-1]).op == "transpose"):
            yield _replace_at(t, path, Term("transpose", (s,))), f"missing transpose: {render(s)} should be ({render(s)})^T"
    for path, s in subs:
        if s.op == "mul":
            yield _replace_at(t, path, replace(s, args=s.args[::-1])), \
                f"wrong order of a product: {render(s)} should be {render(replace(s, args=s.args[::-1]))}"
    for path, s in subs:
        if s.op == "hadamard":
            yield _replace_at(t, path, replace(s, op="mul")), f"⊙ where a matrix product belongs in {render(s)}"
        if s.op == "mul":
            yield _replace_at(t, path, replace(s, op="hadamard")), f"a matrix product where ⊙ belongs in {render(s)}"
    for path, s in subs:
        if s.op == "symbol" and s.label is not None:
            for delta in (-1, 1):
                moved = replace(s, label=s.label + delta)
                yield _replace_at(t, path, moved), f"wrong layer index: {render(s)} should be {render(moved)}"
    for path, s in subs:       # w_{jk} for w_{kj}: the index-level form of a missing transpose
        if s.op == "symbol" and len(s.indices) == 2 and s.indices[0] != s.indices[1]:
            flipped = replace(s, indices=s.indices[::-1])
            yield _replace_at(t, path, flipped), f"indices of {render(s)} swapped (a missing transpose): " \
                                                 f"should be {render(flipped)}"
    for path, s in subs:       # delta_1 o_2 for delta_2 o_1: the two entry indices swapped
        if s.op == "mul" and all(a.op == "symbol" and len(a.indices) == 1 for a in s.args) and \
                s.args[0].indices != s.args[1].indices:
            a, b = s.args
            swapped = replace(s, args=(replace(a, indices=b.indices), replace(b, indices=a.indices)))
            yield _replace_at(t, path, swapped), f"entry indices swapped: {render(s)} should be {render(swapped)}"
    for path, s in subs:
        if s.op == "symbol" and s.indices and all(isinstance(i, int) for i in s.indices):
            for k in range(len(s.indices)):
                for delta in (-1, 1):
                    moved = replace(s, indices=s.indices[:k] + (s.indices[k] + delta,) + s.indices[k + 1:])
                    if moved.indices[k] >= 1:
                        yield _replace_at(t, path, moved), f"wrong entry index: {render(s)} should be {render(moved)}"
    z = meaning.n.pre.lstrip("\\")
    for letter in free_letters(t):      # index level: a missing f'(z_j) factor
        for layer in range(1, meaning.q.depth + 1):
            label = layer + meaning.n.node_shift
            factor = Term("apply", (Term("symbol", name=z, label=label, indices=(letter,)),), name="f", prime=True)
            yield Term("mul", (t, factor)), f"missing σ' factor: multiply by f'({z}{label}_{letter})"
    for path, s in subs:
        if s.op in ("symbol", "mul", "hadamard", "partial", "add", "sub", "neg"):
            for layer in range(1, meaning.q.depth + 1):
                label = layer + meaning.n.node_shift
                factor = Term("apply", (Term("symbol", name=z, label=label),), name="f", prime=True)
                yield _replace_at(t, path, Term("hadamard", (s, factor))), \
                    f"missing σ' factor: {render(s)} should be multiplied (⊙) by f'({z}{label})"
    for path, s in subs:
        if s.op == "hadamard":
            for keep in (0, 1):
                yield _replace_at(t, path, s.args[keep]), f"extra factor: {render(s.args[1 - keep])} does not belong"


def _at(t, path):
    for i in path:
        t = t.args[i]
    return t


def _find_fix(meaning, instances, truth, claim, anchor=None) -> tuple[str, Term | None]:
    """The single change of the claim that makes it right; failing that, two changes at once
    (within a budget). Returns (diagnosis, the changed claim) or ("", None)."""
    size = sum(1 for _ in _subterms(claim))
    if size > MAX_DIAGNOSE_TERMS:
        return "", None
    try:
        letters = [_letters(meaning, anchor or truth, inst) for inst in instances[:2]]
        expected = [_evaluate(truth, meaning, inst, ls) for inst, ls in zip(instances[:2], letters)]
    except (ShapeError, DeriveError):
        return "", None

    def fixes(changed) -> bool:
        try:
            return all(_close(_evaluate(changed, meaning, inst, ls), e)
                       for inst, ls, e in zip(instances[:2], letters, expected))
        except (ShapeError, DeriveError, ValueError, FloatingPointError, KeyError):
            return False

    with np.errstate(all="ignore"):
        singles = list(_mutations(claim, meaning))
        for changed, text in singles:
            if fixes(changed):
                return text, changed
        if size > MAX_PAIR_TERMS:
            return "", None
        import time

        deadline, trials = time.monotonic() + MAX_PAIR_SECONDS, 0
        for first, first_text in singles:
            for changed, text in _mutations(first, meaning):
                trials += 1
                if trials > MAX_PAIR_TRIALS or time.monotonic() > deadline:
                    return "", None
                if fixes(changed):
                    return f"two slips at once: (1) {first_text}; (2) {text}", changed
    return "", None


# -------------------------------------------------------------------------------- symbolic

def to_sympy(t: Term, meaning: Meaning):
    """The claim as a SymPy matrix expression over the engine's quantities, or None when it has
    parts with no matrix form (entries, partials of entries)."""
    import sympy as sp
    from sympy import HadamardProduct, MatAdd, MatMul, Transpose

    from .algebra import Elementwise, MatPartial, prime

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

    if sum(1 for _ in _subterms(claim)) > MAX_DIAGNOSE_TERMS:
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
    m = re.fullmatch(r"(W|b|delta)([0-9]+)", param.strip())
    if not m:
        return []
    topic = {"W": "weight", "b": "bias", "delta": "delta"}[m.group(1)]
    try:
        d = result.get(topic, int(m.group(2)), "matrix")
    except KeyError:
        return []
    return [s.rhs for s in d.steps]


# ------------------------------------------------------------------------------ entry points

def verify_claim(result, param: str, text: str) -> Verdict:
    goal = target(result, param)
    try:
        claim = parse_claim(_top_level_parts(text)[-1])     # a leading "dL/dW = " is allowed
        _check_size(claim)
    except DeriveError as exc:
        return Verdict("unparseable", None, None, str(exc))
    try:
        verdict = judge(result, goal, claim)
    except DeriveError as exc:
        return Verdict("unparseable", None, None, str(exc))
    except RecursionError:
        return Verdict("unparseable", None, None, "claim: nested too deeply to evaluate")
    except (ArithmeticError, ValueError) as exc:
        return Verdict("unparseable", None, None, f"claim: cannot be evaluated ({type(exc).__name__}: {exc})")
    if verdict.verdict == "correct" and symbolically_equal(claim, engine_forms(result, param), Meaning(result)):
        verdict.diagnosis = "symbolically the engine's own result, and " + verdict.diagnosis
    return verdict


def _check_size(t: Term) -> None:
    count = sum(1 for _ in _subterms(t))
    if count > MAX_TERMS:
        raise DeriveError(f"claim: {count} operations is too large; at most {MAX_TERMS} are accepted")
    work = _sum_work(t)
    if work > MAX_SUM_WORK:
        raise DeriveError(f"claim: its sums nest to about {work:.0f} terms; at most {MAX_SUM_WORK} are evaluated")


def _sum_work(t: Term) -> float:
    """How many terms the nested sums of t add up, with a sum up to a size taken as SIZE_GUESS."""
    inner = max((_sum_work(a) for a in t.args), default=1.0)
    if t.op != "sum":
        return inner
    upper = t.value if t.value is not None else SIZE_GUESS
    return upper * inner


def _top_level_parts(text: str) -> list[str]:
    """Split at '=' outside braces, so \\sum_{k=1} stays whole."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):          # [j = k] and \sum_{k=1} keep their '='
        depth += (ch in "{[(") - (ch in "}])")
        if ch == "=" and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


LINE_SKIP = re.compile(r"^\s*(\\begin\{|\\end\{|%|$)")


def verify_derivation(result, text: str, param: str | None = None) -> Verdict:
    """Every consecutive equality of a LaTeX chain; the first wrong line (1-based in the file)."""
    chain: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if LINE_SKIP.match(raw):
            continue
        line = re.sub(r"(?<!\\)%.*$", "", raw)                      # a comment, not \%
        line = re.sub(r"\\\\\s*$|\\nonumber|\\notag|\\(label|tag|text|mbox|intertext)\{[^}]*\}", " ", line)
        continues = bool(re.match(r"\s*&\s*\\q?quad", line))           # &\qquad ...: a broken line goes on
        line = re.sub(r"&\s*=", "=", line).strip().lstrip("&").strip()     # keep the & of a bmatrix
        line = re.sub(r"^\\\[|\\\]$|^\$\$|\$\$$", "", line).strip().rstrip(",.")
        if not re.sub(r"\\(q?quad|[,;!])|\s", "", line):
            continue
        if continues and len(_top_level_parts(line)) == 1 and chain:
            chain[-1] = (chain[-1][0], chain[-1][1] + " " + line)
            continue
        for k, part in enumerate(_top_level_parts(line)):
            if part.strip() or k == 0:
                chain.append((number, part.strip()))
    chain = [(n, p) for n, p in chain if p]
    if len(chain) > MAX_DERIVATION_LINES:
        raise DeriveError(f"derivation: {len(chain)} equalities is too long; at most {MAX_DERIVATION_LINES} are "
                          "checked (split it into parts)")
    if len(chain) < 2:
        raise DeriveError("derivation: no equality found; write lines such as "
                          "\\frac{\\partial L}{\\partial W^{2}} &= ... \\\\")
    terms = []
    for number, part in chain:
        try:
            terms.append((number, parse_claim(part)))
            _check_size(terms[-1][1])
        except DeriveError as exc:
            return Verdict("unparseable", number, None, f"line {number}: {exc}")
    first = terms[0][1]
    if param:
        first = target(result, param)
    lines, wrong, previous = [], None, first
    verdict = None
    for number, term in terms[1:]:
        try:
            judged = judge(result, previous, term, anchor=first, diagnose=wrong is None)
            truth = judge(result, first, term, anchor=first, diagnose=False)
        except DeriveError as exc:
            return Verdict("unparseable", number, None, f"line {number}: {exc}", lines, terms=terms)
        lines.append({"line": number, "follows_from_previous": judged.verdict == "correct",
                      "correct": truth.verdict == "correct"})
        if wrong is None and judged.verdict != "correct":
            wrong, verdict = number, judged
        previous = term
    if wrong is None:
        return Verdict("correct", None, None, f"every one of the {len(terms) - 1} equalities holds", lines,
                       terms=terms)
    index = [n for n, _ in terms].index(wrong)
    later = [l["line"] for l in lines if l["line"] > wrong and l["follows_from_previous"]]
    again = [l["line"] for l in lines if l["line"] > wrong and l["correct"]]
    note = (f"; later lines that follow correctly from the one before: {later}" if later else "") + \
           (f"; later lines that are correct again: {again}" if again else "")
    sides = {"left": render(terms[index - 1][1]), "right": render(terms[index][1])}
    return Verdict(verdict.verdict, wrong, verdict.counterexample, f"line {wrong}: {verdict.diagnosis}{note}",
                   lines=lines, fix=verdict.fix, terms=terms, sides=sides,
                   fix_of=(terms[index - 1][1] if index > 1 or not param else first, first))


# --------------------------------------------------------------------------- feedback document

_GREEK = {"delta", "Delta", "Theta", "theta", "lambda", "sigma"}


def term_latex(t: Term, meaning: Meaning) -> str:
    """LaTeX for a parsed term, printed by us from the tree: no text of the user reaches TeX."""
    n = meaning.n
    if t.op == "symbol":
        name = LATEX_NAMES.get(t.name)
        if name is None:
            name = ("\\" + t.name) if t.name in _GREEK else t.name if re.fullmatch(r"[A-Za-z]", t.name) \
                else r"\mathrm{" + re.sub(r"[^A-Za-z]", "", t.name) + "}"
        if t.label is not None:
            name += "^{" + n.layer.replace("l", str(t.label)) + "}"
        if t.indices:
            name += "_{" + ("".join(map(str, t.indices)) if all(len(str(i)) == 1 for i in t.indices)
                            else ",".join(map(str, t.indices))) + "}"
        return name
    if t.op == "number":
        return f"{t.value:g}"
    if t.op == "power":
        return _wrapped(t.args[0], meaning) + "^{" + f"{t.value:g}" + "}"
    if t.op == "elementary":
        return r"\%s\left(%s\right)" % (t.name, term_latex(t.args[0], meaning))
    if t.op == "sum":
        return r"\sum_{%s} %s" % (t.name, _wrapped(t.args[0], meaning))
    if t.op == "matrix":
        rows = [" & ".join(term_latex(c, meaning) for c in r.args) for r in t.args]
        return r"\begin{bmatrix} " + r" \\ ".join(rows) + r" \end{bmatrix}"
    if t.op == "partial":
        return r"\frac{\partial %s}{\partial %s}" % (term_latex(t.args[0], meaning), term_latex(t.args[1], meaning))
    if t.op == "apply":
        fn = {"sigmoid": r"\sigma", "tanh": r"\tanh", "relu": r"\operatorname{ReLU}", "g": "g", "f": "f",
              "softplus": r"\operatorname{softplus}", "leaky_relu": r"\operatorname{LReLU}",
              "identity": r"\operatorname{id}", "softmax": r"\operatorname{softmax}"}.get(t.name, "f")
        return f"{fn}{chr(39) if t.prime else ''}({term_latex(t.args[0], meaning)})"
    if t.op == "transpose":
        inner = term_latex(t.args[0], meaning)
        wrap = t.args[0].op != "symbol" or t.args[0].label is not None
        return (f"\\left({inner}\\right)" if wrap else inner) + "^{" + n.transpose + "}"
    if t.op == "neg":
        return "-" + _wrapped(t.args[0], meaning)
    if t.op == "recip":
        return r"\frac{1}{%s}" % term_latex(t.args[0], meaning)
    if t.op == "diag":
        return r"\operatorname{diag}\left(%s\right)" % term_latex(t.args[0], meaning)
    if t.op == "mul" and t.args[1].op == "recip":
        return r"\frac{%s}{%s}" % (term_latex(t.args[0], meaning), term_latex(t.args[1].args[0], meaning))
    joiner = {"add": " + ", "sub": " - ", "mul": " ", "hadamard": r" \odot ", "divide": r" \oslash "}[t.op]
    parts = []
    for a in t.args:           # a chain of one associative operator needs no inner parentheses
        same = a.op == t.op and t.op in ("add", "hadamard", "mul")
        parts.append(term_latex(a, meaning) if same or t.op == "add" else _wrapped(a, meaning))
    return joiner.join(parts)


def _wrapped(t: Term, meaning) -> str:
    text = term_latex(t, meaning)
    return f"\\left({text}\\right)" if t.op in ("add", "sub", "hadamard", "divide") else text


def feedback_document(result, verdict: Verdict, param: str | None, lang: str = "en") -> str:
    from .render import environment

    meaning = Meaning(result)
    rows = [{"line": n, "tex": term_latex(t, meaning), "first": k == 0,
             "wrong": n == verdict.first_wrong_line,
             "follows": next((l["follows_from_previous"] for l in verdict.lines if l["line"] == n), True),
             "correct": next((l["correct"] for l in verdict.lines if l["line"] == n), True)}
            for k, (n, t) in enumerate(verdict.terms)]
    fix = term_latex(verdict.fix, meaning) if verdict.fix is not None else None
    text = environment().get_template("verify.tex.j2").render(
        lang=lang, rows=rows, verdict=verdict, fix=fix, spec=result.spec)
    _require_fix_reads_back(result, text, verdict)
    return text


FIX_MARK = re.compile(r"\\text\{(?:should be|应为) \} (.*?) && \\text\{")


def _require_fix_reads_back(result, text: str, verdict: Verdict) -> None:
    """The corrected line the document prints is read back from it and judged: a fix that does not
    read back as equal to what it corrects is never handed to a student."""
    from .errors import PrintedLineError

    printed = FIX_MARK.findall(text)
    if verdict.fix is None or verdict.fix_of is None:
        if printed:
            raise PrintedLineError("feedback: a corrected line is printed where none was found")
        return
    if len(printed) != 1:
        raise PrintedLineError(f"feedback: {len(printed)} corrected lines printed, expected 1")
    against, anchor = verdict.fix_of
    try:
        judged = judge(result, against, parse_claim(printed[0]), anchor=anchor, diagnose=False)
    except DeriveError as exc:
        judged = Verdict("unparseable", diagnosis=str(exc))
    if judged.verdict != "correct":
        line = next(n for n, l in enumerate(text.splitlines(), 1) if printed[0] in l)
        raise PrintedLineError(f"feedback: the corrected line printed on line {line} does not read back as "
                               f"correct ({judged.verdict}: {judged.diagnosis}); nothing was written: {printed[0]}")
