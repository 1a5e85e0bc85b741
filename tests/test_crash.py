"""The run directory under crashes: kill -9 at every step of a save and at random times, ENOSPC and
exceptions at every step, two writers, and readers racing a writer.  After each, the directory holds
one complete set, predict reads it, and --resume ends bit-identical to an uninterrupted run."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from paddle_mnist import checkpoint, rundir
from paddle_mnist.errors import UserError
from paddle_mnist.predict import Predictor

from fixtures import run_python, train_cli

FLAGS = [
    "--model",
    "mlp",
    "--optimizer",
    "momentum",
    "--schedule",
    "cosine",
    "--lr",
    "0.02",
    "--batch-size",
    "50",
    "--epochs",
    "3",
    "--seed",
    "5",
]
STEPS = ("replace", "link", "unlink", "fsync", "rename")  # the filesystem calls a save is made of

# Runs the trainer with the filesystem calls of one save counted (epoch N's, or with 0 the final commit);
# SIGKILLs itself just before call number KILL_AT (0: never).
HOOKED_TRAINER = f"""
import os, signal, sys
from paddle_mnist import rundir, train
epoch, kill_at = int(sys.argv[1]), int(sys.argv[2])
calls, armed = [0], [False]
def counted(real):
    def call(*args, **kwargs):
        if armed[0]:
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return call
for name in {STEPS!r}:
    setattr(os, name, counted(getattr(os, name)))
real_save, real_final = rundir.RunWriter.save_epoch, rundir.RunWriter.save_final
def save_epoch(self, model, optimizer, info, state, improved):
    armed[0] = state.epoch == epoch
    try:
        return real_save(self, model, optimizer, info, state, improved)
    finally:
        armed[0] = False
def save_final(self, info):  # epoch 0: the last commit, once the eval metrics are known
    armed[0] = epoch == 0
    try:
        return real_final(self, info)
    finally:
        armed[0] = False
rundir.RunWriter.save_epoch, rundir.RunWriter.save_final = save_epoch, save_final
code = train.main(sys.argv[3:])
print("save calls:", calls[0], file=sys.stderr)
sys.exit(code)
"""


def hooked_train(out, data_file, epoch=2, kill_at=0):
    return run_python("-c", HOOKED_TRAINER, epoch, kill_at, "--data", data_file, "--out", out, *FLAGS, timeout=120)


def weights(out):
    return rundir.open_run(out, "last").load_state()[1]


def assert_same(expected, got):
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_array_equal(expected[name], got[name], err_msg=name)


def assert_recovers(out, data_file, expected):
    """One complete set is there now (predict reads it); --resume then ends bit-identical; no leftovers."""
    if (out / rundir.METADATA).exists():
        info = rundir.read(out)
        assert info.epochs_done in (1, 2, 3)
        Predictor.from_dir(out, engine="dynamic")  # reads the weights themselves
        train_cli("--data", data_file, "--out", out, *FLAGS, "--resume")
    else:  # killed before the first commit: nothing to resume, a fresh start is the same run
        train_cli("--data", data_file, "--out", out, *FLAGS, "--overwrite")
    assert_same(expected, weights(out))
    leftovers = [
        p.name
        for p in out.iterdir()
        if p.name.endswith(".tmp") or p.name.startswith("epoch-000") and not p.name.startswith("epoch-0003")
    ]
    assert leftovers == []


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run, and how many filesystem calls epoch 2's save makes."""
    from paddle_mnist.testing.data_files import json_payload, learnable_splits, write_json

    tmp = tmp_path_factory.mktemp("straight")
    data_file = write_json(tmp / "learnable.json.gz", json_payload(learnable_splits()))
    result = hooked_train(tmp / "out", data_file)
    assert result.returncode == 0, result.stderr
    calls = int(result.stderr.rsplit("save calls:", 1)[1])
    return data_file, weights(tmp / "out"), calls


def save_calls(out, data_file, epoch: int) -> int:
    """How many filesystem calls the save makes, counted on a second run: the first one in a fresh HOME
    also writes matplotlib's font cache while drawing curves.png."""
    for attempt in ("warm-up", "count"):
        result = hooked_train(out / attempt, data_file, epoch=epoch)
        assert result.returncode == 0, result.stderr
    return int(result.stderr.rsplit("save calls:", 1)[1])


# epoch 1: the first save (no earlier set to remove); 2: a save over a set; 0: the final commit
@pytest.mark.parametrize("epoch, committed", [(1, (None, 1)), (2, (1, 2)), (0, (3,))], ids=["first", "second", "final"])
def test_kill_9_at_every_step_of_a_save(straight, tmp_path, epoch, committed):
    data_file, expected, _ = straight
    calls = save_calls(tmp_path / "count", data_file, epoch)
    assert calls >= (4 if epoch == 0 else 10), "a save is several files, each written, synced and renamed"
    # Each killed run is a process of its own: two at a time (the suite's two cores), the recoveries in turn here.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(lambda k: hooked_train(tmp_path / f"kill-{k}", data_file, epoch, k), range(1, calls + 1))
        )
    for kill_at, result in enumerate(results, 1):
        out = tmp_path / f"kill-{kill_at}"
        assert result.returncode == -9, (kill_at, result.stderr[-2000:])
        done = rundir.read(out).epochs_done if (out / rundir.METADATA).exists() else None
        assert done in committed, (kill_at, done)
        assert_recovers(out, data_file, expected)


def test_kill_9_at_random_times(straight, tmp_path):
    """Killed at a random instant of the second and third epochs, timed from the trainer's own progress
    lines (so never during imports, never after the end): it dies of the kill, and recovers."""
    data_file, expected, _ = straight
    command = [sys.executable, "-m", "paddle_mnist.train", "--data", str(data_file), *FLAGS]

    def started(out):
        proc = subprocess.Popen(
            command + ["--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        for line in proc.stdout:
            if line.startswith("epoch 1/3:"):
                return proc, time.monotonic()
        raise AssertionError(f"no progress line (exit {proc.wait()})")

    proc, first = started(tmp_path / "timing")
    times = [first] + [time.monotonic() for line in proc.stdout if line.startswith(("epoch 2/3:", "epoch 3/3:"))]
    assert proc.wait() == 0 and len(times) == 3
    epoch_seconds = (times[2] - times[0]) / 2
    for trial, delay in enumerate(np.random.default_rng(0).uniform(0, 1.8 * epoch_seconds, 4)):
        out = tmp_path / f"random-{trial}"
        proc, _ = started(out)
        time.sleep(delay)
        proc.kill()
        assert proc.wait() == -9, f"trial {trial}: the trainer ended before its kill ({delay:.3f} s after epoch 1)"
        assert rundir.read(out).epochs_done in (1, 2, 3)  # 3: killed in the final evaluation or commit
        assert_recovers(out, data_file, expected)


@pytest.mark.curves  # the sweep counts the calls of a whole save, curves.png's included
@pytest.mark.parametrize(
    "failure", [OSError(errno.ENOSPC, "No space left on device"), RuntimeError("boom")], ids=["ENOSPC", "exception"]
)
def test_failure_at_every_step_of_a_save(straight, tmp_path, monkeypatch, failure):
    data_file, expected, calls = straight
    real_save = rundir.RunWriter.save_epoch
    for fail_at in range(1, calls + 1):
        counter = {"n": 0, "armed": False}

        def failing(name, real, counter=counter, fail_at=fail_at):
            def call(*args, **kwargs):
                if counter["armed"]:
                    counter["n"] += 1
                    if counter["n"] == fail_at:
                        counter["failed"] = name
                        raise failure
                return real(*args, **kwargs)

            return call

        def save_epoch(self, model, optimizer, info, state, improved, counter=counter):
            counter["armed"] = state.epoch == 2
            try:
                return real_save(self, model, optimizer, info, state, improved)
            finally:
                counter["armed"] = False

        with monkeypatch.context() as patch:
            for name in STEPS:
                patch.setattr(os, name, failing(name, getattr(os, name)))
            patch.setattr(rundir.RunWriter, "save_epoch", save_epoch)
            out = tmp_path / f"fail-{fail_at}"
            try:
                train_cli("--data", data_file, "--out", out, *FLAGS)
            except UserError as e:  # ENOSPC: one line, naming the cause and what is kept
                assert isinstance(failure, OSError)
                assert re.fullmatch(
                    rf"{out}: saving epoch 2 failed \(No space left on device\); "
                    r"the directory holds the complete set of epoch [12]",
                    str(e),
                ), str(e)
            except RuntimeError:
                assert failure.__class__ is RuntimeError
            else:  # the one call with a fallback: a refused hard link is a copy instead
                assert counter["failed"] == "link" and isinstance(failure, OSError)
        assert_recovers(out, data_file, expected)


def test_one_writer_at_a_time(data_file, tmp_path):
    out = tmp_path / "out"
    with rundir.RunWriter(out):
        result = run_python("-m", "paddle_mnist.train", "--data", data_file, "--out", out, "--epochs", "1", timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"paddle-mnist train: error: {out}: another trainer (PID {os.getpid()}) is writing this run directory"
    ]


def test_a_saved_run_is_not_overwritten_by_accident(data_file, tmp_path):
    out = tmp_path / "out"
    train_cli("--data", data_file, "--out", out, "--model", "linear", "--epochs", "1")
    before = (out / rundir.METADATA).read_bytes()
    with pytest.raises(
        UserError,
        match=r"already holds a run \(epoch 1 saved\); continue it with --resume, "
        r"or start afresh with --overwrite",
    ):
        train_cli("--data", data_file, "--out", out, "--model", "linear", "--epochs", "1", "--seed", "4")
    assert (out / rundir.METADATA).read_bytes() == before
    info = train_cli(
        "--data", data_file, "--out", out, "--model", "linear", "--epochs", "1", "--seed", "4", "--overwrite"
    )
    assert info.seed == 4 and rundir.read(out).seed == 4


@pytest.mark.parametrize("kind", ["a file", "under a file", "a dangling link"])
def test_unwritable_out_is_found_before_training(data_file, tmp_path, kind, capsys):
    (tmp_path / "file").write_text("x")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    out = {
        "a file": tmp_path / "file",
        "under a file": tmp_path / "file" / "out",
        "a dangling link": tmp_path / "dangling",
    }[kind]
    with pytest.raises(UserError, match=str(out)):
        train_cli("--data", data_file, "--out", out, "--epochs", "1")
    assert "epoch 1" not in capsys.readouterr().out, "refused before any training"


def test_readers_see_a_complete_set_while_a_trainer_saves(data_file, tmp_path):
    """Readers loop while a trainer commits a set per epoch: no error once the first set is there, and
    reads that span several commits (so reads overlapped saves)."""
    out = tmp_path / "out"
    trainer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paddle_mnist.train",
            "--data",
            str(data_file),
            "--out",
            str(out),
            "--model",
            "linear",
            "--epochs",
            "40",
            "--batch-size",
            "100",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen, deadline = [], time.monotonic() + 120
    try:
        while trainer.poll() is None and time.monotonic() < deadline:
            if not seen and not (out / rundir.METADATA).exists():
                time.sleep(0.01)
                continue
            run, _ = rundir.open_run(out, "best").load_state()  # what predict reads; any error fails the test
            seen.append(run.info.epochs_done)
    finally:
        trainer.kill()
        trainer.wait()
    assert len(set(seen)) >= 3, f"reads spanned {len(set(seen))} commits"


def test_a_set_committed_between_reading_the_metadata_and_the_weights_is_read_again(
    tiny_model_dir, data_file, monkeypatch
):
    """The race ``Run.load_state`` retries, made to happen: a trainer commits epoch 2 (and removes epoch 1's
    files) right after the reader has read epoch 1's metadata."""
    out = tiny_model_dir()
    real_read, calls = rundir.read, []

    def read_then_save(run_dir):
        info = real_read(run_dir)
        if not calls:
            calls.append(info.epochs_done)
            train_cli(
                "--data",
                data_file,
                "--out",
                out,
                "--model",
                "mlp",
                "--epochs",
                "1",
                "--batch-size",
                "50",
                "--lr",
                "0.05",
                "--seed",
                "3",
                "--overwrite",
            )
        return info

    monkeypatch.setattr(rundir, "read", read_then_save)
    run, state = rundir.open_run(out, "best").load_state()
    info = run.info
    assert calls == [1] and info.seed == 3, "the second read found the new set"
    np.testing.assert_array_equal(state["body.0.weight"], checkpoint.load_state(out / "best.pdparams")["body.0.weight"])


def test_the_commit_is_a_rename_so_mnist_json_is_never_torn(data_file, tmp_path):
    """``mnist.json`` is replaced, never rewritten in place: each commit gives it a new inode, and at no
    instant does it hold part of a file (a reader would see a torn JSON)."""
    out = tmp_path / "out"
    train_cli("--data", data_file, "--out", out, "--model", "linear", "--epochs", "1")
    before = (out / rundir.METADATA).stat().st_ino
    handle = open(out / rundir.METADATA)  # an open reader keeps the old file whole
    old_text = handle.read()
    train_cli("--data", data_file, "--out", out, "--model", "linear", "--epochs", "2", "--resume")
    assert (out / rundir.METADATA).stat().st_ino != before
    handle.seek(0)
    assert handle.read() == old_text and json.loads(old_text)["epochs_done"] == 1
    handle.close()


def test_a_full_disk_in_the_final_save_is_one_line(straight, tmp_path, monkeypatch):
    """After the last epoch the metadata is written once more with the eval metrics; a full disk then is
    one line like any other save failure, and the set committed after the last epoch stays resumable."""
    data_file, expected, _ = straight
    real_save_final, real_replace = rundir.RunWriter.save_final, os.replace

    def save_final(self, info):
        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        with monkeypatch.context() as patch:
            patch.setattr(os, "replace", full)
            real_save_final(self, info)

    monkeypatch.setattr(rundir.RunWriter, "save_final", save_final)
    out = tmp_path / "full"
    with pytest.raises(UserError) as raised:
        train_cli("--data", data_file, "--out", out, *FLAGS)
    assert str(raised.value) == (
        f"{out}: saving the final metrics failed (No space left on device); "
        "the directory holds the complete set of epoch 3"
    )
    assert os.replace is real_replace
    monkeypatch.setattr(rundir.RunWriter, "save_final", real_save_final)
    assert_recovers(out, data_file, expected)
