"""What a block network's document prints is what was checked (derive/blocks/readback.py): every
displayed equation of every example and of random networks reads back as true, and a line a printer
could get wrong (an index swapped, a transpose dropped, a sum run too far, the wrong layer, a sign)
reads back as wrong, from the document's own text."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from derive.blocks import check_blocks, derive_blocks, from_mapping
from derive.blocks.check import instance
from derive.blocks.document import render_blocks
from derive.blocks.readback import CONDITION, judge, parse_printed, read_back_blocks, to_latex
from derive.readback import PrintedEquation, printed_equations
from derive.spec import loads

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
BLOCK_EXAMPLES = ("batchnorm_mlp", "residual_dropout", "rnn_bptt", "attention_block", "small_cnn", "conv_5x5",
                  "attention_rows")
RANDOM_NETWORKS = 24


def _document(name: str, lang: str = "en"):
    result = derive_blocks(loads((EXAMPLES / f"{name}.yaml").read_text(), name))
    return result, render_blocks(result, check_blocks(result), lang)


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("name", BLOCK_EXAMPLES)
def test_every_printed_equation_of_the_examples_reads_back_true(name, lang):
    result, tex = _document(name, lang)
    report = read_back_blocks(result, tex)
    assert report.printed > 40
    assert report.passed, [(j.equation.line, j.status, j.message, j.equation.text[:120]) for j in report.failures]


def test_the_documents_of_random_networks_read_back_true():
    """Random dense, normalized, dropout, skip, recurrent, attention and feature-map networks with every
    loss: their documents' printed lines, in both languages."""
    from test_blocks import random_mapping

    printed, networks, seed = 0, 0, 0
    while networks < RANDOM_NETWORKS:
        seed += 1
        mapping = random_mapping(np.random.default_rng(1000 + seed))
        if seed % 2 and not isinstance(mapping.get("input"), dict):
            mapping["notation"] = "rowvec"          # every other vector network in the row layout
        spec = from_mapping(mapping)
        if not hasattr(spec, "has_maps"):        # drawn without any new field: the dense engine's
            continue
        result = derive_blocks(spec)
        report = check_blocks(result, trials=1)
        for lang in ("en", "zh"):
            tex = render_blocks(result, report, lang)
            readback = read_back_blocks(result, tex)
            assert readback.passed, (mapping, [(j.status, j.message, j.equation.text[:160])
                                               for j in readback.failures])
            printed += readback.printed
        for eq in printed_equations(tex):          # the feedback printer gives each read tree back
            for side in (eq.lhs, eq.rhs):
                tree = parse_printed(CONDITION.sub("", side))
                assert parse_printed(to_latex(tree)) == tree, side
        networks += 1
    assert printed > 50 * RANDOM_NETWORKS


def _line(tex: str, starts: str) -> PrintedEquation:
    return next(e for e in printed_equations(tex) if e.text.startswith(starts))


@pytest.mark.parametrize("name, starts, old, new, status", [
    # the weight gradient with its transpose dropped: the shapes do not fit
    ("batchnorm_mlp", r"\frac{\partial L}{\partial W^{3}} = ", r"\left(A^{2}\right)^{T}", "A^{2}", "wrong"),
    # the error term's matrix form with the factors' order swapped
    ("batchnorm_mlp", r"\frac{\partial L}{\partial A^{2}} = ", r"\left(W^{3}\right)^{T} \Delta^{3}",
     r"\Delta^{3} \left(W^{3}\right)^{T}", "wrong"),
    # an index pair swapped at index level
    ("batchnorm_mlp", r"\sum_{s=1}^{m} \frac{\partial L}{\partial z^{3}_{js}} \frac{\partial z^{3}_{js}}{\partial "
     r"w^{3}_{jk}} = ",
     "a^{2}_{ks}", "a^{2}_{js}", "wrong"),
    # the batch norm's gamma gradient without the normalized value
    ("batchnorm_mlp", r"\frac{\partial L}{\partial \gamma^{2}} = ", r"\left(\frac{\partial L}{\partial U^{2}} \odot "
     r"\hat{Z}^{2}\right) \mathbf{1}", r"\frac{\partial L}{\partial U^{2}} \mathbf{1}", "wrong"),
    # a sum that runs past the quantity's entries
    ("conv_5x5", r"L = ", r"\sum_{k=1}^{2}", r"\sum_{k=1}^{3}", "wrong"),
    # the kernel gradient read at the wrong offset
    ("small_cnn", r"\frac{\partial L}{\partial K^{1}_{cdpq}} = \sum_{j=1}^{4} \sum_{i=1}^{4} \delta",
     "i + p - 1", "i + p", "wrong"),
    # backpropagation through time without the next step's term
    ("rnn_bptt", r"\frac{\partial L}{\partial A^{1}} = ", r" + \left(U^{1}\right)^{T} \Delta^{1} N", "", "wrong"),
    # the recurrent weight's gradient with the states not shifted
    ("rnn_bptt", r"\frac{\partial L}{\partial U^{1}} = ", r"\Delta^{1} N \left(A^{1}\right)^{T}",
     r"\Delta^{1} \left(A^{1}\right)^{T}", "wrong"),
    # attention's scores without the scale
    ("attention_block", r"S^{1} = ", r"\frac{1}{\sqrt{2}} ", "", "wrong"),
    # a misprinted layer label
    ("residual_dropout", r"\frac{\partial L}{\partial W^{1}} = ", r"\Delta^{1}", r"\Delta^{2}", "wrong"),
    # the row layout read as the row layout: the column layout's order of factors is wrong there
    ("attention_rows", r"S^{1} = ", r"Q^{1} \left(K^{1}\right)^{T}", r"\left(K^{1}\right)^{T} Q^{1}", "wrong"),
    ("attention_rows", r"Z^{2} = ", r"A^{1} W^{2}", r"W^{2} A^{1}", "wrong"),
    ("attention_rows", r"H^{1} = ", r"P^{1} V^{1}", r"V^{1} P^{1}", "wrong"),
    ("attention_rows", r"\frac{\partial L}{\partial W^{3}} = ", r"\left(A^{2}\right)^{T} \Delta^{3}",
     r"\Delta^{3} \left(A^{2}\right)^{T}", "wrong"),
])
def test_a_misprinted_line_reads_back_wrong(name, starts, old, new, status):
    result, tex = _document(name)
    eq = _line(tex, starts)
    instances = [instance(result, seed) for seed in range(2)]
    assert judge(result, eq, instances).status == "correct"
    assert old in eq.rhs, eq.rhs
    broken = replace(eq, rhs=eq.rhs.replace(old, new, 1))
    judged = judge(result, broken, instances)
    assert judged.status == status, (judged.status, judged.message)


def test_a_line_true_only_before_the_last_step_says_so_and_is_read_so():
    """d z_(t+1) / d a_t = U holds for t < T only (there is no step T + 1): the document prints the
    condition in the line, and without it the readback finds the line wrong at t = T."""
    result, tex = _document("rnn_bptt")
    eq = _line(tex, r"\frac{\partial z^{1}_{p,t + 1}}{\partial a^{1}_{kt}} = ")
    assert eq.rhs.endswith(r"\quad (t < 3)"), eq.rhs        # T = 3 steps
    instances = [instance(result, seed) for seed in range(2)]
    assert judge(result, eq, instances).status == "correct"
    bare = replace(eq, rhs=eq.rhs.removesuffix(r" \quad (t < 3)"))
    judged = judge(result, bare, instances)
    assert judged.status == "wrong" and "t = 3" in judged.message, judged.message


def test_a_column_of_ones_takes_its_length_from_what_it_meets():
    """mu 1^T spreads over the columns, Z 1 sums them; two genuine shapes never broadcast."""
    result, tex = _document("batchnorm_mlp")
    instances = [instance(result, 0)]
    good = PrintedEquation(1, r"\frac{\partial L}{\partial b^{3}}", r"\Delta^{3} \mathbf{1}")
    assert judge(result, good, instances).status == "correct"
    unspread = PrintedEquation(1, "Z^{3}", r"W^{3} A^{2} + b^{3}")           # the 1^T left out
    judged = judge(result, unspread, instances)
    assert judged.status == "wrong" and "entry by entry" in judged.message


def test_the_reader_refuses_what_it_does_not_read():
    with pytest.raises(Exception, match="read-back"):
        parse_printed(r"\input{/etc/passwd}")
    result, _ = _document("batchnorm_mlp")
    judged = judge(result, PrintedEquation(1, "z^{7}_{js}", "0"), [instance(result, 0)])
    assert judged.status == "unreadable" and "no layer 7" in judged.message


def test_check_printed_reads_a_block_network_back_in_both_languages():
    proc = subprocess.run([sys.executable, "-m", "derive.cli", "check", str(EXAMPLES / "rnn_bptt.yaml"),
                           "--printed", "--json"], capture_output=True, text=True, cwd=HERE.parent, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["passed"] and set(out["printed"]) == {"en", "zh"}
    for lang in ("en", "zh"):
        counts = out["printed"][lang]
        assert counts["printed"] == counts["read_back"] == counts["correct"] > 50 and not counts["failures"]
