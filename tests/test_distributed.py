"""Data-parallel training through Paddle's own launcher, on CPU over gloo.

Each test starts its launchers in their own process groups with a time limit
and kills the whole group on the way out, so a hung collective leaves no orphans.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from paddle_mnist import checkpoint, parallel, train, trainer
from paddle_mnist.config import Config
from paddle_mnist.errors import UserError

from fixtures import train_cli

LIMIT_S = 240
FLAGS = ["--model", "cnn", "--batch-size", "50", "--epochs", "2", "--lr", "0.05", "--seed", "3"]


@contextlib.contextmanager
def processes():
    started = []

    def start(command, log):
        started.append(
            subprocess.Popen(
                command,
                stdout=open(log, "w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        )
        return started[-1]

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def launcher(*launch_args, out: Path, data: Path, log_dir: Path):
    return [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        *launch_args,
        "--log_dir",
        str(log_dir),
        str(parallel.console_script()),
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        *FLAGS,
    ]


def single_process_weights(data, out):
    train_cli("--data", data, "--out", out, *FLAGS)
    return checkpoint.load_state(out / "mnist.pdparams")


def assert_same_weights(expected, out, tolerance=1e-5):
    got = checkpoint.load_state(out / "mnist.pdparams")
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=tolerance, err_msg=name)


def wait_ok(proc, log):
    try:
        code = proc.wait(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"launcher still running after {LIMIT_S} s; log:\n{Path(log).read_text()[-3000:]}")
    assert code == 0, Path(log).read_text()[-3000:]


def test_two_processes_match_one(data_file, tmp_path):
    expected = single_process_weights(data_file, tmp_path / "one")
    with processes() as start:
        log = tmp_path / "launch.log"
        wait_ok(
            start(
                launcher("--nproc_per_node", "2", out=tmp_path / "two", data=data_file, log_dir=tmp_path / "logs"), log
            ),
            log,
        )
    assert_same_weights(expected, tmp_path / "two")
    worker_lines = [
        [
            line
            for line in (tmp_path / "logs" / f"workerlog.{r}").read_text().splitlines()
            if line.startswith(("epoch 2/2:", "eval accuracy"))
        ]
        for r in (0, 1)
    ]
    assert worker_lines[0] and worker_lines[0] == worker_lines[1], "every rank reports the same numbers"
    assert "x2 processes" in (tmp_path / "logs" / "workerlog.1").read_text()
    assert json.loads((tmp_path / "two" / "mnist.json").read_text())["config"]["nproc"] == 2, "the launcher's count"


def test_two_nodes_on_localhost(data_file, tmp_path):
    expected = single_process_weights(data_file, tmp_path / "one")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with processes() as start:
        nodes = [
            (
                start(
                    launcher(
                        "--nnodes",
                        "2",
                        "--master",
                        f"127.0.0.1:{port}",
                        "--nproc_per_node",
                        "1",
                        out=tmp_path / "nodes",
                        data=data_file,
                        log_dir=tmp_path / f"logs{n}",
                    ),
                    tmp_path / f"node{n}.log",
                ),
                tmp_path / f"node{n}.log",
            )
            for n in (0, 1)
        ]
        for proc, log in nodes:
            wait_ok(proc, log)
    assert_same_weights(expected, tmp_path / "nodes")


def test_nproc_wrapper_and_resume_across_processes(data_file, tmp_path):
    """Epoch 1 on 2 processes, then --resume to epoch 2 on 2 processes: the weights of 1 process, 2 epochs.
    The process count is part of the recipe: recorded, and a resume on another count is refused."""
    expected = single_process_weights(data_file, tmp_path / "one")
    out = tmp_path / "wrapped"
    command = [
        str(parallel.console_script()),
        "train",
        "--nproc",
        "2",
        "--data",
        str(data_file),
        "--out",
        str(out),
        *FLAGS,
    ]
    with processes() as start:
        first, resumed = tmp_path / "first.log", tmp_path / "resumed.log"
        wait_ok(start([*command, "--epochs", "1"], first), first)
        with pytest.raises(UserError, match="cannot resume: the saved run differs in nproc"):
            train_cli("--data", data_file, "--out", out, *FLAGS, "--resume")
        wait_ok(start([*command, "--resume"], resumed), resumed)
    assert "resuming after epoch 1" in resumed.read_text()
    assert_same_weights(expected, out)
    assert (out / "launch-logs" / "workerlog.1").exists()
    assert json.loads((out / "mnist.json").read_text())["config"]["nproc"] == 2


def test_the_process_count_follows_the_launcher_or_is_refused(monkeypatch):
    """Paddle's launcher without --nproc: its count is recorded; a recipe for 2 processes alone is refused."""
    monkeypatch.setattr(parallel, "world_size", lambda: 2)
    assert trainer.with_running_processes(Config()).nproc == 2
    assert trainer.with_running_processes(Config(nproc=2)).nproc == 2
    monkeypatch.setattr(parallel, "world_size", lambda: 1)
    with pytest.raises(
        UserError,
        match="the recipe trains on 2 data-parallel processes but 1 run here: "
        "start it with paddle-mnist train --nproc 2, or ask for --nproc 1",
    ):
        trainer.with_running_processes(Config(nproc=2))


def test_batch_must_divide_over_ranks(monkeypatch):
    monkeypatch.setattr(parallel, "world_size", lambda: 3)
    with pytest.raises(Exception, match="--batch-size 100 is the global batch and must divide evenly over 3 processes"):
        parallel.check_batch(100)


def test_gpu_and_amp_errors_are_clear(data_file, tmp_path, capsys):
    import paddle

    if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        pytest.skip("a GPU is present")
    assert train.main(["--data", str(data_file), "--device", "gpu", "--out", str(tmp_path)]) == 1
    assert "--device gpu: this paddle build has no CUDA" in capsys.readouterr().err
    assert train.main(["--data", str(data_file), "--amp", "--out", str(tmp_path)]) == 1
    assert "--amp needs a GPU" in capsys.readouterr().err
