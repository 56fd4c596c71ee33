"""The `derive` command. User errors print one message and exit 2, never a traceback."""
from __future__ import annotations

import json
import sys
import warnings

import click
from pathlib import Path

from .errors import DeriveError
from .jsonable import dumps as _json

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 1, 2, 3


def _terminate(signum, frame):
    """SIGTERM ends the run like Ctrl-C does: through the finally blocks, which remove temporary
    folders and staging files."""
    raise KeyboardInterrupt


class _Argument(click.Argument):
    """A positional argument with a help line, on every click version (before 8.5 click.Argument takes no
    help=); _Command prints it under "Arguments"."""

    def __init__(self, param_decls, required=None, help=None, **attrs):
        super().__init__(param_decls, required=required, **attrs)
        self.help = help


class _Command(click.Command):
    """A command whose help lists its arguments, each with its help line."""

    def format_help(self, ctx, formatter):
        self.format_usage(ctx, formatter)
        self.format_help_text(ctx, formatter)
        self.format_arguments(ctx, formatter)
        self.format_options(ctx, formatter)
        self.format_epilog(ctx, formatter)

    def format_arguments(self, ctx, formatter):
        rows = [(p.human_readable_name, getattr(p, "help", None) or "") for p in self.get_params(ctx)
                if isinstance(p, click.Argument)]
        if rows:
            with formatter.section("Arguments"):
                formatter.write_dl(rows)


class _Group(click.Group):
    command_class = _Command

    def format_commands(self, ctx, formatter):
        """Each command with its whole summary: click would cut one that does not fit the line with '...'."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx):
        import signal

        signal.signal(signal.SIGTERM, _terminate)
        # NumPy's warnings would land in the middle of the output; a value that is not finite is
        # reported as such wherever it matters (checks, verdicts, graphs)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            return super().invoke(ctx)
        except DeriveError as exc:
            click.echo(f"derive: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("derive: interrupted; nothing half-written was left behind", err=True)
            sys.exit(130)
        except RecursionError:
            click.echo("derive: error: the input is nested too deeply to process", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except MemoryError:
            click.echo("derive: error: the input needs more memory than is available; make it smaller", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except Exception as exc:        # a defect of derive: one line, never a traceback
            where = ctx.invoked_subcommand or "derive"
            click.echo(f"derive: internal error in '{where}': {type(exc).__name__}: {str(exc)[:300]}. This is a "
                       "defect of derive; please report it with the command and the input that caused it", err=True)
            sys.exit(EXIT_INTERNAL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110, "terminal_width": 110})
@click.version_option(package_name="derive")
def main():
    """Derive, check and typeset backpropagation for a network described in YAML."""


@main.command("check")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False), cls=_Argument,
                help="A network description: a YAML file, or the name of a built-in example (see derive examples).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--trials", type=click.IntRange(1, 20), default=None, help="Random instances per step (default 2).")
@click.option("--printed", is_flag=True,
              help="Also render the document (English and Chinese) and read every printed equation back, "
                   "judging it at random instances: counts of equations printed, read back and correct.")
def check_command(spec_path, as_json, trials, printed):
    """Check every derivation step and the gradients against central differences.

    Exit 0 when everything checks out, 1 when anything fails, 2 for bad input.
    """
    from .checks import check
    from .engine import derive
    from .spec import NetworkSpec, load

    spec = load(spec_path)
    if not isinstance(spec, NetworkSpec):
        from .blocks import check_blocks, derive_blocks

        result = derive_blocks(spec)
        report = check_blocks(result, trials=trials or 2)
        readbacks = {}
        if printed:
            from .blocks.document import render_blocks
            from .blocks.readback import read_back_blocks
            from .render import LANGS

            readbacks = {lang: read_back_blocks(result, render_blocks(result, report, lang)) for lang in LANGS}
        _finish_check(spec, report, readbacks, printed, as_json)
    result = derive(spec)
    try:
        report = check(result, trials=trials)
    except DeriveError as exc:          # e.g. no numeric instance could be drawn: --json still answers
        if as_json:
            click.echo(_json({"passed": False, "error": str(exc)}, sort_keys=True))
        raise
    readbacks = {}
    if printed:
        from .readback import read_back
        from .render import LANGS, render_document

        readbacks = {lang: read_back(result, render_document(result, report, lang)) for lang in LANGS}
    _finish_check(spec, report, readbacks, printed, as_json)


def _finish_check(spec, report, readbacks: dict, printed: bool, as_json: bool):
    passed = report.passed and all(r.passed for r in readbacks.values())
    if as_json:
        out = report.to_json()
        if printed:
            out["printed"] = {lang: r.to_json() for lang, r in readbacks.items()}
            out["passed"] = passed
        click.echo(_json(out, sort_keys=True))
    else:
        _print_report(spec, report, readbacks)
    sys.exit(0 if passed else EXIT_FAILED)


def _print_report(spec, report, readbacks=None):
    click.echo(f"{spec.name}: {len(report.steps)} steps checked, {report.steps_failed} failed")
    for step in report.steps:
        if not step.passed:
            click.echo(f"  FAILED {step.derivation} step {step.position} ({step.kind}): {step.message}")
    width = max(len(g.parameter) for g in report.gradients)
    click.echo(f"  {'param':<{width}}  {'max abs err':>11}  {'max rel err':>11}  {'worst':>7}  mode")
    for g in report.gradients:
        worst = ",".join(map(str, g.worst_entry)) if g.worst_entry else "-"
        mark = "ok" if g.passed else "FAILED"
        click.echo(f"  {g.parameter:<{width}}  {g.max_abs_error:11.2e}  {g.max_rel_error:11.2e}  {worst:>7}  {g.mode} {mark}")
    for lang, printed in (readbacks or {}).items():
        click.echo(f"  printed ({lang}): {printed.summary()}")
        for j in printed.failures:
            click.echo(f"    line {j.equation.line} {j.status}: {j.message}\n      {j.equation.text[:160]}")
    passed = report.passed and all(r.passed for r in (readbacks or {}).values())
    click.echo("passed" if passed else "FAILED")


def _formats(ctx, param, value) -> tuple[str, ...]:
    from .formats import FORMATS

    chosen = tuple(dict.fromkeys(f.strip().lower() for f in value.split(",") if f.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise click.BadParameter(f"{', '.join(unknown) or 'nothing'}; accepted: {', '.join(FORMATS)}")
    return chosen


def _document_json(spec, lang: str, outcome) -> dict:
    """One document of build's and demo's --json: the files written and the checks."""
    return {"spec": spec.name, "lang": lang, "tex": str(outcome.tex) if outcome.tex else None,
            "pdf": str(outcome.pdf) if outcome.pdf else None,
            "files": {kind: str(path) for kind, path in outcome.files}, "passed": outcome.passed,
            "checks": outcome.summary, "warnings": list(outcome.warnings)}


@main.command("build")
@click.argument("spec_paths", metavar="SPEC...", nargs=-1, required=True, type=click.Path(dir_okay=False),
                cls=_Argument, help="One or more network descriptions: YAML files or names of built-in examples.")
@click.option("-o", "--output", "out_dir", default="output", show_default=True, type=click.Path(file_okay=False),
              help="Directory for <name>.tex (and .pdf).")
@click.option("--pdf", is_flag=True, help="Also compile a PDF with latexmk (the same as --format tex,pdf).")
@click.option("--format", "formats", metavar="LIST", default="tex", show_default=True, callback=_formats,
              help="What to write, comma-separated: tex, pdf, md (Markdown with $ math), html (standalone, "
                   "MathML: renders offline), beamer (slides, compiled too with pdf), body (a .tex to \\input).")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True,
              help="Language of the document: en (English) or zh (Chinese).")
@click.option("--layers", metavar="LIST", default=None,
              help="Write out only these layers' derivations, e.g. 1-2,59-60 (1 = the first weight layer); "
                   "the others are still derived and checked, and get one sentence each run. Implies --detail "
                   "full (the normal detail derives a general layer l once instead).")
@click.option("--detail", type=click.Choice(["brief", "normal", "full"]), default="normal", show_default=True,
              help="brief: one sheet (the network, the backward pass in order, the check); normal: each idea "
                   "derived once for a general layer l, a short note beside every step; full: every layer "
                   "derived in the text with a sentence per step (a first lecture).")
@click.option("--paper", type=click.Choice(["a4", "letter"]), default=None,
              help="Paper size of the PDF: a4 or letter (default: a4 for Chinese, letter for English).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: for each document the files written, the checks and the warnings.")
def build_command(spec_paths, out_dir, pdf, formats, lang, layers, detail, paper, as_json):
    """Typeset the derivation of each SPEC as a step-by-step document (LaTeX, PDF, Markdown, HTML, slides)."""
    from .documents import build, select_layers
    from .spec import load

    specs = [load(path) for path in spec_paths]      # every spec is validated before anything is written
    for spec in specs:
        if layers:
            select_layers(layers, spec.depth)
    if layers and detail == "normal":
        detail = "full"
    failed, documents = False, []
    with _progress(specs, "derive build", lambda spec: f"{spec.name} ({lang})" if spec else "") as progress:
        for spec in progress:
            outcome = build(spec, out_dir, lang=lang, pdf=pdf or "pdf" in formats, layers=layers,
                            formats=tuple(f for f in formats if f != "pdf"), detail=detail, paper=paper)
            documents.append(_document_json(spec, lang, outcome))
            if not as_json:
                for _, path in outcome.files:
                    _echo_above(progress, str(path))
                _echo_above(progress, f"derive: {spec.name} ({lang}): {outcome.summary}", err=True)
                for warning in outcome.warnings:
                    _echo_above(progress, f"derive: warning: {warning}", err=True)
            failed = failed or not outcome.passed
    if as_json:
        click.echo(_json({"passed": not failed, "documents": documents}))
    sys.exit(EXIT_FAILED if failed else 0)


@main.command("codegen")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False), cls=_Argument,
                help="A network description: a YAML file, or the name of a built-in example (see derive examples).")
@click.option("-o", "--output", "out_path", required=True, type=click.Path(dir_okay=False),
              help="The Python module to write, e.g. model.py.")
@click.option("--layout", type=click.Choice(["column", "row"]), default="column", show_default=True,
              help="Samples as columns (z = W a + b) or as rows (Z = A W + b, NumPy's X @ W).")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float64", show_default=True,
              help="Floating-point type of the generated arrays and computations.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: the file written, its layout and how its arrays relate to the document's.")
def codegen_command(spec_path, out_path, layout, dtype, as_json):
    """Write a NumPy module (forward, loss, gradients, train_step) printed from the derivation."""
    from .codegen import document_layout, generate
    from .files import write_atomic
    from .spec import NetworkSpec, load

    spec = load(spec_path)
    write_atomic(Path(out_path), generate(spec, layout=layout, dtype=dtype))
    if not as_json:
        click.echo(out_path)
        return
    if not isinstance(spec, NetworkSpec):
        from .blocks import derive_blocks

        click.echo(_json({"file": str(out_path), "spec": spec.name, "dtype": dtype,
                          "layout": "row" if spec.notation == "rowvec" else "column",
                          "parameters": list(derive_blocks(spec, levels=("matrix",)).parameters)}))
        return
    relation = document_layout(spec, layout)
    click.echo(_json({"file": str(out_path), "spec": spec.name, "layout": layout, "dtype": dtype,
                      "parameters": [f"{k}{l}" for l, layer in enumerate(spec.layers, start=1)
                                     for k in ("W", "b") if k == "W" or layer.bias],
                      "weights_shape": relation["code_shape"],
                      "weights_as_in_document": relation["same"], "notation": relation["notation"]}))


@main.command("graph")
@click.argument("expression", cls=_Argument,
                help="The function, in plain text or LaTeX, e.g. '(x + y) * z' or '\\frac{1}{1+e^{-x}}'.")
@click.option("--at", "at", multiple=True, metavar="NAME=NUMBER",
              help="A variable's value, e.g. --at x=-2; one for each variable of EXPRESSION.")
@click.option("--gates", is_flag=True, help="Break compound functions into elementary gates (1/x, c + x, e^x, a x).")
@click.option("--json", "as_json", is_flag=True, help="Print values and gradients as JSON.")
@click.option("--tex", is_flag=True, help="Write DIR/NAME.tex with the figure and the step table.")
@click.option("--pdf", is_flag=True, help="Also compile the PDF.")
@click.option("--svg", is_flag=True, help="Write DIR/NAME.svg: the figure alone, as vector graphics (needs TeX and poppler-utils).")
@click.option("--png", is_flag=True, help="Write DIR/NAME.png: the figure alone, at 150 dpi (needs TeX and poppler-utils).")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True,
              help="Language of the document written by --tex or --pdf: en (English) or zh (Chinese).")
@click.option("-o", "--output", "out_dir", default="output", show_default=True, type=click.Path(file_okay=False),
              help="Directory for the files written by --tex, --pdf, --svg or --png.")
@click.option("--name", default="graph", show_default=True, help="File name (without extension).")
def graph_command(expression, at, gates, as_json, tex, pdf, svg, png, lang, out_dir, name):
    """Forward values and backward gradients of EXPRESSION on a graph of gates, checked against SymPy."""
    import re
    from .documents import publish
    from .graph import build, parse_point

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", name):
        raise DeriveError(f"--name: {name!r} is not accepted; expected letters, digits, '-' and '_'")
    graph = build(expression, parse_point(list(at)), gates=gates)
    if as_json:
        click.echo(_json(graph.to_json()))
    else:
        out = graph.nodes[graph.output]
        click.echo(f"f = {out.value:.6g}")
        for n in graph.inputs():
            click.echo(f"  df/d{n.name} = {n.grad:.6g}")
    if tex or pdf:
        from .documents import graph_document

        for path in publish(graph_document(graph, expression, lang), out_dir, name, lang, pdf)[:2]:
            if path:
                click.echo(str(path), err=True)
    if svg or png:
        from .figures import figure_images
        from .files import write_together

        kinds = tuple(k for k, wanted in (("svg", svg), ("png", png)) if wanted)
        images = {Path(out_dir) / f"{name}.{kind}": data for kind, data in figure_images(graph, expression, kinds).items()}
        write_together(images)
        for path in images:
            click.echo(str(path), err=True)


@main.command("verify")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False), cls=_Argument,
                help="A network description: a YAML file, or the name of a built-in example (see derive examples).")
@click.option("--param", help="The parameter the claim is about, labelled as the notation prints it: W2, b1, delta2 (Ng: Theta1, delta3), or one entry W1[2,3].")
@click.option("--claim", "claim_text", help="A claimed formula for dL/dPARAM, in LaTeX or plain text.")
@click.option("--derivation", "derivation_path", type=click.Path(dir_okay=False),
              help="A file with a LaTeX chain of equalities (align lines ending in \\\\).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.option("--tex", is_flag=True, help="With --derivation: write a feedback document (the wrong line marked).")
@click.option("--pdf", is_flag=True, help="Also compile the feedback document.")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True,
              help="Language of the feedback document: en (English) or zh (Chinese).")
@click.option("-o", "--output", "out_dir", default="output", show_default=True, type=click.Path(file_okay=False),
              help="Directory for the feedback document.")
def verify_command(spec_path, param, claim_text, derivation_path, as_json, tex, pdf, lang, out_dir):
    """Is a hand-derived gradient right? If not: the first wrong line, a counterexample, a diagnosis.

    Exit 0 correct, 1 incorrect or shape mismatch, 2 unparseable or bad input.
    """
    from .spec import NetworkSpec, load

    if bool(claim_text) == bool(derivation_path):
        raise DeriveError("give either --param P --claim TEXT or --derivation FILE")
    spec = load(spec_path)
    judge = _verify_dense if isinstance(spec, NetworkSpec) else _verify_blocks
    text = _derivation_text(derivation_path) if derivation_path else None
    verdict, feedback = judge(spec, param, claim_text, text)
    if text is not None and (tex or pdf):
        _publish_feedback(feedback, derivation_path, lang, out_dir, pdf)
    if as_json:
        click.echo(_json(verdict.to_json()))
    else:
        line = f" (first wrong line: {verdict.first_wrong_line})" if verdict.first_wrong_line else ""
        click.echo(f"{verdict.verdict}{line}: {verdict.explanation}")
        c = verdict.counterexample
        if c and "expected" in c:
            columns = f", {c['samples']} columns" if "samples" in c else ""
            entry = (f", entry {c['worst_entry']}" if "worst_entry" in c else "") + \
                (", at " + ", ".join(f"{k} = {v}" for k, v in c["at"].items()) if c.get("at") else "")
            click.echo(f"  counterexample: sizes {c['sizes']}{columns}{entry}: "
                       f"expected {c['expected']:.6g}, claimed {c['claimed']:.6g}")
            if c.get("values"):
                click.echo("  at: " + "; ".join(f"{k} = {json.dumps(v)}" for k, v in c["values"].items()))
        if verdict.fix_tex:
            click.echo(f"  corrected (checked like any claim): {verdict.fix_tex}")
    sys.exit(verdict.exit_code)


def _derivation_text(path) -> str:
    from .files import read_input

    try:
        return read_input(path, 200_000, "--derivation").decode("utf-8")
    except UnicodeDecodeError:
        raise DeriveError("--derivation: not UTF-8 text") from None


def _verify_dense(spec, param, claim_text, text):
    """The verdict on a dense chain, and how to make its feedback document (for a derivation)."""
    from .engine import derive
    from .verify import feedback_document, verify_claim, verify_derivation

    result = derive(spec, levels=("matrix",))
    if claim_text:
        if not param:
            raise DeriveError("--claim needs --param, e.g. --param W2")
        return verify_claim(result, param, claim_text), None
    verdict = verify_derivation(result, text, param)
    return verdict, (lambda lang: feedback_document(result, verdict, param, lang)) if verdict.terms else None


def _verify_blocks(spec, param, claim_text, text):
    """The verdict on a network with the newer layers (the documents' reader judges each line)."""
    from .claim import split_equals
    from .blocks import derive_blocks
    from .blocks.verify import feedback_blocks, verify_blocks_claim, verify_blocks_derivation

    result = derive_blocks(spec, levels=("index",))
    if claim_text:
        if not param and len(split_equals(claim_text)) < 2:
            raise DeriveError("--claim needs --param (e.g. --param W2) or its own left side (dL/dW = ...)")
        return verify_blocks_claim(result, param, claim_text), None
    verdict = verify_blocks_derivation(result, text, param)
    return verdict, (lambda lang: feedback_blocks(result, verdict, text, lang)) \
        if verdict.verdict != "unparseable" else None


def _publish_feedback(feedback, derivation_path, lang, out_dir, pdf):
    """The feedback document beside the verdict; its failure is reported and the verdict stands."""
    import re
    from pathlib import Path

    from .documents import publish

    if feedback is None:
        click.echo("derive: no feedback document: a line could not be read (see the verdict)", err=True)
        return
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", Path(derivation_path).stem)[:60] + "_feedback"
    try:
        for path in publish(feedback(lang), out_dir, stem, lang, pdf)[:2]:
            if path:
                click.echo(str(path), err=True)
    except DeriveError as exc:
        click.echo(f"derive: the feedback document was not written: {exc}", err=True)


@main.command("demo")
@click.option("-o", "--output", "out_dir", default="output", show_default=True, type=click.Path(file_okay=False),
              help="Directory for the documents, the PDFs and the generated XOR code.")
@click.option("--no-pdf", is_flag=True, help="Write the text forms only: no PDF, no SVG or PNG figures.")
@click.option("--format", "formats", metavar="LIST", default="tex,pdf,md,html,beamer", show_default=True,
              callback=_formats,
              help="The forms of each document, as for derive build.")
@click.option("--detail", type=click.Choice(["brief", "normal", "full"]), default="normal", show_default=True,
              help="How much of each derivation the documents write out, as for derive build.")
@click.option("--paper", type=click.Choice(["a4", "letter"]), default=None,
              help="Paper size, as for derive build (default: a4 for Chinese, letter for English).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: every file written and each document's checks.")
def demo_command(out_dir, no_pdf, formats, detail, paper, as_json):
    """Build every built-in example, in English and Chinese, into the output directory; also the
    graphs of the 002 notes (with SVG and PNG figures) and the seed004 network's code, trained on XOR."""
    from .documents import build, builtin_examples
    from .spec import NetworkSpec

    pdf = "pdf" in formats and not no_pdf
    jobs = [(spec, lang) for spec in builtin_examples() for lang in ("en", "zh")]
    documents, failed = [], False
    with _progress(jobs, "derive demo", lambda job: f"{job[0].name} ({job[1]})" if job else "") as progress:
        for spec, lang in progress:
            # the Markdown, HTML and slide forms of the newer layers' documents are not written yet
            forms = tuple(f for f in formats if f != "pdf" and (isinstance(spec, NetworkSpec) or f == "tex"))
            outcome = build(spec, out_dir, lang=lang, pdf=pdf, formats=forms or ("tex",), detail=detail, paper=paper)
            documents.append(_document_json(spec, lang, outcome))
            failed = failed or not outcome.passed
            if not as_json:
                _echo_above(progress, f"  {outcome.pdf or outcome.tex or outcome.files[0][1]}: {outcome.summary}")
                for warning in outcome.warnings:
                    _echo_above(progress, f"  warning: {warning}", err=True)
    code = _demo_xor(out_dir, quiet=as_json)
    graphs = _demo_graphs(out_dir, pdf=pdf, quiet=as_json)
    if as_json:
        click.echo(_json({"passed": not failed, "documents": documents, "code": code, "graphs": graphs}))
    sys.exit(EXIT_FAILED if failed else 0)


class _progress:
    """A progress bar with an ETA on stderr when it is a terminal; silence otherwise (logs, pipes, CI)."""

    def __init__(self, items, label: str, describe):
        self.items, self.label, self.describe = list(items), label, describe
        self.bar = None

    def __enter__(self):
        if sys.stderr.isatty() and len(self.items) > 1:
            self.bar = click.progressbar(self.items, label=self.label, file=sys.stderr, show_eta=True,
                                         show_pos=True, item_show_func=self.describe)
            return self.bar.__enter__()
        return self.items

    def __exit__(self, *exc):
        if self.bar is not None:
            return self.bar.__exit__(*exc)
        return False


def _echo_above(progress, text: str, err: bool = False):
    """A line of output that does not tear the progress bar: the bar is redrawn below it."""
    if isinstance(progress, list):
        click.echo(text, err=err)
        return
    click.echo("\r\033[K" + text, err=err)
    progress.render_progress()


GRAPH_EXAMPLES = (   # the two figures of 002_*.txt
    ("seed002_sum_times", "(x + y) * z", {"x": -2.0, "y": 5.0, "z": -4.0}, False),
    ("seed002_neuron", r"\frac{1}{1+e^{-(w_0 x_0 + w_1 x_1 + w_2)}}",
     {"w0": 2.0, "w1": -3.0, "w2": -3.0, "x0": -1.0, "x1": -2.0}, True),
)


def _demo_graphs(out_dir, pdf: bool, quiet: bool = False) -> list[dict]:
    from .documents import graph_document, publish
    from .figures import figure_images
    from .files import write_together
    from .graph import build

    out = []
    for name, text, point, gates in GRAPH_EXAMPLES:
        graph = build(text, point, gates=gates)
        files = []
        for lang in ("en", "zh"):
            tex_path, pdf_path, _ = publish(graph_document(graph, text, lang), out_dir, name, lang, pdf)
            files += [str(p) for p in (tex_path, pdf_path) if p]
        if pdf:
            images = {Path(out_dir) / f"{name}.{kind}": data for kind, data in figure_images(graph, text, ("svg", "png")).items()}
            write_together(images)
            files += [str(p) for p in images]
        grads = ", ".join(f"df/d{n.name} = {n.grad:.2f}" for n in graph.inputs())
        if not quiet:
            click.echo(f"{', '.join(files)}: f = {graph.nodes[graph.output].value:.2f}; {grads}")
        out.append({"name": name, "expression": text, "files": files, "value": graph.nodes[graph.output].value,
                    "gradients": {n.name: n.grad for n in graph.inputs()}})
    return out


def _demo_xor(out_dir, quiet: bool = False) -> list[dict]:
    """004_*.txt ends by training its network on XOR: do the same with the generated code."""
    from .codegen import generate, load_module, train_xor
    from .documents import builtin_examples
    from .files import write_atomic

    spec = next((s for s in builtin_examples() if s.name == "seed004_mlp_column"), None)
    if spec is None:
        return []
    path = Path(out_dir) / f"{spec.name}.py"
    write_atomic(path, generate(spec, layout="column", dtype="float64"))
    mse = train_xor(load_module(path))
    if not quiet:
        click.echo(f"{path}: trained on XOR for 10000 epochs (lr 0.5, seed 0): mean squared error {mse:.5f}")
    return [{"file": str(path), "trained_on": "XOR", "epochs": 10000, "mean_squared_error": mse}]


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes that do the work, each under the limits below (default: one per core).")
@click.option("--timeout", type=click.IntRange(1, 600), default=20, show_default=True,
              help="Seconds a request may take before its worker is killed and replaced (a PDF: 120).")
@click.option("--memory", type=click.IntRange(256, 65536), default=2048, show_default=True,
              help="Megabytes of address space each worker may use.")
def serve_command(host, port, workers, timeout, memory):
    """Serve the web page (check a derivation, derive, draw a graph) and its JSON API.

    Open http://HOST:PORT/ in a browser; the API is described at /openapi.json. For a course server
    with several server processes, see the README (uvicorn --factory derive.web.app:create_app).
    """
    import uvicorn

    from .web.app import create_app
    from .web.pool import Limits

    app = create_app(workers, Limits(seconds=float(timeout), memory_mb=memory))
    click.echo(f"derive serve: http://{host}:{port}/  (Ctrl-C stops it)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@main.command("examples")
@click.argument("action", type=click.Choice(["list", "show", "copy"]), default="list", cls=_Argument,
                help="list (the default): the examples with their titles; show NAME: print its YAML; copy NAME "
                     "[DEST]: write it to a file.")
@click.argument("name", required=False, cls=_Argument, help="An example's name, as derive examples lists it.")
@click.argument("dest", required=False, type=click.Path(), cls=_Argument,
                help="Where copy writes the example: a file, or a directory (default: NAME.yaml here).")
def examples_command(action, name, dest):
    """List the built-in example specs, show one, or copy one to edit. Any command that takes a SPEC
    also takes an example's name.

    derive examples | derive examples show classifier | derive examples copy classifier my_net.yaml
    """
    from pathlib import Path

    from .documents import builtin_examples
    from .files import write_atomic
    from .resources import example_names, example_text

    names = example_names()
    if action == "list":
        width = max(len(n) for n in names)
        for spec in builtin_examples():
            click.echo(f"{spec.name:<{width}}  {spec.title}")
        return
    if name not in names:
        raise DeriveError(f"examples {action}: {name!r} is not a built-in example; they are: " + ", ".join(names)
                          if name else f"examples {action} needs an example's name: " + ", ".join(names))
    if action == "show":
        click.echo(example_text(name), nl=False)
        return
    target = Path(dest or f"{name}.yaml")
    if target.is_dir():
        target = target / f"{name}.yaml"
    if target.exists():
        raise DeriveError(f"examples copy: {target} exists; nothing was written (give another DEST)")
    write_atomic(target, example_text(name).encode("utf-8"))
    click.echo(str(target))


if __name__ == "__main__":
    main()
