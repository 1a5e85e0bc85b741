"""Hostile load against a real ``paddle-mnist serve``: for tests/test_serve_hostile.py and
``scripts/bench_serve.py --hostile``.  Every attack is bounded in requests, connections and seconds, and is
run by ``served.attack`` beside a bystander.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from paddle_mnist.testing.served import Server, answers, closed_by_peer, drawn_seven, multipart, png, raw, reply


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


def png_text(images: int, chunks: int):
    """One multipart request of ``images`` tiny PNGs, each with ``chunks`` compressed iTXt chunks of 4-byte
    characters: a few KB on the wire, gigabytes as Python strings without a bound."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for i in range(chunks):
        info.add_itxt(f"k{i}", "\U0001f600" * 65_536, zip=True)
    buffer = io.BytesIO()
    Image.new("L", (28, 28), 255).save(buffer, "PNG", pnginfo=info)
    body, kind = multipart([(f"text{i}.png", buffer.getvalue()) for i in range(images)])
    return lambda server: answers(server, [("POST", "/api/predict", body, {"Content-Type": kind})], 1)


def chunked_with_length(uploads: int, size: int):
    """``uploads`` concurrent bodies framed as chunked but declaring ``Content-Length: 1``."""
    head = (
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    body = b"%x\r\n" % size + bytes(size) + b"\r\n0\r\n\r\n"

    def run(server: Server) -> list:
        with ThreadPoolExecutor(uploads) as pool:
            return list(pool.map(lambda _: raw(server, head + body), range(uploads)))

    return run


def json_containers(size: int):
    """PaddleX's route sent ``size`` bytes of "[{}, {}, ...]": each 4 bytes a dictionary once parsed."""
    body = b"[" + b"{}, " * (size // 4) + b"{}]"
    return lambda server: answers(
        server, [("POST", "/image-classification", body, {"Content-Type": "application/json"})], 1
    )


def jpeg_scans(requests: int, scans: int):
    """``requests`` concurrent progressive JPEGs of 6 megapixels with ``scans`` scans each (an AC scan repeated)."""
    buffer = io.BytesIO()
    Image.new("L", (3000, 2000), 200).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    first = data.index(b"\xff\xda", data.index(b"\xff\xda") + 2)
    end = data.index(b"\xff\xda", first + 2)
    picture = data[:end] + data[first:end] * scans + data[end:]
    return lambda server: answers(
        server, [("POST", "/api/predict", picture, {"Content-Type": "image/jpeg"})] * requests, requests
    )


def heavy_drawings(clients: int, points: int = 20_000, strokes: int = 256):
    """``clients`` concurrent drawings of the most strokes and points a drawing may have."""
    rng = __import__("numpy").random.default_rng(0)
    per_stroke = points // strokes
    drawing = {
        "strokes": [rng.uniform(0, 800, (per_stroke, 2)).round(1).tolist() for _ in range(strokes)],
        "width": 800,
        "height": 800,
    }
    body = json.dumps(drawing).encode()
    return lambda server: answers(
        server, [("POST", "/api/predict", body, {"Content-Type": "application/json"})] * clients, clients
    )


def explanations(clients: int):
    """``clients`` concurrent requests asking where the model looked (16 backward passes each)."""
    return lambda server: answers(
        server, [("POST", "/api/predict?explain=1", drawn_seven(), {"Content-Type": "image/png"})] * clients, clients
    )


def upgrades(requests: int):
    """``requests`` ordinary requests with an ``Upgrade`` header, then a WebSocket handshake."""

    def run(server: Server) -> list:
        statuses = Counter(
            server.request("GET", "/healthz", headers={"Connection": "Upgrade", "Upgrade": "h2c"})[0]
            for _ in range(requests)
        )
        websocket = {
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        }
        status, body, _ = server.request("GET", "/ws", headers=websocket)
        return [("upgrade", dict(statuses)), ("websocket", (status, body))]

    return run


def big_head(size: int):
    """A request head of ``size`` bytes (one long header) sent in one write."""
    return lambda server: [raw(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n")]


def body_in_bytes(clients: int, seconds: float):
    """``clients`` uploads each sending its body a byte per write (TCP_NODELAY), for at most ``seconds``."""

    def one(server: Server):
        head = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000000\r\n\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(head)
            end = time.monotonic() + seconds
            try:
                while time.monotonic() < end:
                    s.send(b"\0")
                    time.sleep(0.0005)
            except OSError:
                pass  # refused: what it answered is read below
            s.settimeout(5)
            return reply(s)

    def run(server: Server) -> list:
        with ThreadPoolExecutor(clients) as pool:
            return list(pool.map(lambda _: one(server), range(clients)))

    return run
