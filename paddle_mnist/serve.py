"""Serve a trained model: a draw-a-digit page and an HTTP API (``paddle-mnist serve``).

FastAPI on uvicorn, an optional extra: ``pip install 'paddle-mnist[serve]'``.

    GET  /                      the page: draw a digit or drop a photo, see what the model saw and thinks
    POST /api/predict           images (multipart files, or one raw image body) -> what ``predict --json`` prints
    POST /image-classification  PaddleX's serving contract: {"image": base64, "topk": k}
    GET  /api/model, /healthz, /openapi.json

Each image's header is read first, so what its decode will cost is known and
charged to the budgets of ``paddle_mnist.limits`` before any pixel is decoded;
the decode and preprocessing run in a bounded pool of threads (cheapest first,
one thread kept for small images), then the model input waits in a ``Batcher``
that puts the images of concurrent requests through the model in one forward
pass.  ``paddle_mnist.http_guard`` bounds what arrives before that: connections,
request heads and bodies, and it turns every failure into the JSON error shape.
"""

import argparse
import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
import sys
import threading
import uuid
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from paddle_mnist import preprocess, strokes
from paddle_mnist.cli import non_negative_float, positive_float, positive_int
from paddle_mnist.errors import UserError, cli_entry, json_reason
from paddle_mnist.http_guard import H11_HEAD_LIMIT, Guard, QuietInvalidRequests, guarded_protocol, log, one_line
from paddle_mnist.limits import MB, SMALL_BODY, DecodePool, Limits, within
from paddle_mnist.predict import Prediction, Predictor, add_model_flags, from_flags, model_dirs

MAX_TOPK = 10


class RequestError(Exception):
    """A bad request: its HTTP status, one line for the client and any headers (Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers


def busy(message: str) -> RequestError:
    return RequestError(503, f"busy: {message}; retry later", {"Retry-After": "1"})


class Batcher:
    """Runs the model on the images of concurrent requests together.

    ``submit`` queues one model input; a single worker takes up to
    ``max_batch`` inputs, or whatever arrived within ``max_wait`` seconds of
    the first, and runs them in one forward pass in a thread.  It waits only
    while other requests are still being preprocessed (``expecting``), so a
    lone request pays no wait.
    """

    def __init__(self, forward, max_batch: int, max_wait: float):
        self.forward, self.max_batch, self.max_wait = forward, max_batch, max_wait
        self.queue: asyncio.Queue = asyncio.Queue()
        self.coming = 0  # requests being preprocessed: their inputs will arrive soon
        self.batches: list[int] = []  # sizes of the batches run, newest last (kept short)

    @contextlib.contextmanager
    def expecting(self):
        self.coming += 1
        try:
            yield
        finally:
            self.coming -= 1

    async def submit(self, model_input: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((model_input, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(items) < self.max_batch:
                if self.queue.qsize():
                    items.append(self.queue.get_nowait())
                    continue
                if not self.coming or loop.time() >= deadline:
                    break
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), deadline - loop.time()))
                except asyncio.TimeoutError:
                    break
            self.batches = self.batches[-99:] + [len(items)]
            try:
                outputs = await asyncio.to_thread(self.forward, np.stack([x for x, _ in items]))
            except Exception as e:  # the model failed: every waiting request learns it
                for _, future in items:
                    if not future.done():
                        future.set_exception(e)
                continue
            for (_, future), row in zip(items, outputs):
                if not future.done():
                    future.set_result(row)


# What rendering a drawing holds at most: the 82x82 canvas, its float copies and the 28x28 result;
# and what an explanation holds beyond the model: 16 noisy copies of one input and their gradients.
DRAWING_COST, EXPLAIN_COST = 1 * MB, 1 * MB


@dataclass(frozen=True)
class Ask:
    """What a request asks of each of its images: how many ranked guesses, and the heat map or not."""

    topk: int = 3
    explain: bool = False


class Explainer:
    """``?explain=1``: the heat map of a model input, from the paddle model of the weights being served.

    The model is loaded at the first explanation, not with the server, so a server on the ONNX export
    imports paddle only once someone asks why.  One explanation runs at a time (each is 16 backward
    passes, ~50 ms), in the decode pool like any other per-request work."""

    def __init__(self, model_dir: Path, weights: str):
        self.model_dir, self.weights = model_dir, weights
        self._model, self._lock = None, threading.Lock()

    def __call__(self, batch: np.ndarray, digit: int) -> np.ndarray:
        from paddle_mnist import explain  # paddle's gradients: imported at the first explanation
        from paddle_mnist.predict import load_trained

        with self._lock:
            if self._model is None:
                self._model = load_trained(self.model_dir, self.weights).engine.model
            return explain.heat_map_of(self._model, batch, digit)


class Service:
    """What the routes share: the predictor, its batcher, the decode pool, the limits."""

    def __init__(
        self, predictor: Predictor, max_batch: int, max_wait: float, limits: Limits, explainer: Explainer | None
    ):
        self.predictor, self.limits, self.explainer = predictor, limits, explainer
        self.batcher = Batcher(lambda batch: predictor.engine(batch.astype(np.float32)), max_batch, max_wait)
        self.pool = DecodePool(limits.decode_workers, limits.decode_budget)

    async def answer(self, images: list[tuple[str, bytes]], ask: Ask) -> list:
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

    async def answer_drawing(self, drawing: strokes.Drawing, ask: Ask) -> dict:
        """The result row of a drawing sent as its strokes, within the request deadline."""
        try:
            return await within(self.limits.request_timeout, self._drawing(drawing, ask))
        except asyncio.TimeoutError:
            raise busy(f"no answer within the {self.limits.request_timeout:g} s request deadline") from None

    async def _drawing(self, drawing: strokes.Drawing, ask: Ask) -> dict:
        with self.batcher.expecting():
            pixels = await self.pool.run(DRAWING_COST, self._rendered, drawing)
        return await self._row(pixels, "strokes", ask)

    @staticmethod
    def _rendered(drawing: strokes.Drawing) -> np.ndarray:
        try:
            return strokes.render(drawing)
        except preprocess.NoDigitFound as e:
            raise RequestError(422, str(e)) from None

    async def _predict(self, header, source: str, ask: Ask) -> dict:
        """One image's result: ``predict --json``'s fields plus the 28x28 input as a base64 PNG."""
        if isinstance(header, Exception):
            raise header
        with self.batcher.expecting():
            pixels = await self.pool.run(preprocess.decode_cost(header), self._pixels, header, source)
        return await self._row(pixels, source, ask)

    async def _row(self, pixels: np.ndarray, source: str, ask: Ask) -> dict:
        batch = self.predictor.encoding.decode(pixels)[None, None]
        output = await self.batcher.submit(batch[0])
        result = Prediction(source=source)
        self.predictor.fill(result, output, ask.topk)
        row = {k: v for k, v in asdict(result).items() if v is not None}
        row["model_input"] = png_base64(pixels)
        if ask.explain:
            heat = await self.pool.run(EXPLAIN_COST, self.explainer, batch.astype(np.float32), result.digit)
            row["explanation"] = png_base64(heat)
        return row

    @staticmethod
    def _pixels(header: Image.Image, source: str) -> np.ndarray:
        try:
            with preprocess.decoding(source):
                return preprocess.mnist_like(preprocess.decode(header, source))
        except preprocess.NoDigitFound as e:  # ``decoding`` has put the source first
            raise RequestError(422, str(e)) from None
        except UserError as e:
            raise RequestError(400, str(e)) from None


# The formats the server decodes: what cameras, phones, scanners and screenshots produce.  Pillow opens
# dozens more; each is a decoder an attacker could aim at, and none is how a digit's picture arrives.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")  # JPEG opens MPO (multi-picture) too


def png_base64(pixels: np.ndarray) -> str:
    """A uint8 grey [H,W] or RGB [H,W,3] array as a base64 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# --- the ASGI application -------------------------------------------------------------


def create_app(
    predictor: Predictor,
    *,
    max_batch: int = 32,
    max_wait: float = 0.005,
    limits: Limits | None = None,
    explainer: Explainer | None = None,
):
    """The ASGI application over ``predictor``, inside its ``Guard``; ``explainer`` answers ``?explain=1``."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    limits = limits or Limits()
    service = Service(predictor, max_batch, max_wait, limits, explainer)

    @asynccontextmanager
    async def lifespan(app):
        worker = asyncio.create_task(service.batcher.run())
        yield
        worker.cancel()
        service.pool.close()

    app = FastAPI(
        title="paddle-mnist",
        summary="Handwritten-digit recognition with PaddlePaddle",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )  # the interactive docs load from a CDN
    app.state.service = service
    static = resources.files("paddle_mnist") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    def error(request: Request, status: int, message: str, headers=None):
        return JSONResponse(error_body(request.url.path, status, message), status_code=status, headers=headers)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, e: RequestError):
        return error(request, e.status, str(e), e.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        return error(request, e.status_code, str(e.detail), e.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return error(request, 422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(ClientDisconnect)
    async def client_left(request: Request, e: ClientDisconnect):
        return Response(status_code=400)  # nobody is listening; the Guard drops it without a word

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):  # answered here, logged once by the Guard
        return error(request, 500, f"internal error: {type(e).__name__}")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse((static / "index.html").read_text())

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/api/model")
    async def model():
        return service.predictor.summary.to_json()

    @app.post(
        "/api/predict",
        summary="Predict the digit in one or more images",
        openapi_extra={
            "requestBody": {
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                        }
                    },
                    "image/*": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["strokes", "width", "height"],
                            "properties": {
                                "strokes": {"type": "array", "items": {"type": "array"}},
                                "width": {"type": "integer"},
                                "height": {"type": "integer"},
                            },
                        }
                    },
                }
            }
        },
    )
    async def api_predict(request: Request, topk: int = 3, explain: bool = False):
        check_topk(topk)
        if explain and service.explainer is None:
            raise RequestError(422, "explain=1 needs one model: this server reads a committee")
        ask = Ask(topk, explain)
        if content_type(request) == "application/json":  # the pad's strokes
            drawing = read_drawing(await json_body(request, max_bytes=strokes.MAX_BYTES))
            return {"results": [await service.answer_drawing(drawing, ask)]}
        images = await read_images(request, limits)
        rows = await service.answer(images, ask)
        if len(rows) == 1 and isinstance(rows[0], Exception):
            raise rows[0]
        return {
            "results": [
                row if not isinstance(row, Exception) else {"source": name, "error": str(row)}
                for (name, _), row in zip(images, rows)
            ]
        }

    @app.post("/image-classification", summary="PaddleX serving's image-classification contract")
    async def image_classification(request: Request):
        body = await json_body(request)
        topk = body.get("topk", 5)
        if not isinstance(topk, int) or isinstance(topk, bool):
            raise RequestError(422, f"topk must be an integer 1..{MAX_TOPK}")
        check_topk(topk)
        [row] = await service.answer([("image", decode_base64(body.get("image")))], Ask(topk))
        if isinstance(row, Exception):
            raise row
        categories = [{"id": k, "name": service.predictor.classes[k], "score": p} for k, p in row["topk"]]
        return {"logId": str(uuid.uuid4()), "errorCode": 0, "errorMsg": "Success", "result": {"categories": categories}}

    return Guard(app, limits, error_body, lambda scope: allowed_methods(app, scope))


def check_topk(topk: int) -> None:
    if not 1 <= topk <= MAX_TOPK:  # the value is not echoed: it may have thousands of digits
        raise RequestError(422, f"topk must be 1..{MAX_TOPK}")


def error_body(path: str, status: int, message: str) -> dict:
    """The error shape of the route at ``path``: PaddleX's for its contract, ``{"error"}`` elsewhere."""
    if path == "/image-classification":
        return {"logId": str(uuid.uuid4()), "errorCode": status, "errorMsg": message}
    return {"error": message}


def allowed_methods(app, scope) -> list[str]:
    """The methods the routes at ``scope``'s path answer (HEAD with GET, and OPTIONS); none: no route."""
    from starlette.routing import Match

    methods = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "method": "GET"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or {"GET"})
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods | {"OPTIONS"}) if methods else []


def content_type(request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def read_drawing(body: dict) -> strokes.Drawing:
    try:
        return strokes.parse(body)
    except strokes.StrokesError as e:
        raise RequestError(422, str(e)) from None


async def read_images(request, limits: Limits) -> list[tuple[str, bytes]]:
    """(name, bytes) of every image in a multipart form, or of a raw image body."""
    kind = content_type(request)
    if kind == "multipart/form-data":
        files = await read_form(request, limits)
        if not files:
            raise RequestError(400, "the form holds no image file")
        return files
    if kind.startswith("image/") or kind == "application/octet-stream":
        data = await request.body()
        if not data:
            raise RequestError(400, "empty request body (no image data)")
        return [("upload", data)]
    raise RequestError(
        415,
        f"content type {kind or 'none'!r}: send multipart/form-data files, an image/* body or application/json strokes",
    )


async def read_form(request, limits: Limits) -> list[tuple[str, bytes]]:
    """The files of a multipart form, parsed in memory: the body is already bounded and charged to the
    body budget, so Starlette's spooling of big parts to temporary files would only cost file descriptors."""
    from starlette.formparsers import MultiPartException, MultiPartParser

    class InMemory(MultiPartParser):
        spool_max_size = limits.max_upload

    try:
        form = await InMemory(
            request.headers, request.stream(), max_files=limits.max_images, max_fields=limits.max_images
        ).parse()
    except MultiPartException as e:
        if e.message.startswith("Too many"):
            raise RequestError(413, f"more than {limits.max_images} images or fields in one form") from None
        raise RequestError(400, f"malformed form ({e.message})") from None
    try:
        return [
            (value.filename or key, await value.read()) for key, value in form.multi_items() if hasattr(value, "read")
        ]
    finally:
        await form.close()


async def json_body(request, max_bytes: int | None = None) -> dict:
    """The request's JSON object; ``max_bytes`` bounds it below the upload limit (a drawing's strokes)."""
    kind = content_type(request)
    if kind != "application/json":
        raise RequestError(415, f"content type {kind or 'none'!r}: send application/json")
    data = await request.body()
    if max_bytes is not None and len(data) > max_bytes:
        raise RequestError(413, f"a drawing's JSON is at most {max_bytes // 1024} KB")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise RequestError(400, f"malformed JSON ({json_reason(e)})") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the JSON body must be an object")
    return body


def decode_base64(value) -> bytes:
    """The image bytes of PaddleX's ``image`` field: base64 only, since this server fetches nothing."""
    if not isinstance(value, str) or not value:
        raise RequestError(422, "image must be a base64-encoded image")
    if value.startswith(("http://", "https://", "ftp://", "file:")):
        raise RequestError(422, "image URLs are refused: this server fetches nothing; send the image as base64")
    try:
        return base64.b64decode(value.split(",", 1)[-1] if value.startswith("data:") else value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "image is not valid base64") from None


# --- the command ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paddle-mnist serve", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add_model_flags(parser, committee=True)
    add(
        "--host",
        default="127.0.0.1",
        help="address to listen on; anything but loopback exposes an API without authentication (default: 127.0.0.1)",
    )
    add("--port", type=int, default=8000, help="port to listen on; 0 picks a free one (default: 8000)")
    add(
        "--max-batch",
        type=positive_int,
        default=32,
        help="most images of concurrent requests run in one forward pass; 1 turns batching off (default: 32)",
    )
    add(
        "--max-wait-ms",
        type=non_negative_float,
        default=5.0,
        help="how long the first image of a batch waits for others (default: 5)",
    )
    add_limit_flags(parser)
    add("--debug", action="store_true", help="log each dropped client and full tracebacks of internal errors")
    return parser


# Each bound of ``Limits``: its flag, the argparse type, and what the flag's help says about it.
LIMIT_FLAGS = {
    "max_upload": ("--max-upload-mb", positive_int, "largest request body; larger ones get 413 while they arrive"),
    "max_images": ("--max-images", positive_int, "most images in one multipart request; more get 413"),
    "image_budget": (
        "--image-budget-mb",
        positive_int,
        "most memory one image may take to decode (known from its header); more get 413 undecoded",
    ),
    "request_budget": (
        "--request-budget-mb",
        positive_int,
        "most memory all images of one request may take to decode; more get 413",
    ),
    "decode_budget": (
        "--decode-budget-mb",
        positive_int,
        "most memory all decodes in flight may take; requests over it wait their turn",
    ),
    "body_budget": (
        "--body-budget-mb",
        positive_int,
        "most memory all request bodies being received may take; requests over it wait their turn",
    ),
    "decode_workers": (
        "--decode-workers",
        positive_int,
        "threads that decode images; with 2 or more, one is kept for small images (drawings)",
    ),
    "max_connections": (
        "--max-connections",
        positive_int,
        "most open connections (lowered to fit the open-file limit); past it a new one closes "
        "the longest-idle connection, or gets 503 if none is idle",
    ),
    "client_timeout": (
        "--client-timeout",
        positive_float,
        "seconds a client has to send a request's head, and then its body (408)",
    ),
    "request_timeout": (
        "--request-timeout",
        positive_float,
        "seconds from a request's body to its answer, waits included; then 503 with Retry-After",
    ),
}


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("limits", "what clients can make the server spend (docs/serving.md)")
    for name, (flag, kind, text) in LIMIT_FLAGS.items():
        default = getattr(Limits(), name)
        shown = default // MB if flag.endswith("-mb") else default
        metavar = "MB" if flag.endswith("-mb") else "SECONDS" if kind is positive_float else "N"
        group.add_argument(
            flag, type=kind, default=shown, dest=name, metavar=metavar, help=f"{text} (default: {shown:g})"
        )


def limits_from_args(args) -> Limits:
    """The parsed limit flags as ``Limits`` (sizes in bytes), the connection cap fitted to the open-file limit."""
    values = {
        name: getattr(args, name) * (MB if flag.endswith("-mb") else 1) for name, (flag, _, _) in LIMIT_FLAGS.items()
    }
    values["max_connections"] = fitted_connections(values["max_connections"])
    try:
        return Limits(**values).check()
    except ValueError as e:
        raise UserError(f"limits: {e}") from None


# asyncio accepts up to ``backlog`` sockets per wake-up before any of their protocols runs (and so before
# the connection cap can close one): two such bursts, plus the ~10 descriptors an idle server holds.
BACKLOG = 64
FD_RESERVE = 32 + 2 * BACKLOG


def fitted_connections(wanted: int) -> int:
    """``wanted``, or fewer so every connection has a file descriptor: running out of them would make the
    accept loop fail instead of refusing politely."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft - FD_RESERVE >= wanted:
        return wanted
    if soft - FD_RESERVE < 8:
        raise UserError(f"the open-file limit ({soft}) leaves no room for connections: raise it (ulimit -n)")
    print(
        f"paddle-mnist serve: --max-connections lowered to {soft - FD_RESERVE} to fit the open-file limit ({soft})",
        file=sys.stderr,
    )
    return soft - FD_RESERVE


@cli_entry("paddle-mnist serve")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import uvicorn
    except ImportError:
        raise UserError("serving needs FastAPI and uvicorn: pip install 'paddle-mnist[serve]'") from None
    limits = limits_from_args(args)
    return_freed_memory()
    predictor = from_flags(args, "paddle-mnist serve")
    dirs = model_dirs(args)
    explainer = Explainer(dirs[0], args.weights) if len(dirs) == 1 else None  # one model's gradients
    app = create_app(
        predictor, max_batch=args.max_batch, max_wait=args.max_wait_ms / 1000, limits=limits, explainer=explainer
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"paddle-mnist serve: warning: listening on {args.host}: the API has no authentication", file=sys.stderr)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="debug" if args.debug else "warning",
        http=guarded_protocol(limits, error_body),
        h11_max_incomplete_event_size=H11_HEAD_LIMIT,
        access_log=False,
        backlog=BACKLOG,
    )
    configure_logging(args.debug)
    server = uvicorn.Server(config)
    try:
        started = asyncio.run(_serve(server))
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down gracefully
        started = server.started
    if not started:
        return 1  # uvicorn said why (the port is taken, the address is not this machine's)
    print("stopped", flush=True)
    return 0


def return_freed_memory(threshold: int = 4 * MB) -> None:
    """Have glibc give each big buffer back to the system when it is freed.

    glibc serves allocations up to a threshold from its heaps, and raises that
    threshold (up to 32 MB) each time a big block is freed, so after a burst of
    decodes Pillow's 16 MB blocks stay resident in the decoding threads' heaps.
    Measured over three rounds of 6-12 concurrent requests of two 20-megapixel
    images: the server held 424 MB after them with a fixed threshold (mallopt
    M_MMAP_THRESHOLD), 488 MB without, and peaked 25 MB lower.  Elsewhere than
    glibc this does nothing.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def configure_logging(debug: bool) -> None:
    """The server's own lines on stderr, one per event; uvicorn's per-request noise kept out."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("paddle-mnist serve: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False
    if not debug:
        logging.getLogger("uvicorn.error").addFilter(QuietInvalidRequests())


async def _serve(server) -> bool:
    """Serve until Ctrl-C or SIGTERM (uvicorn's handlers stop it gracefully), printing the URL once
    listening, with the real port when 0 was asked for; whether it ever started."""
    asyncio.get_running_loop().set_exception_handler(loop_errors())
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        host, port = next(s for srv in server.servers for s in srv.sockets).getsockname()[:2]
        print(f"serving on http://{'[' + host + ']' if ':' in host else host}:{port}/ (Ctrl-C stops)", flush=True)
    await task
    return server.started


def loop_errors(every: float = 10.0):
    """An event-loop error handler that logs each kind of error (say, accept() out of file descriptors)
    in one line, at most once per ``every`` seconds: a failure repeated a thousand times a second must
    not become a thousand tracebacks."""
    import time

    last: dict[str, float] = {}

    def handle(loop, context) -> None:
        message = context.get("message", "event loop error")
        error = context.get("exception")
        now = time.monotonic()
        if now - last.get(message, -every) >= every:
            last[message] = now
            log.warning(
                "%s%s",
                message,
                f" ({one_line(error)})" if error else "",
                exc_info=error if log.isEnabledFor(logging.DEBUG) and error else None,
            )

    return handle


if __name__ == "__main__":
    sys.exit(main())
