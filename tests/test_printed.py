"""What a document prints is what was checked: every printed equation is read back from the emitted
LaTeX and judged in the document's notation; each defect found by reading the demo documents is
pinned here."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import dense_examples
from hypothesis import HealthCheck, given, settings

from derive import network
from derive.engine import derive
from derive.errors import PrintedLineError
from derive.printing import DerivePrinter
from derive.readback import PrintedEquation, judge_equation, printed_equations, read_back
from derive.render import render_document
from derive.spec import load

from test_property import networks

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def document(spec, lang="en", detail="full"):
    """The full detail: these tests read the sentence written above each step."""
    result = derive(spec)
    return result, render_document(result, None, lang, detail=detail)


def example(name):
    return load(EXAMPLES / f"{name}.yaml")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(networks())
def test_every_printed_equation_of_a_random_network_reads_back_true(spec):
    """Every profile, every level (index, matrix, batch, concrete, the general layer l), both languages,
    the concise and the full document."""
    result = derive(spec)
    for lang, detail in (("en", "normal"), ("zh", "normal"), ("en", "full"), ("zh", "brief")):
        report = read_back(result, render_document(result, None, lang, detail=detail))
        assert report.printed > 0
        assert report.passed, [(j.equation.line, j.status, j.message, j.equation.text) for j in report.failures]


@pytest.mark.parametrize("name", sorted(s.name for s in dense_examples()))
def test_every_example_reads_back_in_full(name):
    result, tex = document(example(name))
    report = read_back(result, tex)
    assert report.printed == report.read_back == report.correct > 20


# ----------------------------------------------------------------------- mutations

def test_a_printer_that_swaps_a_weight_index_pair_fails_the_build(tmp_path, monkeypatch):
    original = DerivePrinter._print_Indexed

    def swapped(self, expr):
        text = original(self, expr)
        if self.q.atom(expr.base.label).kind == "W" and len(expr.indices) == 2:
            return re.sub(r"_\{(\w)(\w)\}$", r"_{\2\1}", text)
        return text

    monkeypatch.setattr(DerivePrinter, "_print_Indexed", swapped)
    from derive.documents import build

    with pytest.raises(PrintedLineError, match=r"line \d+"):
        build(example("seed004_mlp_column"), tmp_path)
    assert not list(tmp_path.iterdir())          # nothing written


def test_a_printer_that_drops_transposes_fails_the_build(tmp_path, monkeypatch):
    monkeypatch.setattr(DerivePrinter, "_print_Transpose", lambda self, expr: self._print(expr.arg))
    from derive.documents import build

    with pytest.raises(PrintedLineError):
        build(example("three_layers"), tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_template_line_with_a_dropped_transpose_is_found_on_its_line():
    result, tex = document(example("seed004_mlp_column"))
    boxed = next(n for n, line in enumerate(tex.splitlines(), 1) if r"\boxed{\frac{\partial L}{\partial W^{1}}" in line)
    lines = tex.splitlines()
    lines[boxed - 1] = lines[boxed - 1].replace("x^{T}", "x")
    report = read_back(result, "\n".join(lines))
    assert [j.equation.line for j in report.failures] == [boxed]


def test_cli_build_exits_1_and_quotes_the_line(tmp_path):
    """Through the command line: a sitecustomize breaks the printer in the child process."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "from derive.printing import DerivePrinter\n"
        "DerivePrinter._print_Transpose = lambda self, expr: self._print(expr.arg)\n")
    out = tmp_path / "out"
    env = {"PYTHONPATH": str(hook), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "derive.cli", "build", str(EXAMPLES / "three_layers.yaml"),
                           "-o", str(out)], capture_output=True, text=True, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "do not read back as true" in proc.stderr and "line " in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not list(out.iterdir())


def test_check_printed_reports_the_counts(tmp_path):
    import json

    proc = subprocess.run([sys.executable, "-m", "derive.cli", "check", str(EXAMPLES / "seed003_rashid_summation.yaml"),
                           "--printed", "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)["printed"]
    for lang in ("en", "zh"):
        assert printed[lang]["printed"] == printed[lang]["read_back"] == printed[lang]["correct"] > 20
        assert printed[lang]["failures"] == []


# ----------------------------------------------------------------- the judge itself

@pytest.mark.parametrize("lhs, rhs, status", [
    (r"z^{1}_{j}", r"b^{1}_{j} + \sum_{i=1}^{2} w^{1}_{ji} x_{i}", "correct"),
    (r"z^{1}_{j}", r"b^{1}_{j} + \sum_{i=1}^{2} w^{1}_{ij} x_{i}", "wrong"),           # swapped pair
    (r"\delta^{1}", r"\left(\left(W^{2}\right)^{T} \delta^{2}\right) \odot \sigma'(z^{1})", "correct"),
    (r"\delta^{1}", r"\left(W^{2} \delta^{2}\right) \odot \sigma'(z^{1})", "unreadable"),   # shapes do not fit
    (r"\frac{\partial a^{1}_{p}}{\partial z^{1}_{k}}", r"[p = k] \sigma'(z^{1}_{k})", "correct"),
    (r"\frac{\partial a^{1}_{p}}{\partial z^{1}_{k}}", r"\sigma'(z^{1}_{k})", "wrong"),      # the bracket dropped
    (r"y_{1}", r"\sigma(z^{2}_{k})", "wrong"),                                            # k free on one side
])
def test_the_judge_reads_equations_in_the_notation(lhs, rhs, status):
    """A wrong line is 'wrong' (the sides differ) or 'unreadable' (it does not make sense in the
    notation, e.g. an index over two ranges); both stop a build."""
    result = derive(example("seed004_mlp_column"))
    judged = judge_equation(result, PrintedEquation(1, lhs, rhs)).status
    assert judged == status or (status == "wrong" and judged == "unreadable"), judged


def test_nan_is_never_equal():
    result = derive(network("n", 1, [(1, "sigmoid")], loss="binary_cross_entropy"))
    judged = judge_equation(result, PrintedEquation(1, r"\log(a^{1}_{1} - a^{1}_{1})", r"\log(a^{1}_{1} - a^{1}_{1})"))
    assert judged.status == "wrong"


def test_extraction_joins_continued_and_broken_rows():
    tex = "\\begin{align*}\n\\intertext{a}\nx &= y \\\\\n &= z \\\\\n&\\qquad + w\n\\end{align*}\n\\[ \\boxed{u = v} \\]\n"
    eqs = printed_equations(tex)
    assert [(e.line, e.lhs, e.rhs) for e in eqs] == [(3, "x", "y"), (4, "y", "z + w"), (7, "u", "v")]


# --------------------------------------------------------- defects found by reading the demos

def test_row_layout_batch_entries_are_sample_then_unit():
    _, tex = document(example("seed004_mlp_rowvec"))
    assert r"A^{1}_{sj} \Delta^{2}_{sk}" in tex and r"X_{sj} \Delta^{1}_{sk}" in tex
    assert r"A^{1}_{js}" not in tex and r"X_{js}" not in tex


def test_seed000_names_the_output_and_has_no_index_on_one_side_only():
    _, tex = document(example("seed000_deep_linear"))
    assert r"generic differentiable function of the output $y_{\mathrm{out}}$" in tex
    assert r"y_{\mathrm{out}} &= \operatorname{id}(z^{4}_{1})" in tex
    assert r"\operatorname{id}(z^{4}_{k})" not in tex


def test_a_sum_over_one_unit_is_its_one_term_and_the_prose_says_so():
    _, tex = document(example("seed004_mlp_rowvec"))
    assert not re.search(r"\\sum_\{\w=1\}\^\{1\}", tex)
    assert r"Put the factor $\sigma'(z^{1}_{k})$ first" in tex
    assert "layer $2$ has a single unit" in tex and "fresh dummy index $p$" not in tex


@pytest.mark.parametrize("name", ["three_layers", "seed000_deep_linear"])
def test_factoring_out_names_the_factor_and_index_of_the_equation(name):
    _, tex = document(example(name))
    sentences = re.findall(r"The factor \$(.*?)\$ does not depend on the summation index \$(.*?)\$", tex)
    assert sentences
    for factor, index in sentences:
        assert "f'(z_j)" not in factor and "_{" + index + "}" not in factor


def test_no_bias_sentences_in_networks_without_bias():
    for name in ("seed000_deep_linear", "seed003_rashid_summation"):
        for lang in ("en", "zh"):
            _, tex = document(example(name), lang)
            assert "the bias" not in tex and "(and the bias)" not in tex and "and biases" not in tex
            assert "偏置）" not in tex and "与偏置" not in tex
    _, tex = document(example("seed004_mlp_column"))
    assert "and biases" in tex and "(and the bias)" in tex


def test_a_penalty_in_a_gradient_is_in_the_printed_loss():
    for samples in (1, "m"):
        spec = network("p", 2, [(3, "tanh"), (1, "sigmoid")], loss={"kind": "binary_cross_entropy", "l2": "lam"},
                       samples=samples)
        _, tex = document(spec)
        loss_lines = [line for line in tex.splitlines() if line.startswith("L &=")]
        assert any(r"\frac{\mathit{lam}}{2} \sum_{j=1}^{3} \sum_{k=1}^{2} \left(w^{1}_{jk}\right)^{2}" in line
                   for line in loss_lines), loss_lines


def test_softmax_is_not_said_to_act_entry_by_entry():
    spec = network("s", 2, [(3, "softmax")], loss="cross_entropy")
    for lang, wrong in (("en", r"$\operatorname{softmax}$ acts entry by entry"), ("zh", r"$\operatorname{softmax}$ 逐元素作用")):
        _, tex = document(spec, lang)
        assert wrong not in tex
        assert ("acts on the whole vector" if lang == "en" else "作用于整个向量") in tex


def test_rashid_outer_product_entry_is_row_target_column_source():
    _, tex = document(example("seed003_rashid_summation"))
    assert r"entry $( k, j )$ is $\delta_{k} o_{j}$" in tex or r"Entry $( k, j )$ is $\delta_{k} o_{j}$" in tex


def test_ng_bias_column_and_weight_matrix_are_named_apart():
    _, tex = document(example("seed001_ng_cross_entropy"))
    assert r"z^{(2)} &= \tilde{\Theta}^{(1)} x + \Theta^{(1)}_{\cdot 0}" in tex
    assert r"z^{(2)} &= \Theta^{(1)} x" not in tex
    assert r"is the matrix without column 0" in tex


def test_cancel_names_the_symbol_of_the_equation():
    spec = network("c", 2, [(3, "softmax")], loss="cross_entropy")
    _, tex = document(spec)
    assert r"Cancel $a^{1}_{p}$" in tex and "Cancel $a_k$" not in tex


def test_prose_names_the_layers_own_derivative():
    _, tex = document(example("seed001_ng_cross_entropy"))
    assert "f'(" not in tex
    assert re.search(r"\$g\$ acts entry by entry: \$a\^\{\(3\)\}_\{p\}\$ depends only on", tex)
    _, tex = document(example("seed004_mlp_column"))
    assert "f'(" not in tex and r"\sigma'( z^{2}_{j} )" in tex


def test_kronecker_delta_is_a_bracket_never_the_error_term():
    for name in ("seed003_rashid_summation", "three_layers"):
        _, tex = document(example(name))
        assert re.search(r"\[\w = \w\]", tex)
        assert not re.search(r"\\delta_\{[a-z][a-z]\}", tex)


def test_concrete_entries_of_a_batch_are_labelled_as_one_samples():
    _, tex = document(example("seed004_mlp_rowvec"))
    assert "These are the gradients for one sample" in tex


def test_concrete_level_keeps_the_penalty_of_a_generic_loss():
    spec = network("g", 1, [(1, "identity")], loss={"kind": "generic", "l2": "1/10"})
    result, tex = document(spec)
    assert read_back(result, tex).passed
    chain = [line for line in tex.splitlines() if line.startswith(r"\frac{\partial L}{\partial w^{1}_{11}}")]
    assert chain and all(r"\frac{w^{1}_{11}}{10}" in line for line in chain[-1:]), chain


# ------------------------------------------------------ graph tables and verify feedback

def test_graph_table_numbers_read_back_and_a_changed_digit_is_caught():
    from derive.graph import build as build_graph
    from derive.graph_readback import check_graph_table
    from derive.render import render_graph

    text = "(x+y)*z + max(x, 2) + relu(y) + x^2/z"
    graph = build_graph(text, {"x": -2.0, "y": 5.0, "z": -4.0})
    tex = render_graph(graph, text, "en")
    assert check_graph_table(graph, tex) >= 3 * len(graph.nodes)
    row = next(line for line in tex.splitlines() if line.startswith("4 $\\leftarrow$ 2, 3"))
    broken = tex.replace(row, row.replace("$-4, 3$", "$-4, 3.0002$"))       # integers print as integers
    with pytest.raises(PrintedLineError, match="node 4's printed local"):
        check_graph_table(graph, broken)


def test_feedback_fix_is_read_back(monkeypatch):
    import derive.verify as verify
    import derive.verify.feedback as feedback

    result = derive(example("seed004_mlp_column"))
    source = (Path(__file__).parent / "verify_corpus" / "derivations" / "col_w2_sign.tex").read_text()
    verdict = verify.verify_derivation(result, source)
    assert r"\text{should be } -" in verify.feedback_document(result, verdict, None, "en")
    monkeypatch.setattr(feedback, "term_latex", lambda t, meaning, _orig=feedback.term_latex:
                        _orig(t, meaning).lstrip("-"))          # a writer that loses the sign it was to fix
    with pytest.raises(PrintedLineError, match="does not read back as correct"):
        verify.feedback_document(result, verdict, None, "en")


def test_inline_equations_of_fact_are_read_back_and_a_dropped_bracket_is_caught():
    """\\( ... \\) marks an equation in a sentence about this network (the activation's derivative):
    it is read back like a displayed one."""
    result, tex = document(example("seed004_mlp_column"))
    inline = [e for e in printed_equations(tex) if e.lhs.startswith(r"\frac{\partial a^{1}_{i}}")]
    assert inline and inline[0].rhs.startswith("[i = j]")
    assert read_back(result, tex).passed
    broken = tex.replace(r"\(\frac{\partial a^{1}_{i}}{\partial z^{1}_{j}} = [i = j] \, ",
                         r"\(\frac{\partial a^{1}_{i}}{\partial z^{1}_{j}} = ", 1)
    assert [j.equation.line for j in read_back(result, broken).failures] == [inline[0].line]
