"""``paddle``, imported once: with MKL told to take its fast code path, and without the warning it
gives on import when ccache is absent.

Paddle's CPU kernels call Intel MKL, which takes a slow generic path on AMD processors unless
``MKL_DEBUG_CPU_TYPE=5``: on this project's AMD EPYC machines a 1000x1000 matmul goes from 52 to
19 ms, and with the reshaped conv bias add (``models.Conv2D``) the tutorial's training step runs
twice as fast (docs/performance.md).  MKL reads the variable
once, when paddle loads it, so it is set here, right before that import, and only if unset (an
explicit setting, even an empty one, wins).  It is the one environment change the package makes,
and only a process that imports paddle through the package sees it.  A script that imports paddle
itself before ``paddle_mnist`` gets MKL's slow path: import ``paddle_mnist._paddle`` first, or set
the variable in the shell.

The ccache warning is about building C++ extensions, which this package never does.  Its filter is
scoped to the import (``warnings.catch_warnings``): a caller's own warning filters stay as they
were.  Every module of the package takes paddle from here, and its submodules as attributes
(``paddle.nn.functional``), so no plain ``import paddle`` runs first.
"""

import os
import warnings

os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
    import paddle
    import paddle.distributed  # noqa: F401 - loaded here too: paddle imports some submodules lazily
    import paddle.nn.functional  # noqa: F401

__all__ = ["paddle"]
