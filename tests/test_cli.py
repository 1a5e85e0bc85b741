"""The commands as a user runs them: exit codes, one-line errors, files written."""

from __future__ import annotations

import os

from paddle_mnist.testing.data_files import json_payload, random_splits, write_json

from fixtures import run_python


def run(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return run_python(*args, env=env)


def test_show_writes_a_png(tmp_path):
    path = write_json(tmp_path / "m.json.gz", json_payload(random_splits()))
    out = tmp_path / "grid.png"
    result = run("-m", "paddle_mnist.data", "show", "--data", str(path), "--n", "7", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_file_is_one_line_on_stderr_and_exit_1(tmp_path):
    path = tmp_path / "broken.json.gz"
    path.write_bytes(b"plain text")
    result = run("-m", "paddle_mnist", "data", "show", "--data", str(path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"paddle-mnist data: error: {path}: not a gzip file (expected gzip-compressed JSON)"
    ]


def test_console_script_lists_commands_and_rejects_unknown():
    assert "data" in run("-m", "paddle_mnist", "--help").stdout
    result = run("-m", "paddle_mnist", "fly")
    assert result.returncode == 2 and "unknown command 'fly'" in result.stderr


def test_data_help_explains_every_flag():
    text = run("-m", "paddle_mnist.data", "show", "--help").stdout
    for flag in ("--data", "--dataset", "--mode", "--n", "--out"):
        assert flag in text
    assert text.count("default") >= 4


def test_predict_does_not_import_paddle_the_data_stack_or_matplotlib():
    """Paddle comes with the engine that needs it (``engines``), the data stack and matplotlib never."""
    code = (
        "import sys, paddle_mnist.predict, paddle_mnist.serve; "
        "print(sorted(m for m in sys.modules if m.startswith(('paddle_mnist.data.', 'matplotlib', 'paddle.')) "
        "or m == 'paddle'))"
    )
    result = run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['paddle_mnist.data.classes', 'paddle_mnist.data.encoding']"


def test_photos_is_a_command():
    result = run("-m", "paddle_mnist", "photos", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: paddle-mnist photos")


def test_train_prints_which_file_it_trained_on(data_file, tmp_path):
    result = run(
        "-m",
        "paddle_mnist.train",
        "--model",
        "linear",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "o"),
        env_extra={"PADDLE_MNIST_DATA": str(data_file)},
    )
    assert result.returncode == 0, result.stderr
    assert f"trained on {data_file} (found via $PADDLE_MNIST_DATA)" in result.stdout.splitlines()


def test_train_ends_with_the_onnx_export_unless_told_not_to(data_file, tmp_path):
    """With paddle2onnx there, a run predicts without paddle from the start: its export and record are written,
    and auto answers with it; ``--no-export`` writes neither."""
    from conftest import require_module

    require_module("paddle2onnx")
    require_module("onnxruntime")
    flags = ("-m", "paddle_mnist.train", "--data", str(data_file), "--model", "linear", "--epochs", "1")
    result = run(*flags, "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    prefix = tmp_path / "o" / "inference" / "mnist"
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"exported {prefix}.onnx (onnxruntime matches the model to "), result.stdout
    assert last.endswith("): predict answers without paddle") and "Paddle2ONNX" not in result.stdout
    assert sorted(p.name for p in prefix.parent.iterdir()) == ["mnist.onnx", "mnist.onnx.json"]
    from paddle_mnist.predict import Predictor

    assert Predictor.from_dir(tmp_path / "o").summary.engine == "onnx"
    result = run(*flags, "--out", str(tmp_path / "n"), "--no-export")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "n" / "inference").exists() and "exported" not in result.stdout


def test_no_library_warning_reaches_the_user(data_file, tmp_path):
    """BatchNorm's 'we now always track global mean and variance' used to print on every run of a BN model."""
    result = run(
        "-m",
        "paddle_mnist",
        "train",
        "--data",
        str(data_file),
        "--model",
        "convnet",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "o"),
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
