"""The example notebook runs top to bottom in a real kernel, and shows what it promises."""
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "notebook.ipynb"


def test_the_example_notebook_runs_and_shows_the_notation():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = [o.get("data", {}) for o in outputs]
    text = "\n".join(str(d) for d in shown)
    assert "Mdelta" not in text and "Ma_0" not in text
    assert any(r"\delta^{1} x^{T}" in d.get("text/latex", "") for d in shown)        # the gradient
    assert any("Chain rule" in d.get("text/markdown", "") for d in shown)           # the steps, justified
    assert any("<table>" in d.get("text/html", "") for d in shown)                  # the check report
    assert any("'W1': (4, 2)" in d.get("text/plain", "") for d in shown)            # numbers, document layout
    last = float(shown[-1]["text/plain"])
    assert last < 1e-12                                                             # compiled == evaluated
