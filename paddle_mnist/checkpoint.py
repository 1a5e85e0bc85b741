"""Saving and loading ``.pdparams`` / ``.pdopt`` state files: atomically, and without running pickled code.

``paddle.load`` unpickles arbitrary objects, so a crafted ``.pdparams`` can run
code.  ``load_state`` reads through ``safe_pickle``, which admits only what a
state dict holds (dicts, numbers, strings and numpy arrays), in memory
proportional to the file, and refuses anything else.
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from paddle_mnist import errors, safe_pickle
from paddle_mnist.errors import UserError
from paddle_mnist.fileio import read_capped, write_bytes_atomic

if TYPE_CHECKING:  # reading a state file needs no paddle; writing one and filling a model import it where they do
    from paddle_mnist._paddle import paddle

_NAME_MAP = "StructuredToParameterName@@"
MAX_STATE_BYTES = 1 << 30  # the largest network here saves ~5 MB; a gigabyte is no state file of ours
MAX_NESTING = 4  # {"LR_Scheduler": {"last_epoch": ...}} is as deep as a state dict goes


class CheckpointError(UserError):
    pass


def load_state(path: Path, hashes: dict[str, str] | None = None) -> dict:
    """A state dict from ``path`` with tensors as numpy arrays; never executes pickled code.

    ``hashes`` (a run's ``files``) must list the file with the SHA-256 of the
    bytes read, so a torn or swapped set is caught before it is used.  Memory
    stays proportional to the file (see ``safe_pickle``); NaN or infinite
    values are refused, as no trained network holds them.
    """
    data = read_capped(Path(path), MAX_STATE_BYTES, CheckpointError, what="state file here")
    if hashes is not None:
        expected = hashes.get(Path(path).name)
        if expected is None or hashlib.sha256(data).hexdigest() != expected:
            raise CheckpointError(
                f"{path}: does not match the hash its run's metadata records (an interrupted write, or a swapped file?)"
            )
    try:
        state = safe_pickle.loads(data)
    except safe_pickle.Refused as e:
        raise CheckpointError(f"{path}: refused to load: {e}") from None
    except Exception as e:  # truncated, or not a pickle at all
        raise CheckpointError(f"{path}: not a paddle state file ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, expected a state dict")
    state.pop(_NAME_MAP, None)
    _check_values(state, path)
    return state


def _check_values(state: dict, path: Path) -> None:
    """Arrays, numbers, strings and small dicts only, at most ``MAX_NESTING`` deep, every float finite."""
    pending = [(state, 1, "")]
    while pending:
        node, depth, where = pending.pop()
        for key, value in node.items():
            name = f"{where}{key}"
            if not isinstance(key, str):
                raise CheckpointError(f"{path}: has a key {errors.brief(key)} that is not a name")
            if isinstance(value, dict):
                if depth >= MAX_NESTING:
                    raise CheckpointError(f"{path}: nests dicts deeper than a state dict does (at {name!r})")
                pending.append((value, depth + 1, name + "."))
            elif isinstance(value, np.ndarray) or isinstance(value, np.generic):
                if value.dtype.kind == "f" and not np.isfinite(value).all():
                    raise CheckpointError(f"{path}: {name!r} holds NaN or infinite values")
            elif isinstance(value, float) and not math.isfinite(value):
                raise CheckpointError(f"{path}: {name!r} is {value}")
            elif not isinstance(value, (str, int, float, bool, type(None))):
                raise CheckpointError(f"{path}: {name!r} is a {type(value).__name__}, which no state dict holds")


def save_state_bytes(state: dict) -> bytes:
    """What ``paddle.save(state, path)`` would write."""
    from paddle_mnist._paddle import paddle

    buffer = io.BytesIO()
    with warnings.catch_warnings():  # plain SGD has an empty state; it is saved all the same
        warnings.filterwarnings("ignore", message="The input state dict is empty")
        paddle.save(state, buffer)
    return buffer.getvalue()


def save_state(path: Path, state: dict) -> str:
    """``paddle.save`` into memory, then an atomic write; returns the file's SHA-256."""
    data = save_state_bytes(state)
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def fit_state(model: paddle.nn.Layer, state: dict, path: Path) -> None:
    """Set ``model``'s weights from ``state``, naming missing or unexpected keys, shapes and dtypes that differ."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit the model: missing {missing or 'none'}, unexpected {unexpected or 'none'}"
        )
    for name, tensor in expected.items():
        value = state[name]
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{path}: {name} is a {type(value).__name__}, expected an array")
        if tuple(value.shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path}: {name} has shape {list(value.shape)}, the model expects {list(tensor.shape)}"
            )
        if value.dtype != _numpy_dtype(tensor):
            raise CheckpointError(f"{path}: {name} is {value.dtype}, the model expects {_numpy_dtype(tensor)}")
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
                key = new + key[len(old) :]
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


def set_optimizer_state(
    model: paddle.nn.Layer,
    optimizer: paddle.optimizer.Optimizer,
    state: dict,
    path: Path,
    *,
    scheduler=None,
    steps_done: int | None = None,
) -> None:
    """Set ``optimizer``'s state from ``state`` (read from ``path``) once it is checked to be this optimizer's
    whole state (``check_optimizer_state``): paddle would take a partial one and restart what is missing from zero."""
    from paddle_mnist._paddle import paddle

    pairs = [(structured, name) for name, structured in _param_names(model)]
    pairs.sort(key=lambda pair: -len(pair[0]))
    check_optimizer_state(state, model, optimizer, path, scheduler=scheduler, steps_done=steps_done)
    state = _rename_prefixes(state, pairs)
    optimizer.set_state_dict({k: paddle.to_tensor(v) if isinstance(v, np.ndarray) else v for k, v in state.items()})


# What each optimizer keeps for every parameter (paddle 3.x's names), with its shape: None = the parameter's.
# tests/test_train.py checks this table against what paddle saves after a step of each optimizer.
ACCUMULATORS = {
    "SGD": {},
    "Momentum": {"velocity_0": None},
    "Adagrad": {"moment_0": None},
    "Adam": {"moment1_0": None, "moment2_0": None, "beta1_pow_acc_0": (1,), "beta2_pow_acc_0": (1,)},
}
SCHEDULER_KEY = "LR_Scheduler"


def check_optimizer_state(
    state: dict,
    model: paddle.nn.Layer,
    optimizer: paddle.optimizer.Optimizer,
    path: Path,
    *,
    scheduler=None,
    steps_done: int | None = None,
) -> None:
    """Refuse an optimizer state that is not exactly ``optimizer``'s: every accumulator of every parameter,
    with its shape and dtype, the scheduler's fields (``last_epoch`` = ``steps_done``), and nothing else."""
    kind = type(optimizer).__name__
    expected = {
        f"{name}_{suffix}": (tuple(param.shape) if shape is None else shape, _numpy_dtype(param))
        for name, param in model.named_parameters()
        if param.trainable  # not BatchNorm's statistics
        for suffix, shape in ACCUMULATORS[kind].items()
    }
    allowed = set(expected) | ({SCHEDULER_KEY} if scheduler is not None else set())
    unexpected = sorted(set(state) - allowed)
    if unexpected:
        raise CheckpointError(
            f"{path}: holds {errors.brief(unexpected[0])}, which this run's {kind} optimizer"
            f"{'' if scheduler is not None else ' (constant learning rate)'} does not keep"
        )
    for key, (shape, dtype) in expected.items():
        value = state.get(key)
        if value is None:
            raise CheckpointError(
                f"{path}: lacks {key!r}: the {kind} optimizer keeps it for every parameter, and "
                "resuming without it would restart it from zero"
            )
        if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != dtype:
            got = f"{value.dtype} {list(value.shape)}" if isinstance(value, np.ndarray) else type(value).__name__
            raise CheckpointError(f"{path}: {key!r} is {got}, expected {dtype} {list(shape)}")
    if scheduler is not None:
        _check_scheduler_state(state.get(SCHEDULER_KEY), scheduler, path, steps_done)


def _check_scheduler_state(saved, scheduler, path: Path, steps_done: int | None) -> None:
    """The scheduler's saved fields: the ones a fresh scheduler has, of their types, in range."""
    fresh = scheduler.state_dict()
    if not isinstance(saved, dict) or set(saved) != set(fresh):
        got = sorted(saved) if isinstance(saved, dict) else "none"  # load_state has made every key a name
        raise CheckpointError(f"{path}: its {SCHEDULER_KEY!r} must hold {sorted(fresh)}, got {got}")
    for key, value in saved.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key == "last_epoch":
            if type(value) is not int or (steps_done is not None and value != steps_done):
                raise CheckpointError(
                    f"{path}: {SCHEDULER_KEY}.last_epoch is {errors.brief(value)}, expected "
                    f"{steps_done} (the steps of the epochs saved)"
                )
        elif isinstance(fresh[key], (int, float)) and not (number and 0 <= value < 1e6):
            raise CheckpointError(
                f"{path}: {SCHEDULER_KEY}.{key} is {errors.brief(value)}, expected a number in 0..1e6"
            )
        elif not isinstance(fresh[key], (int, float)) and type(value) is not type(fresh[key]):
            raise CheckpointError(
                f"{path}: {SCHEDULER_KEY}.{key} is a {type(value).__name__}, expected a {type(fresh[key]).__name__}"
            )


def _numpy_dtype(param) -> np.dtype:
    return np.dtype(str(param.dtype).removeprefix("paddle."))
