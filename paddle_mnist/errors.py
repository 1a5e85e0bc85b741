"""User-facing errors: a bad file or flag is reported in one line, never a traceback."""

from __future__ import annotations

import functools
import sys


class UserError(Exception):
    """A mistake the user can fix (a bad path, a bad file, a bad flag); the message says how."""


class DataError(UserError):
    """A data file that is missing, unreadable or not what it claims to be."""


class ExportError(UserError):
    """An exported model (ONNX or Paddle Inference) that is not of the form this package exports, or
    that failed to run within its bounds."""


def cli_entry(prog: str):
    """Decorate a command's ``main(argv)`` so a ``UserError`` prints one line and exits 1."""

    def decorate(main):
        @functools.wraps(main)
        def wrapper(argv=None):
            # File names need not be UTF-8 (Python carries their bytes as surrogates): print them escaped.
            if hasattr(sys.stdout, "reconfigure"):
                sys.stdout.reconfigure(errors="backslashreplace")
            try:
                return main(argv)
            except UserError as e:
                print(f"{prog}: error: {e}", file=sys.stderr)
                return 1
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130

        return wrapper

    return decorate


def brief(value, limit: int = 60) -> str:
    """``value`` for an error message, never longer than about ``limit`` characters: what an untrusted file
    holds may be a string of megabytes or an integer of thousands of digits (whose str() raises)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length() * 0.30103:,.0f} digits"
    text = repr(value) if not isinstance(value, (list, dict, tuple)) else f"a {type(value).__name__} of {len(value)}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_reason(error: Exception) -> str:
    """Why ``json.loads`` refused a text, in a few words.  Python refuses integers of more than 4,300
    digits (their conversion is quadratic) with a ValueError that is not a JSONDecodeError."""
    text = str(error)
    if "integer string conversion" in text:
        return "an integer of more than 4,300 digits"
    return text[:120] or type(error).__name__
