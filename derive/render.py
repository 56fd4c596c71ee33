"""The one Jinja environment: derivations -> LaTeX documents. Rendering never differentiates."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import jinja2
import sympy as sp

from . import rules
from .algebra import GENERAL, Quantities
from .readback import general_mark
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
    env.filters["capitalize_first"] = capitalize_first
    env.tests["contains_fact"] = lambda facts, fact: tuple(fact) in facts
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
    breaker, previous, start, out = Breaker(printer), None, None, []
    for step in steps:
        # a step about the chain's own left side (delta = dL/dz, then delta = ...) continues it too, at
        # the same level (the per-sample L and the batch's L are one symbol with two meanings)
        continued = previous is not None and (step.lhs == previous or (step.lhs, step.level) == start)
        if not continued:
            start = (step.lhs, step.level)
        out.append(Line(step, tuple(breaker.lines(step.lhs, step.rhs, continued))))
        previous = step.rhs
    return out


def forward_rows(forward, printer: DerivePrinter, batch: bool) -> list[str]:
    """The forward pass as aligned rows: each layer's index-level definition with its matrix form
    beside it (on the next row when the two do not fit one line), then the loss."""
    breaker = Breaker(printer)
    rows_of = lambda step: breaker.lines(step.lhs, step.rhs, False)
    if batch:
        steps = [s for s in forward if s.level == "batch"]
        return [row for s in steps for row in rows_of(s)]
    index = [s for s in forward if s.level == "forward" and s.fact("what") in ("z", "a")]
    matrix = {(s.fact("what")[0], s.fact("layer")): s for s in forward
              if s.level == "forward" and s.fact("what") in ("z_matrix", "a_matrix")}
    rows = []
    for step in index:
        left, right = rows_of(step), rows_of(matrix[(step.fact("what"), step.fact("layer"))])
        if len(left) == 1 and len(right) == 1 and visible_length(left[0] + right[0]) <= LINE_BUDGET:
            rows.append(left[0] + r" & \also " + right[0])
        else:
            rows += left + right
    for step in forward:
        if step.level == "forward" and step.fact("what") == "loss":
            rows += rows_of(step)
    return rows


def chain_start(derivation):
    """The left side of the chain that ends in the result."""
    previous = start = None
    for step in derivation.steps:            # as chain() continues a chain
        if previous is None or not (step.lhs == previous or (step.lhs, step.level) == start):
            start = (step.lhs, step.level)
        previous = step.rhs
    return start[0]


def final_equation(derivation, printer: DerivePrinter) -> str:
    """lhs = result, with lhs the start of the chain that ends in the result."""
    return printer.doprint(chain_start(derivation)) + " = " + printer.doprint(derivation.steps[-1].rhs)


def final_rows(derivation, printer: DerivePrinter) -> str:
    """The result as aligned rows (long right sides broken), for lists of results."""
    return " \\\n".join(Breaker(printer).lines(chain_start(derivation), derivation.steps[-1].rhs, False))


def shape_text(derivation, printer: DerivePrinter) -> str:
    """The shape of a matrix result, as math: n_{l} \times n_{l-1}."""
    lhs = chain_start(derivation)
    shape = getattr(lhs, "shape", None)
    if shape is None:
        return ""
    return r" \times ".join(printer.doprint(n) for n in shape)


@dataclass(frozen=True)
class General:
    """The general layer l of one topic, for the templates: its derivation per level, the values of l
    it is written for (as printed) and the engine's layers."""
    index: Derivation | None = None
    matrix: Derivation | None = None
    batch: Derivation | None = None
    values: tuple[int, ...] = ()
    layers: tuple[int, ...] = ()


def general_of(result, topic: str) -> General:
    found = {d.level: d for d in result.general if d.topic == topic}
    if not found:
        return General()
    from .engine import general_offset

    values = next(iter(found.values())).instances
    offset = general_offset(result.spec, topic)
    return General(found.get("index"), found.get("matrix"), found.get("batch"), values,
                   tuple(v - offset for v in values))


def summary_groups(result, printer: DerivePrinter, batch: bool) -> list[dict]:
    """The backward pass in order, for the summary: the output layer's delta, the recurrence, then the
    gradients; each group one display (general lines carry the values of l they are checked at)."""
    level = "batch" if batch else "matrix"
    by_key = {d.key: d for d in result.derivations}
    L = result.spec.depth
    groups: list[dict] = []

    def add(role, values, d):
        if d is None:
            return
        row = {"rows": final_rows(d, printer), "shape": shape_text(d, printer)}
        if groups and groups[-1]["role"] == role and groups[-1]["ls"] == values:
            groups[-1]["items"].append(row)
        else:
            groups.append({"role": role, "ls": values, "items": [row]})

    add("output", (), by_key.get(f"delta{L}:{level}"))
    g = general_of(result, "delta")
    add("hidden", g.values, getattr(g, level))
    for l in range(L - 1, 0, -1):
        if l not in g.layers:
            add("hidden", (), by_key.get(f"delta{l}:{level}"))
    for topic in ("weight", "bias"):
        g = general_of(result, topic)
        add("gradient", g.values, getattr(g, level))
        for l in range(L, 0, -1):
            if l not in g.layers:
                add("gradient", (), by_key.get(f"{topic}{l}:{level}"))
    return groups


def packed_rows(steps, printer: DerivePrinter) -> list[str]:
    """Written-out entries, two to a line where both fit (joined by \\also), each as 'lhs &= rhs'."""
    breaker, rows, waiting = Breaker(printer), [], None
    for step in steps:
        lines = breaker.lines(step.lhs, step.rhs, False)
        if len(lines) == 1 and waiting is not None and visible_length(waiting + lines[0]) <= LINE_BUDGET:
            rows.append(waiting + r" & \also " + lines[0])
            waiting = None
            continue
        if waiting is not None:
            rows.append(waiting)
            waiting = None
        if len(lines) == 1:
            waiting = lines[0]
        else:
            rows += lines
    if waiting is not None:
        rows.append(waiting)
    return rows


def capitalize_first(text: str) -> str:
    text = str(text)
    return text[:1].upper() + text[1:] if text[:1].isascii() else text


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


MODE_NAMES = {"en": {}, "zh": {"entrywise": "逐分量", "direction": "方向导数", "joint-direction": "联合方向导数",
                              "shape": "形状"}}
DETAILS = ("brief", "normal", "full")
PAPERS = ("a4", "letter")


def render_document(result, report=None, lang: str = "en", layers=None, flow: bool = False,
                    detail: str = "normal", paper: str | None = None, comparisons=None) -> str:
    """layers: the layers whose derivations are written out (default all); each run of left-out
    layers gets one sentence in their place. Every layer is derived and checked either way.
    flow: each step's justification as a paragraph of its own (for Markdown, HTML and slides) rather
    than an \\intertext inside one aligned display."""
    if lang not in LANGS:
        raise ValueError(f"language {lang!r}; accepted: {', '.join(LANGS)}")
    if detail not in DETAILS:
        raise ValueError(f"detail {detail!r}; accepted: {', '.join(DETAILS)}")
    paper = paper or ("a4" if lang == "zh" else "letter")
    if paper not in PAPERS:
        raise ValueError(f"paper {paper!r}; accepted: {', '.join(PAPERS)}")
    spec = result.spec
    shown = set(range(1, spec.depth + 1)) if layers is None else set(layers)

    def gap_end(top: int) -> int:
        """The lowest layer of the run of left-out layers that starts at `top` going down."""
        low = top
        while low - 1 >= 1 and low - 1 not in shown:
            low -= 1
        return low

    if comparisons is None and spec.compare:
        from .compare import judge_comparisons

        comparisons = judge_comparisons(result)
    context = document_context(result, report, lang)
    context.update(shown=shown, gap_end=gap_end, flow=flow, detail=detail, paper=paper,
                   comparisons=tuple(comparisons or ()))
    return environment().get_template("document.tex.j2").render(**context)


def document_context(result, report=None, lang: str = "en") -> dict:
    """What every template that writes about this network may use: names, printers, derivations."""
    from .engine import general_offset
    from .titles import title_tex

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
        "final_rows": lambda d: final_rows(d, printer),
        "forward_rows": lambda batch: forward_rows(result.forward, printer, batch),
        "general": lambda topic: general_of(result, topic),
        "covered": lambda topic, l: l in general_of(result, topic).layers,
        "g_mat": lambda kind, offset: printer.doprint(q.matrix(kind, GENERAL + offset - general_offset(
            spec, "delta" if kind == "delta" else "weight"))),
        "instances": lambda topic, level: [_at_level(result, topic, l, level) for l in general_of(result, topic).layers],
        "general_mark": general_mark, "title": title_tex(spec, lang),
        "summary_groups": lambda batch: summary_groups(result, printer, batch),
        "packed_rows": lambda steps: packed_rows(steps, printer),
        "mode_name": lambda mode: MODE_NAMES[lang].get(mode, mode),
        "through_output": spec.loss.kind == "generic" and q.sizes[-1] == 1,
        "detail": "normal", "paper": "a4" if lang == "zh" else "letter", "comparisons": (), "flow": False,
    }


def _at_level(result, topic: str, layer: int, level: str):
    """A layer's derivation at this level, or its matrix form where the level has none (no batch delta)."""
    key = {d.key: d for d in result.derivations}
    return key.get(f"{topic}{layer}:{level}") or key[f"{topic}{layer}:matrix"]


# ------------------------------------------------------------------------- graphs
GRAPH_X, GRAPH_Y = 3.0, 2.2     # cm between levels and between nodes of a level


def _number(x: float, digits: int = 2) -> str:
    """An integer as an integer (3, not 3.00); otherwise `digits` decimals, never "-0.00"."""
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    text = f"{x:.{digits}f}"
    return text.removeprefix("-") if float(text) == 0 else text


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


def graph_figure(graph) -> dict:
    """What the figure shows, computed once for every form of it (TikZ, SVG): the nodes with their
    labels (LaTeX) and places (cm, y up), the edges with the value going forward and the gradient
    coming back, the table's rows."""
    from .graph import GATES
    from .printing import safe_symbol

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
                          "grad": _number(n.grad * d), "bend": (1 if k == 0 else -1) if twice else 0})
    rows = [{"id": n.id, "label": label(n), "op": n.op, "value": _number(n.value, 4),
             "local": ", ".join(_number(d, 4) for d in n.local), "upstream": _number(n.upstream, 4),
             "grad": _number(n.grad, 4), "rule": "" if n.op == "input" else GATES[n.op].rule,
             "inputs": ", ".join(str(i) for i in n.inputs)} for n in graph.nodes]
    out = graph.nodes[graph.output]
    return {
        "nodes": [{"id": n.id, "label": label(n), "x": positions[n.id][0], "y": positions[n.id][1],
                   "input": n.op == "input"} for n in graph.nodes],
        "edges": edges, "rows": rows,
        "output": {"id": out.id, "x": positions[out.id][0] + GRAPH_X, "y": positions[out.id][1],
                   "value": _number(out.value)},
        "inputs": [{"name": safe_symbol(n.name), "value": _number(n.value, 4), "grad": _number(n.grad, 4)}
                   for n in graph.inputs()],
    }


def render_graph(graph, text: str, lang: str = "en", standalone: bool = False) -> str:
    """The graph document (figure and step table), or with standalone=True the figure alone."""
    from .graph import _to_sympy

    if lang not in LANGS:
        raise ValueError(f"language {lang!r}; accepted: {', '.join(LANGS)}")
    import sympy as sp

    printer = DerivePrinter(None, profile("nielsen"))
    symbols = {name: sp.Symbol(name, real=True) for name in graph.point}
    expression = printer.doprint(_to_sympy(graph.expression, symbols))
    figure = graph_figure(graph)
    template = "graph_standalone.tex.j2" if standalone else "graph.tex.j2"
    return environment().get_template(template).render(
        lang=lang, expression=expression, source=text, check_error=f"{graph.check_error:.1e}", **figure)


SVG_CM = 48          # pixels per centimetre of the layout
SVG_MARGIN = 40


def graph_svg(figure: dict) -> str:
    """The figure (graph_figure) as inline SVG for a web page: the same layout and labels as the TikZ
    picture, labels as MathML (in foreignObject), forward values above the edges, gradients below."""
    import math

    from .mathml import convert

    places = {n["id"]: (n["x"], n["y"]) for n in figure["nodes"]}
    places["out"] = (figure["output"]["x"], figure["output"]["y"])
    xs, ys = [p[0] for p in places.values()], [p[1] for p in places.values()]
    left, top = min(xs), max(ys)

    def point(key):
        x, y = places[key]
        return (x - left) * SVG_CM + SVG_MARGIN, (top - y) * SVG_CM + SVG_MARGIN

    radius = {n["id"]: 17 if n["input"] else 21 for n in figure["nodes"]}
    radius["out"] = 10
    links = [(e["source"], e["target"], e["value"], e["grad"], e["bend"]) for e in figure["edges"]]
    links.append((figure["output"]["id"], "out", figure["output"]["value"], "1", 0))
    edges = []
    for source, target, value, grad, bend in links:
        (x0, y0), (x1, y1) = point(source), point(target)
        length = math.hypot(x1 - x0, y1 - y0) or 1.0
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        nx, ny = uy, -ux                                    # the normal on the upper side
        sx, sy = x0 + ux * radius[source], y0 + uy * radius[source]
        tx, ty = x1 - ux * (radius[target] + 2), y1 - uy * (radius[target] + 2)
        mx, my = (sx + tx) / 2 + nx * 0.3 * length * bend, (sy + ty) / 2 + ny * 0.3 * length * bend
        path = (f"M{sx:.1f},{sy:.1f} Q{mx:.1f},{my:.1f} {tx:.1f},{ty:.1f}" if bend else
                f"M{sx:.1f},{sy:.1f} L{tx:.1f},{ty:.1f}")
        cx, cy = ((sx + tx) / 2 + nx * 0.15 * length * bend, (sy + ty) / 2 + ny * 0.15 * length * bend)
        edges.append({"path": path, "value": value, "grad": grad,
                      "vx": f"{cx:.1f}", "vy": f"{cy - 5:.1f}", "gx": f"{cx:.1f}", "gy": f"{cy + 14:.1f}"})
    nodes = []
    for n in figure["nodes"]:
        x, y = point(n["id"])
        r = radius[n["id"]]
        nodes.append({"id": n["id"], "input": n["input"], "x": f"{x:.1f}", "y": f"{y:.1f}", "r": r,
                      "box_x": f"{x - 30:.1f}", "box_y": f"{y - 14:.1f}", "rect_x": f"{x - r - 2:.1f}",
                      "rect_y": f"{y - r + 3:.1f}", "rect_w": 2 * r + 4, "rect_h": 2 * r - 6,
                      "label": convert(n["label"])})
    ox, oy = point("out")
    width = (max(xs) - left) * SVG_CM + 2 * SVG_MARGIN
    height = (top - min(ys)) * SVG_CM + 2 * SVG_MARGIN
    return environment().get_template("graph.svg.j2").render(
        nodes=nodes, edges=edges, out={"x": f"{ox:.1f}", "y": f"{oy + 5:.1f}"},
        width=f"{width:.0f}", height=f"{height:.0f}")
