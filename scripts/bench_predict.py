"""Prediction throughput, images/s, for single images and batches of 64 and 256, with both engines.

    python scripts/bench_predict.py --model-dir output [--seconds 3]

``dynamic`` is the paddle.nn model, ``inference`` the exported model in Paddle
Inference (exported first if MODEL_DIR/inference/mnist.* is missing).  Engine
figures time the forward pass on preprocessed 28x28 inputs; ``preprocess``
times the photo-to-28x28 pipeline on generated 640x480-class pictures;
``phone_jpeg_12mp_ms`` a 4000x3000 JPEG through it, reduced-scale decode against full.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image


def rate(fn, images_per_call: int, seconds: float) -> float:
    fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls * images_per_call / (time.perf_counter() - start)


def main() -> None:
    from paddle_mnist import export, photos
    from paddle_mnist.predict import Predictor
    from paddle_mnist.rundir import INFERENCE_PREFIX

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path("output"), help="trained model (default: output)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent on each measurement (default: 3)")
    args = parser.parse_args()
    if not Path(f"{args.model_dir / INFERENCE_PREFIX}.pdiparams").exists():
        export.export(args.model_dir, args.model_dir / INFERENCE_PREFIX)
    rng = np.random.default_rng(0)
    batch = rng.random((256, 1, 28, 28), dtype=np.float32)
    report = {"model_dir": str(args.model_dir), "images_per_s": {}}
    for engine in ("dynamic", "inference"):
        run = Predictor.from_dir(args.model_dir, engine=engine).engine
        report["images_per_s"][engine] = {
            str(n): round(rate(lambda n=n, run=run: run(batch[:n]), n, args.seconds)) for n in (1, 64, 256)
        }
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    pictures = [Image.open(io.BytesIO(photos.render(digit, "noisy_jpeg", rng))) for _ in range(8)]
    predictor = Predictor.from_dir(args.model_dir)
    report["images_per_s"]["preprocess"] = round(
        rate(lambda: [predictor.model_input(p) for p in pictures], 8, args.seconds)
    )
    report["images_per_s"]["end_to_end_batch_8"] = round(rate(lambda: predictor.predict(pictures), 8, args.seconds))
    report["phone_jpeg_12mp_ms"] = phone_jpeg_ms(rng)
    print(json.dumps(report))


def phone_jpeg_ms(rng) -> dict:
    """Decode + preprocess of 4000x3000 JPEGs (a digit on paper, sensor noise of two strengths), median ms:
    through ``preprocess.open_image_bytes`` (reduced-scale DCT decode) and with a full-size decode."""
    from paddle_mnist import preprocess

    from timing import median_ms

    def full_decode(data):
        image = Image.open(io.BytesIO(data))
        image.load()
        return preprocess.mnist_like(image)

    report = {}
    for noise in (2, 6):
        photo = np.full((3000, 4000, 3), 232.0)
        photo[900:2100, 1800:2000] = 30
        buffer = io.BytesIO()
        Image.fromarray(np.clip(photo + rng.normal(0, noise, photo.shape), 0, 255).astype(np.uint8)).save(
            buffer, "JPEG", quality=90
        )
        data = buffer.getvalue()
        report[f"noise_{noise}"] = {
            "megabytes": round(len(data) / 1e6, 2),
            "reduced_decode": median_ms(lambda data=data: preprocess.mnist_like(preprocess.open_image_bytes(data))),
            "full_decode": median_ms(lambda data=data: full_decode(data)),
        }
    return report


if __name__ == "__main__":
    main()
