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
