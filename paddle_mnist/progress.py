"""A progress line for long loops (training batches, downloads): one updating line on a terminal,
a plain line every 10 % elsewhere, so logs stay readable."""

from __future__ import annotations

import sys
import time


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


class Progress:
    """``update(done, text)`` as work advances; redraws at most 5 times a second on a TTY.

    ``total`` None (a download without Content-Length) shows no ETA and, off a
    terminal, no lines until ``finish``.  ``enabled=False`` (data-parallel
    ranks other than 0) draws nothing.
    """

    def __init__(self, label: str, total: int | None, stream=None, enabled: bool = True):
        self.label, self.total, self.enabled = label, total, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = self.last_draw = time.perf_counter()
        self.next_line = 0.1
        self.line = ""

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def update(self, done: int, text: str) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        fraction = done / self.total if self.total else None
        finished = fraction is not None and fraction >= 1
        if self.tty and now - self.last_draw < 0.2 and not finished:
            return
        if not self.tty and (fraction is None or (fraction < self.next_line and not finished)):
            return
        self.last_draw = now
        eta = (
            f" ETA {format_seconds(self.elapsed * (1 - fraction) / max(fraction, 1e-9))}"
            if fraction and not finished
            else ""
        )
        self.line = f"{self.label} {text}{eta}"
        if fraction is not None:
            self.next_line = fraction + 0.1
        if self.tty:
            print("\r" + self.line + " " * 4, end="", file=self.stream, flush=True)
        else:
            print(self.line, file=self.stream, flush=True)

    def finish(self, text: str | None = None) -> None:
        """Clear the line (``text`` None), or leave ``label text`` as the final line."""
        if not self.enabled:
            return
        if text is None:
            if self.tty:
                print("\r" + " " * (len(self.line) + 4) + "\r", end="", file=self.stream, flush=True)
        elif self.tty or self.line != f"{self.label} {text}":
            print(
                ("\r" if self.tty else "") + f"{self.label} {text}" + " " * 4 * self.tty, file=self.stream, flush=True
            )
