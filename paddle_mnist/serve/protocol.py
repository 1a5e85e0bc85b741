"""The connection layer of ``paddle-mnist serve``: uvicorn's h11 protocol with a cap on open connections
(kept under the open-file limit), a deadline for a request's head, a lingering close after an early
answer, and its own "Invalid HTTP request" answer in JSON.  uvicorn's own ``limit_concurrency`` is
not used: it is checked only once a request's head has arrived, so connections that never finish their
head would still pile up.  Imports uvicorn: ``serve.command`` imports it once the extra is known to be there.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import socket
import struct
import termios
import time
import weakref
from collections.abc import Callable

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from paddle_mnist.serve.guard import log
from paddle_mnist.serve.limits import Limits

LINGER = 2.0  # seconds a closed connection keeps reading what its client still sends
H11_HEAD_LIMIT = 16 << 10  # h11's bound on a request's head (its max_incomplete_event_size default)
# The kernel's send buffer of a connection (Linux doubles it): every answer here is under a few hundred KB, and
# autotuned buffers of up to 4 MB would hide a client that reads nothing behind megabytes of answers.
SEND_BUFFER = 64 << 10
# A body may come in pieces of any size, but on average of at least PIECE_BYTES after its first FREE_PIECES
# (a network's packets carry ~1.4 KB; a drawing's whole body is one piece).
FREE_PIECES, PIECE_BYTES = 64, 1024


def guarded_protocol(limits: Limits, error_body) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn makes one of per connection, bound to ``limits`` and answering errors
    in the shape of ``error_body``."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"limits": limits, "error_body": staticmethod(error_body), "opening": weakref.WeakSet()},
    )


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with ``limits.max_connections`` and ``limits.client_timeout`` both ways.

    A connection that is waiting for a request's head (new, or kept alive after an answer) has
    ``client_timeout`` seconds to send it, and a client that stops reading its answers has as long
    before its connection is dropped (asyncio tells the protocol when the unsent answer outgrows its
    buffer: ``pause_writing``).  Past ``max_connections`` a new connection takes the place of another
    (``_evict_one``); only if every one is busy in a request, with all its answers read, is it refused.

    The place is made as the protocol is, not in ``connection_made``: asyncio makes the protocols of a
    burst of accepted sockets one loop iteration after accepting them and calls their ``connection_made``
    one later, and an evicted socket is closed one later still, while each iteration may accept another
    burst.  Evicting at ``connection_made`` could hold three bursts' sockets beyond the cap at once (at 256
    open files: a cap of 96, 3 x 64 and the idle server's 8 make 296), and such a server ran out during
    ``slow_headers`` on a loaded machine; evicting here holds two at most (232), what
    ``serve.command.FD_RESERVE`` is for.  With the kernel's queue deep (``serve.command.QUEUE``) full bursts
    are the rule: polling /proc during ``slow_headers``, the open files peaked at 256 and ran out in 2 of 5
    attacks evicting at ``connection_made``, and at 210-231 in 14 evicting here."""

    limits: Limits  # set by ``guarded_protocol``
    error_body: Callable[[str, int, str], dict]
    opening: weakref.WeakSet  # protocols made whose connection_made has not come yet: they hold sockets too
    placed: bool  # it had room (or made it) when it was made; if not, connection_made tries once more
    stalled_since: float | None = None  # when the client stopped reading what is sent (``pause_writing``)
    send_timer: asyncio.TimerHandle | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.opening.add(self)
        self.placed = len(self.connections) + len(self.opening) <= self.limits.max_connections or self._evict_one()

    def connection_made(self, transport) -> None:
        self.opening.discard(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a client that stops reading is seen at once, not after megabytes of its answers
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        super().connection_made(Lingering(transport, self.limits, self._client_sending))
        self._waiting()
        if not self.placed and len(self.connections) > self.limits.max_connections and not self._evict_one():
            self._refuse()  # every other connection was busy when this one was made, and still is

    def data_received(self, data: bytes) -> None:
        if self.transport.drain(len(data)):  # what arrives after an early answer is dropped
            return
        if not self.in_request() and self._head_over_limit(data):
            return self.send_400_response("request head over the limit")
        if self.in_request() and self._in_small_pieces(data):
            return self._refuse_body()
        super().data_received(data)

    def _in_small_pieces(self, data: bytes) -> bool:
        """Whether the body so far came in pieces (reads; and chunks of a chunked body, two line breaks each)
        of under ``PIECE_BYTES`` on average, past the first ``FREE_PIECES``: each piece costs the event loop
        the same parsing whatever its size, so a body sent a byte at a time costs a thousand times more."""
        chunked = any(name == b"transfer-encoding" for name, _ in self.cycle.scope["headers"])
        self.pieces += 1 + (data.count(b"\r\n") // 2 if chunked else 0)
        self.body_bytes += len(data)
        return self.pieces > FREE_PIECES + self.body_bytes // PIECE_BYTES

    def _refuse_body(self) -> None:
        if self.cycle is not None and self.cycle.response_started:
            return self.transport.close()
        log.debug("refused a body sent in pieces of under %d bytes", PIECE_BYTES)
        message = f"the request body arrives in pieces of under {PIECE_BYTES:,} bytes on average"
        self._raw_json(400, self.error_body(self.cycle.scope["path"], 400, message))
        self.cycle.disconnected = True  # the application, still waiting for the body, learns the client left
        self.cycle.message_event.set()

    def _head_over_limit(self, data: bytes) -> bool:
        """Whether the head being received is over ``H11_HEAD_LIMIT``: h11 bounds only a head still incomplete,
        so a bigger one that arrives whole in one read would pass."""
        buffered = len(self.conn.trailing_data[0])
        end = data.find(b"\r\n\r\n")
        return buffered + (len(data) if end == -1 else end) > H11_HEAD_LIMIT

    def handle_events(self) -> None:
        super().handle_events()
        if self.in_request() and self.waiting_since is not None:
            self.waiting_since = None
            self.head_timer.cancel()

    def on_response_complete(self) -> None:
        self._waiting()
        if self.conn.trailing_data[0] and self.unread() >= SEND_BUFFER:
            # more requests sent ahead while a send buffer's worth of answers lies unread: serving them would
            # spend the event loop on answers nobody reads (1,100 such clients held a bystander up to 4.6 s)
            log.debug("dropped a connection that pipelines requests and reads none of its answers")
            self.transport.abort()
            return
        super().on_response_complete()

    def connection_lost(self, exc) -> None:
        self.head_timer.cancel()
        if self.send_timer is not None:
            self.send_timer.cancel()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.stalled_since = time.monotonic()
        self.send_timer = self.loop.call_later(self.limits.client_timeout, self._send_overdue)

    def resume_writing(self) -> None:
        self.stalled_since = None
        if self.send_timer is not None:
            self.send_timer.cancel()
        super().resume_writing()

    def _send_overdue(self) -> None:
        """The client has read nothing of its answers for ``client_timeout`` s: it holds a connection that
        counts as busy, so it is dropped, its unsent answers with it."""
        log.debug("dropped a connection whose client read nothing for %g s", self.limits.client_timeout)
        self.transport.abort()

    def _client_sending(self) -> bool:
        """Whether the client may still be sending: inside a body, or a head h11 could not parse."""
        return self.conn.their_state in (h11.SEND_BODY, h11.ERROR)

    def in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _waiting(self) -> None:
        self.pieces = self.body_bytes = 0  # counted afresh for each request's body
        if getattr(self, "head_timer", None):
            self.head_timer.cancel()
        self.waiting_since = time.monotonic()
        self.head_timer = self.loop.call_later(self.limits.client_timeout, self._head_overdue)

    def _head_overdue(self) -> None:
        if not self.in_request() and not self.transport.is_closing():
            log.debug("closed a connection whose request head did not arrive within %g s", self.limits.client_timeout)
            self.transport.close()

    def _evict_one(self) -> bool:
        """Make room, in this order: abort the connection stalled longest (its client reads nothing of its
        answers), else close the one idle longest, else abort one that has requests queued or answers unread
        (the most unread): a client that pipelines requests and reads nothing must not hold its place while
        it is served.  The first two need no system call: this runs for every connection past the cap, in a
        burst of accepts, and must stay cheap."""
        others = [c for c in self.connections if c is not self and not c.transport.is_closing()]
        stalled = [c for c in others if c.stalled_since is not None]
        idle = [c for c in others if not c.in_request() and c.waiting_since is not None]
        if stalled:
            min(stalled, key=lambda c: c.stalled_since).transport.abort()  # unread answers: nothing to linger for
            return True
        if idle:
            min(idle, key=lambda c: c.waiting_since).transport.close()
            return True
        unread = {c: c.unread() for c in others}
        reading = [c for c in others if unread[c] > 0 or c.conn.trailing_data[0]]
        if not reading:
            return False
        max(reading, key=unread.get).transport.abort()
        return True

    def unread(self) -> int:
        """Bytes sent to the client that it has not acknowledged (the kernel's send queue; 0 where unknown)."""
        sock = self.transport.get_extra_info("socket")
        try:
            return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
        except (AttributeError, OSError):
            return 0

    def _refuse(self) -> None:
        self._raw_json(503, {"error": "busy: every connection is in a request; retry later"}, b"retry-after: 1\r\n")

    def send_400_response(self, msg: str) -> None:
        if self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete:
            self.transport.close()  # garbage after a request whose answer is under way: no second answer
            return
        self._raw_json(
            400, self.error_body("", 400, f"invalid HTTP request (malformed, or a head over {H11_HEAD_LIMIT >> 10} KB)")
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


class QuietInvalidRequests(logging.Filter):
    """uvicorn logs a warning for each malformed request and two for each ``Upgrade`` header (the server speaks
    no WebSocket: ``ws="none"``); the client has its answer, the log needs no line per request."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return message not in QUIET and not message.startswith("No supported WebSocket library")


QUIET = {"Invalid HTTP request received.", "Unsupported upgrade request."}
