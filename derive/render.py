"""The one Jinja environment: derivations -> LaTeX documents. Rendering never differentiates."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import jinja2
import sympy as sp

from . import rules
from .algebra import Quantities
from .notation import Notation, profile
from .escape import html_text, latex_text, python_string_body
from .resources import template_source
from .printing import DerivePrinter, one_term
from .steps import STEP_KINDS, Derivation, Step

LANGS = ("en", "zh")
LINE_BUDGET = 68            # visible math characters per displayed line
_INVISIBLE = re.compile(r"\\(left|right|bigl|bigr|mathrm|operatorname|mathbf|mathit)\b|\\[a-zA-Z]+|[{}^_&]")


def templates_dir():
    """The templates folder, as a Traversable (a Path in a checkout or an unpacked wheel)."""
    from .resources import templates

    return templates()


escape_text = latex_text      # the name the documents' tests import


@jinja2.pass_context
def _esc(context, text) -> str:
    """Text for the document being rendered: CJK passes where the document loads a CJK font (zh)."""
    return latex_text(text, cjk=context.get("lang") == "zh")


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(template_source),       # importlib.resources: wheels and zips too
        block_start_string="((*", block_end_string="*))",
        variable_start_string="(((", variable_end_string=")))",
        comment_start_string="((=", comment_end_string="=))",
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, autoescape=False,
    )
    env.filters["esc"] = _esc
    env.filters["py"] = python_string_body
    env.filters["html"] = html_text
    env.filters["tex"] = _tex_filter
    env.filters["md_prose"] = _md_prose
    return env


def _md_prose(text) -> str:
    from .formats import md_prose

    return md_prose(text)


@jinja2.pass_context
def _tex_filter(context, expr) -> str:
    return context["printer"].doprint(expr)


# --------------------------------------------------------------------- line breaking

def visible_length(tex: str) -> int:
    return len(_INVISIBLE.sub("", tex).replace(" ", ""))


class Breaker:
    """Split a long expression into pieces that can start a new aligned line."""

    def __init__(self, printer: DerivePrinter):
        self.p = printer

    def pieces(self, expr) -> list[str]:
        p = self.p
        if visible_length(p.doprint(expr)) <= LINE_BUDGET:
            return [p.doprint(expr)]
        if isinstance(expr, sp.Add):
            out = []
            for n, term in enumerate(expr.as_ordered_terms()):
                negative = term.could_extract_minus_sign()
                sub = self.pieces(-term if negative else term)
                sign = "- " if negative else ("" if n == 0 else "+ ")
                out.append(sign + sub[0])
                out += sub[1:]
            return out
        if isinstance(expr, sp.Mul):
            args = list(expr.args)
            longest = max(args, key=lambda a: visible_length(p.doprint(a)))
            if isinstance(longest, (sp.Add, sp.Sum)):
                before = " ".join(p._factor_scalar(a) for a in args[: args.index(longest)])
                after = " ".join(p._factor_scalar(a) for a in args[args.index(longest) + 1:])
                inner = self.pieces(longest)
                if isinstance(longest, sp.Add):       # one at a time: inner may have a single piece
                    inner[0] = r"\bigl(" + inner[0]
                    inner[-1] = inner[-1] + r"\bigr)"
                inner[0] = (before + " " + inner[0]).strip()
                inner[-1] = (inner[-1] + " " + after).strip()
                return inner
        if isinstance(expr, sp.Sum) and not isinstance(one_term(expr), sp.Sum):
            return self.pieces(one_term(expr))           # a sum over one unit is its one term
        if isinstance(expr, sp.Sum):
            expr = one_term(expr)                        # keeps only the limits that run over more than one value
            head = " ".join(p.sum_head(limit) for limit in expr.limits)
            body = self.pieces(expr.function)
            if isinstance(expr.function, sp.Add):
                body[0] = r"\bigl(" + body[0]
                body[-1] = body[-1] + r"\bigr)"
            body[0] = head + " " + body[0]
            return body
        return [p.doprint(expr)]

    def lines(self, lhs, rhs, continued: bool) -> list[str]:
        """Aligned rows: 'lhs &= rhs' (or '&= rhs' when continuing a chain), long rhs broken."""
        left = "" if continued else self.p.doprint(lhs)
        packed, current = [], ""
        for piece in self.pieces(rhs):
            if current and visible_length(current + piece) > LINE_BUDGET:
                packed.append(current)
                current = piece
            else:
                current = (current + " " + piece).strip()
        packed.append(current)
        rows = [f"{left} &= {packed[0]}"]
        rows += [rf"&\qquad {piece}" for piece in packed[1:]]
        return rows


@dataclass(frozen=True)
class Line:
    step: Step
    rows: tuple[str, ...]


def chain(derivation: Derivation | tuple[Step, ...], printer: DerivePrinter) -> list[Line]:
    """Steps as aligned rows; a step whose lhs is the previous rhs continues the chain."""
    steps = derivation.steps if isinstance(derivation, Derivation) else derivation
    breaker, previous, out = Breaker(printer), None, []
    for step in steps:
        continued = previous is not None and step.lhs == previous
        out.append(Line(step, tuple(breaker.lines(step.lhs, step.rhs, continued))))
        previous = step.rhs
    return out


def final_equation(derivation, printer: DerivePrinter) -> str:
    """lhs = result, with lhs the start of the chain that ends in the result."""
    steps = derivation.steps
    start = len(steps) - 1
    while start > 0 and steps[start].lhs == steps[start - 1].rhs:
        start -= 1
    return printer.doprint(steps[start].lhs) + " = " + printer.doprint(steps[-1].rhs)


def aligned_chain(derivation: Derivation, quantities: Quantities, notation: Notation) -> str:
    printer = DerivePrinter(quantities, notation)
    rows = [row for line in chain(derivation, printer) for row in line.rows]
    return r"\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}"


def _single_term(step_or_expr) -> bool:
    """Does the step's sum over its dummy (any sum of it, when it names none) run over one value, so
    that the printer writes its one term (a layer of one unit)? The prose then says so."""
    if isinstance(step_or_expr, Step):
        dummy, exprs = step_or_expr.fact("dummy"), (step_or_expr.lhs, step_or_expr.rhs)
    else:
        dummy, exprs = None, (step_or_expr,)
    for expr in exprs:
        for total in (expr.atoms(sp.Sum) if isinstance(expr, sp.Basic) else ()):
            for var, low, high in total.limits:
                if (dummy is None or var == dummy) and low.is_Integer and high.is_Integer and low == high:
                    return True
    return False


# ------------------------------------------------------------------------- documents
_J, _K = sp.Symbol("j", integer=True, positive=True), sp.Symbol("k", integer=True, positive=True)


def _weight_entry(q: Quantities, l: int):
    w = q.entry("W", l)
    return w[_J, _K] if q.index_order == "to_from" else w[_K, _J]


def render_document(result, report=None, lang: str = "en", layers=None, flow: bool = False) -> str:
    """layers: the layers whose derivations are written out (default all); each run of left-out
    layers gets one sentence in their place. Every layer is derived and checked either way.
    flow: each step's justification as a paragraph of its own (for Markdown, HTML and slides) rather
    than an \\intertext inside one aligned display."""
    if lang not in LANGS:
        raise ValueError(f"language {lang!r}; accepted: {', '.join(LANGS)}")
    spec = result.spec
    shown = set(range(1, spec.depth + 1)) if layers is None else set(layers)

    def gap_end(top: int) -> int:
        """The lowest layer of the run of left-out layers that starts at `top` going down."""
        low = top
        while low - 1 >= 1 and low - 1 not in shown:
            low -= 1
        return low

    context = document_context(result, report, lang)
    context.update(shown=shown, gap_end=gap_end, flow=flow)
    return environment().get_template("document.tex.j2").render(**context)


def document_context(result, report=None, lang: str = "en") -> dict:
    """What every template that writes about this network may use: names, printers, derivations."""
    spec, q = result.spec, result.quantities
    notation = profile(spec.notation, spec.symbols)
    printer = DerivePrinter(q, notation)
    shown = set(range(1, spec.depth + 1))
    return {
        "spec": spec, "q": q, "result": result, "report": report, "lang": lang, "printer": printer,
        "notation": notation, "chain": lambda d: chain(d, printer), "step_kinds": STEP_KINDS,
        "layers": list(enumerate(spec.layers, start=1)), "depth": spec.depth, "shown": shown, "gap_end": lambda top: top,
        "size": lambda l: printer.doprint(q.sizes[l]), "label": lambda l, node=False: notation.label(l, node),
        "activation_tex": lambda l: notation.function_name(q.activation(l).name) or q.activation(l).latex,
        "ix": lambda letter: notation.index_name(letter),
        "function_tex": lambda name: notation.function_name(name) or rules.activation(name).latex,
        "mat": lambda kind, l: printer.doprint(q.matrix(kind, l)),
        "weight_entry": lambda l: printer.doprint(_weight_entry(q, l)),
        "weights_tex": lambda l: printer.doprint(q.matrix("W", l)),
        "bias_entry": lambda l: printer.doprint(q.entry("b", l)[_J]),
        "pre_entry": lambda l: printer.doprint(q.entry("z", l)[_J]),
        "act_entry": lambda l: printer.doprint(q.entry("a", l)[_J]),
        "delta_entry": lambda l: printer.doprint(q.entry("delta", l)[_J]),
        "derivations": {d.key: d for d in result.derivations},
        "entry": lambda kind, l, *index: printer.doprint(q.entry(kind, l)[index]),
        "single": _single_term,
        "bias_layers": [l for l, layer in enumerate(spec.layers, start=1) if layer.bias],
        "has": lambda key: key in {d.key for d in result.derivations},
        "gradient_tex": lambda name: printer.doprint(result.gradient(name).expr),
        "param_tex": lambda name: printer.doprint(q.matrix("W" if name[0] == "W" else "b", int(name[1:]))),
        "batch": q.samples != 1, "fmt": lambda x: f"{x:.1e}",
        "final": lambda d: final_equation(d, printer), "final_rhs": lambda d: printer.doprint(d.result.rhs),
    }


# ------------------------------------------------------------------------- graphs
GRAPH_X, GRAPH_Y = 3.0, 2.2     # cm between levels and between nodes of a level


def _number(x: float, digits: int = 2) -> str:
    text = f"{x:.{digits}f}"
    return text.removeprefix("-") if float(text) == 0 else text       # no "-0.00"


def graph_layout(graph) -> dict[int, tuple[float, float]]:
    """Left to right: a gate one column after its latest input, an input one column before its
    first use. Heights: inputs in order of appearance, a gate at the mean of its inputs, then
    each column is spread so no two nodes are closer than GRAPH_Y (no overlaps)."""
    level = {}
    for n in graph.nodes:
        level[n.id] = 0 if not n.inputs else 1 + max(level[i] for i in n.inputs)
    for n in graph.nodes:
        if n.op == "input":
            users = [m.id for m in graph.nodes if n.id in m.inputs]
            level[n.id] = max(0, min(level[u] for u in users) - 1) if users else 0
    for n in graph.nodes:                      # gates move right of inputs that moved
        if n.inputs:
            level[n.id] = max(level[n.id], 1 + max(level[i] for i in n.inputs))
    y, order = {}, 0
    for n in graph.nodes:
        if n.op == "input":
            y[n.id] = -order * GRAPH_Y
            order += 1
        else:
            y[n.id] = sum(y[i] for i in n.inputs) / len(n.inputs)
    columns: dict[int, list] = {}
    for n in graph.nodes:
        columns.setdefault(level[n.id], []).append(n.id)
    for ids in columns.values():
        ids.sort(key=lambda i: (-y[i], i))
        for above, below in zip(ids, ids[1:]):
            y[below] = min(y[below], y[above] - GRAPH_Y)
    return {n.id: (level[n.id] * GRAPH_X, y[n.id]) for n in graph.nodes}


def render_graph(graph, text: str, lang: str = "en", standalone: bool = False) -> str:
    """The graph document (figure and step table), or with standalone=True the figure alone."""
    from .graph import GATES, _to_sympy
    from .printing import safe_symbol

    if lang not in LANGS:
        raise ValueError(f"language {lang!r}; accepted: {', '.join(LANGS)}")
    import sympy as sp

    printer = DerivePrinter(None, profile("nielsen"))
    symbols = {name: sp.Symbol(name, real=True) for name in graph.point}
    expression = printer.doprint(_to_sympy(graph.expression, symbols))

    def label(n):
        if n.op == "input":
            return safe_symbol(n.name)
        c = "" if n.const is None else _number(n.const, 2).rstrip("0").rstrip(".")
        return GATES[n.op].label.replace("{c}", c)

    positions = graph_layout(graph)
    edges = []
    for n in graph.nodes:
        for k, (i, d) in enumerate(zip(n.inputs, n.local)):
            twice = n.inputs.count(i) > 1          # x * x: two edges between the same nodes, bent apart
            edges.append({"source": i, "target": n.id, "value": _number(graph.nodes[i].value),
                          "grad": _number(n.grad * d),
                          "bend": ("bend left=30" if k == 0 else "bend right=30") if twice else ""})
    rows = [{"id": n.id, "label": label(n), "op": n.op, "value": _number(n.value, 4),
             "local": ", ".join(_number(d, 4) for d in n.local), "upstream": _number(n.upstream, 4),
             "grad": _number(n.grad, 4), "rule": "" if n.op == "input" else GATES[n.op].rule,
             "inputs": ", ".join(str(i) for i in n.inputs)} for n in graph.nodes]
    out = graph.nodes[graph.output]
    template = "graph_standalone.tex.j2" if standalone else "graph.tex.j2"
    return environment().get_template(template).render(
        lang=lang, expression=expression, source=text, rows=rows, edges=edges,
        nodes=[{"id": n.id, "label": label(n), "at": f"({positions[n.id][0]:.2f},{positions[n.id][1]:.2f})",
                "input": n.op == "input"} for n in graph.nodes],
        output={"id": out.id, "at": f"({positions[out.id][0] + GRAPH_X:.2f},{positions[out.id][1]:.2f})",
                "value": _number(out.value)},
        inputs=[{"name": safe_symbol(n.name), "value": _number(n.value, 4), "grad": _number(n.grad, 4)}
                for n in graph.inputs()],
        check_error=f"{graph.check_error:.1e}")
