"""The commands as a user runs them: exit codes, one-line errors, files written."""

from __future__ import annotations

import os
import subprocess
import sys

from fixtures import json_payload, random_splits, write_json


def run(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)


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


def test_predict_does_not_import_the_data_stack_or_matplotlib():
    code = (
        "import sys, paddle_mnist.predict; "
        "print(sorted(m for m in sys.modules if m.startswith(('paddle_mnist.data.', 'matplotlib'))))"
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
