"""``mnist.json``: what a run records, and the validation of every field before anything is built from it.

``RunInfo`` is the whole metadata (model, loss, pixel scaling, recipe, scores,
history, and the files of the committed set with their SHA-256); ``EpochRow``
one epoch of its history; ``Metrics`` its scores; ``RunState`` where a run
stands while it trains.  ``RunInfo.from_json`` checks each field's type and
range (``_Schema``), so a crafted or damaged file is one line naming the field.
Schema 1 (fixed file names, before crash-consistent saves) still reads.
``rundir`` reads and writes the files these records describe.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from paddle_mnist import calibration, losses
from paddle_mnist.calibration import Calibration
from paddle_mnist.config import ACTIVATIONS, DATASETS, FEED_FORWARD, MODEL_NAMES, Config
from paddle_mnist.data.encoding import ENCODINGS, Encoding
from paddle_mnist.errors import UserError

if TYPE_CHECKING:  # the data stack (locate, download) is not needed to read a run
    from paddle_mnist.data.splits import MnistData

SCHEMA_VERSION = 3  # 3: the optimizer "momentum" is plain momentum, and Nesterov's is "nesterov"
# The file of each role under its fixed name: schema 1 had only these, and they stay as links to the current set.
LAST_WEIGHTS, BEST_WEIGHTS, OPTIMIZER = "mnist.pdparams", "best.pdparams", "mnist.pdopt"
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
    ece: float | None = None  # the eval split's expected calibration error, before the temperature
    ece_calibrated: float | None = None  # and with it (``calibration``)

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
    calibration: Calibration | None = None  # fitted once training ends (``trainer.finish``)

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
    calibration: Calibration | None = None  # None: not fitted (a run still training, or trained on valid)
    activation: str | None = None  # a feed-forward network's hidden activation (config's); None = its own

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
            calibration=state.calibration,
            activation=config.activation,
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
        } | ({"calibration": self.calibration.to_json()} if self.calibration else {})

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
        loss = losses.LOSSES[self.choice("loss", tuple(losses.LOSSES))]
        self.get("outputs", int, f"{loss.head_size} for the {loss.name} loss", lambda v: v == loss.head_size)
        self.get("label_dtype", str, f"{loss.label_dtype!r} for the {loss.name} loss", lambda v: v == loss.label_dtype)
        file_names = self.names("weights", _plain_name, "file names inside the run directory")
        if set(file_names) != set(FIXED_NAMES):
            self.fail("weights", f"an object with keys {', '.join(FIXED_NAMES)}")
        model = self.choice("model", MODEL_NAMES)
        config = self.get("config", dict, "an object")
        if version < 3 and config.get("optimizer") == "momentum":
            config = config | {"optimizer": "nesterov"}  # what schemas 1 and 2 called "momentum"
        return RunInfo(
            model=model,
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
            config=config,
            metrics=self.metrics(),
            best_epoch=self.count("best_epoch"),
            files=self.names("files", lambda v: isinstance(v, str) and len(v) == 64, "an object of SHA-256 digests"),
            history=self.history(),
            paddle_version=self.get("paddle_version", str, "a string", optional=True) or "",
            data_source=self.get("data_source", str, "a path", optional=True),
            file_names=file_names,
            calibration=self.calibration(),
            activation=self.activation(model, config),
        )

    def activation(self, model: str, config: dict) -> str | None:
        """``config.activation``: what the predictor builds the network with, so checked like the model."""
        value = config.get("activation")
        if value is not None and (value not in ACTIVATIONS or model not in FEED_FORWARD):
            self.fail("config", f"an activation of {', '.join(ACTIVATIONS)} for a feed-forward network, or null")
        return value

    def calibration(self) -> Calibration | None:
        if self.obj.get("calibration") is None:
            return None
        return calibration.from_json(self.obj["calibration"], lambda expected: self.fail("calibration", expected))

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
