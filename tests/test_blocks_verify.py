"""derive verify for networks with the newer layers (derive/blocks/verify.py): right claims are called
right and wrong ones wrong, with the first wrong line of a derivation, a counterexample and a diagnosis
in words; bad input gets exit code 2 and a message."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from derive.blocks import check_blocks, derive_blocks, from_mapping
from derive.blocks.document import render_blocks
from derive.blocks.verify import claim_text, verify_blocks_claim, verify_blocks_derivation
from derive.readback import printed_equations
from derive.spec import loads

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
RANDOM_NETWORKS = 12


def _result(name: str):
    return derive_blocks(loads((EXAMPLES / f"{name}.yaml").read_text(), name), levels=("index",))


@pytest.mark.parametrize("name, param, claim", [
    ("batchnorm_mlp", "W2", r"\Delta^{2} (A^{1})^T"),
    ("batchnorm_mlp", "gamma1", r"(\frac{\partial L}{\partial U^{1}} \odot \hat{Z}^{1}) \mathbf{1}"),
    ("batchnorm_mlp", "beta2", r"\frac{\partial L}{\partial U^{2}} \mathbf{1}"),
    ("batchnorm_mlp", "b3", r"\frac{1}{m} (A^{3} - Y) \mathbf{1}"),
    ("rnn_bptt", "U1", "Δ¹ N (A¹)ᵀ"),
    ("rnn_bptt", "W1", r"\Delta^{1} X^{\top}"),
    ("attention_block", "WV1", r"\frac{\partial L}{\partial H^{1}} (P^{1})^T X^T"),
    ("attention_block", "WQ1", r"\frac{1}{\sqrt{2}} K^{1} \frac{\partial L}{\partial S^{1}} X^T"),
    ("residual_dropout", "W1", r"\Delta^{1} X^T"),
    ("attention_rows", "W2", r"(A^{1})^T \Delta^{2}"),
    ("attention_rows", "WQ1", r"\frac{1}{\sqrt{2}} X^T \frac{\partial L}{\partial S^{1}} K^{1}"),
    ("small_cnn", None, r"\frac{\partial L}{\partial K^{1}_{cdpq}} = \sum_{i=1}^{4} \sum_{j=1}^{4} "
                        r"\delta^{1}_{cij} x_{d,i+p-1,j+q-1}"),
])
def test_a_right_claim_is_called_right(name, param, claim):
    verdict = verify_blocks_claim(_result(name), param, claim)
    assert verdict.verdict == "correct", verdict.explanation


@pytest.mark.parametrize("name, param, claim, verdict, words", [
    ("batchnorm_mlp", "W3", r"(A^{2})(\Delta^{3})^T", "shape_mismatch", "transpose of the right value"),
    ("batchnorm_mlp", "W3", r"-\Delta^{3} (A^{2})^T", "incorrect", "wrong sign"),
    ("batchnorm_mlp", "W3", r"\frac{1}{2} \Delta^{3} (A^{2})^T", "incorrect", "1/2 times"),
    ("batchnorm_mlp", "b3", r"\Delta^{3} \mathbf{1}^T", "shape_mismatch", "a row of ones"),
    ("batchnorm_mlp", "gamma2", r"\frac{\partial L}{\partial U^{2}} \mathbf{1}", "incorrect", "differs"),
    ("rnn_bptt", "U1", r"\Delta^{1} (A^{1})^T", "incorrect", "differs"),
    ("attention_block", "WQ1", r"K^{1} \frac{\partial L}{\partial S^{1}} X^T", "incorrect", "times the right value"),
    ("small_cnn", None, r"\frac{\partial L}{\partial K^{1}_{cdpq}} = \sum_{i=1}^{4} \sum_{j=1}^{4} "
                        r"\delta^{1}_{cij} x_{d,i+p,j+q-1}", "incorrect", "differs"),
    ("batchnorm_mlp", "W2", r"\Delta^{2} (A^{1}", "unparseable", "cannot read"),
    ("attention_rows", "W3", r"\Delta^{3} (A^{2})^T", "shape_mismatch", "in the wrong order"),
])
def test_a_wrong_claim_is_called_wrong_in_words(name, param, claim, verdict, words):
    judged = verify_blocks_claim(_result(name), param, claim)
    assert judged.verdict == verdict and words in judged.explanation, (judged.verdict, judged.explanation)
    if verdict == "incorrect":
        c = judged.counterexample
        assert c and "expected" in c and "claimed" in c and c["expected"] != c["claimed"]


@pytest.mark.parametrize("name, param, claim, fix", [
    ("batchnorm_mlp", "W3", r"\frac{1}{2} \Delta^{3} (A^{2})^T", r"\Delta^{3} \left(A^{2}\right)^{T}"),
    ("batchnorm_mlp", "W3", r"A^{2} (\Delta^{3})^T", r"\Delta^{3} \left(A^{2}\right)^{T}"),
    ("batchnorm_mlp", "W3", r"-\frac{2}{3} \Delta^{3} (A^{2})^T", r"\Delta^{3} \left(A^{2}\right)^{T}"),
    ("batchnorm_mlp", "W3", r"\frac{1}{m} (A^{3} - Y) A^{2}", r"\frac{1}{m} \left(A^{3} - Y\right) \left(A^{2}\right)^{T}"),
    ("attention_rows", "W3", r"\Delta^{3} (A^{2})^T", r"\left(A^{2}\right)^{T} \Delta^{3}"),
    ("rnn_bptt", "U1", r"\Delta^{1} (A^{1})^T", None),            # N left out: no slip of the catalogue explains it
])
def test_a_slip_gets_its_corrected_line_judged_like_any_claim(name, param, claim, fix):
    result = _result(name)
    verdict = verify_blocks_claim(result, param, claim)
    assert verdict.verdict != "correct" and verdict.fix_tex == fix, verdict.fix_tex
    if fix:
        assert verify_blocks_claim(result, param, fix).verdict == "correct"
        assert verdict.to_json()["fix"] == fix


def test_a_derivation_is_judged_line_by_line():
    result = _result("batchnorm_mlp")
    good = "\n".join([
        r"\frac{\partial L}{\partial w^{3}_{jk}} = \sum_{s=1}^{m} \frac{\partial L}{\partial z^{3}_{js}} "
        r"\frac{\partial z^{3}_{js}}{\partial w^{3}_{jk}}",
        r"= \sum_{s=1}^{m} \delta^{3}_{js} a^{2}_{ks}",
        r"= \sum_{s=1}^{m} \frac{a^{3}_{js} - y_{js}}{m} a^{2}_{ks}",
    ])
    verdict = verify_blocks_derivation(result, good)
    assert verdict.verdict == "correct" and len(verdict.lines) == 3, verdict.explanation
    slipped = good.replace(r"a^{2}_{ks}}", "a^{2}_{ks}").replace(r"= \sum_{s=1}^{m} \delta^{3}_{js} a^{2}_{ks}",
                                                                 r"= \sum_{s=1}^{m} \delta^{3}_{js} a^{2}_{js}")
    verdict = verify_blocks_derivation(result, slipped)
    assert verdict.verdict in ("incorrect", "shape_mismatch") and verdict.first_wrong_line == 2, verdict.explanation
    matrices = "\\frac{\\partial L}{\\partial W^{3}} = \\Delta^{3} (A^{2})^T\n= \\frac{1}{m} (A^{3} - Y) (A^{2})^T\n"
    assert verify_blocks_derivation(result, matrices, "W3").verdict == "correct"
    wrong_end = verify_blocks_derivation(result, matrices, "W2")
    assert wrong_end.verdict == "shape_mismatch" and "parameter asked for" in wrong_end.explanation


def test_the_feedback_document_prints_each_line_from_its_tree():
    """No text of the student reaches TeX: each line is printed from what was read, and that print reads
    back to the same tree (a hostile \\input is refused before any of this)."""
    from derive.blocks.verify import feedback_blocks

    result = _result("batchnorm_mlp")
    text = ("\\frac{\\partial L}{\\partial W^{3}} = \\Delta^{3} (A^{2})^T\n"
            "= \\frac{1}{m} (A^{3} - Y) (A^{2})^\\top\n= \\frac{1}{m} (A^{3} - Y) A^{2}\n")
    verdict = verify_blocks_derivation(result, text)
    assert verdict.first_wrong_line == 3
    tex = feedback_blocks(result, verdict, text, "zh")
    assert r"\left(A^{2}\right)^{T}" in tex and "第 3 行是第一处错误" in tex
    assert r"\color{red} \frac{1}{m} \left(A^{3} - Y\right) A^{2}" in tex
    assert r"应为 } \frac{1}{m} \left(A^{3} - Y\right) \left(A^{2}\right)^{T}" in tex    # the corrected line
    hostile = verify_blocks_derivation(result, "W^{1} = \\input{/etc/passwd}\n")
    assert hostile.verdict == "unparseable" and feedback_blocks(result, hostile, "", "en") is None


def test_the_users_spelling_is_read_as_the_documents():
    assert claim_text("Δ² (A¹)ᵀ") == r"\Delta^{2} (A^{1})^{T}"
    assert claim_text(r"W^2 X^\top + b^2") == r"W^{2} X^{T} + b^{2}"
    assert claim_text("m^2") == "m^2"               # a size's power stays a power


def test_the_printed_results_of_random_networks_verify_and_a_scaled_one_does_not():
    """Every matrix-form parameter gradient a random network's document prints is called right by verify;
    the same right side doubled is called wrong."""
    from test_blocks import random_mapping

    seed, networks, claims = 0, 0, 0
    while networks < RANDOM_NETWORKS:
        seed += 1
        spec = from_mapping(random_mapping(np.random.default_rng(5000 + seed)))
        if not hasattr(spec, "has_maps") or spec.has_maps:
            continue
        result = derive_blocks(spec)
        tex = render_blocks(result, check_blocks(result, trials=1), "en")
        finals = {e.lhs: e.rhs for e in printed_equations(tex) if e.lhs.startswith(r"\frac{\partial L}{\partial W^")}
        for lhs, rhs in finals.items():
            param = "W" + lhs.split("W^{")[1].split("}")[0].replace(",", "")      # W^{Q,1} is WQ1
            assert verify_blocks_claim(result, param, rhs).verdict == "correct", (param, rhs)
            doubled = verify_blocks_claim(result, param, f"2 \\left({rhs}\\right)")
            assert doubled.verdict == "incorrect" and "2 times" in doubled.explanation, doubled.explanation
            assert doubled.fix_tex and verify_blocks_claim(result, param, doubled.fix_tex).verdict == "correct"
            claims += 1
        networks += 1
    assert claims >= RANDOM_NETWORKS


def run(*args):
    return subprocess.run([sys.executable, "-m", "derive.cli", *args], capture_output=True, text=True,
                          cwd=HERE.parent, timeout=600)


def test_cli_verify_for_a_block_network(tmp_path):
    proc = run("verify", "rnn_bptt", "--param", "U1", "--claim", r"\Delta^{1} N (A^{1})^T")
    assert proc.returncode == 0 and proc.stdout.startswith("correct"), proc.stderr
    proc = run("verify", "rnn_bptt", "--param", "U1", "--claim", r"\Delta^{1} (A^{1})^T", "--json")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["verdict"] == "incorrect" and out["counterexample"]["worst_entry"]
    derivation = tmp_path / "student.tex"
    derivation.write_text("\\frac{\\partial L}{\\partial W^{3}} = \\Delta^{3} (A^{2})^T\n= \\Delta^{3} A^{2}\n")
    proc = run("verify", "batchnorm_mlp", "--derivation", str(derivation))
    assert proc.returncode == 1 and "first wrong line: 2" in proc.stdout, proc.stdout + proc.stderr
    proc = run("verify", "batchnorm_mlp", "--derivation", str(derivation), "--tex", "-o", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stderr
    feedback = (tmp_path / "out" / "student_feedback.tex").read_text()
    assert r"\color{red} \Delta^{3} A^{2}" in feedback and "line 2" in feedback
    for args, words in [(("--param", "Z9", "--claim", "X"), "--param 'Z9'"),
                        (("--param", "K1", "--claim", "X"), "entry by entry")]:
        name = "small_cnn" if "K1" in args else "batchnorm_mlp"
        proc = run("verify", name, *args)
        assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = run("verify", "batchnorm_mlp", "--param", "W1", "--claim", r"\input{/etc/passwd}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("claim, words", [
    (r"\sum_{i=1}^{100000000} 1", "more than 200,000 terms"),
    (r"\sum_{i=1}^{3000} \sum_{j=1}^{3000} \sum_{k=1}^{3000} 1", "more than 200,000 terms"),
    ("\\frac{\\partial}{\\partial z^{1}_{11}}\\left(" * 3 + "L" + "\\right)" * 3, "nested more than 2 deep"),
    ("(" * 3000 + "1" + ")" * 3000, "1 × 1"),
    (r"2^{100000000} \Delta^{2} (A^{1})^T", "differ"),
    (r"z^{1}_{99999999999999999999 1}", "lies outside"),
])
def test_a_hostile_claim_gets_an_answer_in_bounded_time(claim, words):
    import time

    start = time.perf_counter()
    verdict = verify_blocks_claim(_result("batchnorm_mlp"), "W2", claim)
    assert time.perf_counter() - start < 30
    assert verdict.verdict != "correct" and words in verdict.explanation, verdict.explanation
