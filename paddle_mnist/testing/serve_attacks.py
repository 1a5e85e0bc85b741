"""Hostile load against a real ``paddle-mnist serve`` on 127.0.0.1: for tests/test_serve_hostile.py and
``scripts/bench_serve.py --hostile``.  Every attack is bounded in requests, connections and seconds.

An attack runs while a bystander posts a drawn digit every 0.1 s on a fresh connection; the outcome
holds the attack's answers, the bystander's latencies, the server's peak RSS during the attack (VmHWM,
reset before it) and the log lines it caused.
"""

from __future__ import annotations

import http.client
import io
import json
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
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


def rgba16_png(width: int, height: int) -> bytes:
    """A blank 16-bit RGBA PNG (Pillow cannot write one): a few hundred KB that decode to 4 bytes a pixel."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress((b"\0" + bytes(width * 8)) * height, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0))
        + chunk(b"IDAT", rows)
        + chunk(b"IEND", b"")
    )


def grey_png(width: int, height: int) -> bytes:
    return png(Image.new("L", (width, height), 255))


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
    its open-file limit."""

    def __init__(self, model_dir: Path, log: Path, *flags, nofile: int | None = None):
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


# --- the attacks ----------------------------------------------------------------------------------


def decode_bomb(images: int, side: int):
    """One multipart request of ``images`` blank 16-bit RGBA PNGs of ``side`` pixels squared."""
    picture = rgba16_png(side, side)
    body, kind = multipart([(f"bomb{i}.png", picture) for i in range(images)])
    return lambda server: answers(server, [("POST", "/api/predict", body, {"Content-Type": kind})], 1)


def many_grey(images: int, side: int, requests: int = 1):
    """``requests`` concurrent multipart requests of ``images`` blank grey PNGs each."""
    picture = grey_png(side, side)
    body, kind = multipart([(f"grey{i}.png", picture) for i in range(images)])
    return lambda server: answers(server, [("POST", "/api/predict", body, {"Content-Type": kind})] * requests, requests)


def upload_flood(uploads: int, size: int):
    """``uploads`` concurrent raw bodies of ``size`` bytes that are no image."""
    body = b"\x89PNG" + bytes(size - 4)
    return lambda server: answers(
        server, [("POST", "/api/predict", body, {"Content-Type": "image/png"})] * uploads, uploads
    )


def slow_headers(connections: int, seconds: float):
    """``connections`` sockets that each send one byte of a request head every 0.5 s for ``seconds``."""

    def run(server: Server) -> list:
        sockets, opened = [], Counter()
        for _ in range(connections):
            try:
                sockets.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
                opened["open"] += 1
            except OSError as e:
                opened[type(e).__name__] += 1
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
        end = time.monotonic() + seconds
        position = 0
        while time.monotonic() < end:
            for s in sockets:
                try:
                    s.send(head[position : position + 1])
                except OSError:
                    pass
            position += 1
            time.sleep(0.5)
        closed = sum(closed_by_peer(s) for s in sockets)
        for s in sockets:
            s.close()
        return [("opened", opened["open"]), ("closed by the server", closed)]

    return run


def never_read(connections: int, pipelined: int, seconds: float):
    """``connections`` sockets that each send ``pipelined`` requests for the page's script at once, then
    hold on for ``seconds`` without reading a byte of the answers."""
    requests = b"GET /static/app.js HTTP/1.1\r\nHost: x\r\n\r\n" * pipelined

    def run(server: Server) -> list:
        sockets, opened = [], Counter()
        for _ in range(connections):
            try:
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the server stalls sooner
                s.settimeout(5)
                s.connect(("127.0.0.1", server.port))
                s.setblocking(False)
                try:
                    s.send(requests)
                except OSError:
                    pass  # what did not fit waits: the requests sent already are enough
                sockets.append(s)
                opened["open"] += 1
            except OSError as e:
                opened[type(e).__name__] += 1
        time.sleep(seconds)
        still_open, deadline = set(sockets), time.monotonic() + 2  # what a closed one was sent drains first
        while still_open and time.monotonic() < deadline:
            still_open -= {s for s in still_open if closed_by_peer(s)}
            time.sleep(0.05)
        for s in sockets:
            s.close()
        return [("opened", opened["open"]), ("dropped by the server", len(sockets) - len(still_open))]

    return run


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


def huge_integers(server: Server) -> list:
    big = "9" * 5000
    requests = [
        (
            "POST",
            "/image-classification",
            f'{{"image": "x", "topk": {big}}}'.encode(),
            {"Content-Type": "application/json"},
        ),
        ("POST", "/image-classification", f'{{"image": {big}}}'.encode(), {"Content-Type": "application/json"}),
        ("POST", f"/api/predict?topk={big}", drawn_seven(), {"Content-Type": "image/png"}),
    ]
    return answers(server, requests, 1)


def disconnects(uploads: int):
    """``uploads`` bodies that announce 1 MB, send 100 KB and hang up."""

    def run(server: Server) -> list:
        for _ in range(uploads):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                s.sendall(
                    b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                    b"Content-Length: 1000000\r\n\r\n" + bytes(100_000)
                )
            time.sleep(0.05)
        time.sleep(0.5)
        return []

    return run


def head_and_options(server: Server) -> list:
    out = []
    for method, path in (
        ("HEAD", "/healthz"),
        ("HEAD", "/"),
        ("HEAD", "/api/model"),
        ("OPTIONS", "/api/predict"),
        ("OPTIONS", "/healthz"),
        ("OPTIONS", "/nowhere"),
    ):
        status, body, headers = server.request(method, path)
        out.append((status, {"body": body, "allow": headers.get("allow")}))
    return out


def raw(server: Server, data: bytes) -> tuple[int, dict | str]:
    """Send ``data`` as it is; the status and body of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may answer and close before all of it is sent
        reply = b""
        try:
            while chunk := s.recv(1 << 16):
                reply += chunk
        except OSError:
            pass
    head, _, body = reply.partition(b"\r\n\r\n")
    if not head:
        return 0, "no answer"
    status = int(head.split()[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


def invalid_http(server: Server) -> list:
    requests = [
        b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(20_000)) + b"\r\n",
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ]
    return [raw(server, data) for data in requests]


def slow_body(server: Server) -> list:
    """A body that announces 1,000 bytes and sends 10."""
    return [
        raw(
            server,
            b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: 1000\r\n\r\n" + bytes(10),
        )
    ]
