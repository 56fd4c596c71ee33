"""Generated NumPy code: gradients against the engine and central differences; XOR; dtypes; CLI."""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from derive import network
from derive.errors import DeriveError
from derive.checks import engine_gradients
from derive.codegen import generate, load_module, train_xor
from derive.engine import derive
from derive.oracle import make_instance

ACTS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "softplus", "softmax"]
OUTPUT_FOR_LOSS = {"squared_error": ACTS, "binary_cross_entropy": ["sigmoid"],   # softmax + BCE: refused below
                   "cross_entropy": ["sigmoid", "softmax"]}


def module_for(spec, tmp_path, layout="column", dtype="float64"):
    path = tmp_path / f"model_{layout}_{dtype}.py"
    path.write_text(generate(spec, layout=layout, dtype=dtype))
    return load_module(path)


@st.composite
def specs(draw):
    depth = draw(st.integers(1, 3))
    loss = draw(st.sampled_from(sorted(OUTPUT_FOR_LOSS)))
    layers = []
    for l in range(1, depth + 1):
        act = draw(st.sampled_from(OUTPUT_FOR_LOSS[loss] if l == depth else ACTS))
        low = 2 if act == "softmax" or (l == depth and loss == "cross_entropy") else 1
        layer = {"units": draw(st.integers(low, 4)), "activation": act, "bias": draw(st.booleans()) or l == depth}
        if act == "leaky_relu" and draw(st.booleans()):
            layer["slope"] = "1/5"
        layers.append(layer)
    loss_spec = {"kind": loss, "reduction": draw(st.sampled_from(["mean", "sum"]))}
    if draw(st.booleans()):
        loss_spec["l2"] = draw(st.sampled_from(["lam", "1/10"]))
    return network("g", draw(st.integers(1, 4)), layers, loss=loss_spec, samples=3)


def _call(mod, fn, params, X, Y, spec, **options):
    kwargs = {"l2": 0.3} if isinstance(spec.loss.l2, str) else {}
    return getattr(mod, fn)(params, X, Y, **kwargs, **options)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
          derandomize=True)
@given(specs(), st.sampled_from(["column", "row"]))
def test_generated_gradients_match_engine_and_central_differences(tmp_path, spec, layout):
    mod = module_for(spec, tmp_path, layout)
    result = derive(spec, levels=("matrix", "batch"))
    inst = make_instance(result.quantities, seed=5)
    if isinstance(spec.loss.l2, str):
        inst.penalty = 0.3
        inst.constants = {**inst.constants, **{s: 0.3 for s in inst.constants if str(s) == "lam"}}
    engine = engine_gradients(result, inst)
    row = layout == "row"
    params = {f"W{l}": (w.T if row else w).copy() for l, w in inst.weights.items()}
    params.update({f"b{l}": (inst.biases[l].T if row else inst.biases[l]).copy()
                   for l, layer in enumerate(spec.layers, start=1) if layer.bias})
    X, Y = (inst.x.T, inst.y.T) if row else (inst.x, inst.y)
    ours = _call(mod, "gradients", params, X, Y, spec)
    assert sorted(ours) == sorted(engine)
    # a workspace reused across calls and a forward cache change no number
    workspace = mod.Workspace()
    for _ in range(2):
        cache = mod.forward(params, X, workspace=workspace)
        again = _call(mod, "gradients", params, X, Y, spec, cache=cache, workspace=workspace)
        assert all(np.array_equal(again[k], ours[k]) for k in ours)
    assert _call(mod, "loss", params, X, Y, spec, cache=cache) == _call(mod, "loss", params, X, Y, spec)
    for name, grad in ours.items():
        assert grad.shape == params[name].shape
        canonical = grad.T if row else grad
        assert np.allclose(canonical, engine[name], rtol=1e-7, atol=1e-10), name
        numeric = np.zeros_like(grad)
        for idx in np.ndindex(*grad.shape):
            saved = params[name][idx]
            params[name][idx] = saved + 1e-6
            up = _call(mod, "loss", params, X, Y, spec)
            params[name][idx] = saved - 1e-6
            down = _call(mod, "loss", params, X, Y, spec)
            params[name][idx] = saved
            numeric[idx] = (up - down) / 2e-6
        assert np.allclose(grad, numeric, rtol=1e-4, atol=1e-6), name


def test_generated_code_is_numpy_only_and_commented(tmp_path):
    spec = network("c", 4, [(5, "relu"), (3, "softmax")], loss="cross_entropy", samples="m")
    code = generate(spec)
    imports = [line for line in code.splitlines() if line.startswith(("import", "from"))]
    assert imports == ["import numpy as np"]
    assert "Delta2 = A2 - Y" in code and "#   Δ^2 = A^2 - Y" in code
    assert """grads['W1'] = ws.matmul("dL/dW1", Delta1, X.T); grads['W1'] *= (1.0 / m)""" in code
    compile(code, "model.py", "exec")


def test_softmax_hidden_layer_uses_the_jacobian_per_sample(tmp_path):
    spec = network("s", 3, [(4, "softmax"), (2, "sigmoid")], loss="binary_cross_entropy", samples="m")
    code = generate(spec)
    assert "np.sum(A1 * (W2.T @ Delta2), axis=0, keepdims=True)" in code
    statements = [line.split("#")[0] for line in code.splitlines() if not line.strip().startswith("#")]
    assert not any("diag" in line for line in statements)       # never an n x n Jacobian per sample


@pytest.mark.parametrize("layout", ["column", "row"])
def test_float32_stays_float32(tmp_path, layout):
    spec = network("f", 3, [(4, "tanh"), (2, "softmax")], loss="cross_entropy", samples="m")
    mod = module_for(spec, tmp_path, layout, "float32")
    params = mod.init_params()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 8) if layout == "column" else (8, 3)).astype(np.float32)
    Y = np.eye(2, dtype=np.float32)[:, rng.integers(0, 2, 8)]
    Y = Y if layout == "column" else Y.T
    grads = mod.gradients(params, X, Y)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert all(p.dtype == np.float32 for p in params.values())


def test_seed004_generated_code_trains_xor():
    from pathlib import Path

    from derive import load

    spec = load(Path(__file__).parent.parent / "examples" / "seed004_mlp_column.yaml")
    path = Path(__file__).parent / "_xor_model_tmp.py"
    try:
        path.write_text(generate(spec))
        assert train_xor(load_module(path), epochs=10_000, lr=0.5, seed=0) < 0.01
    finally:
        path.unlink(missing_ok=True)


def test_cli_codegen_writes_an_importable_module(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\ninput: 2\nlayers: [{units: 3, activation: tanh}, {units: 1, activation: sigmoid}]\n"
                    "loss: {kind: binary_cross_entropy, l2: lambda}\n")
    out = tmp_path / "model.py"
    proc = subprocess.run([sys.executable, "-m", "derive.cli", "codegen", str(spec), "-o", str(out),
                           "--layout", "row", "--dtype", "float32"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    mod = load_module(out)
    assert mod.SAMPLE_AXIS == 0 and mod.DTYPE == np.float32
    params = mod.init_params()
    X = np.ones((5, 2), np.float32)
    Y = np.ones((5, 1), np.float32) * 0.5
    assert set(mod.gradients(params, X, Y, l2=0.1)) == {"W1", "b1", "W2", "b2"}


def test_cli_codegen_generic_loss_is_a_clear_error(tmp_path):
    spec = tmp_path / "g.yaml"
    spec.write_text("name: g\ninput: 2\nlayers: [{units: 1}]\nloss: generic\n")
    proc = subprocess.run([sys.executable, "-m", "derive.cli", "codegen", str(spec), "-o", str(tmp_path / "m.py")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "generic" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.py").exists()


def test_workspace_is_reused_and_train_step_runs_one_forward_pass(tmp_path):
    spec = network("w", 6, [(5, "sigmoid"), (4, "relu"), (3, "softmax")], loss="cross_entropy", samples="m")
    mod = module_for(spec, tmp_path, "row")
    params = mod.init_params()
    rng = np.random.default_rng(1)
    X = rng.standard_normal((7, 6))
    Y = np.eye(3)[rng.integers(0, 3, 7)]
    workspace = mod.Workspace()
    first = mod.gradients(params, X, Y, workspace=workspace)
    arrays = {name: id(a) for name, a in workspace.arrays.items()}
    assert {"Z1", "A1", "Delta2", "dL/dW2"} <= set(arrays)
    second = mod.gradients(params, X, Y, workspace=workspace)
    assert {name: id(a) for name, a in workspace.arrays.items()} == arrays     # nothing new allocated
    assert second["W2"] is first["W2"]                                          # overwritten, as documented
    fresh = mod.gradients(params, X, Y)
    assert fresh["W2"] is not second["W2"] and np.array_equal(fresh["W2"], second["W2"])

    calls = []
    original = mod.forward
    mod.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    expected_loss = mod.loss(params, X, Y)
    calls.clear()
    before = {k: v.copy() for k, v in params.items()}
    value = mod.train_step(params, X, Y, 0.1, workspace=workspace)
    assert len(calls) == 1 and value == expected_loss
    for name in params:
        assert np.allclose(params[name], before[name] - 0.1 * fresh[name], rtol=1e-12, atol=1e-15)


def test_outputs_whose_delta_divides_by_the_output_are_refused_with_a_message():
    """softmax + binary cross-entropy has no derived form without 1/a and 1/(1 - a): NaN where an
    output reaches 0 or 1, so no code is generated for it."""
    spec = network("s", 3, [(3, "softmax")], loss="binary_cross_entropy", samples="m")
    with pytest.raises(DeriveError, match="division by the output"):
        generate(spec)


def test_sigmoid_with_cross_entropy_uses_the_cancelled_form():
    """-y/a * a (1 - a) = y (a - 1): the generated delta never divides by A, and it stays finite
    where an output underflows to 0."""
    spec = network("s", 2, [(2, "sigmoid")], loss="cross_entropy", samples="m")
    code = generate(spec)
    statements = [line.split("#")[0] for line in code.splitlines() if not line.strip().startswith("#")]
    assert not any("/ A" in s or "1.0 / (" in s for s in statements if "Delta" in s)
    assert any("Delta1 = Y * (A1 - " in s for s in statements)


@pytest.mark.parametrize("title", ['x""" ; import os; open("CANARY", "w") ; """', "back\\slash \\N{x} \\", "é σ ∂ 😀 \u202e",
                                   "line\nbreak\x07"])
def test_titles_never_run_or_break_the_generated_module(tmp_path, title, monkeypatch):
    """A spec's title reaches the module only through the Python-string escaping rule."""
    monkeypatch.chdir(tmp_path)
    spec = network("t", 2, [(2, "sigmoid")], loss="squared_error")
    from dataclasses import replace as replace_field

    code = generate(replace_field(spec, title=title))
    compile(code, "model.py", "exec")
    namespace = {}
    exec(compile(code, "model.py", "exec"), namespace)          # importing the module must not run the title
    assert not (tmp_path / "CANARY").exists()
    assert namespace["__doc__"].startswith(title)
