"""The run directory: the one module that knows what a training run leaves behind.

    mnist.json            the metadata (``runinfo.RunInfo``), replaced last: the commit of each save.
                          It names the files of the current set and records their SHA-256.
    epoch-NNNN.pdparams   the last epoch's weights      epoch-NNNN.pdopt   its optimizer state
    best-NNNN.pdparams    the best epoch's weights (by valid accuracy)
    mnist.pdparams, mnist.pdopt, best.pdparams
                          the same files under the tutorial's names (hard links, updated after each commit)
    history.csv, curves.png   one row per epoch, and its plot: views of the metadata
    inference/            ``paddle-mnist export``'s models, each with its record (``engines.ExportRecord``)
    .lock                 held by the one trainer writing the directory

Readers go through ``open_run``, which settles once whether a path is a run
directory or a bare ``.pdparams`` (the tutorial's own checkpoint) and returns a
``Run``: the metadata, the weights file asked for and its digest.  The trainer
saves through a ``RunWriter`` and continues from what ``resume`` returns.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import functools
import io
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from paddle_mnist import checkpoint, errors
from paddle_mnist.config import Config, recipe_of
from paddle_mnist.errors import UserError
from paddle_mnist.fileio import atomic_path, file_sha256, read_capped, write_bytes_atomic
from paddle_mnist.runinfo import (
    BEST_WEIGHTS,
    HISTORY_COLUMNS,
    LAST_WEIGHTS,
    OPTIMIZER,
    EpochRow,
    RunDirError,
    RunInfo,
    RunState,
)

METADATA = "mnist.json"
HISTORY, CURVES = "history.csv", "curves.png"
INFERENCE_PREFIX = Path("inference") / "mnist"  # export's default, inside the run directory
WEIGHTS_CHOICES = ("best", "last")  # --weights also takes a .pdparams file: a bare state dict


# --- reading -------------------------------------------------------------------

MAX_METADATA_BYTES = 64 << 20  # a 1,000-epoch history is well under 1 MB


def read(run_dir: str | Path) -> RunInfo:
    """The validated metadata of the run in ``run_dir``."""
    path = Path(run_dir) / METADATA
    text = read_capped(
        path,
        MAX_METADATA_BYTES,
        RunDirError,
        what="run's metadata",
        missing=f"no such file (train a model into {run_dir} first)",
    )
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise RunDirError(f"{path}: not valid JSON ({errors.json_reason(e)})") from None
    return RunInfo.from_json(obj, path)


def weights_path(run_dir: str | Path, info: RunInfo, which: str = "best") -> Path:
    """The file of the ``best``, ``last`` or ``optimizer`` state: a file of the run directory itself."""
    path = Path(run_dir) / info.file_names[which]
    if path.is_symlink():
        raise RunDirError(f"{path}: a symbolic link; a run's weights are files of the run directory itself")
    return path


@dataclass(frozen=True)
class Run:
    """A trained model on disk, as ``open_run`` found it: a run directory's metadata and the weights file
    asked for, or a bare ``.pdparams`` (``info`` None), whose network the predictor infers from its arrays."""

    directory: Path  # the run directory, or the directory a bare file was found in
    weights: str  # what was asked for: best, last, or a file
    weights_file: Path
    info: RunInfo | None

    @property
    def bare(self) -> bool:
        return self.info is None

    @functools.cached_property
    def weights_sha256(self) -> str:
        """The digest of the weights: as the metadata records it (no read), or a bare file's, hashed."""
        if self.info is not None:
            return self.info.files.get(self.weights_file.name, "")
        return file_sha256(self.weights_file)

    @property
    def export_prefix(self) -> Path:
        """Where ``export`` writes by default, and where ``--engine auto`` looks for an export."""
        return self.directory / INFERENCE_PREFIX

    def load_state(self) -> tuple[Run, dict]:
        """The state dict of the weights, with the run it belongs to: ``self``, or the set a trainer committed
        meanwhile.  A trainer removes the previous set's files right after committing a new one; a reader
        that lost that race reads the new metadata and tries again, so the pair is always one set."""
        run = self
        for _ in range(3):
            try:
                return run, checkpoint.load_state(run.weights_file, None if run.bare else run.info.files)
            except checkpoint.CheckpointError:
                again = None if run.bare else open_run(run.directory, run.weights)
                if again is None or again.info == run.info:
                    raise
                run = again
        raise RunDirError(f"{self.directory}: the run changed three times while being read; try again")


def open_run(path: str | Path, weights: str = "best") -> Run:
    """The trained model at ``path``: a run directory (``weights`` best or last), a directory holding no
    run but one ``.pdparams``, or, when ``weights`` names a file, that bare state dict.  Reads
    ``mnist.json`` once; the weights are read by ``Run.load_state``."""
    path = Path(path)
    if weights not in WEIGHTS_CHOICES:
        return Run(path, weights, Path(weights), None)
    if not (path / METADATA).exists():
        bare = sorted(path.glob("*.pdparams")) if path.is_dir() else []
        if len(bare) == 1:
            return Run(path, weights, bare[0], None)
    info = read(path)
    return Run(path, weights, weights_path(path, info, weights), info)


# --- writing -------------------------------------------------------------------

LOCK = ".lock"
_VERSIONED = re.compile(r"(epoch|best)-\d+\.(pdparams|pdopt)")
_TEMPORARY = re.compile(r"\..+\.tmp")  # an atomic write that never reached its rename: no set names one


def versioned_names(epoch: int, best_epoch: int) -> dict[str, str]:
    """The files of the set saved after ``epoch``: new names, so the committed set is never overwritten."""
    return {
        "last": f"epoch-{epoch:04d}.pdparams",
        "optimizer": f"epoch-{epoch:04d}.pdopt",
        "best": f"best-{best_epoch:04d}.pdparams",
    }


def write_history(path: Path, history: list[EpochRow]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=HISTORY_COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(row.to_json() for row in history)
    write_bytes_atomic(path, text.getvalue().encode())


def save_json(path: Path, info: RunInfo) -> None:
    write_bytes_atomic(path, (json.dumps(info.to_json(), indent=2) + "\n").encode())


class RunWriter:
    """The one writer of a run directory: it holds the directory's lock and saves whole sets.

    A save writes the epoch's weights and optimizer state under new names,
    then replaces ``mnist.json`` (the commit: it names and hashes the set),
    then points the familiar names (``mnist.pdparams``, ``best.pdparams``,
    ``mnist.pdopt``) at the new files and removes the files of older sets.  A
    crash at any instant leaves either the previous set or the new one
    complete; ``history.csv`` and ``curves.png`` are views of the metadata,
    rewritten after each commit.  ``enabled=False`` (data-parallel ranks but
    the first) writes nothing and takes no lock.
    """

    def __init__(self, out: Path, *, enabled: bool = True):
        self.out, self.enabled, self._lock = Path(out), enabled, None

    def __enter__(self) -> RunWriter:
        if self.enabled:
            self._lock = _take_lock(self.out)
            self._remove_unreferenced()  # what an interrupted save left behind
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the flock
            self._lock = None

    def check_fresh(self, overwrite: bool) -> None:
        """Refuse to start a new run over a saved one unless told to discard it."""
        if not self.enabled or not (self.out / METADATA).exists():
            return
        if not overwrite:
            try:
                done = f" (epoch {read(self.out).epochs_done} saved)"
            except UserError:
                done = ""
            raise RunDirError(
                f"{self.out}: already holds a run{done}; continue it with --resume, or start afresh with --overwrite"
            )
        (self.out / METADATA).unlink()  # the old set stops being a run at once; its files go at the first save
        _fsync_dir(self.out)

    def save_epoch(self, model, optimizer, info: RunInfo, state: RunState, improved: bool) -> None:
        if not self.enabled:
            return
        with self._saving(f"saving epoch {state.epoch}"):
            names, files = self._write_set(model, optimizer, state, improved)
            _fsync_dir(self.out)
            state.file_names, state.files = names, files
            self._commit(dataclasses.replace(info, file_names=dict(names), files=dict(files)))
            self._refresh_views(state, info)

    @contextlib.contextmanager
    def _saving(self, what: str):
        """A failed write (a full disk, a read-only remount) is one line saying what the directory still holds."""
        try:
            yield
        except OSError as e:
            self._remove_unreferenced()
            raise RunDirError(
                f"{self.out}: {what} failed ({e.strerror or e}); the directory holds {self._committed()}"
            ) from None

    def _write_set(self, model, optimizer, state: RunState, improved: bool) -> tuple[dict, dict]:
        names = versioned_names(state.epoch, state.best_epoch)
        files = {
            names["last"]: checkpoint.save_state(self.out / names["last"], model.state_dict()),
            names["optimizer"]: checkpoint.save_state(
                self.out / names["optimizer"], checkpoint.optimizer_state(model, optimizer)
            ),
        }
        if improved:
            _link_or_copy(self.out / names["last"], self.out / names["best"])
            files[names["best"]] = files[names["last"]]
        else:
            names["best"] = state.file_names["best"]
            files[names["best"]] = state.files[names["best"]]
        return names, files

    def save_final(self, info: RunInfo) -> None:
        """The metadata again once the eval metrics are known; the weight files are unchanged."""
        if self.enabled:
            with self._saving("saving the final metrics"):
                self._commit(info)

    def _commit(self, info: RunInfo) -> None:
        save_json(self.out / METADATA, info)
        _fsync_dir(self.out)
        for alias, which in ((LAST_WEIGHTS, "last"), (OPTIMIZER, "optimizer"), (BEST_WEIGHTS, "best")):
            _link_or_copy(self.out / info.file_names[which], self.out / alias)
        self._remove_unreferenced(set(info.file_names.values()))

    def _committed(self) -> str:
        try:
            return f"the complete set of epoch {read(self.out).epochs_done}"
        except UserError:
            return "no complete set yet"

    def _remove_unreferenced(self, keep: set[str] | None = None) -> None:
        """Delete temp files, and earlier sets' files: everything versioned that the committed set does not
        name.  Without ``keep``, the committed set is the metadata's; metadata that is there but does not read
        names nothing for sure, so then no set's file is deleted: a run that cannot be read stays as it was."""
        if keep is None:
            keep = self._committed_files()
        for path in self.out.iterdir():
            versioned = keep is not None and _VERSIONED.fullmatch(path.name) and path.name not in keep
            if versioned or _TEMPORARY.fullmatch(path.name):
                path.unlink(missing_ok=True)

    def _committed_files(self) -> set[str] | None:
        """The files the committed set names: none when no metadata was ever committed (or it was discarded
        under --overwrite), None when the metadata is there but does not read."""
        try:
            return set(read(self.out).file_names.values())
        except UserError:
            return None if (self.out / METADATA).exists() else set()

    def _refresh_views(self, state: RunState, info: RunInfo) -> None:
        from paddle_mnist import plots  # matplotlib only for writing: predict and export read runs without it

        write_history(self.out / HISTORY, state.history)
        plots.training_curves(state.history, self.out / CURVES, f"{info.model} / {info.loss} on {info.dataset}")


def _take_lock(out: Path):
    """Create ``out`` if needed, prove it writable, and hold an exclusive flock on ``out/.lock``."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunDirError(f"{out}: exists and is not a directory (a file, or a link to nowhere?)") from None
    except OSError as e:
        raise RunDirError(f"{out}: cannot create the output directory ({e.strerror or e})") from None
    try:
        handle = open(out / LOCK, "a+")
    except OSError as e:
        raise RunDirError(f"{out}: cannot write to the output directory ({e.strerror or e})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise RunDirError(f"{out}: another trainer (PID {holder}) is writing this run directory") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _link_or_copy(source: Path, alias: Path) -> None:
    """Atomically make ``alias`` the same file as ``source`` (a hard link; a copy where links are refused)."""
    with atomic_path(alias) as tmp:
        os.unlink(tmp)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def _fsync_dir(path: Path) -> None:
    """Make the renames in ``path`` durable before the next step depends on them."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recipe_changes(info: RunInfo, config: Config) -> list[str]:
    """What ``config`` changes of the saved run's recipe, so that it cannot resume it (empty: it can)."""
    saved = recipe_of(info.config)
    # epochs may grow with a constant learning rate; any other schedule spans all epochs
    changed = [f for f, value in saved.items() if f != "epochs" and value != getattr(config, f)]
    if config.schedule != "constant" and saved["epochs"] != config.epochs:
        changed.append("epochs (the LR schedule spans all epochs)")
    return changed


@dataclass(frozen=True)
class Resumed:
    """What a run directory holds for the trainer to continue from, each state checked against its hash."""

    state: RunState  # history, best epoch, metrics and the committed files, with the best weights in memory
    weights: dict  # the last epoch's model state
    optimizer: dict  # its optimizer state (checked against the optimizer by ``checkpoint.set_optimizer_state``)
    optimizer_file: Path  # named in the optimizer state's errors


def resume(out: Path, config: Config) -> Resumed:
    """The run in ``out``, once it is known to be the same recipe as ``config`` and its files are intact."""
    info = read(out)
    changed = recipe_changes(info, config)
    if changed:
        raise RunDirError(f"{out}: cannot resume: the saved run differs in {', '.join(changed)}")
    optimizer_file = weights_path(out, info, "optimizer")
    state = RunState(
        epoch=info.epochs_done,
        history=list(info.history),
        best_epoch=info.best_epoch,
        metrics=dataclasses.replace(info.metrics),
        files=info.files,
        file_names=info.file_names,
        best_state=checkpoint.load_state(weights_path(out, info, "best"), info.files),
    )
    return Resumed(
        state=state,
        weights=checkpoint.load_state(weights_path(out, info, "last"), info.files),
        optimizer=checkpoint.load_state(optimizer_file, info.files),
        optimizer_file=optimizer_file,
    )
