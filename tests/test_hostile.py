"""Every case of the bad-input corpus (tests/hostile/corpus.py) in a child process with a time limit
and a memory limit. For each: the exit code it names, one message on stderr and no traceback, no
file written outside the output folder (symlink traps included), no partial file, and no sign of
a payload (a PWNED file, the secret's text anywhere in the output)."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent / "hostile"))
from corpus import CASES, SECRET, Case  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TIME_LIMIT = 60            # seconds of wall time: a case still running is a hang
CPU_LIMIT = 60
MEMORY_LIMIT = 3 * 2 ** 30


def _limits():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_LIMIT, CPU_LIMIT))


def _prepare(folder: Path, case: Case) -> Path:
    (folder / "secret.txt").write_text(SECRET)
    (folder / "victim.txt").write_text("victim")
    out = folder / "out"
    out.mkdir()
    for name in ("net.tex", "net.pdf", "model.py", "net.py", "graph.tex", ".net.tex.part", ".net.pdf.part",
                 ".model.py.part", ".graph.tex.part"):
        (out / name).symlink_to(folder / "victim.txt")
    for name, content in case.files.items():
        path = folder / name
        if isinstance(content, tuple) and content[0] == "fifo":
            os.mkfifo(path)
        elif isinstance(content, tuple) and content[0] == "dir":
            path.mkdir()
        elif isinstance(content, tuple) and content[0] == "sparse":
            with open(path, "wb") as handle:
                handle.truncate(content[1])
        else:
            path.write_bytes(content.encode("utf-8", "surrogateescape"))
    return out


def _snapshot(folder: Path) -> dict:
    """Every path outside out/ with what it is: its bytes, or where a link points."""
    seen = {}
    for path in sorted(folder.rglob("*")):
        if path.is_relative_to(folder / "out") or path.is_fifo():
            continue
        if path.is_symlink():
            seen[path] = ("link", os.readlink(path))
        elif path.is_file():
            seen[path] = ("file", path.stat().st_size, path.read_bytes()[:4096] if path.stat().st_size < 2 ** 20 else b"")
        else:
            seen[path] = ("dir",)
    return seen


def run_case(case: Case, folder: Path) -> subprocess.CompletedProcess:
    out = _prepare(folder, case)
    before = _snapshot(folder)
    links = {p: os.readlink(p) for p in out.iterdir() if p.is_symlink()}
    if case.python:
        command = [sys.executable, "-c", case.python]
    else:
        command = [sys.executable, "-m", "derive.cli", *[a.replace("{out}", str(out)) for a in case.argv]]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder), "PYTHONPATH": str(ROOT),
           "LANG": "C.UTF-8"}
    try:
        proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, errors="replace",
                              timeout=TIME_LIMIT, preexec_fn=_limits, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case.id}: still running after {TIME_LIMIT} s (a hang)")
    where = f"{case.id}: exit {proc.returncode}\nstderr: {proc.stderr[-1500:]}"
    assert proc.returncode in case.exits, where
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, where
    messages = [line for line in proc.stderr.splitlines() if line.startswith(("derive: error", "Error:",
                                                                               "derive: internal"))]
    assert not any(line.startswith("derive: internal") for line in messages), where
    if proc.returncode != 0:      # one message: on stderr, or the verdict/report on stdout
        assert len(messages) == 1 or (not messages and proc.stdout.strip()), where
    assert _snapshot(folder) == before, f"{case.id}: a file outside the output folder changed"
    assert (folder / "victim.txt").read_text() == "victim", f"{case.id}: written through a symlink"
    for link, target in links.items():
        assert not link.exists() or not link.is_symlink() or os.readlink(link) == target
    assert not list(folder.rglob("PWNED")), f"{case.id}: a payload ran"
    assert not [p for p in out.rglob("*.part") if p not in links], f"{case.id}: a partial file was left"
    for path in out.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert SECRET.encode() not in path.read_bytes(), f"{case.id}: the secret reached {path.name}"
    assert SECRET not in proc.stdout + proc.stderr, f"{case.id}: the secret was printed"
    return proc


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_case(case, tmp_path):
    run_case(case, tmp_path)


def test_the_corpus_is_large_and_covers_every_entry_point():
    assert len(CASES) >= 150
    commands = {c.argv[0] for c in CASES if c.argv} | ({"library"} if any(c.python for c in CASES) else set())
    assert {"check", "build", "codegen", "verify", "graph", "demo", "library"} <= commands


# ------------------------------------------------------------------------ fuzzing

YAML_PIECES = st.sampled_from(["name: x", "input: 2", "input: n_0", "layers: [{units: 2}]", "layers: []",
                               "loss: {kind: squared_error, l2: lam}", "samples: m", "samples: -1", "title: 'a\\b'",
                               "symbols: {weights: theta}", "notation: ng", "loss: [1]", "layers: [{units: 1e9}]",
                               "!!python/object:os.system", "&a [*a]", "{", "]", "'", "\t", "- x"])


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(YAML_PIECES, min_size=1, max_size=8), st.sampled_from(["check", "build", "codegen"]))
def test_fuzzed_specs_keep_the_four_promises(tmp_path_factory, pieces, command):
    argv = {"check": ("check", "spec.yaml"), "build": ("build", "spec.yaml", "-o", "{out}"),
            "codegen": ("codegen", "spec.yaml", "-o", "{out}/m.py")}[command]
    run_case(Case("fuzz-spec", argv, {"spec.yaml": "\n".join(pieces) + "\n"}, exits=(0, 1, 2)),
             tmp_path_factory.mktemp("fuzz"))


CLAIM_PIECES = st.sampled_from(["\\delta^{2}", "(a^{1})^{T}", "\\odot", "+", "-", "\\frac{", "}{", "}", "(", ")",
                                "\\sum_{i=1}^{9999}", "e^{", "\\log(", "0", "W^{2}", "^T", "\\input{secret.txt}",
                                "__import__", "\\sigma'(z^{1})", "[j = k]", "x_{1}", "\\mathbf{1}"])


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(CLAIM_PIECES, min_size=1, max_size=12))
def test_fuzzed_claims_keep_the_four_promises(tmp_path_factory, pieces):
    good = "name: net\ninput: 2\nlayers: [{units: 3, activation: tanh}, {units: 1, activation: sigmoid}]\n"
    run_case(Case("fuzz-claim", ("verify", "good.yaml", "--param", "W2", "--claim", " ".join(pieces)),
                  {"good.yaml": good}, exits=(0, 1, 2)), tmp_path_factory.mktemp("fuzz"))


EXPR_PIECES = st.sampled_from(["x", "y", "+", "-", "*", "/", "^", "(", ")", "exp(", "log(", "sqrt(", "0", "2",
                               "1e308", "\\frac{", "}{", "}", "max(", ",", "sigmoid(", "__import__"])


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(EXPR_PIECES, min_size=1, max_size=14), st.sampled_from(["0", "1", "-3", "1e-300"]))
def test_fuzzed_expressions_keep_the_four_promises(tmp_path_factory, pieces, value):
    run_case(Case("fuzz-graph", ("graph", "".join(pieces), "--at", f"x={value}", "--at", f"y={value}", "--json"),
                  exits=(0, 2)), tmp_path_factory.mktemp("fuzz"))


@pytest.mark.pdf
@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_a_build_stopped_by_a_signal_leaves_no_temporary_folder_and_no_partial_file(tmp_path, signum):
    import shutil
    import signal
    import time

    if shutil.which("latexmk") is None:
        pytest.skip("needs latexmk")
    temp, out = tmp_path / "tmp", tmp_path / "out"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "derive.cli", "build", str(ROOT / "examples" / "three_layers.yaml"),
                             "-o", str(out), "--pdf", "--lang", "zh"], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(temp.glob("derive-tex-*")) and proc.poll() is None:
        time.sleep(0.05)                 # wait until TeX is running in its temporary folder
    assert list(temp.glob("derive-tex-*")), "TeX never started"
    proc.send_signal(getattr(signal, signum))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in stderr, stderr
    assert not list(temp.glob("derive-tex-*")), "the temporary TeX folder survived the signal"
    assert not list(out.glob("*")) if out.exists() else True      # nothing half-written, nothing at all


def test_concurrent_builds_into_one_folder_never_collide(tmp_path):
    """Four builds of the same spec into one folder at once: all succeed, no staging file is left, and
    the document is whole (its last line is the end of the document)."""
    spec = ROOT / "examples" / "seed004_mlp_column.yaml"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "derive.cli", "build", str(spec), "-o", str(tmp_path)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert all(code == 0 for _, _, code in results), results
    assert not list(tmp_path.glob(".*part"))
    assert (tmp_path / "seed004_mlp_column.tex").read_text().rstrip().endswith(r"\end{document}")
