"""Evaluating a claim: its value at a random instance of the network, by the meaning of its symbols."""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace

import numpy as np

from ..claim import Term, render
from ..errors import DeriveError
from ..evaluate import PARTIAL_EPS, Evaluator
from .limits import ATOL, MAX_SUM, RTOL
from .symbols import Meaning, activation, free_letters, subterms
from .verdict import ShapeError


def value_of(t: Term, meaning: Meaning, ev: Evaluator, samples: int, env: dict | None = None):
    q = meaning.q
    env = env or {}
    if t.op == "sum":
        var, total = t.name, 0.0
        for value in range(1, upper(t, meaning, ev) + 1):
            total = total + value_of(t.args[0], meaning, ev, samples, {**env, var: value})
        return total
    if t.op == "number":
        return t.value
    if t.op == "symbol":
        if t.name == "m":
            return float(samples)
        if t.name == "ones":          # sized by its neighbour: see Ones
            return Ones()
        if meaning.is_l2(t.name):
            return meaning.l2_value(ev.inst)
        if meaning.is_loss(t):
            return _loss_value(t, ev, env)
        if t.sample is not None:
            return _sample_value(t, meaning, ev, env)
        sym, _ = meaning.matrix(t)
        return entry(np.asarray(ev(sym), dtype=float), bind(t, env), meaning, sym)
    if t.op == "indicator":
        value = value_of(t.args[0], meaning, ev, samples, env)
        if isinstance(value, (Ones, Spread)):
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
        from ..algebra import MatPartial

        num, den = t.args
        data = num.name.endswith("_data")
        if meaning.table.get(num.name.removesuffix("_data")) != "L":
            raise DeriveError(f"claim: only derivatives of the loss are understood, not of {num.name!r}")
        sym, _ = meaning.matrix(den)        # by a, z or delta the data part's derivative is the loss's
        import sympy as sp

        loss = sp.Symbol("L_data") if data else q.loss
        return entry(np.asarray(ev(MatPartial(loss, sym)), dtype=float), bind(den, env), meaning, sym)
    if t.op == "elementary":
        arg = np.asarray(value_of(t.args[0], meaning, ev, samples, env), dtype=float)
        with np.errstate(all="ignore"):
            out = np.exp(arg) if t.name == "exp" else np.log(arg)
        return float(out) if np.ndim(out) == 0 else out
    if t.op == "power":         # entry by entry, as (1 + e^{-z})^2 is meant
        return np.asarray(value_of(t.args[0], meaning, ev, samples, env), dtype=float) ** t.value
    if t.op == "matrix":
        cells = [[value_of(c, meaning, ev, samples, env) for c in r.args] for r in t.args]
        if any(np.ndim(c) for r in cells for c in r):
            raise ShapeError(f"{render(t)}: a bmatrix of matrices is not supported; write its entries")
        return np.array(cells, dtype=float)
    if t.op == "apply":
        arg = value_of(t.args[0], meaning, ev, samples, env)
        row = activation(t, meaning)
        fn = row.numpy_derivative if t.prime else row.numpy
        if np.ndim(arg) == 0:
            return float(fn(np.array([[float(arg)]]))[0, 0])
        x = np.asarray(arg, dtype=float)
        return fn(x.T).T if q.layout == "row" else fn(x)
    vals = [value_of(a, meaning, ev, samples, env) for a in t.args]
    ones = [v for v in vals if isinstance(v, Ones)]
    if ones and t.op in ("transpose", "neg", "mul", "star"):
        if t.op == "transpose":
            return replace(vals[0], row=not vals[0].row)
        if t.op == "neg":
            return replace(vals[0], scale=-vals[0].scale)
        a, b = vals                   # c 1, 1^T A (sums the rows of A), A 1 (sums its columns)
        if len(ones) == 1 and np.ndim(a if ones[0] is b else b) == 0:
            one = ones[0]
            return replace(one, scale=one.scale * float(a if one is b else b))
        if isinstance(a, Ones) and not isinstance(b, Ones) and np.ndim(b) == 2:
            if not a.row and b.shape[0] == 1:
                return Spread(a.scale * b)      # 1 b: the row b repeated, as many rows as its neighbour has
            if a.row:
                return a.scale * (np.ones((1, b.shape[0])) @ b)
        if isinstance(b, Ones) and not isinstance(a, Ones) and np.ndim(a) == 2:
            if b.row and a.shape[1] == 1:
                return Spread(b.scale * a)      # b 1^T: the column b repeated
            if not b.row:
                return b.scale * (a @ np.ones((a.shape[1], 1)))
        side = a if isinstance(b, Ones) else b
        if np.ndim(side) == 2 and not isinstance(side, Ones):
            raise ShapeError(f"{render(t)}: a {'row' if (a if isinstance(a, Ones) else b).row else 'column'} of ones "
                             f"does not multiply a {side.shape[0]}x{side.shape[1]} matrix on that side")
        raise ShapeError(f"{render(t)}: a vector of ones needs a matrix beside it to know its length")
    vals = [v.scale if isinstance(v, Ones) else v for v in vals]       # 1 - a: entry by entry
    spread = [v for v in vals if isinstance(v, Spread)]
    if spread:
        full = [v for v in vals if not isinstance(v, Spread) and np.ndim(v) == 2]
        if t.op not in ("add", "sub", "hadamard", "divide") or not full:
            raise ShapeError(f"{render(t)}: a vector times \\mathbf{{1}} needs a matrix beside it to know its size")
        vals = [np.broadcast_to(v.vector, full[0].shape) if isinstance(v, Spread) else v for v in vals]
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
    return _product(a, b, t)


def _product(a, b, t: Term):
    """a b (juxtaposed, \\cdot) and a * b. A product is a matrix product where one fits; otherwise
    a 1x1 factor is a scalar (a single output's delta, dL/dy_out), and two vectors of the same shape
    multiply entry by entry (a(1 - a)). * is NumPy's entry-wise product between operands of the same
    shape and Octave's matrix product otherwise. Every reading other than the plain one is noted."""
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        return a * b
    same = np.shape(a) == np.shape(b)
    if t.op == "star" and same and np.size(a) > 1:
        note(f"* between operands of the same shape ({_dims(a)}) read as entry-wise (⊙) in {render(t)}")
        return a * b
    if a.shape[1] == b.shape[0]:
        if t.op == "star" and np.size(a) > 1 and np.size(b) > 1:
            note(f"* read as a matrix product in {render(t)}")
        return a @ b
    for one, other, side in ((a, b, t.args[0]), (b, a, t.args[1])):
        if np.size(one) == 1:
            note(f"{render(side)} is 1x1 here and is read as a scalar in {render(t)}")
            return float(one.reshape(())) * other
    if same and 1 in np.shape(a):
        note(f"the product of two {_dims(a)} vectors read as entry-wise (⊙) in {render(t)}")
        return a * b
    raise ShapeError(f"{render(t)}: a {a.shape[0]}x{a.shape[1]} matrix times a {b.shape[0]}x{b.shape[1]} one"
                     + (" fits neither as a matrix product nor entry by entry" if t.op == "star" else ""))


def _dims(x) -> str:
    return f"{np.shape(x)[0]}x{np.shape(x)[1]}"


_READINGS: ContextVar[list | None] = ContextVar("readings", default=None)


def note(text: str) -> None:
    """Record a reading chosen for an ambiguous form, when someone is listening (see `readings`)."""
    notes = _READINGS.get()
    if notes is not None and text not in notes:
        notes.append(text)


@contextmanager
def readings():
    """Collect the readings chosen while a claim is evaluated: `with readings() as notes: ...`."""
    notes: list[str] = []
    token = _READINGS.set(notes)
    try:
        yield notes
    finally:
        _READINGS.reset(token)


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
    return entry(one, bind(replace(t, sample=None), env), meaning, sym)


def storage_entry(t: Term, meaning: Meaning, env: dict) -> tuple[str, int, tuple[int, int]]:
    """The quantity an entry such as w^{2}_{jk} or z^{1}_{k} names, and where the instance stores it
    (W as (to, from), vectors as columns): what a partial derivative by it moves."""
    bound = bind(t, env)
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
    if _whole_vectors(num, den, meaning):
        return _activation_derivative(num, den, meaning, ev, samples, env)
    kind, layer, where = storage_entry(den, meaning, env)
    stored = ev.inst.value(kind, layer)
    if not all(0 <= i < n for i, n in zip(where, stored.shape)):
        raise ShapeError(f"{render(den)}: index out of range")
    values = []
    for h in (PARTIAL_EPS, -PARTIAL_EPS):
        moved = Evaluator(ev.inst.perturbed(kind, layer, where, h))
        values.append(np.asarray(value_of(num, meaning, moved, samples, env), dtype=float))
    out = (values[0] - values[1]) / (2 * PARTIAL_EPS)
    return float(out.reshape(())) if np.size(out) == 1 else out


def _whole_vectors(num: Term, den: Term, meaning: Meaning) -> bool:
    """da^l/dz^l written of whole vectors (no indices), as in dL/da ⊙ da/dz."""
    kinds = [meaning.table.get(x.name) if x.op == "symbol" else None for x in (num, den)]
    return (kinds[0] in ("a", "output") and kinds[1] == "z" and not num.indices and not den.indices
            and num.sample is None and den.sample is None)


def _activation_derivative(num: Term, den: Term, meaning: Meaning, ev: Evaluator, samples: int, env: dict):
    """da^l/dz^l of an entry-wise activation: the vector f'(z^l), the diagonal of its Jacobian, which is
    how ⊙ uses it. A layer whose activation acts on the whole vector (softmax) has no such vector."""
    layer_of = lambda x: meaning.q.depth if meaning.table.get(x.name) == "output" else meaning.layer(
        meaning.table.get(x.name), x.label)
    layer = layer_of(den)
    if layer_of(num) != layer:
        raise DeriveError(f"claim: {render(num)} does not depend entry by entry on {render(den)} (another layer); "
                          "write the chain of derivatives between them")
    row = meaning.q.activation(layer)
    if row.vector:
        raise DeriveError(f"claim: d{render(num)}/d{render(den)}: {row.name} acts on the whole vector and has a "
                          "Jacobian (diag(a) - a a^T), not a vector of derivatives")
    z = np.asarray(ev(meaning.q.matrix("z", layer)), dtype=float)
    note(f"d{render(num)}/d{render(den)} read as the vector f'({render(den)}), the diagonal of its Jacobian")
    return row.numpy_derivative(z.T).T if meaning.q.layout == "row" else row.numpy_derivative(z)


@dataclass(frozen=True)
class Spread:
    """A row (column) times a vector of ones: the row repeated down (the column across) a matrix
    whose size comes from the matrix it is added to, as in Z = X W + 1 b."""
    vector: np.ndarray


@dataclass(frozen=True)
class Ones:
    """scale · \\mathbf{1}: a vector of ones whose length comes from the matrix it multiplies;
    beside + - ⊙ it is the number `scale` entry by entry, as documents write 1 - a. \\mathbf{1} is a
    column and \\mathbf{1}^T a row: 1^T A sums the rows of A, A 1 its columns, b 1^T and 1 b repeat b."""
    scale: float = 1.0
    row: bool = False


def bind(t: Term, env: dict) -> Term:
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


def upper(t: Term, meaning: Meaning, ev: Evaluator) -> int:
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
        for _, s in subterms(t.args[0]):
            if s.op == "symbol" and t.name in s.indices:
                size = _dimension(s, s.indices.index(t.name), meaning)
                break
        if size is None:
            raise DeriveError(f"claim: the sum over {t.name} has no limit and {t.name} is not used as an index")
    value = ev(size) if isinstance(size, sp.Basic) and not size.is_Integer else size
    if float(value) > MAX_SUM:
        raise DeriveError(f"claim: a sum over more than {MAX_SUM} terms is not evaluated")
    return int(round(float(value)))


def entry(value, t: Term, meaning: Meaning, sym):
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


def close(a, b) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape and not (a.size == b.size == 1):
        return False
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return False                # inf "equals" inf only by a tolerance that scales with it: never a match
    scale = max(np.max(np.abs(a), initial=0), np.max(np.abs(b), initial=0), 1e-12)
    return bool(np.all(np.abs(a.reshape(b.shape) - b) <= ATOL * scale + RTOL * np.maximum(np.abs(a.reshape(b.shape)), np.abs(b))))


def evaluate(t: Term, meaning, inst, letters: tuple = ()):
    """The value of a term; with free index letters, the matrix of all its entries, arranged like the
    parameter (letters in the notation's order: first letter, second letter)."""
    ev = Evaluator(inst)
    free = free_letters(t)
    if not free:
        value = value_of(t, meaning, ev, inst.samples)
        if isinstance(value, (Ones, Spread)):
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
                value = _one_entry(value_of(t, meaning, ev, inst.samples, {first: a, second: b}), t)
                out[(to - 1, frm - 1) if q.layout == "column" else (frm - 1, to - 1)] = value
        return out
    (letter,) = letters[1]
    n = sizes[0]
    column = np.array([[_one_entry(value_of(t, meaning, ev, inst.samples, {letter: j}), t)] for j in range(1, n + 1)],
                      dtype=float)
    return column.T if q.layout == "row" else column


def _one_entry(value, t: Term) -> float:
    """An index-level claim's value at one index: a number (a 1x1 matrix counts as one)."""
    if isinstance(value, (Ones, Spread)) or np.size(value) != 1:
        shape = "a vector of ones" if isinstance(value, (Ones, Spread)) else f"a {np.shape(value)} matrix"
        raise ShapeError(f"{render(t)}: one entry of it is {shape}, not a number")
    return float(np.reshape(value, ()))


def letters_of(meaning: Meaning, truth: Term, inst):
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
