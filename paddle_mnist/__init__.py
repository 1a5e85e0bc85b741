"""paddle_mnist: the PaddlePaddle handwritten-digit tutorial as installable software."""
import warnings

# paddle warns on every import when ccache is absent; it only matters for C++ extension builds.
warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)

__version__ = "0.1.0"
