"""Computation graphs (002_*.txt): values and gradients, gates, JSON, parsing, bad input, figures."""
import json
import subprocess
import sys
import time

import pytest

from derive.errors import DeriveError
from derive.expr import parse
from derive.graph import build, parse_point

from conftest import IN_CI

NEURON = r"\frac{1}{1+e^{-(w_0 x_0 + w_1 x_1 + w_2)}}"
NEURON_AT = {"w0": 2.0, "w1": -3.0, "w2": -3.0, "x0": -1.0, "x1": -2.0}


def run(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "derive.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_sum_times_z_from_002():
    g = build("(x + y) * z", {"x": -2, "y": 5, "z": -4})
    out = g.to_json()
    assert out["output"]["value"] == -12
    assert {k: v["grad"] for k, v in out["inputs"].items()} == {"x": -4, "y": -4, "z": 3}
    q = [n for n in g.nodes if n.op == "add"][0]
    assert q.value == 3 and q.grad == -4          # df/dq = z = -4, and q = 3


@pytest.mark.parametrize("text", [NEURON, "1/(1+exp(-(w0*x0+w1*x1+w2)))", "sigmoid(w0*x0 + w1*x1 + w2)"])
def test_sigmoid_neuron_from_002_gate_by_gate(text):
    g = build(text, NEURON_AT, gates=True)
    grads = {n.name: round(n.grad, 2) for n in g.inputs()}
    assert grads == {"w0": -0.20, "w1": -0.39, "w2": 0.20, "x0": 0.39, "x1": -0.59}
    chain = [(n.op, round(n.grad, 2)) for n in g.nodes if n.op in ("recip", "add_const", "exp", "mul_const")]
    assert chain == [("mul_const", -0.20), ("exp", -0.53), ("add_const", -0.53), ("recip", 1.0)]
    assert round(g.nodes[g.output].value, 2) == 0.73


def test_gates_follow_002s_order_from_the_output():
    g = build(NEURON, NEURON_AT, gates=True)
    from_output = [(n.op, round(n.grad, 2)) for n in reversed(g.nodes) if n.op != "input"][:4]
    assert from_output == [("recip", 1.0), ("add_const", -0.53), ("exp", -0.53), ("mul_const", -0.20)]


def test_without_gates_sigmoid_is_one_gate():
    g = build("sigmoid(w0*x0 + w1*x1 + w2)", NEURON_AT)
    assert [n.op for n in g.nodes].count("sigmoid") == 1 and "recip" not in [n.op for n in g.nodes]
    assert round(g.nodes[g.output].grad, 2) == 1.0


def test_a_node_used_twice_accumulates_both_gradients():
    g = build("x*x + x*y", {"x": 3, "y": 2})
    assert {n.name: n.grad for n in g.inputs()} == {"x": 2 * 3 + 2, "y": 3}
    x = [n for n in g.nodes if n.name == "x"][0]
    assert len([n for n in g.nodes if x.id in n.inputs]) == 2


def test_json_shape_from_the_cli():
    proc = run("graph", "(x + y) * z", "--at", "x=-2", "--at", "y=5", "--at", "z=-4", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"output", "inputs", "nodes"}
    assert data["output"]["value"] == -12
    for node in data["nodes"]:
        assert {"id", "op", "inputs", "value", "grad"} <= set(node)


@pytest.mark.parametrize("text,point", [
    ("exp(x) * log(y) + sqrt(z) / tanh(x)", {"x": 0.7, "y": 2.5, "z": 1.3}),
    ("relu(x - y) + max(x, y) ^ 2 - x^3", {"x": 1.5, "y": -0.5}),
    (r"\sigma(a \cdot b) + \log(a) - \left(a + b\right)^{2}", {"a": 0.8, "b": -1.1}),
    ("2^x + x^y - 3x", {"x": 1.2, "y": 0.4}),
])
def test_backward_agrees_with_sympy(text, point):
    for gates in (False, True):
        g = build(text, point, gates=gates)
        assert g.check_error < 1e-9


def test_latex_and_plain_forms_parse_to_the_same_tree():
    assert parse(NEURON) == parse("1/(1+e^(-(w0 x0 + w1 x1 + w2)))")
    assert parse(r"\sigma(x)") == parse("sigmoid(x)")
    assert parse("a·b − c") == parse("a*b - c")


def test_parse_errors_give_the_column_and_what_was_expected():
    with pytest.raises(DeriveError) as info:
        parse("x + * y")
    assert "column 5" in str(info.value) and "where a term (a number, a variable" in str(info.value)


BAD = [
    (["graph", "foo(x)", "--at", "x=1"], "unknown function"),
    (["graph", "x + y", "--at", "x=1"], "no value for y"),
    (["graph", "1/x", "--at", "x=0"], "division by zero"),
    (["graph", "log(x)", "--at", "x=-1"], "logarithm"),
    (["graph", "10^10^10 * x", "--at", "x=1"], "cannot be computed"),
    (["graph", "__import__('os').system('touch pwned')", "--at", "x=1"], "unknown function 'system'"),
    (["graph", "__import__('os')", "--at", "x=1"], "column 1: found '_'"),
    (["graph", "x", "--at", "x=nan"], "finite number"),
    (["graph", "x", "--at", "x=1", "--at", "q=2"], "no variable q"),
    (["graph", "x" + "+x" * 60_000, "--at", "x=1"], "too long"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[b[1] for b in BAD])
def test_bad_input_is_a_clear_error_fast(args, needle, tmp_path):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "derive.cli", *args], capture_output=True, text=True, timeout=30,
                          cwd=tmp_path)
    assert time.perf_counter() - start < 5
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "pwned").exists()


def test_a_megabyte_of_input_is_refused_at_once():
    start = time.perf_counter()
    with pytest.raises(DeriveError, match="too long"):
        build("x+" * 500_000 + "x", {"x": 1.0})
    assert time.perf_counter() - start < 1


def test_parse_point_rejects_bad_names():
    with pytest.raises(DeriveError):
        parse_point(["__class__=1"])
    assert parse_point(["w_0=2", "x=−1"]) == {"w0": 2.0, "x": -1.0}


@pytest.mark.pdf
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_graph_figure_compiles(tmp_path, lang):
    from derive.pdf import have_tex

    if not have_tex():
        if IN_CI:
            pytest.fail("latexmk missing in CI")
        pytest.skip("latexmk not installed")
    proc = run("graph", NEURON, *sum((["--at", f"{k}={v}"] for k, v in NEURON_AT.items()), []), "--gates", "--pdf",
               "--lang", lang, "-o", str(tmp_path), "--name", "neuron", timeout=300)
    assert proc.returncode == 0, proc.stderr
    tex = (tmp_path / ("neuron.tex" if lang == "en" else "neuron.zh.tex")).read_text()
    assert r"\begin{tikzpicture}" in tex and "green" in tex and "red" in tex
    assert "$-0.53$" in tex and "$0.73$" in tex
    assert (tmp_path / ("neuron.pdf" if lang == "en" else "neuron.zh.pdf")).read_bytes()[:5] == b"%PDF-"
