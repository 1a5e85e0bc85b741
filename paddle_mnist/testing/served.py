"""A real ``paddle-mnist serve`` on 127.0.0.1 under attack: the ``Server`` in a subprocess, and ``attack``,
which runs an attack while a bystander posts a drawn digit every 0.1 s on a fresh connection.  The
``Outcome`` holds the attack's answers, the bystander's latencies, the server's peak RSS during the attack
(VmHWM, reset before it) and the log lines it caused.  The attacks are ``serve_attacks``'.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw


def drawn_seven() -> bytes:
    image = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(image).line([(70, 60), (210, 60), (120, 240)], fill=0, width=20, joint="curve")
    return png(image)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "----paddle-mnist-attack"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Server:
    """``paddle-mnist serve FLAGS`` in a subprocess on a free port, its stderr in ``log``; ``nofile`` lowers
    its open-file limit, ``pythonpath`` serves another checkout (a benchmark's "before")."""

    def __init__(self, model_dir: Path, log: Path, *flags, nofile: int | None = None, pythonpath: str | None = None):
        def limit():
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.log = log
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "paddle_mnist",
                "serve",
                "--model-dir",
                str(model_dir),
                "--port",
                "0",
                *map(str, flags),
            ],
            stdout=subprocess.PIPE,
            stderr=open(log, "w"),
            text=True,
            preexec_fn=limit,
            env={**os.environ, "PYTHONPATH": pythonpath} if pythonpath else None,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("serving on http://127.0.0.1:"):
            self.proc.kill()
            raise RuntimeError(f"the server did not start: {line!r} {log.read_text()[-2000:]}")
        self.port = int(line.split()[2].rstrip("/").rsplit(":", 1)[1])

    def status(self, field_name: str) -> int:
        """A /proc/PID/status figure in kB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        raise KeyError(field_name)

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 60
    ) -> tuple[int, dict | str, dict]:
        """(status, JSON body or text, headers) of one request on a fresh connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body, headers or {})
            response = connection.getresponse()
            data = response.read()
            kind = response.getheader("content-type", "")
            return (
                response.status,
                json.loads(data) if "json" in kind and data else data.decode(errors="replace"),
                dict(response.getheaders()),
            )
        finally:
            connection.close()

    def stop(self) -> int:
        self.proc.send_signal(2)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.proc.kill()


@dataclass
class Outcome:
    name: str
    answers: list = field(default_factory=list)  # (status, body) of the attack's requests, or an error's name
    bystander_ms: list[float] = field(default_factory=list)
    bystander_failures: list = field(default_factory=list)
    rss_before_mb: float = 0.0
    peak_rss_mb: float = 0.0
    log: list[str] = field(default_factory=list)

    @property
    def statuses(self) -> Counter:
        return Counter(a[0] if isinstance(a, tuple) else a for a in self.answers)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.bystander_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    @property
    def tracebacks(self) -> int:
        return sum("Traceback" in line or "Exception in ASGI" in line for line in self.log)


def bystander(server: Server, stop: threading.Event, outcome: Outcome) -> None:
    body = drawn_seven()
    while not stop.is_set():
        start = time.perf_counter()
        try:
            status, answer, _ = server.request("POST", "/api/predict", body, {"Content-Type": "image/png"}, timeout=30)
            ok = status == 200 and answer["results"][0]["digit"] == 7
        except OSError as e:
            status, ok = type(e).__name__, False
        outcome.bystander_ms.append(1000 * (time.perf_counter() - start))
        if not ok:
            outcome.bystander_failures.append(status)
        stop.wait(0.1)


def attack(server: Server, name: str, run) -> Outcome:
    """``run(server)`` (a list of answers) with a bystander beside it; the outcome of both."""
    outcome = Outcome(name)
    lines_before = len(server.log_lines())
    outcome.rss_before_mb = server.status("VmRSS") / 1024
    server.reset_peak()
    stop = threading.Event()
    watcher = threading.Thread(target=bystander, args=(server, stop, outcome))
    watcher.start()
    time.sleep(0.3)  # the bystander's first request before the attack
    try:
        outcome.answers = run(server)
    finally:
        time.sleep(0.3)
        stop.set()
        watcher.join()
    outcome.peak_rss_mb = server.status("VmHWM") / 1024
    outcome.log = server.log_lines()[lines_before:]
    return outcome


def answers(server: Server, requests: list[tuple], workers: int) -> list:
    """Each (method, path, body, headers) sent from ``workers`` threads; (status, body) or the error's name."""

    def one(request):
        try:
            status, body, _ = server.request(*request)
            return status, body
        except OSError as e:
            return type(e).__name__

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, requests))


def closed_by_peer(s: socket.socket) -> bool:
    """Whether the server has closed ``s``: whatever it sent, then EOF (or a reset)."""
    s.setblocking(False)
    try:
        while s.recv(1 << 16):
            pass
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def raw(server: Server, data: bytes) -> tuple[int, dict | str]:
    """Send ``data`` as it is; the status and body of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may answer and close before all of it is sent
        return reply(s)


def reply(s: socket.socket) -> tuple[int, dict | str]:
    """The status and body (JSON, or text) of what the server sends on ``s`` until it closes; 0 for nothing."""
    received = b""
    try:
        while chunk := s.recv(1 << 16):
            received += chunk
    except OSError:
        pass
    head, _, body = received.partition(b"\r\n\r\n")
    if not head:
        return 0, "no answer"
    status = int(head.split()[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")
