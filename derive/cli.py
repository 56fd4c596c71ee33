"""The `derive` command. User errors print one message and exit 2, never a traceback."""
from __future__ import annotations

import json
import sys

import click

from .errors import DeriveError

EXIT_FAILED, EXIT_BAD_INPUT = 1, 2


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DeriveError as exc:
            click.echo(f"derive: error: {exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)


@click.group(cls=_Group)
@click.version_option(package_name="derive")
def main():
    """Derive, check and typeset backpropagation for a network described in YAML."""


@main.command("check")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--trials", type=click.IntRange(1, 20), default=None, help="Random instances per step (default 2).")
def check_command(spec_path, as_json, trials):
    """Check every derivation step and the gradients against central differences.

    Exit 0 when everything checks out, 1 when anything fails, 2 for bad input.
    """
    from .checks import check
    from .engine import derive
    from .spec import load

    spec = load(spec_path)
    report = check(derive(spec), trials=trials)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        _print_report(spec, report)
    sys.exit(0 if report.passed else EXIT_FAILED)


def _print_report(spec, report):
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
    click.echo("passed" if report.passed else "FAILED")


@main.command("build")
@click.argument("spec_paths", metavar="SPEC...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out_dir", default="output", show_default=True, type=click.Path(file_okay=False),
              help="Directory for <name>.tex (and .pdf).")
@click.option("--pdf", is_flag=True, help="Also compile a PDF with latexmk.")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True)
def build_command(spec_paths, out_dir, pdf, lang):
    """Typeset the derivation of each SPEC as a step-by-step LaTeX document."""
    from .documents import build
    from .spec import load

    specs = [load(path) for path in spec_paths]      # every spec is validated before anything is written
    failed = False
    for number, spec in enumerate(specs, start=1):
        if len(specs) > 1:
            click.echo(f"[{number}/{len(specs)}] {spec.name} ({lang})", err=True)
        outcome = build(spec, out_dir, lang=lang, pdf=pdf)
        click.echo(str(outcome.tex))
        if outcome.pdf:
            click.echo(str(outcome.pdf))
        for warning in outcome.warnings:
            click.echo(f"derive: warning: {warning}", err=True)
        failed = failed or not outcome.passed
    sys.exit(EXIT_FAILED if failed else 0)


@main.command("codegen")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out_path", required=True, type=click.Path(dir_okay=False),
              help="The Python module to write, e.g. model.py.")
@click.option("--layout", type=click.Choice(["column", "row"]), default="column", show_default=True,
              help="Samples as columns (z = W a + b) or as rows (Z = A W + b, NumPy's X @ W).")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float64", show_default=True)
def codegen_command(spec_path, out_path, layout, dtype):
    """Write a NumPy module (forward, loss, gradients, train_step) printed from the derivation."""
    from pathlib import Path

    from .codegen import generate
    from .documents import write_atomic
    from .spec import load

    code = generate(load(spec_path), layout=layout, dtype=dtype)
    write_atomic(Path(out_path), code)
    click.echo(out_path)


@main.command("demo")
@click.option("-o", "--output", "out_dir", default="output", show_default=True, type=click.Path(file_okay=False))
@click.option("--no-pdf", is_flag=True, help="Write the .tex files only.")
def demo_command(out_dir, no_pdf):
    """Build every built-in example, in English and Chinese, into the output directory."""
    from .documents import build, builtin_examples

    examples = builtin_examples()
    total = 2 * len(examples)
    count = 0
    for spec in examples:
        for lang in ("en", "zh"):
            count += 1
            click.echo(f"[{count}/{total}] {spec.name} ({lang})", err=True)
            outcome = build(spec, out_dir, lang=lang, pdf=not no_pdf)
            click.echo(f"  {outcome.pdf or outcome.tex}: {outcome.summary}")
            for warning in outcome.warnings:
                click.echo(f"  warning: {warning}", err=True)
    _demo_xor(out_dir)


def _demo_xor(out_dir):
    """004_*.txt ends by training its network on XOR: do the same with the generated code."""
    from pathlib import Path

    from .codegen import generate, load_module, train_xor
    from .documents import builtin_examples, write_atomic

    spec = next((s for s in builtin_examples() if s.name == "seed004_mlp_column"), None)
    if spec is None:
        return
    path = Path(out_dir) / f"{spec.name}.py"
    write_atomic(path, generate(spec, layout="column", dtype="float64"))
    mse = train_xor(load_module(path))
    click.echo(f"{path}: trained on XOR for 10000 epochs (lr 0.5, seed 0): mean squared error {mse:.5f}")


if __name__ == "__main__":
    main()
