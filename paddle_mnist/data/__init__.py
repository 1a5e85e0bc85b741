"""The data layer, one module per job, in the order data flows:

``files`` (opening untrusted files) → ``tutorial_json`` / ``idx`` (the two
formats) → ``encoding`` (pixel scaling) → ``locate`` (+ ``download``) and
``cache`` → ``splits`` (the three splits of a source) → ``dataset``
(``MnistDataset``); ``command`` is ``paddle-mnist data``.

``MnistDataset`` and ``load_datasets`` are imported on first use, so that
``paddle_mnist.data.encoding`` can be imported without paddle or the
download stack.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "MnistDataset": "paddle_mnist.data.dataset",
    "load_datasets": "paddle_mnist.data.dataset",
    "main": "paddle_mnist.data.command",
}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
