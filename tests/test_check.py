"""The checker must catch planted errors: a check that cannot fail proves nothing."""
import dataclasses

import pytest
from sympy import HadamardProduct, MatMul, Transpose

from derive import network
from derive.algebra import Elementwise
from derive.checks import check, check_step
from derive.engine import NetworkDerivation, derive
from derive.oracle import make_instance
from derive.steps import Derivation, Unjustified


def square():
    return derive(network("sq", 3, [(3, "sigmoid"), (3, "tanh"), (3, "sigmoid")]))


def _replace_result(result: NetworkDerivation, key: str, new_rhs) -> NetworkDerivation:
    out = []
    for d in result.derivations:
        if d.key == key:
            d = Derivation(d.topic, d.layer, d.level, d.steps[:-1] + (dataclasses.replace(d.steps[-1], rhs=new_rhs),))
        out.append(d)
    return dataclasses.replace(result, derivations=tuple(out))


def test_the_true_derivation_passes():
    report = check(square())
    assert report.passed and report.steps_failed == 0 and len(report.steps) > 50


MUTATIONS = {
    "missing transpose": lambda q: HadamardProduct(MatMul(q.matrix("W", 2), q.matrix("delta", 2)),
                                                   Elementwise("sigmoid_prime", q.matrix("z", 1))),
    "missing sigma prime": lambda q: MatMul(Transpose(q.matrix("W", 2)), q.matrix("delta", 2)),
    "wrong layer": lambda q: HadamardProduct(MatMul(Transpose(q.matrix("W", 2)), q.matrix("delta", 2)),
                                             Elementwise("sigmoid_prime", q.matrix("z", 2))),
    "factor two": lambda q: 2 * HadamardProduct(MatMul(Transpose(q.matrix("W", 2)), q.matrix("delta", 2)),
                                                Elementwise("sigmoid_prime", q.matrix("z", 1))),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_planted_error_in_delta_recurrence_is_caught(name):
    result = square()
    bad = _replace_result(result, "delta1:matrix", MUTATIONS[name](result.quantities))
    report = check(bad)
    assert not report.passed
    failing = [s for s in report.steps if not s.passed]
    assert any(s.derivation == "delta1:matrix" for s in failing)
    assert not all(g.passed for g in report.gradients if g.parameter in ("W1", "b1"))
    assert all(g.passed for g in report.gradients if g.parameter in ("W2", "b2", "W3", "b3"))


def test_swapped_outer_product_is_caught():
    result = square()
    q = result.quantities
    bad = _replace_result(result, "weight2:matrix", MatMul(q.matrix("a", 1), Transpose(q.matrix("delta", 2))))
    report = check(bad)
    assert [g.passed for g in report.gradients if g.parameter == "W2"] == [False]


def test_wrong_index_step_is_caught():
    result = square()
    d = result.get("weight", 2, "index")
    last = d.steps[-1]
    q = result.quantities
    j, k = [s for s, _ in last.free]
    wrong = dataclasses.replace(last, rhs=q.entry("delta", 2)[k] * q.entry("a", 1)[j])   # indices swapped
    inst = [make_instance(q, 0)]
    assert not check_step(wrong, inst, d.key, 99, __import__("numpy").random.default_rng(0)).passed
    assert check_step(last, inst, d.key, 99, __import__("numpy").random.default_rng(0)).passed


def test_unjustified_step_is_reported_even_when_true():
    result = square()
    d = result.get("bias", 3, "index")
    extra = Unjustified(d.steps[-1].rhs, d.steps[-1].rhs * 1, "index", d.steps[-1].free)
    patched = dataclasses.replace(result, derivations=tuple(
        Derivation(x.topic, x.layer, x.level, x.steps + (extra,)) if x.key == d.key else x for x in result.derivations))
    report = check(patched)
    assert report.to_json()["unjustified_steps"] == 1
    assert not [s for s in report.steps if not s.justified][0].justified
