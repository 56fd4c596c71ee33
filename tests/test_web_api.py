"""derive serve's HTTP API, end to end through the ASGI app and real worker processes: every
endpoint, what it mirrors of the command line, and bad input of every kind (malformed YAML, 1 MB
bodies, hostile LaTeX, expressions that explode, requests past the time and memory limits)."""
import ast
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from derive.resources import example_names  # noqa: E402
from derive.web.app import MAX_BODY_BYTES, create_app  # noqa: E402
from derive.web.pool import LimitExceeded, Limits, Pool  # noqa: E402

CORPUS = Path(__file__).parent / "verify_corpus"
TIME_LIMIT = 6.0
# A check that takes about 30 s on a 2-core machine: 300 x 300 x 300 sigmoid layers.
SLOW_SPEC = "name: wide\ninput: 300\nlayers: [{units: 300, activation: sigmoid}, {units: 300, activation: sigmoid}]\n"


@pytest.fixture(scope="module")
def client():
    app = create_app(workers=2, limits=Limits(seconds=TIME_LIMIT, memory_mb=2048))
    with TestClient(app) as c:
        c.pool = app.state.pool
        yield c


def _cli_json(*args) -> dict:
    done = subprocess.run([sys.executable, "-m", "derive.cli", *args], capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout)


# ----------------------------------------------------------------------------- the page
def test_page_has_no_inline_script_and_a_strict_csp(client):
    r = client.get("/?lang=en")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    for tag in re.findall(r"<script[^>]*>", r.text):
        assert 'src="/static/' in tag or 'type="application/json"' in tag, tag
    assert "<style" not in r.text and " style=" not in r.text
    assert "Check my derivation" in r.text
    for name in example_names():                      # dense chains and the newer layers alike
        assert f'value="{name}"' in r.text


def test_page_speaks_chinese(client):
    by_query = client.get("/?lang=zh").text
    by_header = client.get("/", headers={"accept-language": "zh-CN,zh;q=0.9"}).text
    for page in (by_query, by_header):
        assert 'lang="zh-CN"' in page and "检查我的推导" in page and "Check my derivation" not in page


def test_static_files_come_from_a_fixed_table(client):
    js = client.get("/static/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/app.css").status_code == 200
    for path in ("/static/page.html.j2", "/static/..%2F..%2Fpyproject.toml", "/static/%2e%2e/app.js"):
        assert client.get(path).status_code == 404, path


def test_openapi_describes_the_api(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/verify", "/api/check", "/api/graph", "/api/build", "/api/download", "/api/spec",
                 "/api/preview", "/api/examples"):
        assert path in paths, path
    assert client.get("/docs").status_code == 404          # Swagger's page would load script from a CDN


def test_examples(client):
    listed = client.get("/api/examples").json()
    assert [e["name"] for e in listed] == list(example_names())
    one = client.get("/api/examples/seed004_mlp_column").json()
    assert "sigmoid" in one["spec"]
    missing = client.get("/api/examples/passwd")
    assert missing.status_code == 404 and "accepted" in missing.json()["error"]
    outside = client.get("/api/examples/..%2F..%2Fetc%2Fpasswd")
    assert outside.status_code == 404 and "openapi" in outside.json()["error"]


# ----------------------------------------------------------------------------- spec
def test_spec_is_validated_with_the_clis_messages(client, tmp_path):
    good = client.post("/api/spec", json={"example": "seed004_mlp_column"}).json()
    assert good["valid"] and good["sizes"] == ["2", "4", "1"] and good["parameters"] == ["W1", "b1", "W2", "b2"]
    bad = "name: x\ninput: 2\nlayers: [{units: 3, activation: sigmoid}\n"      # unclosed bracket
    r = client.post("/api/spec", json={"spec": bad})
    assert r.status_code == 400
    (tmp_path / "spec").write_text(bad)
    cli = subprocess.run([sys.executable, "-m", "derive.cli", "check", "spec"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 2
    assert r.json()["error"] in cli.stderr            # the same words as the command line
    assert "line" in r.json()["error"]
    unknown = client.post("/api/spec", json={"spec": "name: x\ninput: 2\nlayers: [{units: 3, activation: swish}]"})
    assert unknown.status_code == 400 and "sigmoid" in unknown.json()["error"]


def test_a_spec_source_is_an_example_or_yaml_never_a_path(client):
    r = client.post("/api/spec", json={"example": "/etc/passwd"})
    assert r.status_code == 400 and "not a built-in example" in r.json()["error"]
    both = client.post("/api/spec", json={"example": "seed004_mlp_column", "spec": "x"})
    assert both.status_code == 400 and "either" in both.json()["error"]


# ----------------------------------------------------------------------------- verify
def _corpus(name):
    return yaml.safe_load((CORPUS / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", _corpus("derivations.yaml"), ids=lambda c: c["file"])
def test_verify_derivations_of_the_corpus(client, case):
    text = (CORPUS / "derivations" / f"{case['file']}.tex").read_text(encoding="utf-8")
    r = client.post("/api/verify", json={"example": case["example"], "derivation": text})
    assert r.status_code == 200
    out = r.json()
    assert out["verdict"] == case["verdict"]
    assert out["first_wrong_line"] == case.get("line")
    if case.get("diagnosis"):
        assert case["diagnosis"] in out["diagnosis"]
    lines = out["display"]["lines"]
    assert all(line["mathml"] and line["mathml"].startswith("<math") for line in lines)
    marked = [line["line"] for line in lines if line["wrong"]]
    assert marked == ([case["line"]] if case.get("line") else [])


def test_verify_mirrors_the_command_line(client, tmp_path):
    path = CORPUS / "derivations" / "col_w1_missing_transpose.tex"
    web = client.post("/api/verify", json={"example": "seed004_mlp_column",
                                           "derivation": path.read_text(encoding="utf-8")}).json()
    cli = _cli_json("verify", "seed004_mlp_column", "--derivation", str(path), "--json")
    assert {k: v for k, v in web.items() if k != "display"} == cli
    claim = r"\delta^{2} a^{1}"
    web = client.post("/api/verify", json={"example": "seed004_mlp_column", "param": "W2", "claim": claim}).json()
    cli = _cli_json("verify", "seed004_mlp_column", "--param", "W2", "--claim", claim, "--json")
    assert {k: v for k, v in web.items() if k != "display"} == cli


def test_verify_shows_a_corrected_line_that_reads_back(client):
    from derive.engine import derive
    from derive.spec import loads
    from derive.resources import example_text
    from derive.verify import verify_claim

    out = client.post("/api/verify", json={"example": "seed004_mlp_column", "param": "W2",
                                           "claim": r"a^{1} \delta^{2}"}).json()
    assert out["verdict"] != "correct"
    fix = out["display"]["fix"]
    assert fix and out["display"]["fix_mathml"].startswith("<math")
    result = derive(loads(example_text("seed004_mlp_column")), levels=("matrix",))
    assert verify_claim(result, "W2", fix).verdict == "correct"       # the line shown, as printed, is right
    assert out["display"]["lines"][0]["wrong"]


def test_verify_claim_errors(client):
    no_param = client.post("/api/verify", json={"example": "seed004_mlp_column", "claim": "x"})
    assert no_param.status_code == 400 and "param" in no_param.json()["error"]
    unreadable = client.post("/api/verify", json={"example": "seed004_mlp_column", "param": "W2",
                                                  "claim": r"\delta^{2} (a^{1}"}).json()
    assert unreadable["verdict"] == "unparseable" and "column" in unreadable["diagnosis"]


# ----------------------------------------------------------------------------- check, graph, build
def test_check_mirrors_the_command_line(client):
    web = client.post("/api/check", json={"example": "seed003_rashid_summation"}).json()
    cli = _cli_json("check", "seed003_rashid_summation", "--json")
    assert web["passed"] and web["steps_failed"] == 0
    assert web["steps_checked"] == cli["steps_checked"] and set(web["parameters"]) == set(cli["parameters"])


def test_graph_of_the_notes_figure(client):
    out = client.post("/api/graph", json={"expression": "(x + y) * z", "at": {"x": -2, "y": 5, "z": -4}}).json()
    assert out["output"]["value"] == -12
    assert {k: v["grad"] for k, v in out["inputs"].items()} == {"x": -4, "y": -4, "z": 3}
    svg = out["svg"]
    assert svg.startswith("<svg") and svg.count("<circle") == 2 and svg.count("<rect") == 3
    assert "<script" not in svg and " on" not in re.sub(r'"[^"]*"', '""', svg)
    assert [r["grad"] for r in out["rows"]] == ["-4", "-4", "-4", "3", "1"]
    assert out["check_error"] < 1e-9


def test_graph_errors_name_what_is_wrong(client):
    missing = client.post("/api/graph", json={"expression": "x * y", "at": {"x": 1}})
    assert missing.status_code == 400
    assert missing.json()["error"] == "no value for y (give each as NAME=NUMBER)"     # the page's words, not --at
    extra = client.post("/api/graph", json={"expression": "x", "at": {"x": 1, "q": 2}}).json()["error"]
    assert extra == "q=2: the expression has no variable q; its variables are x"
    deep = client.post("/api/graph", json={"expression": "(" * 500 + "x" + ")" * 500, "at": {"x": 1}})
    assert deep.status_code == 400 and "nested" in deep.json()["error"]
    many = client.post("/api/graph", json={"expression": "*".join(["(x+y)"] * 300), "at": {"x": 1, "y": 2}})
    assert many.status_code == 400 and "too many" in many.json()["error"]


def test_build_gives_the_document_as_mathml_and_its_checks(client):
    out = client.post("/api/build", json={"example": "seed004_mlp_column", "lang": "zh"}).json()
    assert out["passed"] and out["checks"]["steps_failed"] == 0 and out["checks"]["gradients_match"]
    assert out["checks"]["printed"] == out["checks"]["correct"] > 50
    assert out["html"].count("<math") > 50 and "<script" not in out["html"] and "merror" not in out["html"]
    assert "反向传播" in out["html"] and "derive-general" not in out["html"]


def test_the_newer_layers_on_the_page(client):
    """A recurrent, an attention and a convolutional network: derived (every printed line read back),
    checked, verified and downloaded through the API, as the command line does them."""
    built = client.post("/api/build", json={"example": "attention_block", "lang": "zh"}).json()
    assert built["passed"] and built["checks"]["printed"] == built["checks"]["correct"] > 100
    assert built["html"].count("<math") > 100 and "merror" not in built["html"] and "<script" not in built["html"]
    checked = client.post("/api/check", json={"example": "conv_5x5"}).json()
    assert checked == _cli_json("check", "conv_5x5", "--json")
    right = client.post("/api/verify", json={"example": "rnn_bptt", "param": "U1",
                                             "claim": r"\Delta^{1} N (A^{1})^T"}).json()
    assert right["verdict"] == "correct" and right["display"]["lines"][0]["mathml"]
    wrong = client.post("/api/verify", json={"example": "batchnorm_mlp", "derivation":
                                             "\\frac{\\partial L}{\\partial W^{3}} = \\Delta^{3} (A^{2})^T\n"
                                             "= \\Delta^{3} A^{2}\n"}).json()
    assert wrong["verdict"] == "incorrect" and wrong["first_wrong_line"] == 2
    assert [line["wrong"] for line in wrong["display"]["lines"]] == [False, True]
    assert wrong["display"]["fix"] == r"\Delta^{3} \left(A^{2}\right)^{T}" and "<math" in wrong["display"]["fix_mathml"]
    code = client.post("/api/download", json={"example": "small_cnn", "kind": "py"})
    assert code.status_code == 200
    ast.parse(code.content.decode("utf-8"))
    brief = client.post("/api/build", json={"example": "attention_block", "detail": "brief"}).json()
    assert brief["passed"] and 0 < brief["checks"]["correct"] == brief["checks"]["printed"] < built["checks"]["printed"]


def test_build_escapes_a_hostile_title(client):
    spec = ("name: hostile\ntitle: '<img src=x onerror=alert(1)> <script>alert(2)</script>'\n"
            "input: 2\nlayers: [{units: 1, activation: sigmoid}]\n")
    out = client.post("/api/build", json={"spec": spec}).json()
    assert "<img" not in out["html"] and "<script" not in out["html"]
    assert "&lt;script&gt;" in out["html"]


@pytest.mark.parametrize("kind,start", [("tex", b"\\documentclass"), ("md", b"# "), ("py", b'"""')])
def test_downloads(client, kind, start):
    r = client.post("/api/download", json={"example": "seed004_mlp_column", "kind": kind})
    assert r.status_code == 200 and r.content.startswith(start)
    assert f'filename="seed004_mlp_column.' in r.headers["content-disposition"]
    if kind == "py":
        ast.parse(r.content.decode("utf-8"))
    left = [q.name for worker in client.pool.temp_root.iterdir() for q in worker.iterdir()]
    assert left == []                                    # every request's temporary folder is gone


@pytest.mark.pdf
def test_pdf_download(client):
    from derive.pdf import have_tex

    if not have_tex():
        pytest.skip("latexmk is not installed")
    r = client.post("/api/download", json={"example": "seed003_rashid_summation", "kind": "pdf", "lang": "zh"})
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    assert r.headers["content-type"] == "application/pdf"


# ----------------------------------------------------------------------------- bad input
def test_malformed_json_and_wrong_fields(client):
    r = client.post("/api/verify", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not accepted" in r.json()["error"]
    r = client.post("/api/graph", json={"expression": "x", "at": {"x": "two"}})
    assert r.status_code == 422 and "at.x" in r.json()["error"]
    r = client.post("/api/build", json={"example": "seed004_mlp_column", "detail": "huge"})
    assert r.status_code == 422 and "detail" in r.json()["error"]
    r = client.post("/api/check", json={"example": "seed004_mlp_column", "path": "/etc/passwd"})
    assert r.status_code == 422 and "path" in r.json()["error"]


def test_a_1mb_body_is_refused(client):
    big = json.dumps({"spec": "#" * 1_000_000}).encode()
    r = client.post("/api/spec", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and str(MAX_BODY_BYTES // 1024) in r.json()["error"]

    def chunks():                  # no Content-Length: counted as it streams in
        for _ in range(20):
            yield b" " * 65536
    r = client.post("/api/spec", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.post("/api/spec", json={"example": "seed004_mlp_column"}).status_code == 200


@pytest.mark.parametrize("tex", [r"\text{<script>alert(1)</script>}", r"\href{javascript:alert(1)}{x}",
                                 r"\style{background:url(x)}{y}", r"\frac{" * 2000 + "x" + "}" * 2000])
def test_hostile_latex_never_becomes_markup(client, tex):
    r = client.post("/api/preview", json={"tex": tex})
    assert r.status_code == 400 and "MathML" in r.json()["error"]


def test_hostile_claims_are_judged_not_run(client):
    for claim in (r"\input{/etc/passwd}", "__import__('os').system('true')", r"\text{<script>}"):
        out = client.post("/api/verify", json={"example": "seed004_mlp_column", "param": "W2", "claim": claim}).json()
        assert out["verdict"] == "unparseable"
        assert "<script" not in json.dumps(out["display"])


def test_preview_of_a_formula(client):
    out = client.post("/api/preview", json={"tex": r"\delta^{2} (a^{1})^{T}"}).json()
    assert out["mathml"].startswith('<math xmlns="http://www.w3.org/1998/Math/MathML"') and "<msup>" in out["mathml"]


# ----------------------------------------------------------------------------- limits
def test_a_slow_request_is_stopped_and_the_next_is_served(client):
    replaced = client.get("/healthz").json()["replaced"]
    start = time.monotonic()
    r = client.post("/api/check", json={"spec": SLOW_SPEC})
    took = time.monotonic() - start
    assert r.status_code == 422 and r.json()["limit"] == "time"
    assert f"{TIME_LIMIT:g} s" in r.json()["error"]
    assert took < TIME_LIMIT + 5
    ok = client.post("/api/verify", json={"example": "seed004_mlp_column", "param": "W2",
                                          "claim": r"\delta^{2} (a^{1})^{T}"})
    assert ok.status_code == 200 and ok.json()["verdict"] == "correct"
    for _ in range(50):                      # the replacement worker joins the pool
        health = client.get("/healthz").json()
        if health["replaced"] > replaced and health["workers"] == 2:
            break
        time.sleep(0.2)
    assert health["replaced"] == replaced + 1 and health["workers"] == 2


def test_a_worker_past_its_memory_limit_is_replaced():
    import asyncio

    async def scenario():
        pool = Pool(1, Limits(seconds=20, memory_mb=700))
        await pool.start()
        try:
            first = set(pool.pids())
            with pytest.raises(LimitExceeded) as info:
                await pool.run("slow", {"allocate_mb": 1500})
            assert info.value.kind == "memory"
            status, value = await pool.run("slow", {"allocate_mb": 50})        # served by the replacement
            assert status == "ok" and value["allocated"] == 50 * 2**20
            assert set(pool.pids()).isdisjoint(first)
            with pytest.raises(LimitExceeded) as info:
                await pool.run("slow", {"seconds": 30}, seconds=1)
            assert info.value.kind == "time"
            assert (await pool.run("spec", {"example": "seed004_mlp_column"}))[0] == "ok"
        finally:
            pool.close()
        assert not pool.temp_root.exists()

    asyncio.run(scenario())
