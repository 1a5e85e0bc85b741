"""The ``paddle-mnist`` console script: ``paddle-mnist CMD ...`` runs ``python -m paddle_mnist.CMD ...``."""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "data": "prepare the tutorial's data file or draw sample images",
    "train": "train a network and save it (.pdparams, metadata, history, curves)",
    "predict": "predict the digit in local images",
    "export": "export a trained model for Paddle Inference (paddle.jit.save)",
    "compare": "train each loss under identical conditions and compare them on accuracy",
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        lines = [f"  {name:<8} {text}" for name, text in COMMANDS.items()]
        print("usage: paddle-mnist COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(lines)
              + "\n\n'paddle-mnist COMMAND --help' explains each command's flags.")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"paddle-mnist: error: unknown command {command!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return importlib.import_module(f"paddle_mnist.{command}").main(rest)


if __name__ == "__main__":
    sys.exit(main())
