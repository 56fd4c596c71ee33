"""The wheel as a user gets it: built from the checkout, installed into a fresh virtual environment,
run from a folder outside the checkout. No network: the new environment borrows the dependencies
already installed for the tests, and derive itself must come from the wheel."""
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, capture_output=True, timeout=300)
    (found,) = out.glob("derive-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    with zipfile.ZipFile(wheel) as archive:         # installing a wheel is unpacking it into site-packages
        archive.extractall(purelib)
    # the dependencies (sympy, numpy, ...) from the test environment; a path added by a .pth file is not
    # a site folder, so the editable install of the checkout found there is not picked up
    Path(purelib, "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    launcher = env_dir / "bin" / "derive"
    # as pip writes console scripts: guarded, since the web server's worker processes import __main__
    launcher.write_text(f"#!{python}\nimport sys\nfrom derive.cli import main\n"
                        f"if __name__ == '__main__':\n    sys.exit(main())\n")
    launcher.chmod(0o755)
    return env_dir


def run(env_dir: Path, *args, cwd: Path, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    return subprocess.run([str(env_dir / "bin" / "derive"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_the_wheel_holds_every_module_template_and_example(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"derive/{p.relative_to(ROOT / 'derive')}" for p in (ROOT / "derive").rglob("*.py")}
    expected |= {f"derive/templates/{p.relative_to(ROOT / 'templates')}" for p in (ROOT / "templates").rglob("*.j2")}
    expected |= {f"derive/templates/web/{p.name}" for p in (ROOT / "templates" / "web").glob("*.*")}
    expected |= {f"derive/examples/{p.name}" for p in (ROOT / "examples").glob("*.yaml")}
    assert expected - names == set()
    metadata = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License" in text and "Classifier: Topic :: Education" in text and "Requires-Dist: sympy" in text


def test_the_installed_wheel_runs_from_another_folder(installed, tmp_path):
    where = run(installed, "--version", cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    origin = subprocess.run([str(installed / "bin" / "python"), "-c", "import derive; print(derive.__file__)"],
                            cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert origin.startswith(str(installed)), origin            # derive from the wheel, not the checkout
    listed = run(installed, "examples", cwd=tmp_path)
    assert listed.returncode == 0 and "seed004_mlp_column" in listed.stdout
    code = run(installed, "codegen", "seed004_mlp_column", "-o", "model.py", cwd=tmp_path)
    assert code.returncode == 0, code.stderr
    import_it = subprocess.run([str(installed / "bin" / "python"), "-c", "import model"], cwd=tmp_path,
                               capture_output=True, text=True)
    assert import_it.returncode == 0, import_it.stderr
    built = run(installed, "build", "classifier", "-o", "out", cwd=tmp_path)
    assert built.returncode == 0 and (tmp_path / "out" / "classifier.tex").is_file(), built.stderr


def test_the_installed_wheel_serves_the_page(installed, tmp_path):
    """derive serve from the wheel: the page, its script and a claim judged by a worker."""
    import json
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    server = subprocess.Popen([str(installed / "bin" / "derive"), "serve", "--port", str(port), "--workers", "1"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.2)
        page = urllib.request.urlopen(base + "/?lang=zh", timeout=10).read().decode()
        assert "检查我的推导" in page
        assert b"derive serve" in urllib.request.urlopen(base + "/static/app.js", timeout=10).read()
        claim = json.dumps({"example": "seed004_mlp_column", "param": "W2", "claim": "\\delta^{2} (a^{1})^{T}"})
        request = urllib.request.Request(base + "/api/verify", claim.encode(), {"content-type": "application/json"})
        assert json.loads(urllib.request.urlopen(request, timeout=60).read())["verdict"] == "correct"
    finally:
        server.terminate()
        server.wait(20)


@pytest.mark.pdf
def test_the_installed_wheel_runs_the_demo_with_pdfs(installed, tmp_path):
    demo = run(installed, "demo", "-o", "out", cwd=tmp_path, timeout=900)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert len(list((tmp_path / "out").glob("*.pdf"))) >= 14
