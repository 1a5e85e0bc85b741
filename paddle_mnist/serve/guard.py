"""The HTTP edge of ``paddle-mnist serve``, around the application: ``Guard`` is ASGI middleware that
answers OPTIONS and HEAD, bounds each request body's size, budget and deadline, and answers every
failure in the API's JSON shape with one log line.  The connections below it are ``serve.protocol``'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from paddle_mnist.serve.limits import SMALL_BODY, Gate, Limits, within

log = logging.getLogger("paddle_mnist.serve")


def json_message(status: int, body: dict, headers: dict | None = None) -> tuple[dict, dict]:
    """The two ASGI messages of a JSON response."""
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.encode(), str(v).encode()) for k, v in (headers or {}).items()]
    return (
        {"type": "http.response.start", "status": status, "headers": raw},
        {"type": "http.response.body", "body": data},
    )


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


class Guard:
    """ASGI middleware around the application; ``error_body(path, status, message)`` shapes errors and
    ``allowed_methods(scope)`` lists the methods of the route at a path (empty: no such route)."""

    def __init__(self, app, limits: Limits, error_body, allowed_methods):
        self.app, self.limits, self.error_body, self.allowed_methods = app, limits, error_body, allowed_methods
        self.bodies = Gate(limits.body_budget, SMALL_BODY)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        exchange = Exchange(self, scope, send)
        try:
            await exchange.run(receive)
        except Exception as error:  # noqa: BLE001 - the one place every failure becomes a JSON 500
            if is_disconnect(error) or exchange.dropped:
                log.debug("%s %s: the client left (%s)", scope["method"], scope["path"], one_line(error))
                return
            log.error(
                "%s %s: %s", scope["method"], scope["path"], one_line(error), exc_info=log.isEnabledFor(logging.DEBUG)
            )
            if not exchange.started:
                await exchange.error(500, "internal error: " + type(error).__name__)


def is_disconnect(error: BaseException) -> bool:
    return type(error).__name__ == "ClientDisconnect" or isinstance(error, ConnectionError)


class Exchange:
    """One request passing the ``Guard``: its body's accounting and whether its answer has started."""

    def __init__(self, guard: Guard, scope, send):
        self.guard, self.scope, self._send = guard, scope, send
        self.started = False  # an answer has begun
        self.dropped = False  # the guard answered for the body (413, 408): the application's answer is dropped
        self.received = 0

    async def run(self, receive) -> None:
        if self.scope["method"] == "OPTIONS":
            return await self.options()
        scope = self.scope
        if scope["method"] == "HEAD":  # the GET route answers; uvicorn sends no body for HEAD
            scope = {**scope, "method": "GET"}
        charge = await self.body_charge()
        if charge is None:
            return
        gate = self.guard.bodies
        try:
            await gate.enter(charge, self.guard.limits.request_timeout)
        except asyncio.TimeoutError:
            return await self.error(
                503,
                f"busy: request bodies fill the {gate.budget >> 20} MB body budget; retry later",
                {"retry-after": 1},
            )
        try:
            await self.guard.app(scope, self.receive(receive), self.send)
        finally:
            gate.leave(charge)

    async def send(self, message):
        if self.dropped:
            return
        self.started |= message["type"] == "http.response.start"
        await self._send(message)

    async def error(self, status: int, message: str, headers: dict | None = None) -> None:
        """Answer ``status`` with ``message`` in the route's error shape."""
        start, body = json_message(status, self.guard.error_body(self.scope["path"], status, message), headers)
        self.started = True
        await self._send(start)
        await self._send(body)

    async def options(self) -> None:
        methods = self.guard.allowed_methods(self.scope)
        if not methods:
            return await self.error(404, "Not Found")
        self.started = True
        await self._send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [(b"allow", ", ".join(methods).encode()), (b"content-length", b"0")],
            }
        )
        await self._send({"type": "http.response.body", "body": b""})

    async def body_charge(self) -> int | None:
        """Bytes to hold for the body while it is received and parsed (twice its size: the chunks and their
        join), or None once refused for its declared length."""
        headers = dict(self.scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and b"transfer-encoding" in headers:
            # RFC 9112 6.3: the body is framed by Transfer-Encoding, so the length declared would not be the
            # length received (and charged); a request with both "ought to be handled as an error"
            await self.error(400, "both Transfer-Encoding and Content-Length: send one", {"connection": "close"})
            return None
        if declared is None:  # chunked: charged as the largest upload; neither header: no body
            return 2 * self.guard.limits.max_upload if b"transfer-encoding" in headers else 0
        if not declared.isdigit() or len(declared) > 18:  # h11 has already refused most malformed ones
            await self.error(400, "malformed Content-Length", {"connection": "close"})
            return None
        if int(declared) > self.guard.limits.max_upload:
            await self.refuse_size()
            return None
        return 2 * int(declared)

    async def refuse_size(self) -> None:
        """413 now, before the rest of the body is read; the connection closes after it."""
        self.dropped = True
        if not self.started:
            await self.error(
                413,
                f"request body over the {self.guard.limits.max_upload:,}-byte upload limit",
                {"connection": "close"},
            )

    def receive(self, receive):
        """``receive``, counting the body against the upload limit and its arrival against the client deadline."""
        limits = self.guard.limits
        deadline = time.monotonic() + limits.client_timeout

        async def counted():
            if self.dropped:
                return {"type": "http.disconnect"}
            try:
                message = await within(max(0.0, deadline - time.monotonic()), receive())
            except asyncio.TimeoutError:
                if not self.started:
                    await self.error(
                        408,
                        f"the request body did not arrive within {limits.client_timeout:g} s",
                        {"connection": "close"},
                    )
                self.dropped = True
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > limits.max_upload:
                    await self.refuse_size()
                    return {"type": "http.disconnect"}
            return message

        return counted
