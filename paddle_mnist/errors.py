"""User-facing errors: a bad file or flag is reported in one line, never a traceback."""
from __future__ import annotations

import functools
import sys


class UserError(Exception):
    """A mistake the user can fix (a bad path, a bad file, a bad flag); the message says how."""


class DataError(UserError):
    """A data file that is missing, unreadable or not what it claims to be."""


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
