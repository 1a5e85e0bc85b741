"""Saving and loading ``.pdparams`` / ``.pdopt`` state files: atomically, and without running pickled code.

``paddle.load`` unpickles arbitrary objects, so a crafted ``.pdparams`` can run
code.  ``load_state`` uses an unpickler that admits only what a state dict
holds (dicts, numbers, strings and numpy arrays) and refuses anything else.
"""
from __future__ import annotations

import hashlib
import io
import pickle
import warnings
from pathlib import Path

import numpy as np
import paddle

from paddle_mnist.errors import UserError
from paddle_mnist.fileio import write_bytes_atomic

_NAME_MAP = "StructuredToParameterName@@"
_SAFE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("collections", "OrderedDict"), ("builtins", "tuple"),
}


class CheckpointError(UserError):
    pass


class _Refused(pickle.UnpicklingError):
    pass


class _StateUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise _Refused(f"it refers to {module}.{name}, which no state dict contains")


def load_state(path: Path) -> dict:
    """A state dict from ``path`` with tensors as numpy arrays; never executes pickled code."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    try:
        state = _StateUnpickler(io.BytesIO(data)).load()
    except _Refused as e:
        raise CheckpointError(f"{path}: refused to load: {e}") from None
    except Exception as e:  # truncated or not a pickle at all
        raise CheckpointError(f"{path}: not a paddle state file ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, expected a state dict")
    bad = [k for k, v in state.items() if isinstance(v, np.ndarray) and v.dtype == object]
    if bad:
        raise CheckpointError(f"{path}: {bad[0]!r} is an object array, which no state dict contains")
    state.pop(_NAME_MAP, None)
    return state


def save_state(path: Path, state: dict) -> str:
    """``paddle.save`` into memory, then an atomic write; returns the file's SHA-256."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # plain SGD has an empty state; it is saved all the same
        warnings.filterwarnings("ignore", message="The input state dict is empty")
        paddle.save(state, buffer)
    write_bytes_atomic(path, buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def load_weights(model: paddle.nn.Layer, path: Path) -> None:
    """Load ``path`` into ``model``, naming missing or unexpected keys and shape mismatches."""
    state = load_state(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit the model: missing {missing or 'none'}, unexpected {unexpected or 'none'}")
    for name, tensor in expected.items():
        if tuple(np.shape(state[name])) != tuple(tensor.shape):
            raise CheckpointError(f"{path}: {name} has shape {list(np.shape(state[name]))}, the model expects {list(tensor.shape)}")
    model.set_state_dict(state)


def _param_names(model: paddle.nn.Layer) -> list[tuple[str, str]]:
    """(paddle's global name, structured name), longest global name first for prefix matching."""
    pairs = [(p.name, structured) for structured, p in model.named_parameters()]
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def _rename_prefixes(state: dict, pairs: list[tuple[str, str]]) -> dict:
    renamed = {}
    for key, value in state.items():
        for old, new in pairs:
            if key.startswith(old + "_"):
                key = new + key[len(old):]
                break
        renamed[key] = value
    return renamed


def optimizer_state(model: paddle.nn.Layer, optimizer: paddle.optimizer.Optimizer) -> dict:
    """The optimizer's state keyed by structured names (``conv1.weight_velocity_0``).

    Paddle keys accumulators by global parameter names (``conv2d_0.w_0``) that
    depend on how many layers the process built before; structured names make
    ``--resume`` work in any process.
    """
    return _rename_prefixes(optimizer.state_dict(), _param_names(model))


def load_optimizer_state(model: paddle.nn.Layer, optimizer: paddle.optimizer.Optimizer, path: Path) -> None:
    state = load_state(path)
    pairs = [(structured, name) for name, structured in _param_names(model)]
    pairs.sort(key=lambda pair: -len(pair[0]))
    state = _rename_prefixes(state, pairs)
    optimizer.set_state_dict({k: paddle.to_tensor(v) if isinstance(v, np.ndarray) else v for k, v in state.items()})
