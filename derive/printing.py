"""The one LaTeX printer: notation, partial-derivative fractions, the Hadamard product, deltas."""
from __future__ import annotations

import re

import sympy as sp
from sympy.printing.latex import LatexPrinter

from .algebra import Elementwise, Partial, Quantities
from .notation import Notation

INDEX_LETTERS = ("i", "j", "k", "p", "s")
SAFE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
GREEK = {"alpha", "beta", "gamma", "lambda", "mu", "eta", "theta", "kappa", "rho", "tau", "nu", "epsilon"}


def safe_symbol(name: str) -> str:
    """User-chosen names (sizes, lambda) reach LaTeX only in this whitelisted form."""
    base, _, sub = name.partition("_")
    trailing = re.fullmatch(r"([A-Za-z]+)([0-9]+)", base)
    if trailing and not sub:           # w0 is w_0
        base, sub = trailing.groups()
    if not SAFE_NAME.match(base) or (sub and not re.match(r"^[A-Za-z0-9]+$", sub.replace("_", ""))):
        raise ValueError(f"unsafe symbol name {name!r}")
    head = "\\" + base if base in GREEK else base if len(base) == 1 else r"\mathit{" + base + "}"
    return head + (f"_{{{sub.replace('_', '')}}}" if sub else "")


class DerivePrinter(LatexPrinter):
    printmethod = "_derive_latex"

    def __init__(self, quantities: Quantities, notation: Notation):
        super().__init__({"mul_symbol": None, "fold_short_frac": False, "order": "none"})
        self.q, self.n = quantities, notation

    # ------------------------------------------------------------------ quantities
    def _labels(self, entry: bool) -> bool:
        """Rashid leaves entries of a one-layer net unlabelled (j and k tell the layers apart);
        vectors and matrices keep their labels so input and output are never confused."""
        return self.n.layer_labels == "always" or self.q.depth > 1 or not entry or self._numbered

    _numbered = False        # printing a written-out entry (o_1): its label must tell the layer

    def _sup(self, base: str, layer: int, node: bool, entry: bool = True) -> str:
        return f"{base}^{{{self.n.label(layer, node)}}}" if self._labels(entry) else base

    def _name(self, kind: str, layer, batch: bool, entry: bool) -> str:
        n = self.n
        if kind == "L":
            return n.loss
        if kind == "y":
            return n.batch_target if batch else n.target
        if kind == "a" and layer == 0:
            name = n.batch_input if batch else n.input
            clash = name == (n.batch_act if batch else n.act)    # Rashid's o: label the input layer too
            return self._sup(name, 0, node=True, entry=entry) if clash else name
        if kind == "a" and layer == self.q.depth and n.output and not batch and self.q.sizes[-1] == 1:
            return n.output                 # a name such as y_out is for a single output unit
        if kind in ("W", "b", "acc"):
            base = {"W": n.weight if entry else n.weights, "b": n.bias, "acc": n.accumulator}[kind]
            return self._sup(base, layer, node=False, entry=entry)
        base = {"z": n.batch_pre if batch else n.pre, "a": n.batch_act if batch else n.act,
                "delta": n.batch_delta if batch else n.delta}[kind]
        return self._sup(base, layer, node=True, entry=entry)

    def _print_Indexed(self, expr):
        atom = self.q.atom(expr.base.label)
        # Unlabelled entries (Rashid's one-layer o_j, o_k) are told apart by their index letters; a
        # written-out entry such as o_1 has no letter to tell, so it keeps its label.
        self._numbered = any(i.is_Integer for i in expr.indices)
        try:
            name = self._name(atom.kind, atom.layer, atom.batch, entry=True)
        finally:
            self._numbered = False
        indices = [self._print(i) for i in expr.indices]
        if atom.kind == "L":
            return f"{name}^{{({indices[0]})}}"
        if atom.kind == "b" and self.n.bias_folded:      # Ng: the bias is column 0 of Theta
            indices = [indices[0], "0"]
        if atom.kind == "a" and atom.layer == self.q.depth and self.n.output and self.q.sizes[-1] == 1:
            return name                                     # one output: y_out, no index
        if atom.batch and len(indices) == 2 and self.q.layout == "row":
            indices = indices[::-1]                         # samples are rows: entry (s, j)
        joined = "".join(indices) if all(len(i) == 1 for i in indices) else ",".join(indices)
        return f"{name}_{{{joined}}}"

    def _print_MatrixSymbol(self, expr):
        atom = self.q.atom(expr.name)
        name = self._name(atom.kind, atom.layer, atom.batch, entry=False)
        if atom.kind == "b" and self.n.bias_folded:
            return name + r"_{\cdot 0}"
        return name

    def _print_Symbol(self, expr, style="plain"):
        if expr.name == "L":
            return self.n.loss
        if expr.name == "L_data":
            return self.n.loss + r"_{\mathrm{data}}"
        if expr.name in INDEX_LETTERS and expr.is_integer:
            return self.n.index_name(expr.name)
        layer = self.q.general_sizes.get(expr) if self.q is not None else None
        if layer is not None:           # the unit count of the general layer: n_{l+1}
            return f"{self.n.size}_{{{str(layer + self.n.node_shift).replace(' ', '')}}}"
        return safe_symbol(expr.name)

    def _print_Pow(self, expr, *args, **kwargs):
        if isinstance(expr.base, (sp.Indexed, Partial)) and expr.exp.is_Integer and expr.exp > 0:
            return r"\left(%s\right)^{%s}" % (self._print(expr.base), self._print(expr.exp))
        return super()._print_Pow(expr, *args, **kwargs)

    def _print_Partial(self, expr):
        num, den = self._print(expr.num), self._print(expr.den)
        if isinstance(expr.num, (sp.Indexed, sp.Symbol)):
            return r"\frac{\partial %s}{\partial %s}" % (num, den)
        return r"\frac{\partial}{\partial %s}\left(%s\right)" % (den, num)

    def _print_MatAdd(self, expr):
        # constants first, so 1 - a reads as textbooks write it
        def rank(t):
            if isinstance(t, (sp.OneMatrix, sp.Identity)):
                return 0
            return 2 if isinstance(t, sp.MatMul) and t.args[0].is_number and t.args[0] < 0 else 1
        terms = sorted(expr.args, key=rank)
        out = ""
        for number, term in enumerate(terms):
            negative = isinstance(term, sp.MatMul) and term.args[0].is_number and term.args[0] < 0
            if negative:
                coeff = -term.args[0]
                rest = sp.MatMul(*term.args[1:]) if len(term.args) > 2 else term.args[1]
                body = self._print(rest) if coeff == 1 else self._print(coeff) + " " + self._factor(rest)
                out += " - " + body
            else:
                out += ("" if number == 0 else " + ") + self._print(term)
        return out.lstrip()

    def _print_Mul(self, expr):
        """1/m before a sum, as (1/m) sum_s ..., rather than a fraction over the whole sum."""
        coeff, rest = [], []
        for factor in expr.args:
            if factor.is_Rational or (isinstance(factor, sp.Pow) and factor.exp == -1 and factor.base.is_Symbol):
                coeff.append(factor)
            else:
                rest.append(factor)
        if coeff and any(isinstance(f, sp.Sum) for f in rest):
            c = sp.Mul(*coeff)
            num, den = sp.fraction(c)
            sign = "- " if c.could_extract_minus_sign() else ""
            head = r"\frac{%s}{%s}" % (self._print(abs(num) if num.is_number else num), self._print(den)) if den != 1 else self._print(abs(num))
            body = " ".join(self._factor_scalar(f) for f in rest)
            return sign + (head + " " if head != "1" else "") + body
        return super()._print_Mul(expr)

    def _factor_scalar(self, f):
        text = self._print(f)
        return r"\left(%s\right)" % text if isinstance(f, sp.Add) else text

    def _print_Add(self, expr, order=None):
        """SymPy's usual order, but positive terms first: t - o rather than -o + t."""
        terms = expr.as_ordered_terms()
        ordered = [t for t in terms if not t.could_extract_minus_sign()] + \
                  [t for t in terms if t.could_extract_minus_sign()]
        return super()._print_Add(sp.Add(*ordered, evaluate=False))

    def _print_MatMul(self, expr):
        coeff = sp.Mul(*[a for a in expr.args if a.is_number])
        parts = []
        if coeff == -1:
            parts.append("-")
        elif coeff != 1:
            parts.append(self._print(coeff))
        for arg in [a for a in expr.args if not a.is_number]:
            text = self._print(arg)
            if isinstance(arg, sp.OneMatrix) and arg.shape[0] == 1 and arg.shape[1] != 1:
                text = r"\mathbf{1}^{%s}" % self.n.transpose        # summing rows: 1^T Delta
            if isinstance(arg, (sp.MatAdd, sp.HadamardProduct, sp.MatMul, sp.Add)):
                text = r"\left(%s\right)" % text
            parts.append(text)
        return " ".join(parts)

    def _print_Sum(self, expr):
        """One \\sum per index, outermost first (never SymPy's \\substack, which a reader of the
        printed line would have to unpack); a sum over a single value is its one term."""
        expr = one_term(expr)
        if not isinstance(expr, sp.Sum):
            return self._print(expr)
        if len(expr.limits) > 1:
            return self.sum_head(expr.limits[0]) + " " + self._print(sp.Sum(expr.function, *expr.limits[1:]))
        return super()._print_Sum(expr)

    def sum_head(self, limit) -> str:
        var, low, high = limit
        return r"\sum_{%s=%s}^{%s}" % (self._print(var), self._print(low), self._print(high))

    def _print_MatPartial(self, expr):
        return r"\frac{\partial %s}{\partial %s}" % (self._print(expr.num), self._print(expr.den))

    def _print_KroneckerDelta(self, expr, exp=None):
        """The Iverson bracket [i = j], so the Kronecker delta is never confused with the error term."""
        i, j = (self._print(a) for a in expr.args)
        return r"[%s = %s]" % (i, j)

    # ------------------------------------------------------------------- functions
    def _function_name(self, name: str) -> str:
        row, derivative = self.q.function_row(name)
        return (self.n.function_name(row.name) or row.latex) + ("'" if derivative else "")

    def _print_Function(self, expr, exp=None):
        if isinstance(expr, sp.core.function.AppliedUndef):
            text = r"%s(%s)" % (self._function_name(type(expr).__name__), self._print(expr.args[0]))
            return text if exp is None else r"\left(%s\right)^{%s}" % (text, exp)
        return super()._print_Function(expr, exp)

    def _print_Elementwise(self, expr):
        return r"%s(%s)" % (self._function_name(expr.function), self._print(expr.arg))

    def _print_Diag(self, expr):
        return r"\operatorname{diag}\left(%s\right)" % self._print(expr.vector)

    def _print_OneMatrix(self, expr):
        return r"\mathbf{1}"

    def _print_Identity(self, expr):
        """SymPy turns a 1 x 1 matrix of ones into the identity; entry by entry it is the same 1."""
        return r"\mathbf{1}" if expr.shape == (1, 1) else r"I_{%s}" % self._print(expr.shape[0])

    def _print_Transpose(self, expr):
        inner = self._print(expr.arg)
        if not isinstance(expr.arg, sp.MatrixSymbol) or "^" in inner:
            inner = r"\left(%s\right)" % inner
        return r"%s^{%s}" % (inner, self.n.transpose)

    def _print_HadamardProduct(self, expr):
        numer, denom = [], []
        flat = []
        for arg in expr.args:     # the Hadamard product is associative: no nested parentheses
            flat += list(arg.args) if isinstance(arg, sp.HadamardProduct) else [arg]
        for arg in flat:
            if isinstance(arg, Elementwise) and arg.function == "reciprocal":
                denom.append(arg.arg)
            else:
                numer.append(arg)
        parts = [self._factor(a) for a in numer] or [r"\mathbf{1}"]
        text = r" \odot ".join(parts)
        for d in denom:
            text += r" \oslash " + self._factor(d)
        return text

    def _print_HadamardPower(self, expr):
        if expr.exp == 2:
            base = self._factor(expr.base)
            return rf"{base} \odot {base}"
        return r"%s^{\circ %s}" % (self._factor(expr.base), self._print(expr.exp))

    def _factor(self, arg):
        text = self._print(arg)
        if isinstance(arg, (sp.MatAdd, sp.HadamardProduct, sp.MatMul)):
            return r"\left(%s\right)" % text
        return text


def one_term(expr):
    """A sum whose index runs over one value (a layer of one unit) written as that term: the limits
    that run from a number to the same number are substituted away."""
    if not isinstance(expr, sp.Sum):
        return expr
    body, kept = expr.function, []
    for var, low, high in expr.limits:
        if low.is_Integer and high.is_Integer and low == high:
            body = body.xreplace({var: low})
        else:
            kept.append((var, low, high))
    return sp.Sum(body, *kept) if kept else body


def latex(expr, quantities: Quantities, notation: Notation) -> str:
    return DerivePrinter(quantities, notation).doprint(expr)
