"""The training recipe: one dataclass of plain values, the named presets, and the flags that set them.

``Config()``'s defaults are the tutorial's recipe (the ``cnn`` network,
cross-entropy, SGD lr 0.01, batch 100, 10 epochs); a preset overrides some of
them and explicit flags override the preset.  ``Config`` validates itself, so
the Python API is checked as strictly as the command line.  ``train`` and
``compare`` take their recipe flags from ``add_recipe_flags``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, fields

from paddle_mnist import losses
from paddle_mnist.cli import non_negative_float, non_negative_int, positive_float, positive_int
from paddle_mnist.errors import UserError

DATASETS = ("mnist", "fashion-mnist")
# The networks a recipe may name, in --help's order; ``models.MODELS`` builds them (a test holds the two
# equal).  Listed here so that checking a recipe or a run's metadata never needs paddle.
MODEL_NAMES = (
    "linear",
    "course_mlp",
    "mlp1",
    "mlp",
    "cnn",
    "lenet",
    "convnet",
    "vgg",
    "vgg_wide",
    "resnet",
    "inception",
)
# The feed-forward networks, whose hidden layers' activation a recipe may choose (``models.FEED_FORWARD``
# holds each one's own, which a test keeps equal to these names); None = the network's own.
FEED_FORWARD = ("course_mlp", "mlp1", "mlp")
ACTIVATIONS = ("relu", "sigmoid", "tanh")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "adam")
SCHEDULES = ("constant", "cosine", "onecycle")
DEVICES = ("auto", "cpu", "gpu")
MAX_SEED = 2**32 - 1


def recipe_field(default, **kwargs):
    """A field of the recipe: it decides what is trained, so a resume must keep it (``RECIPE_FIELDS``)."""
    return field(default=default, metadata={"recipe": True}, **kwargs)


@dataclass
class Config:
    """A training run: the recipe (fields made with ``recipe_field()``: what is trained) and the run options
    (where the data and the output are, whether to resume, which device: how this invocation runs)."""

    data: str | None = None  # data file or IDX directory; None = the search of docs/data.md
    dataset: str = recipe_field("mnist")
    preset: str = "tutorial"  # a name for where the recipe's defaults came from; the recipe fields hold its values
    model: str = recipe_field("cnn")
    activation: str | None = recipe_field(None)  # the feed-forward networks' hidden activation; None = their own
    loss: str = recipe_field("cross_entropy")
    label_smoothing: float = recipe_field(0.0)  # cross_entropy's target: 1 - ε + ε/10 for the label, ε/10 for the rest
    optimizer: str = recipe_field("sgd")
    lr: float = recipe_field(0.01)
    beta1: float = recipe_field(0.9)  # Adam's moment decay rates (the other optimizers ignore them)
    beta2: float = recipe_field(0.999)
    batch_size: int = recipe_field(100)
    epochs: int = recipe_field(10)
    schedule: str = recipe_field("constant")
    weight_decay: float = recipe_field(0.0)
    augment: bool = recipe_field(False)  # random shifts, rotations and scalings
    distort: bool = recipe_field(False)  # instead, handwriting-like: elastic, aspect, shear and pen thickness too
    outliers: bool = recipe_field(False)  # outlier exposure: non-digits trained towards "no digit in particular"
    cut_digits: bool = recipe_field(False)  # also digits as the reading cuts them out of touching numbers
    seed: int = recipe_field(0)
    out: str = "output"
    resume: bool = False
    overwrite: bool = False  # discard a run already saved in ``out`` instead of refusing
    device: str = "auto"
    limit_train: int | None = recipe_field(None)
    train_on_valid: bool = recipe_field(
        False
    )  # train on the valid split too (60,000 MNIST images); the best epoch is the last
    track_eval: bool = False  # also score the eval split every epoch (the loss comparison plots it)
    amp: bool = False
    nproc: int = recipe_field(1)  # data-parallel processes: with BatchNorm part of the recipe, as each
    # process normalises over its own share of a batch

    def __post_init__(self):
        choices = {
            "dataset": DATASETS,
            "preset": tuple(PRESETS),
            "model": MODEL_NAMES,
            "loss": tuple(losses.LOSSES),
            "optimizer": OPTIMIZERS,
            "schedule": SCHEDULES,
            "device": DEVICES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"unknown {name} {getattr(self, name)!r}: choose {', '.join(allowed)}")
        if self.activation is not None:
            if self.activation not in ACTIVATIONS:
                raise UserError(f"unknown activation {self.activation!r}: choose {', '.join(ACTIVATIONS)}")
            if self.model not in FEED_FORWARD:
                raise UserError(
                    f"--activation applies to the feed-forward networks ({', '.join(FEED_FORWARD)}), not {self.model}"
                )
        for name in ("batch_size", "epochs", "nproc") + (("limit_train",) if self.limit_train is not None else ()):
            _check(name, getattr(self, name), lambda v: _is_int(v) and v >= 1, "an integer of at least 1")
        _check("seed", self.seed, lambda v: _is_int(v) and 0 <= v <= MAX_SEED, f"an integer in 0..{MAX_SEED}")
        _check("lr", self.lr, lambda v: _is_number(v) and v > 0, "a positive number")
        _check("weight_decay", self.weight_decay, lambda v: _is_number(v) and v >= 0, "0 or a positive number")
        _check("label_smoothing", self.label_smoothing, lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
        if self.label_smoothing and self.loss != "cross_entropy":
            raise UserError(f"label smoothing applies to the cross_entropy loss, not {self.loss}")
        if self.cut_digits and self.dataset != "mnist":
            raise UserError(
                f"--cut-digits cuts digits out of touching numbers: the {self.dataset} data holds no digits"
            )
        if self.outliers and losses.LOSSES[self.loss].head_size != 10:
            raise UserError(f"--outliers trains class scores towards uniform: the {self.loss} loss has none")
        for name in ("beta1", "beta2"):
            _check(name, getattr(self, name), lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")

    @classmethod
    def from_preset(cls, preset: str = "tutorial", **overrides) -> Config:
        """The preset's recipe with ``overrides`` on top.  A preset's cut digits are MNIST's: another data set
        trains the preset without them (asked for explicitly, they are refused there)."""
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r}: choose {', '.join(PRESETS)}")
        recipe = {**PRESETS[preset], **overrides, "preset": preset}
        if recipe.get("dataset", "mnist") != "mnist" and "cut_digits" not in overrides:
            recipe["cut_digits"] = False
        return cls(**recipe)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(name: str, value, ok, expected: str) -> None:
    if not ok(value):
        raise UserError(f"{name} must be {expected}, got {value!r}")


# Each preset overrides the tutorial's recipe (Config's defaults); docs/results.md says what each reaches,
# what each choice of `quick` bought, and why `fast` trains with outliers and augmentation (not a digit).
ADAM_ONE_CYCLE = dict(optimizer="adam", schedule="onecycle")  # what quick and fast share
PRESETS = {
    "tutorial": {},
    "quick": dict(ADAM_ONE_CYCLE, model="convnet", lr=0.01, beta1=0.7, beta2=0.9, batch_size=64, epochs=1),
    # vgg, not quick's convnet (the same 0.2 M parameters, 1.6x the multiply-adds): over three seeds it read more
    # digits and numbers and refused more non-digits, for about a third more training time (docs/results.md);
    # with cut digits it read 1.4-3.0 points more touching numbers over three seeds, for a fifth more steps
    "fast": dict(
        ADAM_ONE_CYCLE, model="vgg", lr=0.003, batch_size=128, epochs=6, augment=True, outliers=True, cut_digits=True
    ),
    "best": dict(
        model="vgg_wide",
        optimizer="nesterov",
        lr=0.05,
        batch_size=128,
        epochs=18,
        schedule="onecycle",
        weight_decay=5e-4,
        augment=True,
        train_on_valid=True,
    ),
}
DEFAULTS = Config()


def preset_lines() -> list[str]:
    return [
        f"  {name:<9} "
        + (", ".join(f"{k}={v}" for k, v in values.items()) or "the tutorial's recipe: every flag's default")
        for name, values in PRESETS.items()
    ]


def add_recipe_flags(parser: argparse.ArgumentParser, varied: tuple[str, ...] = ()) -> None:
    """The flags that pick a recipe, shared by ``train`` and ``compare``; unset flags stay None.  The
    ``Config`` fields in ``varied`` get no flag: the command sets them itself (compare's losses and seeds)."""
    d = DEFAULTS

    def add(flag: str, **kwargs) -> None:
        if flag[2:].replace("-", "_") not in varied:
            parser.add_argument(flag, **kwargs)

    add("--data", help="data file or IDX directory (default: the search of docs/data.md)")
    add("--dataset", choices=DATASETS, help=f"which data set (default: {d.dataset})")
    add("--preset", choices=tuple(PRESETS), help=f"a named recipe; explicit flags override it (default: {d.preset})")
    add("--model", choices=MODEL_NAMES, help=f"network, see below (default: {d.model}, the tutorial's)")
    add(
        "--loss",
        choices=tuple(losses.LOSSES),
        help=f"loss, which also sets the head size and label dtype (default: {d.loss})",
    )
    add(
        "--label-smoothing",
        type=non_negative_float,
        metavar="EPS",
        help="cross_entropy's target: 1 - EPS + EPS/10 for the label, EPS/10 for each other digit; every "
        f"loss reported includes it (default: {d.label_smoothing:g})",
    )
    add(
        "--activation",
        choices=ACTIVATIONS,
        help=f"the hidden layers' activation of a feed-forward network ({', '.join(FEED_FORWARD)}) "
        "(default: the network's own: sigmoid for course_mlp, relu for the others)",
    )
    add(
        "--optimizer",
        choices=OPTIMIZERS,
        help="optimizer; momentum is paddle's Momentum with 0.9 (the course's), nesterov the same with Nesterov's "
        f"look-ahead; adagrad starts its sums at 0 (default: {d.optimizer})",
    )
    add("--lr", type=positive_float, help=f"learning rate, the peak rate for onecycle (default: {d.lr})")
    add(
        "--batch-size",
        type=positive_int,
        help=f"images per optimizer step: the global batch, split evenly over data-parallel processes (default: {d.batch_size})",
    )
    add("--epochs", type=positive_int, help=f"passes over the training split (default: {d.epochs})")
    add("--schedule", choices=SCHEDULES, help=f"learning-rate schedule over all steps (default: {d.schedule})")
    add(
        "--weight-decay",
        type=non_negative_float,
        metavar="COEFF",
        help="L2 regularisation: COEFF * weight added to every gradient (paddle's L2Decay, as the course's "
        f"code uses it) (default: {d.weight_decay:g})",
    )
    add("--beta1", type=non_negative_float, help=f"Adam's first-moment decay rate (default: {d.beta1})")
    add("--beta2", type=non_negative_float, help=f"Adam's second-moment decay rate (default: {d.beta2})")
    add(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random shifts (2 px), rotations (10 deg) and scalings (10%%) of training images (default: off)",
    )
    add(
        "--distort",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="handwriting-like augmentation, replacing --augment's: elastic distortion (Simard 2003), aspect, "
        "shear, thinner and thicker pens, with the same shifts, rotations and scalings (default: off)",
    )
    add(
        "--outliers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="outlier exposure: every batch also holds half as many pictures that are not digits (letters, "
        "shapes, scribbles, noise, two digits in one box, blank paper, filled silhouettes, the pieces a letter or a "
        "shape is cut into; "
        'paddle_mnist.notdigits), trained towards equal scores for every digit, so that the model can say "not a '
        'digit" (default: off)',
    )
    add(
        "--cut-digits",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also train on digits as the reading of numbers cuts them out of touching training digits, a fifth "
        "as many as the train split holds (each with its cut edge and any bit of its neighbour; "
        "paddle_mnist.touching, ~50 s for MNIST's 50,000), so that a model reads touching numbers better "
        "(default: off)",
    )
    add(
        "--device",
        choices=DEVICES,
        help=f"where to train; auto = gpu when paddle has CUDA and a GPU (default: {d.device})",
    )
    add(
        "--train-on-valid",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train on the validation split too (all 60,000 MNIST training images, as published results do); "
        "valid accuracy then measures fit, not generalisation, so the kept best weights are the last "
        "epoch's (default: off)",
    )
    add(
        "--limit-train",
        type=positive_int,
        metavar="N",
        help="train on the first N training images only, for quick runs (default: all)",
    )
    add(
        "--seed",
        type=non_negative_int,
        help=f"seed for initial weights, data order and augmentation (default: {d.seed})",
    )
    add(
        "--nproc",
        type=positive_int,
        metavar="N",
        help="run N data-parallel processes through python -m paddle.distributed.launch, with its per-rank logs "
        "in OUT/launch-logs; part of the recipe, as BatchNorm layers normalise over each process's share "
        f"of a batch (default: {d.nproc})",
    )


CONFIG_FIELDS = {f.name for f in fields(Config)}
RECIPE_FIELDS = tuple(f.name for f in fields(Config) if f.metadata.get("recipe"))


def recipe_of(saved: dict) -> dict:
    """The recipe fields of a config saved in ``mnist.json``, with today's defaults for fields older runs lack."""
    return {name: saved.get(name, getattr(DEFAULTS, name)) for name in RECIPE_FIELDS}


def from_args(args: argparse.Namespace, **fixed) -> Config:
    """The Config that parsed flags describe: preset values first, then every flag the user gave, then ``fixed``."""
    given = {k: v for k, v in vars(args).items() if k in CONFIG_FIELDS and v is not None}
    return Config.from_preset(given.pop("preset", "tutorial"), **{**given, **fixed})
