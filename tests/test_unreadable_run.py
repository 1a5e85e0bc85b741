"""A run whose ``mnist.json`` does not validate is left exactly as it was: nothing is deleted on the strength of
metadata that was not read, whichever command fails on it (issue 30, case 1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from paddle_mnist import compare, rundir, train
from paddle_mnist.runinfo import SCHEMA_VERSION

FLAGS = ["--model", "mlp", "--epochs", "1", "--batch-size", "50", "--lr", "0.05", "--no-export"]


def newer_format(meta: dict) -> str:
    return json.dumps({**meta, "format": SCHEMA_VERSION + 1})


def huge_integer(meta: dict) -> str:
    return json.dumps(meta).replace('"epoch": 1', '"epoch": 1' + "0" * 5000, 1)  # json itself refuses to write it


def overflowing_number(meta: dict) -> str:
    return json.dumps(meta).replace('"train_loss": ', '"train_loss": 1e400, "x": ', 1)


def cut_short(meta: dict) -> str:
    return json.dumps(meta)[:-40]


def contents(run: Path) -> dict[str, bytes]:
    """Every file of the run and its bytes (the lock file aside: a trainer writes its PID there)."""
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file() and p.name != rundir.LOCK}


@pytest.mark.parametrize("damage", [newer_format, huge_integer, overflowing_number, cut_short])
def test_a_failed_command_leaves_every_file_of_an_unreadable_run(damage, tiny_run, data_file, tmp_path, capsys):
    model = tiny_run
    meta = json.loads((model / rundir.METADATA).read_text())
    run = tmp_path / "compare" / "runs" / "cross_entropy-seed0"  # where compare keeps this recipe's run
    shutil.copytree(model, run)
    (run / rundir.METADATA).write_text(damage(meta))
    before = contents(run)
    capsys.readouterr()
    assert {meta["weights"]["last"], meta["weights"]["best"], meta["weights"]["optimizer"]} <= set(before)
    commands = {
        "train": lambda: train.main(["--data", str(data_file), "--out", str(run), *FLAGS]),
        "train --resume": lambda: train.main(["--data", str(data_file), "--out", str(run), "--resume", *FLAGS]),
        "compare": lambda: compare.main(
            ["--data", str(data_file), "--out", str(tmp_path / "compare"), "--losses", "cross_entropy", "--seeds", "0"]
            + [flag for flag in FLAGS if flag != "--no-export"]
        ),
    }
    for name, command in commands.items():
        assert command() == 1, name
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and str(run) in error[0], (name, error)
        assert contents(run) == before, f"{name} changed the run's files"
