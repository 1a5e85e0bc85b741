"""Requests/s and latency of ``paddle-mnist serve`` for a drawn digit, with batching on and off.

    python scripts/bench_serve.py --model-dir output [--requests 400]

Starts the real server on a free port for each setting, sends a 280x280 drawn-digit PNG from 1, 8
and 32 client threads (keep-alive connections, the client on the same 2 cores), and prints one
JSON object: requests/s, p50 and p99 latency in ms per (batching, concurrency), and where the time
of one request goes (HTTP round trip of /healthz, PNG decode, preprocessing, forward pass).
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageDraw


def drawn_seven() -> bytes:
    image = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(image).line([(70, 60), (210, 60), (120, 240)], fill=0, width=20, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def start(model_dir: Path, max_batch: int):
    proc = subprocess.Popen([sys.executable, "-m", "paddle_mnist", "serve", "--model-dir", str(model_dir), "--port", "0",
                             "--max-batch", str(max_batch)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("serving on"):
        raise SystemExit(f"the server did not start: {line}")
    host, port = line.split()[2].removeprefix("http://").rstrip("/").split(":")
    return proc, host, int(port)


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
    return {"requests_per_s": round(len(latencies) / seconds, 1),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2)}


def breakdown(model_dir: Path, body: bytes, host: str, port: int) -> dict:
    """Milliseconds (median of 200) of each part of one request, measured in this process."""
    from paddle_mnist import preprocess
    from paddle_mnist.predict import Predictor

    from timing import median_ms

    predictor = Predictor.from_dir(model_dir)
    connection = http.client.HTTPConnection(host, port, timeout=60)

    def healthz():
        connection.request("GET", "/healthz")
        connection.getresponse().read()
    image = preprocess.open_image_bytes(body)
    batch = predictor.encoding.decode(preprocess.mnist_like(image))[None, None]
    return {"http_round_trip_healthz": median_ms(healthz, 200),
            "png_decode": median_ms(lambda: preprocess.open_image_bytes(body), 200),
            "preprocess": median_ms(lambda: preprocess.mnist_like(image), 200),
            "forward_batch_1": median_ms(lambda: predictor.engine(batch), 200)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path("output"), help="trained model (default: output)")
    parser.add_argument("--requests", type=int, default=400, help="requests per setting (default: 400)")
    args = parser.parse_args()
    body = drawn_seven()
    report = {"image": "280x280 drawn 7, PNG", "bytes": len(body), "settings": {}}
    for label, max_batch in (("batching on (max-batch 32)", 32), ("batching off (max-batch 1)", 1)):
        proc, host, port = start(args.model_dir, max_batch)
        try:
            load(host, port, body, 4, 40)  # warm-up
            report["settings"][label] = {c: load(host, port, body, c, max(args.requests, c)) for c in (1, 8, 32)}
            if max_batch == 32:
                report["one_request_ms"] = breakdown(args.model_dir, body, host, port)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
