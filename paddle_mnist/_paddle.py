"""``paddle``, imported once without the warning it gives on import when ccache is absent.

That warning is about building C++ extensions, which this package never does.  The filter is
scoped to the import (``warnings.catch_warnings``): a caller's own warning filters stay as they
were.  Every module of the package takes paddle from here, and its submodules as attributes
(``paddle.nn.functional``), so no plain ``import paddle`` runs first.
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
    import paddle
    import paddle.distributed  # noqa: F401 - loaded here too: paddle imports some submodules lazily
    import paddle.nn.functional  # noqa: F401

__all__ = ["paddle"]
