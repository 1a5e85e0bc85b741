"""Crafted Paddle Inference programs: a real export's PIR JSON (``PREFIX.json``) edited as someone handing
over a run could, each into a program a real export never is (issue 30, case 5, for Paddle Inference).
Each attack takes the program's operators (block 0, edited in place); ``craft`` applies one to a file."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path


def _tensor(dims: list, dtype: str = "0.t_f32") -> dict:
    return {"#": "0.t_dtensor", "D": [{"#": dtype}, dims, "NCHW", [], 0]}


def _attribute(name: str, kind: str, value) -> dict:
    return {"AT": {"#": kind, "D": value}, "N": name}


def _placed(dtype: str) -> tuple:
    return _attribute("dtype", "1.a_dtype", dtype), _attribute("place", "1.a_place", [0, 0, ""])


def _ints(values: list) -> dict:
    return {"#": "0.a_array", "D": [{"#": "0.a_i64", "D": v} for v in values]}


class _Editor:
    """Adds operators that read the image and hands their result to whatever read the image before."""

    def __init__(self, ops: list):
        self.ops = ops
        self.next_id = 1 + max(out["%"] for op in ops for out in _outputs(op))
        self.data_at = next(i for i, op in enumerate(ops) if op["#"] == "1.data")
        self.image = _outputs(ops[self.data_at])[0]["%"]
        self.added: list = []

    def op(self, name: str, inputs: list, dims: list, attributes: tuple = ()) -> int:
        value, self.next_id = self.next_id, self.next_id + 1
        self.added.append(
            {
                "#": name,
                "A": list(attributes),
                "I": [{"%": i} for i in inputs],
                "O": [{"%": value, "TT": _tensor(dims)}],
            }
        )
        return value

    def full_int_array(self, values: list) -> int:
        value = _attribute("value", "0.a_array", _ints(values)["D"])
        return self.op("1.full_int_array", [], [len(values)], (value, *_placed("int64")))

    def full(self, dims: list, value: float) -> int:
        attributes = (_attribute("shape", "1.a_intarray", dims), _attribute("value", "0.a_f64", value))
        return self.op("1.full", [], dims, (*attributes, *_placed("float32")))

    def feed_image_from(self, value: int) -> None:
        """Every operator that read the image reads ``value``; the added operators go right after the input."""
        for op in self.ops:
            for ref in op.get("I", []):
                if ref.get("%") == self.image:
                    ref["%"] = value
        for op in self.added:  # the added operators themselves still read the image
            for ref in op["I"]:
                if ref["%"] == value:
                    ref["%"] = self.image
        self.ops[self.data_at + 1 : self.data_at + 1] = self.added


def _outputs(op: dict) -> list:
    return op["O"] if isinstance(op["O"], list) else [op["O"]]


def while_loop(ops: list) -> None:
    """A ``while`` around nothing, as control flow in a program looks."""
    ops.insert(0, {"#": "1.while", "A": [], "I": [], "O": [], "regions": [{"#": "region_1", "blocks": []}]})


def big_constant(ops: list) -> None:
    """A constant of 24,000 x 24,000 floats (2.3 GB) added to the image."""
    edit = _Editor(ops)
    big = edit.full([24_000, 24_000], 0.0)
    edit.feed_image_from(edit.op("1.add", [edit.image, big], [-1, 1, 28, 28]))


def huge_padding(ops: list) -> None:
    """The first convolution padded by 3,000 on each side: 6,028 x 6,028 places per channel."""
    conv = next(op for op in ops if op["#"] == "1.conv2d")
    for attribute in conv["A"]:
        if attribute["N"] == "paddings":
            attribute["AT"]["D"] = [{"#": "0.a_i32", "D": 3000}] * 2


def squared_batch(ops: list) -> None:
    """The image as a row plus the image as a column: (784 N)^2 values, squared in the batch."""
    edit = _Editor(ops)
    row = edit.op("1.reshape", [edit.image, edit.full_int_array([1, -1])], [1, -1])
    column = edit.op("1.reshape", [edit.image, edit.full_int_array([-1, 1])], [-1, 1])
    edit.op("1.add", [row, column], [-1, -1])
    edit.feed_image_from(edit.image)


def wrong_input(ops: list) -> None:
    """A [N,3,32,32] input (a CIFAR network's)."""
    data = next(op for op in ops if op["#"] == "1.data")
    next(a for a in data["A"] if a["N"] == "shape")["AT"]["D"] = [-1, 3, 32, 32]


def thousand_classes(ops: list) -> None:
    """The last linear layer declared with 1,000 outputs."""
    weights, bias = [op for op in ops if op["#"] == "p"][1::-1]  # jit.save lists the last layer's first
    weights["O"]["TT"]["D"][1][-1] = bias["O"]["TT"]["D"][1][0] = 1000


ATTACKS = {
    "a while loop": while_loop,
    "a constant of 2.3 GB": big_constant,
    "a convolution padded by 3,000": huge_padding,
    "a tensor squared in the batch": squared_batch,
    "a [N,3,32,32] input": wrong_input,
    "1,000 classes": thousand_classes,
}


def craft(prefix: Path, attack: str) -> None:
    """Edit the export under ``prefix`` by ``attack``: one of ``ATTACKS`` on its program, or ``NAN_WEIGHTS``."""
    if attack == NAN_WEIGHTS:
        _poison(Path(f"{prefix}.pdiparams"))
        return
    program_file = Path(f"{prefix}.json")
    program = json.loads(program_file.read_text())
    ATTACKS[attack](program["program"]["regions"][0]["blocks"][0]["ops"])
    program_file.write_text(json.dumps(program))


NAN_WEIGHTS = "NaN weights"  # a program as exported, and parameters that make every output NaN


def _poison(params_file: Path) -> None:
    """The last parameter's last 4 KB (a bias, or a row of weights) set to NaN: the program still passes."""
    data = bytearray(params_file.read_bytes())
    data[-4096:] = struct.pack("<f", math.nan) * 1024
    params_file.write_bytes(bytes(data))
