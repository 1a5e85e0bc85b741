"""What ``paddle-mnist serve`` bounds, and the gate that holds requests to those bounds.

Memory is spent in two places a client controls: request bodies being received
and images being decoded.  What an image will cost is known from its header
(``preprocess.decode_cost``), what a body will cost from its Content-Length, so
both are charged before the memory is spent.  A ``Gate`` admits the cheapest
waiting charge first while the charges fit its budget; small charges (a drawing,
a few-KB body) always fit, and a gate with worker slots keeps one slot for them,
so a bystander's drawing never waits behind an attacker's big pictures.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields

from paddle_mnist.cli import positive_float, positive_int

MB = 1 << 20


def bound(default, flag: str, text: str):
    """A field of ``Limits``: its flag (sizes in bytes here, in MB on the flags ending in -mb) and what the
    flag's help says of it.  ``add_flags`` declares the flags from these, ``from_args`` reads them back."""
    return field(default=default, metadata={"flag": flag, "help": text})


@dataclass(frozen=True)
class Limits:
    """Every bound of the server; ``serve --help`` lists them as flags (sizes there in MB)."""

    # a phone photo is 3-8 MB
    max_upload: int = bound(20 * MB, "--max-upload-mb", "largest request body; larger ones get 413 while they arrive")
    max_images: int = bound(16, "--max-images", "most images in one multipart request; more get 413")
    # a 40-megapixel RGB picture
    image_budget: int = bound(
        160 * MB,
        "--image-budget-mb",
        "most memory one image may take to decode (known from its header); more get 413 undecoded",
    )
    request_budget: int = bound(
        256 * MB, "--request-budget-mb", "most memory all images of one request may take to decode; more get 413"
    )
    decode_budget: int = bound(
        384 * MB, "--decode-budget-mb", "most memory all decodes in flight may take; requests over it wait their turn"
    )
    body_budget: int = bound(
        256 * MB,
        "--body-budget-mb",
        "most memory all request bodies being received may take; requests over it wait their turn",
    )
    # this project's machines have 2 cores
    decode_workers: int = bound(
        2, "--decode-workers", "threads that decode images; with 2 or more, one is kept for small images (drawings)"
    )
    max_connections: int = bound(
        512,
        "--max-connections",
        "most open connections (lowered to fit the open-file limit); past it a new one closes "
        "the longest-idle connection, or gets 503 if none is idle",
    )
    client_timeout: float = bound(
        10.0, "--client-timeout", "seconds a client has to send a request's head, and then its body (408)"
    )
    request_timeout: float = bound(
        10.0,
        "--request-timeout",
        "seconds from a request's body to its answer, waits included; then 503 with Retry-After",
    )

    def check(self) -> Limits:
        """``self``, or a ValueError saying which bounds contradict each other."""
        if not self.image_budget <= self.request_budget <= self.decode_budget:
            raise ValueError("the decode budgets must grow: per image <= per request <= all in flight")
        if self.body_budget < 2 * self.max_upload:
            raise ValueError("the body budget must hold at least one largest upload (twice its size)")
        return self


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``Limits`` field, declared from the field's ``bound`` metadata."""
    group = parser.add_argument_group("limits", "what clients can make the server spend (docs/serving.md)")
    for f in fields(Limits):
        flag, in_mb = f.metadata["flag"], f.metadata["flag"].endswith("-mb")
        shown = f.default // MB if in_mb else f.default
        seconds = isinstance(f.default, float)
        group.add_argument(
            flag,
            type=positive_float if seconds else positive_int,
            default=shown,
            dest=f.name,
            metavar="MB" if in_mb else "SECONDS" if seconds else "N",
            help=f"{f.metadata['help']} (default: {shown:g})",
        )


def from_args(args: argparse.Namespace, **fitted) -> Limits:
    """The parsed limit flags as ``Limits`` (sizes in bytes), with ``fitted`` values replacing flags'
    (the connection cap fitted to the open-file limit); a ValueError says which bounds contradict."""
    values = {f.name: getattr(args, f.name) * (MB if f.metadata["flag"].endswith("-mb") else 1) for f in fields(Limits)}
    return Limits(**{**values, **fitted}).check()


# Work bound by time rather than memory (rendering strokes, explaining) is charged as the decode that takes as
# long, so the gate orders it among decodes and heavy work never takes the slot kept for small jobs: this
# project's decoders get through 280-380 MB of decode cost a second (40- and 63-MB pictures).
WORK_RATE = 300 * MB


def work_charge(seconds: float, memory: int = 0) -> int:
    """The charge of a job that holds ``memory`` bytes and runs about ``seconds``."""
    return max(memory, int(seconds * WORK_RATE))


SMALL_IMAGE = 8 * MB  # a decode at most this costly is small: a drawing is ~0.3 MB, a phone JPEG ~0.2 MB
SMALL_BODY = 64 << 10  # a body at most this big is small: a drawn digit's PNG is 3-10 KB


class Gate:
    """Admits charges cheapest first while they fit ``budget`` bytes (and a free slot, if ``slots``).

    A charge of at most ``small`` bytes always fits the budget, and with two or
    more slots one of them is kept for such charges.  ``enter`` waits until the
    charge is admitted (a cancelled wait leaves the queue); ``leave`` gives it back.
    """

    def __init__(self, budget: int, small: int, slots: int | None = None):
        self.budget, self.small, self.slots = budget, small, slots
        self.in_flight = self.running = self.big_running = 0
        self.peak = 0  # the most bytes ever admitted at once
        self._waiting: list = []  # a heap of (cost, arrival, future)
        self._arrival = itertools.count()

    async def enter(self, cost: int, timeout: float | None = None) -> None:
        """Wait until ``cost`` is admitted (TimeoutError after ``timeout`` seconds, leaving the queue)."""
        if not self._waiting and self._fits(cost):  # the common case: no future, no wait
            return self._take(cost)
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (cost, next(self._arrival), future))
        self._admit()
        try:
            await asyncio.wait_for(future, timeout)
        except (asyncio.CancelledError, asyncio.TimeoutError):
            if future.done() and not future.cancelled():  # admitted just as its waiter gave up
                self.leave(cost)
            raise

    def leave(self, cost: int) -> None:
        self.in_flight -= cost
        self.running -= 1
        self.big_running -= cost > self.small
        self._admit()

    def _fits(self, cost: int) -> bool:
        big = cost > self.small
        if self.slots is not None:
            if self.running >= self.slots or (big and self.big_running >= max(1, self.slots - 1)):
                return False
        return not big or not self.in_flight or self.in_flight + cost <= self.budget

    def _admit(self) -> None:
        while self._waiting:
            cost, _, future = self._waiting[0]
            if future.done():  # its request gave up waiting
                heapq.heappop(self._waiting)
                continue
            if not self._fits(cost):
                return  # the cheapest does not fit, so nothing does
            heapq.heappop(self._waiting)
            self._take(cost)
            future.set_result(None)

    def _take(self, cost: int) -> None:
        self.in_flight += cost
        self.running += 1
        self.big_running += cost > self.small
        self.peak = max(self.peak, self.in_flight)


class DecodePool:
    """Runs decodes in worker threads through a ``Gate``: the cheapest first, within the decode budget.

    A decode whose request stops waiting (its deadline passed, its client left)
    keeps its charge until the thread really ends: the memory is still in use.
    (A failure nobody waits for any more is dropped with it.)
    """

    def __init__(self, workers: int, budget: int):
        self.gate = Gate(budget, SMALL_IMAGE, slots=workers)
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="paddle-mnist-decode")

    async def run(self, cost: int, function, *args):
        """``function(*args)`` in a worker once ``cost`` is admitted; the caller's deadline bounds the wait."""
        await self.gate.enter(cost)
        job = self.executor.submit(function, *args)
        loop = asyncio.get_running_loop()
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self.gate.leave, cost))  # when the thread ends
        return await asyncio.wrap_future(job)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


async def within(seconds: float, awaitable):
    """``await awaitable``, or TimeoutError once ``seconds`` have passed.  ``asyncio.timeout`` (Python 3.11+)
    where there is one: ``wait_for`` wraps each call in a task of its own, measurable at 200 requests/s."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)
