"""The server's answers to what goes wrong: ``RequestError`` (a status and one line for the client) and the
JSON shape every error takes, which the app's handlers and the HTTP guard both answer in."""

from __future__ import annotations

import uuid


class RequestError(Exception):
    """A bad request: its HTTP status, one line for the client and any headers (Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers


def busy(message: str) -> RequestError:
    return RequestError(503, f"busy: {message}; retry later", {"Retry-After": "1"})


def error_body(path: str, status: int, message: str) -> dict:
    """The error shape of the route at ``path``: PaddleX's for its contract, ``{"error"}`` elsewhere."""
    if path == "/image-classification":
        return {"logId": str(uuid.uuid4()), "errorCode": status, "errorMsg": message}
    return {"error": message}
