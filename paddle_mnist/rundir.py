"""The run directory: the one module that knows what a training run leaves behind.

    mnist.json            the metadata (``RunInfo``), replaced last: the commit of each save.
                          It names the files of the current set and records their SHA-256.
    epoch-NNNN.pdparams   the last epoch's weights      epoch-NNNN.pdopt   its optimizer state
    best-NNNN.pdparams    the best epoch's weights (by valid accuracy)
    mnist.pdparams, mnist.pdopt, best.pdparams
                          the same files under the tutorial's names (hard links, updated after each commit)
    history.csv, curves.png   one row per epoch, and its plot: views of the metadata
    inference/            ``paddle-mnist export``'s Paddle Inference model
    .lock                 held by the one trainer writing the directory

The trainer saves through a ``RunWriter`` and continues through ``resume``;
the predictor, the exporter and the loss comparison read through ``read`` and
``read_with_weights``, which check the weights against the recorded hashes.
``RunInfo.from_json`` validates every field's type and range before anything
is built from it.  Schema 1 (fixed file names, before crash-consistent saves)
still reads.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import io
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from paddle_mnist import checkpoint, errors, losses
from paddle_mnist.config import DATASETS, MODEL_NAMES, Config, recipe_of
from paddle_mnist.data.encoding import ENCODINGS, Encoding
from paddle_mnist.errors import UserError
from paddle_mnist.fileio import atomic_path, read_capped, write_bytes_atomic

if TYPE_CHECKING:  # the data stack (locate, download) is not needed to read a run
    from paddle_mnist.data.splits import MnistData

METADATA = "mnist.json"
LAST_WEIGHTS, BEST_WEIGHTS, OPTIMIZER = "mnist.pdparams", "best.pdparams", "mnist.pdopt"
HISTORY, CURVES = "history.csv", "curves.png"
INFERENCE_PREFIX = Path("inference") / "mnist"  # export's default, inside the run directory
SCHEMA_VERSION = 2
# The file of each role under its fixed name: schema 1 had only these, and they stay as links to the current set.
FIXED_NAMES = {"last": LAST_WEIGHTS, "best": BEST_WEIGHTS, "optimizer": OPTIMIZER}


@dataclass(frozen=True)
class EpochRow:
    """One epoch of a run, as ``train.run_epoch`` measures it: a row of ``history.csv`` and of the metadata's
    history, read by the trainer (best epoch), the loss comparison and the curves."""

    epoch: int
    train_loss: float
    train_acc: float
    valid_loss: float
    valid_acc: float
    seconds: float
    images_per_s: float
    eval_loss: float | None = None  # only when the eval split is tracked (``track_eval``: compare)
    eval_acc: float | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


HISTORY_COLUMNS = tuple(f.name for f in dataclasses.fields(EpochRow))
_REQUIRED_COLUMNS = {f.name for f in dataclasses.fields(EpochRow) if f.default is dataclasses.MISSING}


@dataclass
class Metrics:
    """What a run scored: valid figures updated each epoch, eval figures once training ends (``train.finish``)."""

    best_valid_acc: float | None = None
    valid_acc: float | None = None
    valid_loss: float | None = None
    eval_acc: float | None = None  # with the best-validation epoch's weights (the last's under --train-on-valid)
    eval_loss: float | None = None
    eval_acc_last: float | None = None  # with the last epoch's weights
    confusion: list[list[int]] | None = None  # counts[true digit][predicted digit] on the eval split

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


class RunDirError(UserError):
    pass


@dataclass
class RunState:
    """Where a run stands: what the trainer updates each epoch and ``resume`` restores."""

    epoch: int = 0
    history: list[EpochRow] = field(default_factory=list)
    best_epoch: int = 0
    metrics: Metrics = field(default_factory=Metrics)
    files: dict[str, str] = field(default_factory=dict)  # file name -> SHA-256, of the committed set
    file_names: dict[str, str] = field(default_factory=dict)  # "last" / "best" / "optimizer" -> file name
    best_state: dict | None = None  # the best epoch's state dict, in memory only: every rank keeps its own

    def record(self, row: EpochRow, by_valid: bool = True) -> bool:
        """Add an epoch's row; True when it is the best by valid accuracy so far, or, when
        ``by_valid`` is off (valid was trained on), always: the best epoch is the last."""
        self.history.append(row)
        improved = not by_valid or not self.best_epoch or row.valid_acc > self.metrics.best_valid_acc
        if improved:
            self.best_epoch = row.epoch
            self.metrics.best_valid_acc = row.valid_acc
        self.epoch = row.epoch
        self.metrics.valid_acc, self.metrics.valid_loss = row.valid_acc, row.valid_loss
        return improved


@dataclass(frozen=True)
class RunInfo:
    """``mnist.json``: everything a predictor needs to rebuild the model with no flags, and a resume to continue."""

    model: str
    loss: str
    head_size: int  # mnist.json calls it "outputs", as the first runs did
    label_dtype: str
    encoding: Encoding
    dataset: str
    classes: tuple[str, ...]
    epochs_done: int
    seed: int
    config: dict
    metrics: Metrics
    best_epoch: int
    files: dict[str, str]
    history: list[EpochRow]
    paddle_version: str = ""
    data_source: str | None = None
    file_names: dict[str, str] = field(default_factory=lambda: dict(FIXED_NAMES))  # mnist.json: "weights"

    @classmethod
    def describe(cls, config: Config, data: MnistData, state: RunState) -> RunInfo:
        """The metadata of a run of ``config`` on ``data`` that has reached ``state``."""
        loss = losses.LOSSES[config.loss]
        return cls(
            model=config.model,
            loss=loss.name,
            head_size=loss.head_size,
            label_dtype=loss.label_dtype,
            encoding=data.encoding,
            dataset=data.dataset,
            classes=data.classes,
            epochs_done=state.epoch,
            seed=config.seed,
            config=dataclasses.asdict(config),
            metrics=dataclasses.replace(state.metrics),
            best_epoch=state.best_epoch,
            files=dict(state.files),
            history=list(state.history),
            paddle_version=_paddle_version(),
            data_source=str(data.source),
            file_names=dict(state.file_names or FIXED_NAMES),
        )

    def to_json(self) -> dict:
        return {
            "format": SCHEMA_VERSION,
            "model": self.model,
            "loss": self.loss,
            "outputs": self.head_size,
            "label_dtype": self.label_dtype,
            "normalization": dataclasses.asdict(self.encoding),
            "dataset": self.dataset,
            "classes": list(self.classes),
            "data_source": self.data_source,
            "epochs_done": self.epochs_done,
            "seed": self.seed,
            "config": self.config,
            "metrics": self.metrics.to_json(),
            "best_epoch": self.best_epoch,
            "weights": self.file_names,
            "files": self.files,
            "paddle_version": self.paddle_version,
            "history": [row.to_json() for row in self.history],
        }

    @classmethod
    def from_json(cls, obj, path: Path) -> RunInfo:
        """Validate a parsed ``mnist.json``; every problem is one line naming ``path`` and the field."""
        return _Schema(obj, path).run_info()


def _paddle_version() -> str:
    """The version of the paddle that trained a run: imported here, so that reading runs never needs paddle."""
    from paddle_mnist._paddle import paddle

    return paddle.__version__


class _Schema:
    """Checks of ``mnist.json``'s fields, one method per kind, each failing with the field's name."""

    def __init__(self, obj, path: Path):
        if not isinstance(obj, dict):
            raise RunDirError(f"{path}: expected a JSON object, got {type(obj).__name__}")
        self.obj, self.path = obj, path

    def fail(self, name: str, expected: str):
        raise RunDirError(f"{self.path}: {name!r} must be {expected}, got {_short(self.obj.get(name))}")

    def get(self, name: str, kind, expected: str, ok=lambda v: True, optional: bool = False):
        if optional and self.obj.get(name) is None:
            return None
        value = self.obj.get(name)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool) or not ok(value):
            self.fail(name, expected)
        return value

    def choice(self, name: str, allowed) -> str:
        return self.get(name, str, f"one of {', '.join(allowed)}", lambda v: v in allowed)

    def count(self, name: str) -> int:
        return self.get(name, int, "an integer of 0 or more", lambda v: 0 <= v < 1 << 31)

    def names(self, name: str, ok, expected: str) -> dict:
        return self.get(name, dict, expected, lambda d: all(isinstance(k, str) and ok(v) for k, v in d.items()))

    def run_info(self) -> RunInfo:
        version = self.get(
            "format", int, f"a schema version up to {SCHEMA_VERSION}", lambda v: 1 <= v <= SCHEMA_VERSION
        )
        del version  # every version so far reads the same way
        loss = losses.LOSSES[self.choice("loss", tuple(losses.LOSSES))]
        self.get("outputs", int, f"{loss.head_size} for the {loss.name} loss", lambda v: v == loss.head_size)
        self.get("label_dtype", str, f"{loss.label_dtype!r} for the {loss.name} loss", lambda v: v == loss.label_dtype)
        file_names = self.names("weights", _plain_name, "file names inside the run directory")
        if set(file_names) != set(FIXED_NAMES):
            self.fail("weights", f"an object with keys {', '.join(FIXED_NAMES)}")
        return RunInfo(
            model=self.choice("model", MODEL_NAMES),
            loss=loss.name,
            head_size=loss.head_size,
            label_dtype=loss.label_dtype,
            encoding=self.encoding(),
            dataset=self.choice("dataset", DATASETS),
            classes=tuple(
                self.get(
                    "classes",
                    list,
                    "a list of 10 class names",
                    lambda v: len(v) == 10 and all(isinstance(c, str) for c in v),
                )
            ),
            epochs_done=self.count("epochs_done"),
            seed=self.count("seed"),
            config=self.get("config", dict, "an object"),
            metrics=self.metrics(),
            best_epoch=self.count("best_epoch"),
            files=self.names("files", lambda v: isinstance(v, str) and len(v) == 64, "an object of SHA-256 digests"),
            history=self.history(),
            paddle_version=self.get("paddle_version", str, "a string", optional=True) or "",
            data_source=self.get("data_source", str, "a path", optional=True),
            file_names=file_names,
        )

    def history(self) -> list[EpochRow]:
        rows = self.get(
            "history",
            list,
            f"a list of epoch rows of {', '.join(HISTORY_COLUMNS)} (numbers; the last two optional)",
            lambda v: all(
                isinstance(r, dict)
                and _REQUIRED_COLUMNS <= set(r) <= set(HISTORY_COLUMNS)
                and all(_number(x) for x in r.values())
                and type(r["epoch"]) is int
                for r in v
            ),
        )
        return [EpochRow(**row) for row in rows]

    def metrics(self) -> Metrics:
        """Accuracies and losses (numbers), and the eval split's 10x10 confusion matrix of counts; a key this
        version does not know (none was ever written) is refused like a wrong value."""
        known = {f.name for f in dataclasses.fields(Metrics)}

        def ok(key, value):
            if key == "confusion":
                return (
                    isinstance(value, list)
                    and len(value) == 10
                    and all(
                        isinstance(row, list)
                        and len(row) == 10
                        and all(type(n) is int and 0 <= n < 1 << 31 for n in row)
                        for row in value
                    )
                )
            return _number(value)

        values = self.get(
            "metrics",
            dict,
            f"an object of {', '.join(sorted(known))}: numbers, and a 10x10 confusion matrix",
            lambda d: all(k in known and ok(k, v) for k, v in d.items()),
        )
        return Metrics(**values)

    def encoding(self) -> Encoding:
        norm = self.get(
            "normalization",
            dict,
            f"an object naming one of {', '.join(ENCODINGS)}",
            lambda v: v.get("name") in ENCODINGS,
        )
        known = ENCODINGS[norm["name"]]
        if (norm.get("scale"), norm.get("offset")) != (known.scale, known.offset):
            self.fail("normalization", f"{known.name}'s scale {known.scale} and offset {known.offset}")
        return known


def _number(value) -> bool:
    """A finite int or float of a size a metric can have (bounded before anything prints or plots it)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e15 and value == value


def _plain_name(value) -> bool:
    """A file name in the run directory itself: no separators, no '..'."""
    return isinstance(value, str) and value not in ("", ".", "..") and "/" not in value and "\0" not in value


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


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


def read_with_weights(run_dir: str | Path, which: str = "best") -> tuple[RunInfo, dict]:
    """The metadata and the state dict it names, as one consistent set even while a trainer saves.

    A trainer removes the previous set's files right after committing a new
    one; a reader that lost that race reads the new metadata and tries again.
    """
    run_dir = Path(run_dir)
    for _ in range(3):
        info = read(run_dir)
        try:
            return info, checkpoint.load_state(weights_path(run_dir, info, which), info.files)
        except checkpoint.CheckpointError:
            if read(run_dir) == info:
                raise
    raise RunDirError(f"{run_dir}: the run changed three times while being read; try again")


# --- writing -------------------------------------------------------------------

LOCK = ".lock"
_VERSIONED = re.compile(r"(epoch|best)-\d+\.(pdparams|pdopt)|\..+\.tmp")


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
        """Delete earlier sets' files and temp files: everything versioned that the committed set does not name."""
        if keep is None:
            try:
                keep = set(read(self.out).file_names.values())
            except UserError:
                keep = set()
        for path in self.out.iterdir():
            if _VERSIONED.fullmatch(path.name) and path.name not in keep:
                path.unlink(missing_ok=True)

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


def resume(out: Path, config: Config, trainee) -> RunState:
    """Load the run in ``out`` into ``trainee`` (``train.Trainee``) after checking it is the same run, its
    files are intact and the optimizer state is all of this optimizer's."""
    info = read(out)
    changed = recipe_changes(info, config)
    if changed:
        raise RunDirError(f"{out}: cannot resume: the saved run differs in {', '.join(changed)}")
    checkpoint.load_weights(trainee.model, weights_path(out, info, "last"), info.files)
    checkpoint.load_optimizer_state(
        trainee.model,
        trainee.optimizer,
        weights_path(out, info, "optimizer"),
        info.files,
        scheduler=trainee.scheduler,
        steps_done=info.epochs_done * trainee.steps_per_epoch,
    )
    best = checkpoint.load_state(weights_path(out, info, "best"), info.files)
    return RunState(
        epoch=info.epochs_done,
        history=list(info.history),
        best_epoch=info.best_epoch,
        metrics=dataclasses.replace(info.metrics),
        files=info.files,
        file_names=info.file_names,
        best_state=best,
    )
