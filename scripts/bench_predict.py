"""Prediction speed: throughput of each engine, and the wall time of one ``paddle-mnist predict``.

    python scripts/bench_predict.py --model-dir output [--seconds 3]
    python scripts/bench_predict.py --model-dir output --cli [--repeats 5]

``dynamic`` is the paddle.nn model, ``inference`` the exported model in Paddle
Inference, ``onnx`` the ONNX export in onnxruntime (each exported first if
MODEL_DIR/inference/mnist.* is missing).  Engine figures time the forward pass on
preprocessed 28x28 inputs; ``preprocess`` times the photo-to-28x28 pipeline on
generated 640x480-class pictures; ``phone_jpeg_12mp_ms`` a 4000x3000 JPEG through
it, reduced-scale decode against full.

``--cli`` times whole commands instead, each in a fresh process, in interleaved
rounds so that a busy moment of the machine falls on all alike: ``paddle-mnist
predict IMG`` with the default engine (auto: the ONNX export, no paddle import),
with ``--engine dynamic``, and a bare ``python -c "import paddle"``; median, min
and max seconds of ``--repeats`` each.  Prints one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
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
    parser.add_argument("--cli", action="store_true", help="time whole predict commands instead (default: off)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command with --cli (default: 5)")
    args = parser.parse_args()
    prefix = args.model_dir / INFERENCE_PREFIX
    for fmt, suffix in (("paddle", ".pdiparams"), ("onnx", ".onnx")):
        if not Path(f"{prefix}{suffix}").exists():
            export.export(args.model_dir, prefix, fmt=fmt)
    rng = np.random.default_rng(0)
    if args.cli:
        print(json.dumps(command_times(args.model_dir, rng, args.repeats)))
        return
    batch = rng.random((256, 1, 28, 28), dtype=np.float32)
    report = {"model_dir": str(args.model_dir), "images_per_s": {}}
    for engine in ("dynamic", "inference", "onnx"):
        run = Predictor.from_dir(args.model_dir, engine=engine).forward
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


def command_times(model_dir: Path, rng, repeats: int) -> dict:
    """Seconds of whole commands, each in a fresh process: one photo predicted on auto and on paddle, and
    paddle's import alone."""
    from paddle_mnist import photos

    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    script = str(Path(sys.executable).with_name("paddle-mnist"))
    with tempfile.TemporaryDirectory() as tmp:
        picture = Path(tmp) / "digit.jpg"
        picture.write_bytes(photos.render(digit, "noisy_jpeg", rng))
        predict = [script, "predict", str(picture), "--model-dir", str(model_dir)]
        commands = {
            "predict_auto": predict,
            "predict_dynamic": [*predict, "--engine", "dynamic"],
            "import_paddle": [sys.executable, "-c", "import paddle"],
        }
        answered = json.loads(subprocess.run([*predict, "--json"], capture_output=True, text=True, check=True).stdout)
        seconds = {name: [] for name in commands}
        for _ in range(repeats):
            for name, command in commands.items():
                start = time.perf_counter()
                subprocess.run(command, capture_output=True, check=True)
                seconds[name].append(time.perf_counter() - start)
    report = {
        name: {"median": round(statistics.median(t), 3), "min": round(min(t), 3), "max": round(max(t), 3)}
        for name, t in seconds.items()
    }
    report["auto_answered_with"] = answered["engine"]
    report["auto_over_import_paddle"] = round(report["predict_auto"]["median"] / report["import_paddle"]["median"], 2)
    return {"model_dir": str(model_dir), "repeats": repeats, "seconds": report}


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
