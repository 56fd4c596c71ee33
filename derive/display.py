"""What a library user and a notebook see: gradients, steps and results in the spec's notation.

Everything here prints through the one printer (printing.DerivePrinter) and writes prose through
the one Jinja environment; nothing shows SymPy's internal names (Mdelta_1).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .errors import DeriveError
from .notation import PROFILES, Notation, profile


@dataclass(frozen=True)
class Gradient:
    """dL/dparameter as derived: `expr` is the SymPy expression (matrix form, batch form for a batch)."""

    parameter: str                   # the result's name: W1, b2
    expr: sp.Basic
    result: object = field(repr=False, compare=False)

    @property
    def latex(self) -> str:
        return latex(self)

    def equation(self, notation: str | None = None, relation: str = " = ") -> str:
        """dL/dW^l = ..., as the document's summary writes it (relation " &= " for an aligned row)."""
        result = self.result
        printer = _printer(result, notation)
        q = result.quantities
        kind, layer = self.parameter[0], int(self.parameter[1:])
        return (rf"\frac{{\partial {printer.n.loss}}}{{\partial {printer.doprint(q.matrix(kind, layer))}}}" + relation
                + printer.doprint(self.expr))

    def __str__(self) -> str:
        return self.equation()

    def __repr__(self) -> str:
        return f"<Gradient {self.equation()}>"

    def _repr_latex_(self) -> str:
        return f"$\\displaystyle {self.equation()}$"


def _notation(spec, notation: str | None) -> Notation:
    """The spec's notation, or another profile that lays the matrices out the same way (the transposes
    of a derivation depend on the layout, so only the names may change)."""
    own = profile(spec.notation, spec.symbols)
    if notation is None:
        return own
    if notation not in PROFILES:
        raise DeriveError(f"notation {notation!r}; accepted: {', '.join(PROFILES)}")
    other = profile(notation, ())
    if (other.index_order, other.layout) != (own.index_order, own.layout):
        raise DeriveError(f"notation {notation!r} orders weight indices {other.index_order} with the {other.layout} "
                          f"layout, but this derivation was made for {own.index_order}, {own.layout} "
                          f"(notation {own.name}): derive the spec with notation: {notation} instead")
    return other


def _printer(result, notation: str | None = None):
    from .printing import DerivePrinter

    return DerivePrinter(result.quantities, _notation(result.spec, notation))


def latex(obj, notation: str | None = None, result=None) -> str:
    """LaTeX in the spec's notation for a gradient, a step, a derivation or a whole result.

    A Gradient prints as its expression (`\\delta^{(2)} x^{T}`); a Derivation as an aligned chain; a
    NetworkDerivation as the summary of every gradient; a Step or a bare SymPy expression needs
    `result=` (the derivation it belongs to). `notation` renames (e.g. 'nielsen') where the layout
    allows it.
    """
    from .engine import NetworkDerivation
    from .render import aligned_chain
    from .steps import Derivation, Step

    if isinstance(obj, Gradient):
        return _printer(obj.result, notation).doprint(obj.expr)
    if isinstance(obj, Derivation):
        return aligned_chain(obj, obj.quantities, _notation(obj.quantities.spec, notation))
    if isinstance(obj, NetworkDerivation):
        rows = [obj.gradient(name).equation(notation, " &= ") for name in obj.parameters]
        return r"\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}"
    if result is None:
        raise DeriveError(f"latex(): a {type(obj).__name__} needs result= (the derivation it comes from)")
    printer = _printer(result, notation)
    if isinstance(obj, Step):
        return printer.doprint(obj.lhs) + " = " + printer.doprint(obj.rhs)
    if isinstance(obj, sp.Basic):
        return printer.doprint(obj)
    raise DeriveError(f"latex(): cannot print a {type(obj).__name__}; accepted: a Gradient, Step, Derivation, "
                      "NetworkDerivation or SymPy expression")


def markdown(obj, lang: str = "en") -> str:
    """Markdown with $…$ math (Jupyter, GitHub): a result's network, forward pass and gradients, or a
    derivation's steps, each with its justification in words."""
    from .engine import NetworkDerivation
    from .render import document_context, environment
    from .steps import Derivation

    if isinstance(obj, NetworkDerivation):
        context = document_context(obj, None, lang)
        return environment().get_template("notebook/result.md.j2").render(summary=latex(obj), **context)
    if isinstance(obj, Derivation):
        result = _result_of(obj)
        context = document_context(result, None, lang)
        return environment().get_template("notebook/derivation.md.j2").render(derivation=obj, **context)
    raise DeriveError(f"markdown(): cannot write a {type(obj).__name__}; accepted: a result or a derivation")


def _result_of(derivation):
    """The result a derivation belongs to (it keeps its quantities, which keep the spec)."""
    from .engine import NetworkDerivation

    q = derivation.quantities
    return NetworkDerivation(q.spec, q, (), (derivation,))
