"""Serve a trained model: a draw-a-digit page and an HTTP API (``paddle-mnist serve``).

FastAPI on uvicorn, an optional extra: ``pip install 'paddle-mnist[serve]'``.  One module, one job,
in the order a request meets them:

    command.py   the flags and the process: open-file limit, allocator, logging, uvicorn
    guard.py     the HTTP edge: connections, request heads and bodies bounded, errors in JSON
    limits.py    what the server bounds (``Limits``, whose fields declare their flags), the cheapest-first
                 ``Gate`` and the decode pool
    app.py       the routes and the error handlers
    bodies.py    what a request brings: forms, raw images, JSON, base64, strokes
    service.py   the pipeline from bytes to a ``ResultRow``: header, charged decode, batch, explanation
    batcher.py   concurrent requests' inputs through the model in one forward pass
    errors.py    ``RequestError`` and the JSON shape of every error

Importing this package imports no FastAPI: ``paddle-mnist serve`` says how to install it when it is missing.
"""

from paddle_mnist.serve.command import main

__all__ = ["main"]
