"""Key results of the engine at SymPy level, and its structural promises."""
import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, OneMatrix, Transpose

from derive import network
from derive.algebra import Elementwise, Partial
from derive.engine import derive


def xor():
    return derive(network("xor", 2, [(4, "sigmoid"), (1, "sigmoid")]))


def test_weight_gradient_is_outer_product_of_delta_and_previous_activation():
    r = xor()
    q = r.quantities
    for l in (1, 2):
        assert r.gradient(f"W{l}").expr == MatMul(q.matrix("delta", l), Transpose(q.matrix("a", l - 1)))
        assert r.gradient(f"b{l}").expr == q.matrix("delta", l)


def test_hidden_delta_recurrence_has_the_transpose_and_sigma_prime():
    r = xor()
    q = r.quantities
    lift = [s for s in r.get("delta", 1, "matrix").steps if s.kind == "matrix_lift"][0]
    expected = HadamardProduct(MatMul(Transpose(q.matrix("W", 2)), q.matrix("delta", 2)),
                               Elementwise("sigmoid_prime", q.matrix("z", 1)))
    assert lift.rhs == expected
    final = r.get("delta", 1, "matrix").result.rhs   # sigma' rewritten as a (1 - a)
    a1 = q.matrix("a", 1)
    assert final == HadamardProduct(MatMul(Transpose(q.matrix("W", 2)), q.matrix("delta", 2)),
                                    HadamardProduct(a1, MatAdd(OneMatrix(*a1.shape), -a1)))


def test_summation_dummies_never_equal_free_indices():
    r = derive(network("d", "n_0", [("n_1", "tanh"), ("n_2", "sigmoid"), ("n_3", "softmax")], loss="cross_entropy"))
    for d in r.derivations:
        for step in d.steps:
            free = {symbol for symbol, _ in step.free}
            for side in (step.lhs, step.rhs):
                for s in side.atoms(sp.Sum):
                    assert not ({v for v, *_ in s.limits} & free), (d.key, step.kind, side)


def test_index_step_for_weight_collapses_kronecker_deltas_to_delta_times_activation():
    r = xor()
    steps = r.get("weight", 2, "index").steps
    kinds = [s.kind for s in steps]
    assert kinds[:3] == ["chain_rule", "substitute", "differentiate"]
    q = r.quantities
    j, k = [sym for sym, _ in steps[-1].free]
    assert sp.expand(steps[-1].rhs - q.entry("delta", 2)[j] * q.entry("a", 1)[k]) == 0
    diff = [s for s in steps if s.kind == "differentiate"][0]
    assert diff.rhs.atoms(sp.KroneckerDelta), "differentiation must show the Kronecker deltas"


def test_sigmoid_binary_cross_entropy_is_derived_not_asserted():
    r = derive(network("b", 3, [(2, "tanh"), (1, "sigmoid")], loss="binary_cross_entropy"))
    steps = r.get("delta", 2, "index").steps
    kinds = [s.kind for s in steps]
    assert kinds.index("loss_derivative") < kinds.index("activation_identity") < kinds.index("simplification")
    q = r.quantities
    j = steps[-1].free[0][0]
    assert steps[-1].rhs == q.entry("a", 2)[j] - q.entry("y")[j]


def test_softmax_cross_entropy_states_its_condition():
    r = derive(network("s", 3, [(3, "softmax")], loss="cross_entropy"))
    simp = [s for s in r.get("delta", 1, "index").steps if s.kind == "simplification"][0]
    assert simp.fact("condition") == "targets_sum_to_one"
    assert r.get("delta", 1, "matrix").result.rhs == MatAdd(r.quantities.matrix("a", 1), -r.quantities.matrix("y"))


def test_squared_error_scale_one_keeps_the_factor_two():
    r = derive(network("e", 2, [(2, "sigmoid")], loss={"kind": "squared_error", "scale": 1}))
    loss_step = [s for s in r.get("delta", 1, "index").steps if s.kind == "loss_derivative"][0]
    q = r.quantities
    j = loss_step.free[0][0]
    assert loss_step.rhs.coeff(q.entry("a", 1)[j] - q.entry("y")[j]) != 0 or 2 in loss_step.rhs.atoms(sp.Integer)


def test_batch_mean_has_one_over_m_and_batch_matrix_form():
    r = derive(network("m", 2, [(3, "tanh"), (2, "sigmoid")], samples="m"))
    q = r.quantities
    m = q.samples
    expected = MatMul(1 / m, q.matrix("delta", 1, True), Transpose(q.matrix("a", 0, True)))
    assert sp.simplify(r.gradient("W1").expr - expected) == sp.ZeroMatrix(*expected.shape) or r.gradient("W1").expr == expected


def test_l2_penalty_adds_lambda_w():
    r = derive(network("p", 2, [(2, "tanh")], loss={"kind": "squared_error", "l2": "lam"}))
    q = r.quantities
    assert r.gradient("W1").expr == MatAdd(MatMul(q.matrix("delta", 1), Transpose(q.matrix("a", 0))),
                                      sp.Symbol("lam") * q.matrix("W", 1))


def test_concrete_linear_network_writes_path_sums():
    """000_*.txt's network 2-3-2-1 (no activation, no bias) in this canonical (to, from) order."""
    spec = network("lin", 2, [{"units": 3, "activation": "identity", "bias": False},
                              {"units": 2, "activation": "identity", "bias": False},
                              {"units": 1, "activation": "identity", "bias": False}], loss="generic")
    r = derive(spec)
    q = r.quantities
    w1, w2, w3, x = (q.entry("W", 1), q.entry("W", 2), q.entry("W", 3), q.entry("a", 0))
    y_out = q.entry("a", 3)[1]
    output_step, chain_step = r.get("weight", 1, "concrete").steps[:2]
    assert output_step.lhs == Partial(y_out, w1[1, 1])
    assert sp.expand(output_step.rhs - (w3[1, 1] * w2[1, 1] + w3[1, 2] * w2[2, 1]) * x[1]) == 0
    assert chain_step.lhs == Partial(sp.Symbol("L"), w1[1, 1])
    assert chain_step.rhs == sp.Mul(Partial(sp.Symbol("L"), y_out), Partial(y_out, w1[1, 1]), evaluate=False)
    assert len(r.get("weight", 1, "concrete").steps) == 2 * 6


def test_derive_is_deterministic():
    a, b = xor(), xor()
    assert [[(s.kind, sp.srepr(s.lhs), sp.srepr(s.rhs)) for s in d.steps] for d in a.derivations] == \
           [[(s.kind, sp.srepr(s.lhs), sp.srepr(s.rhs)) for s in d.steps] for d in b.derivations]


def test_deep_network_at_matrix_level_has_one_delta_per_layer():
    spec = network("deep", "n", [("n", "tanh")] * 300)
    r = derive(spec, levels=("matrix",))
    assert len([d for d in r.derivations if d.topic == "delta"]) == 300
