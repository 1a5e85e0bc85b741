"""The ``paddle-mnist`` console script (``paddle-mnist CMD ...`` runs ``python -m paddle_mnist.CMD ...``)
and the argparse types the commands share."""

from __future__ import annotations

import argparse
import importlib
import math
import sys

COMMANDS = {
    "data": "prepare the tutorial's data file or draw sample images",
    "train": "train a network and save it (.pdparams, metadata, history, curves)",
    "predict": 'read the digits in local images: a digit, a number left to right, or "not a digit"',
    "export": "export a trained model for Paddle Inference (paddle.jit.save) or ONNX",
    "compare": "train one recipe with one knob varied (the loss by default) and compare the runs on accuracy",
    "photos": "score a model on realistic pictures of digits, against the tutorial's preprocessing",
    "serve": "a draw-a-digit page and a prediction API over a trained model (needs the serve extra)",
}


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = _parse(int, text, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _parse(int, text, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _parse(float, text, "a number")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _parse(float, text, "a number")
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be 0 or a positive number, got {text}")
    return value


def _parse(kind, text: str, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        lines = [f"  {name:<8} {text}" for name, text in COMMANDS.items()]
        print(
            "usage: paddle-mnist COMMAND [ARGS...]\n\ncommands:\n"
            + "\n".join(lines)
            + "\n\n'paddle-mnist COMMAND --help' explains each command's flags."
        )
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"paddle-mnist: error: unknown command {command!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return importlib.import_module(f"paddle_mnist.{command}").main(rest)


if __name__ == "__main__":
    sys.exit(main())
