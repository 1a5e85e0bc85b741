"""The request pipeline of ``paddle-mnist serve``: from an image's bytes (or a drawing's strokes) to its
``ResultRow``.

Each image's header is read first, so what its decode will cost is known and
charged to the budgets of ``serve.limits`` before any pixel is decoded; the
decode and preprocessing run in a bounded pool of threads (cheapest first, one
thread kept for small images), then the model input waits in the ``Batcher``
that puts the images of concurrent requests through the model in one forward
pass.  A picture is read as a number (``reading``): every piece that may be a digit goes through the
batcher, and a drawing's strokes are grouped into digits (``strokes.digits``).  ``?explain=1`` adds a
heat map per digit from the ``Explainer``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from paddle_mnist import preprocess, reading, rundir
from paddle_mnist.errors import UserError
from paddle_mnist.predictor import Prediction, Predictor, fill, on_paddle
from paddle_mnist.serve import bodies
from paddle_mnist.serve.batcher import Batcher
from paddle_mnist.serve.errors import RequestError, busy
from paddle_mnist.serve.limits import MB, SMALL_BODY, DecodePool, Limits, within, work_charge

# What rendering a drawing holds at most: the 82x82 canvas, its float copies and the 28x28 result;
# and what an explanation holds beyond the model: 16 noisy copies of one input and their gradients.
DRAWING_COST, EXPLAIN_COST = 1 * MB, 1 * MB
# A drawing's parse, check and rendering, by its JSON: 116 ns a byte to parse and check, up to 21 us a point to
# render (426 ms for a maximal drawing of 20,000 points, ~15 bytes each): 1.5 us a byte in all.
DRAWING_SECONDS_PER_BYTE = 1.5e-6


@dataclass(frozen=True)
class Ask:
    """What a request asks of each of its images: how many ranked guesses, the heat maps or not, and whether
    the picture is read as one digit (the PaddleX classification contract) rather than as a number."""

    topk: int = 3
    explain: bool = False
    single: bool = False


class Explainer:
    """``?explain=1``: the heat map of a model input, from the paddle model of the weights being served.

    The model is loaded at the first explanation, not with the server, so a server on the ONNX export
    imports paddle only once someone asks why.  One explanation runs at a time (each is 16 backward
    passes, ~50 ms), in the decode pool like any other per-request work."""

    def __init__(self, model_dir: Path, weights: str):
        self.model_dir, self.weights = model_dir, weights
        self._model, self._lock = None, threading.Lock()
        self.seconds = 0.1  # the last explanation's time: what the next one is charged (a guess until one ran)

    @property
    def charge(self) -> int:
        return work_charge(self.seconds, EXPLAIN_COST)

    def __call__(self, batch: np.ndarray, digit: int) -> np.ndarray:
        from paddle_mnist import explain  # paddle's gradients: imported at the first explanation

        with self._lock:
            if self._model is None:
                self._model = on_paddle(rundir.open_run(self.model_dir, self.weights)).network
            start = time.perf_counter()
            heat = explain.heat_map_of(self._model, batch, digit)
            self.seconds = time.perf_counter() - start
            return heat


@dataclass(frozen=True)
class ResultRow:
    """One image's answer: what was read (``predict --json``'s row), and for each digit the 28x28 input the
    model read, with its heat map when one was asked for.  A picture of one digit has these at the top
    level too, as before numbers were read."""

    prediction: Prediction
    model_inputs: list[str]  # base64 PNGs, one per digit
    explanations: list[str] | None = None  # base64 PNGs, one per digit, under ?explain=1

    def to_json(self) -> dict:
        row = self.prediction.to_json()
        for k, digit in enumerate(row.get("digits", [])):
            digit["model_input"] = self.model_inputs[k]
            if self.explanations is not None:
                digit["explanation"] = self.explanations[k]
        if len(self.model_inputs) == 1:
            row["model_input"] = self.model_inputs[0]
            if self.explanations is not None:
                row["explanation"] = self.explanations[0]
        return row


class Service:
    """What the routes share: the predictor, its batcher, the decode pool, the limits."""

    def __init__(
        self, predictor: Predictor, max_batch: int, max_wait: float, limits: Limits, explainer: Explainer | None
    ):
        self.predictor, self.limits, self.explainer = predictor, limits, explainer
        self.batcher = Batcher(lambda batch: predictor.forward(batch.astype(np.float32)), max_batch, max_wait)
        self.pool = DecodePool(limits.decode_workers, limits.decode_budget)

    async def answer(self, images: list[tuple[str, bytes]], ask: Ask) -> list[ResultRow | Exception]:
        """Each image's result row, or the exception that stopped it, within the request deadline."""
        try:
            return await within(self.limits.request_timeout, self._answer(images, ask))
        except asyncio.TimeoutError:
            raise busy(f"no answer within the {self.limits.request_timeout:g} s request deadline") from None

    async def _answer(self, images, ask: Ask) -> list:
        if sum(len(data) for _, data in images) <= SMALL_BODY:  # a drawing: its header is read in microseconds
            headers = self._headers(images)
        else:  # a big file's header can take milliseconds (a PNG's chunks are walked up to its pixels)
            headers = await self.pool.run(0, self._headers, images)
        total = sum(preprocess.decode_cost(h) for h in headers if isinstance(h, Image.Image))
        if total > self.limits.request_budget:
            raise RequestError(
                413,
                f"the {len(images)} images of this request would take {total / MB:,.0f} MB to "
                f"decode, over the {self.limits.request_budget // MB} MB per-request budget",
            )
        return await asyncio.gather(
            *(self._predict(header, name, ask) for (name, _), header in zip(images, headers)), return_exceptions=True
        )

    def _headers(self, images) -> list:
        """Each image opened but not decoded (its cost now known), or the RequestError refusing it."""
        return [self._header(data, name) for name, data in images]

    def _header(self, data: bytes, source: str):
        try:
            with preprocess.decoding(source):
                header = preprocess.image_header(data, source, formats=FORMATS)
        except UserError as e:
            return RequestError(400, str(e))
        cost = preprocess.decode_cost(header)
        if cost > self.limits.image_budget:
            return RequestError(
                413,
                f"{source}: {header.width}x{header.height} {header.mode} would take "
                f"{cost / MB:,.0f} MB to decode, over the {self.limits.image_budget // MB} MB "
                "per-image budget",
            )
        return header

    async def answer_drawing(self, drawing: bytes, ask: Ask) -> ResultRow:
        """The result row of a drawing sent as its strokes (the JSON), within the request deadline."""
        try:
            return await within(self.limits.request_timeout, self._drawing(drawing, ask))
        except asyncio.TimeoutError:
            raise busy(f"no answer within the {self.limits.request_timeout:g} s request deadline") from None

    async def _drawing(self, drawing: bytes, ask: Ask) -> ResultRow:
        with self.batcher.expecting():
            cost = work_charge(DRAWING_SECONDS_PER_BYTE * len(drawing), DRAWING_COST)
            plan = await self.pool.run(cost, self._drawn, drawing)
        return await self._read(plan, "strokes", ask)

    @staticmethod
    def _drawn(drawing: bytes) -> reading.Plan:
        """The drawing's digits, grouped by their strokes and each rendered as an MNIST digit."""
        try:
            return reading.drawn(bodies.drawing(drawing))
        except preprocess.NoDigitFound as e:
            raise RequestError(422, str(e)) from None

    async def _predict(self, header, source: str, ask: Ask) -> ResultRow:
        if isinstance(header, Exception):
            raise header
        with self.batcher.expecting():
            plan = await self.pool.run(preprocess.decode_cost(header), self._planned, header, source, ask.single)
        return await self._read(plan, source, ask)

    async def _read(self, plan: reading.Plan, source: str, ask: Ask) -> ResultRow:
        """The digits of ``plan`` read through the batcher (every piece of it in the same forward pass as
        other requests' inputs), with each digit's model input and, under ``?explain=1``, heat map."""
        inputs = plan.inputs(self.predictor.encoding)
        outputs = np.stack(await asyncio.gather(*(self.batcher.submit(x) for x in inputs)))
        chosen, rows, left_out = self.predictor.read_plan(plan, outputs, ask.topk)
        result = Prediction(source=source)
        fill(result, rows, left_out)
        explanations = None
        if ask.explain:
            explanations = [
                png_base64(await self.pool.run(self.explainer.charge, self.explainer, inputs[k : k + 1], row.likeliest))
                for k, row in zip(chosen, result.digits)
            ]
        return ResultRow(result, [png_base64(plan.pixels[k]) for k in chosen], explanations)

    def _planned(self, header: Image.Image, source: str, single: bool) -> reading.Plan:
        """The picture's plan, or the RequestError refusing it, raised outside the ``except``: raised inside,
        it would keep the analysis's exception as its context, whose frames hold the analysis's arrays (MBs
        a picture) until the whole request is answered.  12 requests of 2 blank 4500x4500 PNGs grew the
        server's peak RSS by 80-97 MB so, over the 64 MB decode budget; by 61-69 MB without."""
        try:
            with preprocess.decoding(source):
                return self.predictor.plan(preprocess.decode(header, source), single=single)
        except preprocess.NoDigitFound as e:  # ``decoding`` has put the source first
            error = RequestError(422, str(e))
        except UserError as e:
            error = RequestError(400, str(e))
        raise error


# The formats the server decodes: what cameras, phones, scanners and screenshots produce.  Pillow opens
# dozens more; each is a decoder an attacker could aim at, and none is how a digit's picture arrives.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")  # JPEG opens MPO (multi-picture) too


def png_base64(pixels: np.ndarray) -> str:
    """A uint8 grey [H,W] or RGB [H,W,3] array as a base64 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()
