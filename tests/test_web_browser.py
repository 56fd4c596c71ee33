"""derive serve in a real browser: Debian's Chromium driven by Playwright against `derive serve`
started as a user would, each task end to end (type, submit, see the verdict highlighted, the
graph drawn, the download served), offline (any request off the server is refused and recorded),
under the page's CSP (a violation is a console error). Screenshots go to output/screenshots/."""
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(__file__).resolve().parent.parent / "output" / "screenshots"
CORPUS = Path(__file__).parent / "verify_corpus" / "derivations"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "derive.cli", "serve", "--port", str(port), "--workers", "2"],
                                   stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("derive serve did not start: " + log.read_text())
        yield base
    finally:
        process.terminate()
        process.wait(20)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (make test installs Debian's chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """A page that may reach the server only; what it tried elsewhere and every console error are kept."""
    context = browser.new_context(viewport={"width": 1100, "height": 900}, accept_downloads=True)
    outside, problems = [], []

    def route(r):
        if r.request.url.startswith(server):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()
    context.route("**/*", route)
    p = context.new_page()
    # a 400 is the API's answer to a user error, which the page shows; anything else is a problem
    p.on("console", lambda m: problems.append(m.text) if m.type == "error" and "status of 400" not in m.text else None)
    p.on("pageerror", lambda e: problems.append(str(e)))
    p.base = server
    yield p
    context.close()
    assert outside == [], f"requests off the server: {outside}"
    assert problems == [], f"console errors (a CSP violation is one): {problems}"


def _shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"web-{name}.png"), full_page=True)


def _fits(page):
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_check_a_derivation_marks_the_first_wrong_line(page):
    text = (CORPUS / "col_w1_missing_transpose.tex").read_text(encoding="utf-8")
    query = urllib.parse.urlencode({"example": "seed004_mlp_column", "mode": "derivation", "derivation": text})
    page.goto(f"{page.base}/?{query}")
    page.wait_for_selector("body.ready")
    page.wait_for_selector("#preview math")                  # the live preview
    assert page.locator("#derivation").input_value() == text      # the link restored the page
    page.click("#verify-button")
    verdict = page.wait_for_selector(".verdict")
    assert verdict.get_attribute("data-verdict") == "shape_mismatch"
    wrong = page.locator("ol.lines li.wrong")
    assert wrong.count() == 1 and wrong.get_attribute("value") == "3"
    assert wrong.locator(".fix math").count() == 1            # the corrected line beside it
    assert "missing transpose" in page.locator(".diagnosis").inner_text()
    assert "2 × 4 × 1" in page.locator(".counterexample").inner_text()
    box = wrong.bounding_box()
    assert box["height"] > 12                                 # laid out as mathematics, not raw text
    _fits(page)
    _shot(page, "verify-derivation")


def test_check_a_claim_typed_and_linked(page, browser):
    page.goto(f"{page.base}/?example=seed004_mlp_column")
    page.wait_for_selector("body.ready")
    page.wait_for_selector("#spec-status.valid")
    page.fill("#param", "W2")
    page.locator("#claim").type(r"a^{1} \delta^{2}")
    page.wait_for_selector("#preview math")
    page.press("#claim", "Enter")
    page.wait_for_selector(".verdict")
    assert page.locator(".verdict").get_attribute("data-verdict") == "shape_mismatch"
    assert page.locator("ol.lines li.wrong").count() == 1
    assert page.locator(".fix math").count() == 1
    link = page.url
    assert "claim=" in link and "param=W2" in link
    _shot(page, "verify-claim")
    other = page.context.new_page()                           # the link a lecturer sends
    other.goto(link)
    other.wait_for_selector("body.ready")
    assert other.locator("#claim").input_value() == r"a^{1} \delta^{2}"
    assert other.locator("#param").input_value() == "W2"
    other.close()


def test_derive_shows_the_document_and_serves_downloads(page):
    page.goto(f"{page.base}/?example=seed004_mlp_column")
    page.wait_for_selector("body.ready")
    page.click('.tab[data-task="derive"]')
    assert "task=derive" in page.url
    page.click("#derive-button")
    page.wait_for_selector("#derive-document math", timeout=60000)
    summary = page.locator("#derive-summary").inner_text()
    assert "0 failed" in summary and "match central differences" in summary
    assert page.locator("#derive-document math").count() > 50
    with page.expect_download() as info:
        page.click('#downloads button[data-kind="tex"]')
    download = info.value
    assert download.suggested_filename == "seed004_mlp_column.tex"
    assert Path(download.path()).read_text(encoding="utf-8").startswith("\\documentclass")
    with page.expect_download() as info:
        page.click('#downloads button[data-kind="py"]')
    assert "def " in Path(info.value.path()).read_text(encoding="utf-8")
    _fits(page)
    _shot(page, "derive")


def test_graph_is_drawn_with_values_and_gradients(page):
    page.goto(f"{page.base}/?task=graph")
    page.wait_for_selector("body.ready")
    assert page.locator("#network").is_hidden()
    page.fill("#expression", "(x + y) * z")
    page.fill("#values", "x=-2, y=5, z=-4")
    page.click("#graph-button")
    page.wait_for_selector("svg.graph")
    assert page.locator("svg.graph circle").count() == 2 and page.locator("svg.graph rect").count() == 3
    assert page.locator("svg.graph foreignObject math").count() == 5
    assert "f = -12" in page.locator("#graph-result .verdict").inner_text()
    backward = page.locator("svg.graph text.backward").all_text_contents()
    assert sorted(backward) == sorted(["-4", "-4", "-4", "3", "1"])
    assert page.locator("table.steps tr").count() == 6
    _shot(page, "graph")
    page.fill("#values", "x=two")
    page.click("#graph-button")
    assert "NAME=NUMBER" in page.wait_for_selector(".error").inner_text()


def test_chinese_page_from_a_link(page):
    query = urllib.parse.urlencode({"lang": "zh", "task": "graph", "expr": r"\frac{1}{1+e^{-x}}", "at": "x=0"})
    page.goto(f"{page.base}/?{query}")
    page.wait_for_selector("svg.graph")                       # a graph link draws at once
    assert "计算图" in page.locator("nav").inner_text()
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    _shot(page, "graph-zh")
    page.click("#other-lang")                                 # the language switch keeps the page's state
    page.wait_for_selector("svg.graph")
    assert "Graph" in page.locator("nav").inner_text() and "expr=" in page.url


def test_bad_spec_is_reported_as_you_type(page):
    page.goto(f"{page.base}/?example=seed004_mlp_column")
    page.wait_for_selector("body.ready")
    page.select_option("#example", "")
    page.fill("#spec", "name: x\ninput: 2\nlayers: [{units: 3, activation: swish}]")
    status = page.wait_for_selector("#spec-status.invalid")
    assert "swish" in status.inner_text() and "sigmoid" in status.inner_text()
    page.fill("#spec", "name: x\ninput: 2\nlayers: [{units: 1, activation: sigmoid}]")
    page.wait_for_selector("#spec-status.valid")
    assert "spec=" in page.url
    _shot(page, "spec")
