"""Serve a trained model: a draw-a-digit page and an HTTP API (``paddle-mnist serve``).

FastAPI on uvicorn, an optional extra: ``pip install 'paddle-mnist[serve]'``.

    GET  /                      the page: draw a digit or drop a photo, see what the model saw and thinks
    POST /api/predict           images (multipart files, or one raw image body) -> what ``predict --json`` prints
    POST /image-classification  PaddleX's serving contract: {"image": base64, "topk": k}
    GET  /api/model, /healthz, /openapi.json

Each image is decoded and preprocessed in a worker thread (one slow photo
does not hold up the event loop), then waits in a ``Batcher`` that puts the
images of concurrent requests through the model in one forward pass.  Bodies
over ``--max-upload`` are refused with 413 while they arrive.
"""

import argparse
import asyncio
import base64
import binascii
import contextlib
import io
import json
import sys
import uuid
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from paddle_mnist import preprocess, views
from paddle_mnist.cli import non_negative_float, positive_int
from paddle_mnist.errors import UserError, cli_entry
from paddle_mnist.predict import ENGINES, Prediction, Predictor

MAX_UPLOAD = 20 << 20        # a phone photo is 3-8 MB
MAX_TOPK = 10


class RequestError(Exception):
    """A bad request: its HTTP status and one line for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


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
        self.coming = 0                # requests being preprocessed: their inputs will arrive soon
        self.batches: list[int] = []   # sizes of the batches run, newest last (kept short)

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


class Service:
    """What the routes share: the predictor, its batcher, the model's metadata."""

    def __init__(self, predictor: Predictor, info: dict, max_batch: int, max_wait: float):
        self.predictor, self.info = predictor, info
        self.batcher = Batcher(lambda batch: predictor.engine(batch.astype(np.float32)), max_batch, max_wait)

    async def predict(self, data: bytes, source: str, topk: int) -> dict:
        """One image's result: ``predict --json``'s fields plus the 28x28 input as a base64 PNG."""
        with self.batcher.expecting():
            pixels = await asyncio.to_thread(self._pixels, data, source)
        output = await self.batcher.submit(self.predictor.encoding.decode(pixels)[None])
        result = Prediction(source=source)
        self.predictor.fill(result, output, topk)
        row = {k: v for k, v in asdict(result).items() if v is not None}
        row["model_input"] = png_base64(pixels)
        return row

    @staticmethod
    def _pixels(data: bytes, source: str) -> np.ndarray:
        try:
            with preprocess.decoding(source):
                return preprocess.mnist_like(preprocess.open_image_bytes(data, source))
        except preprocess.NoDigitFound as e:
            raise RequestError(422, f"{source}: {e}") from None
        except UserError as e:
            raise RequestError(400, str(e)) from None


def png_base64(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# --- the ASGI application -------------------------------------------------------------

class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 as soon as it is known to be.

    A declared Content-Length is checked before reading; a body without one
    is counted as it arrives, and the application is told the client left.
    """

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        state = {"received": 0, "refused": False, "started": False}

        async def counted_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.limit and not state["refused"]:
                    state["refused"] = True
                    if not state["started"]:
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if state["refused"]:
                return  # the application's answer to a refused body is dropped
            state["started"] |= message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state["refused"]:
                raise

    async def _refuse(self, send) -> None:
        body = json.dumps({"error": f"request body over the {self.limit:,}-byte upload limit"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def create_app(predictor: Predictor, info: dict, *, max_batch: int = 32, max_wait: float = 0.005,
               max_upload: int = MAX_UPLOAD):
    """The ASGI application over ``predictor``; ``info`` is what ``GET /api/model`` returns."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException

    service = Service(predictor, info, max_batch, max_wait)

    @asynccontextmanager
    async def lifespan(app):
        worker = asyncio.create_task(service.batcher.run())
        yield
        worker.cancel()

    app = FastAPI(title="paddle-mnist", summary="Handwritten-digit recognition with PaddlePaddle",
                  docs_url=None, redoc_url=None, lifespan=lifespan)  # the interactive docs load from a CDN
    app.state.service = service
    static = resources.files("paddle_mnist") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError):
        if request.url.path == "/image-classification":
            return paddlex_error(error.status, str(error))
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse((static / "index.html").read_text())

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/api/model")
    async def model():
        return service.info

    @app.post("/api/predict", summary="Predict the digit in one or more images",
              openapi_extra={"requestBody": {"content": {
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      "file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
                  "image/*": {"schema": {"type": "string", "format": "binary"}}}}})
    async def api_predict(request: Request, topk: int = 3):
        if not 1 <= topk <= MAX_TOPK:
            raise RequestError(422, f"topk must be 1..{MAX_TOPK}, got {topk}")
        images = await read_images(request)
        rows = await asyncio.gather(*(service.predict(data, name, topk) for name, data in images),
                                    return_exceptions=True)
        if len(rows) == 1 and isinstance(rows[0], Exception):
            raise rows[0]
        return {"results": [row if not isinstance(row, Exception) else {"source": name, "error": str(row)}
                            for (name, _), row in zip(images, rows)]}

    @app.post("/image-classification", summary="PaddleX serving's image-classification contract")
    async def image_classification(request: Request):
        body = await json_body(request)
        topk = body.get("topk", 5)
        if not isinstance(topk, int) or isinstance(topk, bool) or not 1 <= topk <= MAX_TOPK:
            raise RequestError(422, f"topk must be an integer 1..{MAX_TOPK}")
        data = decode_base64(body.get("image"))
        row = await service.predict(data, "image", topk)
        categories = [{"id": k, "name": service.predictor.classes[k], "score": p} for k, p in row["topk"]]
        return {"logId": str(uuid.uuid4()), "errorCode": 0, "errorMsg": "Success", "result": {"categories": categories}}

    return BodyLimit(app, max_upload)


def paddlex_error(status: int, message: str):
    from fastapi.responses import JSONResponse
    return JSONResponse({"logId": str(uuid.uuid4()), "errorCode": status, "errorMsg": message}, status_code=status)


async def read_images(request) -> list[tuple[str, bytes]]:
    """(name, bytes) of every image in a multipart form, or of a raw image body."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form()
        files = [(value.filename or key, await value.read()) for key, value in form.multi_items()
                 if hasattr(value, "read")]
        if not files:
            raise RequestError(400, "the form holds no image file")
        return files
    if kind.startswith("image/") or kind == "application/octet-stream":
        data = await request.body()
        if not data:
            raise RequestError(400, "empty request body (no image data)")
        return [("upload", data)]
    raise RequestError(415, f"content type {kind or 'none'!r}: send multipart/form-data files or an image/* body")


async def json_body(request) -> dict:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise RequestError(415, f"content type {kind or 'none'!r}: send application/json")
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise RequestError(400, f"malformed JSON ({e})") from None
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
    add("--model-dir", type=Path, default=Path("output"), help="a training output dir with mnist.json (default: output)")
    add("--weights", default="best", metavar="best|last|FILE",
        help="the run's best or last weights, or a bare .pdparams state dict whose network is inferred (default: best)")
    add("--engine", choices=ENGINES, default="dynamic",
        help="dynamic = the paddle.nn model; inference = the exported Paddle Inference model; "
             "onnx = the ONNX export in onnxruntime (default: dynamic)")
    add("--host", default="127.0.0.1", help="address to listen on; anything but loopback exposes an API "
                                           "without authentication (default: 127.0.0.1)")
    add("--port", type=int, default=8000, help="port to listen on; 0 picks a free one (default: 8000)")
    add("--max-batch", type=positive_int, default=32,
        help="most images of concurrent requests run in one forward pass; 1 turns batching off (default: 32)")
    add("--max-wait-ms", type=non_negative_float, default=5.0,
        help="how long the first image of a batch waits for others (default: 5)")
    add("--max-upload-mb", type=positive_int, default=MAX_UPLOAD >> 20,
        help=f"largest request body accepted; larger ones get 413 (default: {MAX_UPLOAD >> 20})")
    views.add_argument(parser)
    return parser


@cli_entry("paddle-mnist serve")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import uvicorn
    except ImportError:
        raise UserError("serving needs FastAPI and uvicorn: pip install 'paddle-mnist[serve]'") from None
    predictor = Predictor.from_dir(args.model_dir, weights=args.weights, engine=args.engine)
    predictor = predictor.with_views(args.tta, source=str(args.model_dir))
    if predictor.inferred:
        print(f"paddle-mnist serve: {predictor.inferred}", file=sys.stderr)
    app = create_app(predictor, predictor.info, max_batch=args.max_batch,
                     max_wait=args.max_wait_ms / 1000, max_upload=args.max_upload_mb << 20)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"paddle-mnist serve: warning: listening on {args.host}: the API has no authentication",
              file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning"))
    try:
        started = asyncio.run(_serve(server))
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down gracefully
        started = server.started
    if not started:
        return 1  # uvicorn said why (the port is taken, the address is not this machine's)
    print("stopped", flush=True)
    return 0


async def _serve(server) -> bool:
    """Serve until Ctrl-C or SIGTERM (uvicorn's handlers stop it gracefully), printing the URL once
    listening, with the real port when 0 was asked for; whether it ever started."""
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        host, port = next(s for srv in server.servers for s in srv.sockets).getsockname()[:2]
        print(f"serving on http://{'[' + host + ']' if ':' in host else host}:{port}/ (Ctrl-C stops)", flush=True)
    await task
    return server.started


if __name__ == "__main__":
    sys.exit(main())
