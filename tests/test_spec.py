"""Validation: one clear message naming the field, the bad value and what is accepted."""
import subprocess
import sys

import pytest

from derive import SpecError, load, network

GOOD = """
name: t
input: 2
layers:
  - {units: 3, activation: tanh}
  - {units: 1, activation: sigmoid}
loss: {kind: squared_error, scale: 1/2}
"""

BAD = [
    ("name: t\ninput: 2\nlayers: [{units: 2, activation: sigmoid}\n", "YAML", "well-formed YAML"),
    (GOOD + "colour: red\n", "colour", "accepted fields"),
    (GOOD.replace("tanh", "swish"), "layers[1].activation", "relu"),
    (GOOD.replace("squared_error", "kullback_leibler"), "loss.kind", "cross_entropy"),
    (GOOD.replace("squared_error", "hinge"), "loss.kind", "identity"),      # a newer loss: it needs logits
    (GOOD.replace("units: 3", "units: 0"), "layers[1].units", "positive integer"),
    (GOOD.replace("units: 3", "units: 2.5"), "layers[1].units", "positive integer"),
    (GOOD.replace("units: 3", "units: -4"), "layers[1].units", "positive integer"),
    ("name: t\ninput: 2\nlayers: []\n", "layers", "non-empty list"),
    (GOOD.replace("{units: 1, activation: sigmoid}", "{units: 1, activation: softmax}"), "layers[2].units", "at least 2"),
    (GOOD.replace("scale: 1/2", "scale: -1"), "loss.scale", "positive number"),
    (GOOD.replace("scale: 1/2", "scale: abc"), "loss.scale", "positive number"),
    (GOOD.replace("squared_error", "binary_cross_entropy").replace("activation: sigmoid", "activation: tanh"),
     "loss.kind", "sigmoid or softmax"),
    (GOOD + "samples: 0\n", "samples", "positive integer"),
    (GOOD + "notation: leibniz\n", "notation", "nielsen"),
    (GOOD.replace("{units: 3, activation: tanh}", "{units: 3, activation: tanh, dropuot: 0.5}"), "layers[1].dropuot", "units"),
    ("- just\n- a list\n", "spec", "mapping"),
    (GOOD.replace("name: t", "name: ../etc"), "name", "letters"),
    (GOOD.replace("input: 2", "input: __import__('os')"), "input", "symbol name"),
]


@pytest.mark.parametrize("text,field,accepted", BAD)
def test_bad_specs_name_field_and_accepted(tmp_path, text, field, accepted):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load(path)
    message = str(info.value)
    assert field in message and accepted in message


def test_good_spec_loads(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    spec = load(path)
    assert spec.sizes == (2, 3, 1) and spec.layers[0].activation == "tanh" and str(spec.loss.scale) == "1/2"


def test_python_api_equals_yaml(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    api = network("t", 2, [(3, "tanh"), (1, "sigmoid")], loss={"kind": "squared_error", "scale": "1/2"})
    assert api == load(path)


def test_symbolic_sizes_are_kept():
    spec = network("s", "n_0", [("n_1", "relu"), ("n_2", "softmax")], loss="cross_entropy", samples="m")
    assert spec.sizes == ("n_0", "n_1", "n_2") and spec.samples == "m" and not spec.is_concrete


@pytest.mark.parametrize("text,field,accepted", BAD[:4])
def test_cli_bad_spec_exit_2_without_traceback(tmp_path, text, field, accepted):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "derive.cli", "check", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and field in proc.stderr
