"""The graph document's step table, read back: every printed value, local derivative, upstream
gradient and gradient is parsed from the emitted LaTeX and compared with SymPy, which evaluates
each node as an expression of the inputs (never the gate table's own numbers).

Each node's local derivative is d(gate)/d(input) with the inputs as free symbols, evaluated at the
inputs' values; its gradient is df/dt with the node replaced by a symbol t in the whole expression.
The table prints 4 decimals, so a printed number is right when it is the true one rounded.
"""
from __future__ import annotations

import re

from .errors import PrintedLineError

ROW = re.compile(r"^(\d+)(?: \$\\leftarrow\$ ([\d, ]+))? & .*? & \$([^$]*)\$ & \$([^$]*)\$ & \$([^$]*)\$ & \$([^$]*)\$ \\\\$")
SLACK = 0.5e-4 + 1e-12   # half the last printed digit


def _sympy_gates():
    import sympy as sp

    return {
        "add": lambda a, c: a[0] + a[1], "sub": lambda a, c: a[0] - a[1], "mul": lambda a, c: a[0] * a[1],
        "div": lambda a, c: a[0] / a[1], "add_const": lambda a, c: c + a[0], "mul_const": lambda a, c: c * a[0],
        "pow_const": lambda a, c: a[0] ** c, "const_pow": lambda a, c: c ** a[0], "pow": lambda a, c: a[0] ** a[1],
        "recip": lambda a, c: 1 / a[0], "neg": lambda a, c: -a[0], "exp": lambda a, c: sp.exp(a[0]),
        "log": lambda a, c: sp.log(a[0]), "sqrt": lambda a, c: sp.sqrt(a[0]),
        "sigmoid": lambda a, c: 1 / (1 + sp.exp(-a[0])), "tanh": lambda a, c: sp.tanh(a[0]),
        "relu": lambda a, c: sp.Piecewise((a[0], a[0] > 0), (0, True)),
        "max": lambda a, c: sp.Piecewise((a[0], a[0] >= a[1]), (a[1], True)),
        "max_const": lambda a, c: sp.Piecewise((a[0], a[0] >= c), (c, True)),
    }


def _const(node):
    """A gate's constant as SymPy: exact when it is an integer (x^2, 2x), else a 30-digit float."""
    import sympy as sp

    if node.const is None:
        return None
    return sp.Integer(int(node.const)) if float(node.const).is_integer() else sp.Float(node.const, 30)


def check_graph_table(graph, tex: str) -> int:
    """Raise PrintedLineError quoting the first table row whose numbers are not SymPy's; returns the
    number of printed numbers checked."""
    import sympy as sp

    gates = _sympy_gates()
    lines = tex.splitlines()
    rows = {int(m.group(1)): (number, m) for number, line in enumerate(lines, 1) if (m := ROW.match(line.strip()))}
    if len(rows) != len(graph.nodes):
        raise PrintedLineError(f"graph: {len(rows)} table rows read back, {len(graph.nodes)} nodes in the graph")
    at = {sp.Symbol(k, real=True): sp.Float(v, 30) for k, v in graph.point.items()}
    holes = [sp.Symbol(f"node{n.id}", real=True) for n in graph.nodes]
    expr, with_hole = {}, {}
    for n in graph.nodes:               # inputs come before their users
        if n.op == "input":
            expr[n.id] = sp.Symbol(n.name, real=True)
            continue
        expr[n.id] = gates[n.op]([expr[i] for i in n.inputs], _const(n))
    for target in graph.nodes:          # the output with node `target` replaced by a symbol
        built = {}
        for n in graph.nodes:
            if n.id == target.id:
                built[n.id] = holes[n.id]
            elif n.op == "input":
                built[n.id] = expr[n.id]
            else:
                built[n.id] = gates[n.op]([built[i] for i in n.inputs], _const(n))
        with_hole[target.id] = built[graph.output]
    checked = 0

    def value(e, extra=None):
        return float(sp.N(e.subs({**at, **(extra or {})}).subs(sp.Heaviside(0), 0), 20))

    for n in graph.nodes:
        line, m = rows[n.id]
        true_value = value(expr[n.id])
        true_grad = value(sp.diff(with_hole[n.id], holes[n.id]), {holes[n.id]: true_value})
        expected = {"value": [true_value], "upstream": [true_grad], "gradient": [true_grad]}
        if n.op != "input":
            args = [sp.Dummy() for _ in n.inputs]
            gate = gates[n.op](args, _const(n))
            inputs = {a: sp.Float(value(expr[i]), 30) for a, i in zip(args, n.inputs)}
            expected["local"] = [float(sp.N(sp.diff(gate, a).subs(inputs), 20)) for a in args]
        printed = {"value": m.group(3), "local": m.group(4), "upstream": m.group(5), "gradient": m.group(6)}
        for column, truth in expected.items():
            try:
                numbers = [float(x) for x in printed[column].split(",")] if printed[column].strip() else []
            except ValueError:
                raise PrintedLineError(f"graph: line {line}: the {column} {printed[column]!r} does not read back "
                                       "as numbers") from None
            if len(numbers) != len(truth) or any(abs(p - t) > SLACK * max(1.0, abs(t) * 1e-4) for p, t in
                                                 zip(numbers, truth)):
                raise PrintedLineError(f"graph: line {line}: node {n.id}'s printed {column} {printed[column]} is "
                                       f"not SymPy's {', '.join(f'{t:.6g}' for t in truth)}; nothing was written:\n"
                                       f"  {lines[line - 1].strip()}")
            checked += len(numbers)
    return checked
