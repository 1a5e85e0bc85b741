"""Export a trained model to run without training code: ``paddle-mnist export --model-dir output``.

``--format paddle`` (default) writes ``paddle.jit.save``'s static model (in
paddle 3.x: PREFIX.json and PREFIX.pdiparams) with input spec [None, 1, 28, 28]
float32, checked against the dynamic model through Paddle Inference.
``--format onnx`` converts that static model with paddle2onnx into PREFIX.onnx
(``pip install 'paddle-mnist[onnx]'``), checked through onnxruntime, which is
all ``predict --engine onnx`` needs.  Either check must agree to 1e-5.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from paddle_mnist import rundir
from paddle_mnist._paddle import paddle
from paddle_mnist.errors import UserError, cli_entry
from paddle_mnist.predict import DynamicEngine, InferenceEngine, OnnxEngine, add_model_flags, load_trained

InputSpec = paddle.static.InputSpec

SUFFIXES = {"paddle": (".pdiparams", ".json"), "onnx": (".onnx",)}  # parameters first: the program completes the pair
TOLERANCE = 1e-5
ONNX_OPSET = 13


def export(
    model_dir: Path, prefix: Path, weights: str = "best", fmt: str = "paddle", batch: np.ndarray | None = None
) -> float:
    """Write the model under ``prefix`` in ``fmt``; return the largest output difference from the
    dynamic model on ``batch`` (default: 16 random images) through the exported model's runtime."""
    model = load_trained(model_dir, weights).engine.model
    model.eval()
    try:
        prefix.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=prefix.parent, prefix=".export-") as tmp:
            staged = Path(tmp) / prefix.name
            paddle.jit.save(model, str(staged), input_spec=[InputSpec([None, 1, 28, 28], "float32", "image")])
            if fmt == "onnx":
                to_onnx(staged)
            for suffix in SUFFIXES[fmt]:
                os.replace(f"{staged}{suffix}", f"{prefix}{suffix}")
    except OSError as e:
        raise UserError(f"{prefix}: cannot write the exported model there ({e.strerror or e})") from None
    if batch is None:
        batch = np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32)
    exported = OnnxEngine(Path(f"{prefix}.onnx")) if fmt == "onnx" else InferenceEngine(prefix)
    difference = float(np.abs(exported(batch) - DynamicEngine(model)(batch)).max())
    return difference if math.isfinite(difference) else math.inf  # NaN compares as no mismatch: make it one


def to_onnx(prefix: Path) -> None:
    """PREFIX.json + PREFIX.pdiparams -> PREFIX.onnx through paddle2onnx."""
    try:
        import paddle2onnx
    except ImportError:
        raise UserError("--format onnx needs paddle2onnx and onnxruntime: pip install 'paddle-mnist[onnx]'") from None
    paddle2onnx.export(
        f"{prefix}.json",
        f"{prefix}.pdiparams",
        save_file=f"{prefix}.onnx",
        opset_version=ONNX_OPSET,
        enable_onnx_checker=True,
        optimize_tool="None",
        verbose=False,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paddle-mnist export", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add_model_flags(parser, committee=False, runtime=False)
    add(
        "--format",
        choices=tuple(SUFFIXES),
        default="paddle",
        help="paddle = Paddle Inference (PREFIX.json, .pdiparams); onnx = PREFIX.onnx via paddle2onnx (default: paddle)",
    )
    add("--out", type=Path, default=None, help="path prefix to write (default: MODEL_DIR/inference/mnist)")
    return parser


@cli_entry("paddle-mnist export")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    prefix = args.out or args.model_dir / rundir.INFERENCE_PREFIX
    difference = export(args.model_dir, prefix, args.weights, args.format)
    runtime = "onnxruntime" if args.format == "onnx" else "Paddle Inference"
    if difference > TOLERANCE:
        raise UserError(f"{prefix}: exported model differs from the dynamic one by {difference:.2e} (> {TOLERANCE})")
    files = " and ".join(f"{prefix}{suffix}" for suffix in reversed(SUFFIXES[args.format]))
    print(f"wrote {files}; {runtime} matches the dynamic model to {difference:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
