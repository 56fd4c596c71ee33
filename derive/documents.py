"""Build documents: derive, check, render, write atomically, compile."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .spec import NetworkSpec


@dataclass(frozen=True)
class BuildOutcome:
    tex: Path
    pdf: Path | None
    passed: bool
    summary: str
    warnings: tuple[str, ...] = ()


def publish(text: str, out_dir: str | Path, stem: str, lang: str, pdf: bool) -> tuple[Path, Path | None, tuple]:
    """Write DIR/<stem>.tex (<stem>.zh.tex in Chinese) and, if asked, its PDF (xelatex + ctex for
    Chinese, pdflatex otherwise). The PDF is made first; the .tex and the PDF then replace the old
    ones together, so a failed TeX run leaves both as they were. Without TeX the .tex is written
    and the error names the packages to install. Returns (tex, pdf or None, warnings)."""
    from .files import ensure_folder, write_together
    from .pdf import TexMissing, compile_text

    tex_path = ensure_folder(out_dir) / (f"{stem}.tex" if lang == "en" else f"{stem}.{lang}.tex")
    if not pdf:
        write_together({tex_path: text})
        return tex_path, None, ()
    try:
        data, warnings = compile_text(text, tex_path.name, engine="xelatex" if lang == "zh" else "pdflatex")
    except TexMissing:
        write_together({tex_path: text})
        raise
    pdf_path = tex_path.with_suffix(".pdf")
    write_together({tex_path: text, pdf_path: data})
    return tex_path, pdf_path, warnings


def select_layers(text: str, depth: int) -> frozenset[int]:
    """'1-2,59-60' -> {1, 2, 59, 60}: the layers (1 = the first weight layer) to write out."""
    from .errors import DeriveError

    chosen = set()
    for part in text.split(","):
        bounds = part.strip().split("-")
        if not 1 <= len(bounds) <= 2 or not all(b.strip().isdigit() for b in bounds):
            raise DeriveError(f"--layers: {part.strip()!r} is not a layer or a range; accepted: numbers and "
                              f"ranges such as 1-2,{max(depth - 1, 1)}-{depth}")
        low, high = int(bounds[0]), int(bounds[-1])
        if not 1 <= low <= high <= depth:
            raise DeriveError(f"--layers: {part.strip()!r} is out of range; this network's weight layers are "
                              f"1 to {depth}, and a range goes upward")
        chosen.update(range(low, high + 1))
    return frozenset(chosen)


def build(spec: NetworkSpec, out_dir: str | Path, lang: str = "en", pdf: bool = False,
          layers: str | None = None) -> BuildOutcome:
    """layers: which layers' derivations to write out, e.g. '1-2,59-60' (default: all)."""
    from .checks import check
    from .engine import derive
    from .render import render_document

    shown = select_layers(layers, spec.depth) if layers else None
    result = derive(spec)
    report = check(result)
    text = render_document(result, report, lang, shown)
    printed = require_printed_correct(result, text, f"{spec.name} ({lang})")
    tex_path, pdf_path, warnings = publish(text, out_dir, spec.name, lang, pdf)
    summary = (f"{len(report.steps)} steps checked, {report.steps_failed} failed; "
               f"gradients {'match' if all(g.passed for g in report.gradients) else 'DO NOT match'} central differences; "
               f"{printed.summary()}")
    return BuildOutcome(tex_path, pdf_path, report.passed, summary, warnings)


def require_printed_correct(result, text: str, what: str):
    """Read every printed equation back (readback.py); a line that does not read back true stops the
    build before anything is written, quoting the line."""
    from .errors import PrintedLineError
    from .readback import read_back

    printed = read_back(result, text)
    if not printed.passed:
        lines = text.splitlines()
        quoted = "\n".join(f"  line {j.equation.line}: {lines[j.equation.line - 1].strip()[:160]}\n"
                           f"    {j.status}: {j.message}" for j in printed.failures[:5])
        more = f"\n  ... and {len(printed.failures) - 5} more" if len(printed.failures) > 5 else ""
        raise PrintedLineError(f"{what}: {len(printed.failures)} of {printed.printed} printed equations do not read "
                               f"back as true; nothing was written (a defect of derive: please report it)\n"
                               f"{quoted}{more}")
    return printed


def builtin_examples() -> list[NetworkSpec]:
    from .resources import example_names, example_text
    from .spec import loads

    return [loads(example_text(name), f"{name}.yaml") for name in example_names()]


def graph_document(graph, expression: str, lang: str) -> str:
    """The graph's figure and step table, with every printed number of the table read back."""
    from .graph_readback import check_graph_table
    from .render import render_graph

    text = render_graph(graph, expression, lang)
    check_graph_table(graph, text)
    return text
