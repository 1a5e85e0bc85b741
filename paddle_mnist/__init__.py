"""paddle_mnist: the PaddlePaddle handwritten-digit tutorial as installable software."""
import os
import warnings

# Paddle's CPU kernels call Intel MKL, which takes a slow generic path on AMD
# processors unless told otherwise: 2.6x on matmul and ~1.3x on the tutorial's
# training step on this project's AMD EPYC machines (README "Training speed").
# It must be set before paddle loads MKL; an explicit setting wins.
os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")

# paddle warns on every import when ccache is absent; it only matters for C++ extension builds.
warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
# BatchNorm says on every training step that it tracks global statistics: news to no one using this package.
warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance",
                        category=UserWarning)

__version__ = "0.1.0"
