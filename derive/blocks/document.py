"""The lecture document of a block network: the context its template reads (rows already printed by the
one printer; every row comes from a checked step) and the rendering through the one Jinja environment."""
from __future__ import annotations

from dataclasses import dataclass, replace

import sympy as sp

from ..render import Breaker, chain, environment
from .engine import BlockDerivation
from .layout import step_in_rows
from .plan import stages
from .symbols import BlockPrinter

STAGE_ORDER = ("pool", "skip", "att_v", "att_p", "att_s", "att_q", "att_k", "dropout", "act", "zhat", "norm", "gamma", "beta")
PARAMETER_TOPICS = ("weight", "kernel", "recurrent", "bias", "wq", "wk", "wv", "input")


@dataclass(frozen=True)
class Row:
    text: str            # an aligned row: lhs &= rhs, or &= rhs continuing
    step: object         # the step it prints (its note), or None for a continuation row of a long step


@dataclass(frozen=True)
class Shown:
    """One derivation as the document shows it: every row at index level when it is the first of its
    kind, else only the matrix-form result (with where the same argument was made)."""
    topic: str
    layer: int
    index: tuple[Row, ...]
    matrix: tuple[Row, ...]
    same_as: int | None      # the layer whose index-level argument this one repeats
    shape: str
    has_matrix: bool = True  # False for a feature map: `matrix` is then the index-level result
    concrete: tuple[Row, ...] = ()   # every entry written out (small conv layers)


def rows_of(derivation, printer) -> tuple[Row, ...]:
    out = []
    if printer.t.spec.notation == "rowvec":
        derivation = replace(derivation, steps=tuple(step_in_rows(step) for step in derivation.steps))
    for line in chain(derivation, printer):
        rows = list(line.rows)
        rows[-1] += condition(line.step, printer) if line.step is not None else ""
        for number, text in enumerate(rows):
            out.append(Row(text, line.step if number == 0 else None))
    return tuple(out)


def condition(step, printer) -> str:
    """A step that holds only before the last time step (the next step's weighted input reads the
    state) says so in the line itself, where the readback reads it: \\quad (t < T)."""
    samples = printer.t.samples
    for symbol, bound in step.free:
        if symbol.name == "s" and sp.simplify(bound - (samples - 1)) == 0:     # s: the column (time) index
            return r" \quad (%s < %s)" % (printer.doprint(symbol), printer.doprint(samples))
    return ""


def _quantity(result: BlockDerivation, derivation):
    """(kind, layer) of the quantity an index-level derivation is about, for its shape."""
    lhs = derivation.steps[0].lhs
    base = (lhs if isinstance(lhs, sp.Indexed) else lhs.den).base.label.name
    atom = result.table.atom(base)
    return ("z" if atom.kind == "delta" else atom.kind), atom.layer


def signature(result: BlockDerivation, topic: str, l: int):
    """What makes two derivations the same argument: the stage and its variant."""
    layer = result.spec.layers[l - 1]
    if topic in ("norm", "zhat", "gamma", "beta"):
        return topic, layer.norm
    if topic == "act":
        return topic, l == result.spec.depth, layer.activation, layer.kind
    if topic == "input":
        from .plan import skips_from
        return topic, bool(skips_from(result.spec, l - 1)), layer.kind, result.spec.layers[l - 2].kind
    return topic, layer.kind


def document_context(result: BlockDerivation, report, lang: str, detail: str = "normal",
                     written: frozenset[int] | None = None) -> dict:
    """detail: normal derives each kind of stage once at index level (later layers show the matrix result);
    full derives every layer's every stage; brief (the template) keeps the network and the summary.
    written: the layers whose derivations are written out (the first of a kind among them is derived
    entry by entry); the summary keeps every layer."""
    p = BlockPrinter(result.table)
    seen: dict[tuple, int] = {}
    layers = []
    for l in range(result.spec.depth, 0, -1):
        shown = []
        plan = stages(result.spec, l)
        present = lambda t: result.has(t, l, "matrix") or result.has(t, l, "index")
        topics = [t for t in STAGE_ORDER if present(t)] + [t for t in PARAMETER_TOPICS if present(t)]
        if l == result.spec.depth:
            topics = ["loss"] + topics
        shows = written is None or l in written
        for topic in topics:
            key = signature(result, topic, l)
            first = shows and (key not in seen or detail == "full")
            if shows:
                seen.setdefault(key, l)
            has_matrix = result.has(topic, l, "matrix")
            index_d = result.get(topic, l, "index") if result.has(topic, l, "index") else None
            index = rows_of(index_d, p) if first and index_d is not None else ()
            if has_matrix:
                matrix = result.get(topic, l, "matrix")
                lhs = matrix.steps[0].lhs
                shape = r" \times ".join(p.doprint(n) for n in lhs.shape) if hasattr(lhs, "shape") else ""
                final = rows_of(matrix, p)
            else:       # a feature map: its result is the index-level one (every entry checked)
                shape = " \\times ".join(str(n) for n in result.table.shape(
                    *_quantity(result, index_d))) if index_d is not None else ""
                final = tuple(Row(text, index_d.steps[-1] if number == 0 else None) for number, text in
                              enumerate(Breaker(p).lines(index_d.steps[0].lhs, index_d.steps[-1].rhs, False)))
            concrete = rows_of(result.get(topic, l, "concrete"), p) if result.has(topic, l, "concrete") else ()
            shown.append(Shown(topic, l, index, final, None if first else seen.get(key), shape, has_matrix,
                               concrete))
        layers.append({"layer": l, "spec": result.spec.layers[l - 1], "stages": plan, "shown": shown,
                       "written": shows})
    forward = []
    for step in result.forward:
        if result.spec.notation == "rowvec":
            step = step_in_rows(step)
        forward.append({"step": step, "text": p.doprint(step.lhs) + " = " + p.doprint(step.rhs),
                        "rows": Breaker(p).lines(step.lhs, step.rhs, False)})
    spec = result.spec
    title = (spec.title_zh if lang == "zh" and spec.title_zh else spec.title) or spec.name
    failed = [s for s in report.steps if not s.passed] if report is not None else []
    worst = max((g.max_abs_error for g in report.gradients), default=0.0) if report is not None else 0.0
    return {"spec": spec, "lang": lang, "zh": lang == "zh", "title": title, "paper": "a4" if lang == "zh" else "letter",
            "printer": p, "layers": layers, "forward": forward, "report": report, "failed": failed,
            "worst": f"{worst:.1e}", "tex": p.doprint, "table": result.table, "depth": spec.depth,
            "samples": p.doprint(result.table.samples), "row_layout": spec.notation == "rowvec",
            "written": "all" if written is None else ", ".join(str(l) for l in sorted(written)),
            "stride_one": all(layer.stride == 1 for layer in spec.layers if layer.kind == "conv"),
            "shapes": [r" \times ".join(map(str, spec.map_shape(l))) if spec.map_shape(l) is not None else
                       p.doprint(result.table.sizes[l]) for l in range(spec.depth + 1)],
            "rational": lambda x: sp.Rational(x.numerator, x.denominator),
            "kinds": {kind: any(layer.kind == kind for layer in spec.layers) for kind in ("rnn", "attention", "conv",
                                                                                         "pool")} |
            {"h": any(layer.kind == "dense" and (layer.dropout is not None or layer.skip) for layer in spec.layers)} |
            {"batch_bias": any(layer.norm == "batch" for layer in spec.layers)} |
            {"norm": any(layer.norm for layer in spec.layers),
             "dropout": any(layer.dropout is not None for layer in spec.layers)}, "sizes": [p.doprint(n) for n in result.table.sizes]}


def render_blocks(result: BlockDerivation, report=None, lang: str = "en", flow: bool = False,
                  detail: str = "normal", written: frozenset[int] | None = None) -> str:
    """flow: each step's note a sentence before its display (the text the Markdown, HTML and slide forms
    are made from) rather than beside it."""
    from ..titles import title_tex

    context = document_context(result, report, lang, detail, written)
    context["title"] = title_tex(result.spec, lang)
    context["flow"], context["detail"] = flow, detail
    return environment().get_template("blocks/document.tex.j2").render(**context)
