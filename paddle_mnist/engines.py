"""What runs a trained network on a batch, and which one answers under ``--engine auto``.

Three engines take a float32 batch [N,1,28,28] and return the network's outputs:
``DynamicEngine`` (the ``paddle.nn.Layer``), ``InferenceEngine`` (the ``paddle.jit.save`` export in
Paddle Inference) and ``OnnxEngine`` (the ONNX export in onnxruntime).  Importing paddle takes
about 1.8 s and onnxruntime about 0.3 s, so paddle is imported only by the two engines that use it:
a prediction through the ONNX export never loads it.

Beside each export, ``export`` writes an ``ExportRecord`` (``PREFIX.onnx.json``): the SHA-256 of
the weights it was made from and of the exported file itself.  ``auto`` answers with the ONNX
export when its record matches the weights the run's metadata names and onnxruntime is installed,
and with paddle otherwise, saying in one line why when an export is there but cannot be used.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from paddle_mnist import inference_check, onnx_check
from paddle_mnist.errors import ExportError, UserError
from paddle_mnist.fileio import file_sha256, read_capped, write_bytes_atomic

if TYPE_CHECKING:
    from paddle_mnist._paddle import paddle

ENGINES = ("auto", "dynamic", "inference", "onnx")
TOLERANCE = 1e-5  # how far an export's outputs may be from the dynamic model's, checked when it is written
RECORD_FORMAT = 1
MAX_RECORD_BYTES = 64 << 10


class DynamicEngine:
    """The trained ``paddle.nn.Layer`` in eval mode."""

    name = "dynamic"

    def __init__(self, model: paddle.nn.Layer):
        self.model = model
        self.model.eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        from paddle_mnist._paddle import paddle

        with paddle.no_grad():
            return self.model(paddle.to_tensor(batch)).numpy()


class InferenceEngine:
    """The exported static model run by Paddle Inference (``paddle.inference``).  Paddle Inference can
    neither stop a forward pass nor cap its memory, so the program is checked before paddle loads it
    (``inference_check``: the form of this package's exports, its sizes and work bounded); its outputs
    must be finite and of their shape, and it is tried once on a blank image as it loads."""

    name = "inference"

    def __init__(self, prefix: Path, head_size: int):
        from paddle_mnist._paddle import paddle

        model_file, params_file = Path(f"{prefix}.json"), Path(f"{prefix}.pdiparams")
        for path in (model_file, params_file):
            if not path.is_file():
                raise UserError(f"{path}: no such file (run paddle-mnist export first)")
        inference_check.read_checked(prefix, head_size)
        self.path, self.head_size = model_file, head_size
        config = paddle.inference.Config(str(model_file), str(params_file))
        config.disable_glog_info()
        try:
            self.predictor = paddle.inference.create_predictor(config)
        except (RuntimeError, ValueError, OSError) as e:  # paddle reports a corrupt model as any of these
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"{prefix}: not a Paddle Inference model that loads ({reason[:200]})") from None
        self(np.zeros((1, 1, 28, 28), np.float32))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        try:
            handle = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
            handle.reshape(list(batch.shape))
            handle.copy_from_cpu(np.ascontiguousarray(batch, dtype=np.float32))
            self.predictor.run()
            outputs = self.predictor.get_output_handle(self.predictor.get_output_names()[0]).copy_to_cpu()
        except (RuntimeError, ValueError) as e:  # what paddle's kernels raise for inputs they cannot take
            raise ExportError(f"{self.path}: the model failed to run ({_last_line(e)})") from None
        return checked_outputs(self.path, outputs, len(batch), self.head_size)


class OnnxEngine:
    """The ONNX export run by onnxruntime: no paddle at all.  The graph is checked before it loads
    (``onnx_check.read_checked``: the form of this package's exports, with a ``head_size`` output), runs
    within a memory cap and a time bound, must give finite outputs of its shape, and is tried once on a
    blank image as it loads, so a model that cannot answer fails at once, in one line."""

    name = "onnx"

    def __init__(self, path: Path, head_size: int):
        try:
            import onnxruntime
        except ImportError:
            raise UserError("--engine onnx needs onnxruntime: pip install 'paddle-mnist[onnx]'") from None
        if not path.is_file():
            raise UserError(f"{path}: no such file (run paddle-mnist export --format onnx first)")
        model = onnx_check.read_checked(path, head_size)
        self.path, self.head_size, self._runtime = path, head_size, onnxruntime
        options = onnx_check.session_options(onnxruntime)
        try:
            self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime reports a corrupt file as several exception types
            raise UserError(f"{path}: not an ONNX model that loads ({onnx_check.why_it_failed(e)})") from None
        self.input = self.session.get_inputs()[0].name
        self(np.zeros((1, 1, 28, 28), np.float32))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        bound = self._runtime.RunOptions()
        try:
            with onnx_check.WATCHDOG.watching(bound):
                outputs = self.session.run(None, {self.input: np.ascontiguousarray(batch, dtype=np.float32)}, bound)[0]
        except Exception as e:  # onnxruntime's own failures (memory over the arena's cap, terminated): one line
            why = onnx_check.why_it_failed(e, bound.terminate)
            raise ExportError(f"{self.path}: the model failed to run ({why})") from None
        return checked_outputs(self.path, outputs, len(batch), self.head_size)


def checked_outputs(path: Path, outputs: np.ndarray, images: int, head_size: int) -> np.ndarray:
    """An export's ``outputs`` for ``images`` images, once they are ``[images, head_size]`` and finite."""
    if outputs.shape != (images, head_size) or not np.isfinite(outputs).all():
        raise ExportError(f"{path}: the model gave {list(outputs.shape)} outputs, not all finite")
    return outputs


def _last_line(error: Exception) -> str:
    text = next((line.strip() for line in reversed(str(error).splitlines()) if line.strip()), "")
    return text[:200] or type(error).__name__


def onnx_path(prefix: Path) -> Path:
    return Path(f"{prefix}.onnx")


# --- the record beside an export ------------------------------------------------------------


@dataclass(frozen=True)
class ExportRecord:
    """What an exported model was made from: written by ``export`` after the model, read by ``auto``."""

    weights_sha256: str  # the state file the export was made from
    model_sha256: str  # the exported file itself (PREFIX.onnx, or PREFIX.pdiparams for Paddle Inference)
    difference: float  # the largest output difference from the dynamic model, checked at export
    paddle_version: str
    format: int = RECORD_FORMAT


def record_path(model_file: Path) -> Path:
    return model_file.with_name(model_file.name + ".json")


def write_record(model_file: Path, record: ExportRecord) -> None:
    write_bytes_atomic(record_path(model_file), (json.dumps(dataclasses.asdict(record), indent=1) + "\n").encode())


def read_record(model_file: Path) -> ExportRecord:
    """The record beside ``model_file``; a missing or malformed one is a ``UserError`` naming the file."""
    path = record_path(model_file)
    text = read_capped(path, MAX_RECORD_BYTES, UserError, what="export record", missing="no such file")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise UserError(f"{path}: not valid JSON") from None
    digests = ("weights_sha256", "model_sha256")
    if (
        not isinstance(obj, dict)
        or obj.get("format") != RECORD_FORMAT
        or not all(isinstance(obj.get(k), str) and len(obj[k]) == 64 for k in digests)
        or not isinstance(obj.get("difference"), (int, float))
        or not isinstance(obj.get("paddle_version"), str)
    ):
        raise UserError(f"{path}: not an export record of format {RECORD_FORMAT}")
    return ExportRecord(**{f.name: obj[f.name] for f in dataclasses.fields(ExportRecord)})


def stale(model_file: Path, weights_sha256: str) -> str | None:
    """Why the export in ``model_file`` cannot stand for the weights with this digest; None when it can."""
    try:
        record = read_record(model_file)
    except UserError as e:
        return f"its record is unusable ({str(e).split(': ', 1)[-1]})"
    if record.weights_sha256 != weights_sha256:
        return "it was made from other weights than the ones asked for"
    if not (math.isfinite(record.difference) and record.difference <= TOLERANCE):
        return f"it differed from the dynamic model by {record.difference:.1e} when exported"
    if file_sha256(model_file) != record.model_sha256:
        return "it changed after it was exported"
    return None


def choose(prefix: Path, weights_sha256: str) -> tuple[str, str | None]:
    """(the engine ``auto`` picks, the one line saying why an export there is not used, or None)."""
    model_file = onnx_path(prefix)
    if not model_file.is_file():
        return "dynamic", None
    if importlib.util.find_spec("onnxruntime") is None:
        return (
            "dynamic",
            f"{model_file}: onnxruntime is not installed, so paddle answers (pip install 'paddle-mnist[onnx]')",
        )
    reason = stale(model_file, weights_sha256)
    if reason:
        return (
            "dynamic",
            f"{model_file}: not used, {reason}; paddle answers (paddle-mnist export --format onnx redoes it)",
        )
    return "onnx", None
