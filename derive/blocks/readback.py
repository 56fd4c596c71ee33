"""What a block network's document prints is what was checked: every displayed equation is read back
from the emitted LaTeX by a grammar of its own and judged at random numeric instances.

The reader knows the notation (which letter names which quantity of which layer) and nothing of the
printer or the engine's expressions: an entry is a number of the instance's forward pass, a derivative
is a central difference of it, a sum runs, a bracket [j = k] compares, a matrix product multiplies.
A column of ones takes its length from what it meets (Z 1 sums the columns; mu 1^T spreads mu over
them), so a misprinted shape cannot be hidden by broadcasting: two arrays of different shapes never add.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
import sympy as sp
from lark import Lark, Transformer, v_args
from lark.exceptions import LarkError, VisitError

from ..errors import DeriveError
from ..readback import Judgement, PrintedEquation, ReadbackReport, printed_equations
from ..rules import activation as activation_row, _softmax_np
from .numbers import EPS, EvaluationError, Evaluator, _logsumexp
from .symbols import Direct, LATEX
from ..algebra import Partial

TRIALS = 2                   # instances per equation
MAX_POINTS = 8               # index combinations per equation and instance
RTOL, ATOL = 1e-5, 1e-7      # as the step checks (central differences)
MAX_CHARS = 200_000

GRAMMAR = r"""
?start: sum
?sum: product
    | MINUS product                   -> neg
    | sum PLUS product                -> add
    | sum MINUS product               -> sub
?product: postfix
    | product postfix                 -> mul
    | product ODOT postfix            -> hadamard
    | product CDOT postfix            -> mul
    | product sumop                   -> mul
    | sumop
?sumop: SUM_OPEN sum "}" "^{" sum "}" body          -> sigma
    | MAX_OPEN body                                 -> window_max
?body: product | MINUS product        -> neg
?postfix: primary
    | postfix TRANSPOSE               -> transpose
    | postfix "^{" sum "}"            -> power
    | postfix HPOW sum "}"            -> hpower
?primary: quantity
    | NUMBER                          -> number
    | LETTER                          -> letter
    | GREEK                           -> letter
    | ONES                            -> ones
    | "\\frac" "{" sum "}" "{" sum "}"                            -> frac
    | "\\frac" "{" PARTIAL target "}" "{" PARTIAL target "}"  -> partial
    | "\\frac" "{" PARTIAL "}" "{" PARTIAL target "}" primary   -> partial_of
    | "\\frac" "{" BARPARTIAL target "}" "{" BARPARTIAL target "}"  -> direct
    | "\\frac" "{" BARPARTIAL "}" "{" BARPARTIAL target "}" primary   -> direct_of
    | "\\sqrt" "{" sum "}"            -> sqrt
    | EXP_OPEN sum "}"                -> exp
    | FUNCTION primary                -> apply
    | CLIP_OPEN sum "}" primary       -> clip
    | MAX2 "(" sum "," sum ")"        -> larger
    | LBAR sum RBAR                   -> absolute
    | CASES_BEGIN sum "&" FOR sum RELATION sum "\\\\" sum "&" OTHERWISE CASES_END  -> cases
    | "\\lceil" primary "\\rceil"     -> ceil
    | "[" sum "=" sum "]"             -> same
    | "[" sum RELATION sum "]"        -> above
    | "(" sum ")"
    | "{" sum "}"
?target: quantity
    | LETTER                          -> bare
quantity: LABELED subscript?
    | LETTER SUBSIMPLE                -> plain_entry
    | LETTER SUB_OPEN indices "}"     -> plain_entry
subscript: SUBSIMPLE | SUB_OPEN indices "}"
indices: sum ("," sum)*

LABELED.4: /(\\hat\{[zZ]\}|\\tilde\{[hH]\}|\\gamma|\\beta|\\mu|\\delta|\\Delta|[azuhrwbvqkspAZUHRWVQKSP])\^\{([QKV],)?[0-9]+\}/
SUBSIMPLE.3: /_\{[0-9a-z]+\}|_[0-9a-z]/
SUB_OPEN.2: "_{"
SUM_OPEN.3: /\\sum_\{\s*(\\tau|[a-z])\s*=/
MAX_OPEN.3: /\\max_\{1\s*\\le\s*[a-z](\s*,\s*[a-z])*\s*\\le\s*[0-9]+\}/
EXP_OPEN.4: /e\^\{/
HPOW.4: /\^\{\\circ/
TRANSPOSE.4: /\^\{T\}/
ONES.3: /\\mathbf\{1\}/
CLIP_OPEN.4: /\\operatorname\{clip\}_\{\\pm/
MAX2.3: /\\max(?!_)/
LBAR.5: /\\left\|/
RBAR.5: /\\right\|/
CASES_BEGIN: /\\begin\{cases\}/
CASES_END: /\\end\{cases\}/
FOR: /\\text\{for\}(\\:)?/
OTHERWISE: /\\text\{otherwise\}/
RELATION: /\\leq|\\geq|\\le|\\ge|<|>/
FUNCTION.3: /\\operatorname\{(ReLU|LReLU|softplus|id|softmax|log\\_softmax|diag|sign)\}'?|\\(tanh|sigma)'?|\\(log|exp)(?![A-Za-z])/
PARTIAL: "\\partial"
BARPARTIAL: /\\bar\{\\partial\}/
GREEK.2: /\\(tau|epsilon)(?![A-Za-z])/
LETTER: /[A-Za-z]/
NUMBER: /[0-9]+(\.[0-9]+)?/
PLUS: "+"
MINUS: "-"
ODOT: "\\odot"
CDOT: "\\cdot"
%ignore /\s+/
%ignore /\\left|\\right|\\[bB]igl|\\[bB]igr|\\[,;!]/
"""

_PARSER = Lark(GRAMMAR, parser="lalr", maybe_placeholders=False)


@dataclass(frozen=True)
class Node:
    op: str
    args: tuple = ()
    data: object = None


@v_args(inline=True)
class _Build(Transformer):
    def number(self, token):
        return Node("number", data=float(token))

    def letter(self, token):
        name = str(token).lstrip("\\")
        if name in ("X", "Y"):              # the inputs and targets as matrices
            return Node("quantity", (), (name, None, None))
        return Node("letter", data=name)

    def ones(self, _token):
        return Node("ones")

    def quantity(self, token, subscript=None):
        m = re.fullmatch(r"(.*)\^\{(?:([QKV]),)?([0-9]+)\}", str(token))
        return Node("quantity", subscript or (), (m.group(1), m.group(2), int(m.group(3))))

    def bare(self, token):
        return Node("quantity", (), (str(token), None, None))

    def plain_entry(self, token, sub, indices=None):
        return Node("quantity", indices if indices is not None else self.subscript(sub), (str(token), None, None))

    def subscript(self, token, indices=None):
        if indices is not None:
            return indices
        text = str(token).removeprefix("_").strip("{}")
        return tuple(Node("number", data=float(c)) if c.isdigit() else Node("letter", data=c) for c in text)

    def indices(self, *items):
        return tuple(items)

    def frac(self, a, b):
        return Node("div", (a, b))

    def partial(self, _p, num, _q, den):
        return Node("partial", (num, den))

    def partial_of(self, _p, _q, den, body):
        return Node("partial_of", (body, den))

    def direct(self, _p, num, _q, den):
        return Node("direct", (num, den))

    def direct_of(self, _p, _q, den, body):
        return Node("direct_of", (body, den))

    def sqrt(self, a):
        return Node("power", (a, Node("number", data=0.5)))

    def exp(self, _open, a):
        return Node("function", (a,), "exp")

    def apply(self, token, arg):
        return Node("function", (arg,), str(token))

    def ceil(self, a):
        return Node("ceil", (a,))

    def same(self, a, b):
        return Node("same", (a, b))

    def above(self, a, relation, b):
        if str(relation) != ">":
            raise DeriveError(f"read-back: a bracket [a {relation} b] is not one derive prints")
        return Node("above", (a, b))

    def clip(self, _open, kappa, arg):
        return Node("clip", (kappa, arg))

    def larger(self, _token, a, b):
        return Node("larger", (a, b))

    def absolute(self, _open, a, _close):
        return Node("abs", (a,))

    def cases(self, *parts):
        value, left, relation, right, otherwise = [p for p in parts if isinstance(p, Node) or
                                                   getattr(p, "type", "") == "RELATION"]
        return Node("cases", (value, left, right, otherwise), str(relation).lstrip("\\"))

    def sigma(self, token, low, high, body):
        letter = re.search(r"\{\s*(\\tau|[a-z])", str(token)).group(1).lstrip("\\")
        return Node("sum", (low, high, body), letter)

    def window_max(self, token, body):
        inside = re.search(r"\\le\s*(.*?)\s*\\le\s*([0-9]+)", str(token))
        letters = tuple(x.strip() for x in inside.group(1).split(","))
        return Node("max", (body,), (letters, int(inside.group(2))))

    def neg(self, _minus, a):
        return Node("neg", (a,))

    def add(self, a, _op, b):
        return Node("add", (a, b))

    def sub(self, a, _op, b):
        return Node("sub", (a, b))

    def mul(self, a, *rest):
        return Node("mul", (a, rest[-1]))

    def hadamard(self, a, _op, b):
        return Node("hadamard", (a, b))

    def transpose(self, a, _t):
        return Node("transpose", (a,))

    def power(self, a, b):
        return Node("power", (a, b))

    def hpower(self, a, _open, b):
        return Node("hpower", (a, b))


def parse_printed(text: str) -> Node:
    """A printed side as a tree; a DeriveError names what could not be read."""
    if len(text) > MAX_CHARS:
        raise DeriveError(f"read-back: {len(text)} characters is too long to read")
    try:
        tree = _Build().transform(_PARSER.parse(text))
    except VisitError as exc:
        raise DeriveError(f"read-back: {exc.orig_exc}") from None
    except LarkError as exc:
        raise DeriveError(f"read-back: cannot read {text[:80]!r}: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise DeriveError("read-back: nested too deeply to read") from None
    if _derivative_depth(tree) > MAX_NESTED_DERIVATIVES:
        raise DeriveError(f"read-back: derivatives nested more than {MAX_NESTED_DERIVATIVES} deep are not read")
    return tree


def _derivative_depth(node: Node) -> int:
    inner = max((_derivative_depth(a) for a in node.args if isinstance(a, Node)), default=0)
    return inner + (node.op in ("partial_of", "direct_of"))


# ------------------------------------------------------------------ the notation: names -> quantities

# printed base -> kind, read off the printer's own name table (symbols.LATEX: the notation, one place);
# where two kinds print one name (u^l, v^l, K^l), the layer's kind decides (BY_LAYER_KIND)
def _names(column: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for kind, forms in LATEX.items():
        if kind not in ("WQ", "WK", "WV"):               # w^{Q,l}: read by its projection letter
            out.setdefault(forms[column].split("^")[0], kind)
    return out


ENTRY_KINDS, MATRIX_KINDS = _names(0), _names(1)
BY_LAYER_KIND = {("u", "rnn"): "U", ("U", "rnn"): "U", ("v", "attention"): "v", ("K", "conv"): "K"}
QKV = {"Q": "WQ", "K": "WK", "V": "WV"}
UNLABELED = {"x": ("a", 0), "X": ("a", 0), "y": ("y", None), "Y": ("y", None)}


class Notation:
    """Which quantity a printed name is (u^l is the recurrent weight of a recurrent layer and the
    normalized value elsewhere; v^l the values of attention or a variance; K^l the keys or a kernel)."""

    def __init__(self, result):
        self.spec = result.spec

    def resolve(self, base: str, projection, layer, entry: bool) -> tuple[str, int | None]:
        if layer is None:
            if base not in UNLABELED:
                raise DeriveError(f"read-back: {base} is no quantity of this network")
            return UNLABELED[base]
        if not 1 <= layer <= self.spec.depth:
            raise DeriveError(f"read-back: the network has no layer {layer}")
        if projection:
            return QKV[projection], layer
        kinds = ENTRY_KINDS if entry else MATRIX_KINDS
        if base not in kinds:
            raise DeriveError(f"read-back: {base}^{{{layer}}} is no quantity of this network")
        return BY_LAYER_KIND.get((base, self.spec.layers[layer - 1].kind), kinds[base]), layer


# ------------------------------------------------------------------ values

MAX_WORK = 200_000           # terms and forward-pass nodes one equation may cost (a claim can ask for more)
MAX_NESTED_DERIVATIVES = 2   # d/dx (d/dy (...)): each level doubles the forward passes


class Budget:
    """What one equation may cost: a sum from 1 to 10^9 is refused, not run."""

    def __init__(self, limit: int = MAX_WORK):
        self.left = limit

    def spend(self, amount: int) -> None:
        self.left -= max(amount, 0)
        if self.left < 0:
            raise EvaluationError(f"it asks for more than {MAX_WORK:,} terms to evaluate; not read")


@dataclass(frozen=True)
class Spread:
    """A matrix whose flagged axes came from a column or row of ones: their length is what they meet."""
    value: np.ndarray
    rows: bool = False
    cols: bool = False

    @property
    def flagged(self) -> bool:
        return self.rows or self.cols


def _as_spread(v) -> Spread:
    if isinstance(v, Spread):
        return v
    return Spread(np.asarray(v, dtype=float).reshape(1, 1) if np.ndim(v) == 0 else np.asarray(v, dtype=float))


def _matmul(a: Spread, b: Spread) -> Spread:
    if a.cols and b.rows:
        raise EvaluationError("1^T 1: the length of the ones is not determined")
    if a.cols:                     # (x 1^T) B = x (1^T B)
        return Spread(a.value @ b.value.sum(axis=0, keepdims=True), a.rows, b.cols)
    if b.rows:                     # A (1 y) = (A 1) y
        return Spread(a.value.sum(axis=1, keepdims=True) @ b.value, a.rows, b.cols)
    if a.value.shape[1] != b.value.shape[0]:
        raise MisfitError(f"a product of {_describe(a)} and {_describe(b)}")
    return Spread(a.value @ b.value, a.rows, b.cols)


def _describe(v: Spread) -> str:
    rows, cols = v.value.shape
    if v.rows and v.cols:
        return "a matrix of ones"
    if v.rows or v.cols:
        if (rows, cols) == (1, 1):
            return "a column of ones" if v.rows else "a row of ones"
        return f"a {'row' if v.rows else 'column'} spread by ones"
    return f"a {rows} × {cols} matrix"


def _entrywise(a: Spread, b: Spread, op) -> Spread:
    """Entry by entry: a flagged axis takes the other side's length; two genuine shapes must agree."""
    shape = []
    for axis, (fa, fb) in enumerate(((a.rows, b.rows), (a.cols, b.cols))):
        na, nb = a.value.shape[axis], b.value.shape[axis]
        if fa and not fb:
            shape.append(nb)
        elif fb and not fa:
            shape.append(na)
        elif na != nb:
            raise MisfitError(f"entry by entry on {_describe(a)} and {_describe(b)}")
        else:
            shape.append(na)
    return Spread(op(np.broadcast_to(a.value, shape), np.broadcast_to(b.value, shape)), a.rows and b.rows,
                  a.cols and b.cols)


class Reader:
    """Evaluates a read tree at one instance: scalars as floats, matrices as Spread."""

    def __init__(self, result, inst, env: dict[str, int], values=None, budget=None):
        self.result, self.inst, self.env = result, inst, env
        self.budget = budget if budget is not None else Budget()     # shared by every reader of one equation
        self.table = result.table
        self.notation = Notation(result)
        self.values = values            # a moved forward pass (inside a derivative of a formula)
        self.ev = Evaluator(inst, values=values)
        self.sizes = _size_names(result)
        self.row_layout = result.spec.notation == "rowvec"     # every matrix is the column one transposed

    def at(self, **more) -> "Reader":
        return Reader(self.result, self.inst, {**self.env, **more}, self.values, self.budget)

    # ---- quantities
    def _index(self, node) -> int:
        value = self.scalar(node)
        if abs(value - round(value)) > 1e-9:
            raise EvaluationError(f"an index is not an integer: {value}")
        return int(round(value))

    def entry(self, node: Node) -> sp.Indexed:
        base, projection, layer = node.data
        kind, layer = self.notation.resolve(base, projection, layer, entry=True)
        at = tuple(self._index(i) for i in node.args)
        if self.row_layout and len(at) == 2:
            at = at[::-1]                   # the row layout's x_{sj} is the column layout's x_{js}
        shape = _column_shape(node, self)
        if len(at) != len(shape):
            raise MisfitError(f"{_name(node)} has {len(shape)} indices, not {len(at)}")
        for axis, (i, n) in enumerate(zip(at, shape)):
            if not 1 <= i <= n and not self._zero_outside(kind, layer, axis, len(shape)):
                raise MisfitError(f"{_name(node)} at {', '.join(map(str, at))} lies outside it: index "
                                   f"{axis + 1} runs over 1..{n}")
        return self.table.entry(kind, layer)[tuple(sp.Integer(i) for i in at)]

    def _zero_outside(self, kind: str, layer, axis: int, rank: int) -> bool:
        """Entries that are 0 beyond the quantity, as the document says: a sequence's states before the
        first step and error terms after the last (the time axis), a map read by a padded convolution
        (its padding), and a convolution's error terms (the full convolution's border). Anywhere else an
        entry beyond its quantity is a sum run too far."""
        spec = self.result.spec
        if spec.is_sequence and axis == rank - 1 and kind in ("a", "z", "h", "delta"):
            return True
        if axis == 0 or layer is None or spec.map_shape(layer) is None:
            return False
        if kind in ("z", "delta"):           # a convolution's error terms beyond its map: the full convolution
            return layer >= 1 and spec.layers[layer - 1].kind == "conv"
        reader = spec.layers[layer] if layer < spec.depth else None
        return kind == "a" and reader is not None and reader.kind == "conv" and reader.padding > 0

    def matrix_key(self, node: Node) -> tuple:
        base, projection, layer = node.data
        return self.notation.resolve(base, projection, layer, entry=False)

    def is_matrix(self, node: Node) -> bool:
        if node.op == "ones":
            return True
        if node.op == "quantity":         # a labeled name without indices (W^l, b^l, mu^l), X or Y
            return not node.args and (node.data[2] is not None or node.data[0] in ("X", "Y"))
        if node.op == "letter":
            return node.data == "N" and "N" not in self.sizes
        if node.op == "partial":
            return self.is_matrix(node.args[1])
        if node.op == "function" and node.data.startswith(r"\operatorname{diag}"):
            return True
        if node.op in ("sum", "max"):
            return False
        return any(isinstance(a, Node) and self.is_matrix(a) for a in node.args)

    # ---- evaluation
    def value(self, node: Node):
        return self.matrix(node) if self.is_matrix(node) else self.scalar(node)

    def scalar(self, node: Node) -> float:
        op = node.op
        if op == "number":
            return node.data
        if op == "letter":
            return self._letter(node.data)
        if op == "quantity":
            if not node.args:
                return self._letter(node.data[0])
            if node.data[2] is None and node.data[0] not in UNLABELED:       # a size named n_1
                return self._letter(node.data[0] + "_" + "".join(str(self._index(i)) for i in node.args))
            return float(self.ev(self.entry(node)))
        if op == "partial":
            return self._partial(node)
        if op in ("partial_of", "direct_of"):
            return self._derivative_of(node)
        if op == "direct":
            num, den = node.args
            return float(self.ev(Direct(self.entry(num), self.entry(den))))
        if op == "add":
            return self.scalar(node.args[0]) + self.scalar(node.args[1])
        if op == "sub":
            return self.scalar(node.args[0]) - self.scalar(node.args[1])
        if op in ("mul", "hadamard"):
            return self.scalar(node.args[0]) * self.scalar(node.args[1])
        if op == "neg":
            return -self.scalar(node.args[0])
        if op == "div":
            return self.scalar(node.args[0]) / self.scalar(node.args[1])
        if op == "power":          # an overflow is inf, which no true side equals
            return float(np.power(self.scalar(node.args[0]), self.scalar(node.args[1])))
        if op == "ceil":
            return float(np.ceil(self.scalar(node.args[0]) - 1e-12))
        if op == "same":
            a, b = (self.scalar(x) for x in node.args)
            return float(abs(a - b) <= 1e-12 * max(1.0, abs(a)))
        if op == "above":
            return float(self.scalar(node.args[0]) > self.scalar(node.args[1]))
        if op == "sum":
            low, high, body = node.args
            first, last = self._index(low), self._index(high)
            self.budget.spend(last - first + 1)
            return sum(self.at(**{node.data: k}).scalar(body) for k in range(first, last + 1))
        if op == "max":
            letters, high = node.data
            return max(self.at(**dict(zip(letters, combo))).scalar(node.args[0])
                       for combo in itertools.product(range(1, high + 1), repeat=len(letters)))
        if op == "function":
            return float(self._function(node.data, np.asarray([[self.scalar(node.args[0])]]))[0, 0])
        if op == "clip":
            kappa = self.scalar(node.args[0])
            return float(np.clip(self.scalar(node.args[1]), -kappa, kappa))
        if op == "larger":
            return max(self.scalar(node.args[0]), self.scalar(node.args[1]))
        if op == "abs":
            return abs(self.scalar(node.args[0]))
        if op == "cases":
            value, left, right, otherwise = node.args
            a, b = self.scalar(left), self.scalar(right)
            holds = {"leq": a <= b, "le": a <= b, "geq": a >= b, "ge": a >= b, "<": a < b, ">": a > b}[node.data]
            return self.scalar(value if holds else otherwise)
        raise EvaluationError(f"cannot evaluate {op} as a number")

    def _letter(self, name: str) -> float:
        if name in self.env:
            return float(self.env[name])
        if name == "L":
            values = self.values if self.values is not None else self.inst.values
            return float(values[("L", None)])
        if name == "epsilon":
            return float(self._epsilon())
        if name in self.sizes:
            return float(self.inst.symbols[self.sizes[name]])
        if name in ("m", "T") and self.table.samples.is_Integer:
            return float(self.table.samples)
        raise EvaluationError(f"no value for {name}")

    def _epsilon(self) -> float:
        eps = {float(l.eps) for l in self.spec_layers if l.norm}
        if len(eps) != 1:
            raise EvaluationError("epsilon differs between layers: it cannot be read without its layer")
        return eps.pop()

    @property
    def spec_layers(self):
        return self.result.spec.layers

    def _partial(self, node: Node) -> float:
        num, den = node.args
        den_entry = self.entry(den)
        if num.op == "quantity" and not num.args and num.data[0] == "L":
            return float(self.ev(Partial(sp.Symbol("L"), den_entry)))
        return float(self.ev(Partial(self.entry(num), den_entry)))

    def _derivative_of(self, node: Node) -> float:
        """d/dx (formula): the formula after the entry is moved (and, for a total derivative, every later
        node recomputed; for a direct one, nothing else)."""
        body, den = node.args
        self.budget.spend(2 * len(self.inst.order()))        # two forward passes
        key, idx = self.ev._entry(self.entry(den))
        out = []
        for sign in (1.0, -1.0):
            if node.op == "partial_of":
                values = self.inst.moved(key, idx, sign * EPS)
            else:
                values = dict(self.values if self.values is not None else self.inst.values)
                base = values[key] if key in values else self.inst.leaves[key]
                values[key] = base.copy()
                values[key][idx] += sign * EPS
            out.append(Reader(self.result, self.inst, self.env, values, self.budget).scalar(body))
        return (out[0] - out[1]) / (2 * EPS)

    def _function(self, token: str, x: np.ndarray) -> np.ndarray:
        prime = token.endswith("'")
        name = re.sub(r"\\operatorname\{|\}|'|\\", "", token)
        if name in ("exp", "log", "sign"):
            return {"exp": np.exp, "log": np.log, "sign": np.sign}[name](x)
        if name == "softmax":
            return _softmax_np(x)
        if name == "log_softmax":
            return x - _logsumexp(x)
        rows = {"ReLU": "relu", "LReLU": "leaky_relu", "softplus": "softplus", "id": "identity", "tanh": "tanh",
                "sigma": "sigmoid"}
        if name not in rows:
            raise EvaluationError(f"unknown function {token}")
        slope = self._slope() if name == "LReLU" else None
        row = activation_row(rows[name], slope)
        return row.numpy_derivative(x) if prime else row.numpy(x)

    def _slope(self):
        slopes = {layer.slope for layer in self.spec_layers if layer.activation == "leaky_relu"}
        if len(slopes) != 1:
            raise EvaluationError("the leaky ReLU's slope differs between layers")
        slope = slopes.pop()
        return sp.Rational(slope.numerator, slope.denominator)

    # ---- matrices
    def matrix(self, node: Node) -> Spread:
        op = node.op
        if not self.is_matrix(node):
            return _as_spread(self.scalar(node))
        if op == "ones":
            return Spread(np.ones((1, 1)), rows=True)
        if op == "letter":            # N: the shift of a sequence network's steps
            return Spread(np.eye(self.inst.m, k=-1))
        if op == "quantity":
            key = self.matrix_key(node)
            return self._oriented(np.asarray(self._node_value(key), dtype=float))
        if op == "partial":
            key = self.matrix_key(node.args[1])
            return self._oriented(np.asarray(self.inst.gradient(("z", key[1]) if key[0] == "delta" else key),
                                             dtype=float))
        if op == "transpose":
            a = self.matrix(node.args[0])
            return Spread(a.value.T, a.cols, a.rows)
        if op in ("mul", "hadamard", "add", "sub", "div"):
            a, b = node.args
            if op == "mul" and self.is_matrix(a) and self.is_matrix(b):
                return _matmul(self.matrix(a), self.matrix(b))
            if op in ("mul", "div"):
                scalar, other = (a, b) if not self.is_matrix(a) else (b, a)
                if op == "div":
                    if self.is_matrix(b):
                        raise EvaluationError("a division by a matrix")
                    m = self.matrix(a)
                    return Spread(m.value / self.scalar(b), m.rows, m.cols)
                m, c = self.matrix(other), self.scalar(scalar)
                return Spread(c * m.value, m.rows, m.cols)
            fn = {"hadamard": np.multiply, "add": np.add, "sub": np.subtract}[op]
            return _entrywise(self.matrix(a), self.matrix(b), fn)
        if op == "neg":
            m = self.matrix(node.args[0])
            return Spread(-m.value, m.rows, m.cols)
        if op == "hpower":
            m = self.matrix(node.args[0])
            return Spread(m.value ** self.scalar(node.args[1]), m.rows, m.cols)
        if op == "clip":
            kappa, m = self.scalar(node.args[0]), self.matrix(node.args[1])
            return Spread(np.clip(m.value, -kappa, kappa), m.rows, m.cols)
        if op == "above":
            m = self.matrix(node.args[0])
            return Spread((m.value > self.scalar(node.args[1])).astype(float), m.rows, m.cols)
        if op == "function":
            m = self.matrix(node.args[0])
            if node.data.startswith(r"\operatorname{diag}"):
                if m.flagged or 1 not in m.value.shape:
                    raise MisfitError(f"diag of a {m.value.shape} matrix")
                return Spread(np.diag(m.value.ravel()))
            if m.flagged and node.data not in (r"\exp", r"\log"):
                raise EvaluationError("a function of a matrix of unknown size")
            if self.row_layout and "softmax" in node.data:      # the row layout's softmax acts on each row
                return Spread(self._function(node.data, m.value.T).T, m.rows, m.cols)
            return Spread(self._function(node.data, m.value), m.rows, m.cols)
        raise EvaluationError(f"cannot evaluate {op} as a matrix")

    def _oriented(self, value: np.ndarray) -> Spread:
        return Spread(value.T if self.row_layout else value)

    def _node_value(self, key):
        if key[0] == "delta":
            return self.inst.gradient(("z", key[1]))
        if key in self.inst.values:
            return self.inst.values[key]
        return self.inst.leaves[key]


def _size_names(result) -> dict[str, sp.Symbol]:
    """Printed size names -> their symbols (sizes print as their names; a sequence's m prints T)."""
    out = {}
    for symbol in [*result.table.sizes, result.table.samples]:
        if not symbol.is_Integer:
            out[str(symbol)] = symbol
            if symbol == result.table.samples and result.spec.is_sequence:
                out["T"] = symbol
    return out


# ------------------------------------------------------------------ judging

def _free_letters(node: Node, bound=frozenset()) -> set[str]:
    """Index letters not bound by a sum (bound also holds the size names, which are no indices)."""
    if node.op == "letter":
        name = node.data
        return {name} if name not in bound and (len(name) == 1 and name.islower() or name == "tau") else set()
    if node.op == "sum":
        low, high, body = node.args
        return _free_letters(low, bound) | _free_letters(high, bound) | _free_letters(body, bound | {node.data})
    if node.op == "max":
        return _free_letters(node.args[0], bound | set(node.data[0]))
    out = set()
    for a in node.args:
        if isinstance(a, Node):
            out |= _free_letters(a, bound)
    return out


class MisfitError(EvaluationError):
    """An entry beyond its quantity (a sum that runs too far), shapes that do not fit (a transpose
    dropped), an index over two ranges (w_jk beside a_js): the line is wrong, not unreadable."""


def _name(node: Node) -> str:
    base, projection, layer = node.data
    return base + ("" if layer is None else "^{%s%s}" % (projection + "," if projection else "", layer))


def _column_shape(node: Node, reader: "Reader") -> tuple[int, ...]:
    """The shape of an entry's quantity in the engine's column layout (a vector by its one length)."""
    base, projection, layer = node.data
    kind, layer = reader.notation.resolve(base, projection, layer, entry=True)
    shape = np.shape(reader._node_value(("z", layer) if kind == "delta" else (kind, layer)))
    if len(node.args) == 1 and len(shape) == 2:
        shape = (shape[0] if shape[1] == 1 else shape[1],)
    return shape


def _entry_shape(node: Node, reader: "Reader") -> tuple[int, ...]:
    """The shape as the entry is written: in the row layout a two-index quantity is transposed."""
    shape = _column_shape(node, reader)
    return shape[::-1] if reader.row_layout and len(shape) == 2 and len(node.args) == 2 else shape


def _entries(node: Node, bound=frozenset()):
    """Every entry of the tree, with the letters bound where it stands."""
    if node.op == "quantity" and node.args and (node.data[2] is not None or node.data[0] in UNLABELED):
        yield node, bound
    inner = bound | ({node.data} if node.op == "sum" else set(node.data[0]) if node.op == "max" else set())
    for a in node.args:
        if isinstance(a, Node):
            yield from _entries(a, inner)


def _ranges(node: Node, reader: Reader, letters: set[str], context: Node | None = None) -> tuple[dict[str, int], set[str]]:
    """How far each free letter runs: the length of the axis where it stands alone as an index; a letter
    that only stands inside index expressions (x_{d, i + p - 1}) runs over the length of that axis, and
    its points are kept where every such entry exists (the second result names them)."""
    out: dict[str, int] = {}
    inferred: dict[str, int] = {}
    if context is not None:          # a chain's later rows: the letters run as in the chain's first left side
        out.update({k: v for k, v in _ranges(context, reader, letters)[0].items() if k in letters})
    for entry, bound in _entries(node):
        shape = _entry_shape(entry, reader)
        for position, index in enumerate(entry.args[:len(shape)]):
            if index.op == "letter" and index.data in letters and index.data not in bound:
                if context is not None and index.data in out:
                    continue
                if index.data in out and out[index.data] != shape[position]:
                    raise MisfitError(f"index {index.data} runs over 1..{out[index.data]} and over "
                                          f"1..{shape[position]}")
                out[index.data] = shape[position]
            else:
                for letter in _free_letters(index, bound) & letters:
                    inferred.setdefault(letter, shape[position])
    guessed = {k: v for k, v in inferred.items() if k not in out}
    return {**out, **guessed}, set(guessed)


def _inside(node: Node, reader: "Reader", guessed: set[str]) -> bool:
    """Every entry whose indices use a guessed letter lies inside its quantity."""
    for entry, bound in _entries(node):
        if not any(_free_letters(i, bound) & guessed for i in entry.args):
            continue
        shape = _entry_shape(entry, reader)
        try:
            at = [reader._index(i) for i in entry.args]
        except EvaluationError:
            continue                      # an index with a summed letter: the sum decides
        if any(not 1 <= v <= n for v, n in zip(at, shape)):
            return False
    return True


def _close(a, b) -> tuple[bool, float]:
    if isinstance(a, Spread) or isinstance(b, Spread):
        a, b = _as_spread(a), _as_spread(b)
        if a.flagged or b.flagged:
            joined = _entrywise(a, b, lambda x, y: np.stack([x, y]))      # shapes resolved against each other
            left, right = joined.value[0], joined.value[1]
        else:
            if a.value.shape != b.value.shape:
                return False, float("inf")
            left, right = a.value, b.value
    else:
        left, right = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not (np.all(np.isfinite(left)) and np.all(np.isfinite(right))):
        return False, float("nan")
    excess = np.abs(left - right) / (ATOL + RTOL * np.maximum(np.abs(left), np.abs(right)))
    return bool(excess.max() <= 1.0) if excess.size else True, float(excess.max()) if excess.size else 0.0


def _shapes(a, b):
    """The two sides' shapes when they cannot be compared (a flagged axis fits any length), else None."""
    a, b = _as_spread(a), _as_spread(b)
    fits = all(fa or fb or na == nb for na, nb, fa, fb in
               zip(a.value.shape, b.value.shape, (a.rows, a.cols), (b.rows, b.cols)))
    if fits:
        return None
    return tuple(" × ".join(map(str, v.value.shape)) for v in (a, b))


def _show(v) -> str:
    v = v.value if isinstance(v, Spread) else np.asarray(v, dtype=float)
    return f"{float(v.reshape(())):.6g}" if np.size(v) == 1 else np.array2string(v, precision=4, max_line_width=80)


CONDITION = re.compile(r"\\quad\s*\((\\tau|[a-z])\s*<\s*([^()]*)\)\s*$")    # a line stated for t < T


@dataclass(frozen=True)
class Finding:
    """How an equation fared, with the numbers behind a wrong one (for verify's counterexample)."""
    status: str                   # correct | wrong | unreadable
    message: str = ""
    kind: str = ""                # differ | misfit | stray: what made it wrong
    left: object = None
    right: object = None
    where: dict | None = None     # the index values of the differing point
    instance: object = None


def judge(result, eq: PrintedEquation, instances, context: str | None = None) -> Judgement:
    """context: the first left side of the chain this line continues (its letters' ranges)."""
    found = compare(result, eq, instances, context)
    return Judgement(eq, found.status, found.message)


def compare(result, eq: PrintedEquation, instances, context: str | None = None) -> Finding:
    condition = CONDITION.search(eq.rhs) or CONDITION.search(eq.lhs)
    try:
        lhs, rhs = (parse_printed(CONDITION.sub("", side)) for side in (eq.lhs, eq.rhs))
        start = parse_printed(CONDITION.sub("", context)) if context is not None else None
        below = (condition.group(1).lstrip("\\"), parse_printed(condition.group(2))) if condition else None
    except DeriveError as exc:
        return Finding("unreadable", str(exc).removeprefix("read-back: "))
    sizes = frozenset(_size_names(result)) | {"m", "T"}
    left_letters, right_letters = _free_letters(lhs, sizes), _free_letters(rhs, sizes)
    letters = left_letters | right_letters
    stray = sorted(right_letters - left_letters)
    if stray:
        return Finding("wrong", f"index {stray[0]} is free on the right side but not on the left", "stray")
    rng = np.random.default_rng(0)
    compared, inst = 0, None
    try:
        for inst in instances:
            reader = Reader(result, inst, {})
            pair = Node("pair", (lhs, rhs))
            ranges, guessed = _ranges(pair, reader, letters, start)
            if below is not None:       # a line stated for t < T: its letter stops before the bound
                if below[0] not in letters:
                    return Finding("unreadable", f"the condition names {below[0]}, which is not free")
                ranges[below[0]] = min(ranges.get(below[0], 10 ** 6), reader._index(below[1]) - 1)
            missing = sorted(letters - set(ranges))
            if missing:
                return Finding("unreadable", f"index {missing[0]} is free but no entry gives its range")
            names = sorted(ranges)
            combos = list(itertools.product(*(range(1, ranges[n] + 1) for n in names)))
            if guessed:
                combos = [c for c in combos if _inside(pair, reader.at(**dict(zip(names, c))), guessed)]
            if len(combos) > MAX_POINTS:
                combos = [combos[i] for i in sorted(rng.choice(len(combos), MAX_POINTS, replace=False))]
            for combo in combos:
                at = reader.at(**dict(zip(names, combo)))
                with np.errstate(all="ignore"):
                    left, right = at.value(lhs), at.value(rhs)
                shapes = _shapes(left, right)
                if shapes:
                    return Finding("wrong", f"the left side is {shapes[0]}, the right side {shapes[1]}", "misfit",
                                   left, right, dict(zip(names, combo)), inst)
                ok, _ = _close(left, right)
                compared += 1
                if not ok:
                    where = ", ".join(f"{k} = {v}" for k, v in zip(names, combo))
                    return Finding("wrong", f"the two sides differ" + (f" at {where}" if where else "")
                                   + f": {_show(left)} against {_show(right)}", "differ", left, right,
                                   dict(zip(names, combo)), inst)
    except DeriveError as exc:
        return Finding("unreadable", str(exc).removeprefix("read-back: "))
    except MisfitError as exc:
        return Finding("wrong", str(exc), "misfit", instance=inst)
    except RecursionError:
        return Finding("unreadable", "nested too deeply to evaluate")
    except (EvaluationError, ArithmeticError, ValueError, IndexError, KeyError, TypeError) as exc:
        return Finding("unreadable", f"cannot evaluate it: {type(exc).__name__}: {exc}")
    if not compared:
        return Finding("unreadable", "nothing was compared")
    return Finding("correct")


def read_back_blocks(result, tex: str, trials: int = TRIALS) -> ReadbackReport:
    from .check import instance

    instances = [instance(result, seed) for seed in range(trials)]
    out, previous, start = [], None, None
    for eq in printed_equations(tex):
        continued = previous is not None and eq.lhs == previous.rhs
        start = start if continued else eq.lhs
        out.append(judge(result, eq, instances, start if continued else None))
        previous = eq
    return ReadbackReport(tuple(out))


# ------------------------------------------------------------------ printing a read tree

_PRECEDENCE = {"add": 1, "sub": 1, "neg": 1, "mul": 2, "hadamard": 2, "sum": 2, "max": 2}
_RELATIONS = {"leq": r"\leq", "le": r"\le", "geq": r"\geq", "ge": r"\ge", "<": "<", ">": ">"}


def to_latex(node: Node) -> str:
    """LaTeX for a read tree, printed from the tree alone (every piece comes from the grammar's fixed
    alternatives, so no text of a user reaches TeX); parse_printed(to_latex(t)) gives t again."""
    op, args = node.op, node.args
    wrap = lambda t, below: r"\left(%s\right)" % to_latex(t) if _PRECEDENCE.get(t.op, 9) <= below else to_latex(t)
    if op == "number":
        return np.format_float_positional(node.data, trim="-")
    if op == "letter":
        return "\\" + node.data if node.data in ("tau", "epsilon") else node.data
    if op == "ones":
        return r"\mathbf{1}"
    if op == "quantity":
        base, projection, layer = node.data
        text = base + ("" if layer is None else "^{%s%s}" % (projection + "," if projection else "", layer))
        if not args:
            return text
        simple = all(i.op == "letter" and len(i.data) == 1 or i.op == "number" and 0 <= i.data <= 9
                     and float(i.data).is_integer() for i in args)
        return text + "_{" + ("".join(to_latex(i) for i in args) if simple else ",".join(map(to_latex, args))) + "}"
    if op in ("add", "sub"):
        return f"{to_latex(args[0])} {'+' if op == 'add' else '-'} {wrap(args[1], 1)}"
    if op == "neg":
        return "- " + wrap(args[0], 1)
    if op in ("mul", "hadamard"):                # a sum or max on the left would swallow what follows
        left = r"\left(%s\right)" % to_latex(args[0]) if args[0].op in ("add", "sub", "neg", "sum", "max") \
            else to_latex(args[0])
        return left + (" \\odot " if op == "hadamard" else " ") + wrap(args[1], 2)
    if op == "div":
        return r"\frac{%s}{%s}" % (to_latex(args[0]), to_latex(args[1]))
    if op == "power":
        if args[1].op == "number" and args[1].data == 0.5:
            return r"\sqrt{%s}" % to_latex(args[0])
        base = to_latex(args[0]) if args[0].op in ("number", "letter") else r"\left(%s\right)" % to_latex(args[0])
        return "%s^{%s}" % (base, to_latex(args[1]))
    if op == "hpower":
        return r"\left(%s\right)^{\circ %s}" % (to_latex(args[0]), to_latex(args[1]))
    if op == "transpose":
        inner = args[0]
        plain = inner.op == "quantity" and not inner.args and inner.data[2] is None or inner.op in ("letter", "ones")
        return (to_latex(inner) if plain else r"\left(%s\right)" % to_latex(inner)) + "^{T}"
    if op == "partial":
        return r"\frac{\partial %s}{\partial %s}" % (to_latex(args[0]), to_latex(args[1]))
    if op == "direct":
        return r"\frac{\bar{\partial} %s}{\bar{\partial} %s}" % (to_latex(args[0]), to_latex(args[1]))
    if op in ("partial_of", "direct_of"):
        d = r"\partial" if op == "partial_of" else r"\bar{\partial}"
        return r"\frac{%s}{%s %s}\left(%s\right)" % (d, d, to_latex(args[1]), to_latex(args[0]))
    if op == "function":
        if node.data == "exp":
            return "e^{%s}" % to_latex(args[0])
        return r"%s\left(%s\right)" % (node.data, to_latex(args[0]))
    if op == "clip":
        return r"\operatorname{clip}_{\pm %s}\left(%s\right)" % (to_latex(args[0]), to_latex(args[1]))
    if op == "larger":
        return r"\max\left(%s, %s\right)" % (to_latex(args[0]), to_latex(args[1]))
    if op == "abs":
        return r"\left|%s\right|" % to_latex(args[0])
    if op == "ceil":
        return r"\left\lceil{%s}\right\rceil" % to_latex(args[0])
    if op in ("same", "above"):
        return "[%s %s %s]" % (to_latex(args[0]), "=" if op == "same" else ">", to_latex(args[1]))
    if op == "sum":
        letter = "\\tau" if node.data == "tau" else node.data
        return r"\sum_{%s=%s}^{%s} %s" % (letter, to_latex(args[0]), to_latex(args[1]), wrap(args[2], 1))
    if op == "max":
        letters, high = node.data
        return r"\max_{1 \le %s \le %d} %s" % (", ".join(letters), high, wrap(args[0], 1))
    if op == "cases":
        value, left, right, otherwise = args
        return r"\begin{cases} %s & \text{for}\: %s %s %s \\ %s & \text{otherwise} \end{cases}" % (
            to_latex(value), to_latex(left), _RELATIONS[node.data], to_latex(right), to_latex(otherwise))
    raise DeriveError(f"read-back: cannot print {op}")
