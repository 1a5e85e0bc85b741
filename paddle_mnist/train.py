"""Train a network on MNIST: ``python -m paddle_mnist.train`` (also ``paddle-mnist train``).

The command around ``trainer.fit``: the flags (the recipe's from ``config.add_recipe_flags``, the run
options here), the launcher for ``--nproc``, and the ONNX export that ends a run, so that the trainer
itself never imports the predictor or the exporter.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from paddle_mnist import config as recipe
from paddle_mnist import losses, models, parallel
from paddle_mnist.errors import cli_entry
from paddle_mnist.trainer import fit

__all__ = ["build_parser", "fit", "main"]  # fit: the Python API's ``train.fit`` is the trainer's


class _Parser(argparse.ArgumentParser):
    """Builds the models table only when help is shown: it constructs every network."""

    def format_help(self) -> str:
        self.epilog = _models_epilog() + "\n\npresets:\n" + "\n".join(recipe.preset_lines())
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="paddle-mnist train",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a network on MNIST and save it for paddle-mnist predict.",
    )
    recipe.add_recipe_flags(parser)
    add, d = parser.add_argument, recipe.DEFAULTS
    add("--out", help=f"directory for weights, metadata, history and plots (default: {d.out})")
    add(
        "--resume",
        action="store_true",
        default=None,
        help="continue the run saved in --out exactly where it stopped (default: off)",
    )
    add(
        "--overwrite",
        action="store_true",
        default=None,
        help="discard a run already saved in --out and start afresh; without it such a --out is refused (default: off)",
    )
    add(
        "--amp",
        action="store_true",
        default=None,
        help="automatic mixed precision (auto_cast + GradScaler), GPU only (default: off)",
    )
    add(
        "--export",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="end with the ONNX export of the best weights (OUT/inference/mnist.onnx), checked against the "
        "model, when paddle2onnx and onnxruntime are installed: predict then answers without importing "
        "paddle; --no-export skips it (default: on)",
    )
    return parser


def _models_epilog() -> str:
    lines = ["models (parameters with a 10-class head):"]
    for name, cls in models.MODELS.items():  # config.MODEL_NAMES, in the same order
        lines.append(f"  {name:<10} {models.parameter_count(cls(10)):>9,}  {cls.__doc__.splitlines()[0]}")
    lines.append("\nlosses:")
    lines += [f"  {loss.name:<13} {loss.summary}" for loss in losses.LOSSES.values()]
    return "\n".join(lines)


@cli_entry("paddle-mnist train")
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    config = recipe.from_args(args)
    if config.nproc > 1 and parallel.world_size() == 1:
        return parallel.launch(config.nproc, argv, Path(config.out) / "launch-logs")
    fit(config)
    if args.export and parallel.is_main():
        from paddle_mnist import export  # paddle2onnx is an extra: imported only when it is used

        line = export.after_training(Path(config.out))
        if line:
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
