"""The worked examples of the source documents (../shared/seeds), in their own notations."""
from pathlib import Path

import pytest
import sympy as sp
from sympy import HadamardProduct, MatMul, Transpose

from derive import load
from derive.algebra import Elementwise, Partial
from derive.checks import check
from derive.engine import derive
from derive.notation import profile
from derive.printing import DerivePrinter
from derive.render import final_equation

EXAMPLES = Path(__file__).parent.parent / "examples"


def seed(name):
    spec = load(EXAMPLES / f"{name}.yaml")
    result = derive(spec)
    return result, result.quantities, DerivePrinter(result.quantities, profile(spec.notation, spec.symbols))


SEEDS = sorted(p.stem for p in EXAMPLES.glob("seed*.yaml"))


@pytest.mark.parametrize("name", SEEDS)
def test_every_step_of_every_seed_checks(name):
    result, _, _ = seed(name)
    report = check(result)
    assert report.passed and report.steps_failed == 0, report.to_json()["failures"][:3]


# ------------------------------------------------------------------------ 000: fromto

def test_seed000_six_path_sums():
    """d y_out / d w^1_jk = (sum over paths of w^2 w^3) x_j, w^l_jk from node j of layer l to node k."""
    result, q, p = seed("seed000_deep_linear")
    w1, w2, w3, x, y = q.entry("W", 1), q.entry("W", 2), q.entry("W", 3), q.entry("a", 0), q.entry("a", 3)[1]
    outputs = {s.lhs: s.rhs for s in result.get("weight", 1, "concrete").steps if s.fact("of") == "output"}
    assert len(outputs) == 6
    for j in (1, 2):          # from input node j
        for k in (1, 2, 3):   # to hidden node k
            expected = (w2[k, 1] * w3[1, 1] + w2[k, 2] * w3[2, 1]) * x[j]
            assert sp.expand(outputs[Partial(y, w1[j, k])] - expected) == 0
    assert p.doprint(Partial(y, w1[1, 1])) == r"\frac{\partial y_{\mathrm{out}}}{\partial w^{1}_{11}}"
    assert "w^{2}_{11} w^{3}_{11} + w^{2}_{12} w^{3}_{21}" in p.doprint(outputs[Partial(y, w1[1, 1])])


def test_seed000_matrix_form_has_the_outer_products_and_transposes():
    result, q, p = seed("seed000_deep_linear")
    # rows are source nodes: dL/dW^l = a^{l-1} (delta^l)^T, and delta^l = W^{l+1} delta^{l+1}
    for l in (1, 2, 3):
        assert result.gradient(f"W{l}").expr == MatMul(q.matrix("a", l - 1), Transpose(q.matrix("delta", l)))
    assert result.get("delta", 1, "matrix").result.rhs == MatMul(q.matrix("W", 2), q.matrix("delta", 2))
    assert final_equation(result.get("weight", 1, "matrix"), p) == \
        r"\frac{\partial L}{\partial W^{1}} = x \left(\delta^{2}\right)^{T}"


# ---------------------------------------------------------------------------- 001: ng

def test_seed001_output_delta_is_derived_as_a_minus_y():
    result, q, p = seed("seed001_ng_cross_entropy")
    steps = result.get("delta", 2, "index").steps
    kinds = [s.kind for s in steps]
    assert kinds.index("loss_derivative") < kinds.index("activation_identity") < kinds.index("simplification")
    j = steps[-1].free[0][0]
    assert steps[-1].rhs == q.entry("a", 2)[j] - q.entry("y")[j]
    assert final_equation(result.get("delta", 2, "matrix"), p) == r"\delta^{(3)} = a^{(3)} - y"


def test_seed001_hidden_delta_uses_theta_transpose_and_g_prime():
    result, q, p = seed("seed001_ng_cross_entropy")
    lift = [s for s in result.get("delta", 1, "matrix").steps if s.kind == "matrix_lift"][0]
    assert lift.rhs == HadamardProduct(MatMul(Transpose(q.matrix("W", 2)), q.matrix("delta", 2)),
                                       Elementwise("sigmoid_prime", q.matrix("z", 1)))
    assert p.doprint(lift.rhs) == r"\left(\left(\tilde{\Theta}^{(2)}\right)^{T} \delta^{(3)}\right) \odot g'(z^{(2)})"


def test_seed001_theta_gradient_accumulates_over_m_samples_with_one_over_m():
    result, q, p = seed("seed001_ng_cross_entropy")
    batch = result.get("weight", 1, "batch").steps
    acc = [s for s in batch if s.kind == "accumulate"][0]
    assert p.doprint(acc.lhs) == r"\Delta^{(1)}"
    assert p.doprint(acc.fact("term")) == r"\delta^{(2)} x^{T}"
    lift = [s for s in batch if s.kind == "batch_lift"][0]
    assert lift.rhs == MatMul(1 / q.samples, q.matrix("acc", 1))
    assert p.doprint(lift.rhs) == r"\frac{1}{m} \Delta^{(1)}"
    index = result.get("weight", 2, "index").steps
    assert p.doprint(index[-1].rhs) == r"\delta^{(3)}_{i} a^{(2)}_{j}"       # dJ/dTheta^(2)_ij
    bias = result.get("bias", 2, "index").steps
    assert p.doprint(bias[0].lhs) == r"\frac{\partial J}{\partial \Theta^{(2)}_{i0}}"


# ------------------------------------------------------------------------ 003: rashid

def test_seed003_summation_step_with_a_fresh_dummy():
    result, q, p = seed("seed003_rashid_summation")
    steps = result.get("weight", 1, "index").steps
    substitute = [s for s in steps if s.kind == "substitute" and s.fact("what") == "z"][0]
    collapse = [s for s in steps if s.kind == "kronecker_collapse"][0]
    assert p.doprint(substitute.rhs) == r"\frac{\partial}{\partial w_{jk}}\left(\sum_{i=1}^{n_{0}} w_{ik} o_{i}\right)"
    assert p.doprint(collapse.rhs) == "o_{j}"
    dummy = [s for s in steps if s.kind == "differentiate"][0].fact("dummy")
    assert dummy not in {sym for sym, _ in substitute.free}


def test_seed003_factor_minus_two_and_sigma_one_minus_sigma():
    result, q, p = seed("seed003_rashid_summation")
    steps = result.get("delta", 1, "index").steps
    loss = [s for s in steps if s.kind == "loss_derivative"][0]
    assert p.doprint(loss.rhs) == r"- 2 \left(t_{k} - o_{k}\right) \sigma'(x_{k})"
    assert p.doprint(steps[-1].rhs) == r"- 2 \left(t_{k} - o_{k}\right) o_{k} \left(1 - o_{k}\right)"
    assert p.doprint(result.forward[-1].rhs) == r"\sum_{k=1}^{n_{1}} \left(t_{k} - o_{k}\right)^{2}"


# ------------------------------------------------------------------ 004: column and row

def test_seed004_column_layout_gradients():
    result, q, p = seed("seed004_mlp_column")
    assert result.gradient("W2").expr == MatMul(q.matrix("delta", 2), Transpose(q.matrix("a", 1)))
    assert result.gradient("W1").expr == MatMul(q.matrix("delta", 1), Transpose(q.matrix("a", 0)))
    assert result.gradient("b2").expr == q.matrix("delta", 2) and result.gradient("b1").expr == q.matrix("delta", 1)
    assert final_equation(result.get("delta", 2, "matrix"), p) == \
        r"\delta^{2} = \left(a^{2} - y\right) \odot a^{2} \odot \left(\mathbf{1} - a^{2}\right)"
    assert final_equation(result.get("delta", 1, "matrix"), p) == \
        r"\delta^{1} = \left(\left(W^{2}\right)^{T} \delta^{2}\right) \odot a^{1} \odot \left(\mathbf{1} - a^{1}\right)"


def test_seed004_row_layout_moves_the_transposes():
    result, q, p = seed("seed004_mlp_rowvec")
    m = q.samples
    assert final_equation(result.get("weight", 1, "batch"), p) == r"\frac{\partial L}{\partial W^{1}} = \frac{1}{4} X^{T} \Delta^{1}"
    assert final_equation(result.get("weight", 2, "matrix"), p) == r"\frac{\partial L}{\partial W^{2}} = \left(a^{1}\right)^{T} \delta^{2}"
    assert final_equation(result.get("bias", 1, "batch"), p) == r"\frac{\partial L}{\partial b^{1}} = \frac{1}{4} \mathbf{1}^{T} \Delta^{1}"
    lift = [s for s in result.get("delta", 1, "matrix").steps if s.kind == "matrix_lift"][0]
    assert lift.rhs == HadamardProduct(MatMul(q.matrix("delta", 2), Transpose(q.matrix("W", 2))),
                                       Elementwise("sigmoid_prime", q.matrix("z", 1)))
    batch_forward = [p.doprint(s.lhs) + " = " + p.doprint(s.rhs) for s in result.forward
                     if s.fact("what") == "z_matrix" and s.fact("batch")]
    assert batch_forward == [r"Z^{1} = X W^{1} + \mathbf{1} b^{1}", r"Z^{2} = A^{1} W^{2} + \mathbf{1} b^{2}"]
    assert m == 4
