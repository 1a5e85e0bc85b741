"""Predict the digit in local images: ``python -m paddle_mnist.predict IMG [IMG ...]``.

The command around ``predictor.Predictor``, and the flags every command that reads a trained model
shares (``add_model_flags``, turned into a ``Predictor`` by ``from_flags``): predict, photos, serve
and export.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from paddle_mnist import engines, rundir, segment, views
from paddle_mnist.cli import positive_int
from paddle_mnist.errors import UserError, cli_entry
from paddle_mnist.predictor import Prediction, Predictor, on_paddle

__all__ = ["Predictor", "add_model_flags", "from_flags", "main", "model_dirs"]  # Predictor: the Python API's name here


def format_line(result: Prediction, classes: list[str], verbose: bool = False) -> str:
    """One line per picture: a digit with its top-k, or a number with the chance all its digits are right
    (with ``verbose``, then one indented line per digit: its box and top-k)."""
    source = printable(result.source)
    if result.digit is not None:
        raw = f", raw {result.raw:.2f}" if result.raw is not None else ""
        return f"{source}: {classes[result.digit]} (p={result.probability:.3f}{raw}) top-{len(result.topk)}: {_top(result.topk, classes)}"
    left_out = f"; {result.left_out} more marks not read (--max-digits)" if result.left_out else ""
    if result.reason:
        closest = "".join(classes[d.closest] for d in result.digits)
        line = f"{source}: {result.reason} (closest {closest}{left_out})"
    else:
        text = "".join("?" if d.digit is None else classes[d.digit] for d in result.digits)
        unread = "; ? is not a digit" if "?" in text else ""
        line = f"{source}: {text} (p={result.probability:.3f}{unread}{left_out})"
    if verbose:
        line += "".join(f"\n  {_mark(d, classes)} at {list(d.box)}: {_top(d.topk, classes)}" for d in result.digits)
    return line


def _mark(digit, classes: list[str]) -> str:
    return classes[digit.digit] if digit.digit is not None else f"? ({digit.reason}, closest {classes[digit.closest]})"


def _top(topk: list, classes: list[str]) -> str:
    return ", ".join(f"{classes[k]} {p:.3f}" for k, p in topk)


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``...): a file name holding a newline must not
    start a line of its own, which could pass for another image's prediction."""
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape", "backslashreplace").decode() for c in text
    )


def add_model_flags(parser: argparse.ArgumentParser, *, committee: bool, runtime: bool = True) -> None:
    """The flags that say which trained model to read, the same in every command that reads one:
    ``--model-dir`` (given again: a committee, where ``committee``) and ``--weights``; with ``runtime``,
    how to run it too: ``--engine``, ``--inference-prefix`` and ``--tta``.  ``from_flags`` builds the
    ``Predictor`` they describe."""
    add = parser.add_argument
    if committee:
        add(
            "--model-dir",
            type=Path,
            action="append",
            default=None,
            help="a training output dir with mnist.json (or a directory holding one .pdparams); give it several "
            "times for a committee that averages the models' probabilities (default: output)",
        )
    else:
        add(
            "--model-dir",
            type=Path,
            default=Path("output"),
            help="a training output dir with mnist.json, or a directory holding one .pdparams (default: output)",
        )
    add(
        "--weights",
        default="best",
        metavar="best|last|FILE",
        help="the run's best-validation or last epoch's weights, or a bare .pdparams state dict "
        "(the tutorial's paddle.save, hapi's Model.save): its network is inferred (default: best)",
    )
    if not runtime:
        return
    add(
        "--engine",
        choices=engines.ENGINES,
        default="auto",
        help="auto = the run's ONNX export when it was made from these weights and onnxruntime is installed "
        "(no paddle import: fast), else dynamic; dynamic = the paddle.nn model; inference = the exported model "
        "in Paddle Inference; onnx = the ONNX export in onnxruntime (default: auto)",
    )
    add(
        "--inference-prefix",
        type=Path,
        default=None,
        help="path prefix of the exported model, PREFIX.json/.pdiparams or PREFIX.onnx; one model's, so not "
        "with a committee (default: MODEL_DIR/inference/mnist)",
    )
    views.add_argument(parser)
    add(
        "--no-reject",
        action="store_true",
        help="answer the closest digit for every mark, even one the model's calibration says is not a digit "
        '(a letter, a doodle) (default: such a mark is answered "not a digit")',
    )


def model_dirs(args: argparse.Namespace) -> list[Path]:
    """The ``--model-dir`` values as a list, whether the command takes a committee or not."""
    given = args.model_dir or [Path("output")]
    return list(given) if isinstance(given, list) else [given]


def from_flags(args: argparse.Namespace, command: str) -> Predictor:
    """The predictor that ``add_model_flags``'s flags describe: one model or a committee, on its engine,
    read in its views; the line saying what was inferred from a bare file goes to stderr."""
    dirs = model_dirs(args)
    if len(dirs) > 1:
        if args.inference_prefix:
            raise UserError("--inference-prefix names one model's export; a committee reads MODEL_DIR/inference/mnist")
        predictor = Predictor.committee(dirs, weights=args.weights, engine=args.engine)
    else:
        predictor = Predictor.from_dir(
            dirs[0], weights=args.weights, engine=args.engine, inference_prefix=args.inference_prefix
        )
    predictor = predictor.with_views(args.tta, source=" + ".join(map(str, dirs)))
    if args.no_reject:
        predictor = predictor.without_rejection()
    for note in predictor.notes:
        print(f"{command}: {note}", file=sys.stderr)
    return predictor


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paddle-mnist predict",
        description="Read the digits in local images: every digit of a picture, left to right; p is the chance that all of them are right.",
    )
    parser.add_argument("images", nargs="+", metavar="IMG", help="image files (any format Pillow reads)")
    add_model_flags(parser, committee=True)
    parser.add_argument("--topk", type=positive_int, default=3, help="how many ranked guesses to show (default: 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of text (default: text)")
    parser.add_argument(
        "--single",
        action="store_true",
        help="read the whole picture as one digit, as before numbers were read (default: every digit, left to right)",
    )
    parser.add_argument(
        "--max-digits",
        type=positive_int,
        default=segment.MAX_DIGITS,
        help="read at most this many digits in a picture, the heaviest marks; the answer says how many were "
        f"left out (default: {segment.MAX_DIGITS})",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="for a number, one more line per digit: its box in the picture and its top-k (default: off)",
    )
    parser.add_argument(
        "--naive",
        action="store_true",
        help="the tutorial's preprocessing (grey, squash to 28x28, invert), for comparison (default: off)",
    )
    parser.add_argument(
        "--explain",
        type=Path,
        metavar="OUT.png",
        default=None,
        help="also draw what the network looked at into OUT.png: for each digit read (the first 32), its "
        "model input, then saliency and Grad-CAM maps for the digit read and the runner-up; computed with "
        "paddle's gradients, so it loads the paddle model (default: off)",
    )
    return parser


def check_explainable(args: argparse.Namespace) -> None:
    """``--explain`` takes the gradients of one paddle network: under auto or dynamic, of one model."""
    if args.engine in ("onnx", "inference"):
        raise UserError(
            f"--explain needs gradients, which the {args.engine} export has not: leave --engine at auto or dynamic"
        )
    if len(model_dirs(args)) > 1:
        raise UserError("--explain explains one model, not a committee: give one --model-dir")


@cli_entry("paddle-mnist predict")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.explain:
        check_explainable(args)
    predictor = from_flags(args, "paddle-mnist predict")
    # whatever engine answers, the explanation is of the paddle network with the same weights
    network = on_paddle(rundir.open_run(model_dirs(args)[0], args.weights)).network if args.explain else None
    rows = _explained_rows() if args.explain else 0
    failed, read = False, []
    options = dict(topk=min(args.topk, 10), naive=args.naive, single=args.single, max_digits=args.max_digits)
    for result in predictor.predict_iter(args.images, **options):
        if args.json:
            print(json.dumps({**result.to_json(), "engine": predictor.summary.engine}), flush=True)
        elif not result.error:
            print(format_line(result, predictor.classes, args.verbose), flush=True)
        if result.error:
            print(f"paddle-mnist predict: error: {printable(result.error)}", file=sys.stderr, flush=True)
            failed = True
        elif sum(len(r.digits) for r in read) < rows:  # the pictures whose digits the figure will show
            read.append(result)
    if read:
        from paddle_mnist import explain  # paddle's gradients: imported only to explain

        explained = explain.write_for(network, predictor, read, args.explain)
        print(f"paddle-mnist predict: wrote {args.explain} ({explained} explained)", file=sys.stderr)
    return 1 if failed else 0


def _explained_rows() -> int:
    from paddle_mnist import explain  # paddle's gradients: imported only to explain

    return explain.MAX_ROWS


if __name__ == "__main__":
    sys.exit(main())
