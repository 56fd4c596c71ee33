"""A computation graph's figure alone, as SVG and PNG: the TikZ picture compiled to PDF (derive's
sandboxed latexmk), then converted by poppler's pdftocairo, which keeps text as vector outlines."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import DeriveError

PNG_DPI = 150
CONVERT_SECONDS = 60


def figure_images(graph, text: str, kinds: tuple[str, ...]) -> dict[str, bytes]:
    """{"svg": ..., "png": ...} for the kinds asked for."""
    from .pdf import compile_text
    from .render import render_graph

    if shutil.which("pdftocairo") is None:
        raise DeriveError("the graph's SVG and PNG need pdftocairo, from Debian's poppler-utils "
                          "(apt-get install poppler-utils); the .tex and .pdf need no more than TeX")
    pdf, _ = compile_text(render_graph(graph, text, standalone=True), "figure.tex")
    out = {}
    with tempfile.TemporaryDirectory(prefix="derive-figure-") as folder:
        source = Path(folder) / "figure.pdf"
        source.write_bytes(pdf)
        for kind in kinds:
            target = Path(folder) / f"figure.{kind}"
            command = (["pdftocairo", "-svg", str(source), str(target)] if kind == "svg" else
                       ["pdftocairo", "-png", "-singlefile", "-r", str(PNG_DPI), str(source), str(target.with_suffix(""))])
            done = subprocess.run(command, capture_output=True, text=True, timeout=CONVERT_SECONDS)
            if done.returncode != 0 or not target.exists():
                raise DeriveError(f"pdftocairo could not make the {kind.upper()}: {done.stderr.strip()[:300]}")
            out[kind] = target.read_bytes()
    return out
