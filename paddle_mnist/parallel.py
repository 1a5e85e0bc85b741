"""Data parallelism through paddle.distributed: who am I, my shard, and metrics every rank agrees on.

Started by Paddle's own launcher (``python -m paddle.distributed.launch``),
each process sees PADDLE_TRAINERS_NUM and its rank.  ``--batch-size`` stays
the global batch: every step, rank r takes rows r, r+world, ... of the same
global batch a single process would use, and ``paddle.DataParallel`` averages
the gradients, so N processes follow the single-process run (exactly, up to
float summation order, for models without dropout or batch norm).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from paddle_mnist._paddle import paddle
from paddle_mnist.errors import UserError

dist = paddle.distributed


def world_size() -> int:
    return dist.get_world_size()


def rank() -> int:
    return dist.get_rank()


def is_main() -> bool:
    return rank() == 0


def wrap(model: paddle.nn.Layer) -> paddle.nn.Layer:
    """The model to train with: DataParallel (after init_parallel_env) when launched on several ranks."""
    if world_size() == 1:
        return model
    dist.init_parallel_env()
    return paddle.DataParallel(model)


def shard(index: np.ndarray) -> np.ndarray:
    """This rank's rows of a global batch."""
    return index[rank() :: world_size()]


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sums over all ranks (the values unchanged on one process)."""
    if world_size() == 1:
        return list(values)
    tensor = paddle.to_tensor(np.asarray(values, dtype=np.float64))
    dist.all_reduce(tensor)
    return tensor.numpy().tolist()


def check_batch(batch_size: int) -> None:
    if batch_size % world_size():
        raise UserError(
            f"--batch-size {batch_size} is the global batch and must divide evenly over {world_size()} processes"
        )


def console_script() -> Path:
    """The installed ``paddle-mnist`` script: the launcher runs script files, not ``-m`` modules."""
    beside = Path(sys.executable).parent / "paddle-mnist"
    found = beside if beside.exists() else shutil.which("paddle-mnist")
    if not found:
        raise UserError("--nproc needs the paddle-mnist console script (pip install the package)")
    return Path(found)


def launch(nproc: int, train_args: list[str], log_dir: Path) -> int:
    """``paddle-mnist train --nproc N ...``: run Paddle's launcher over this same command."""
    return subprocess.call([*launcher(nproc, log_dir), str(console_script()), "train", *train_args])


def launcher(nproc: int, log_dir: Path) -> list[str]:
    """The start of a command that runs a script on ``nproc`` processes through Paddle's launcher."""
    return [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--nproc_per_node",
        str(nproc),
        "--log_dir",
        str(log_dir),
    ]
