"""The HTTP edge of ``paddle-mnist serve``: what happens before and around the application.

``Guard`` is ASGI middleware: OPTIONS and HEAD, the body's size, budget and
deadline, and every failure answered in the API's JSON shape with one log
line.  ``guarded_protocol`` is uvicorn's h11 protocol with a cap on open
connections (kept under the open-file limit) and a deadline for a request's
head, and with its own "Invalid HTTP request" answer in JSON.  uvicorn's own
``limit_concurrency`` is not used: it is checked only once a request's head has
arrived, so connections that never finish their head would still pile up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from paddle_mnist.limits import SMALL_BODY, Gate, Limits, within

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


def guarded_protocol(limits: Limits, error_body):
    """uvicorn's h11 protocol with ``limits.max_connections`` and a ``limits.client_timeout`` for heads."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol  # here: the serve extra is optional

    class GuardedH11Protocol(H11Protocol):
        """A connection that is waiting for a request's head (new, or kept alive after an answer) has
        ``client_timeout`` seconds to send it.  Past ``max_connections`` a new connection closes the one
        that has waited longest for its head, or, if every one is inside a request, is itself refused."""

        def connection_made(self, transport) -> None:
            super().connection_made(Lingering(transport, limits, self._client_sending))
            self._waiting()
            if len(self.connections) > limits.max_connections and not self._evict_one():
                self._refuse()

        def data_received(self, data: bytes) -> None:
            if not self.transport.drain(len(data)):  # what arrives after an early answer is dropped
                super().data_received(data)

        def handle_events(self) -> None:
            super().handle_events()
            if self.in_request() and self.waiting_since is not None:
                self.waiting_since = None
                self.head_timer.cancel()

        def on_response_complete(self) -> None:
            self._waiting()
            super().on_response_complete()

        def connection_lost(self, exc) -> None:
            self.head_timer.cancel()
            super().connection_lost(exc)

        def _client_sending(self) -> bool:
            """Whether the client may still be sending: inside a body, or a head h11 could not parse."""
            return self.conn.their_state in (h11.SEND_BODY, h11.ERROR)

        def in_request(self) -> bool:
            return self.cycle is not None and not self.cycle.response_complete

        def _waiting(self) -> None:
            if getattr(self, "head_timer", None):
                self.head_timer.cancel()
            self.waiting_since = time.monotonic()
            self.head_timer = self.loop.call_later(limits.client_timeout, self._head_overdue)

        def _head_overdue(self) -> None:
            if not self.in_request() and not self.transport.is_closing():
                log.debug("closed a connection whose request head did not arrive within %g s", limits.client_timeout)
                self.transport.close()

        def _evict_one(self) -> bool:
            idle = [
                c
                for c in self.connections
                if c is not self and not c.in_request() and c.waiting_since is not None and not c.transport.is_closing()
            ]
            if not idle:
                return False
            min(idle, key=lambda c: c.waiting_since).transport.close()
            return True

        def _refuse(self) -> None:
            self._raw_json(503, {"error": "busy: every connection is in a request; retry later"}, b"retry-after: 1\r\n")

        def send_400_response(self, msg: str) -> None:
            if self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete:
                self.transport.close()  # garbage after a request whose answer is under way: no second answer
                return
            self._raw_json(
                400, error_body("", 400, f"invalid HTTP request (malformed, or a head over {H11_HEAD_LIMIT >> 10} KB)")
            )

        def _raw_json(self, status: int, body: dict, extra: bytes = b"") -> None:
            """An answer written straight to the socket, then closed: h11 has no request to answer here."""
            data = json.dumps(body).encode()
            reason = {400: b"Bad Request", 503: b"Service Unavailable"}[status]
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n%s\r\n" % (status, reason, len(data), extra) + data
            )
            self.transport.close()

    return GuardedH11Protocol


class Lingering:
    """A connection's transport whose ``close`` can wait for the client to stop sending.

    A server that answers early (413 for a body over the limit, 408, 400 for a
    malformed head) and closes at once resets the connection while the client is
    still sending, and the reset destroys the answer before most clients read it.
    So, as nginx's lingering close does, the answer is sent, the sending side shut
    down, and what still arrives is read and dropped, for at most ``max_upload``
    bytes and ``LINGER`` seconds, before the socket closes.
    """

    def __init__(self, transport, limits: Limits, client_sending):
        self._transport, self._limits, self._client_sending = transport, limits, client_sending
        self._closing = False
        self._drain_left: int | None = None  # bytes still to drop while lingering; None: not lingering

    def __getattr__(self, name):
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    def close(self) -> None:
        """Close: at once, or if the client may still be sending, after draining what it sends."""
        if self._closing:
            return
        self._closing = True
        if not self._client_sending() or not self._transport.can_write_eof() or self._transport.is_closing():
            return self._transport.close()
        self._drain_left = self._limits.max_upload
        self._transport.write_eof()  # the answer is complete: the client can read it now
        self._transport.resume_reading()
        asyncio.get_running_loop().call_later(LINGER, self._transport.close)

    def drain(self, size: int) -> bool:
        """Whether ``size`` bytes just received are to be dropped (this connection is lingering)."""
        if self._drain_left is None:
            return False
        self._drain_left -= size
        if self._drain_left < 0:
            self._transport.close()
        return True


LINGER = 2.0  # seconds a closed connection keeps reading what its client still sends
H11_HEAD_LIMIT = 16 << 10  # h11's bound on a request's head (its max_incomplete_event_size default)


class QuietInvalidRequests(logging.Filter):
    """uvicorn logs a warning for each malformed request; the client has its JSON answer, the log needs no flood."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Invalid HTTP request received."
