"""Requests/s and latency of ``paddle-mnist serve`` for a drawn digit, with batching on and off; or,
with ``--hostile``, each attack of paddle_mnist/testing/serve_attacks.py against the server with its default limits.

    python scripts/bench_serve.py --model-dir output [--requests 400] [--engine dynamic onnx]
    python scripts/bench_serve.py --model-dir output --hostile      # a Markdown table, one row per attack

Starts the real server on a free port for each setting, sends a 280x280 drawn-digit PNG from 1, 8
and 32 client threads (keep-alive connections, the client on the same 2 cores), and prints one
JSON object: requests/s, p50 and p99 latency in ms per (batching, concurrency), and where the time
of one request goes (HTTP round trip of /healthz, PNG decode, preprocessing, forward pass).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from paddle_mnist.testing import serve_attacks as attacks
from paddle_mnist.testing import served
from paddle_mnist.testing.served import drawn_seven

# The attacks of issue 21 at their size there, against the default limits (NOFILE: the server's open-file limit).
HOSTILE = [
    ("12 PNGs of 6300x6300 16-bit RGBA in one request", attacks.decode_bomb(12, 6300)),
    ("100 grey 39.99-megapixel PNGs in one request", attacks.many_grey(100, 6324)),
    ("24 concurrent requests of one grey 39.99-megapixel PNG", attacks.many_grey(1, 6324, requests=24)),
    ("200 concurrent 19.9 MB uploads", attacks.upload_flood(200, (20 << 20) - 100_000)),
    ("1,100 connections sending their heads a byte each 0.5 s for 15 s", attacks.slow_headers(1100, 15)),
    ("5,000-digit integers as topk and image", attacks.huge_integers),
    ("50 uploads cut off midway", attacks.disconnects(50)),
    ("HEAD and OPTIONS", attacks.head_and_options),
    ("a 1 MB URL, 20,000 headers, bad Content-Lengths, not HTTP", attacks.invalid_http),
    ("a body that stops arriving", attacks.slow_body),
    # issue 30's, at their size there
    ("1,100 connections pipelining 1,000 requests each, reading nothing for 15 s", attacks.never_read(1100, 1000, 15)),
    ("16 PNGs with 256 compressed iTXt chunks of 4-byte characters", attacks.png_text(16, 256)),
    ("150 chunked 19.9 MB uploads declaring Content-Length: 1", attacks.chunked_with_length(150, 19_900_000)),
    ("19.8 MB of JSON containers to /image-classification", attacks.json_containers(19_800_000)),
    ("4 progressive 6-megapixel JPEGs of 1,000 scans", attacks.jpeg_scans(4, 1000)),
    ("32 maximal drawings (256 strokes, 20,000 points)", attacks.heavy_drawings(32)),
    ("16 requests for explanations", attacks.explanations(16)),
    ("4 bodies sent a byte per write for 10 s", attacks.body_in_bytes(4, 10)),
    ("2,000 requests with an Upgrade header, then a WebSocket handshake", attacks.upgrades(2000)),
    ("a 100 KB head in one write", attacks.big_head(100_000)),
]
NOFILE = 1024


def hostile(model_dir: Path, pythonpath: str | None, only: str | None) -> str:
    """One Markdown row per attack: the answers' statuses, the server's peak RSS, the bystander's latency."""
    import tempfile

    log = Path(tempfile.mkdtemp()) / "server.log"
    server = served.Server(model_dir, log, nofile=NOFILE, pythonpath=pythonpath)
    rows = [
        "| attack | answers | server RSS before → peak (MB) | bystander p50 / p99 / max (ms) | bystander "
        "failures | 5xx | log lines |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    try:
        for _ in range(3):
            server.request("POST", "/api/predict", drawn_seven(), {"Content-Type": "image/png"})
        for name, run in HOSTILE:
            if only and only not in name:
                continue
            o = served.attack(server, name, run)
            answers = (
                ", ".join(f"{k}: {v}" for k, v in sorted(o.statuses.items(), key=str))
                if not o.answers or not isinstance(o.answers[0][0], str)
                else ", ".join(f"{k} {v}" for k, v in o.answers)
            )
            fivexx = sum(v for k, v in o.statuses.items() if isinstance(k, int) and k >= 500)
            rows.append(
                f"| {name} | {answers or '-'} | {o.rss_before_mb:.0f} → {o.peak_rss_mb:.0f} | "
                f"{o.percentile(0.5):.0f} / {o.percentile(0.99):.0f} / {max(o.bystander_ms):.0f} | "
                f"{len(o.bystander_failures)} of {len(o.bystander_ms)} | {fivexx} | {len(o.log)} |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
    finally:
        server.stop()
    return "\n".join(rows)


def start(model_dir: Path, max_batch: int, engine: str = "auto"):
    """The real server (its log in a temporary file), its host and port."""
    import tempfile

    log = Path(tempfile.mkdtemp()) / "server.log"
    server = served.Server(model_dir, log, "--max-batch", max_batch, "--engine", engine)
    return server, "127.0.0.1", server.port


def load(host: str, port: int, body: bytes, concurrency: int, requests: int) -> dict:
    """``requests`` POSTs from ``concurrency`` threads, each on its own keep-alive connection."""
    per_thread = requests // concurrency

    def worker(_):
        connection, latencies = http.client.HTTPConnection(host, port, timeout=60), []
        for _ in range(per_thread):
            start = time.perf_counter()
            connection.request("POST", "/api/predict", body, {"Content-Type": "image/png"})
            response = connection.getresponse()
            answer = json.loads(response.read())
            latencies.append(time.perf_counter() - start)
            assert response.status == 200 and answer["results"][0]["digit"] == 7, answer
        connection.close()
        return latencies

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = sorted(sum(pool.map(worker, range(concurrency)), []))
    seconds = time.perf_counter() - start
    return {
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
    }


def breakdown(model_dir: Path, body: bytes, host: str, port: int, engine: str = "auto") -> dict:
    """Milliseconds (median of 200) of each part of one request, measured in this process."""
    from paddle_mnist import preprocess
    from paddle_mnist.predict import Predictor

    from timing import median_ms

    predictor = Predictor.from_dir(model_dir, engine=engine)
    connection = http.client.HTTPConnection(host, port, timeout=60)

    def healthz():
        connection.request("GET", "/healthz")
        connection.getresponse().read()

    image = preprocess.open_image_bytes(body)
    batch = predictor.encoding.to_floats(preprocess.mnist_like(image))[None, None]
    return {
        "http_round_trip_healthz": median_ms(healthz, 200),
        "png_decode": median_ms(lambda: preprocess.open_image_bytes(body), 200),
        "preprocess": median_ms(lambda: preprocess.mnist_like(image), 200),
        "forward_batch_1": median_ms(lambda: predictor.forward(batch), 200),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path("output"), help="trained model (default: output)")
    parser.add_argument("--requests", type=int, default=400, help="requests per setting (default: 400)")
    parser.add_argument("--hostile", action="store_true", help="run the attacks instead of the throughput table")
    parser.add_argument("--only", default=None, help="with --hostile, the attacks whose name holds this (default: all)")
    parser.add_argument(
        "--pythonpath", default=None, help="serve another checkout, for a before/after (default: this one)"
    )
    parser.add_argument(
        "--engine",
        nargs="+",
        default=["auto"],
        help="the server's --engine, each measured in turn (default: auto)",
    )
    args = parser.parse_args()
    if args.hostile:
        print(hostile(args.model_dir, args.pythonpath, args.only))
        return
    body = drawn_seven()
    report = {"image": "280x280 drawn 7, PNG", "bytes": len(body), "settings": {}}
    for engine in args.engine:
        for label, max_batch in (("batching on (max-batch 32)", 32), ("batching off (max-batch 1)", 1)):
            server, host, port = start(args.model_dir, max_batch, engine)
            try:
                load(host, port, body, 4, 40)  # warm-up
                cells = {c: load(host, port, body, c, max(args.requests, c)) for c in (1, 8, 32)}
                report["settings"][f"{engine}, {label}"] = cells
                if max_batch == 32:
                    report[f"one_request_ms, {engine}"] = breakdown(args.model_dir, body, host, port, engine)
            finally:
                server.stop()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
