"""The library as a notebook user meets it: short reprs, the version, helpful names."""
import pytest

import derive as package
from derive import check, derive, load
from derive.errors import DeriveError


def test_version_and_the_public_names():
    assert package.__version__ and package.__version__ != "0+unknown"
    assert {"derive", "check", "load", "network", "__version__"} <= set(package.__all__)


def test_reprs_are_short_and_say_what_matters():
    result = derive(load("seed001_ng_cross_entropy"))
    text = repr(result)
    assert len(text) < 300 and "seed001_ng_cross_entropy" in text and "W1" in text and "ng notation" in text
    report = check(result)
    assert repr(report).startswith("<CheckReport passed:") and len(repr(report)) < 120
    html = report._repr_html_()
    assert "<table>" in html and html.count("<tr>") == len(report.gradients) + 1


def test_gradient_takes_the_notations_names_and_says_what_it_accepts():
    result = derive(load("seed001_ng_cross_entropy"))
    assert result.gradient("Theta2") == result.gradient("W2")
    with pytest.raises(DeriveError, match="parameters are W1, b1, W2, b2"):
        result.gradient("w7")
    with pytest.raises(DeriveError, match="parameters are"):
        result.gradient("nonsense")


# ----------------------------------------------------------------- printing in the notation
def test_gradients_print_in_the_notation_never_with_internal_names():
    import derive as package

    for name in ("seed001_ng_cross_entropy", "seed004_mlp_column", "seed004_mlp_rowvec", "seed003_rashid_summation"):
        result = derive(load(name))
        for parameter in result.parameters:
            g = result.gradient(parameter)
            shown = g._repr_latex_() + repr(g) + str(g) + package.latex(g) + package.latex(result)
            assert "Mdelta" not in shown and "Ma_" not in shown and "MW" not in shown, shown
    ng = derive(load("seed001_ng_cross_entropy"))
    assert package.latex(ng.gradient("Theta2")) == r"\frac{1}{m} \boldsymbol{\delta}^{(3)} \left(A^{(2)}\right)^{T}"
    col = derive(load("seed004_mlp_column"))
    assert package.latex(col.gradient("W1")) == r"\delta^{1} x^{T}"
    assert package.latex(col.get("weight", 1, "matrix").result, result=col) == \
        r"\frac{\partial L}{\partial W^{1}} = \delta^{1} x^{T}"


def test_latex_renames_only_where_the_layout_allows_it():
    import derive as package

    ng = derive(load("seed001_ng_cross_entropy"))            # to-from, column: nielsen's names fit
    assert "Theta" not in package.latex(ng.gradient("W1"), notation="nielsen")
    with pytest.raises(DeriveError, match="row"):
        package.latex(ng.gradient("W1"), notation="rowvec")
    with pytest.raises(DeriveError, match="accepted"):
        package.latex(ng.gradient("W1"), notation="klingon")


def test_the_notebook_view_shows_network_forward_pass_gradients_and_justifications():
    result = derive(load("seed004_mlp_column"))
    md = result._repr_markdown_()
    assert "| layer | units | activation | bias |" in md and r"\sigma" in md
    assert r"z^{1} &=" in md and r"\frac{\partial L}{\partial W^{1}} &= \delta^{1} x^{T}" in md
    steps = result.get("weight", 1, "index")._repr_markdown_()
    assert "Chain rule" in steps and "$$" in steps and "\\intertext" not in steps
    assert steps.count("$$") == 2 * len(result.get("weight", 1, "index").steps)


# ----------------------------------------------------------------- numbers
from test_property import networks  # noqa: E402  (the random networks of the property tests)
from hypothesis import HealthCheck, given, settings  # noqa: E402


def _oracle_in_document_layout(result, inst):
    out = {}
    for name in result.parameters:
        kind, layer = name[0], int(name[1:])
        g = inst.grad(kind, layer)
        out[name] = g.reshape(-1) if kind == "b" else (g if result.quantities.layout == "column" else g.T)
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(networks())
def test_evaluate_and_gradient_function_agree_with_the_oracle(spec):
    """The derived formulas evaluated (result.evaluate) and compiled (gradient_function), both in the
    document's layout, against the oracle's finite-difference chain at the same numbers."""
    from derive.numeric import gradient_function, random_point
    from derive.oracle import make_instance

    if spec.loss.kind == "generic":
        return
    result = derive(spec)
    point = random_point(result, seed=5)
    truth = _oracle_in_document_layout(result, make_instance(result.quantities, seed=5))
    got = result.evaluate(point["parameters"], point["x"], point["y"], point["constants"])
    compiled = gradient_function(result)(point["parameters"], point["x"], point["y"], point["constants"])
    for name in result.parameters:
        scale = max(1.0, float(abs(truth[name]).max()))
        assert got[name].shape == truth[name].shape == compiled[name].shape, name
        assert abs(got[name] - truth[name]).max() <= 1e-6 * scale, (name, got[name], truth[name])
        assert abs(compiled[name] - got[name]).max() <= 1e-9 * scale, name


def test_evaluate_says_what_is_wrong_with_its_arguments():
    from derive.numeric import random_point

    result = derive(load("seed004_mlp_column"))
    point = random_point(result)
    params = dict(point["parameters"])
    with pytest.raises(DeriveError, match="no value for b2"):
        result.evaluate({k: v for k, v in params.items() if k != "b2"}, point["x"], point["y"])
    with pytest.raises(DeriveError, match="W1 has the shape"):
        result.evaluate({**params, "W1": params["W1"].T}, point["x"], point["y"])
    with pytest.raises(DeriveError, match="one sample"):
        result.evaluate(params, [[1, 2], [3, 4]], point["y"])
    with pytest.raises(DeriveError, match="parameters are W1, b1, W2, b2"):
        result.evaluate({**params, "W9": params["W1"]}, point["x"], point["y"])
    classifier = derive(load("classifier"))
    p = random_point(classifier)
    with pytest.raises(DeriveError, match="needs a value"):
        classifier.evaluate(p["parameters"], p["x"], p["y"])


def test_the_generated_code_says_which_layout_it_uses_and_it_is_true():
    """A from-to spec's W^1 is (units before x units after); codegen's column layout stores the
    transpose and says so; gradient_function hands back the document's layout."""
    from derive import network
    from derive.codegen import generate
    from derive.numeric import gradient_function, random_point

    spec = network("ft", 3, [(2, "sigmoid"), (1, "sigmoid")], loss="binary_cross_entropy", notation="fromto")
    source = generate(spec, layout="column")
    assert "TRANSPOSE" in source and "(n_l, n_{l-1})" in source
    result = derive(spec)
    point = random_point(result)
    f = gradient_function(result)
    params = {k: (v.T if k.startswith("W") else v.reshape(-1, 1)) for k, v in point["parameters"].items()}
    code = f.module.gradients(params, point["x"].reshape(-1, 1), point["y"].reshape(-1, 1))
    doc = result.evaluate(point["parameters"], point["x"], point["y"])
    assert point["parameters"]["W1"].shape == (3, 2) and code["W1"].shape == (2, 3)
    assert abs(code["W1"].T - doc["W1"]).max() < 1e-12
    assert "document's W^1 as the nielsen" in generate(network("n", 3, [(2, "sigmoid")], loss="squared_error"))
    ng = generate(load("seed001_ng_cross_entropy"))
    assert 'np.hstack([params["b1"], params["W1"]])' in ng


def test_dir_lists_the_api():
    import derive as package

    listed = dir(package)
    for name in ("derive", "check", "latex", "markdown", "evaluate", "gradient_function", "Gradient", "load",
                 "network", "__version__"):
        assert name in listed and getattr(package, name) is not None


def test_gradient_function_runs_no_text_from_the_spec(tmp_path, monkeypatch):
    """The one place derive runs code is generated code; a title written to break out of its
    docstring stays text in it."""
    from derive import network
    from derive.numeric import gradient_function

    monkeypatch.chdir(tmp_path)
    title = 'x""" ; import os; os.system("touch PWNED") ; """ \\\'\'\' ; open("PWNED2", "w")'
    f = gradient_function(network("t", 2, [(1, "sigmoid")], loss="squared_error", title=title))
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "PWNED2").exists()
    assert 'os.system("touch PWNED")' in f.module.__doc__
