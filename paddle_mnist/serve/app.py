"""The ASGI application of ``paddle-mnist serve``: its routes, read top to bottom, and its error handlers.

    GET  /                      the page: draw a digit or drop a photo, see what the model saw and thinks
    POST /api/predict           images (multipart files, or one raw image body) or strokes -> result rows
    POST /image-classification  PaddleX's serving contract: {"image": base64, "topk": k}
    GET  /api/model, /healthz, /openapi.json

Every route reads the ``Service`` from ``app.state``; ``create_app`` builds one and wraps the app in the
``Guard``, which bounds what arrives before any route runs.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from paddle_mnist.predictor import Predictor
from paddle_mnist.serve.bodies import (
    MAX_TOPK,
    check_topk,
    content_type,
    decode_base64,
    drawing_bytes,
    json_body,
    read_images,
)
from paddle_mnist.serve.errors import RequestError, error_body
from paddle_mnist.serve.guard import Guard
from paddle_mnist.serve.limits import Limits
from paddle_mnist.serve.service import Ask, Explainer, Service

STATIC = resources.files("paddle_mnist") / "static"
MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
}

# /api/predict reads its body itself (three content types), so its schema is spelled out for /openapi.json.
PREDICT_BODY = {
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
}

routes = APIRouter()


def service_of(request: Request) -> Service:
    return request.app.state.service


@routes.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page(request: Request):
    return HTMLResponse(request.app.state.static["index.html"])


@routes.get("/static/{name}", include_in_schema=False)
async def static(request: Request, name: str):
    """The page's files, from memory: a file opened per answer would cost a descriptor per connection."""
    files = request.app.state.static
    if name not in files:
        raise HTTPException(404, "Not Found")
    return Response(files[name], media_type=MEDIA_TYPES[name.rsplit(".", 1)[-1]])


@routes.get("/healthz")
async def healthz():
    return {"status": "ok"}


@routes.get("/api/model")
async def model(request: Request):
    return service_of(request).predictor.summary.to_json()


@routes.post(
    "/api/predict", summary="Read the digits in one or more images, or in a drawing", openapi_extra=PREDICT_BODY
)
async def api_predict(request: Request, topk: int = 3, explain: bool = False):
    service = service_of(request)
    check_topk(topk)
    if explain and service.explainer is None:
        raise RequestError(422, "explain=1 needs one model: this server reads a committee")
    ask = Ask(topk, explain)
    if content_type(request) == "application/json":  # the pad's strokes
        drawing = await drawing_bytes(request)
        return {"results": [(await service.answer_drawing(drawing, ask)).to_json()]}
    images = await read_images(request, service.limits)
    rows = await service.answer(images, ask)
    if len(rows) == 1 and isinstance(rows[0], Exception):
        raise rows[0]
    return {
        "results": [
            row.to_json() if not isinstance(row, Exception) else {"source": name, "error": str(row)}
            for (name, _), row in zip(images, rows)
        ]
    }


@routes.post("/image-classification", summary="PaddleX serving's image-classification contract")
async def image_classification(request: Request):
    service = service_of(request)
    body = await json_body(request)
    topk = body.get("topk", 5)
    if not isinstance(topk, int) or isinstance(topk, bool):
        raise RequestError(422, f"topk must be an integer 1..{MAX_TOPK}")
    check_topk(topk)
    image = decode_base64(body.get("image"))
    [row] = await service.answer([("image", image)], Ask(topk, single=True))  # a classifier: one label a picture
    if isinstance(row, Exception):
        raise row
    categories = [{"id": k, "name": service.predictor.classes[k], "score": p} for k, p in row.prediction.topk]
    return {"logId": str(uuid.uuid4()), "errorCode": 0, "errorMsg": "Success", "result": {"categories": categories}}


# --- errors, all in the JSON shape of ``errors.error_body`` ------------------------------------------


def error(request: Request, status: int, message: str, headers=None) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, status, message), status_code=status, headers=headers)


async def request_error(request: Request, e: RequestError):
    return error(request, e.status, str(e), e.headers)


async def http_error(request: Request, e: HTTPException):
    return error(request, e.status_code, str(e.detail), e.headers)


async def validation_error(request: Request, e: RequestValidationError):
    first = e.errors()[0] if e.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return error(request, 422, f"{where}: {first.get('msg', 'invalid request')}")


async def client_left(request: Request, e: ClientDisconnect):
    return Response(status_code=400)  # nobody is listening; the Guard drops it without a word


async def unexpected(request: Request, e: Exception):  # answered here, logged once by the Guard
    return error(request, 500, f"internal error: {type(e).__name__}")


HANDLERS = {
    RequestError: request_error,
    HTTPException: http_error,
    RequestValidationError: validation_error,
    ClientDisconnect: client_left,
    Exception: unexpected,
}


# --- the application ---------------------------------------------------------------------------------


@asynccontextmanager
async def lifespan(app: FastAPI):
    service = app.state.service
    worker = asyncio.create_task(service.batcher.run())
    yield
    worker.cancel()
    service.pool.close()
    service.batcher.executor.shutdown(wait=False)


def create_app(
    predictor: Predictor,
    *,
    max_batch: int = 32,
    max_wait: float = 0.005,
    limits: Limits | None = None,
    explainer: Explainer | None = None,
):
    """The ASGI application over ``predictor``, inside its ``Guard``; ``explainer`` answers ``?explain=1``."""
    limits = limits or Limits()
    app = FastAPI(
        title="paddle-mnist",
        summary="Handwritten-digit recognition with PaddlePaddle",
        docs_url=None,  # the interactive docs load from a CDN
        redoc_url=None,
        lifespan=lifespan,
        exception_handlers=HANDLERS,
    )
    app.state.service = Service(predictor, max_batch, max_wait, limits, explainer)
    app.state.static = {f.name: f.read_bytes() for f in STATIC.iterdir() if f.name.rsplit(".", 1)[-1] in MEDIA_TYPES}
    app.include_router(routes)
    return Guard(app, limits, error_body, lambda scope: allowed_methods(app, scope))


def allowed_methods(app: FastAPI, scope) -> list[str]:
    """The methods the routes at ``scope``'s path answer (HEAD with GET, and OPTIONS); none: no route."""
    # FastAPI may hold an included router as one object that matches every path: ask its routes instead
    candidates = [route for route in app.router.routes if hasattr(route, "path")] + routes.routes
    methods = set()
    for route in candidates:
        match, _ = route.matches({**scope, "method": "GET"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or {"GET"})
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods | {"OPTIONS"}) if methods else []
