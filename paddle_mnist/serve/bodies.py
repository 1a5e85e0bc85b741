"""What a request brings, read and bounded: images from a multipart form or a raw body, JSON objects,
PaddleX's base64 images, the pad's strokes, the ``topk`` asked for.  Each problem is a ``RequestError``."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json

from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from paddle_mnist import strokes
from paddle_mnist.errors import json_reason
from paddle_mnist.serve.errors import RequestError
from paddle_mnist.serve.limits import SMALL_BODY, Limits

MAX_TOPK = 10


def check_topk(topk: int) -> None:
    if not 1 <= topk <= MAX_TOPK:  # the value is not echoed: it may have thousands of digits
        raise RequestError(422, f"topk must be 1..{MAX_TOPK}")


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_images(request: Request, limits: Limits) -> list[tuple[str, bytes]]:
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


async def read_form(request: Request, limits: Limits) -> list[tuple[str, bytes]]:
    """The files of a multipart form, parsed in memory: the body is already bounded and charged to the
    body budget, so Starlette's spooling of big parts to temporary files would only cost file descriptors."""

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


# The objects and arrays of a JSON body, each of which costs ~60 bytes parsed for its 2 or 3 on the wire
# (19.8 MB of "[{}, {}, ...]" took 497 MB): PaddleX's request is one object, a drawing one object of strokes
# that are arrays of [x, y] arrays.
JSON_CONTAINERS = 16
DRAWING_CONTAINERS = strokes.MAX_STROKES + strokes.MAX_POINTS + JSON_CONTAINERS


async def json_body(request: Request, max_bytes: int | None = None, max_containers: int = JSON_CONTAINERS) -> dict:
    """The request's JSON object; ``max_bytes`` bounds it below the upload limit, ``max_containers`` its objects
    and arrays.  A body over ``SMALL_BODY`` is parsed in a thread: the event loop keeps serving meanwhile."""
    data = await _json_bytes(request, max_bytes, max_containers)
    return _parsed(data) if len(data) <= SMALL_BODY else await asyncio.to_thread(_parsed, data)


async def drawing_bytes(request: Request) -> bytes:
    """The JSON of the pad's strokes, bounded in size and containers; parsed by ``drawing`` with the rendering,
    in the service's pool, where its work is charged."""
    return await _json_bytes(request, strokes.MAX_BYTES, DRAWING_CONTAINERS)


async def _json_bytes(request: Request, max_bytes: int | None, max_containers: int) -> bytes:
    kind = content_type(request)
    if kind != "application/json":
        raise RequestError(415, f"content type {kind or 'none'!r}: send application/json")
    data = await request.body()
    if max_bytes is not None and len(data) > max_bytes:
        raise RequestError(413, f"a drawing's JSON is at most {max_bytes // 1024} KB")
    if data.count(b"{") + data.count(b"[") > max_containers:  # brackets inside strings count too: errs safe
        raise RequestError(413, f"the JSON body holds over {max_containers:,} objects and arrays")
    return data


def _parsed(data: bytes) -> dict:
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise RequestError(400, f"malformed JSON ({json_reason(e)})") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the JSON body must be an object")
    return body


def drawing(data: bytes) -> strokes.Drawing:
    """The drawing in a JSON body (``strokes.parse``: 256 strokes and 20,000 points at most)."""
    try:
        return strokes.parse(_parsed(data))
    except strokes.StrokesError as e:
        raise RequestError(422, str(e)) from None


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
