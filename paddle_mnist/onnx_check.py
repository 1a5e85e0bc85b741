"""What an ONNX export must be before onnxruntime loads it, and the bounds it then runs within.

A run directory handed over by someone else holds both ``inference/mnist.onnx`` and its record, so a
matching digest proves nothing about what the graph does: a ``Loop`` of 2^62 trips, a ``ConstantOfShape``
that asks for gigabytes, the wrong input or output.  ``check_graph`` reads the file with the ``onnx``
package (nothing runs; ``read_checked`` remembers what passed) and refuses, in one line, any graph that is not of the form the networks here
export to: one float32 ``[N,1,28,28]`` input, one float32 ``[N, head_size]`` output, only the operators
paddle2onnx makes of them, a bounded number of nodes, no external data.  What the graph then computes is
bounded by onnxruntime itself: its memory by an arena with a cap (``session_options``), a forward's time
by the ``terminate`` flag of its ``RunOptions`` (``OnnxEngine`` in ``engines``).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from pathlib import Path

from paddle_mnist.errors import ExportError
from paddle_mnist.fileio import read_capped

# What paddle2onnx (opset 13) makes of the networks of ``models``, with either head and each activation of the
# feed-forward ones: measured by exporting each.  Nothing here loops, branches, or makes a tensor larger than its inputs from a shape it computes.
OPERATORS = frozenset(
    {
        "Add",
        "AveragePool",
        "BatchNormalization",
        "Concat",
        "Constant",
        "Conv",
        "GlobalAveragePool",
        "Identity",
        "MatMul",
        "MaxPool",
        "Relu",
        "Reshape",
        "Shape",
        "Sigmoid",
        "Slice",
        "Squeeze",
        "Tanh",
        "Unsqueeze",
    }
)
MAX_NODES = 2_000  # the largest network here (inception) exports to a few hundred
MAX_ONNX_BYTES = 256 << 20  # the largest (vgg_wide) is a few megabytes
ARENA_BYTES = 512 << 20  # onnxruntime's memory for the tensors of a forward pass (vgg_wide on 64 images: well under)
RUN_SECONDS = 10.0  # one forward pass of at most 64 images takes well under a second
FLOAT = 1  # onnx.TensorProto.FLOAT

_arena_lock, _arena_registered = threading.Lock(), False


def read_checked(path: Path, head_size: int) -> bytes:
    """The bytes of the export at ``path`` once they pass ``check_graph`` (onnxruntime is given these very
    bytes).  A file of the same digest that passed before is not checked again: importing onnx is a quarter
    of a prediction's time.  What passed is noted in this user's cache, as trusted as the cache itself
    (``$PADDLE_MNIST_CACHE``, docs/data.md)."""
    from paddle_mnist.data.cache import cache_dir  # only the directory: the data stack stays unloaded

    data = read_capped(path, MAX_ONNX_BYTES, ExportError, what="ONNX export here")
    passed = cache_dir() / "checked-exports" / f"{hashlib.sha256(data).hexdigest()}-{head_size}"
    if not passed.is_file():
        check_graph(data, path, head_size)
        with contextlib.suppress(OSError):  # an unwritable cache only means checking again next time
            passed.parent.mkdir(parents=True, exist_ok=True)
            passed.touch()
    return data


def check_graph(data: bytes, path: Path, head_size: int) -> None:
    """Refuse ``data`` (the file ``path``) unless it is a graph of the form this package exports, with a
    ``head_size`` output."""
    try:
        import onnx
    except ImportError:
        raise ExportError(f"{path}: checking an ONNX export needs onnx: pip install 'paddle-mnist[onnx]'") from None
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf reports a damaged file as several exception types
        raise ExportError(f"{path}: not an ONNX model ({type(e).__name__})") from None
    graph = model.graph
    _check_signature(path, graph, head_size)
    if len(graph.node) > MAX_NODES or model.functions:
        raise ExportError(f"{path}: {len(graph.node):,} nodes or local functions; an export here has a few hundred")
    foreign = sorted({n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in graph.node})
    foreign = [op for op in foreign if op not in OPERATORS]
    if foreign:
        raise ExportError(f"{path}: holds operators no network here exports to: {', '.join(foreign[:8])}")
    if any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in graph.initializer):
        raise ExportError(f"{path}: refers to external data files; an export here holds its weights")


def _check_signature(path: Path, graph, head_size: int) -> None:
    initialized = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initialized]
    if len(inputs) != 1 or not _is_float(inputs[0], (None, 1, 28, 28)):
        raise ExportError(f"{path}: takes {_described(inputs)}, not one float32 [N,1,28,28] batch of images")
    if len(graph.output) != 1 or not _is_float(graph.output[0], (None, head_size)):
        raise ExportError(f"{path}: gives {_described(graph.output)}, not one float32 [N,{head_size}] for this run")


def _is_float(value, dims: tuple) -> bool:
    """Whether ``value`` (a ValueInfoProto) is float32 with ``dims`` (None: any size, named or not)."""
    tensor = value.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    return (
        value.type.HasField("tensor_type")
        and tensor.elem_type == FLOAT
        and len(shape) == len(dims)
        and all(want is None or got == want for got, want in zip(shape, dims))
    )


def _described(values) -> str:
    from onnx import TensorProto

    def one(value) -> str:
        tensor = value.type.tensor_type
        dims = ",".join(str(d.dim_value) if d.HasField("dim_value") else "N" for d in tensor.shape.dim)
        kind = TensorProto.DataType.Name(tensor.elem_type) if tensor.elem_type in TensorProto.DataType.values() else "?"
        return f"{value.name[:40]} {kind.lower()} [{dims}]"

    return ", ".join(one(v) for v in list(values)[:3]) or "nothing"


class Watchdog:
    """One thread that stops each forward pass still running past its deadline (it sets the pass's
    ``RunOptions.terminate``, looking twice a second): a timer thread per pass cost 0.55 ms of a 1.2 ms call."""

    def __init__(self, seconds: float = RUN_SECONDS, every: float = 0.5):
        self.seconds, self.every = seconds, every
        self._watched: dict[int, tuple[float, object]] = {}
        self._lock, self._thread = threading.Lock(), None

    @contextlib.contextmanager
    def watching(self, options):
        key = id(options)
        with self._lock:
            self._watched[key] = (time.monotonic() + self.seconds, options)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="paddle-mnist-onnx-watchdog", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                del self._watched[key]

    def _run(self) -> None:
        while True:
            time.sleep(self.every)
            now = time.monotonic()
            with self._lock:
                for deadline, options in self._watched.values():
                    if now >= deadline:
                        options.terminate = True


WATCHDOG = Watchdog()


def why_it_failed(error: Exception, terminated: bool = False) -> str:
    """onnxruntime's failure as a few words: its time or memory bound, or the last line of what it said."""
    text = str(error).strip()
    if terminated:
        return f"over the {RUN_SECONDS:g} s a forward pass may take"
    if "Available memory of" in text:  # the arena's cap (bfc_arena.cc)
        return f"over the {ARENA_BYTES >> 20} MB a forward pass may take"
    return text.splitlines()[-1][:200] if text else type(error).__name__


def session_options(onnxruntime):
    """onnxruntime's session options for an export: its tensors from a shared arena of at most ``ARENA_BYTES``
    (registered once per process), its own log quiet (a refused allocation is our one line, not its own)."""
    global _arena_registered
    with _arena_lock:
        if not _arena_registered:
            memory = onnxruntime.OrtMemoryInfo(
                "Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, onnxruntime.OrtMemType.DEFAULT
            )
            onnxruntime.create_and_register_allocator(memory, onnxruntime.OrtArenaCfg(ARENA_BYTES, -1, -1, -1))
            _arena_registered = True
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.use_env_allocators", "1")
    options.log_severity_level = 4  # fatal only: notes about unused initializers, and failures we report ourselves
    return options
