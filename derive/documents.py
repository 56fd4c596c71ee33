"""Build documents: derive, check, render, write atomically, compile."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .formats import FORMATS
from .spec import NetworkSpec


@dataclass(frozen=True)
class BuildOutcome:
    tex: Path | None            # None when only other forms were asked for
    pdf: Path | None
    passed: bool
    summary: str
    warnings: tuple[str, ...] = ()
    files: tuple[tuple[str, Path], ...] = ()        # (kind, path) of everything written


SUFFIXES = {"tex": ".tex", "md": ".md", "html": ".html", "beamer": ".slides.tex", "body": ".body.tex",
            "pdf": ".pdf", "beamer_pdf": ".slides.pdf"}
COMPILED = (("tex", "pdf"), ("beamer", "beamer_pdf"))     # the forms a PDF is made from


def output_path(out_dir, stem: str, lang: str, kind: str) -> Path:
    """DIR/<stem><suffix>, with .zh before the suffix in Chinese: seed001.zh.slides.tex."""
    return Path(out_dir) / (stem + ("" if lang == "en" else f".{lang}") + SUFFIXES[kind])


def write_forms(texts: dict[str, str], out_dir: str | Path, stem: str, lang: str,
                pdf: bool) -> tuple[dict[str, Path], tuple[str, ...]]:
    """Write each form (kind -> text) and, if asked, the PDFs of the document and the slides (xelatex +
    ctex for Chinese, pdflatex otherwise). Every PDF is made first; then all files replace the old
    ones together, so a failed TeX run leaves everything as it was. Without TeX the text files are
    written and the error names the packages to install. Returns (kind -> path, warnings)."""
    from .files import ensure_folder, write_together
    from .pdf import TexMissing, compile_text

    folder = ensure_folder(out_dir)
    files = {kind: (output_path(folder, stem, lang, kind), text) for kind, text in texts.items()}
    warnings: tuple[str, ...] = ()
    if pdf:
        try:
            for source, target in COMPILED:
                if source in texts:
                    data, more = compile_text(texts[source], files[source][0].name,
                                              engine="xelatex" if lang == "zh" else "pdflatex")
                    files[target] = (output_path(folder, stem, lang, target), data)
                    warnings += tuple(more)
        except TexMissing:
            write_together({path: text for kind, (path, text) in files.items() if kind in texts})
            raise
    write_together(dict(files.values()))
    return {kind: files[kind][0] for kind in SUFFIXES if kind in files}, warnings


def publish(text: str, out_dir: str | Path, stem: str, lang: str, pdf: bool) -> tuple[Path, Path | None, tuple]:
    """One document: DIR/<stem>.tex and, if asked, its PDF (see write_forms). Returns (tex, pdf or None,
    warnings)."""
    written, warnings = write_forms({"tex": text}, out_dir, stem, lang, pdf)
    return written["tex"], written.get("pdf"), warnings


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
          layers: str | None = None, formats: tuple[str, ...] = ("tex",), detail: str = "normal",
          paper: str | None = None) -> BuildOutcome:
    """layers: which layers' derivations to write out, e.g. '1-2,59-60' (default: all).
    formats: any of tex, md, html, beamer, body (pdf=True compiles the .tex and the slides).
    Every form is rendered and its printed equations read back before any file is written."""
    from .engine import derive

    unknown = set(formats) - set(DOCUMENT_FORMATS)
    if unknown:
        raise ValueError(f"formats {sorted(unknown)}; accepted: {', '.join(DOCUMENT_FORMATS)}")
    if not isinstance(spec, NetworkSpec):
        return build_blocks(spec, out_dir, lang, pdf, layers, formats, detail)
    shown = select_layers(layers, spec.depth) if layers else None
    rendered = render_forms(derive(spec), lang, tuple(formats) + (("tex",) if pdf else ()), shown, detail, paper)
    written, warnings = write_forms(rendered.texts, out_dir, spec.name, lang, pdf)
    return BuildOutcome(written.get("tex"), written.get("pdf"), rendered.report.passed, rendered.summary(),
                        warnings, tuple(written.items()))


def build_blocks(spec, out_dir, lang: str, pdf: bool, layers, formats, detail: str) -> BuildOutcome:
    """A network with normalization, dropout, skips, recurrence, attention or feature maps: its own engine
    and document, in every text form; each form's printed lines read back before anything is written."""
    from .blocks import derive_blocks

    written = select_layers(layers, spec.depth) if layers else None
    rendered = render_block_forms(derive_blocks(spec), lang, tuple(formats) + (("tex",) if pdf else ()), detail,
                                  written)
    written, warnings = write_forms(rendered.texts, out_dir, spec.name, lang, pdf)
    return BuildOutcome(written.get("tex"), written.get("pdf"), rendered.report.passed, rendered.summary(),
                        warnings, tuple(written.items()))


def render_block_forms(result, lang: str, formats: tuple[str, ...], detail: str = "normal",
                       written: frozenset[int] | None = None) -> "Rendered":
    """A block network's document checked and rendered in the forms asked for, every printed equation
    read back; nothing is written."""
    from .blocks import check_blocks
    from .blocks.document import render_blocks

    report = check_blocks(result)
    text = render_blocks(result, report, lang, detail=detail, written=written)
    printed = require_printed_correct(result, text, f"{result.spec.name} ({lang})")
    texts = {"tex": text} if "tex" in formats else {}
    if set(formats) - {"tex"}:
        texts.update(other_forms(result, report, lang, None, formats, text,
                                 flow=render_blocks(result, report, lang, flow=True, detail=detail, written=written)))
    return Rendered(texts, report, printed)


@dataclass(frozen=True)
class Rendered:
    texts: dict            # kind -> text, each read back
    report: object         # the step checks and the gradient cross-check
    printed: object        # the readback of the .tex document

    def summary(self) -> str:
        report = self.report
        gradients = "match" if all(g.passed for g in report.gradients) else "DO NOT match"
        return (f"{len(report.steps)} steps checked, {report.steps_failed} failed; "
                f"gradients {gradients} central differences; {self.printed.summary()}")


def render_forms(result, lang: str, formats: tuple[str, ...], shown=None, detail: str = "normal",
                 paper: str | None = None) -> Rendered:
    """The derivation checked and rendered in the forms asked for (tex, md, html, beamer, body), every
    printed equation read back; nothing is written (build writes them, the web page shows them)."""
    from .checks import check
    from .render import render_document

    report = check(result)
    comparisons = None
    if result.spec.compare:
        from .compare import judge_comparisons

        comparisons = judge_comparisons(result)
    style = {"detail": detail, "paper": paper, "comparisons": comparisons}
    text = render_document(result, report, lang, shown, **style)
    printed = require_printed_correct(result, text, f"{result.spec.name} ({lang})")
    texts = {"tex": text} if "tex" in formats else {}
    if set(formats) - {"tex"}:
        texts.update(other_forms(result, report, lang, shown, formats, text, style))
    return Rendered(texts, report, printed)


DOCUMENT_FORMATS = tuple(kind for kind in FORMATS if kind != "pdf")     # pdf is compiled from tex


def other_forms(result, report, lang: str, shown, formats, document: str, style: dict | None = None,
                flow: str | None = None) -> dict[str, str]:
    """Markdown, HTML, slides and the body (of `document`, the .tex already rendered), from the document
    written with each justification as a paragraph (flow, rendered here unless given); that text's
    equations are read back too."""
    from . import formats as forms
    from .render import render_document
    from .titles import title_plain, title_tex

    spec = result.spec
    if flow is None:
        flow = render_document(result, report, lang, shown, flow=True, **(style or {}))
    require_printed_correct(result, flow, f"{spec.name} ({lang}, {'/'.join(f for f in formats if f != 'tex')})")
    title = title_plain(spec, lang)
    subtitle = "由 derive 推导并逐步验证" if lang == "zh" else "Derived and checked step by step by derive"
    out: dict[str, str] = {}
    if "md" in formats or "html" in formats:
        md = forms.markdown(flow, title, subtitle)
        if "md" in formats:
            out["md"] = md
        if "html" in formats:
            out["html"] = forms.html_page(md, title, lang)
    if "beamer" in formats:
        out["beamer"] = forms.beamer(flow, title_tex(spec, lang), subtitle, lang)     # the title as LaTeX, escaped
    if "body" in formats:
        out["body"] = forms.body_tex(document, lang)
    return out


def require_printed_correct(result, text: str, what: str):
    """Read every printed equation back (readback.py); a line that does not read back true stops the
    build before anything is written, quoting the line."""
    from .blocks.engine import BlockDerivation
    from .blocks.readback import read_back_blocks
    from .errors import PrintedLineError
    from .readback import read_back

    printed = (read_back_blocks if isinstance(result, BlockDerivation) else read_back)(result, text)
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
