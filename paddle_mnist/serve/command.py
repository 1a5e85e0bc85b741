"""``paddle-mnist serve``: the flags, and the process around the app: the open-file limit, glibc's
allocator, logging, uvicorn with the guarded protocol, and the URL printed once listening."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import logging
import os
import resource
import socket
import sys
import time

from paddle_mnist.cli import non_negative_float, positive_int
from paddle_mnist.errors import UserError, cli_entry
from paddle_mnist.predict import add_model_flags, from_flags, model_dirs
from paddle_mnist.serve import limits
from paddle_mnist.serve.errors import error_body
from paddle_mnist.serve.guard import log, one_line
from paddle_mnist.serve.limits import MB, Limits
from paddle_mnist.serve.service import Explainer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paddle-mnist serve",
        description="Serve a trained model: a draw-a-digit page and an HTTP API (``paddle-mnist serve``).",
    )
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
    limits.add_flags(parser)
    add("--debug", action="store_true", help="log each dropped client and full tracebacks of internal errors")
    return parser


def limits_from_args(args: argparse.Namespace) -> Limits:
    """The parsed limit flags as ``Limits``, the connection cap fitted to the open-file limit."""
    try:
        return limits.from_args(args, max_connections=fitted_connections(args.max_connections))
    except ValueError as e:
        raise UserError(f"limits: {e}") from None


# asyncio accepts up to ``backlog`` sockets per wake-up before any of their protocols is made (and so before
# the connection cap can close one): the burst whose protocols are being made, each closing a connection past
# the cap, and the burst accepted meanwhile (``protocol.GuardedH11Protocol``), plus the ~10 descriptors an
# idle server holds.
BACKLOG = 64
FD_RESERVE = 32 + 2 * BACKLOG
# The kernel's queue of connections not yet accepted holds none of the server's descriptors, so it is as deep
# as uvicorn's default while asyncio still accepts BACKLOG a wake-up: BACKLOG deep, a flood of connections kept
# it full, and the kernel dropped other clients' SYNs (resent after 1 s, then 3 s).
QUEUE = 2048


def fitted_connections(wanted: int) -> int:
    """``wanted``, or fewer so every connection has a file descriptor: running out of them would make the
    accept loop fail instead of refusing politely."""
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
    from paddle_mnist.serve import app, protocol  # FastAPI and uvicorn: imported once they are known to be there

    bounds = limits_from_args(args)
    return_freed_memory()
    predictor = from_flags(args, "paddle-mnist serve")
    dirs = model_dirs(args)
    explainer = Explainer(dirs[0], args.weights) if len(dirs) == 1 else None  # one model's gradients
    asgi = app.create_app(
        predictor, max_batch=args.max_batch, max_wait=args.max_wait_ms / 1000, limits=bounds, explainer=explainer
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"paddle-mnist serve: warning: listening on {args.host}: the API has no authentication", file=sys.stderr)
    config = uvicorn.Config(
        asgi,
        host=args.host,
        port=args.port,
        log_level="debug" if args.debug else "warning",
        http=protocol.guarded_protocol(bounds, error_body),
        h11_max_incomplete_event_size=protocol.H11_HEAD_LIMIT,
        access_log=False,
        backlog=BACKLOG,
        ws="none",  # no route speaks WebSocket: an upgrade is an ordinary request, answered in JSON
    )
    configure_logging(args.debug, protocol.QuietInvalidRequests())
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
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def configure_logging(debug: bool, quiet_invalid_requests: logging.Filter) -> None:
    """The server's own lines on stderr, one per event; uvicorn's per-request noise kept out."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("paddle-mnist serve: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False
    if not debug:
        logging.getLogger("uvicorn.error").addFilter(quiet_invalid_requests)


async def _serve(server) -> bool:
    """Serve until Ctrl-C or SIGTERM (uvicorn's handlers stop it gracefully), printing the URL once
    listening, with the real port when 0 was asked for; whether it ever started."""
    asyncio.get_running_loop().set_exception_handler(loop_errors())
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        deepen_queues(server)
        host, port = next(s for srv in server.servers for s in srv.sockets).getsockname()[:2]
        print(f"serving on http://{'[' + host + ']' if ':' in host else host}:{port}/ (Ctrl-C stops)", flush=True)
    await task
    return server.started


def deepen_queues(server) -> None:
    """Let the kernel queue ``QUEUE`` connections on each listening socket (asyncio listened with ``BACKLOG``,
    the number it accepts a wake-up, and keeps that)."""
    for listening in server.servers:
        for sock in listening.sockets:
            # asyncio's TransportSocket offers no listen(); a duplicate descriptor is the same socket
            with socket.socket(fileno=os.dup(sock.fileno())) as same:  # closing it closes the duplicate only
                same.listen(QUEUE)


def loop_errors(every: float = 10.0):
    """An event-loop error handler that logs each kind of error (say, accept() out of file descriptors)
    in one line, at most once per ``every`` seconds: a failure repeated a thousand times a second must
    not become a thousand tracebacks."""
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
