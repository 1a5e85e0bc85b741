"""The layout docs/architecture.md promises: data flows one way, no import cycle, modules and functions
that fit in a head, and one read of a run's metadata per prediction."""

from __future__ import annotations

import ast
import builtins
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paddle_mnist import rundir
from paddle_mnist.predict import Predictor

from conftest import require_module

PACKAGE = Path(__file__).resolve().parents[1] / "paddle_mnist"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
# argparse declarations are long lists of flags, one call each: their length is their content
DECLARATIONS = {"build_parser", "add_recipe_flags", "add_model_flags"}
# the trainer's side of the flow: none of these may reach the predictor, the exporter or the server
TRAINER_SIDE = ("paddle_mnist.trainer", "paddle_mnist.rundir", "paddle_mnist.runinfo", "paddle_mnist.checkpoint")
PREDICTOR_SIDE = ("paddle_mnist.predictor", "paddle_mnist.predict", "paddle_mnist.export", "paddle_mnist.serve")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The package's modules ``path`` imports anywhere in it (function-local imports too), but not under
    ``if TYPE_CHECKING:``, which never runs.  ``from pkg import mod`` counts as importing ``pkg.mod``."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and getattr(branch.test, "id", "") == "TYPE_CHECKING"
        for node in ast.walk(branch)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
    return {name for name in found if name in known and name != module_name(path)}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, set(known)) for name, path in known.items()}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for name in graph[todo.pop()] - seen:
            seen.add(name)
            todo.append(name)
    return seen


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    cycles = sorted(name for name in graph if name in reachable(graph, name))
    assert cycles == [], f"modules on an import cycle: {cycles}"


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(name for name in graph if name in reachable(graph, name)) == ["a", "b", "c"]


def test_the_trainer_and_the_run_directory_never_reach_the_predictor_the_exporter_or_the_server():
    graph = import_graph()
    for start in TRAINER_SIDE:
        reached = sorted(m for m in reachable(graph, start) if m.startswith(PREDICTOR_SIDE))
        assert reached == [], f"{start} imports {reached}"


def test_modules_and_functions_fit_in_a_head():
    too_long = []
    for name, path in modules().items():
        source = path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in DECLARATIONS:
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert too_long == []


@pytest.fixture
def counted_opens(monkeypatch):
    """The name of every file opened in this process: through ``open`` (``Path.read_text`` too) or ``os.open``
    (the bounded reads of ``fileio``)."""
    opened = []

    def counting(real):
        def counted(file, *args, **kwargs):
            opened.append(Path(file).name if isinstance(file, (str, Path)) else file)
            return real(file, *args, **kwargs)

        return counted

    for module, name in ((builtins, "open"), (io, "open"), (os, "open")):
        monkeypatch.setattr(module, name, counting(getattr(module, name)))
    return opened


@pytest.mark.parametrize("engine", ["dynamic", "onnx"])
def test_predicting_one_image_reads_mnist_json_once(engine, tiny_model_dir, tmp_path, counted_opens):
    model_dir = tiny_model_dir()
    if engine == "onnx":
        require_module("paddle2onnx")
        from paddle_mnist import export

        export.export(model_dir, model_dir / rundir.INFERENCE_PREFIX, fmt="onnx")
    picture = tmp_path / "seven.png"
    Image.fromarray(np.pad(np.full((12, 4), 255, np.uint8), 8)).save(picture)
    counted_opens.clear()
    predictor = Predictor.from_dir(model_dir)  # auto: the export when there is one
    assert predictor.summary.engine == engine
    assert predictor.predict(picture).digit is not None
    assert counted_opens.count(rundir.METADATA) == 1, counted_opens


def test_the_run_reader_settles_bare_files_and_runs_once(tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir()
    run = rundir.open_run(model_dir, "last")
    assert not run.bare and run.weights_file.name == run.info.file_names["last"]
    assert run.weights_sha256 == json.loads((model_dir / rundir.METADATA).read_text())["files"][run.weights_file.name]
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "mnist.pdparams").write_bytes((model_dir / "mnist.pdparams").read_bytes())
    for found in (rundir.open_run(bare), rundir.open_run(model_dir, str(bare / "mnist.pdparams"))):
        assert found.bare and found.weights_file == bare / "mnist.pdparams"
        assert found.weights_sha256 == run.weights_sha256  # the same bytes, hashed
