"""paddle_mnist: the PaddlePaddle handwritten-digit tutorial as installable software."""

import os

# Paddle's CPU kernels call Intel MKL, which takes a slow generic path on AMD
# processors unless told otherwise: 2.6x on matmul and ~1.3x on the tutorial's
# training step on this project's AMD EPYC machines (README "Training speed").
# It must be set before paddle loads MKL; an explicit setting wins.
os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
# Warnings are silenced where they arise, never for the whole process: paddle's import-time ccache
# warning in paddle_mnist._paddle, BatchNorm's per-step one in train.train_epoch.

__version__ = "0.1.0"
