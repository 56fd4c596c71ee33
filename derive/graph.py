"""Scalar computation graphs with forward values and backward gradients (the figures of 002_*.txt).

An expression becomes a graph of primitive gates from a rule table; every gate knows its value
and its local derivative. Variables are shared nodes, so a variable used twice adds up the
gradient from both uses. The backward pass is cross-checked against SymPy's symbolic gradient.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from .errors import DeriveError
from .expr import Node, parse, variables


@dataclass(frozen=True)
class Gate:
    """A primitive gate: forward f(inputs; c) and the local derivatives d out / d input_i."""

    op: str
    arity: int
    forward: Callable
    local: Callable               # (inputs, out, c) -> tuple of partials
    label: str                    # LaTeX for the node, with {c} for a constant
    rule: str                     # LaTeX of the local rule
    domain: Callable | None = None   # (inputs, c) -> error text or None


def _pow_domain(x, c):
    if x[0] < 0 and not float(c).is_integer():
        return f"a negative number to the power {c}"
    if x[0] == 0 and c < 0:
        return "zero to a negative power"
    return None


GATES: dict[str, Gate] = {g.op: g for g in (
    Gate("add", 2, lambda x, c: x[0] + x[1], lambda x, o, c: (1.0, 1.0), "+", r"\partial(a+b)/\partial a = 1"),
    Gate("sub", 2, lambda x, c: x[0] - x[1], lambda x, o, c: (1.0, -1.0), "-", r"\partial(a-b)/\partial b = -1"),
    Gate("mul", 2, lambda x, c: x[0] * x[1], lambda x, o, c: (x[1], x[0]), r"\times", r"\partial(ab)/\partial a = b"),
    Gate("div", 2, lambda x, c: x[0] / x[1], lambda x, o, c: (1 / x[1], -x[0] / x[1] ** 2), r"\div",
         r"\partial(a/b)/\partial b = -a/b^2", lambda x, c: "division by zero" if x[1] == 0 else None),
    Gate("add_const", 1, lambda x, c: c + x[0], lambda x, o, c: (1.0,), "{c} + x", r"\partial(c+x)/\partial x = 1"),
    Gate("mul_const", 1, lambda x, c: c * x[0], lambda x, o, c: (c,), r"{c} \cdot x", r"\partial(ax)/\partial x = a"),
    Gate("pow_const", 1, lambda x, c: x[0] ** c, lambda x, o, c: (c * x[0] ** (c - 1),), "x^{{{c}}}",
         r"\partial x^c/\partial x = c\,x^{c-1}", _pow_domain),
    Gate("const_pow", 1, lambda x, c: c ** x[0], lambda x, o, c: (o * math.log(c),), "{c}^x",
         r"\partial c^x/\partial x = c^x \ln c", lambda x, c: "a power of a non-positive base" if c <= 0 else None),
    Gate("pow", 2, lambda x, c: x[0] ** x[1], lambda x, o, c: (x[1] * x[0] ** (x[1] - 1), o * math.log(x[0])),
         "x^y", r"\partial x^y/\partial y = x^y \ln x", lambda x, c: "a power of a non-positive base" if x[0] <= 0 else None),
    Gate("recip", 1, lambda x, c: 1 / x[0], lambda x, o, c: (-1 / x[0] ** 2,), "1/x", r"\partial(1/x)/\partial x = -1/x^2",
         lambda x, c: "division by zero" if x[0] == 0 else None),
    Gate("neg", 1, lambda x, c: -x[0], lambda x, o, c: (-1.0,), "-x", r"\partial(-x)/\partial x = -1"),
    Gate("exp", 1, lambda x, c: math.exp(x[0]), lambda x, o, c: (o,), "e^x", r"\partial e^x/\partial x = e^x"),
    Gate("log", 1, lambda x, c: math.log(x[0]), lambda x, o, c: (1 / x[0],), r"\log x", r"\partial \log x/\partial x = 1/x",
         lambda x, c: "the logarithm of a number that is not positive" if x[0] <= 0 else None),
    Gate("sqrt", 1, lambda x, c: math.sqrt(x[0]), lambda x, o, c: (0.5 / o,), r"\sqrt{x}",
         r"\partial \sqrt{x}/\partial x = 1/(2\sqrt{x})", lambda x, c: "the square root of a number that is not positive"
         if x[0] <= 0 else None),
    Gate("sigmoid", 1, lambda x, c: 1 / (1 + math.exp(-x[0])) if x[0] > -700 else 0.0, lambda x, o, c: (o * (1 - o),),
         r"\sigma", r"\sigma' = \sigma(1-\sigma)"),
    Gate("tanh", 1, lambda x, c: math.tanh(x[0]), lambda x, o, c: (1 - o * o,), r"\tanh", r"\tanh' = 1-\tanh^2"),
    Gate("relu", 1, lambda x, c: max(x[0], 0.0), lambda x, o, c: (1.0 if x[0] > 0 else 0.0,), r"\mathrm{ReLU}",
         r"\mathrm{ReLU}'(x) = [x > 0]\ \text{(0 at 0)}"),
    Gate("max", 2, lambda x, c: max(x[0], x[1]), lambda x, o, c: (1.0, 0.0) if x[0] >= x[1] else (0.0, 1.0), r"\max",
         r"\partial \max(a,b)/\partial a = [a \ge b]"),
    Gate("max_const", 1, lambda x, c: max(x[0], c), lambda x, o, c: (1.0 if x[0] >= c else 0.0,), r"\max({c}, x)",
         r"\partial \max(c,x)/\partial x = [x \ge c]"),
)}


@dataclass
class GraphNode:
    id: int
    op: str                        # 'input' or a gate
    inputs: tuple[int, ...] = ()
    const: float | None = None
    name: str | None = None        # for inputs
    value: float = 0.0
    grad: float = 0.0
    local: tuple[float, ...] = ()  # d value / d input_i
    upstream: float = 0.0          # d f / d value, once all uses are summed (= grad)


@dataclass
class Graph:
    nodes: list[GraphNode] = field(default_factory=list)
    output: int = -1
    expression: Node | None = None
    point: dict[str, float] = field(default_factory=dict)
    check_error: float = 0.0       # max |backward - SymPy| over the inputs

    def inputs(self) -> list[GraphNode]:
        return [n for n in self.nodes if n.op == "input"]

    def to_json(self) -> dict:
        out = self.nodes[self.output]
        return {"output": {"value": out.value},
                "inputs": {n.name: {"value": n.value, "grad": n.grad} for n in self.inputs()},
                "nodes": [{"id": n.id, "op": n.op if n.op != "input" else "input", "inputs": list(n.inputs),
                           **({"const": n.const} if n.const is not None else {}),
                           **({"name": n.name} if n.name else {}), "value": n.value, "grad": n.grad}
                          for n in self.nodes]}


class _Builder:
    def __init__(self, gates: bool):
        self.gates, self.graph, self.variables = gates, Graph(), {}

    def node(self, op, inputs=(), const=None, name=None) -> int:
        n = GraphNode(len(self.graph.nodes), op, tuple(inputs), const, name)
        self.graph.nodes.append(n)
        return n.id

    def build(self, e: Node):
        """Returns a node id, or ('const', value) for a constant subexpression."""
        if e.op == "number":
            return ("const", e.value)
        if e.op == "variable":
            if e.name not in self.variables:
                self.variables[e.name] = self.node("input", name=e.name)
            return self.variables[e.name]
        args = [self.build(a) for a in e.args]
        consts = [isinstance(a, tuple) for a in args]
        if all(consts):
            value = _fold(e.op, [a[1] for a in args])
            return ("const", value)
        op = e.op
        if op in ("add", "sub", "mul", "div", "max", "pow") and any(consts):
            return self._with_constant(op, args)
        if self.gates:
            return self._elementary(op, args)
        return self.node(op, args)

    def _with_constant(self, op, args):
        (i, node), (j, c) = ((0, args[0]), (1, args[1][1])) if isinstance(args[1], tuple) else ((1, args[1]), (0, args[0][1]))
        if op == "add":
            return self.node("add_const", [node], c)
        if op == "sub":
            return self.node("add_const", [node], -c) if i == 0 else self.node("add_const", [self.node("mul_const", [node], -1.0)], c)
        if op == "mul":
            return self.node("mul_const", [node], c)
        if op == "div":
            if i == 0:
                if c == 0:
                    raise DeriveError("expression: division by the constant 0")
                return self.node("mul_const", [node], 1 / c)
            recip = self.node("recip", [node])
            return recip if c == 1 else self.node("mul_const", [recip], c)
        if op == "max":
            return self.node("max_const", [node], c)
        return self.node("pow_const", [node], c) if i == 0 else self.node("const_pow", [node], c)

    def _elementary(self, op, args):
        """--gates: compound functions into the elementary gates of 002 (1/x, c + x, e^x, a x)."""
        if op == "sigmoid":
            return self.node("recip", [self.node("add_const", [self.node("exp", [self.node("mul_const", args, -1.0)])], 1.0)])
        if op == "div":
            return self.node("mul", [args[0], self.node("recip", [args[1]])])
        if op == "sub":
            return self.node("add", [args[0], self.node("mul_const", [args[1]], -1.0)])
        if op == "neg":
            return self.node("mul_const", args, -1.0)
        if op == "sqrt":
            return self.node("pow_const", args, 0.5)
        return self.node(op, args)


def _fold(op, values):
    gate = {"neg": "neg", "exp": "exp", "log": "log", "sqrt": "sqrt", "sigmoid": "sigmoid", "tanh": "tanh",
            "relu": "relu", "add": "add", "sub": "sub", "mul": "mul", "div": "div", "max": "max", "pow": "pow"}[op]
    return _apply(GATES[gate], values, None, "a constant")


def _apply(gate: Gate, inputs, c, where):
    if gate.domain:
        problem = gate.domain(inputs, c)
        if problem:
            raise DeriveError(f"at the given point, {where} takes {problem}")
    try:
        value = gate.forward(inputs, c)
    except (OverflowError, ZeroDivisionError, ValueError) as exc:
        raise DeriveError(f"at the given point, {where} cannot be computed ({exc})") from None
    if isinstance(value, complex) or not math.isfinite(value):
        raise DeriveError(f"at the given point, {where} overflows or is not a real number")
    return float(value)


def build(text: str, point: dict[str, float], gates: bool = False, option: str = "--at") -> Graph:
    """option: how the values were given, for messages (the command line's --at; the web page's "")."""
    expression = parse(text)
    check_point(variables(expression), point, option)
    builder = _Builder(gates)
    top = builder.build(expression)
    if isinstance(top, tuple):
        raise DeriveError("expression: it is a constant; a graph needs at least one variable")
    graph = builder.graph
    graph.output, graph.expression, graph.point = top, expression, dict(point)
    _forward(graph)
    _backward(graph)
    graph.check_error = _sympy_check(graph)
    return graph


def _natural(name: str):
    """w2 before w10."""
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def check_point(names: list[str], point: dict[str, float], option: str = "--at") -> None:
    """Every variable of the expression has a value and every value names a variable: all the problems
    in one message (each on a line of its own when there are both kinds)."""
    flag = f"{option} " if option else ""
    names = sorted(names, key=_natural)
    missing = [n for n in names if n not in point]
    extra = sorted((n for n in point if n not in names), key=_natural)
    problems = []
    if missing:
        how = f"with {option} NAME=NUMBER" if option else "as NAME=NUMBER"
        problems.append(f"no value for {', '.join(missing)} (give each {how})")
    if extra:
        given = ", ".join(f"{flag}{n}={point[n]:g}" for n in extra)
        which = f"variable {extra[0]}" if len(extra) == 1 else f"variables {', '.join(extra)}"
        known = f"its variables are {', '.join(names)}" if names else "it has no variables at all"
        problems.append(f"{given}: the expression has no {which}; {known}")
    if len(problems) == 1:
        raise DeriveError(problems[0])
    if problems:
        raise DeriveError(f"the values given{' with ' + option if option else ''} do not fit the expression:\n"
                          + "\n".join(f"  {p}" for p in problems))


def _forward(graph: Graph):
    for n in graph.nodes:             # nodes are created after their inputs: already in order
        if n.op == "input":
            n.value = float(graph.point[n.name])
            continue
        gate = GATES[n.op]
        inputs = [graph.nodes[i].value for i in n.inputs]
        n.value = _apply(gate, inputs, n.const, f"node {n.id} ({n.op})")
        try:
            n.local = tuple(float(d) for d in gate.local(inputs, n.value, n.const))
        except (OverflowError, ZeroDivisionError, ValueError):
            n.local = (math.inf,)
        if not all(math.isfinite(d) for d in n.local):
            raise DeriveError(f"at the given point, the derivative of node {n.id} ({n.op}) is infinite or not a "
                              "number (e.g. the square root or x^0.5 at 0); choose another point")


def _backward(graph: Graph):
    for n in graph.nodes:
        n.grad = 0.0
    graph.nodes[graph.output].grad = 1.0
    for n in reversed(graph.nodes):
        n.upstream = n.grad
        for i, d in zip(n.inputs, n.local):
            graph.nodes[i].grad += n.grad * d     # a node used twice adds both contributions


def _sympy_check(graph: Graph) -> float:
    """The symbolic gradient of the whole expression, built from our tree, evaluated at the point."""
    import sympy as sp

    symbols = {name: sp.Symbol(name, real=True) for name in graph.point}
    expr = _to_sympy(graph.expression, symbols)
    worst = 0.0
    at = {symbols[k]: sp.Float(v, 30) for k, v in graph.point.items()}
    for node in graph.inputs():
        symbolic = float(sp.diff(expr, symbols[node.name]).subs(at).evalf(20).subs(sp.Heaviside(0), 0))
        worst = max(worst, abs(symbolic - node.grad) / max(1.0, abs(symbolic)))
    if worst > 1e-9:
        raise DeriveError(f"internal check failed: the backward pass differs from SymPy's gradient by {worst:.2e}")
    return worst


def _to_sympy(e: Node, symbols):
    import sympy as sp

    if e.op == "number":
        return sp.E if e.name == "e" else sp.nsimplify(e.value) if float(e.value).is_integer() else sp.Float(e.value)
    if e.op == "variable":
        return symbols[e.name]
    a = [_to_sympy(x, symbols) for x in e.args]
    table = {"add": lambda: a[0] + a[1], "sub": lambda: a[0] - a[1], "mul": lambda: a[0] * a[1],
             "div": lambda: a[0] / a[1], "neg": lambda: -a[0], "pow": lambda: a[0] ** a[1],
             "exp": lambda: sp.exp(a[0]), "log": lambda: sp.log(a[0]), "sqrt": lambda: sp.sqrt(a[0]),
             "sigmoid": lambda: 1 / (1 + sp.exp(-a[0])), "tanh": lambda: sp.tanh(a[0]),
             "relu": lambda: sp.Piecewise((a[0], a[0] > 0), (0, True)),
             "max": lambda: sp.Piecewise((a[0], a[0] >= a[1]), (a[1], True))}
    return table[e.op]()


def parse_point(items: list[str]) -> dict[str, float]:
    """--at x=-2 --at y=5: names from the grammar's alphabet, finite numbers, read by float()."""
    import re

    point: dict[str, float] = {}
    given: dict[str, list[str]] = {}
    for item in items:
        raw, sep, value = item.partition("=")
        raw = raw.strip()
        name = raw.replace("_{", "").replace("}", "").replace("_", "")
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(_\{[A-Za-z0-9]+\}|_[A-Za-z0-9])?", raw):
            raise DeriveError(f"--at {item!r}: expected NAME=NUMBER, e.g. --at x=-2")
        try:
            number = float(value.strip().replace("−", "-"))
        except ValueError:
            number = float("nan")
        if not math.isfinite(number):
            raise DeriveError(f"--at {item!r}: {value!r} is not a finite number")
        point[name] = number
        given.setdefault(name, []).append(item.strip())
    twice = [f"{name} more than once ({', '.join(items)})" for name, items in
             sorted(given.items(), key=lambda kv: _natural(kv[0])) if len(items) > 1]
    if twice:
        raise DeriveError(f"--at gives {' and '.join(twice)}; give each variable one value")
    return point
