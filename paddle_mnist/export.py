"""Export a trained model to run without training code: ``paddle-mnist export --model-dir output``.

``--format paddle`` (default) writes ``paddle.jit.save``'s static model (in
paddle 3.x: PREFIX.json and PREFIX.pdiparams) with input spec [None, 1, 28, 28]
float32, checked against the dynamic model through Paddle Inference.
``--format onnx`` converts that static model with paddle2onnx into PREFIX.onnx
(``pip install 'paddle-mnist[onnx]'``), checked through onnxruntime, which is
all ``predict --engine onnx`` needs.  Either check must agree to 1e-5.  Beside
the model goes its ``engines.ExportRecord`` (the weights it was made from), written
last, so ``--engine auto`` uses an export only once it is whole and current.
``paddle-mnist train`` ends with ``after_training``: the ONNX export of the run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from paddle_mnist import engines, rundir
from paddle_mnist._paddle import paddle
from paddle_mnist.engines import TOLERANCE, DynamicEngine, ExportRecord, InferenceEngine, OnnxEngine
from paddle_mnist.errors import UserError, cli_entry
from paddle_mnist.predict import add_model_flags
from paddle_mnist.predictor import on_paddle

InputSpec = paddle.static.InputSpec

SUFFIXES = {"paddle": (".pdiparams", ".json"), "onnx": (".onnx",)}  # parameters first: the program completes the pair
ONNX_OPSET = 13


def export(
    model_dir: Path, prefix: Path, weights: str = "best", fmt: str = "paddle", batch: np.ndarray | None = None
) -> float:
    """Write the model under ``prefix`` in ``fmt`` and its record; return the largest output difference
    from the dynamic model on ``batch`` (default: 16 random images) through the exported model's runtime."""
    trained = on_paddle(rundir.open_run(model_dir, weights))
    model = trained.network
    model.eval()
    model_file = Path(f"{prefix}{SUFFIXES[fmt][0]}")
    try:
        engines.record_path(model_file).unlink(missing_ok=True)  # until the new record, no export is current
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
    head_size = trained.loss.head_size
    exported = OnnxEngine(engines.onnx_path(prefix), head_size) if fmt == "onnx" else InferenceEngine(prefix, head_size)
    difference = float(np.abs(exported(batch) - DynamicEngine(model)(batch)).max())
    difference = difference if math.isfinite(difference) else math.inf  # NaN compares as no mismatch: make it one
    record = ExportRecord(
        weights_sha256=trained.summary.weights_sha256,
        model_sha256=engines.file_sha256(model_file),
        difference=difference,
        paddle_version=paddle.__version__,
    )
    try:
        engines.write_record(model_file, record)
    except OSError as e:
        raise UserError(f"{prefix}: cannot write the export's record there ({e.strerror or e})") from None
    return difference


def after_training(out: Path) -> str | None:
    """The ONNX export that ends ``paddle-mnist train``, so that ``predict`` on the run answers without
    importing paddle: the line to print, or None when paddle2onnx or onnxruntime is not installed."""
    if importlib.util.find_spec("paddle2onnx") is None or importlib.util.find_spec("onnxruntime") is None:
        return None
    prefix = out / rundir.INFERENCE_PREFIX
    try:
        difference = export(out, prefix, "best", "onnx")
    except UserError as e:
        return f"warning: no ONNX export ({e}); predict runs the model on paddle"
    if difference > TOLERANCE:
        return f"warning: {prefix}.onnx differs from the dynamic model by {difference:.1e}; predict runs on paddle"
    return f"exported {prefix}.onnx (onnxruntime matches the model to {difference:.1e}): predict answers without paddle"


def to_onnx(prefix: Path) -> None:
    """PREFIX.json + PREFIX.pdiparams -> PREFIX.onnx through paddle2onnx."""
    try:
        import paddle2onnx
    except ImportError:
        raise UserError("--format onnx needs paddle2onnx and onnxruntime: pip install 'paddle-mnist[onnx]'") from None
    with quiet_stdout():
        try:
            paddle2onnx.export(
                f"{prefix}.json",
                f"{prefix}.pdiparams",
                save_file=f"{prefix}.onnx",
                opset_version=ONNX_OPSET,
                enable_onnx_checker=True,
                optimize_tool="None",
                verbose=False,
            )
        except Exception as e:  # paddle2onnx raises what its C++ converter reports, of several types
            reason = next((line.strip() for line in reversed(str(e).splitlines()) if line.strip()), type(e).__name__)
            raise UserError(f"{prefix}: paddle2onnx could not convert the model ({reason[:200]})") from None


@contextlib.contextmanager
def quiet_stdout():
    """Keep paddle2onnx's progress lines, which its C++ side writes straight to file descriptor 1 whatever
    ``verbose`` says, out of the command's output."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


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
