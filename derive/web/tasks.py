"""The work behind each request, run inside a worker process (pool.py), never in the server.

Each task takes the request's fields (already bounded in size by the app) and returns a JSON-able
dict: what `derive … --json` prints, plus the mathematics as MathML for the page. A user error
(a bad spec, a claim that does not parse) comes back as {"error": message}, the CLI's message.
Specs come from YAML text or a built-in example's name; no path the user gives is ever opened.
"""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from ..errors import DeriveError
from ..jsonable import finite


class RequestError(DeriveError):
    pass


def spec_of(payload: dict):
    from ..resources import example_names, example_text
    from ..spec import loads

    example, text = payload.get("example"), payload.get("spec")
    if bool(example) == bool(text):
        raise RequestError("give either example (a built-in example's name) or spec (YAML text)")
    if example:
        if example not in example_names():
            raise RequestError(f"example {example!r} is not a built-in example; accepted: {', '.join(example_names())}")
        return loads(example_text(example), f"{example}.yaml")
    return loads(text, "spec")


def _is_blocks(result) -> bool:
    from ..blocks import BlockDerivation

    return isinstance(result, BlockDerivation)


def _derived(payload: dict, levels=None):
    """The derivation of the request's spec. A course's students check claims against the same few
    specs, so each worker keeps the last few derivations (keyed by the spec's text), read only."""
    return _derivation(payload.get("example"), payload.get("spec"), levels)


@functools.lru_cache(maxsize=16)
def _derivation(example, text, levels):
    from ..engine import derive
    from ..spec import NetworkSpec

    spec = spec_of({"example": example, "spec": text})
    if not isinstance(spec, NetworkSpec):      # normalization, skips, recurrence, attention, feature maps
        from ..blocks import derive_blocks

        return derive_blocks(spec, levels=levels)
    return derive(spec, levels=levels) if levels else derive(spec)


def _math(tex: str, display: bool = False) -> str | None:
    from ..mathml import MathMLError, convert

    try:
        return convert(tex, display)
    except MathMLError:
        return None


# ------------------------------------------------------------------------- tasks
def warm(payload: dict) -> dict:
    """Imports and caches filled before the first request (the worker's first task)."""
    from ..checks import check

    result = _derived({"example": "seed004_mlp_column"})
    check(result, trials=1)
    _math(r"\delta^{2} (a^{1})^{T}")
    return {"warm": True}


def spec(payload: dict) -> dict:
    """A spec read and validated (the page validates as the user types)."""
    from ..titles import title_plain

    result = _derived(payload, levels=("matrix",))
    s = result.spec
    sizes = [str(n) for n in result.table.sizes] if _is_blocks(result) else [str(s.input)] + [str(layer.units) for layer in s.layers]
    return {"valid": True, "name": s.name, "title": title_plain(s, payload.get("lang") or "en"),
            "sizes": sizes,
            "activations": [layer.activation for layer in s.layers], "loss": s.loss.kind,
            "notation": s.notation, "parameters": list(result.parameters)}


def preview(payload: dict) -> dict:
    from ..mathml import convert

    return {"mathml": convert(payload["tex"], bool(payload.get("display")))}


def verify(payload: dict) -> dict:
    """`derive verify --json`, and the lines as the page shows them: each as MathML, the first wrong
    one marked, the corrected line (only when it reads back as correct)."""
    from ..verify import Meaning, printed_fix, read_claim, verify_claim, verify_derivation, written_rows

    result = _derived(payload, levels=("matrix",))
    param, claim, derivation = payload.get("param"), payload.get("claim"), payload.get("derivation")
    if bool(claim) == bool(derivation):
        raise RequestError("give either claim (with param) or derivation")
    if _is_blocks(result):
        return _verify_blocks(result, param, claim, derivation)
    if claim:
        if not param:
            raise RequestError("claim needs param, e.g. W2")
        verdict = verify_claim(result, param, claim)
    else:
        verdict = verify_derivation(result, derivation, param or None)
    out = finite(verdict.to_json())
    if claim:
        read = read_claim(claim, Meaning(result)) if verdict.verdict != "unparseable" else None
        shown = [{"line": 1, "wrong": verdict.verdict != "correct", "tex": read}] if read else []
    else:                                       # rows as written: "lhs = rhs", then "= rhs"
        shown = [{"line": r["line"], "wrong": r["wrong"], "tex": (f"{r['lhs']} = " if r["lhs"] else "= ") + r["tex"]}
                 for r in written_rows(result, verdict)]
    for row in shown:
        row["mathml"] = _math(row["tex"])
    fix = printed_fix(result, verdict, param if claim else None)
    out["display"] = {"lines": shown, "fix": fix, "fix_mathml": _math(fix) if fix else None}
    return out


def _verify_blocks(result, param, claim, derivation) -> dict:
    """verify for a network with the newer layers: each line as written, the first wrong one marked, and
    the corrected line when a common slip (a transpose, a sign, a factor, factors swapped) explains it."""
    from ..blocks.verify import claim_text, verify_blocks_claim, verify_blocks_derivation

    if claim:
        verdict = verify_blocks_claim(result, param or None, claim)
        rows = [(1, claim)]
    else:
        verdict = verify_blocks_derivation(result, derivation, param or None)
        rows = [(n, line) for n, line in enumerate(derivation.splitlines(), start=1) if line.strip()]
    out = finite(verdict.to_json())
    shown = [{"line": n, "wrong": verdict.verdict != "correct" and (verdict.first_wrong_line in (None, n)),
              "tex": claim_text(text)} for n, text in rows]
    for row in shown:
        row["mathml"] = _math(row["tex"])
    fix = verdict.fix_tex               # judged correct like any claim before it is offered
    out["display"] = {"lines": shown, "fix": fix, "fix_mathml": _math(fix) if fix else None}
    return out


def check(payload: dict) -> dict:
    """`derive check --json`."""
    from ..checks import check as check_steps

    result = _derived(payload)
    if _is_blocks(result):
        from ..blocks import check_blocks

        return finite(check_blocks(result, trials=payload.get("trials") or 2).to_json())
    return finite(check_steps(result, trials=payload.get("trials")).to_json())


def graph(payload: dict) -> dict:
    """`derive graph --json`, with the figure as SVG and the step table as MathML."""
    from ..graph import build
    from ..render import graph_figure, graph_svg

    point = {str(k): float(v) for k, v in (payload.get("at") or {}).items()}
    built = build(payload["expression"], point, gates=bool(payload.get("gates")), option="")
    figure = graph_figure(built)
    rows = [{"id": r["id"], "inputs": r["inputs"], "label": _math(r["label"]),
             "rule": _math(r["rule"]) if r["rule"] else None,
             "value": r["value"], "local": r["local"], "upstream": r["upstream"], "grad": r["grad"]}
            for r in figure["rows"]]
    return {**finite(built.to_json()), "check_error": finite(built.check_error), "svg": graph_svg(figure),
            "rows": rows}


def build(payload: dict) -> dict:
    """`derive build --json`, the document as HTML (the body of `--format html`) and the check."""
    from ..documents import render_block_forms, render_forms
    from ..formats import html_body
    from ..titles import title_plain

    result = _derived(payload)
    lang, detail = payload.get("lang") or "en", payload.get("detail") or "normal"
    if _is_blocks(result):
        rendered = render_block_forms(result, lang, ("md",), detail=detail)
    else:
        rendered = render_forms(result, lang, ("md",), detail=detail)
    report, printed = rendered.report, rendered.printed
    return {"passed": report.passed, "spec": result.spec.name, "lang": lang, "detail": detail,
            "title": title_plain(result.spec, lang),
            "checks": {"steps": len(report.steps), "steps_failed": report.steps_failed,
                       "gradients_match": all(g.passed for g in report.gradients), "printed": printed.printed,
                       "read_back": printed.read_back, "correct": printed.correct},
            "report": finite(report.to_json()), "html": html_body(rendered.texts["md"])}


DOWNLOADS = {"tex": "application/x-tex", "pdf": "application/pdf", "md": "text/markdown",
             "html": "text/html", "py": "text/x-python"}


def download(payload: dict) -> dict:
    """One file of the document (or the NumPy module), made in a temporary folder removed afterwards."""
    from ..documents import build as build_document

    kind = payload["kind"]
    s = spec_of(payload)
    lang, detail = payload.get("lang") or "en", payload.get("detail") or "normal"
    if kind == "py":
        from ..codegen import generate

        data = generate(s, layout=payload.get("layout") or "column").encode("utf-8")
        name = f"{s.name}.py"
    else:
        with tempfile.TemporaryDirectory(prefix="derive-download-") as folder:
            formats = ("tex",) if kind in ("tex", "pdf") else (kind,)
            outcome = build_document(s, folder, lang=lang, pdf=kind == "pdf", formats=formats, detail=detail)
            files = dict(outcome.files)
            if kind not in files:
                raise RequestError(f"the {kind} file was not made")
            data = Path(files[kind]).read_bytes()
            name = Path(files[kind]).name
    return {"filename": name, "media_type": DOWNLOADS[kind], "data": data}


def slow(payload: dict) -> dict:
    """Only for the tests of the limits: sleeps, or allocates, as asked."""
    import time

    if payload.get("allocate_mb"):
        hoard = bytearray(int(payload["allocate_mb"]) * 2**20)
        return {"allocated": len(hoard)}
    time.sleep(float(payload.get("seconds", 0)))
    return {"slept": payload.get("seconds", 0)}


TASKS = {"warm": warm, "spec": spec, "preview": preview, "verify": verify, "check": check, "graph": graph,
         "build": build, "download": download, "slow": slow}


def run(name: str, payload: dict) -> dict:
    """The task's answer; a user error as {"error": message}."""
    try:
        return TASKS[name](payload)
    except DeriveError as exc:
        return {"error": str(exc)}
    except RecursionError:
        return {"error": "the input is nested too deeply to be read"}
