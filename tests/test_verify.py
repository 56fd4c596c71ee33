"""Verifying hand derivations: a corpus of claims and derivations with planted slips, and bad input."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from derive import load
from derive.engine import derive
from derive.notation import profile
from derive.printing import DerivePrinter
from derive.verify import verify_claim, verify_derivation
from test_property import networks

HERE = Path(__file__).parent
EXAMPLES = HERE.parent / "examples"
CORPUS = HERE / "verify_corpus"
# claims.yaml: planted slips; student_*.yaml: written from the mathematics as students write, the
# expected answers decided by hand before derive was run on them.
CLAIMS = [c for name in ("claims.yaml", "student_claims.yaml") for c in yaml.safe_load((CORPUS / name).read_text())]
DERIVATIONS = [d for name in ("derivations.yaml", "student_derivations.yaml")
               for d in yaml.safe_load((CORPUS / name).read_text())]
_CACHE = {}


def result_for(example):
    if example not in _CACHE:
        _CACHE[example] = derive(load(EXAMPLES / f"{example}.yaml"), levels=("matrix",))
    return _CACHE[example]


def test_the_corpus_is_big_enough_and_half_planted():
    assert len(CLAIMS) >= 40 and len(DERIVATIONS) >= 15
    wrong = [c for c in CLAIMS if c["verdict"] != "correct"]
    assert 0.35 <= len(wrong) / len(CLAIMS) <= 0.75
    kinds = " ".join(c.get("diagnosis", "") for c in CLAIMS + DERIVATIONS)
    for kind in ("transpose", "order", "⊙", "σ'", "sign", "factor", "layer", "entry index", "swapped"):
        assert kind in kinds, kind
    assert len({c["example"] for c in CLAIMS}) >= 5      # several networks and notations


@pytest.mark.parametrize("case", CLAIMS, ids=[f"{c['example']}:{c['param']}:{i}" for i, c in enumerate(CLAIMS)])
def test_claims(case):
    verdict = verify_claim(result_for(case["example"]), case["param"], case["claim"])
    assert verdict.verdict == case["verdict"], verdict.diagnosis
    assert case.get("diagnosis", "") in verdict.explanation
    if verdict.verdict == "incorrect":
        ce = verdict.counterexample
        assert "problem" in ce or ({"sizes", "worst_entry", "expected", "claimed", "values"} <= set(ce)
                                   and ce["expected"] != ce["claimed"])


@pytest.mark.parametrize("case", DERIVATIONS, ids=[c["file"] for c in DERIVATIONS])
def test_derivations(case):
    text = (HERE / "verify_corpus" / "derivations" / f"{case['file']}.tex").read_text()
    verdict = verify_derivation(result_for(case["example"]), text)
    assert verdict.verdict == case["verdict"], verdict.diagnosis
    assert verdict.first_wrong_line == case.get("line")
    assert case.get("diagnosis", "") in verdict.explanation
    assert all({"line", "follows_from_previous", "correct"} <= set(l) for l in verdict.lines)


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "derive.cli", *args], capture_output=True, text=True, timeout=60, **kw)


def test_cli_json_and_exit_codes(tmp_path):
    spec = str(EXAMPLES / "seed004_mlp_column.yaml")
    ok = run("verify", spec, "--param", "W2", "--claim", r"\delta^{2} (a^{1})^T", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["verdict"] == "correct"
    bad = run("verify", spec, "--param", "W2", "--claim", r"-\delta^{2} (a^{1})^T", "--json")
    data = json.loads(bad.stdout)
    assert bad.returncode == 1 and data["verdict"] == "incorrect" and "sign" in data["diagnosis"]
    assert set(data) >= {"verdict", "first_wrong_line", "counterexample", "diagnosis"}
    shape = run("verify", spec, "--param", "W2", "--claim", r"\delta^{2} a^{1}", "--json")
    assert shape.returncode == 1 and json.loads(shape.stdout)["verdict"] == "shape_mismatch"
    path = tmp_path / "d.tex"
    path.write_text((HERE / "verify_corpus" / "derivations" / "col_w2_sign.tex").read_text())
    deriv = run("verify", spec, "--derivation", str(path), "--json")
    assert deriv.returncode == 1 and json.loads(deriv.stdout)["first_wrong_line"] == 4


BAD = [
    ["--param", "W2", "--claim", "__import__('os').system('touch pwned')"],
    ["--param", "W2", "--claim", r"\input{/etc/passwd}"],
    ["--param", "W2", "--claim", "2^{2^{40}}"],
    ["--param", "W2", "--claim", r"\frac{\delta^{2}}{"],
    ["--param", "W2", "--claim", "delta2\x01"],
    ["--param", "W9", "--claim", "delta2"],
    ["--param", "W2[1,1,1]", "--claim", "delta2"],
    ["--param", "W2", "--claim", "q2 * a1.T"],
]


@pytest.mark.parametrize("args", BAD, ids=range(len(BAD)))
def test_bad_input_is_a_clear_error_fast(args, tmp_path):
    start = time.perf_counter()
    proc = run("verify", str(EXAMPLES / "seed004_mlp_column.yaml"), *args, cwd=tmp_path)
    assert time.perf_counter() - start < 5
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and (proc.stderr or proc.stdout).strip()
    assert not (tmp_path / "pwned").exists()


def test_nul_bytes_and_a_megabyte_are_refused(tmp_path):
    result = result_for("seed004_mlp_column")
    assert verify_claim(result, "W2", "delta2\x00").verdict == "unparseable"
    start = time.perf_counter()
    assert verify_claim(result, "W2", "delta2 + " * 120_000 + "delta2").verdict == "unparseable"
    assert time.perf_counter() - start < 5
    big = tmp_path / "big.tex"
    big.write_text("&= delta2 \\\\\n" * 100_000)
    proc = run("verify", str(EXAMPLES / "seed004_mlp_column.yaml"), "--derivation", str(big))
    assert proc.returncode == 2 and "too large" in proc.stderr


def test_feedback_document_marks_the_wrong_line_and_shows_the_fix():
    from derive.verify import feedback_document

    text = (HERE / "verify_corpus" / "derivations" / "col_w2_sign.tex").read_text()
    result = result_for("seed004_mlp_column")
    verdict = verify_derivation(result, text)
    tex = feedback_document(result, verdict, None, "en")
    wrong_row = [line for line in tex.splitlines() if r"\color{red}" in line]
    assert len(wrong_row) == 1 and r"\text{line 4}" in wrong_row[0] and "should be" in wrong_row[0]
    assert r"\text{should be } -\left(\left(\left(y - a^{2}\right) \odot \sigma'(z^{2})\right) \left(a^{1}\right)^{T}\right)" \
        in wrong_row[0]
    assert r"\frac{\partial L}{\partial W^{2}} &=" in tex
    correct = verify_derivation(result, (HERE / "verify_corpus" / "derivations" / "col_w2_correct.tex").read_text())
    assert r"\color{red}" not in feedback_document(result, correct, None, "zh")


@pytest.mark.pdf
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_feedback_pdf_compiles(tmp_path, lang):
    from derive.pdf import have_tex

    from conftest import IN_CI

    if not have_tex():
        if IN_CI:
            pytest.fail("latexmk missing in CI")
        pytest.skip("latexmk not installed")
    source = HERE / "verify_corpus" / "derivations" / "ng_output_sign.tex"
    proc = run("verify", str(EXAMPLES / "seed001_ng_cross_entropy.yaml"), "--derivation", str(source), "--pdf",
               "--lang", lang, "-o", str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    pdf = tmp_path / ("ng_output_sign_feedback.pdf" if lang == "en" else "ng_output_sign_feedback.zh.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_symbolic_comparison_where_the_claim_has_a_matrix_form():
    result = result_for("seed001_ng_cross_entropy")
    same = verify_claim(result, "delta2", r"((\Theta^{(2)})^T \delta^{(3)}) \odot g'(z^{(2)})")
    assert same.verdict == "correct" and same.diagnosis.startswith("symbolically the engine's own result")
    other_form = verify_claim(result_for("seed004_mlp_column"), "W1",
                              r"((W^{2})^{T} \delta^{2} \odot \sigma'(z^{1})) x^{T}")
    assert other_form.verdict == "correct" and not other_form.diagnosis.startswith("symbolically")


def test_forms_sympys_latex_parser_misreads():
    """a(1-a) is a product (not a call), e^{-x} an exponential, delta^{(l)} a layer label, dL/d\\hat y a partial."""
    from derive.claim import parse_claim

    product = parse_claim("a^{2}(1 - a^{2})")
    assert product.op == "mul" and product.args[0].op == "symbol" and product.args[1].op == "sub"
    assert parse_claim("e^{-x}") .op == "elementary" and parse_claim("e^{-x}").args[0].op == "neg"
    delta = parse_claim(r"\delta^{(3)}")
    assert (delta.op, delta.name, delta.label) == ("symbol", "delta", 3)
    partial = parse_claim(r"\frac{\partial L}{\partial \hat{y}}")
    assert partial.op == "partial" and partial.args[1].name == "hat_y"
    result = result_for("seed004_mlp_column")
    assert verify_claim(result, "delta2", r"\frac{\partial L}{\partial \hat{y}} \odot a^{2} \odot (1 - a^{2})").verdict \
        == "correct"


def test_derivation_reports_both_sides_of_the_wrong_equality():
    text = (HERE / "verify_corpus" / "derivations" / "three_w3_order.tex").read_text()
    data = verify_derivation(result_for("three_layers"), text).to_json()
    assert data["sides"] == {"left": "(delta3 (a2)^T)", "right": "((a2)^T delta3)"}


@pytest.mark.parametrize("claim", [
    r"\sum_{k=1}^{999999999} \delta^{2}_{k}",
    " + ".join([r"\delta^{2} (a^{1})^T"] * 800),
    " + ".join([r"\delta^{2} (a^{1})^T"] * 120) + " + a^{1}",
])
def test_work_on_user_input_is_bounded(claim):
    start = time.perf_counter()
    verdict = verify_claim(result_for("seed004_mlp_column"), "W2", claim)
    assert time.perf_counter() - start < 5
    assert verdict.verdict in ("unparseable", "incorrect", "shape_mismatch")


def test_only_the_first_wrong_line_is_diagnosed_so_long_wrong_derivations_stay_fast():
    result = result_for("seed004_mlp_column")
    lines = [r"\frac{\partial L}{\partial W^{1}} &= ((W^{2})^T \delta^{2} \odot \sigma'(z^{1})) x^T \\"]
    lines += [rf"&= {k} ((W^{{2}})^T \delta^{{2}} \odot a^{{1}} \odot a^{{1}}) x^T x x^T + {k} a^{{1}} x^T \\" for k in range(3, 15)]
    start = time.perf_counter()
    verdict = verify_derivation(result, "\n".join(lines))
    assert time.perf_counter() - start < 6
    assert verdict.verdict == "incorrect" and verdict.first_wrong_line == 2
    assert not any(line["follows_from_previous"] or line["correct"] for line in verdict.lines[1:])


def printer_for(result):
    return DerivePrinter(result.quantities, profile(result.spec.notation, result.spec.symbols))


def printed_gradients(result, printer):
    """(parameter, its gradient as a derive document prints it); Ng's bias is column 0 of Theta and is
    verified with it."""
    for name in result.parameters:
        if not (result.spec.notation == "ng" and name.startswith("b")):
            yield name, printer.doprint(result.gradient(name).expr)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(networks())
def test_every_gradient_derive_prints_is_judged_correct_and_its_negation_a_sign_error(spec):
    """The printer and the claim grammar agree: a formula copied from a derive document verifies."""
    result = derive(spec)
    printer = printer_for(result)
    for name, tex in printed_gradients(result, printer):
        verdict = verify_claim(result, name, tex)
        assert verdict.verdict == "correct", (name, tex, verdict.diagnosis)
        negated = verify_claim(result, name, f"-\\left({tex}\\right)")
        assert negated.verdict == "incorrect" and negated.diagnosis.startswith("sign error"), (name, tex, negated)
    deltas = {d.layer: d for d in result.derivations if d.topic == "delta" and d.level == "matrix"}
    for layer, derivation in (deltas.items() if spec.samples == 1 else ()):
        tex = printer.doprint(derivation.result.rhs)
        label = layer + profile(spec.notation, spec.symbols).node_shift        # --param as the notation prints it
        verdict = verify_claim(result, f"delta{label}", tex)
        assert verdict.verdict == "correct", (layer, tex, verdict.diagnosis)


def test_instances_where_the_gradient_vanishes_are_not_enough_to_pass_a_claim():
    """A one-unit ReLU is off at the first random instances; a wrong sign must still be caught."""
    from derive import network

    result = derive(network("r", 1, [(1, "relu")], loss="generic"))
    right = verify_claim(result, "W1", r"\frac{\partial L}{\partial a^{1}} \odot \operatorname{ReLU}'(z^{1}) x^{T}")
    wrong = verify_claim(result, "W1", r"-\frac{\partial L}{\partial a^{1}} \odot \operatorname{ReLU}'(z^{1}) x^{T}")
    assert right.verdict == "correct" and wrong.verdict == "incorrect" and "sign" in wrong.diagnosis


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(networks())
def test_a_correct_claim_changed_by_a_factor_or_a_transpose_is_never_correct(spec):
    """Metamorphic: if c is judged correct, then 2c, (1/m) c (m != 1) and c^T (non-square) are not."""
    result = derive(spec)
    for name, tex in printed_gradients(result, printer_for(result)):
        if verify_claim(result, name, tex).verdict != "correct":
            continue
        changed = [f"2 \\left({tex}\\right)", f"\\left({tex}\\right)^{{T}}"]
        if spec.samples != 1:
            changed.append(f"\\frac{{1}}{{m}} \\left({tex}\\right)")
        for claim in changed:
            verdict = verify_claim(result, name, claim)
            square = verdict.verdict == "correct" and "^{T}" in claim[-5:]
            assert verdict.verdict != "correct" or square and _is_symmetric_case(result, name), (name, claim)


def _relabelled(term, meaning):
    """Every claim that differs from term by one layer label (+-1) or one index letter."""
    from dataclasses import replace as changed
    from derive.verify import subterms
    from derive.verify.symbols import replace_at

    letters = sorted({i for _, s in subterms(term) if s.op == "symbol" for i in s.indices if isinstance(i, str)})
    for path, s in subterms(term):
        if s.op != "symbol":
            continue
        if s.label is not None:
            for step in (-1, 1) if s.label > 0 else (1,):
                yield "layer", replace_at(term, path, changed(s, label=s.label + step))
        for k, letter in enumerate(s.indices):
            for other in letters:
                if isinstance(letter, str) and other != letter:
                    yield "index", replace_at(term, path,
                                              changed(s, indices=s.indices[:k] + (other,) + s.indices[k + 1:]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(networks())
def test_a_correct_claim_with_one_layer_or_index_changed_is_never_correct(spec):
    """Metamorphic, every profile: a gradient derive prints (matrix and index level) with its sign flipped,
    one layer label moved or one index letter changed is judged not correct. Labels or letters that
    change nothing (a symbol whose layer the notation does not show) are skipped, not counted."""
    from derive.claim import parse_claim
    from derive.verify import Meaning, term_latex

    result = derive(spec)
    meaning = Meaning(result)
    printer = printer_for(result)
    forms = list(printed_gradients(result, printer))
    for d in result.derivations:
        if d.level == "index" and d.topic == "weight" and spec.samples == 1:
            forms.append((f"W{d.layer}", printer.doprint(d.result.rhs)))
    tried = 0
    for name, tex in forms:
        if verify_claim(result, name, tex).verdict != "correct":
            continue
        assert verify_claim(result, name, f"-\\left({tex}\\right)").verdict != "correct", (name, tex)
        original = parse_claim(tex, scale=40)
        for kind, other in _relabelled(original, meaning):
            claim = term_latex(other, meaning)
            if meaning.normalize(parse_claim(claim, scale=40)) == meaning.normalize(original) or \
                    kind == "index" and _is_one_by_one(result, name):      # j and k both run over 1
                continue
            tried += 1
            verdict = verify_claim(result, name, claim)
            assert verdict.verdict != "correct", (name, tex, claim, verdict.explanation)
    assert tried or not forms


def _is_one_by_one(result, name):
    from derive.oracle import make_instance

    inst = make_instance(result.quantities, 0)
    return (inst.weights if name[0] == "W" else inst.biases)[int(name[1:])].size == 1


def _is_symmetric_case(result, name):
    """A transpose cannot be seen on a 1 x 1 parameter or where both sizes are 1."""
    from derive.oracle import make_instance

    inst = make_instance(result.quantities, 0)
    value = (inst.weights if name[0] == "W" else inst.biases)[int(name[1:])]
    return value.shape[0] == value.shape[1]


def test_softmax_has_no_entrywise_derivative_in_a_claim():
    from derive import network

    result = derive(network("s", 2, [(3, "softmax")], loss="cross_entropy"))
    for claim in (r"(a^{1} - y) \odot \operatorname{softmax}'(z^{1}) x^{T}", r"(a^{1} - y) \odot f'(z^{1}) x^{T}",
                  r"(a^{1} - y) \odot g'(z^{1}) x^{T}"):
        verdict = verify_claim(result, "W1", claim)
        assert verdict.verdict != "correct" and "Jacobian" in verdict.diagnosis, (claim, verdict)
    assert verify_claim(result, "W1", r"(a^{1} - y) x^{T}").verdict == "correct"


def test_per_sample_and_batch_symbols_never_both_pass():
    """delta (a)^T and (1/m) delta (a)^T differ by a factor: they cannot both be correct. A claim that
    mixes per-sample symbols with m or the batch matrices is refused with a message saying so."""
    from derive import network

    result = derive(network("b", 2, [(3, "tanh"), (2, "sigmoid")], loss="squared_error", samples="m"))
    per_sample = verify_claim(result, "W2", r"\delta^{2} (a^{1})^{T}")
    mixed = verify_claim(result, "W2", r"\frac{1}{m}\delta^{2} (a^{1})^{T}")
    batch = verify_claim(result, "W2", r"\frac{1}{m}\Delta^{2} (A^{1})^{T}")
    assert per_sample.verdict == "correct" and batch.verdict == "correct"
    assert mixed.verdict == "unparseable" and "per-sample" in mixed.diagnosis
    assert verify_claim(result, "W2", r"\Delta^{2} (A^{1})^{T}").verdict == "incorrect"


def test_a_claim_that_is_not_finite_is_never_correct():
    from derive import network

    result = derive(network("f", 2, [(3, "tanh"), (1, "sigmoid")]))
    for claim in (r"e^{710} \delta^{2} (a^{1})^{T}", r"\frac{1}{0}", r"\log(0) \delta^{2} (a^{1})^{T}",
                  r"\frac{\delta^{2} (a^{1})^{T}}{a^{2} - a^{2}}"):
        verdict = verify_claim(result, "W2", claim)
        assert verdict.verdict in ("incorrect", "unparseable", "shape_mismatch"), (claim, verdict)


@pytest.mark.parametrize("param, claim", [
    ("W2", "δ^{2} (a^{1})ᵀ"), ("W1", "(W^{2})ᵀ δ^{2} ⊙ σ′(z^{1}) x^T"), ("W1", "((W^{2})^T δ^{2}) ⊙ σ'(z^{1}) xᵀ"),
    ("W2", "δ2 (a1)ᵀ"),
])
def test_unicode_claims_read_as_their_latex(param, claim):
    result = result_for("seed004_mlp_column")
    assert verify_claim(result, param, claim).verdict == "correct", claim


def test_the_layout_of_a_real_align_block_is_read(tmp_path):
    """Comments, \\nonumber, \\tag, \\label, \\text, \\quad, \\left. \\right., blank lines, a bracket with
    '=' inside, and a broken line continued with &\\qquad as derive prints it."""
    result = result_for("seed004_mlp_column")
    text = "\n".join([
        r"\begin{align}",
        r"\frac{\partial L}{\partial W^{2}} &= \frac{\partial L}{\partial z^{2}} \left(a^{1}\right)^{T} \nonumber \\ % chain",
        r"  &\qquad \text{(by the chain rule)} \\",
        r"  &= \left. \delta^{2} (a^{1})^{T} \right. \quad \tag{1} \label{eq:w2} \\",
        "",
        r"  &= \delta^{2}\, (a^{1})^{\top} \; \\",
        r"  &= \sum_{p=1}^{1} [p = 1] \delta^{2}_{p}",
        r"  &\qquad (a^{1})^{T}",
        r"\end{align}"])
    verdict = verify_derivation(result, text)
    assert verdict.verdict == "correct", verdict.diagnosis
    wrong = verify_derivation(result, text.replace(r"[p = 1] \delta", r"2 [p = 1] \delta"))
    assert wrong.verdict == "incorrect" and wrong.first_wrong_line == 7


def test_per_sample_superscripts_read_as_one_sample_of_the_batch():
    from derive import network

    result = derive(network("b", 2, [(3, "tanh"), (2, "sigmoid")], loss="squared_error", samples="m"))
    mean = r"\frac{1}{m}\sum_{i=1}^{m} \delta^{2(i)} (a^{1(i)})^{T}"
    assert verify_claim(result, "W2", mean).verdict == "correct"
    summed = verify_claim(result, "W2", r"\sum_{i=1}^{m} \delta^{2(i)} (a^{1(i)})^{T}")
    assert summed.verdict == "incorrect" and "1/m" in summed.diagnosis
    ng = result_for("seed001_ng_cross_entropy")
    assert verify_claim(ng, "W1", r"\frac{1}{m}\sum_{i=1}^{m} \delta^{(2)(i)} (x^{(i)})^{T}").verdict == "correct"


@pytest.mark.parametrize("claim", [r"((W^{2})^{T} \delta^{2} \odot [z^{1} > 0]) x^{T}",
                                   r"((W^{2})^{T} \delta^{2} \odot \mathbb{1}[z^{1} > 0]) x^{T}",
                                   r"((W^{2})^{T} \delta^{2} \odot 1_{z^{1} > 0}) x^{T}"])
def test_relu_derivative_as_an_indicator(claim):
    from derive import network

    result = derive(network("r", 2, [(3, "relu"), (1, "tanh")]))
    assert verify_claim(result, "W1", claim).verdict == "correct"
    assert verify_claim(result, "W1", claim.replace("> 0", "> 1")).verdict != "correct"


def test_powers_of_functions():
    from derive import network

    result = derive(network("t", 2, [(3, "tanh"), (1, "tanh")]))
    assert verify_claim(result, "W2", r"(a^{2} - y) \odot (1 - \tanh^{2}(z^{2})) (a^{1})^{T}").verdict == "correct"
    assert verify_claim(result, "W2", r"(a^{2} - y) \odot (1 - \tanh(z^{2})) (a^{1})^{T}").verdict == "incorrect"


def test_the_feedback_printer_reads_back_as_the_same_claim():
    """Every claim of the corpus, printed by the feedback document's own printer, parses back to the same
    tree: a corrected line shown to a student means what the judge judged."""
    from derive.claim import parse_claim
    from derive.errors import DeriveError
    from derive.verify import Meaning, term_latex

    checked = 0
    for case in CLAIMS:
        try:
            term = parse_claim(case["claim"])
        except DeriveError:
            continue
        printed = term_latex(term, Meaning(result_for(case["example"])))
        assert parse_claim(printed) == term, (case["claim"], printed)
        checked += 1
    assert checked > 150
