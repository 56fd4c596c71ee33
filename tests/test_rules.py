"""Every row of every rule table: identities against sympy.diff, NumPy twins against SymPy forms."""
import numpy as np
import pytest
import sympy as sp

from derive import rules

x, a, y, c = sp.symbols("x a y c", real=True)
POINTS = np.array([-2.3, -0.7, -0.05, 0.05, 0.4, 1.9])


def _numeric(expr, var, values):
    f = sp.lambdify(var, expr, "numpy")   # test code on table forms, never on user text
    return np.array([float(f(v)) for v in values])


ELEMENTWISE = [n for n in rules.ACTIVATION_NAMES if not rules.activation(n).vector]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_derivative_matches_sympy_diff(name):
    row = rules.activation(name)
    expected = sp.diff(row.form(x), x)
    away = POINTS[np.abs(POINTS) > 0.01]
    assert np.allclose(_numeric(expected, x, away), _numeric(row.derivative(x), x, away), atol=1e-12)


@pytest.mark.parametrize("name", [n for n in ELEMENTWISE if rules.activation(n).derivative_in_output])
def test_derivative_in_terms_of_output(name):
    row = rules.activation(name)
    in_output = row.derivative_in_output(row.form(x))
    assert sp.simplify(in_output - row.derivative(x)) == 0


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_numpy_twins_match_sympy(name):
    row = rules.activation(name)
    col = POINTS.reshape(-1, 1)
    assert np.allclose(row.numpy(col).ravel(), _numeric(row.form(x), x, POINTS), atol=1e-12)
    assert np.allclose(row.numpy_derivative(col).ravel(), _numeric(row.derivative(x), x, POINTS), atol=1e-12)


def test_relu_convention_at_zero_is_zero():
    assert rules.activation("relu").numpy_derivative(np.array([[0.0]]))[0, 0] == 0.0
    assert rules.activation("relu").convention


def test_leaky_relu_uses_its_slope():
    row = rules.activation("leaky_relu", sp.Rational(1, 5))
    assert row.numpy(np.array([[-1.0]]))[0, 0] == pytest.approx(-0.2)
    assert row.numpy_derivative(np.array([[-1.0]]))[0, 0] == pytest.approx(0.2)


def test_softmax_jacobian_matches_sympy():
    z = sp.symbols("z1:4", real=True)
    soft = [sp.exp(zi) / sum(sp.exp(zk) for zk in z) for zi in z]
    values = {z[0]: 0.3, z[1]: -1.1, z[2]: 0.8}
    a = rules.activation("softmax").numpy(np.array([[0.3], [-1.1], [0.8]]))
    jac = rules.softmax_jacobian_np(a)
    for i in range(3):
        for j in range(3):
            assert float(sp.diff(soft[i], z[j]).subs(values)) == pytest.approx(jac[i, j], abs=1e-12)


@pytest.mark.parametrize("name", [n for n in rules.LOSS_NAMES if rules.LOSSES[n].term is not None])
def test_loss_gradient_matches_sympy_diff(name):
    row = rules.LOSSES[name]
    assert sp.simplify(sp.diff(row.term(a, y, c), a) - row.grad_entry(a, y, c)) == 0


@pytest.mark.parametrize("name", [n for n in rules.LOSS_NAMES if rules.LOSSES[n].term is not None])
def test_loss_numpy_twin_matches_sympy(name):
    row = rules.LOSSES[name]
    av, yv = np.array([[0.2], [0.7]]), np.array([[0.4], [0.6]])
    expected = sum(float(row.term(sp.Float(ai), sp.Float(yi), sp.Rational(1, 3))) for ai, yi in zip(av.ravel(), yv.ravel()))
    assert row.numpy(av, yv, 1 / 3)[0] == pytest.approx(expected, rel=1e-12)


def test_generic_loss_stand_in_gradient():
    av, yv = np.array([[0.2], [-0.7]]), np.array([[0.4], [0.6]])
    eps = 1e-6
    num = [(rules.LOSSES["generic"].numpy(av + eps * e, yv, 2.0) - rules.LOSSES["generic"].numpy(av - eps * e, yv, 2.0))[0] / (2 * eps)
           for e in np.eye(2)[:, :, None]]
    assert np.allclose(num, rules.generic_loss_grad_np(av, yv, 2.0).ravel(), atol=1e-8)


@pytest.mark.parametrize("row", rules.SIMPLIFICATIONS, ids=lambda r: r.name)
def test_simplification_rows_hold(row):
    act, loss = rules.activation(row.activation), rules.LOSSES[row.loss]
    if not act.vector:   # sigmoid + BCE: dl/da * sigma' = c (a - y); sigmoid + CE: c y (a - 1)
        expr = loss.grad_entry(a, y, c) * act.derivative_in_output(a)
        form = {"a_minus_y": c * (a - y), "y_times_a_minus_one": c * y * (a - 1)}[row.form]
        assert sp.simplify(expr - form) == 0
    else:                # softmax + CE: sum_k (-c y_k / a_k) a_k (delta_kj - a_j) = c (a_j - y_j) when sum y = 1
        n = 3
        av, ys = sp.symbols("a1:4", positive=True), sp.symbols("y1:4", positive=True)
        for j in range(n):
            expr = sum(loss.grad_entry(av[k], ys[k], c) * av[k] * ((1 if k == j else 0) - av[j]) for k in range(n))
            on_simplex = expr.subs(ys[2], 1 - ys[0] - ys[1])
            assert sp.simplify(on_simplex - c * (av[j] - [ys[0], ys[1], 1 - ys[0] - ys[1]][j])) == 0
        assert row.condition == "targets_sum_to_one"
