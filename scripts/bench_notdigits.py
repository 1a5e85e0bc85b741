"""How well a model says "not a digit": the share refused of each non-digit family and of real digits.

    python scripts/bench_notdigits.py --model-dir runs/fast [--model-dir runs/tutorial ...] [--n 300] [--seed 1]

For each model, the temperature and the thresholds are fitted on the valid split (``calibration.fit``,
as training does), for each post-hoc score of ``calibration.SCORES``; a run that fitted none (``best``,
which trains on the valid split; older runs) is judged by what it reads with (``calibration.DEFAULT``).
Every picture then goes through ``predict``'s reading (its marks found, each read); a picture's score is
its least digit-like mark's, and a picture in which no mark is found at all ("no digit found") counts as
refused.

Non-digit families: ``notdigits``' letters in printed and in handwriting fonts (without the letters
people write like digits: ``notdigits.LIKE_DIGITS``), shapes and scribbles (sent as strokes and as the
pad's picture), blank paper; Fashion-MNIST's t10k images as 28x28 arrays and as photos on paper
(Debian's ``dataset-fashion-mnist``: evaluation only, nothing is trained or tuned on it).  Digit
families: MNIST's eval split (all 10,000, as arrays), ``photos``' six styles, and the drawn digits
of ``testing.drawn_digits`` (strokes and pictures).

Prints per model and score: AUROC against MNIST eval and the false-positive rate at 95 % true-positive
rate per family, the share refused at the fitted threshold, the eval accuracy on all digits and on the
digits kept, and the expected calibration error before and after the temperature.
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from paddle_mnist import calibration, notdigits, photos
from paddle_mnist.data import MnistDataset
from paddle_mnist.data.idx import read_images
from paddle_mnist.predict import Predictor
from paddle_mnist.preprocess import NoDigitFound
from paddle_mnist.strokes import Drawing
from paddle_mnist.testing import drawn_digits

FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
BATCH = 256


def picture_logits(predictor: Predictor, items: list) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Per picture, the logits of the marks ``predict`` reads it as and the margins they are judged with
    (``Plan.margins``); None: no mark found.  In batches."""
    plans = []
    for item in items:
        try:
            plans.append(predictor.plan(item))
        except NoDigitFound:
            plans.append(None)
    inputs = np.concatenate([p.inputs(predictor.encoding) for p in plans if p is not None])
    outputs = forward(predictor, inputs)
    out, start = [], 0
    for plan in plans:
        if plan is None:
            out.append(None)
            continue
        mine = outputs[start : start + len(plan.pixels)]
        start += len(plan.pixels)
        chosen, _, _ = predictor.read_plan(plan, mine, topk=1)
        out.append((predictor.loss.logits(mine[chosen]), plan.margins[chosen]))
    return out


def forward(predictor: Predictor, inputs: np.ndarray) -> np.ndarray:
    """The outputs for float32 ``inputs`` [N,1,28,28], ``BATCH`` at a time (an engine's memory cap holds)."""
    return np.concatenate([predictor.forward(inputs[k : k + BATCH]) for k in range(0, len(inputs), BATCH)])


def picture_scores(logits: list, judge: calibration.Calibration) -> np.ndarray:
    """A picture's score: its least digit-like mark's, as ``predict`` judges it (``Calibration.judged``);
    -inf for one with no mark."""
    return np.array([-np.inf if x is None else judge.judged(*x).min() for x in logits])


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """The chance that a random positive scores above a random negative (ties count half)."""
    both = np.concatenate([positive, negative])
    order = np.argsort(both, kind="stable")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    for value in np.unique(both):  # average ranks of ties
        tied = both == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return float(
        (ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative))
    )


def families(args, evaluation: MnistDataset, tmp: Path) -> tuple[dict, dict]:
    """(digit families, non-digit families): name -> list of items ``Predictor.predict`` takes."""
    rng = np.random.default_rng(args.seed)
    drawn = drawn_digits.benchmark(args.n, args.seed)
    drawings = [Drawing(tuple(s), drawn_digits.PAD, drawn_digits.PAD) for _, _, s in drawn]
    photo_rows = photos.write_set(
        evaluation.pixels[: args.n], evaluation.class_ids[: args.n], tmp, args.seed, photos.STYLES
    )
    digits = {
        "MNIST eval": list(evaluation.pixels),
        "photos": [str(path) for path, _, _ in photo_rows],
        "drawn, strokes": drawings,
        "drawn, pictures": [notdigits.picture(d) for d in drawings],
    }
    fashion = read_images(FASHION)[: args.n]
    others = {name: notdigits.family(name, args.n, args.seed) for name in ("letters", "handwritten_letters", "paper")}
    for name in ("shapes", "scribbles"):
        made = notdigits.family(name, args.n, args.seed)
        others[f"{name}, strokes"] = made
        others[f"{name}, pictures"] = [notdigits.picture(d) for d in made]
    others["Fashion-MNIST 28x28"] = list(fashion)
    others["Fashion-MNIST photos"] = [
        Image.open(io.BytesIO(photos.render(item, "paper", rng))) for item in fashion
    ]  # the item dark on paper, enlarged and placed as a photographed digit is
    return digits, others


def fitted_judges(own: calibration.Calibration, valid_logits: np.ndarray, valid: MnistDataset) -> dict:
    """score name -> the Calibration it is judged by: each score fitted on the valid split as training fits
    it, and the maximum probability without a temperature; ``own`` alone (under "msp") for a run that fitted
    none, as ``predict`` reads it (``best``'s valid split was trained on: thresholds fitted on digits it
    learnt would say nothing)."""
    if not own.fitted:
        return {"msp": own}
    judges = {score: calibration.fit(valid_logits, valid.class_ids, score) for score in calibration.SCORES}
    untempered = float(np.quantile(calibration.softmax(valid_logits).max(axis=1), calibration.REFUSED_DIGITS))
    return {"msp, T = 1": calibration.Calibration(1.0, "msp", untempered, True), **judges}


def report(predictor: Predictor, valid: MnistDataset, evaluation: MnistDataset, digits: dict, others: dict) -> str:
    """The Markdown report of one model (its own calibration only says which judges apply: ``fitted_judges``;
    the outputs and the reading do not depend on it)."""
    own = predictor.calibration
    valid_logits, eval_logits = (predictor.loss.logits(forward(predictor, s.images)) for s in (valid, evaluation))
    judges = fitted_judges(own, valid_logits, valid)
    logits = {name: picture_logits(predictor, items) for name, items in {**digits, **others}.items()}
    lines = [] if own.fitted else [f"(the run fitted no calibration: judged by the default, {own})", ""]
    lines += [
        f"temperature {judges['msp'].temperature:.3f}; eval ECE {100 * calibration.ece(calibration.softmax(eval_logits), evaluation.class_ids):.2f} % "
        f"before, {100 * calibration.ece(judges['msp'].probabilities(eval_logits), evaluation.class_ids):.2f} % after",
        "",
        "| family | " + " | ".join(f"{s}: AUROC / FPR95 / refused" for s in judges) + " |",
        "| --- |" + " --- |" * len(judges),
    ]
    base = {s: picture_scores(logits["MNIST eval"], j) for s, j in judges.items()}
    for name in [*digits, *others]:
        cells = []
        for s, judge in judges.items():
            scores = picture_scores(logits[name], judge)
            refused = float(np.mean(scores < judge.threshold))
            if name in digits:
                cells.append(f"{100 * refused:.2f} % refused")
            else:
                fpr = float(np.mean(scores >= np.quantile(base[s], 0.05)))
                cells.append(f"{auroc(base[s], scores):.3f} / {100 * fpr:.1f} % / {100 * refused:.1f} %")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    kept = ~judges["msp"].refuses(eval_logits)
    right = eval_logits.argmax(axis=1) == evaluation.class_ids  # the regression's logits peak at its rounded value
    lines += [
        "",
        f"eval accuracy: all {100 * right.mean():.2f} %, the {kept.sum():,} kept (msp) {100 * right[kept].mean():.2f} %",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, action="append", required=True, help="a run directory (repeatable)")
    parser.add_argument("--data", default=None, help="the MNIST data (default: the search of docs/data.md)")
    parser.add_argument(
        "--n", type=int, default=300, help="pictures per family, but MNIST eval's 10,000 (default: 300)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of every generated family (default: 1)")
    args = parser.parse_args()
    valid, evaluation = MnistDataset("valid", args.data), MnistDataset("eval", args.data)
    with tempfile.TemporaryDirectory() as tmp:  # the photos, read from their files as people's would be
        digits, others = families(args, evaluation, Path(tmp))
        for directory in args.model_dir:
            print(f"\n## {directory}\n")
            print(report(Predictor.from_dir(directory), valid, evaluation, digits, others))


if __name__ == "__main__":
    main()
