"""Predict the digit in local images: ``python -m paddle_mnist.predict IMG [IMG ...]``.

``Predictor.from_dir("output")`` rebuilds the trained model from its metadata
(no flags needed) and ``predict`` accepts paths, PIL images, uint8 or float
arrays, or a list of them, run through the preprocessing in
``paddle_mnist.preprocess`` and then one batched forward pass.  The network runs
on one of ``paddle_mnist.engines``; with the ONNX export, nothing here imports
paddle (``python -X importtime`` shows it), which is most of a prediction's time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from paddle_mnist import checkpoint, engines, losses, preprocess, rundir, views
from paddle_mnist.cli import positive_int
from paddle_mnist.data.classes import MNIST_CLASSES
from paddle_mnist.data.encoding import TUTORIAL_ENCODING, Encoding
from paddle_mnist.errors import UserError, cli_entry

CHUNK = 64  # images per forward pass: a batch that runs fast without holding a long list in memory


@dataclass
class Prediction:
    source: str
    digit: int | None = None
    probability: float | None = None
    topk: list[tuple[int, float]] = field(default_factory=list)
    raw: float | None = None  # the regression output, for the mse loss
    error: str | None = None  # why there is no prediction (unreadable, no digit found)


@dataclass(frozen=True)
class ModelSummary:
    """What a predictor reads with, for people: ``GET /api/model`` returns it."""

    model: str  # a registry name; for a committee, its members' joined with " + "
    loss: str
    dataset: str
    classes: tuple[str, ...]
    eval_acc: float | None  # as the run recorded it; None for a bare file or a committee
    epochs: int | None
    source: str  # the run directory or the file
    engine: str = "dynamic"  # which engine answers (``engines.ENGINES``); a committee's members' joined
    weights_sha256: str | None = None  # of the state file it reads (its export's, on onnx or inference)
    committee: tuple[str, ...] | None = None  # the members' directories
    tta: str | None = None  # the test-time views, when read with any

    def to_json(self) -> dict:
        row = dataclasses.asdict(self)
        return {k: v for k, v in row.items() if v is not None or k not in ("committee", "tta")}


@dataclass(frozen=True)
class Predictor:
    """A trained model ready to predict: the engine that runs it (``engine(batch) -> outputs``), the loss that
    turns outputs into digits, the pixel scaling its training data had, and its classes.  A variant (another
    engine, test-time views) is a ``dataclasses.replace`` of it."""

    engine: object
    loss: losses.Loss
    encoding: Encoding
    classes: tuple[str, ...]
    summary: ModelSummary
    notes: tuple[str, ...] = ()  # lines for the user: what was inferred from a bare file, why an export is not used

    @classmethod
    def from_dir(
        cls,
        model_dir: str | Path = "output",
        *,
        weights: str = "best",
        engine: str = "auto",
        inference_prefix: str | Path | None = None,
    ) -> Predictor:
        """Rebuild from a training output dir (``mnist.json`` says which model, loss and scaling),
        a directory holding one bare ``.pdparams``, or ``weights`` naming such a file.

        ``engine`` "auto" runs the run's ONNX export when it was made from these very weights and
        onnxruntime is there (``engines.choose``), else the paddle model; "onnx" runs the export
        whatever it was made from, with a note when its record says it is stale; "inference" runs
        the Paddle Inference export."""
        model_dir = Path(model_dir)
        bare = bare_state_file(model_dir, weights)
        prefix = Path(inference_prefix) if inference_prefix else model_dir / rundir.INFERENCE_PREFIX
        if bare is not None:
            return on_engine(from_state_file(bare), "dynamic" if engine == "auto" else engine, prefix)
        info = rundir.read(model_dir)
        weights_sha = info.files.get(info.file_names[weights], "")
        notes = ()
        if engine == "auto":
            engine, note = engines.choose(prefix, weights_sha)
            notes = (note,) if note else ()
        elif engine == "onnx" and engines.onnx_path(prefix).is_file():
            reason = engines.stale(engines.onnx_path(prefix), weights_sha)
            notes = (f"{engines.onnx_path(prefix)}: warning: {reason}",) if reason else ()
        if engine == "dynamic":
            return dataclasses.replace(load_trained(model_dir, weights), notes=notes)
        predictor = Predictor(None, *described(info, model_dir, weights), notes=notes)
        return on_engine(predictor, engine, prefix)

    @classmethod
    def committee(cls, model_dirs: list, *, weights: str = "best", engine: str = "auto") -> Predictor:
        """Several trained models voting: their class probabilities averaged, as the best MNIST results do.

        The members must share the input scaling and the classes, and have class-probability heads.
        """
        members = [cls.from_dir(d, weights=weights, engine=engine) for d in model_dirs]
        if len(members) == 1:
            return members[0]
        first = members[0]
        for directory, member in zip(model_dirs, members):
            if member.loss.head_size != len(member.classes):
                raise UserError(f"{directory}: a {member.loss.name} model has no class probabilities to average")
            if (member.encoding, member.classes) != (first.encoding, first.classes):
                raise UserError(f"{directory}: its pixel scaling or classes differ from {model_dirs[0]}'s")

        def vote(batch: np.ndarray) -> np.ndarray:
            """log of the mean probability: the cross-entropy loss turns it back into that probability."""
            return views.log_mean([m.loss.scores(m.engine(batch)) for m in members])

        summary = dataclasses.replace(
            first.summary,
            model=" + ".join(m.summary.model for m in members),
            eval_acc=None,
            engine=" + ".join(m.summary.engine for m in members),
            weights_sha256=None,
            committee=tuple(str(d) for d in model_dirs),
        )
        notes = tuple(note for m in members for note in m.notes)
        return dataclasses.replace(
            first, engine=vote, loss=losses.LOSSES["cross_entropy"], summary=summary, notes=notes
        )

    def with_views(self, name: str, source: str = "the model") -> Predictor:
        """This predictor reading every digit in the test-time views ``name`` (``views.VIEW_SETS``)
        and averaging their class probabilities; itself for "none"."""
        if name == "none":
            return self
        if self.loss.head_size != len(self.classes):
            raise UserError(f"{source}: a {self.loss.name} model has no class probabilities to average over views")
        engine = views.averaged(self.engine, self.loss.scores, self.encoding.background, name)
        return dataclasses.replace(
            self,
            engine=engine,
            loss=losses.LOSSES["cross_entropy"],
            summary=dataclasses.replace(self.summary, tta=name),
        )

    def model_input(self, item, naive: bool = False) -> np.ndarray:
        """float32 [1,28,28] as the model saw its training data (or the tutorial's naive input)."""
        image = item_image(item)
        if naive:
            return preprocess.naive(image)[None]
        return self.encoding.decode(preprocess.mnist_like(image))[None]

    def predict(self, items, *, topk: int = 3, naive: bool = False):
        """A ``Prediction`` for one item, or a list for a list (one forward pass per ``CHUNK`` items)."""
        if not isinstance(items, (list, tuple)):
            return next(self.predict_iter([items], topk=topk, naive=naive))
        return list(self.predict_iter(items, topk=topk, naive=naive))

    def predict_iter(self, items, *, topk: int = 3, naive: bool = False, chunk: int = CHUNK):
        """Predictions in the order of ``items`` (any iterable), ``chunk`` images per forward pass.

        Memory stays that of one chunk however many items there are.  An item
        that cannot be read, decoded or converted gets its own one-line error;
        the others are predicted all the same.
        """
        pending = []
        for item in items:
            pending.append(item)
            if len(pending) == chunk:
                yield from self._predict_chunk(pending, topk, naive)
                pending = []
        yield from self._predict_chunk(pending, topk, naive)

    def _predict_chunk(self, items: list, topk: int, naive: bool) -> list[Prediction]:
        results, inputs, slots = [], [], []
        for item in items:
            result = Prediction(source=describe(item))
            try:
                with preprocess.decoding(result.source):
                    inputs.append(self.model_input(item, naive))
                slots.append(result)
            except UserError as e:  # ``decoding`` has put the source first
                result.error = str(e)
            results.append(result)
        if inputs:
            outputs = self.engine(np.stack(inputs).astype(np.float32))
            for result, row in zip(slots, outputs):
                self.fill(result, row, topk)
        return results

    def fill(self, result: Prediction, output: np.ndarray, topk: int) -> None:
        """Set ``result``'s digit, probability, top-k (and raw value) from the model's ``output`` row."""
        scores = self.loss.scores(output[None])[0]
        result.digit = int(self.loss.digits(output[None])[0])
        result.probability = float(scores[result.digit])
        order = np.argsort(-scores, kind="stable")[:topk]
        result.topk = [(int(k), float(scores[k])) for k in order]
        if self.loss.head_size == 1:
            result.raw = float(output[0])


def bare_state_file(model_dir: Path, weights: str) -> Path | None:
    """The bare ``.pdparams`` to read: ``weights`` when it names a file, or a directory's one ``.pdparams``
    when it holds no run; None for a run directory."""
    if weights not in ("best", "last"):
        return Path(weights)
    if not (model_dir / rundir.METADATA).exists():
        bare = sorted(model_dir.glob("*.pdparams")) if model_dir.is_dir() else []
        if len(bare) == 1:
            return bare[0]
    return None


def described(info: rundir.RunInfo, model_dir: Path, weights: str) -> tuple:
    """(loss, encoding, classes, summary) of a run, all from its metadata: no weights are read."""
    summary = ModelSummary(
        model=info.model,
        loss=info.loss,
        dataset=info.dataset,
        classes=info.classes,
        eval_acc=info.metrics.eval_acc,
        epochs=info.epochs_done,
        source=str(model_dir),
        weights_sha256=info.files.get(info.file_names[weights]),
    )
    return losses.LOSSES[info.loss], info.encoding, info.classes, summary


def on_engine(predictor: Predictor, engine: str, prefix: Path) -> Predictor:
    """``predictor`` answering through ``engine``: its own dynamic model, or the export under ``prefix``."""
    if engine == "dynamic":
        return predictor
    runner = engines.InferenceEngine(prefix) if engine == "inference" else engines.OnnxEngine(engines.onnx_path(prefix))
    return dataclasses.replace(predictor, engine=runner, summary=dataclasses.replace(predictor.summary, engine=engine))


def load_trained(model_dir: str | Path = "output", weights: str = "best") -> Predictor:
    """The network in ``model_dir`` (a run directory with ``mnist.json``, or a directory holding one
    ``.pdparams``), or in ``weights`` when that is a ``.pdparams`` file rather than best / last, on the
    dynamic engine (``predictor.engine.model`` is the ``paddle.nn.Layer``)."""
    from paddle_mnist import models

    model_dir = Path(model_dir)
    bare = bare_state_file(model_dir, weights)
    if bare is not None:
        return from_state_file(bare)
    info, state = rundir.read_with_weights(model_dir, weights)
    model = models.build(info.model, info.head_size)
    checkpoint.fit_state(model, state, rundir.weights_path(model_dir, info, weights))
    return Predictor(engines.DynamicEngine(model), *described(info, model_dir, weights))


def from_state_file(path: Path) -> Predictor:
    """A bare state dict (the tutorial's ``paddle.save(model.state_dict(), ...)``, hapi's ``Model.save``):
    the network is the registry's one with the same parameter names and shapes, the loss follows
    the head (10 outputs: cross-entropy, 1: the tutorial's regression), pixels are scaled as the
    tutorial's data file stores them (pixel/256)."""
    from paddle_mnist import models

    state = checkpoint.load_state(path)
    shapes = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, np.ndarray)}
    matches = models.identify(shapes)
    if not matches:
        held = ", ".join(f"{k} {list(v)}" for k, v in list(shapes.items())[:4]) or "no arrays"
        raise checkpoint.CheckpointError(
            f"{path}: matches no known network: it holds {held}{', ...' if len(shapes) > 4 else ''}; compared with "
            f"{', '.join(models.MODELS)}, each with a {' or '.join(map(str, models.HEADS))}-output head"
        )
    name, head_size = matches[0]
    loss = losses.LOSSES["cross_entropy" if head_size == 10 else "mse"]
    model = models.build(name, head_size)
    checkpoint.fit_state(model, state, path)
    inferred = (
        f"{path}: a bare state dict; inferred the {name} network with a {head_size}-output head "
        f"({loss.name}) and the tutorial's pixel scaling ({TUTORIAL_ENCODING.name})"
    )
    classes = tuple(MNIST_CLASSES)
    summary = ModelSummary(
        model=name,
        loss=loss.name,
        dataset="mnist",
        classes=classes,
        eval_acc=None,
        epochs=None,
        source=str(path),
        weights_sha256=engines.file_sha256(path),
    )
    return Predictor(engines.DynamicEngine(model), loss, TUTORIAL_ENCODING, classes, summary, (inferred,))


def item_image(item) -> Image.Image:
    """A PIL image from a path, a PIL image, or a grey array: integers 0..255, or floats in [0, 1] (1 = white)."""
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, (str, Path)):
        return preprocess.open_image(Path(item))
    return Image.fromarray(gray_levels(np.asarray(item)), mode="L")


def gray_levels(array: np.ndarray) -> np.ndarray:
    """uint8 [H, W] from an array of grey values, with one line for each way it can be unusable."""
    shape = list(array.shape)
    if array.ndim > 2 and np.prod(array.shape[:-2]) == 1:
        array = array.reshape(array.shape[-2:])
    if array.ndim != 2 or array.size == 0:
        raise UserError(f"an image array must be a non-empty [H, W], got shape {shape}")
    if array.size > preprocess.MAX_PIXELS:
        raise UserError(f"an image array of {array.size:,} pixels is over the {preprocess.MAX_PIXELS:,}-pixel limit")
    kind = array.dtype.kind
    if kind == "b":
        return array.astype(np.uint8) * 255
    if kind in "iu":
        if array.min() < 0 or array.max() > 255:
            raise UserError(f"an integer image array must hold grey levels 0..255, got {array.min()}..{array.max()}")
        return array.astype(np.uint8)
    if kind == "f":
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise UserError("a float image array must hold finite values in [0, 1]")
        return np.rint(array * 255).astype(np.uint8)
    raise UserError(f"an image array must hold numbers, got dtype {array.dtype}")


def describe(item) -> str:
    if isinstance(item, (str, Path)):
        return str(item)
    return f"<{type(item).__name__} {getattr(item, 'size', getattr(item, 'shape', ''))}>"


def format_line(result: Prediction, classes: list[str]) -> str:
    top = ", ".join(f"{classes[k]} {p:.3f}" for k, p in result.topk)
    raw = f", raw {result.raw:.2f}" if result.raw is not None else ""
    return (
        f"{printable(result.source)}: {classes[result.digit]} (p={result.probability:.3f}{raw}) "
        f"top-{len(result.topk)}: {top}"
    )


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``...): a file name holding a newline must not
    start a line of its own, which could pass for another image's prediction."""
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape", "backslashreplace").decode() for c in text
    )


def add_model_flags(parser: argparse.ArgumentParser, *, committee: bool, runtime: bool = True) -> None:
    """The flags that say which trained model to read, the same in every command that reads one:
    ``--model-dir`` (given again: a committee, where ``committee``) and ``--weights``; with ``runtime``,
    how to run it too: ``--engine``, ``--inference-prefix`` and ``--tta``.  ``from_flags`` builds the
    ``Predictor`` they describe."""
    add = parser.add_argument
    if committee:
        add(
            "--model-dir",
            type=Path,
            action="append",
            default=None,
            help="a training output dir with mnist.json (or a directory holding one .pdparams); give it several "
            "times for a committee that averages the models' probabilities (default: output)",
        )
    else:
        add(
            "--model-dir",
            type=Path,
            default=Path("output"),
            help="a training output dir with mnist.json, or a directory holding one .pdparams (default: output)",
        )
    add(
        "--weights",
        default="best",
        metavar="best|last|FILE",
        help="the run's best-validation or last epoch's weights, or a bare .pdparams state dict "
        "(the tutorial's paddle.save, hapi's Model.save): its network is inferred (default: best)",
    )
    if not runtime:
        return
    add(
        "--engine",
        choices=engines.ENGINES,
        default="auto",
        help="auto = the run's ONNX export when it was made from these weights and onnxruntime is installed "
        "(no paddle import: fast), else dynamic; dynamic = the paddle.nn model; inference = the exported model "
        "in Paddle Inference; onnx = the ONNX export in onnxruntime (default: auto)",
    )
    add(
        "--inference-prefix",
        type=Path,
        default=None,
        help="path prefix of the exported model, PREFIX.json/.pdiparams or PREFIX.onnx; one model's, so not "
        "with a committee (default: MODEL_DIR/inference/mnist)",
    )
    views.add_argument(parser)


def model_dirs(args: argparse.Namespace) -> list[Path]:
    """The ``--model-dir`` values as a list, whether the command takes a committee or not."""
    given = args.model_dir or [Path("output")]
    return list(given) if isinstance(given, list) else [given]


def from_flags(args: argparse.Namespace, command: str) -> Predictor:
    """The predictor that ``add_model_flags``'s flags describe: one model or a committee, on its engine,
    read in its views; the line saying what was inferred from a bare file goes to stderr."""
    dirs = model_dirs(args)
    if len(dirs) > 1:
        if args.inference_prefix:
            raise UserError("--inference-prefix names one model's export; a committee reads MODEL_DIR/inference/mnist")
        predictor = Predictor.committee(dirs, weights=args.weights, engine=args.engine)
    else:
        predictor = Predictor.from_dir(
            dirs[0], weights=args.weights, engine=args.engine, inference_prefix=args.inference_prefix
        )
    predictor = predictor.with_views(args.tta, source=" + ".join(map(str, dirs)))
    for note in predictor.notes:
        print(f"{command}: {note}", file=sys.stderr)
    return predictor


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paddle-mnist predict", description="Predict the digit in local images.")
    parser.add_argument("images", nargs="+", metavar="IMG", help="image files (any format Pillow reads)")
    add_model_flags(parser, committee=True)
    parser.add_argument("--topk", type=positive_int, default=3, help="how many ranked guesses to show (default: 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of text (default: text)")
    parser.add_argument(
        "--naive",
        action="store_true",
        help="the tutorial's preprocessing (grey, squash to 28x28, invert), for comparison (default: off)",
    )
    parser.add_argument(
        "--explain",
        type=Path,
        metavar="OUT.png",
        default=None,
        help="also draw what the network looked at into OUT.png: for each image read (the first 32), its "
        "model input, then saliency and Grad-CAM maps for the digit read and the runner-up; computed with "
        "paddle's gradients, so it loads the paddle model (default: off)",
    )
    return parser


def check_explainable(args: argparse.Namespace) -> None:
    """``--explain`` takes the gradients of one paddle network: under auto or dynamic, of one model."""
    if args.engine in ("onnx", "inference"):
        raise UserError(
            f"--explain needs gradients, which the {args.engine} export has not: leave --engine at auto or dynamic"
        )
    if len(model_dirs(args)) > 1:
        raise UserError("--explain explains one model, not a committee: give one --model-dir")


@cli_entry("paddle-mnist predict")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.explain:
        check_explainable(args)
    predictor = from_flags(args, "paddle-mnist predict")
    # whatever engine answers, the explanation is of the paddle network with the same weights
    network = load_trained(model_dirs(args)[0], args.weights).engine.model if args.explain else None
    failed, read = False, []
    for result in predictor.predict_iter(args.images, topk=min(args.topk, 10), naive=args.naive):
        if args.json:
            row = {k: v for k, v in asdict(result).items() if v is not None}
            print(json.dumps({**row, "engine": predictor.summary.engine}), flush=True)
        elif not result.error:
            print(format_line(result, predictor.classes), flush=True)
        if result.error:
            print(f"paddle-mnist predict: error: {printable(result.error)}", file=sys.stderr, flush=True)
            failed = True
        else:
            read.append(result.source)
    if network is not None and read:
        from paddle_mnist import explain  # paddle's gradients: imported only to explain

        explain.write_for(network, predictor, read[: explain.MAX_ROWS], args.explain)
        print(
            f"paddle-mnist predict: wrote {args.explain} ({min(len(read), explain.MAX_ROWS)} explained)",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
