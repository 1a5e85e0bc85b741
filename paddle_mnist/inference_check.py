"""What a Paddle Inference export must be before paddle loads it: ``check_program``.

``paddle.jit.save`` writes the program as PIR JSON (``PREFIX.json``).  A run handed over by someone else
may hold any program there, and Paddle Inference has no way to stop a forward pass nor to cap its memory,
so the program is read before paddle sees it and refused, in one line, unless it is of the form the
networks here export to: one float32 ``[N,1,28,28]`` input, one ``[N, head_size]`` output, only the
operators ``paddle.jit.save`` makes of them, no control flow, and sizes it can afford.  The sizes are not
taken from the types the file declares (paddle's kernels recompute them from the inputs and attributes
as they run), but worked out here the way those kernels do, for a batch of one image and of two: every
tensor must be at most ``MAX_ELEMENTS`` per image and grow with the batch, not faster, and the whole
pass at most ``MAX_MACS`` multiply-adds per image.  With its memory and its work bounded so, a pass's
time is bounded too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from paddle_mnist.errors import ExportError
from paddle_mnist.fileio import read_capped

MAX_PROGRAM_BYTES = 4 << 20  # the largest export here (inception) is 56 KB
MAX_OPS = 2_000  # the largest is 143 operators and 54 parameters
# Measured on the nine networks' exports, both heads: the largest tensor holds
# 451,584 values (vgg_wide's first linear weights), a pass 604 K values per image (inception), 37 M
# multiply-adds (resnet).  The bounds leave room for wider networks, not for a different kind of program.
MAX_ELEMENTS = 1 << 21  # per image, any one tensor
MAX_ACTIVATIONS = 1 << 22  # per image, all tensors of a pass together: 16 MB, 1 GB for a batch of 64
MAX_MACS = 1 << 30  # per image, multiply-adds in convolutions and matrix products
MAX_PARAMETERS = 1 << 26  # elements in all parameters: a 256 MB .pdiparams
FLOAT_INPUT = [-1, 1, 28, 28]


@dataclass
class Value:
    """A value of the program: a tensor's shape, and for the small integer tensors that describe shapes
    (``shape64``, ``full_int_array``, their slices and stacks) the integers themselves."""

    shape: tuple[int, ...]
    ints: tuple[int, ...] | None = None
    parts: tuple[Value, ...] | None = None  # what ``combine`` gathers for ``stack`` and ``concat``

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


def read_checked(prefix: Path, head_size: int) -> None:
    """Refuse ``PREFIX.json`` unless its program passes ``check_program`` with a ``head_size`` output."""
    path = Path(f"{prefix}.json")
    text = read_capped(path, MAX_PROGRAM_BYTES, ExportError, what="Paddle Inference program here")
    try:
        program = json.loads(text)
        ops = [op for region in program["program"]["regions"] for block in region["blocks"] for op in block["ops"]]
    except (ValueError, RecursionError, KeyError, TypeError):
        raise ExportError(f"{path}: not a program as paddle.jit.save writes one (PIR JSON)") from None
    check_program(path, ops, head_size)


def check_program(path: Path, ops: list, head_size: int) -> None:
    """Work the program's operators ``ops`` through for one image and for two; raise ``ExportError`` naming
    ``path`` at the first thing a real export never holds."""
    if len(ops) > MAX_OPS:
        raise ExportError(f"{path}: {len(ops):,} operators; an export here has a few hundred")
    try:
        one, two = (_Interpreter(path, batch).run(ops) for batch in (1, 2))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, ZeroDivisionError):
        raise ExportError(
            f"{path}: an operator whose inputs or attributes are not as paddle.jit.save writes them"
        ) from None
    for key, value in one.values.items():
        if two.values[key].elements not in (value.elements, 2 * value.elements):
            raise ExportError(f"{path}: a tensor grows faster than the batch ({list(value.shape)} for one image)")
    if one.output != (1, head_size) or two.output != (2, head_size):
        raise ExportError(f"{path}: gives {list(one.output)} for one image, not [1, {head_size}] for this run")


class _Interpreter:
    """The shapes of a program's values for ``batch`` images, worked out operator by operator."""

    def __init__(self, path: Path, batch: int):
        self.path, self.batch = path, batch
        self.values: dict[int, Value] = {}
        self.output: tuple[int, ...] | None = None
        self.activations = self.macs = self.parameters = 0

    def fail(self, why: str):
        raise ExportError(f"{self.path}: {why}")

    def run(self, ops: list) -> _Interpreter:
        data = [op for op in ops if op["#"] == "1.data"]
        if len(data) != 1 or len([op for op in ops if op["#"] == "1.fetch"]) != 1:
            self.fail("not one input and one output, as an export here has")
        for op in ops:
            name = op["#"]
            rule = RULES.get(name)
            if rule is None or "regions" in op:
                self.fail(f"holds an operator no network here exports to: {str(name)[:40]}")
            attrs = {a["N"]: _attribute(a["AT"]) for a in op.get("A", []) if isinstance(a, dict)}
            inputs = [self.values[i["%"]] if i.get("%") else None for i in op.get("I", [])]
            results = rule(self, attrs, inputs, op)
            outputs = op["O"] if isinstance(op["O"], list) else [op["O"]]
            for spec, value in zip(outputs, results):
                self._keep(spec["%"], value)
        if self.activations > MAX_ACTIVATIONS * self.batch or self.macs > MAX_MACS * self.batch:
            self.fail(f"a forward pass over {MAX_ACTIVATIONS:,} values or {MAX_MACS:,} multiply-adds per image")
        return self

    def _keep(self, key: int, value: Value) -> None:
        if any(d < 0 for d in value.shape) or value.elements > MAX_ELEMENTS * self.batch:
            self.fail(f"a tensor of {list(value.shape)} (at most {MAX_ELEMENTS:,} values per image)")
        self.values[key] = value
        self.activations += value.elements


def _attribute(at: dict):
    """A PIR attribute's plain value: arrays of typed scalars become lists."""
    data = at["D"]
    if at["#"] == "0.a_array":
        return [_attribute(item) for item in data]
    return data


# --- the operators, as paddle's kernels shape their outputs -------------------------------------------


def _parameter(run: _Interpreter, attrs, inputs, op) -> list[Value]:
    dtype, dims = op["O"]["TT"]["D"][:2]
    if dtype["#"] != "0.t_f32" or not all(isinstance(d, int) and d > 0 for d in dims):
        run.fail(f"a parameter of {dims} {dtype['#']}")
    run.parameters += math.prod(dims)
    if run.parameters > MAX_PARAMETERS:
        run.fail(f"over {MAX_PARAMETERS:,} parameter values")
    run.activations -= math.prod(dims)  # parameters are the weights, not the pass's work
    return [Value(tuple(dims))]


def _data(run: _Interpreter, attrs, inputs, op) -> list[Value]:
    if attrs["shape"] != FLOAT_INPUT or attrs["dtype"] != "float32":
        run.fail(f"takes {attrs['dtype']} {attrs['shape']}, not one float32 [N,1,28,28] batch of images")
    return [Value((run.batch, 1, 28, 28))]


def _fetch(run: _Interpreter, attrs, inputs, op) -> list[Value]:
    run.output = inputs[0].shape
    return [inputs[0]]


def _same(run: _Interpreter, attrs, inputs, op) -> list[Value]:
    """the activations, dropout and batch norm at inference: the input's shape (dropout's mask too; the rest of batch
    norm's outputs are its statistics, shaped as the mean it is given)."""
    if attrs.get("is_test") is False:
        run.fail(f"a {op['#']} in training mode")
    rest = inputs[1] if op["#"] == "1.batch_norm_" else inputs[0]
    return [inputs[0]] + [rest] * (len(op["O"]) - 1)


def _full(run: _Interpreter, attrs, inputs, op) -> list[Value]:
    shape = tuple(attrs["shape"])
    if not all(isinstance(d, int) and d >= 0 for d in shape) or math.prod(shape) > MAX_ELEMENTS:
        run.fail(f"a constant of {list(shape)[:8]}")
    value = attrs["value"]
    ints = (int(value),) * math.prod(shape) if float(value).is_integer() and math.prod(shape) <= 8 else None
    return [Value(shape, ints)]


def _full_int_array(run: _Interpreter, attrs, inputs, op) -> list[Value]:
    values = tuple(attrs["value"])
    if len(values) > 8 or not all(isinstance(v, int) and abs(v) <= MAX_ELEMENTS for v in values):
        run.fail(f"an integer constant of {list(values)[:8]}")
    return [Value((len(values),), values)]


def _shape64(run: _Interpreter, attrs, inputs, op) -> list[Value]:
    return [Value((len(inputs[0].shape),), inputs[0].shape)]


def _slice(run: _Interpreter, attrs, inputs, op) -> list[Value]:
    source, starts, ends = inputs
    if starts.ints is None or ends.ints is None:
        run.fail("a slice whose bounds are computed as it runs")
    shape = list(source.shape)
    kept = list(source.ints) if source.ints is not None else None
    for axis, start, end in zip(attrs["axes"], starts.ints, ends.ints):
        begin, stop, _ = slice(start, end).indices(shape[axis])
        shape[axis] = max(0, stop - begin)
        if kept is not None:
            kept = kept[begin:stop]
    for axis in sorted(attrs.get("decrease_axis", []), reverse=True):
        del shape[axis]
    return [Value(tuple(shape), tuple(kept) if kept is not None else None)]


def _combine(run: _Interpreter, attrs, inputs, op) -> list[Value]:
    return [Value((len(inputs),), parts=tuple(inputs))]


def _stack(run: _Interpreter, attrs, inputs, op) -> list[Value]:
    parts = inputs[0].parts
    if len({p.shape for p in parts}) != 1:
        run.fail("a stack of tensors of different shapes")
    shape = list(parts[0].shape)
    shape.insert(attrs["axis"] % (len(shape) + 1), len(parts))
    scalars = all(p.ints is not None and len(p.ints) == 1 for p in parts)
    return [Value(tuple(shape), tuple(p.ints[0] for p in parts) if scalars else None)]


def _concat(run: _Interpreter, attrs, inputs, op) -> list[Value]:
    parts, axis = inputs[0].parts, inputs[1].ints[0]
    rank = len(parts[0].shape)
    axis %= rank
    if any(
        len(p.shape) != rank
        or p.shape[:axis] + p.shape[axis + 1 :] != parts[0].shape[:axis] + parts[0].shape[axis + 1 :]
        for p in parts
    ):
        run.fail("a concat of tensors that do not fit together")
    shape = list(parts[0].shape)
    shape[axis] = sum(p.shape[axis] for p in parts)
    return [Value(tuple(shape))]


def _reshape(run: _Interpreter, attrs, inputs, op) -> list[Value]:
    source, target = inputs
    if target.ints is None:
        run.fail("a reshape to a shape computed as it runs")
    shape = [source.shape[i] if d == 0 else d for i, d in enumerate(target.ints)]
    if shape.count(-1) == 1:
        known = math.prod(d for d in shape if d != -1)
        shape[shape.index(-1)] = source.elements // known if known else 0
    if math.prod(shape) != source.elements or any(d < 0 for d in shape):
        run.fail(f"a reshape of {list(source.shape)} to {list(target.ints)}")
    return [Value(tuple(shape))]


def _flatten(run: _Interpreter, attrs, inputs, op) -> list[Value]:
    shape = inputs[0].shape
    start, stop = attrs["start_axis"] % len(shape), attrs["stop_axis"] % len(shape)
    return [Value(shape[:start] + (math.prod(shape[start : stop + 1]),) + shape[stop + 1 :])]


def _add(run: _Interpreter, attrs, inputs, op) -> list[Value]:
    return [Value(_broadcast(run, inputs[0].shape, inputs[1].shape))]


def _broadcast(run: _Interpreter, a: tuple, b: tuple) -> tuple:
    a, b = (1,) * (len(b) - len(a)) + a, (1,) * (len(a) - len(b)) + b
    if any(x != y and 1 not in (x, y) for x, y in zip(a, b)):
        run.fail(f"tensors of {list(a)} and {list(b)} that do not broadcast")
    return tuple(max(x, y) for x, y in zip(a, b))


def _matmul(run: _Interpreter, attrs, inputs, op) -> list[Value]:
    x, y = (list(v.shape) for v in inputs)
    if len(x) < 2 or len(y) < 2:
        run.fail("a matrix product of vectors")
    if attrs["transpose_x"]:
        x[-2], x[-1] = x[-1], x[-2]
    if attrs["transpose_y"]:
        y[-2], y[-1] = y[-1], y[-2]
    if x[-1] != y[-2]:
        run.fail(f"a matrix product of {x} and {y}")
    batch = _broadcast(run, tuple(x[:-2]), tuple(y[:-2]))
    run.macs += math.prod(batch) * x[-2] * x[-1] * y[-1]
    return [Value(batch + (x[-2], y[-1]))]


def _conv2d(run: _Interpreter, attrs, inputs, op) -> list[Value]:
    (n, c, h, w), (out, per_group, kh, kw) = inputs[0].shape, inputs[1].shape
    pads, strides, dilations, groups = attrs["paddings"], attrs["strides"], attrs["dilations"], attrs["groups"]
    if attrs["padding_algorithm"] != "EXPLICIT" or attrs["data_format"] != "NCHW" or len(pads) != 2:
        run.fail("a convolution of a kind no network here has")
    if groups < 1 or c != per_group * groups or out % groups:
        run.fail(f"a convolution of {c} channels with {list(inputs[1].shape)} weights in {groups} groups")
    size = [_window(run, x, k, p, s, d) for x, k, p, s, d in zip((h, w), (kh, kw), pads, strides, dilations)]
    run.macs += n * out * size[0] * size[1] * per_group * kh * kw
    return [Value((n, out, *size))]


def _pool2d(run: _Interpreter, attrs, inputs, op) -> list[Value]:
    n, c, h, w = inputs[0].shape
    kernel = inputs[1].ints
    if kernel is None or len(kernel) != 2 or attrs["padding_algorithm"] != "EXPLICIT" or attrs["data_format"] != "NCHW":
        run.fail("a pooling of a kind no network here has")
    if attrs["global_pooling"]:
        return [Value((n, c, 1, 1))]
    if attrs["adaptive"]:
        if not all(0 < k <= x for k, x in zip(kernel, (h, w))):
            run.fail(f"an adaptive pooling of {[h, w]} to {list(kernel)}")
        return [Value((n, c, *kernel))]
    ceil = attrs["ceil_mode"]
    size = [
        _window(run, x, k, p, s, 1, ceil) for x, k, p, s in zip((h, w), kernel, attrs["paddings"], attrs["strides"])
    ]
    return [Value((n, c, *size))]


def _window(run: _Interpreter, size: int, kernel: int, pad: int, stride: int, dilation: int, ceil: bool = False) -> int:
    """How many places a window fits along one axis, as paddle's convolutions and poolings count them."""
    if not (0 < kernel and 0 <= pad <= kernel and 0 < stride and 0 < dilation):
        run.fail(f"a window of {kernel} with padding {pad}, stride {stride}, dilation {dilation}")
    span = size + 2 * pad - (dilation * (kernel - 1) + 1)
    if span < 0:
        run.fail(f"a window of {kernel} over {size} values")
    return (-(-span // stride) if ceil else span // stride) + 1


RULES = {
    "p": _parameter,
    "1.data": _data,
    "1.fetch": _fetch,
    "1.relu": _same,
    "1.sigmoid": _same,
    "1.tanh": _same,
    "1.dropout": _same,
    "1.batch_norm_": _same,
    "1.full": _full,
    "1.full_int_array": _full_int_array,
    "1.shape64": _shape64,
    "1.slice": _slice,
    "0.combine": _combine,
    "1.stack": _stack,
    "1.concat": _concat,
    "1.reshape": _reshape,
    "1.flatten": _flatten,
    "1.add": _add,
    "1.matmul": _matmul,
    "1.conv2d": _conv2d,
    "1.pool2d": _pool2d,
}
