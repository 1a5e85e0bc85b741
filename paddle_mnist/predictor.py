"""A trained model ready to read digits: ``Predictor.from_dir("output").predict("digit.jpg")``.

``Predictor.from_dir`` rebuilds the trained model from what ``rundir.open_run``
finds (a run's metadata, or a bare ``.pdparams`` whose network is inferred) and
``predict`` accepts paths, PIL images, uint8 or float arrays, or a list of them,
run through the preprocessing in ``paddle_mnist.preprocess`` and then one
batched forward pass.  The network runs on one of ``paddle_mnist.engines``; with
the ONNX export, nothing here imports paddle (``python -X importtime`` shows
it), which is most of a prediction's time.  The command is ``predict``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from paddle_mnist import calibration, checkpoint, engines, losses, preprocess, reading, rundir, segment, strokes, views
from paddle_mnist.calibration import Calibration
from paddle_mnist.data.classes import MNIST_CLASSES
from paddle_mnist.data.encoding import TUTORIAL_ENCODING, Encoding
from paddle_mnist.errors import ExportError, UserError

CHUNK = 64  # pictures per forward pass: a batch that runs fast without holding a long list in memory
BATCH = 256  # inputs per forward pass at most (a picture of touching digits brings one per way to cut it)


@dataclass
class DigitRead:
    """One mark of a picture: the digit read there (None when it is not a digit: then ``closest`` is the
    digit it is nearest to, and ``probability`` that digit's), and where it lies."""

    digit: int | None
    probability: float
    topk: list[tuple[int, float]]
    box: tuple[int, int, int, int] | None  # x0, y0, x1, y1 in the (upright) input picture's pixels
    raw: float | None = None  # the regression output, for the mse loss
    model_input: np.ndarray | None = field(default=None, repr=False, compare=False)  # float32 [1,28,28]: not in JSON
    closest: int | None = None  # when refused: the digit the model would have answered
    reason: str | None = None  # when refused: calibration.NOT_A_DIGIT

    def to_json(self) -> dict:
        row = {f.name: getattr(self, f.name) for f in JSON_FIELDS if getattr(self, f.name) is not None}
        return {"digit": None, **row}  # "digit": null says "not a digit" to every reader

    @property
    def likeliest(self) -> int:
        """The digit read, or for a mark that is not a digit, the one it is closest to."""
        return self.closest if self.digit is None else self.digit


JSON_FIELDS = [f for f in dataclasses.fields(DigitRead) if f.name != "model_input"]


@dataclass
class Prediction:
    """What was read in one image: its digits left to right as ``text``, each with its probability, ranked
    guesses and box, or why nothing was.  A picture of one digit also has that digit's ``digit``, ``topk``
    and ``raw`` at the top level, as before numbers were read; ``probability`` is the chance that every
    digit is right (the product of theirs)."""

    source: str
    digit: int | None = None
    probability: float | None = None
    topk: list[tuple[int, float]] = field(default_factory=list)
    raw: float | None = None  # the regression output, for the mse loss
    error: str | None = None  # why there is no prediction (unreadable, no digit found)
    text: str | None = None  # the digits read, left to right; "?" for a mark that is not a digit
    digits: list[DigitRead] | None = None
    left_out: int | None = None  # marks past the bound on digits per picture, not read
    closest: int | None = None  # a picture of one mark that is not a digit: the digit it is nearest to
    reason: str | None = None  # no mark is a digit: calibration.NOT_A_DIGIT

    def to_json(self) -> dict:
        """The row ``predict --json`` prints and the API answers: the fields that have a value, and a null
        digit and text when no mark is a digit."""
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}
        if self.digits is not None:
            row["digits"] = [digit.to_json() for digit in self.digits]
        if self.reason:
            row |= {"digit": None, "text": None}
        return row


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
    """A trained model ready to predict: ``forward(batch) -> outputs`` runs it (one of ``engines``, or a
    committee's vote), the loss turns outputs into digits, the calibration into probabilities and "not a
    digit", and the pixel scaling and classes are its training data's.  A variant (another engine, test-time
    views, no refusals) is a ``dataclasses.replace`` of it."""

    forward: object
    loss: losses.Loss
    encoding: Encoding
    classes: tuple[str, ...]
    summary: ModelSummary
    notes: tuple[str, ...] = ()  # lines for the user: what was inferred from a bare file, why an export is not used
    calibration: Calibration = calibration.DEFAULT  # the run's temperature and "not a digit" threshold
    refuses_pairs: bool = False  # trained with outliers, two digits in one box among them (``reading.plan``)

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
        onnxruntime is there (``engines.choose``) and its graph passes ``onnx_check``, else the paddle
        model, saying why in a note; "onnx" runs the export
        whatever it was made from, with a note when its record says it is stale; "inference" runs
        the Paddle Inference export."""
        run = rundir.open_run(model_dir, weights)
        prefix = Path(inference_prefix) if inference_prefix else run.export_prefix
        if run.bare:  # its network, loss and scaling are inferred from the arrays: paddle reads it first
            return on_engine(on_paddle(run), "dynamic" if engine == "auto" else engine, prefix)
        chosen, notes = settle_engine(engine, prefix, run.weights_sha256)
        if chosen != "dynamic":
            try:
                return on_engine(Predictor(None, notes=notes, **described(run)), chosen, prefix)
            except ExportError as e:  # an export that fails its check: auto answers on paddle instead
                if engine != "auto":
                    raise
                notes += (f"{e}; paddle answers",)
        return dataclasses.replace(on_paddle(run), notes=notes)

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
            """log of the mean calibrated probability: the cross-entropy loss turns it back into that probability."""
            return views.log_mean([m.probabilities(m.forward(batch)) for m in members])

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
            first,
            forward=vote,
            loss=losses.LOSSES["cross_entropy"],
            summary=summary,
            notes=notes,
            calibration=calibration.averaged(first.calibration),
            refuses_pairs=all(m.refuses_pairs for m in members),
        )

    def with_views(self, name: str, source: str = "the model") -> Predictor:
        """This predictor reading every digit in the test-time views ``name`` (``views.VIEW_SETS``)
        and averaging their class probabilities; itself for "none"."""
        if name == "none":
            return self
        if self.loss.head_size != len(self.classes):
            raise UserError(f"{source}: a {self.loss.name} model has no class probabilities to average over views")
        forward = views.averaged(self.forward, self.probabilities, self.encoding.background, name)
        return dataclasses.replace(
            self,
            forward=forward,
            loss=losses.LOSSES["cross_entropy"],
            summary=dataclasses.replace(self.summary, tta=name),
            calibration=calibration.averaged(self.calibration),
        )

    def without_rejection(self) -> Predictor:
        """This predictor answering the closest digit for every mark, as before "not a digit" (``--no-reject``);
        its probabilities stay calibrated."""
        return dataclasses.replace(self, calibration=dataclasses.replace(self.calibration, threshold=None))

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """[N,10] calibrated class probabilities of the network's ``outputs``."""
        return self.calibration.probabilities(self.loss.logits(outputs))

    @property
    def network(self):
        """The ``paddle.nn.Layer`` that answers, on the dynamic engine (``on_paddle``): what gradients explain."""
        return self.forward.model

    def model_input(self, item, naive: bool = False) -> np.ndarray:
        """float32 [1,28,28] of the whole picture read as one digit, as the model saw its training data (or
        the tutorial's naive input)."""
        return self.plan(item, naive, single=True).inputs(self.encoding)[0]

    def plan(
        self, item, naive: bool = False, single: bool = False, max_digits: int = segment.MAX_DIGITS
    ) -> reading.Plan:
        """How this model reads ``item`` (``reading.plan``): with the cuts its training allows, narrower and
        charged by the strokes they cross when it refuses two digits in one box (``refuses_pairs``)."""
        return reading.plan(item, naive, single, max_digits, self.refuses_pairs)

    def predict(
        self, items, *, topk: int = 3, naive: bool = False, single: bool = False, max_digits: int = segment.MAX_DIGITS
    ):
        """A ``Prediction`` for one item, or a list for a list (one forward pass per ``CHUNK`` items).  Every
        digit in a picture is read, left to right (``reading``); ``single`` reads the whole picture as one."""
        options = dict(topk=topk, naive=naive, single=single, max_digits=max_digits)
        if not isinstance(items, (list, tuple)):
            return next(self.predict_iter([items], **options))
        return list(self.predict_iter(items, **options))

    def predict_iter(self, items, *, chunk: int = CHUNK, **options):
        """Predictions in the order of ``items`` (any iterable), the digits of ``chunk`` images per forward
        pass; ``options`` are ``predict``'s.

        Memory stays that of one chunk however many items there are.  An item
        that cannot be read, decoded or converted gets its own one-line error;
        the others are predicted all the same.
        """
        pending = []
        for item in items:
            pending.append(item)
            if len(pending) == chunk:
                yield from self._predict_chunk(pending, **options)
                pending = []
        yield from self._predict_chunk(pending, **options)

    def _predict_chunk(
        self,
        items: list,
        topk: int = 3,
        naive: bool = False,
        single: bool = False,
        max_digits: int = segment.MAX_DIGITS,
    ) -> list[Prediction]:
        results, plans = [], []
        for item in items:
            result = Prediction(source=describe(item))
            try:
                with preprocess.decoding(result.source):
                    plans.append((result, self.plan(item, naive, single, max_digits)))
            except UserError as e:  # ``decoding`` has put the source first
                result.error = str(e)
            results.append(result)
        if plans:
            inputs = np.concatenate([plan.inputs(self.encoding) for _, plan in plans])
            outputs = np.concatenate([self.forward(inputs[k : k + BATCH]) for k in range(0, len(inputs), BATCH)])
            start = 0
            for result, plan in plans:
                mine, given = outputs[start : start + len(plan.pixels)], inputs[start : start + len(plan.pixels)]
                start += len(plan.pixels)
                _, rows, left_out = self.read_plan(plan, mine, topk, given)
                fill(result, rows, left_out)
        return results

    def read_plan(
        self, plan: reading.Plan, outputs: np.ndarray, topk: int, inputs: np.ndarray | None = None
    ) -> tuple[list[int], list[DigitRead], int]:
        """(the inputs read as digits, a row for each, how many marks were left out) of ``plan`` from the model's
        ``outputs``, each judged with its ``plan.margins`` (rows keep a copy of ``inputs``: a chunk's are freed)."""
        margins = plan.margins
        refused = self.calibration.refuses(self.loss.logits(outputs), margins)
        chosen, left_out = plan.read(self.loss.scores(outputs), refused)
        rows = [
            self.read(outputs[k], plan.boxes[k], topk, None if inputs is None else inputs[k].copy(), margins[k])
            for k in chosen
        ]
        return chosen, rows, left_out

    def read(
        self,
        output: np.ndarray,
        box: tuple,
        topk: int,
        model_input: np.ndarray | None = None,
        margin: float = 0.0,
    ) -> DigitRead:
        """The digit in the model's ``output`` row for the digit at ``box`` (whose input was ``model_input``;
        ``margin``: how it is judged, ``reading.Plan.margins``)."""
        logits = self.loss.logits(output[None])
        scores = self.calibration.probabilities(logits)[0]
        digit = int(self.loss.digits(output[None])[0])
        order = np.argsort(-scores, kind="stable")[:topk]
        raw = float(output[0]) if self.loss.head_size == 1 else None
        top = [(int(k), float(scores[k])) for k in order]
        row = DigitRead(digit, float(scores[digit]), top, box, raw, model_input)
        if self.calibration.refuses(logits, margin)[0]:
            row.digit, row.closest, row.reason = None, digit, calibration.NOT_A_DIGIT
        return row


def fill(result: Prediction, rows: list[DigitRead], left_out: int) -> None:
    """Set ``result`` from its marks ``rows``: the text ("?" for a mark that is not a digit) and the chance
    that every digit read is right, and a single mark's own fields at the top level; no digit at all is
    ``reason`` "not a digit", with no text."""
    digits = [row for row in rows if row.digit is not None]
    result.digits, result.left_out = rows, left_out or None
    if not digits:
        result.reason = calibration.NOT_A_DIGIT
    else:
        result.text = "".join("?" if row.digit is None else str(row.digit) for row in rows)
        result.probability = float(np.prod([row.probability for row in digits]))
    if len(rows) == 1:
        result.digit, result.topk, result.raw, result.closest = (
            rows[0].digit,
            rows[0].topk,
            rows[0].raw,
            rows[0].closest,
        )


def settle_engine(engine: str, prefix: Path, weights_sha256: str) -> tuple[str, tuple[str, ...]]:
    """(the engine that answers for ``engine``, the notes to show): auto picks the export under ``prefix``
    when its record matches the weights; onnx takes it anyway, noting when the record says it is stale."""
    if engine == "auto":
        engine, note = engines.choose(prefix, weights_sha256)
        return engine, (note,) if note else ()
    model_file = engines.onnx_path(prefix)
    if engine == "onnx" and model_file.is_file():
        reason = engines.stale(model_file, weights_sha256)
        return engine, (f"{model_file}: warning: {reason}",) if reason else ()
    return engine, ()


def described(run: rundir.Run) -> dict:
    """A ``Predictor``'s loss, encoding, classes, summary and calibration for a run directory, all from its
    metadata: no weights are read."""
    info = run.info
    summary = ModelSummary(
        model=info.model,
        loss=info.loss,
        dataset=info.dataset,
        classes=info.classes,
        eval_acc=info.metrics.eval_acc,
        epochs=info.epochs_done,
        source=str(run.directory),
        weights_sha256=run.weights_sha256 or None,
    )
    return dict(
        loss=losses.LOSSES[info.loss],
        encoding=info.encoding,
        classes=info.classes,
        summary=summary,
        calibration=info.calibration or calibration.DEFAULT,
        refuses_pairs=bool(info.config.get("outliers")),
    )


def on_engine(predictor: Predictor, engine: str, prefix: Path) -> Predictor:
    """``predictor`` answering through ``engine``: its own dynamic model, or the export under ``prefix``."""
    if engine == "dynamic":
        return predictor
    if engine == "inference":
        runner = engines.InferenceEngine(prefix, predictor.loss.head_size)
    else:
        runner = engines.OnnxEngine(engines.onnx_path(prefix), predictor.loss.head_size)
    return dataclasses.replace(predictor, forward=runner, summary=dataclasses.replace(predictor.summary, engine=engine))


def on_paddle(run: rundir.Run) -> Predictor:
    """The paddle network of ``run``'s weights on the dynamic engine (``predictor.network`` is the
    ``paddle.nn.Layer``): a run directory's model as its metadata says, a bare file's as its arrays say."""
    from paddle_mnist import models

    run, state = run.load_state()  # the run a trainer may have committed meanwhile: its metadata and weights
    if run.bare:
        return from_state(run, state)
    model = models.build(run.info.model, run.info.head_size, run.info.activation)
    checkpoint.fit_state(model, state, run.weights_file)
    return Predictor(engines.DynamicEngine(model), **described(run))


def from_state(run: rundir.Run, state: dict) -> Predictor:
    """A bare state dict (the tutorial's ``paddle.save(model.state_dict(), ...)``, hapi's ``Model.save``):
    the network is the registry's one with the same parameter names and shapes, the loss follows
    the head (10 outputs: cross-entropy, 1: the tutorial's regression), pixels are scaled as the
    tutorial's data file stores them (pixel/256)."""
    from paddle_mnist import models

    path = run.weights_file
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
        weights_sha256=run.weights_sha256,
    )
    return Predictor(engines.DynamicEngine(model), loss, TUTORIAL_ENCODING, classes, summary, (inferred,))


def describe(item) -> str:
    if isinstance(item, (str, Path)):
        return str(item)
    if isinstance(item, strokes.Drawing):
        return "strokes"  # as the server names a drawing
    return f"<{type(item).__name__} {getattr(item, 'size', getattr(item, 'shape', ''))}>"
