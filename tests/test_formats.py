"""Markdown, HTML, Beamer and body-only documents: written for every example, read by a real browser.

The browser is Debian's Chromium, driven by Playwright; KaTeX comes from Debian's libjs-katex (the
test's own dependency, as GitHub or MkDocs bring their own renderer). Both are installed by
`make test`; without them the browser tests skip.
"""
import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import dense_examples
from derive.documents import build, builtin_examples
from derive.formats import FormatError, markdown, md_prose

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
KATEX = Path("/usr/share/javascript/katex/katex.min.js")
EXAMPLES = [spec.name for spec in dense_examples()]
SHOTS = Path(__file__).resolve().parent.parent / "output" / "screenshots"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Every example in both languages, in every text form."""
    folder = tmp_path_factory.mktemp("forms")
    out = {}
    for spec in dense_examples():
        for lang in ("en", "zh"):
            outcome = build(spec, folder, lang=lang, formats=("tex", "md", "html", "beamer", "body"))
            assert outcome.passed
            out[spec.name, lang] = dict(outcome.files)
    return out


def test_every_example_is_written_in_every_form(written):
    for (name, lang), files in written.items():
        assert set(files) == {"tex", "md", "html", "beamer", "body"}, (name, lang)
        md = files["md"].read_text(encoding="utf-8")
        assert md.startswith("# ") and "\\intertext" not in md and "\\section" not in md and "\\begin{align*}" not in md
        assert md.count("$$") % 2 == 0
        # a TeX comment (the readback's % derive-general marks) ends where it starts, also after prose
        assert "derive-general" not in md and not re.search(r"(?<![\\\d])%", md), (name, lang)
        body = files["body"].read_text(encoding="utf-8")
        assert "\\documentclass" not in body and "\\begin{document}" not in body and "\\section" in body
        slides = files["beamer"].read_text(encoding="utf-8")
        assert "{beamer}" in slides or "{ctexbeamer}" in slides
        assert slides.count("\\begin{frame}") == slides.count("\\end{frame}") > 5


def test_markdown_keeps_every_displayed_equation_of_the_document(written):
    """The Markdown's displays are the flow document's, which is read back like the .tex (the build
    refuses to write a form whose printed equations do not read back true)."""
    files = written["seed004_mlp_column", "en"]
    md = files["md"].read_text(encoding="utf-8")
    assert r"\boxed{\frac{\partial L}{\partial W^{l}} = \delta^{l} \left(a^{l-1}\right)^{T}}" in md     # layer l
    assert r"\frac{\partial L}{\partial W^{1}} &= \delta^{1} x^{T}" in md                              # its instance
    assert md.count(r"\boxed{") == files["tex"].read_text(encoding="utf-8").count(r"\boxed{")


def test_prose_translation_refuses_what_it_does_not_know():
    assert md_prose(r"as NumPy's \texttt{X @ W} does; \textbf{NO}; 5\% \ldots{}") == \
        "as NumPy's `X @ W` does; **NO**; 5% …"
    assert md_prose(r"so \(a = b\) holds") == "so $a = b$ holds"
    with pytest.raises(FormatError, match=r"\\vspace"):
        md_prose(r"text \vspace{1em} more")
    with pytest.raises(FormatError, match="begin"):
        markdown("no document here", "t", "s")


def test_a_hostile_title_is_text_in_every_form(tmp_path):
    from derive import network

    spec = network("hostile", 2, [(1, "sigmoid")], loss="squared_error",
                   title="<script>alert(1)</script> σ′ & 100% $x$ \\input{/etc/passwd}")
    files = dict(build(spec, tmp_path, formats=("md", "html", "beamer")).files)
    html = files["html"].read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<script>" not in files["md"].read_text(encoding="utf-8")
    assert "\\input{/etc" not in files["beamer"].read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- the browser
@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (make test installs Debian's chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def _math_of_markdown(md: str) -> list[tuple[str, bool]]:
    """The formulas a KaTeX- or MathJax-based Markdown renderer sees: markdown-it's dollarmath tokens."""
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    parser = MarkdownIt("commonmark").enable("table").use(dollarmath_plugin, allow_space=True, allow_digits=True,
                                                          double_inline=True)
    out = []

    def walk(tokens):
        for token in tokens:
            if token.type in ("math_inline", "math_inline_double", "math_block", "math_block_label"):
                out.append((token.content, token.type != "math_inline"))
            walk(token.children or [])
    walk(parser.parse(md))
    return out


def test_katex_renders_every_formula_of_every_markdown_document(written, browser, tmp_path):
    if not KATEX.exists():
        pytest.skip("KaTeX is not installed (make test installs Debian's libjs-katex)")
    page = browser.new_page()
    page.goto(f"file://{KATEX.parent}/")        # same origin as the script file
    page.add_script_tag(path=str(KATEX))
    total = 0
    for (name, lang), files in sorted(written.items()):
        formulas = _math_of_markdown(files["md"].read_text(encoding="utf-8"))
        assert formulas, name
        errors = page.evaluate("""(formulas) => formulas.map(([tex, display]) => {
            try { katex.renderToString(tex, {displayMode: display, throwOnError: true, strict: "error"}); return null; }
            catch (e) { return tex.slice(0, 120) + " :: " + e.message; } }).filter(x => x)""", formulas)
        assert errors == [], (name, lang, errors[:3])
        total += len(formulas)
    assert total > 1200          # 14 concise documents (2,915 formulas before they were halved)
    page.close()


def test_html_pages_render_their_mathml_offline_and_fit_the_window(written, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    for (name, lang), files in sorted(written.items()):
        context = browser.new_context(viewport={"width": 1000, "height": 1400}, offline=True)
        page = context.new_page()
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(files["html"].as_uri())
        found = page.evaluate("""() => ({
            math: document.querySelectorAll('math').length,
            errors: document.querySelectorAll('merror').length,
            width: document.documentElement.scrollWidth,
            raw: [...document.querySelectorAll('p, li, td, h1, h2, h3')].map(e => e.innerText)
                  .filter(t => /\\\\[a-zA-Z]+|\\$/.test(t)).slice(0, 3),
            height: document.querySelector('math[display=block]').getBoundingClientRect().height})""")
        assert found["math"] > 30 and found["errors"] == 0, (name, lang, found)
        assert found["raw"] == [], (name, lang, found["raw"])          # no TeX left unrendered in the prose
        assert found["width"] <= 1000, (name, lang, found["width"])     # wide displays scroll inside themselves
        assert found["height"] > 12                                     # MathML laid out, not collapsed to text
        assert [u for u in requests if not u.startswith("file:")] == []
        if name.startswith("seed"):
            page.screenshot(path=str(SHOTS / f"{name}.{lang}.png"))
        context.close()


def test_build_json_lists_every_form(tmp_path):
    from click.testing import CliRunner

    from derive.cli import main

    run = CliRunner().invoke(main, ["build", "seed004_mlp_column", "--format", "md,html,body", "-o", str(tmp_path),
                                    "--json"])
    assert run.exit_code == 0, run.output
    document = json.loads(run.stdout)["documents"][0]
    assert set(document["files"]) == {"md", "html", "body"} and document["tex"] is None
    assert all(Path(p).exists() for p in document["files"].values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed004_mlp_column.body.tex", "seed004_mlp_column.html",
                                                        "seed004_mlp_column.md"]


@pytest.mark.pdf
def test_slides_and_the_body_compile(tmp_path):
    from derive.pdf import compile_text, have_tex

    if not have_tex():
        pytest.skip("latexmk is not installed")
    spec = next(s for s in builtin_examples() if s.name == "seed001_ng_cross_entropy")
    for lang in ("en", "zh"):
        outcome = build(spec, tmp_path, lang=lang, pdf=True, formats=("tex", "beamer", "body"))
        files = dict(outcome.files)
        assert files["beamer_pdf"].read_bytes().startswith(b"%PDF")
        assert not [w for w in outcome.warnings if "Overfull" in w], outcome.warnings
        body = files["body"].read_text(encoding="utf-8")
        wrapper = ("\\documentclass{ctexart}" if lang == "zh" else "\\documentclass{article}") + \
            "\n\\usepackage{amsmath,amssymb,booktabs,longtable}\n\\begin{document}\n" + body + "\\end{document}\n"
        data, _ = compile_text(wrapper, "notes.tex", engine="xelatex" if lang == "zh" else "pdflatex")
        assert data.startswith(b"%PDF")
    if shutil.which("pdfinfo"):
        import subprocess

        info = subprocess.run(["pdfinfo", str(files["beamer_pdf"])], capture_output=True, text=True).stdout
        assert int(re.search(r"Pages:\s+(\d+)", info).group(1)) > 10


@pytest.mark.pdf
def test_graph_figures_as_svg_and_png(tmp_path):
    from click.testing import CliRunner

    from derive.cli import main
    from derive.pdf import have_tex

    if not have_tex() or not shutil.which("pdftocairo"):
        pytest.skip("needs latexmk and poppler-utils")
    run = CliRunner().invoke(main, ["graph", "(x + y) * z", "--at", "x=-2", "--at", "y=5", "--at", "z=-4",
                                    "--svg", "--png", "-o", str(tmp_path), "--name", "fig"])
    assert run.exit_code == 0, run.output
    svg = (tmp_path / "fig.svg").read_text(encoding="utf-8")
    assert "<svg" in svg and "viewBox" in svg and svg.count("<path") > 20      # glyphs and arrows as paths
    png = (tmp_path / "fig.png").read_bytes()
    assert png.startswith(b"\x89PNG") and int.from_bytes(png[16:20], "big") > 400   # width in pixels


def test_codegen_json_says_how_its_layout_relates_to_the_document(tmp_path):
    from click.testing import CliRunner

    from derive.cli import main

    spec = tmp_path / "ft.yaml"
    spec.write_text("name: ft\ninput: 3\nnotation: fromto\nlayers:\n  - {units: 2, activation: sigmoid}\n"
                    "loss: {kind: binary_cross_entropy}\n", encoding="utf-8")
    run = CliRunner().invoke(main, ["codegen", str(spec), "-o", str(tmp_path / "m.py"), "--json"])
    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    assert data["weights_as_in_document"] is False and data["weights_shape"] == "(n_l, n_{l-1})"
    assert data["parameters"] == ["W1", "b1"] and Path(data["file"]).exists()


def test_no_progress_bar_when_not_a_terminal(tmp_path):
    from click.testing import CliRunner

    from derive.cli import main

    run = CliRunner().invoke(main, ["build", "seed003_rashid_summation", "seed004_mlp_column", "-o", str(tmp_path)])
    assert run.exit_code == 0, run.output
    assert "\r" not in run.stderr and "derive build [" not in run.stderr and "[1/2]" not in run.stderr
    assert run.stdout.split() == [str(tmp_path / "seed003_rashid_summation.tex"), str(tmp_path / "seed004_mlp_column.tex")]
