"""The SymPy vocabulary of derivations: named network quantities and a few expression classes.

Every quantity (W^l, b^l, z^l, a^l, delta^l, y, L) is a SymPy IndexedBase (index level) or
MatrixSymbol (matrix level) registered in a `Quantities` table, so the printer can apply a
notation and the checker can look up numbers for it. Names are canonical (W_2, delta_1);
what the reader sees comes from the notation profile.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy import OneMatrix
from sympy.matrices.expressions.matexpr import MatrixExpr

from . import rules
from .spec import NetworkSpec

KINDS = ("W", "b", "z", "a", "delta", "y", "L", "acc")


@dataclass(frozen=True)
class Atom:
    kind: str          # one of KINDS
    layer: int | None  # None for y and L
    batch: bool = False  # one column per sample (A, Z, Delta, Y) or per-sample scalar (L_s)


class Partial(sp.Expr):
    """The partial derivative d num / d den of scalar quantities, kept unevaluated."""

    is_commutative = True

    def __new__(cls, num, den):
        return sp.Expr.__new__(cls, num, den)

    @property
    def num(self):
        return self.args[0]

    @property
    def den(self):
        return self.args[1]

    def _eval_subs(self, old, new):  # keep d/d(w_jk) intact when indices are substituted
        return None


class MatPartial(MatrixExpr):
    """dL/dX for a scalar L and a matrix quantity X: a matrix shaped like X."""

    def __new__(cls, num, den):
        return sp.Basic.__new__(cls, num, den)

    @property
    def shape(self):
        return self.args[1].shape

    @property
    def num(self):
        return self.args[0]

    @property
    def den(self):
        return self.args[1]


class Elementwise(MatrixExpr):
    """f applied to every entry of a matrix: sigma(z^l), sigma'(z^l)."""

    def __new__(cls, function, arg):
        name = function if isinstance(function, sp.Symbol) else sp.Symbol(function)
        return sp.Basic.__new__(cls, name, arg)

    @property
    def function(self) -> str:
        return self.args[0].name

    @property
    def arg(self):
        return self.args[1]

    @property
    def shape(self):
        return self.args[1].shape


class Diag(MatrixExpr):
    """The square diagonal matrix with the column vector v on its diagonal."""

    def __new__(cls, vector):
        return sp.Basic.__new__(cls, vector)

    @property
    def vector(self):
        return self.args[0]

    @property
    def shape(self):
        rows, cols = self.args[0].shape
        n = rows if cols == 1 else cols      # a column or a row vector
        return (n, n)


def index(name: str) -> sp.Symbol:
    return sp.Symbol(name, integer=True, positive=True)


# The general layer l: a derivation written once for every layer of a group, then instantiated and
# checked at each of them (W^{l+1} at l = 2 is W^3).
GENERAL = sp.Symbol("l", integer=True, positive=True)


def is_general(layer) -> bool:
    return isinstance(layer, sp.Basic) and layer.has(GENERAL)


def layer_tag(layer) -> str:
    """The layer part of a quantity's canonical name: '2', or 'l+1' for the general layer."""
    return str(layer).replace(" ", "")


def prime(function: str) -> str:
    return function + "_prime"


class Quantities:
    """The named quantities of one network, at index and matrix level."""

    def __init__(self, spec: NetworkSpec):
        from .notation import profile

        self.spec = spec
        self.depth = spec.depth
        chosen = profile(spec.notation, spec.symbols)
        self.index_order, self.layout, self.residual = chosen.index_order, chosen.layout, chosen.residual
        self.sizes = tuple(sp.Integer(s) if isinstance(s, int) else sp.Symbol(s, integer=True, positive=True)
                           for s in spec.sizes)
        self.samples = (sp.Integer(spec.samples) if isinstance(spec.samples, int)
                        else sp.Symbol(spec.samples, integer=True, positive=True))
        self.atoms: dict[str, Atom] = {}
        self.functions: dict[str, rules.Activation] = {}
        self.layer_function: list[str] = [""]
        for layer in spec.layers:
            row = rules.activation(layer.activation, sp.Rational(layer.slope.numerator, layer.slope.denominator)
                                   if layer.slope is not None else None)
            name = layer.activation
            if layer.activation == "leaky_relu" and layer.slope is not None:
                name = f"leaky_relu__{layer.slope.numerator}_{layer.slope.denominator}"
            self.functions[name] = row
            self.layer_function.append(name)
        self.loss = sp.Symbol("L")
        self.atoms["L"] = Atom("L", None)
        self._bases: dict[str, object] = {}
        self.representative: int | None = None     # the concrete layer whose kind the general layer l has
        self.general_sizes: dict[sp.Symbol, sp.Expr] = {}   # n_{l+1} -> l + 1

    # ----------------------------------------------------------------- layers
    def concrete_layer(self, layer) -> int:
        """The layer whose activation and bias stand for `layer` (itself, or l's representative)."""
        if not is_general(layer):
            return int(layer)
        if self.representative is None:
            raise ValueError("the general layer l needs a representative layer")
        return int(layer.subs(GENERAL, self.representative))

    def size(self, layer):
        """The unit count of a layer: a number or symbol, or n_{l+1} for the general layer."""
        if not is_general(layer):
            return self.sizes[int(layer)]
        symbol = sp.Symbol(f"n_{layer_tag(layer)}", integer=True, positive=True)
        self.general_sizes[symbol] = layer
        return symbol

    def layer_spec(self, layer):
        return self.spec.layers[self.concrete_layer(layer) - 1]

    def function_name(self, layer) -> str:
        return self.layer_function[self.concrete_layer(layer)]

    # ----------------------------------------------------------------- registration
    def _base(self, name: str, atom: Atom, factory):
        if name not in self._bases:
            self._bases[name] = factory()
            self.atoms[name] = atom
        return self._bases[name]

    def entry(self, kind: str, layer: int | None = None, batch: bool = False) -> sp.IndexedBase:
        """The IndexedBase of a quantity: w[j, k], a[j] (a[j, s] when batch)."""
        if kind == "a" and layer == self.depth + 1:
            raise ValueError("no layer above the output")
        name = (f"{kind}_{layer_tag(layer)}" if layer is not None else kind) + ("_s" if batch else "")
        return self._base(name, Atom(kind, layer, batch), lambda: sp.IndexedBase(name))

    def matrix(self, kind: str, layer: int | None = None, batch: bool = False) -> sp.MatrixSymbol:
        """W^l (n_l x n_{l-1}), b^l, z^l, a^l, delta^l (n_l x 1) or their batch forms (n_l x m)."""
        rows, cols = self.shape(kind, layer, batch)
        name = (f"M{kind}_{layer_tag(layer)}" if layer is not None else f"M{kind}") + ("_batch" if batch else "")
        return self._base(name, Atom(kind, layer, batch), lambda: sp.MatrixSymbol(name, rows, cols))

    def shape(self, kind: str, layer: int | None, batch: bool = False):
        """Shapes follow the layout: W is n_l x n_{l-1} in column layout, n_{l-1} x n_l otherwise;
        vectors are columns (one column per sample) or, in row layout, rows (one row per sample)."""
        width = self.samples if batch else sp.Integer(1)
        if kind in ("W", "acc"):
            to_from = (self.size(layer), self.size(layer - 1))
            return to_from if self.layout == "column" else to_from[::-1]
        n = self.sizes[-1] if kind == "y" else self.size(layer)
        if kind == "b":
            width = sp.Integer(1)
        return (width, n) if self.layout == "row" else (n, width)

    def sample_loss(self) -> sp.IndexedBase:
        """L_s, the loss of sample s."""
        return self.entry("L", None, batch=True)

    def atom(self, base) -> Atom:
        name = base.name if hasattr(base, "name") else str(base)
        return self.atoms[name]

    # ------------------------------------------------------------------- functions
    def f(self, layer):
        return sp.Function(self.function_name(layer))

    def f_prime(self, layer):
        return sp.Function(prime(self.function_name(layer)))

    def activation(self, layer) -> rules.Activation:
        return self.functions[self.function_name(layer)]

    # ------------------------------------------------------------- instances of l
    def instance_map(self, at: int) -> dict:
        """Every quantity and size of the general layer l mapped to its instance at layer `at`."""
        mapping = {}
        for name, base in list(self._bases.items()):
            atom = self.atoms[name]
            if atom.layer is None or not is_general(atom.layer):
                continue
            layer = int(atom.layer.subs(GENERAL, at))
            if not 0 <= layer <= self.depth:
                continue            # a quantity of another topic's general layer, with no instance here
            make = self.matrix if isinstance(base, sp.MatrixSymbol) else self.entry
            mapping[base] = make(atom.kind, layer, atom.batch)
        for symbol, layer in self.general_sizes.items():
            layer = int(layer.subs(GENERAL, at))
            if 0 <= layer <= self.depth:
                mapping[symbol] = self.sizes[layer]
        return mapping

    def batch_form(self, expr):
        """A per-sample matrix expression with every vector of one sample replaced by its batch matrix
        (and its all-ones vectors widened), in one replacement so every sum keeps one shape."""
        mapping = {}
        for name, base in list(self._bases.items()):
            atom = self.atoms[name]
            if isinstance(base, sp.MatrixSymbol) and atom.kind in ("a", "z", "delta", "y") and not atom.batch:
                mapping[base] = self.matrix(atom.kind, atom.layer, True)
        for ones in expr.atoms(OneMatrix):
            rows, cols = ones.shape
            mapping[ones] = OneMatrix(self.samples, cols) if self.layout == "row" else OneMatrix(rows, self.samples)
        return expr.xreplace(mapping)

    def function_row(self, name: str) -> tuple[rules.Activation, bool]:
        """(row, is_derivative) for a function name used in an expression."""
        if name.endswith("_prime"):
            return self.functions[name[: -len("_prime")]], True
        return self.functions[name], False
