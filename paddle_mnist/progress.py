"""A progress display for training batches: one updating line on a terminal, plain lines elsewhere."""
from __future__ import annotations

import sys
import time


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """``update`` after each batch; redraws at most 5 times a second on a TTY, else every 10 %.

    ``enabled=False`` (data-parallel ranks other than 0) draws nothing.
    """

    def __init__(self, label: str, total_batches: int, stream=None, enabled: bool = True):
        self.label, self.total, self.enabled = label, total_batches, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = self.last_draw = time.perf_counter()
        self.next_line = 0.1

    def update(self, done: int, images: int, loss: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        fraction = done / self.total
        if self.tty and now - self.last_draw < 0.2 and done < self.total:
            return
        if not self.tty and fraction < self.next_line and done < self.total:
            return
        self.last_draw = now
        self.next_line = fraction + 0.1
        rate = images / max(now - self.start, 1e-9)
        eta = (now - self.start) * (1 - fraction) / max(fraction, 1e-9)
        line = (f"{self.label} [{done:>{len(str(self.total))}}/{self.total}] loss {loss:.4f} "
                f"{rate:,.0f} img/s ETA {format_seconds(eta)}")
        if self.tty:
            print("\r" + line + " " * 4, end="", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            print("\r" + " " * 100 + "\r", end="", file=self.stream, flush=True)
