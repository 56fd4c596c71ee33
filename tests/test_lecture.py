"""Documents a lecturer hands out: the general layer l (derived once, checked and read back at every
layer it stands for), the detail levels, compare:, the summary, and the typography of the PDFs."""
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from derive import load as load_spec, network
from derive.checks import check
from derive.documents import build, builtin_examples
from derive.engine import derive
from derive.errors import SpecError
from derive.readback import read_back
from derive.render import render_document
from derive.spec import loads

from conftest import IN_CI, dense_examples

ROOT = Path(__file__).resolve().parent.parent

# Pages of each example's PDF before issue 15 (normal detail must be at most half of these).
PAGES_BEFORE = {"classifier": (11, 12), "seed000_deep_linear": (11, 11), "seed001_ng_cross_entropy": (12, 12),
                "seed003_rashid_summation": (4, 4), "seed004_mlp_column": (10, 10), "seed004_mlp_rowvec": (12, 12),
                "three_layers": (16, 16)}


def example(name):
    return load_spec(ROOT / "examples" / f"{name}.yaml")


def needs_tools(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        if IN_CI:
            pytest.fail(f"{missing} missing in CI")
        pytest.skip(f"{missing} not installed")


# ------------------------------------------------------------------- the general layer l

def test_general_derivations_stand_for_each_layer_and_are_checked_there():
    result = derive(example("three_layers"))
    general = {d.key: d.instances for d in result.general}
    assert general["delta_l:index"] == (2, 1) and general["weight_l:matrix"] == (3, 2, 1)
    report = check(result)
    at = {s.derivation for s in report.steps if " at l = " in s.derivation}
    assert {"delta_l:index at l = 2", "delta_l:index at l = 1", "weight_l:index at l = 3"} <= at
    assert report.steps_failed == 0


def test_a_wrong_general_step_fails_its_check_at_a_layer():
    """The general derivation's steps are instantiated and evaluated: a wrong one cannot pass."""
    result = derive(example("three_layers"))
    d = next(d for d in result.general if d.key == "delta_l:matrix")
    wrong = d.steps[-1]
    bad = replace(d, steps=d.steps[:-1] + (type(wrong)(wrong.lhs, 2 * wrong.rhs, wrong.level, wrong.free, wrong.facts),))
    broken = replace(result, general=tuple(bad if g is d else g for g in result.general))
    failed = [s for s in check(broken).steps if not s.passed]
    assert failed and all(s.derivation.startswith("delta_l:matrix at l = ") for s in failed)


def test_the_notes_numbering_puts_l_where_they_do():
    """Ng numbers the input layer 1: the recurrence reads delta^(l) = (Theta^(l))^T delta^(l+1) as he writes
    it, and 000's from-to weights give delta^l = W^l delta^{l+1}."""
    tex = render_document(derive(example("seed000_deep_linear")), lang="en")
    assert r"\delta^{l} &= W^{l} \delta^{l+1}" in tex or r"\boxed{\delta^{l} = W^{l} \delta^{l+1}}" in tex
    three = render_document(derive(example("three_layers")))
    assert r"\left(W^{l+1}\right)^{T} \delta^{l+1}" in three


def test_a_wrong_general_line_reads_back_wrong_at_some_l():
    result = derive(example("three_layers"))
    tex = render_document(result, check(result))
    right = r"\left(\left(W^{l+1}\right)^{T} \delta^{l+1}\right)"
    assert right in tex and read_back(result, tex).passed
    bad = read_back(result, tex.replace(right, r"\left(\left(W^{l+1}\right)^{T} \delta^{l}\right)", 1))
    assert bad.failures and "at l = " in bad.failures[0].message


# ------------------------------------------------------------------------ detail, paper

def test_detail_levels_nest_and_each_reads_back():
    result = derive(example("seed004_mlp_column"))
    report = check(result)
    texts = {d: render_document(result, report, "en", detail=d) for d in ("brief", "normal", "full")}
    assert len(texts["brief"]) < len(texts["normal"]) < len(texts["full"])
    assert "By the definition of the error term" in texts["full"]
    assert "By the definition of the error term" not in texts["normal"] and r"\stepnote{" in texts["normal"]
    assert r"\section{Summary: the backward pass}" in texts["brief"] and r"\stepnote{definition" not in texts["brief"]
    for text in texts.values():
        assert read_back(result, text).passed


def test_paper_defaults_to_a4_for_chinese_and_can_be_chosen():
    result = derive(example("seed003_rashid_summation"))
    assert "a4paper]{ctexart}" in render_document(result, lang="zh")
    assert "letterpaper]{article}" in render_document(result, lang="en")
    assert "a4paper]{article}" in render_document(result, lang="en", paper="a4")
    with pytest.raises(ValueError, match="accepted: a4, letter"):
        render_document(result, paper="a5")


def test_cli_detail_and_paper(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "derive.cli", "build", "seed004_mlp_column", "--detail", "brief", "--paper", "a4",
                           "-o", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    tex = (tmp_path / "seed004_mlp_column.tex").read_text()
    assert "a4paper" in tex and "Entry by entry" not in tex
    bad = subprocess.run([sys.executable, "-m", "derive.cli", "build", "seed004_mlp_column", "--detail", "short", "-o", str(tmp_path / "x")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "brief" in bad.stderr and not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- compare

def test_compare_flags_the_notes_slip_and_prints_the_corrected_line():
    result = derive(example("seed000_deep_linear"))
    tex = render_document(result, check(result))
    section = tex[tex.index(r"\section{The source notes, checked}"):tex.index(r"\section{Numerical check}")]
    assert section.count(r"\textbf{wrong}") == 2 and section.count(r"\textbf{correct}") == 1
    assert "w2\\_21 should be w2\\_31" in section
    corrected = section[section.index("Corrected:"):]
    assert r"w^{2}_{31}" in corrected.split(r"\end{align*}")[0]
    assert read_back(result, tex).passed            # the corrected lines and derive's results read back


def test_compare_entries_are_validated(tmp_path):
    base = "name: c\ninput: 2\nlayers: [{units: 1, activation: sigmoid}]\n"
    for bad, words in (("compare: 3\n", "a list"), ("compare: [{param: W1}]\n", "compare[1].claim"),
                       ("compare: [{param: W1, claim: x, page: 3}]\n", "compare[1].page")):
        with pytest.raises(SpecError, match=re.escape(words)):
            loads(base + bad, "c.yaml")


# ------------------------------------------------------------------------------ titles

def test_titles_have_math_through_derive_grammar_and_a_chinese_form():
    spec = loads('name: t\ntitle: {en: "Sum $(x + y) z$", zh: "和 $(x + y) z$"}\ninput: 1\n'
                 "layers: [{units: 1, activation: sigmoid}]\n", "t.yaml")
    en, zh = (render_document(derive(spec), lang=lang) for lang in ("en", "zh"))
    assert r"\title{Sum $\left(x + y\right) z$}" in en and r"\title{和 $\left(x + y\right) z$}" in zh
    for hostile in (r"$\input{/etc/passwd}$", "$x", r"$\def\x{1}$"):
        with pytest.raises(SpecError, match="title"):
            loads(f"name: t\ntitle: '{hostile}'\ninput: 1\nlayers: [{{units: 1, activation: sigmoid}}]\n", "t.yaml")


ENGLISH_ALLOWED = {"derive", "verify", "sigmoid", "softmax", "NumPy", "ReLU", "MLP", "Rashid", "PyTorch"}


@pytest.mark.parametrize("spec", dense_examples(), ids=lambda s: s.name)
def test_chinese_documents_have_no_english_prose(spec):
    """Outside mathematics and commands, a Chinese document has Chinese words (a few names excepted)."""
    tex = render_document(derive(spec), check(derive(spec)), "zh")
    body = tex[tex.index(r"\begin{document}"):]
    body = re.sub(r"\\begin\{(align\*|equation\*)\}.*?\\end\{\1\}|\\\[.*?\\\]|\$[^$]*\$|\\\(.*?\\\)", " ", body, flags=re.S)
    body = re.sub(r"%.*|\\begin\{tabular\}\{[a-z]+\}", " ", body)
    body = re.sub(r"\\[A-Za-z]+\*?(\{[a-z*]+\})?", " ", body)
    words = {w for w in re.findall(r"[A-Za-z]{3,}", body)} - ENGLISH_ALLOWED
    assert not words, sorted(words)


# --------------------------------------------------------------------------- the PDFs

@pytest.mark.pdf
@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("spec", dense_examples(), ids=lambda s: s.name)
def test_pdfs_are_half_as_long_with_vector_fonts_and_no_overfull_box(spec, lang, tmp_path):
    needs_tools("latexmk", "pdffonts", "pdfinfo", "pdftotext")
    outcome = build(spec, tmp_path, lang=lang, pdf=True)
    assert not [w for w in outcome.warnings if w.startswith(("Overfull", "Missing character"))], outcome.warnings
    pages = int(re.search(r"Pages:\s+(\d+)", subprocess.run(["pdfinfo", str(outcome.pdf)], capture_output=True,
                                                             text=True).stdout).group(1))
    before = PAGES_BEFORE[spec.name][lang == "zh"]
    assert pages <= before // 2 + (before % 2 and 0), (pages, before)
    fonts = subprocess.run(["pdffonts", str(outcome.pdf)], capture_output=True, text=True).stdout
    assert "Type 3" not in fonts, fonts
    text = subprocess.run(["pdftotext", str(outcome.pdf), "-"], capture_output=True, text=True).stdout
    assert ("定义" if lang == "zh" else "definition") in text      # searchable text, not bitmaps


@pytest.mark.pdf
def test_brief_is_a_one_page_sheet(tmp_path):
    needs_tools("latexmk", "pdfinfo")
    for lang in ("en", "zh"):
        outcome = build(example("seed004_mlp_column"), tmp_path, lang=lang, pdf=True, detail="brief")
        info = subprocess.run(["pdfinfo", str(outcome.pdf)], capture_output=True, text=True).stdout
        assert re.search(r"Pages:\s+1\n", info), info
        tex = outcome.tex.read_text(encoding="utf-8")
        assert "Summary" in tex or "小结" in tex
