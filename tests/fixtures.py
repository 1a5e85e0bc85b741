"""Helpers of the tests that drive the trainer and plant files in run directories (the data files they
train on are ``paddle_mnist.testing.data_files``')."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from paddle_mnist import config, train, trainer


def run_python(*args, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """``python ARGS`` in a subprocess, its output as text: a command as a user runs it (``-m paddle_mnist.CMD``
    or ``-m paddle_mnist CMD``), or ``-c CODE``.  ``kwargs`` go to ``subprocess.run`` (env, cwd)."""
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs)


def refused_letter(predictor):
    """The first of 20 printed letters (``notdigits.family`` seed 5) that ``predictor`` answers "not a digit": the
    session's brief model accepts some letters that the whole recipe refuses (the A of DejaVu Sans at 0.50)."""
    from paddle_mnist import notdigits

    letters = notdigits.family("letters", 20, 5)
    return next(item for item, read in zip(letters, predictor.predict(letters)) if read.reason == "not a digit")


def train_cli(*flags):
    """``paddle-mnist train FLAGS`` in this process: the flags parsed and resolved as the command does."""
    return train.fit(config.from_args(train.build_parser().parse_args([str(f) for f in flags])))


def plant(model_dir: Path, which: str, data: bytes) -> Path:
    """Replace the run's ``which`` file with ``data`` and record its hash, as someone owning the directory could."""
    import hashlib

    meta = json.loads((model_dir / "mnist.json").read_text())
    path = model_dir / meta["weights"][which]
    path.unlink()
    path.write_bytes(data)
    meta["files"][path.name] = hashlib.sha256(data).hexdigest()
    (model_dir / "mnist.json").write_text(json.dumps(meta))
    return path


def interrupt_at(monkeypatch, epoch: int) -> None:
    """Make training stop with Ctrl-C (KeyboardInterrupt) as epoch ``epoch`` starts, after the earlier
    epochs' saves; ``monkeypatch.undo()`` or the end of the test lets it run again."""
    real_epoch = trainer.train_epoch

    def interrupted(trainee, dataset, config, number):
        if number == epoch:
            raise KeyboardInterrupt
        return real_epoch(trainee, dataset, config, number)

    monkeypatch.setattr(trainer, "train_epoch", interrupted)
