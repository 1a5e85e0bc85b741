"""When to say "not a digit", and probabilities that mean what they say.

A network trained on digits answers every picture with a digit, and its softmax is over-confident: a
letter A reads 4 at 99 %.  Two things are fitted once training ends, on the valid split, with the best
weights, and saved in ``mnist.json`` (``RunInfo.calibration``):

- a **temperature** T (Guo et al. 2017): the logits are divided by T before the softmax, T chosen to
  minimise the negative log-likelihood of the valid digits, so that of the digits read at 90 %, about
  90 % are right (``ece`` measures how far from that they are);
- a **threshold** on a score of how digit-like an input is, set so that a fixed small share of the
  valid digits (``REFUSED_DIGITS``) falls below it.  ``SCORES`` are post-hoc scores computed from the
  outputs alone, so the ONNX path decides exactly as paddle does: the maximum calibrated softmax
  probability ("msp", Hendrycks & Gimpel 2017) and the energy T·logsumexp(logits/T) (Liu et al. 2020).

A run without them (older runs, the tutorial's bare ``.pdparams``) gets ``DEFAULT``: T = 1 and a
threshold on the maximum softmax probability measured on the benchmark models (docs/results.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SCORES = ("msp", "energy")
REFUSED_DIGITS = 0.0075  # the share of valid digits refused: the threshold is their 0.75 % quantile (docs/results.md)
# A mark read among others set apart from it (a number's digit) is far more often a digit than a mark alone: it is
# judged this much log-probability more digit-like (half the probability passes; docs/results.md).
AMONG_OTHERS = float(np.log(2))
# A mark alone that the reading cuts into several digits was tried in every way its cuts allow, and a letter, shape
# or scribble has as many chances of one way passing (an m read "177"): each piece is judged this much less
# digit-like (its probability times 3/4).  Two seeds of `fast`, tuning sets: handwriting fonts refused 0-1.0 points
# more, pictures of shapes and scribbles 0-0.7 more, touching numbers read 0.3-0.4 fewer (docs/results.md).
CUT_ALONE = float(np.log(4 / 3))
# A mark alone narrower than a line height, cut only for a model that refuses pairs (a 1 touching its neighbours
# alone on a picture, "17"), is one letter, doodle or digit far more often: each piece is judged at 1/1.75 of its
# probability, so a piece passes only at 0.98 (at 3/4, `fast` refused 6.4 points fewer handwriting fonts, at
# 1/1.5 5.4 fewer; at 1/2 none passes).  `fast`, tuning sets: touching numbers 86.33 → 87.50 % and 87.00 → 88.08 %,
# handwriting fonts refused 95.7 → 95.0 % and 95.3 → 95.3 % (docs/results.md).
CUT_NARROW = float(np.log(1.75))
ECE_BINS = 15  # equal-width confidence bins, as Guo et al. count the calibration error
NOT_A_DIGIT = "not a digit"


@dataclass(frozen=True)
class Calibration:
    """How a run turns outputs into probabilities (``temperature``) and when it refuses (``score`` below
    ``threshold``; never when the threshold is None)."""

    temperature: float = 1.0
    score: str = "msp"
    threshold: float | None = None
    fitted: bool = False  # False: the default of a run that saved none

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """[N,10] calibrated class probabilities of [N,10] logits."""
        return softmax(logits / self.temperature)

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """[N] how digit-like each input is: higher is more (``score``)."""
        if self.score == "energy":
            return self.temperature * logsumexp(logits / self.temperature)
        return self.probabilities(logits).max(axis=1)

    def judged(self, logits: np.ndarray, margins: np.ndarray | float = 0.0) -> np.ndarray:
        """[N] ``scores`` as the reading judges them: each input ``margins`` (log-probability) more digit-like
        than alone, a probability times e^margin, an energy plus T·margin (``reading.Plan.margins``: a number's
        digits are ``AMONG_OTHERS`` more, the pieces of a mark cut alone ``CUT_ALONE`` less)."""
        margin = np.asarray(margins, dtype=np.float64)
        if self.score == "energy":
            return self.scores(logits) + self.temperature * margin
        return self.scores(logits) * np.exp(margin)

    def refuses(self, logits: np.ndarray, margins: np.ndarray | float = 0.0) -> np.ndarray:
        """[N] bool: which inputs are not read as digits (``margins``: see ``judged``)."""
        if self.threshold is None:
            return np.zeros(len(logits), dtype=bool)
        return self.judged(logits, margins) < self.threshold

    def to_json(self) -> dict:
        return asdict(self)


# For a run that fitted none: MSP 0.5 at T = 1 refuses 0.58 % of the valid digits with the tutorial's model,
# 0.21 % with quick's, 0.16 % with fast's trained without outliers (1.14 % with them: they fit their own)
DEFAULT = Calibration(temperature=1.0, score="msp", threshold=0.5, fitted=False)


def averaged(calibration: Calibration) -> Calibration:
    """What decides for probabilities averaged over committee members or test-time views (each member's
    already calibrated): their maximum against the run's msp threshold, or the default one when the
    run's score is another."""
    threshold = calibration.threshold if calibration.score == "msp" else DEFAULT.threshold
    return Calibration(1.0, "msp", threshold, calibration.fitted)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def logsumexp(logits: np.ndarray) -> np.ndarray:
    top = logits.max(axis=1)
    return top + np.log(np.exp(logits - top[:, None]).sum(axis=1))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under the softmax of ``logits / temperature``."""
    scaled = logits / temperature
    return float(np.mean(logsumexp(scaled) - scaled[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, low: float = 0.05, high: float = 20.0) -> float:
    """The temperature in [low, high] of least NLL on (``logits``, ``labels``).

    The NLL is convex in 1/T (a log-sum-exp of logits scaled by 1/T minus a term linear in 1/T), so a
    golden-section search over 1/T finds its minimum to 1e-6 in ~40 evaluations of a 10,000x10 array."""
    ratio = (np.sqrt(5) - 1) / 2
    a, b = 1 / high, 1 / low
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(logits, labels, 1 / c), nll(logits, labels, 1 / d)
    while b - a > 1e-6:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(logits, labels, 1 / c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(logits, labels, 1 / d)
    return float(2 / (a + b))


def ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the mean over confidence bins of |accuracy - confidence|, weighted by
    each bin's share of the inputs."""
    confidence = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    gap = np.bincount(which, weights=right - confidence, minlength=bins)
    return float(np.abs(gap).sum() / max(1, len(labels)))


def fit(logits: np.ndarray, labels: np.ndarray, score: str = "msp", share: float = REFUSED_DIGITS) -> Calibration:
    """The temperature of ``logits`` (the valid split's outputs) and the ``score`` threshold below which
    ``share`` of these digits fall."""
    fitted = Calibration(fit_temperature(logits, labels), score, None, True)
    threshold = float(np.quantile(fitted.scores(logits), share))
    return Calibration(fitted.temperature, score, threshold, True)


def from_json(obj, fail) -> Calibration:
    """``mnist.json``'s ``calibration`` object, each field checked; ``fail(expected)`` raises naming it."""
    if not isinstance(obj, dict) or set(obj) != {"temperature", "score", "threshold", "fitted"}:
        fail("an object of temperature, score, threshold and fitted")
    temperature, threshold = obj["temperature"], obj["threshold"]
    if not (_finite(temperature) and 0.01 <= temperature <= 100):
        fail("a temperature in 0.01..100")
    if obj["score"] not in SCORES or not (threshold is None or _finite(threshold)):
        fail(f"a score of {', '.join(SCORES)} with a finite threshold")
    if not isinstance(obj["fitted"], bool):
        fail("fitted: true or false")
    return Calibration(float(temperature), obj["score"], None if threshold is None else float(threshold), obj["fitted"])


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e15 and value == value
