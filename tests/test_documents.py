"""Documents: templates, golden .tex, determinism, escaping, PDFs in both languages."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from derive import load as load_spec, network
from derive.checks import check
from derive.documents import build, builtin_examples
from derive.engine import derive
from derive.errors import TexError
from derive.pdf import compile_pdf, have_tex
from derive.render import environment, escape_text, render_document, templates_dir
from derive.steps import STEP_KINDS

from conftest import IN_CI, dense_examples

EXAMPLES = Path(__file__).parent.parent / "examples"

ROOT = Path(__file__).parent.parent
GOLDEN = Path(__file__).parent / "golden"
NOISE = re.compile(r"\d\.\de[-+]\d\d")   # rounding-level errors in the check table vary with the CPU


def needs_tex():
    if not have_tex():
        if IN_CI:
            pytest.fail("latexmk is missing in CI: .ci/run must install TeX Live")
        pytest.skip("latexmk not installed")


def test_every_step_kind_has_a_template():
    present = {p.name.removesuffix(".tex.j2") for p in (templates_dir() / "steps").glob("*.tex.j2")}
    assert set(STEP_KINDS) <= present, set(STEP_KINDS) - present


@pytest.mark.parametrize("example, names, foreign", [
    ("seed003_rashid_summation", ["$o_{q}$ depends only on $x_{q}$", "through the $o$ values",
                                  "{\\sigma}'({x}) = {\\sigma}({x})"], ["$a$ values", "{a}_{j}$ depends"]),
    ("seed001_ng_cross_entropy", ["sample losses $J^{(s)}$", "{g}'({z}) = {g}({z})", "$g$ acts entry by entry"],
     ["$L = \\frac{1}{m}", "\\sigma'"]),
])
def test_prose_speaks_the_profiles_names(example, names, foreign):
    """The sentences between equations use the notation of the equations they explain."""
    from derive import load

    text = render_document(derive(load(ROOT / "examples" / f"{example}.yaml")), detail="full")
    for name in names:
        assert name in text, name
    for name in foreign:
        assert name not in text, name


def test_literal_parentheses_next_to_template_expressions_survive():
    """((((x)))) in a template would print x without its parentheses."""
    for path in templates_dir().rglob("*.j2"):
        assert "((((" not in path.read_text(encoding="utf-8"), path
    text = render_document(derive(network("p", 2, [(3, "tanh"), (3, "softmax")], loss="cross_entropy")), detail="full")
    assert r"\operatorname{diag}\left(a^{2}\right)" in text and "Entry $( j, k )$" in text


def test_environment_is_strict_and_latex_safe():
    env = environment()
    assert env.undefined is jinja2.StrictUndefined and env.trim_blocks and env.lstrip_blocks
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("((( missing )))").render()
    assert env.from_string(r"\frac{a}{b} ((( x )))").render(x=1) == r"\frac{a}{b} 1"


def test_plain_text_is_escaped():
    assert escape_text(r"50% & $x$ \input{/etc/passwd}") == \
        r"50\% \& \$x\$ \textbackslash{}input\{/etc/passwd\}"


def test_title_with_tex_specials_is_escaped_in_the_document():
    spec = network("t", 2, [(1, "sigmoid")], title=r"Loss #1: 100% \input{/etc/passwd} $x$")
    tex = render_document(derive(spec), None, "en")
    # $x$ is mathematics, read by derive's grammar and printed by SymPy; the rest is text
    assert r"\title{Loss \#1: 100\% \textbackslash{}input\{/etc/passwd\} $x$}" in tex
    assert r"\input{/etc/passwd}" not in tex


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("spec", dense_examples(), ids=lambda s: s.name)
def test_golden_documents(spec, lang, update_golden):
    result = derive(spec)
    tex = render_document(result, check(result), lang)
    path = GOLDEN / f"{spec.name}.{lang}.tex"
    if update_golden or not path.exists():
        path.write_text(tex, encoding="utf-8")
        if not update_golden:
            pytest.fail(f"golden file {path.name} was missing and has been written; run again")
    expected = path.read_text(encoding="utf-8")
    assert NOISE.sub("<err>", tex) == NOISE.sub("<err>", expected), \
        f"{path.name} differs; if the change is intended, run pytest --update-golden"


def test_same_input_same_bytes(tmp_path):
    spec = builtin_examples()[0]
    first = build(spec, tmp_path / "a").tex.read_bytes()
    second = build(spec, tmp_path / "b").tex.read_bytes()
    assert first == second


def test_documents_show_every_parameter_boxed_and_the_check_table():
    spec = network("x", 2, [(3, "tanh"), (2, "sigmoid")], loss="binary_cross_entropy")
    result = derive(spec)
    tex = render_document(result, check(result), "en")
    assert tex.count(r"\boxed{") == 2 + 2          # two deltas; W^l and b^l once, for the general layer l
    assert r"\odot" in tex and r"W^{2}" in tex and "^{T}" in tex
    assert "sigmoid and BCE cancel" in tex
    full = render_document(result, check(result), "en", detail="full")
    assert full.count(r"\boxed{") == 2 + 4 and "Sigmoid and binary cross-entropy cancel" in full
    for name in ("W^{1}", "b^{1}", "W^{2}", "b^{2}"):
        assert f"${name}$ &" in tex                  # a row of the numeric check table
    assert r"\section{Every entry written out}" in tex


def test_repr_latex_for_notebooks():
    d = derive(network("x", 2, [(1, "sigmoid")])).get("weight", 1, "index")
    text = d._repr_latex_()
    assert text.startswith(r"$$\begin{aligned}") and text.endswith(r"\end{aligned}$$")
    assert r"\frac{\partial L}{\partial w^{1}_{jk}}" in text and r"[i = k]" in text


@pytest.mark.parametrize("value", [r"\\input{/etc/passwd}", "w_{1}", "$x$", "thetaXYZ"])
def test_unsafe_symbol_override_is_refused_before_writing(tmp_path, value):
    spec = tmp_path / "s.yaml"
    spec.write_text(f"name: s\ninput: 2\nlayers: [{{units: 1}}]\nsymbols: {{weights: '{value}'}}\n")
    proc = subprocess.run([sys.executable, "-m", "derive.cli", "build", str(spec), "-o", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "symbols.weights" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "s.tex").exists()


def test_symbol_overrides_rename_on_top_of_a_profile():
    spec = network("s", 2, [(1, "sigmoid")], symbols={"weights": "theta", "weight": "theta",
                                                      "activation": "g", "loss": "J"})
    tex = render_document(derive(spec), None, "en")
    assert r"\frac{\partial J}{\partial \theta^{1}}" in tex and "g'(z^{1}_{j})" in tex


def test_build_validates_every_spec_before_writing(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("name: good\ninput: 2\nlayers: [{units: 1}]\n")
    bad.write_text("name: bad\ninput: 2\nlayers: [{units: 1, activation: swish}]\n")
    proc = subprocess.run([sys.executable, "-m", "derive.cli", "build", str(good), str(bad), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "swish" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_build_several_reports_each_document_on_stderr_without_a_bar_when_piped(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("name: a\ninput: 2\nlayers: [{units: 1}]\n")
    b.write_text("name: b\ninput: 1\nlayers: [{units: 1, activation: tanh}]\n")
    proc = subprocess.run([sys.executable, "-m", "derive.cli", "build", str(a), str(b), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "derive: a (en): " in proc.stderr and "derive: b (en): " in proc.stderr
    assert "\r" not in proc.stderr and "[1/2]" not in proc.stderr      # the progress bar is for terminals
    assert (tmp_path / "o" / "a.tex").is_file() and (tmp_path / "o" / "b.tex").is_file()


def test_without_tex_the_tex_is_written_and_the_message_names_packages(tmp_path, monkeypatch):
    import derive.pdf

    monkeypatch.setattr(derive.pdf.shutil, "which", lambda name: None)
    from click.testing import CliRunner

    from derive import cli

    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\ninput: 2\nlayers: [{units: 1}]\n")
    result = CliRunner().invoke(cli.main, ["build", str(spec), "--pdf", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "apt-get install" in result.output and "texlive-xetex" in result.output
    assert (tmp_path / "s.tex").is_file() and not (tmp_path / "s.pdf").exists()


# ------------------------------------------------------------------------------- PDFs

@pytest.mark.pdf
@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("spec", builtin_examples(), ids=lambda s: s.name)
def test_examples_compile_to_pdf_without_warnings(spec, lang, tmp_path):
    needs_tex()
    outcome = build(spec, tmp_path, lang=lang, pdf=True)
    assert outcome.pdf.is_file() and outcome.pdf.read_bytes()[:5] == b"%PDF-"
    assert not [w for w in outcome.warnings if "Missing character" in w], outcome.warnings
    assert not [w for w in outcome.warnings if w.startswith("Overfull")], outcome.warnings
    assert outcome.passed


@pytest.mark.pdf
def test_tex_error_quotes_the_line_and_keeps_the_previous_pdf(tmp_path):
    needs_tex()
    tex = tmp_path / "broken.tex"
    tex.write_text("\\documentclass{article}\n\\begin{document}\nfine\n\\undefinedmacro{x}\n\\end{document}\n")
    pdf = tmp_path / "broken.pdf"
    pdf.write_bytes(b"previous")
    with pytest.raises(TexError) as info:
        compile_pdf(tex, pdf)
    message = str(info.value)
    assert "line 4" in message and r"\undefinedmacro{x}" in message
    assert pdf.read_bytes() == b"previous"
    assert not list(tmp_path.glob(".*part"))


@pytest.mark.pdf
def test_shell_escape_is_refused(tmp_path):
    needs_tex()
    marker = tmp_path / "pwned"
    tex = tmp_path / "esc.tex"
    tex.write_text("\\documentclass{article}\n\\begin{document}\n\\immediate\\write18{touch " + str(marker) +
                   "}\nx\n\\end{document}\n")
    try:
        compile_pdf(tex, tmp_path / "esc.pdf")
    except TexError:
        pass
    assert not marker.exists()


@pytest.mark.slow
def test_non_editable_install_in_a_fresh_venv_builds_documents(tmp_path):
    source = tmp_path / "source"     # a clean copy: no build/ or egg-info left over from earlier installs
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", ".venv", "output", ".git", "__pycache__", ".pytest_cache", ".hypothesis"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(source)], capture_output=True, text=True)
    if pip.returncode != 0:
        if IN_CI:
            pytest.fail(pip.stderr[-2000:])
        pytest.skip("could not install into a fresh venv here: " + pip.stderr[-300:])
    out = tmp_path / "out"
    proc = subprocess.run([str(venv / "bin" / "derive"), "build", str(ROOT / "examples" / "seed004_mlp_column.yaml"), "-o", str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (out / "seed004_mlp_column.tex").read_text().startswith(r"\documentclass")
    listing = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "from derive.documents import builtin_examples; print(len(builtin_examples()))"],
                             capture_output=True, text=True, cwd=tmp_path)
    assert int(listing.stdout) == len(builtin_examples())


def test_layers_option_writes_out_the_chosen_layers_and_one_sentence_per_gap(tmp_path):
    spec = tmp_path / "deep.yaml"
    spec.write_text("name: deep\ninput: n\nlayers:\n" + "  - {units: n, activation: tanh}\n" * 7
                    + "  - {units: 1, activation: sigmoid}\nloss: binary_cross_entropy\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "derive.cli", "build", str(spec), "-o", str(out),
                           "--layers", "1,7-8"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    tex = (out / "deep.tex").read_text()
    written = set(re.findall(r"\\subsection\{\$\\delta\^\{(\d+)\}\$(?: \(output layer\))?\}", tex))
    assert written == {"8", "7", "1"}
    assert r"\subsection{$\delta^{6}$ \ldots{} $\delta^{2}$}" in tex
    assert tex.count("not written out in this document") == 2            # one gap, in both sections
    assert r"\frac{\partial L}{\partial W^{l}} &=" in tex.split(r"\section{Summary")[1]     # summary: layer l
    full = render_document(derive(load_spec(spec)), None, "en", detail="full")
    assert "not written out" not in full and len(full) > 2 * len(tex) - 10_000

    for bad, words in (("0-2", "out of range"), ("3-2", "out of range"), ("x", "not a layer or a range"),
                       ("9", "1 to 8")):
        proc = subprocess.run([sys.executable, "-m", "derive.cli", "build", str(spec), "-o", str(tmp_path / "bad"),
                               "--layers", bad], capture_output=True, text=True)
        assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, (bad, proc.stderr)
        assert not (tmp_path / "bad").exists()


UNICODE_TITLE = "σ-Netz: ∂L/∂W, café, naïve, 中文, 😀 — δ² ⊙ x₁, λ‖W‖², “quoted”"


def test_any_unicode_in_text_becomes_latex_every_font_has():
    """Greek and mathematical signs become math, CJK passes only where a CJK font is loaded, and any
    other character is written as its code point: nothing is left for a font to lack."""
    en, zh = escape_text(UNICODE_TITLE), escape_text(UNICODE_TITLE, cjk=True)
    assert r"\ensuremath{\sigma}" in en and r"\ensuremath{\partial}" in en and r"\ensuremath{\odot}" in en
    assert "中文" in zh and "中" not in en and "[U+4E2D]" in en and "[U+1F600]" in zh
    assert all(ord(ch) < 0x17F for ch in en)
    assert all(ord(ch) < 0x17F or 0x3000 <= ord(ch) <= 0x9FFF for ch in zh)


@pytest.mark.pdf
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_unicode_title_typesets_with_no_missing_glyph(tmp_path, lang):
    from derive.documents import publish

    spec = network("uni", 2, [(2, "sigmoid")], title=UNICODE_TITLE)
    result = derive(spec)
    text = render_document(result, check(result), lang)
    _, pdf, warnings = publish(text, tmp_path, "uni", lang, pdf=True)
    assert pdf.is_file() and not [w for w in warnings if "Missing character" in w], warnings
    assert r"\tracinglostchars=2" in text          # so that a lost glyph would be in the warnings


@pytest.mark.pdf
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_verify_feedback_with_greek_diagnoses_compiles_and_keeps_the_verdicts_exit_code(tmp_path, lang):
    """The two commonest slips (a missing σ', ⊙ for a product) have Greek in their diagnosis."""
    source = tmp_path / "missing_sigma.tex"
    source.write_text("\\begin{align*}\n\\frac{\\partial L}{\\partial W^{1}} &= \\delta^{1} x^{T} \\\\\n"
                      "&= (W^{2})^{T} \\delta^{2} x^{T}\n\\end{align*}\n")
    proc = subprocess.run([sys.executable, "-m", "derive.cli", "verify", str(EXAMPLES / "three_layers.yaml"),
                           "--derivation", str(source), "--pdf", "--lang", lang, "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "σ'" in proc.stdout, proc.stdout + proc.stderr
    assert list((tmp_path / "out").glob("*.pdf")), proc.stderr
