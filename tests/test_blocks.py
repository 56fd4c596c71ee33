"""Networks with normalization, dropout, skips and the newer losses (derive/blocks): random networks against
independent oracles (central differences of a NumPy forward pass; PyTorch's autograd through
F.batch_norm, F.layer_norm and torch's own losses when torch is installed), step checks that catch a
broken step, spec errors that name the field, the CLI, golden documents and their PDFs."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from derive.blocks import check_blocks, derive_blocks, from_mapping
from derive.blocks.check import check_step, engine_gradients
from derive.blocks.document import render_blocks
from derive.blocks.numbers import Instance
from derive.errors import SpecError
from derive.spec import NetworkSpec, loads

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
GOLDEN = HERE / "golden"
HIDDEN = ("relu", "leaky_relu", "tanh", "sigmoid", "softplus", "identity")
OUTPUT_OF = {"squared_error": ("identity", "sigmoid", "tanh"), "huber": ("identity", "tanh"),
             "cross_entropy": ("softmax",), "binary_cross_entropy": ("sigmoid",), "nll": ("log_softmax",),
             "softmax_cross_entropy": ("identity",), "hinge": ("identity",)}
TORCH_NETWORKS = 300


def random_sequence(rng: np.random.Generator) -> dict:
    """A random sequence network: a recurrent or attention layer (or both), dense layers per step."""
    width, steps = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    layers, size = [], int(rng.integers(2, 5))
    first = size
    for l in range(1, int(rng.integers(1, 3)) + 1):
        kind = str(rng.choice(["rnn", "attention"]))
        if kind == "rnn":
            layers.append({"kind": "rnn", "units": width, "activation": str(rng.choice(["tanh", "sigmoid", "relu"])),
                           "bias": bool(rng.random() < 0.8), "name": f"h{l}"})
        else:
            layer = {"kind": "attention", "units": size, "key": int(rng.integers(1, 4)), "name": f"h{l}"}
            if rng.random() < 0.6:
                layer["skip"] = "input" if l == 1 else f"h{l - 1}"
            layers.append(layer)
            width = size
        size = width
    if rng.random() < 0.5:
        layers.append({"units": width, "activation": str(rng.choice(HIDDEN)), "norm": "layer"}
                      if rng.random() < 0.5 else {"units": width, "activation": "tanh"})
    loss = str(rng.choice(["squared_error", "cross_entropy", "softmax_cross_entropy"]))
    layers.append({"units": int(rng.integers(2, 4)), "activation": OUTPUT_OF[loss][0]})
    for layer in layers:
        if layer.get("activation") == "leaky_relu":
            layer["slope"] = "1/10"
    return {"name": "sequence", "input": first, "steps": steps, "layers": layers,
            "loss": {"kind": loss, "reduction": str(rng.choice(["mean", "sum"]))}}


def random_maps(rng: np.random.Generator) -> dict:
    """A random network of feature maps: 1-D or 2-D, conv layers (stride, padding) and pooling, then dense."""
    dims = int(rng.integers(1, 3))
    channels = int(rng.integers(1, 3))
    side = int(rng.integers(4, 7))
    shape = [channels] + [side] * dims
    layers = []
    for _ in range(int(rng.integers(1, 3))):
        kernel = int(rng.integers(1, 4))
        padding = int(rng.integers(0, kernel))
        stride = 1
        if rng.random() < 0.3:
            stride = next((s for s in (2, 3) if (shape[1] + 2 * padding - kernel) % s == 0
                           and shape[1] + 2 * padding - kernel >= 0), 1)
        if shape[1] + 2 * padding - kernel < 0:
            break
        out = int(rng.integers(1, 3))
        layers.append({"kind": "conv", "channels": out, "kernel": kernel, "stride": stride, "padding": padding,
                       "activation": str(rng.choice(["relu", "tanh", "identity", "sigmoid"])),
                       "bias": bool(rng.random() < 0.8)})
        shape = [out] + [(n + 2 * padding - kernel) // stride + 1 for n in shape[1:]]
        size = next((s for s in (2, 3) if all(n % s == 0 for n in shape[1:])), None)
        if size and rng.random() < 0.7:
            layers.append({"kind": "pool", "mode": str(rng.choice(["max", "avg"])), "size": size})
            shape = [shape[0]] + [n // size for n in shape[1:]]
    loss = str(rng.choice(["squared_error", "cross_entropy", "hinge"]))
    layers.append({"units": int(rng.integers(2, 4)), "activation": OUTPUT_OF[loss][0]})
    spatial = {"length": side} if dims == 1 else {"height": side, "width": side}
    return {"name": "maps", "input": {"channels": channels, **spatial}, "layers": layers,
            "loss": {"kind": loss, "reduction": "sum"}}


def random_mapping(rng: np.random.Generator, samples=None) -> dict:
    """A random network: every stage and loss drawn, skips between layers of the same size; one in four
    is a sequence network with recurrent or attention layers, one in five a network of feature maps."""
    if samples is None and rng.random() < 0.2:
        return random_maps(rng)
    if samples is None and rng.random() < 0.25:
        return random_sequence(rng)
    depth = int(rng.integers(1, 5))
    width = int(rng.integers(2, 5))
    samples = samples if samples is not None else int(rng.integers(2, 6))
    layers, sizes = [], [int(rng.integers(2, 5))]
    for l in range(1, depth):
        units = width if rng.random() < 0.7 else int(rng.integers(2, 5))
        layer = {"units": units, "activation": str(rng.choice(HIDDEN)), "name": f"h{l}", "bias": bool(rng.random() < 0.7)}
        if layer["activation"] == "leaky_relu":
            layer["slope"] = "1/10"
        norm = rng.choice(["none", "batch", "layer"])
        if norm != "none":
            layer["norm"] = str(norm)
        if rng.random() < 0.4:
            layer["dropout"] = str(rng.choice(["1/5", "1/2"]))
        earlier = [("input" if k == 0 else f"h{k}") for k in range(l) if sizes[k] == units]
        if earlier and rng.random() < 0.6:
            layer["skip"] = str(rng.choice(earlier))
        layers.append(layer)
        sizes.append(units)
    loss = str(rng.choice(sorted(OUTPUT_OF)))
    outputs = int(rng.integers(2, 5))
    layers.append({"units": outputs, "activation": str(rng.choice(OUTPUT_OF[loss]))})
    kind = {"kind": loss, "reduction": str(rng.choice(["mean", "sum"]))}
    if loss == "huber":
        kind["delta"] = "1/2"
    return {"name": "random", "input": sizes[0], "samples": samples, "layers": layers, "loss": kind}


# ------------------------------------------------------------------ the oracles

def numpy_oracle_agrees(mapping) -> float:
    """The derived matrix formulas, run backward, against central differences of the loss (every entry)."""
    result = derive_blocks(from_mapping(mapping), levels=("matrix",))
    inst = Instance(result.table, seed=7)
    grads = engine_gradients(result, inst)
    assert set(grads) == set(result.parameters), (set(result.parameters) - set(grads))
    worst = 0.0
    for name, g in grads.items():
        kind = name.rstrip("0123456789")
        numeric = inst.gradient((kind, int(name[len(kind):])))
        worst = max(worst, float(np.max(np.abs(numeric - g) / (1e-5 + 1e-3 * np.abs(numeric)))))
    return worst


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10 ** 6))
def test_random_networks_match_central_differences(seed):
    assert numpy_oracle_agrees(random_mapping(np.random.default_rng(seed))) <= 1.0


def torch_loss(torch, spec, leaves, params):
    """The network's loss written independently in PyTorch (float64), from torch's own layers and losses."""
    F = torch.nn.functional
    t = lambda key: torch.tensor(leaves[key], dtype=torch.float64)
    a = {0: t(("a", 0))}
    x = a[0]
    for l, layer in enumerate(spec.layers, start=1):
        if layer.kind in ("conv", "pool"):   # torch's own convolution and pooling, one sample as a batch of 1
            dims = x.dim() - 1
            if layer.kind == "conv":
                conv = F.conv1d if dims == 1 else F.conv2d
                z = conv(x[None], params[f"K{l}"], params[f"b{l}"][:, 0] if layer.bias else None,
                         stride=layer.stride, padding=layer.padding)[0]
                act = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
                       "identity": lambda v: v}[layer.activation]
                a[l] = x = act(z)
            else:
                pool = {("max", 1): F.max_pool1d, ("max", 2): F.max_pool2d, ("avg", 1): F.avg_pool1d,
                        ("avg", 2): F.avg_pool2d}[layer.mode, dims]
                a[l] = x = pool(x[None], layer.kernel)[0]
            continue
        if layer.kind == "dense" and spec.map_shape(l - 1) is not None:
            W = params[f"W{l}"].reshape(params[f"W{l}"].shape[0], -1)
            z = W @ x.reshape(-1, 1) + (params[f"b{l}"] if layer.bias else 0)
            act = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda v: v,
                   "softmax": lambda v: torch.softmax(v, dim=0)}[layer.activation]
            a[l] = x = act(z)
            continue
        if layer.kind == "attention":        # torch's own attention, tokens as rows
            q, k, v = (params[f"{name}{l}"] @ x for name in ("WQ", "WK", "WV"))
            h = F.scaled_dot_product_attention(q.T[None], k.T[None], v.T[None])[0].T
            if layer.skip:
                h = h + a[spec.source_of(l)]
            a[l] = x = h
            continue
        if layer.kind == "rnn":              # torch.nn.RNN with derive's W, U and b (b_hh = 0)
            rnn = torch.nn.RNN(x.shape[0], params[f"W{l}"].shape[0], nonlinearity=layer.activation if
                               layer.activation in ("tanh", "relu") else "tanh", bias=layer.bias).double()
            if layer.activation == "sigmoid":       # nn.RNN has tanh and relu; the sigmoid cell by hand
                state, outs = torch.zeros(params[f"W{l}"].shape[0], 1, dtype=torch.float64), []
                for step in range(x.shape[1]):
                    state = torch.sigmoid(params[f"W{l}"] @ x[:, step:step + 1] + params[f"U{l}"] @ state +
                                          (params[f"b{l}"] if layer.bias else 0))
                    outs.append(state)
                a[l] = x = torch.cat(outs, dim=1)
                continue
            weights = {"weight_ih_l0": params[f"W{l}"], "weight_hh_l0": params[f"U{l}"]}
            if layer.bias:
                weights |= {"bias_ih_l0": params[f"b{l}"][:, 0], "bias_hh_l0": torch.zeros_like(params[f"b{l}"][:, 0])}
            out, _ = torch.func.functional_call(rnn, weights, (x.T[:, None, :],))
            a[l] = x = out[:, 0, :].T
            continue
        z = params[f"W{l}"] @ x + (params[f"b{l}"] if layer.bias else 0)
        if layer.norm == "batch":
            z = F.batch_norm(z.T, None, None, params[f"gamma{l}"][:, 0], params[f"beta{l}"][:, 0], training=True,
                             eps=float(layer.eps)).T
        elif layer.norm == "layer":
            z = F.layer_norm(z.T, (z.shape[0],), params[f"gamma{l}"][:, 0], params[f"beta{l}"][:, 0],
                             eps=float(layer.eps)).T
        act = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "softplus": F.softplus,
               "identity": lambda v: v, "softmax": lambda v: torch.softmax(v, dim=0),
               "log_softmax": lambda v: torch.log_softmax(v, dim=0),
               "leaky_relu": lambda v: F.leaky_relu(v, float(layer.slope or 0.01))}[layer.activation]
        h = act(z)
        if layer.dropout is not None:
            h = t(("r", l)) * h / (1 - float(layer.dropout))
        if layer.skip:
            h = h + a[spec.source_of(l)]
        a[l] = x = h
    y = t(("y", None))
    m = y.shape[1]
    c = 1.0 / m if spec.loss.reduction == "mean" else 1.0
    target = y.argmax(dim=0)
    kind = spec.loss.kind
    if kind == "squared_error":
        total = 0.5 * ((x - y) ** 2).sum()
    elif kind == "huber":
        total = F.huber_loss(x, y, reduction="sum", delta=float(spec.loss.delta))
    elif kind == "cross_entropy":
        total = -(y * torch.log(x)).sum()
    elif kind == "binary_cross_entropy":
        total = F.binary_cross_entropy(x, y, reduction="sum")
    elif kind == "nll":
        total = F.nll_loss(x.T, target, reduction="sum")
    elif kind == "softmax_cross_entropy":
        total = F.cross_entropy(x.T, target, reduction="sum")
    else:       # torch averages the multiclass margin loss over the classes
        total = F.multi_margin_loss(x.T, target, margin=float(spec.loss.margin), reduction="sum") * x.shape[0]
    return c * total


def _key(name: str) -> tuple[str, int]:
    kind = name.rstrip("0123456789")
    return kind, int(name[len(kind):])


def test_random_networks_match_pytorch_autograd():
    torch = pytest.importorskip("torch")
    worst, checked = 0.0, 0
    for seed in range(TORCH_NETWORKS):
        spec = from_mapping(random_mapping(np.random.default_rng(10_000 + seed)))
        result = derive_blocks(spec, levels=("matrix",))
        inst = Instance(result.table, seed=seed)
        ours = engine_gradients(result, inst)
        params = {name: torch.tensor(inst.leaves[_key(name)], dtype=torch.float64, requires_grad=True)
                  for name in result.parameters}
        torch_loss(torch, spec, inst.leaves, params).backward()
        for name, tensor in params.items():
            theirs = tensor.grad.numpy()
            error = float(np.max(np.abs(theirs - ours[name]) / (1e-9 + 1e-7 * np.abs(theirs))))
            assert error <= 1.0, (seed, name, spec, np.abs(theirs - ours[name]).max())
            worst = max(worst, float(np.abs(theirs - ours[name]).max()))
        checked += 1
    print(f"\n{checked} random networks against PyTorch autograd; worst absolute error {worst:.1e}")
    assert checked == TORCH_NETWORKS


# --------------------------------------------------------------- the step checks

BN = {"name": "bn", "input": 3, "samples": 4, "layers": [
    {"units": 3, "activation": "tanh", "norm": "batch", "name": "h1"},
    {"units": 3, "activation": "relu", "norm": "layer", "skip": "h1", "dropout": "1/4"},
    {"units": 2, "activation": "softmax"}], "loss": "cross_entropy"}


def test_every_step_of_every_stage_checks_out_and_is_checked_at_points():
    result = derive_blocks(from_mapping(BN))
    report = check_blocks(result)
    assert report.passed and report.steps_failed == 0
    assert all(s.points > 0 for s in report.steps)
    kinds = {d.topic for d in result.derivations}
    assert kinds >= {"loss", "act", "norm", "zhat", "gamma", "beta", "dropout", "skip", "weight", "bias", "input"}


def _broken(step, rhs):
    return type(step)(step.lhs, rhs, step.level, step.free, step.facts)


@pytest.mark.parametrize("topic,layer", [("norm", 1), ("norm", 2), ("input", 2), ("dropout", 2), ("gamma", 1)])
def test_a_broken_step_fails_its_check(topic, layer):
    """Each derivation's last step with one term dropped or a factor changed no longer checks out."""
    import sympy as sp

    result = derive_blocks(from_mapping(BN))
    inst = [Instance(result.table, seed) for seed in (0, 1)]
    for level in ("index", "matrix"):
        step = result.get(topic, layer, level).result
        rhs = step.rhs
        if isinstance(rhs, sp.Add) or isinstance(rhs, sp.MatAdd):
            broken = type(rhs)(*rhs.args[1:])          # one term dropped
        else:
            broken = 2 * rhs
        assert check_step(step, inst, "x", 1, np.random.default_rng(0)).passed
        assert not check_step(_broken(step, broken), inst, "x", 1, np.random.default_rng(0)).passed, (topic, level)


SEQUENCE = {"name": "seq", "input": 2, "steps": 3, "layers": [
    {"kind": "rnn", "units": 3, "name": "h1"}, {"kind": "attention", "units": 3, "key": 2, "skip": "h1"},
    {"units": 2, "activation": "identity"}], "loss": "squared_error"}


@pytest.mark.parametrize("topic,layer", [("input", 2), ("act", 1), ("recurrent", 1), ("weight", 1), ("att_s", 2),
                                         ("att_q", 2), ("att_v", 2), ("wk", 2), ("input", 3)])
def test_a_broken_step_of_a_sequence_network_fails_its_check(topic, layer):
    import sympy as sp
    from derive.blocks.check import instance

    result = derive_blocks(from_mapping(SEQUENCE))
    inst = [instance(result, seed) for seed in (0, 1)]
    for level in ("index", "matrix"):
        step = result.get(topic, layer, level).result
        rhs = step.rhs
        broken = type(rhs)(*rhs.args[1:]) if isinstance(rhs, (sp.Add, sp.MatAdd)) else 2 * rhs
        assert check_step(step, inst, "x", 1, np.random.default_rng(0)).passed, (topic, level)
        assert not check_step(_broken(step, broken), inst, "x", 1, np.random.default_rng(0)).passed, (topic, level)


def test_backpropagation_through_time_has_the_next_steps_error_term():
    from derive.blocks.symbols import BlockPrinter

    result = derive_blocks(from_mapping(SEQUENCE))
    text = BlockPrinter(result.table).doprint(result.get("input", 2, "matrix").result.rhs)
    assert r"\left(U^{1}\right)^{T} \Delta^{1} N" in text and r"\frac{\partial L}{\partial A^{2}}" in text, text
    assert check_blocks(result).passed


def test_the_three_term_formula_is_derived_not_written_in():
    result = derive_blocks(from_mapping(BN))
    steps = result.get("norm", 1, "index").steps
    assert len(steps) >= 12                         # chain rule, the quotient, the mean and variance, the collapse
    kinds = [s.kind for s in steps]
    assert kinds[:2] == ["delta_definition", "chain_rule"] and "kronecker_collapse" in kinds


def test_the_skip_gives_the_skipped_layer_two_terms():
    result = derive_blocks(from_mapping(BN))
    matrix = result.get("input", 2, "matrix").result.rhs
    from derive.blocks.symbols import BlockPrinter

    text = BlockPrinter(result.table).doprint(matrix)
    assert text == r"\left(W^{2}\right)^{T} \Delta^{2} + \frac{\partial L}{\partial A^{2}}", text


# ------------------------------------------------------------------- the spec

@pytest.mark.parametrize("change,field,words", [
    (lambda m: m["layers"][1].update(skip="nowhere"), "layers[2].skip", "the name of an earlier layer"),
    (lambda m: m["layers"][1].update(units=5), "layers[2].skip", "a layer of the same size"),
    (lambda m: m.update(samples=1), "layers[1].norm", "only with a batch"),
    (lambda m: m["layers"][0].update(activation="softmax"), "layers[1].activation", "an entry-wise activation"),
    (lambda m: m.update(loss="nll"), "loss.kind", "log_softmax"),
    (lambda m: m["layers"][0].update(kind="conv2d"), "layers[1].kind", "not derived yet"),
    (lambda m: m["layers"][0].update(dropout=1), "layers[1].dropout", "0 < p < 1"),
    (lambda m: m["layers"][2].update(norm="batch"), "layers[3].norm", "output layer"),
    (lambda m: m["layers"][0].update(eps="1e-5", norm=None), "layers[1].eps", "only with norm"),
    (lambda m: m["layers"][0].update(eps=1000000000), "layers[1].eps", "at most 0.1"),
    (lambda m: m.update(notation="ng"), "notation", "nielsen (samples as columns) or rowvec"),
    (lambda m: m.update(steps=3), "steps", "only with a recurrent or attention layer"),
    (lambda m: m["layers"][0].update(kind="rnn", norm=None), "layers[1].kind", "give steps"),
])
def test_bad_combinations_name_the_field(change, field, words):
    assert_refused(BN, change, field, words, clean=True)


def assert_refused(base: dict, change, field: str, words: str, clean: bool = False):
    """The changed spec is refused with a message naming the field and saying what is accepted."""
    import copy

    mapping = copy.deepcopy(base)
    change(mapping)
    if clean:       # a change may set a field to None to remove it
        mapping["layers"] = [{k: v for k, v in l.items() if v is not None} for l in mapping["layers"]]
    with pytest.raises(SpecError) as caught:
        from_mapping(mapping)
    assert caught.value.field == field and words in str(caught.value), str(caught.value)


@pytest.mark.parametrize("change,field,words", [
    (lambda m: m["layers"][0].update(skip="input"), "layers[1].skip", "inside a recurrent layer"),
    (lambda m: m["layers"][1].update(activation="relu"), "layers[2].activation", "attention layer"),
    (lambda m: m["layers"].pop(), "layers[2].kind", "a dense output layer"),
    (lambda m: m.update(samples=4), "samples", "samples: 1 in a sequence network"),
    (lambda m: m["layers"][2].update(norm="batch"), "layers[3].norm", "norm: layer"),
    (lambda m: m["layers"][1].update(units=4), "layers[2].skip", "a layer of the same size"),
])
def test_bad_sequence_networks_name_the_field(change, field, words):
    assert_refused(SEQUENCE, change, field, words)


CNN = {"name": "cnn", "input": {"channels": 1, "height": 6, "width": 6}, "layers": [
    {"kind": "conv", "channels": 2, "kernel": 3, "activation": "relu"}, {"kind": "pool", "mode": "max", "size": 2},
    {"units": 3, "activation": "softmax"}], "loss": "cross_entropy"}


@pytest.mark.parametrize("change,field,words", [
    (lambda m: m["layers"].insert(0, {"units": 4}), "layers[2].kind", "a feature map before it"),
    (lambda m: m["layers"][1].update(size=3), "layers[2].size", "tiles the map"),
    (lambda m: m["layers"][0].update(kernel=7), "layers[1].kernel", "fit the map"),
    (lambda m: m["layers"][0].update(stride=2), "layers[1].stride", "fit the map"),
    (lambda m: m.update(samples=4), "samples", "samples: 1 for a network of feature maps"),
    (lambda m: m["layers"].pop(), "layers[2].kind", "a dense output layer"),
    (lambda m: m["layers"][1].update(mode="median"), "layers[2].mode", "max or avg"),
    (lambda m: m["layers"][0].update(units=3), "layers[1].units", "a field of a conv layer"),
    (lambda m: m.update(input={"channels": 1, "height": 6}), "input.width", "a number from 1 to 64"),
    (lambda m: m["layers"][0].update(name={"x": 1}), "layers[1].name", "a name of letters"),
    (lambda m: m["layers"][1].update(name=["h"]), "layers[2].name", "a name of letters"),
    (lambda m: m["layers"][0].update(activation=3), "layers[1].activation", "one of"),
    (lambda m: m.update(input={"channels": 16, "height": 16, "width": 16}), "input", "at most 256 entries"),
    (lambda m: m["layers"][2].update(units="r"), "layers[3].units", "the derivation's indices"),
])
def test_bad_feature_map_networks_name_the_field(change, field, words):
    assert_refused(CNN, change, field, words)


@pytest.mark.parametrize("topic,layer", [("kernel", 1), ("input", 2), ("input", 3), ("act", 1), ("weight", 3)])
def test_a_broken_step_of_a_feature_map_network_fails_its_check(topic, layer):
    from derive.blocks.check import instance

    result = derive_blocks(from_mapping(CNN))
    inst = [instance(result, seed) for seed in (0, 1)]
    step = result.get(topic, layer, "index").result
    rhs = step.rhs
    broken = 2 * rhs
    assert check_step(step, inst, "x", 1, np.random.default_rng(0)).passed
    assert not check_step(_broken(step, broken), inst, "x", 1, np.random.default_rng(0)).passed


def test_a_kernel_index_off_by_one_fails():
    """The correlation reads x at i + p - 1; reading i + p instead is caught."""
    from derive.blocks.check import instance
    from derive.blocks.symbols import INDEX

    result = derive_blocks(from_mapping(CNN))
    inst = [instance(result, seed) for seed in (0, 1)]
    step = result.get("kernel", 1, "index").result
    shifted = step.rhs.xreplace({INDEX["p"]: INDEX["p"] + 1})
    assert not check_step(_broken(step, shifted), inst, "x", 1, np.random.default_rng(0)).passed


def test_the_5x5_convolution_is_written_out_entry_by_entry():
    spec = loads((EXAMPLES / "conv_5x5.yaml").read_text(), "conv")
    result = derive_blocks(spec)
    written = result.get("kernel", 1, "concrete")
    assert len(written.steps) == 9 and all(len(s.rhs.args) == 9 for s in written.steps)
    assert check_blocks(result).passed


def test_a_size_named_twice_is_one_number_at_every_instance():
    """Units named m in a batch of m samples: the numeric instances draw one value for the one symbol."""
    mapping = {"name": "same", "input": "n", "samples": "m", "layers": [
        {"units": "n", "activation": "tanh", "norm": "batch", "name": "h1"}, {"units": "n", "activation": "tanh", "skip": "h1"},
        {"units": "m", "activation": "log_softmax"}], "loss": "nll"}
    assert check_blocks(derive_blocks(from_mapping(mapping))).passed


def test_dense_specs_stay_dense_and_the_new_fields_select_the_new_engine():
    dense = loads("name: d\ninput: 2\nlayers: [{units: 2, activation: sigmoid}]\n")
    assert isinstance(dense, NetworkSpec)
    block = loads("name: d\ninput: 2\nsamples: 3\nlayers: [{units: 2, activation: relu, norm: batch}, {units: 2}]\n")
    assert not isinstance(block, NetworkSpec) and block.layers[0].norm == "batch"


# --------------------------------------------------------------------- the CLI

def run(*args):
    return subprocess.run([sys.executable, "-m", "derive.cli", *args], capture_output=True, text=True,
                          cwd=HERE.parent, timeout=600)


def test_cli_checks_a_block_example_and_refuses_what_it_cannot_do_yet(tmp_path):
    proc = run("check", str(EXAMPLES / "batchnorm_mlp.yaml"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["passed"] and report["steps_checked"] > 100 and set(report["parameters"]) >= {"gamma1", "beta2"}
    maps = tmp_path.parent / f"{tmp_path.name}_maps_rows.yaml"       # beside the output folder, which stays empty
    maps.write_text((EXAMPLES / "small_cnn.yaml").read_text().replace("name: small_cnn", "name: m\nnotation: rowvec"))
    proc = run("check", str(maps))
    assert proc.returncode == 2 and "notation" in proc.stderr and "feature maps" in proc.stderr, proc.stderr
    proc = run("build", str(EXAMPLES / "batchnorm_mlp.yaml"), "-o", str(tmp_path), "--layers", "9")
    assert proc.returncode == 2 and "out of range" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())
    proc = run("verify", str(EXAMPLES / "residual_dropout.yaml"), "--param", "W1", "--claim", "delta1 a0.T")
    assert proc.returncode == 2 and "read as LaTeX" in proc.stdout and "Traceback" not in proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\ninput: 2\nsamples: 2\nlayers: [{units: 2, skip: h9}, {units: 2}]\n")
    proc = run("check", str(bad))
    assert proc.returncode == 2 and "layers[1].skip" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- the documents

def test_block_documents_at_every_detail():
    """brief: the network, the forward pass and the summary; full: every layer derived entry by entry; each
    read back in full."""
    from derive.documents import render_block_forms

    result = derive_blocks(loads((EXAMPLES / "batchnorm_mlp.yaml").read_text(), "bn"))
    counts = {}
    for detail in ("brief", "normal", "full"):
        rendered = render_block_forms(result, "en", ("tex", "md"), detail)
        assert rendered.printed.passed
        counts[detail] = rendered.printed.printed
        assert ("Entry by entry" in rendered.texts["tex"]) == (detail != "brief")
    assert counts["brief"] < counts["normal"] < counts["full"], counts
    one = render_block_forms(result, "en", ("tex",), "normal", frozenset({1}))
    tex = one.texts["tex"]
    assert one.printed.passed and "Only layer 1 is written out" in tex
    assert r"\subsection{Layer 1}" in tex and r"\subsection{Layer 2}" not in tex
    assert r"\frac{\partial L}{\partial W^{3}} &= \Delta^{3}" in tex        # the summary keeps every layer


def test_block_documents_in_every_text_form(tmp_path):
    """Markdown, HTML (MathML), slides and the body: made from the document with each note a sentence
    before its display, whose printed lines read back too (build refuses otherwise)."""
    proc = run("build", str(EXAMPLES / "rnn_bptt.yaml"), "-o", str(tmp_path), "--format", "tex,md,html,beamer,body",
               "--lang", "zh")
    assert proc.returncode == 0, proc.stderr
    assert "67 equations printed, 67 read back, 67 correct" in proc.stderr
    md = (tmp_path / "rnn_bptt.zh.md").read_text(encoding="utf-8")
    assert r"\quad (t < 3)" in md and "$$" in md and r"\stepnote" not in md
    html = (tmp_path / "rnn_bptt.zh.html").read_text(encoding="utf-8")
    assert html.count("<math") > 50 and "<script" not in html
    slides = (tmp_path / "rnn_bptt.zh.slides.tex").read_text(encoding="utf-8")
    assert slides.count("\\begin{frame}") >= 4
    assert (tmp_path / "rnn_bptt.zh.body.tex").exists()


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("name", ["batchnorm_mlp", "residual_dropout", "rnn_bptt", "attention_block", "small_cnn",
                                  "conv_5x5", "attention_rows"])
def test_golden_block_documents(name, lang, update_golden):
    spec = loads((EXAMPLES / f"{name}.yaml").read_text(), name)
    result = derive_blocks(spec)
    tex = render_blocks(result, check_blocks(result), lang)
    path = GOLDEN / f"{name}.{lang}.tex"
    noise = re.compile(r"\d\.\de-\d\d")
    if update_golden or not path.exists():
        path.write_text(tex, encoding="utf-8")
        if not update_golden:
            pytest.fail(f"golden file {path.name} was missing and has been written; run again")
    assert noise.sub("<err>", tex) == noise.sub("<err>", path.read_text(encoding="utf-8")), \
        f"{path.name} differs; if the change is intended, run pytest --update-golden"
    marker = {"batchnorm_mlp": r"\gamma^{", "residual_dropout": r"\tilde{h}^{", "rnn_bptt": r"\bar{\partial}",
              "attention_block": r"\sqrt{2}", "small_cnn": r"\max_{1 \le p, q \le 2}",
              "conv_5x5": r"\frac{\partial L}{\partial K^{1}_{1,1,3,3}}",
              "attention_rows": r"S^{1} &= \frac{1}{\sqrt{2}} Q^{1} \left(K^{1}\right)^{T}"}[name]
    assert marker in tex and r"\stepnote" in tex


def test_chinese_block_documents_have_no_english_prose():
    spec = loads((EXAMPLES / "batchnorm_mlp.yaml").read_text(), "bn")
    result = derive_blocks(spec)
    tex = render_blocks(result, check_blocks(result), "zh")
    body = tex[tex.index(r"\begin{document}"):]
    body = re.sub(r"\\begin\{(align\*|equation\*)\}.*?\\end\{\1\}|\$[^$]*\$", " ", body, flags=re.S)
    body = re.sub(r"\\begin\{tabular\}\{[a-z]+\}|\\[A-Za-z]+\*?(\{[a-z*]+\})?", " ", body)
    words = {w for w in re.findall(r"[A-Za-z]{3,}", body)} - {"dropout", "relu", "softmax", "tanh", "log"}
    assert not words, sorted(words)


# --------------------------------------------------------------------- codegen

CODEGEN_NETWORKS = 80


def test_generated_numpy_code_gives_the_derived_gradients(tmp_path):
    """derive codegen's module, run on random dense, normalized, dropout, skip, recurrent and attention
    networks, returns the loss and the gradients that the derivation (checked against PyTorch above) gives."""
    from derive.blocks.check import instance
    from derive.blocks.codegen import generate_blocks
    from derive.codegen import module_from_source

    checked = maps = 0
    for seed in range(CODEGEN_NETWORKS * 2):
        spec = from_mapping(random_mapping(np.random.default_rng(50_000 + seed)))
        if not hasattr(spec, "has_maps"):
            continue
        maps += spec.has_maps
        module = module_from_source(generate_blocks(spec), f"generated{seed}")
        result = derive_blocks(spec) if spec.has_maps else derive_blocks(spec, levels=("matrix",))
        inst = instance(result, seed)
        ours = engine_gradients(result, inst)
        params = {name: inst.leaves[_key(name)] for name in result.parameters}
        masks = {f"R{l}": inst.leaves[("r", l)] for l, layer in enumerate(spec.layers, 1) if layer.dropout is not None}
        value, grads = module.gradients(params, inst.leaves[("a", 0)], inst.leaves[("y", None)], masks)
        assert abs(value - float(inst.values[("L", None)])) <= 1e-9 * max(1.0, abs(value))
        assert set(grads) == set(result.parameters)
        for name in result.parameters:
            assert np.allclose(grads[name], ours[name], rtol=1e-9, atol=1e-12), (seed, name)
        checked += 1
        if checked == CODEGEN_NETWORKS:
            break
    assert checked == CODEGEN_NETWORKS and maps >= 8, maps


def test_generated_code_in_the_row_layout_takes_and_gives_transposes():
    """A rowvec network's module takes X with the samples as rows and W as (inputs, units), and returns the
    gradients in that layout: the derivation's column-layout gradients, transposed."""
    from derive.blocks.check import instance
    from derive.blocks.codegen import generate_blocks
    from derive.codegen import module_from_source

    checked = 0
    for seed in range(40):
        mapping = random_mapping(np.random.default_rng(70_000 + seed))
        if "input" in mapping and isinstance(mapping["input"], dict):
            continue
        mapping["notation"] = "rowvec"
        spec = from_mapping(mapping)
        if not hasattr(spec, "has_maps"):
            continue
        module = module_from_source(generate_blocks(spec), f"rows{seed}")
        result = derive_blocks(spec, levels=("matrix",))
        inst = instance(result, seed)
        ours = engine_gradients(result, inst)
        params = {name: inst.leaves[_key(name)].T for name in result.parameters}
        masks = {f"R{l}": inst.leaves[("r", l)].T for l, layer in enumerate(spec.layers, 1) if layer.dropout is not None}
        value, grads = module.gradients(params, inst.leaves[("a", 0)].T, inst.leaves[("y", None)].T, masks)
        assert abs(value - float(inst.values[("L", None)])) <= 1e-9 * max(1.0, abs(value))
        for name in result.parameters:
            assert np.allclose(grads[name], ours[name].T, rtol=1e-9, atol=1e-12), (seed, name)
        checked += 1
    assert checked >= 15, checked


def test_generated_code_for_a_cnn_agrees_with_its_own_forward_pass(tmp_path):
    """The conv-ReLU-pool-dense-softmax example's module: every kernel entry's gradient against a central
    difference of the module's own loss (no derive code involved in the numbers)."""
    out = tmp_path / "cnn.py"
    proc = run("codegen", str(EXAMPLES / "small_cnn.yaml"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    from derive.codegen import load_module

    module = load_module(out)
    rng = np.random.default_rng(3)
    params = {"K1": rng.normal(size=(2, 1, 3, 3)), "b1": rng.uniform(0.3, 1.0, size=(2, 1)),
              "W3": rng.normal(size=(3, 2, 2, 2)), "b3": rng.normal(size=(3, 1))}
    X, Y = rng.normal(size=(1, 6, 6)), np.eye(3)[:, [1]]
    value, grads = module.gradients(params, X, Y)
    assert set(grads) == {"K1", "b1", "W3", "b3"} and grads["K1"].shape == (2, 1, 3, 3)
    for name in ("K1", "W3"):
        for entry in np.ndindex(*params[name].shape):
            moved = [dict(params, **{name: params[name].copy()}) for _ in range(2)]
            moved[0][name][entry] += 1e-6
            moved[1][name][entry] -= 1e-6
            numeric = (module.forward(moved[0], X, Y)[1] - module.forward(moved[1], X, Y)[1]) / 2e-6
            assert abs(numeric - grads[name][entry]) <= 1e-6 * max(1.0, abs(numeric)), (name, entry)


def test_codegen_cli_writes_a_module_that_runs(tmp_path):
    out = tmp_path / "rnn.py"
    proc = run("codegen", str(EXAMPLES / "rnn_bptt.yaml"), "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["parameters"] == ["W1", "U1", "b1", "W2", "b2"]
    from derive.codegen import load_module

    module = load_module(out)
    rng = np.random.default_rng(0)
    params = {"W1": rng.normal(size=(4, 2)), "U1": rng.normal(size=(4, 4)) * 0.3, "b1": rng.normal(size=(4, 1)),
              "W2": rng.normal(size=(2, 4)), "b2": rng.normal(size=(2, 1))}
    X, Y = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    value, grads = module.gradients(params, X, Y)
    moved = dict(params, U1=params["U1"] + 1e-6 * np.eye(4))
    numeric = (module.forward(moved, X, Y)[1] - module.forward(params, X, Y)[1]) / 1e-6
    assert abs(numeric - np.trace(grads["U1"])) < 1e-4
