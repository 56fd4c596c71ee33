"""Random networks: every step checks and the gradients match central differences (and PyTorch)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from derive import network
from derive.checks import check, engine_gradients
from derive.engine import derive
from derive.oracle import make_instance

ACTS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "softplus", "softmax"]
OUTPUT_FOR_LOSS = {
    "squared_error": ACTS,
    "generic": ACTS,
    "binary_cross_entropy": ["sigmoid", "softmax"],
    "cross_entropy": ["sigmoid", "softmax"],
}


@st.composite
def networks(draw):
    depth = draw(st.integers(1, 4))
    loss = draw(st.sampled_from(sorted(OUTPUT_FOR_LOSS)))
    symbolic = draw(st.booleans())
    layers = []
    for l in range(1, depth + 1):
        act = draw(st.sampled_from(OUTPUT_FOR_LOSS[loss] if l == depth else ACTS))
        low = 2 if act == "softmax" or (l == depth and loss == "cross_entropy") else 1
        units = f"n_{l}" if symbolic else draw(st.integers(low, 4))
        layer = {"units": units, "activation": act, "bias": draw(st.booleans()) or l == depth}
        if act == "leaky_relu" and draw(st.booleans()):
            layer["slope"] = "1/5"
        layers.append(layer)
    loss_spec = {"kind": loss, "reduction": draw(st.sampled_from(["mean", "sum"]))}
    if loss == "squared_error":
        loss_spec["scale"] = draw(st.sampled_from(["1/2", "1", "3"]))
    if draw(st.booleans()):
        loss_spec["l2"] = draw(st.sampled_from(["lam", "1/10"]))
    samples = draw(st.sampled_from([1, 1, 2, "m"]))
    notation = draw(st.sampled_from(["nielsen", "ng", "rashid", "fromto", "rowvec"]))
    return network("random", "n_0" if symbolic else draw(st.integers(1, 4)), layers, loss=loss_spec,
                   samples=samples, notation=notation)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(networks())
def test_random_networks_check_out(spec):
    report = check(derive(spec))
    failures = [(s.derivation, s.position, s.kind, s.message) for s in report.steps if not s.passed]
    assert not failures, failures
    assert all(g.passed for g in report.gradients), report.to_json()["parameters"]




def _torch_gradients(inst):
    import torch

    torch.set_default_dtype(torch.float64)
    q = inst.q
    ws = {l: torch.tensor(inst.weights[l], requires_grad=True) for l in inst.weights}
    bs = {l: torch.tensor(inst.biases[l], requires_grad=True) for l in inst.biases}
    a = torch.tensor(inst.x)
    y = torch.tensor(inst.y)
    for l in range(1, inst.depth + 1):
        z = ws[l] @ a + bs[l]
        name = q.activation(l).name
        slope = float(q.spec.layers[l - 1].slope or 0.01)
        a = {"identity": lambda t: t, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
             "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, slope),
             "softplus": torch.nn.functional.softplus, "softmax": lambda t: torch.softmax(t, dim=0)}[name](z)
    c = inst.loss_scale
    kind = q.spec.loss.kind
    if kind == "squared_error":
        per = c * ((a - y) ** 2).sum(dim=0)
    elif kind == "binary_cross_entropy":
        per = -c * (y * torch.log(a) + (1 - y) * torch.log(1 - a)).sum(dim=0)
    elif kind == "cross_entropy":
        per = -c * (y * torch.log(a)).sum(dim=0)
    else:
        per = c * (torch.sin(a) + 0.5 * (a - y) ** 2).sum(dim=0)
    loss = inst.reduction * per.sum() + 0.5 * inst.penalty * sum((w ** 2).sum() for w in ws.values())
    loss.backward()
    out = {}
    for l in ws:
        out[f"W{l}"] = ws[l].grad.numpy()
        if q.spec.layers[l - 1].bias:
            out[f"b{l}"] = bs[l].grad.numpy()
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(networks())
def test_engine_gradients_match_pytorch_autograd(spec):
    pytest.importorskip("torch")
    result = derive(spec, levels=("matrix", "batch") if spec.samples != 1 else ("matrix",))
    inst = make_instance(result.quantities, seed=7)
    ours = engine_gradients(result, inst)
    theirs = _torch_gradients(inst)
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        assert np.allclose(ours[name], theirs[name], rtol=1e-7, atol=1e-10), name


@pytest.mark.parametrize("notation", ["ng", "rashid", "fromto", "rowvec"])
def test_the_gradients_do_not_depend_on_the_notation(notation):
    """Same network, same numbers: every profile's engine gradients equal the nielsen ones."""
    base = network("n", 3, [(4, "tanh"), (3, "softmax")], loss="cross_entropy", samples=2)
    other = base.with_notation(notation)
    results = [derive(s, levels=("matrix", "batch")) for s in (base, other)]
    grads = [engine_gradients(r, make_instance(r.quantities, seed=3)) for r in results]
    assert sorted(grads[0]) == sorted(grads[1])
    for name in grads[0]:
        assert np.allclose(grads[0][name], grads[1][name], rtol=1e-12, atol=1e-14), name
