"""Export a trained model for Paddle Inference: ``python -m paddle_mnist.export --model-dir output``.

Writes ``paddle.jit.save``'s static model (in paddle 3.x: PREFIX.json and
PREFIX.pdiparams) with input spec [None, 1, 28, 28] float32, then checks that
Paddle Inference reproduces the dynamic model's outputs to 1e-5.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import paddle
from paddle.static import InputSpec

from paddle_mnist import rundir
from paddle_mnist.errors import UserError, cli_entry
from paddle_mnist.predict import DynamicEngine, InferenceEngine, build_model

SUFFIXES = (".pdiparams", ".json")  # parameters first: the program file completes the pair
TOLERANCE = 1e-5


def export(model_dir: Path, prefix: Path, weights: str = "best") -> float:
    """Save the static model under ``prefix``; return the largest output difference on a test batch."""
    info, state = rundir.read_with_weights(model_dir, weights)
    model = build_model(info, state, rundir.weights_path(model_dir, info, weights))
    model.eval()
    try:
        prefix.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=prefix.parent, prefix=".export-") as tmp:
            staged = Path(tmp) / prefix.name
            paddle.jit.save(model, str(staged), input_spec=[InputSpec([None, 1, 28, 28], "float32", "image")])
            for suffix in SUFFIXES:
                os.replace(f"{staged}{suffix}", f"{prefix}{suffix}")
    except OSError as e:
        raise UserError(f"{prefix}: cannot write the exported model there ({e.strerror or e})") from None
    batch = np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32)
    difference = float(np.abs(InferenceEngine(prefix)(batch) - DynamicEngine(model)(batch)).max())
    return difference if math.isfinite(difference) else math.inf  # NaN compares as no mismatch: make it one


@cli_entry("paddle-mnist export")
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="paddle-mnist export", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path("output"), help="training output dir (default: output)")
    parser.add_argument("--out", type=Path, default=None, help="path prefix to write (default: MODEL_DIR/inference/mnist)")
    parser.add_argument("--weights", choices=("best", "last"), default="best", help="which weights to export (default: best)")
    args = parser.parse_args(argv)
    prefix = args.out or args.model_dir / rundir.INFERENCE_PREFIX
    difference = export(args.model_dir, prefix, args.weights)
    if difference > TOLERANCE:
        raise UserError(f"{prefix}: exported model differs from the dynamic one by {difference:.2e} (> {TOLERANCE})")
    print(f"wrote {prefix}.json and {prefix}.pdiparams; Paddle Inference matches the dynamic model to {difference:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
