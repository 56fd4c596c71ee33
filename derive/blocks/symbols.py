"""The named quantities of a block network and the printer that writes them.

Every node of the forward pass is an (n x m) matrix with the samples as columns: at index level its
entries are x_{js} (unit j, sample s), at matrix level the matrix X. Per-unit vectors (b, gamma,
beta, the batch mean and variance) have one index; the layer-norm statistics are per sample.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..algebra import Partial
from ..notation import profile
from ..printing import DerivePrinter
from .. import rules as dense_rules
from .spec import INDEX_LETTERS, BlockSpec

# kind -> (entry LaTeX, matrix LaTeX); {l} is the layer label
LATEX = {
    "a": ("a^{%s}", "A^{%s}"), "z": ("z^{%s}", "Z^{%s}"), "zhat": (r"\hat{z}^{%s}", r"\hat{Z}^{%s}"),
    "u": ("u^{%s}", "U^{%s}"), "h": ("h^{%s}", "H^{%s}"), "d": (r"\tilde{h}^{%s}", r"\tilde{H}^{%s}"),
    "r": ("r^{%s}", "R^{%s}"), "W": ("w^{%s}", "W^{%s}"), "b": ("b^{%s}", "b^{%s}"),
    "gamma": (r"\gamma^{%s}", r"\gamma^{%s}"), "beta": (r"\beta^{%s}", r"\beta^{%s}"),
    "mu": (r"\mu^{%s}", r"\mu^{%s}"), "var": ("v^{%s}", "v^{%s}"), "delta": (r"\delta^{%s}", r"\Delta^{%s}"),
    "U": ("u^{%s}", "U^{%s}"), "q": ("q^{%s}", "Q^{%s}"), "kk": ("k^{%s}", "K^{%s}"), "v": ("v^{%s}", "V^{%s}"),
    "sc": ("s^{%s}", "S^{%s}"), "pr": ("p^{%s}", "P^{%s}"), "K": ("K^{%s}", "K^{%s}"),
    "WQ": (r"w^{Q,%s}", r"W^{Q,%s}"), "WK": (r"w^{K,%s}", r"W^{K,%s}"), "WV": (r"w^{V,%s}", r"W^{V,%s}"),
}
NODE_KINDS = ("a", "z", "zhat", "u", "h", "d", "r", "delta")      # n_l x m
UNIT_KINDS = ("b", "gamma", "beta")                              # n_l x 1
INDEX = {name: sp.Symbol(name, integer=True, positive=True) for name in INDEX_LETTERS}
# a sequence network's columns are time steps: its column index prints t, the second one tau
SEQUENCE_INDEX = {"s": "t", "t": r"\tau", "r": "r"}
FUNCTION_LATEX = {"exp": r"e^{%s}", "log": r"\log\left(%s\right)", "step": r"[%s > 0]"}


@dataclass(frozen=True)
class Atom:
    kind: str
    layer: int | None


class Table:
    """SymPy names for the quantities of one block network, and their shapes."""

    def __init__(self, spec: BlockSpec):
        self.spec = spec
        to_size = lambda s: sp.Integer(s) if isinstance(s, int) else sp.Symbol(s, integer=True, positive=True)
        self.sizes = tuple(to_size(s) for s in spec.sizes)
        self.samples = to_size(spec.columns)
        self.loss = sp.Symbol("L")
        self.atoms: dict[str, Atom] = {"L": Atom("L", None)}
        self.eps = {l: sp.Symbol(f"epsilon_{l}", positive=True) for l in range(1, spec.depth + 1)}

    def _name(self, kind: str, layer, matrix: bool) -> str:
        name = f"{kind}{'M' if matrix else ''}_{layer if layer is not None else ''}"
        self.atoms[name] = Atom(kind, layer)
        return name

    def key_size(self, l: int):
        key = self.spec.layers[l - 1].key
        return self.sizes[l] if key is None else (sp.Integer(key) if isinstance(key, int) else
                                                  sp.Symbol(key, integer=True, positive=True))

    def map_shape(self, kind: str, layer):
        """The shape of a feature-map quantity (no column index: one sample), or None."""
        spec = self.spec
        if kind in ("z", "a", "h", "delta") and layer is not None and spec.map_shape(layer) is not None:
            return tuple(sp.Integer(n) for n in spec.map_shape(layer))
        if kind == "K":
            layer_spec = spec.layers[layer - 1]
            k = layer_spec.kernel
            return (sp.Integer(layer_spec.units), sp.Integer(spec.map_shape(layer - 1)[0]),
                    *(sp.Integer(k) for _ in spec.map_shape(layer - 1)[1:]))
        if kind == "W" and layer is not None and spec.map_shape(layer - 1) is not None:
            return (self.sizes[layer], *(sp.Integer(n) for n in spec.map_shape(layer - 1)))
        if kind == "b" and layer is not None and spec.layers[layer - 1].kind == "conv":
            return sp.Integer(spec.layers[layer - 1].units), sp.Integer(1)
        return None

    def shape(self, kind: str, layer):
        m = self.samples
        mapped = self.map_shape(kind, layer)
        if mapped is not None:
            return mapped
        if kind in ("y",):
            return self.sizes[-1], m
        if kind in ("q", "kk"):
            return self.key_size(layer), m
        if kind in ("sc", "pr", "N"):
            return m, m
        if kind in ("WQ", "WK"):
            return self.key_size(layer), self.sizes[layer - 1]
        if kind == "WV":
            return self.sizes[layer], self.sizes[layer - 1]
        if kind == "U":
            return self.sizes[layer], self.sizes[layer]
        if kind in UNIT_KINDS:
            return self.sizes[layer], sp.Integer(1)
        if kind in ("mu", "var"):
            return (self.sizes[layer], sp.Integer(1)) if self.spec.layers[layer - 1].norm == "batch" \
                else (sp.Integer(1), m)
        if kind == "W":
            return self.sizes[layer], self.sizes[layer - 1]
        return self.sizes[layer], m

    def entry(self, kind: str, layer=None) -> sp.IndexedBase:
        return sp.IndexedBase(self._name(kind, layer, False))

    def matrix(self, kind: str, layer=None) -> sp.MatrixSymbol:
        return sp.MatrixSymbol(self._name(kind, layer, True), *self.shape(kind, layer))

    def atom(self, name: str) -> Atom:
        return self.atoms[name]

    def n(self, l: int):
        return self.sizes[l]

    def activation(self, l: int) -> dense_rules.Activation | None:
        layer = self.spec.layers[l - 1]
        if layer.activation in ("softmax", "log_softmax"):
            return None
        slope = layer.slope
        return dense_rules.activation(layer.activation,
                                      sp.Rational(slope.numerator, slope.denominator) if slope is not None else None)


def f(l: int) -> sp.Function:
    """The activation of layer l as an undefined function: printed by its table row's name."""
    return sp.Function(f"act_{l}")


def f_prime(l: int) -> sp.Function:
    return sp.Function(f"actprime_{l}")


def fn(name: str) -> sp.Function:
    """A named elementary function (exp, log, the indicator [x > 0], clip)."""
    return sp.Function(name)


class BlockPrinter(DerivePrinter):
    """The dense printer's conventions (fractions, Iverson brackets, Hadamard products) with the names
    of a block network: hats for normalized values, tildes for dropped ones, gamma and beta."""

    def __init__(self, table: Table):
        super().__init__(None, profile("nielsen"))
        self.t = table

    def _label(self, atom: Atom, matrix: bool) -> str:
        if atom.kind == "a" and atom.layer == 0:
            return "X" if matrix else "x"
        if atom.kind == "y":
            return "Y" if matrix else "y"
        return LATEX[atom.kind][1 if matrix else 0] % atom.layer

    def _print_Indexed(self, expr):
        atom = self.t.atom(expr.base.label.name if hasattr(expr.base.label, "name") else str(expr.base.label))
        entries = list(expr.indices)
        if self._one_column(atom) and len(entries) == 2 and entries[-1] == 1:
            entries = entries[:1]           # one sample: its column index is not written
        if self.t.spec.notation == "rowvec" and len(entries) == 2:
            entries = entries[::-1]         # the row layout: every two-index quantity is transposed
        indices = [self._print(i) for i in entries]
        if len(entries) >= 3 and all(i.is_Integer for i in entries):
            return f"{self._label(atom, False)}_{{{','.join(indices)}}}"      # K_{1,1,2,3}: numbers apart
        joined = "".join(indices) if all(len(i) == 1 for i in indices) else ",".join(indices)
        return f"{self._label(atom, False)}_{{{joined}}}"

    def _one_column(self, atom) -> bool:
        spec = self.t.spec
        return spec.has_maps and atom.kind in ("z", "a", "h", "d", "u", "zhat", "delta", "y") and \
            (atom.layer is None or spec.map_shape(atom.layer) is None)

    def _print_MatrixSymbol(self, expr):
        return self._label(self.t.atom(expr.name), True)

    def _print_Symbol(self, expr, style="plain"):
        if expr.name == "L":
            return "L"
        if expr.name.startswith("epsilon_"):
            return r"\epsilon"
        if expr.name in INDEX:
            return SEQUENCE_INDEX[expr.name] if self.t.spec.is_sequence and expr.name in SEQUENCE_INDEX else expr.name
        if expr.name == "m" and self.t.spec.is_sequence:
            return "T"
        return super()._print_Symbol(expr, style)

    def _function_name(self, name: str) -> str:
        kind, _, layer = name.partition("_")
        row = self.t.activation(int(layer))
        return row.latex + ("'" if kind == "actprime" else "")

    def _print_Function(self, expr, exp=None):
        name = type(expr).__name__
        if name in FUNCTION_LATEX or name in ("clip", "same", "windowmax"):
            text = self._named(name, expr.args)
            return text if exp is None else r"\left(%s\right)^{%s}" % (text, exp)
        return super()._print_Function(expr, exp)

    def _print_Direct(self, expr):
        return r"\frac{\bar{\partial} %s}{\bar{\partial} %s}" % (self._print(expr.num), self._print(expr.den)) \
            if isinstance(expr.num, (sp.Indexed, sp.Symbol)) else \
            r"\frac{\bar{\partial}}{\bar{\partial} %s}\left(%s\right)" % (self._print(expr.den), self._print(expr.num))

    def _print_Shift(self, expr):
        return "N"

    def _print_Transpose(self, expr):
        if isinstance(expr.arg, Shift):
            return "N^{T}"
        return super()._print_Transpose(expr)

    def _print_OneMatrix(self, expr):
        """A square or wide matrix of ones is the product 1 1^T (it sums and spreads across a row or column)."""
        rows, cols = expr.shape
        if rows != 1 and cols != 1:
            return r"\mathbf{1}\mathbf{1}^{T}"
        return r"\mathbf{1}^{T}" if rows == 1 and cols != 1 else r"\mathbf{1}"

    def _print_Elementwise(self, expr):
        name = expr.function
        if name.startswith("act"):
            return super()._print_Elementwise(expr)
        return self._named(name, [expr.arg], matrix=True)

    def _named(self, name: str, args, matrix: bool = False) -> str:
        inner = ", ".join(self._print(a) for a in args)
        if name == "clip":
            kappa = self._print(sp.Rational(self.t.spec.loss.delta.numerator, self.t.spec.loss.delta.denominator))
            return r"\operatorname{clip}_{\pm %s}\left(%s\right)" % (kappa, inner)
        if name == "exp" and matrix:
            return r"\exp\left(%s\right)" % inner
        if name in ("softmax", "log_softmax"):
            return r"\operatorname{%s}\left(%s\right)" % (name.replace("_", r"\_"), inner)
        if name == "step" and matrix:
            return r"\left[%s > 0\right]" % inner
        if name == "same":
            return r"[%s = %s]" % tuple(self._print(a) for a in args)
        if name == "windowmax":
            total = args[0]
            letters = ", ".join(self._print(lim[0]) for lim in reversed(total.limits))
            high = self._print(total.limits[0][2])
            return r"\max_{1 \le %s \le %s} %s" % (letters, high, self._print(total.function))
        return FUNCTION_LATEX[name] % inner


class Direct(Partial):
    """The direct derivative of a recurrent layer's weighted input by its weights, the state a_(t-1) held
    fixed (printed with a bar; its dependence through the state is carried by the error term of step t-1)."""


class Shift(sp.MatrixExpr):
    """The T x T shift N with N_(t+1, t) = 1: A N^T holds the states a_0 = 0, a_1 .. a_(T-1); Delta N the
    error terms of the next step (0 after the last)."""

    def __new__(cls, size):
        return sp.Basic.__new__(cls, sp.Integer(size) if isinstance(size, int) else size)   # a table size, never text

    @property
    def shape(self):
        return self.args[0], self.args[0]
