"""End to end: the `derive` command as a user runs it."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from derive import cli

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


def run(*args):
    return subprocess.run([sys.executable, "-m", "derive.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_checks_out(path):
    proc = run("check", str(path), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert set(report) >= {"passed", "parameters", "steps_checked", "steps_failed"}
    assert report["passed"] is True and report["steps_failed"] == 0 and report["steps_checked"] > 20
    for stats in report["parameters"].values():
        assert set(stats) >= {"max_abs_error", "max_rel_error", "worst_entry"}
        assert stats["max_abs_error"] < 1e-5


def test_human_report_lists_parameters():
    proc = run("check", str(EXAMPLES[0].parent / "three_layers.yaml"))
    assert proc.returncode == 0
    assert "W1" in proc.stdout and "passed" in proc.stdout


def test_failing_derivation_exits_1(monkeypatch, tmp_path):
    """A planted wrong result (missing transpose) must give exit code 1 and name the step."""
    import dataclasses

    from sympy import MatMul, Transpose

    from derive import engine
    from derive.steps import Derivation

    real = engine.derive

    def broken(spec, levels=None):
        result = real(spec, levels)
        q = result.quantities
        out = []
        for d in result.derivations:
            if d.key == "weight2:matrix":
                wrong = dataclasses.replace(d.steps[-1], rhs=MatMul(q.matrix("delta", 2), Transpose(q.matrix("delta", 2))) )
                d = Derivation(d.topic, d.layer, d.level, d.steps[:-1] + (wrong,))
            out.append(d)
        return dataclasses.replace(result, derivations=tuple(out))

    monkeypatch.setattr(engine, "derive", broken)
    spec = tmp_path / "sq.yaml"
    spec.write_text("name: sq\ninput: 2\nlayers: [{units: 2, activation: tanh}, {units: 2, activation: tanh}]\n")
    result = CliRunner().invoke(cli.main, ["check", str(spec), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["passed"] is False
    assert any(f["derivation"] == "weight2:matrix" for f in report["failures"])


@pytest.mark.parametrize("args,needle", [
    (("check", "missing.yaml"), "cannot read it"),
    (("check", "--trials", "0", "x.yaml"), "trials"),
])
def test_bad_input_exit_2_without_traceback(args, needle):
    proc = run(*args)
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr


def test_too_large_to_check_is_a_clear_error(tmp_path):
    spec = tmp_path / "big.yaml"
    spec.write_text("name: big\ninput: 1500\nlayers: [{units: 1500, activation: tanh}]\n")
    proc = run("check", str(spec))
    assert proc.returncode == 2 and "too many" in proc.stderr and "Traceback" not in proc.stderr


def test_help_is_quick_and_lists_check():
    proc = run("--help")
    assert proc.returncode == 0 and "check" in proc.stdout


def test_readme_library_example_runs_in_a_fresh_interpreter():
    code = ("from derive import network, derive, check\n"
            "r = derive(network('xor', 2, [(4, 'sigmoid'), (1, 'sigmoid')]))\n"
            "rep = check(r)\n"
            "print(r.gradient('W1'), rep.passed, len(rep.steps), rep.steps_failed)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == r"\frac{\partial L}{\partial W^{1}} = \delta^{1} x^{T} True 101 0"     # the notation's names


def test_build_reports_its_checks_and_answers_in_json(tmp_path):
    proc = run("build", "seed004_mlp_column", "-o", str(tmp_path))
    assert proc.returncode == 0 and proc.stdout.strip() == str(tmp_path / "seed004_mlp_column.tex")
    assert "steps checked, 0 failed" in proc.stderr and "read back" in proc.stderr
    data = json.loads(run("build", "classifier", "three_layers", "-o", str(tmp_path), "--json").stdout)
    assert data["passed"] is True and [d["spec"] for d in data["documents"]] == ["classifier", "three_layers"]
    assert all(Path(d["tex"]).is_file() and d["pdf"] is None and "0 failed" in d["checks"] for d in data["documents"])


def test_examples_are_listed_shown_copied_and_taken_by_name(tmp_path):
    listed = run("examples")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == len(EXAMPLES)
    shown = run("examples", "show", "classifier")
    assert shown.stdout == (Path(__file__).parent.parent / "examples" / "classifier.yaml").read_text()
    target = tmp_path / "mine.yaml"
    assert run("examples", "copy", "classifier", str(target)).returncode == 0 and target.read_text() == shown.stdout
    again = run("examples", "copy", "classifier", str(target))
    assert again.returncode == 2 and "exists" in again.stderr and target.read_text() == shown.stdout
    unknown = run("examples", "show", "nope")
    assert unknown.returncode == 2 and "seed004_mlp_column" in unknown.stderr and "Traceback" not in unknown.stderr
