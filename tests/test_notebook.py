"""docs/tutorial.ipynb runs from top to bottom on a fresh kernel: CI executes it and fails on any error.

Its outputs are not committed (the notebook is kept without them, so a diff shows only what changed in it).
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SHARED, require, require_module

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


def test_the_notebook_is_committed_without_outputs():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    assert cells and all(
        not c.get("outputs") and c.get("execution_count") is None for c in cells if c["cell_type"] == "code"
    )


def test_the_tutorial_notebook_runs(tmp_path, monkeypatch, shared_cache):
    require_module("nbclient")
    require_module("ipykernel")
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("PADDLE_MNIST_DATA", str(require(SHARED / "mnist.json.gz")))
    monkeypatch.setenv("PADDLE_MNIST_CACHE", str(shared_cache))  # the kernel inherits the environment
    (tmp_path / "home").mkdir(exist_ok=True)  # IPython keeps its profile under $HOME
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert "reaches the highest eval accuracy" in text and "read:" in text, text[-2000:]
    assert len(images) >= 8, "accuracy, three misread grids, the optimizers, the curves, the photo, the explanation"
    for knob in ("model linear", "model course_mlp", "lr 0.0001", "optimizer adam", "weight_decay 1e-05"):
        assert knob in text, f"the course's comparison of {knob.split()[0]} ran"
    assert "resumed to epoch 2 of [1, 2]" in text and "largest output difference" in text
