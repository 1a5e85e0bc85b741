"""Property tests: whatever bytes the readers are given, they return a result or raise a one-line
``UserError``; never another exception, a crash or memory out of proportion.  Each target runs a
fixed number of examples (a few seconds in CI); ``--hypothesis-seed`` reproduces a failure."""
from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures import json_payload, random_splits
from paddle_mnist import checkpoint, rundir
from paddle_mnist.data import idx, tutorial_json
from paddle_mnist.errors import UserError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.function_scoped_fixture])


def one_line(error: Exception) -> bool:
    return isinstance(error, UserError) and "\n" not in str(error)


def mutated(base: bytes):
    """``base`` with a few bytes replaced, inserted or deleted: near-valid input, where parsers break."""
    edits = st.lists(st.tuples(st.sampled_from(["replace", "insert", "delete"]),
                               st.integers(0, max(len(base) - 1, 0)), st.binary(min_size=1, max_size=4)),
                     min_size=1, max_size=4)

    def apply(changes):
        data = bytearray(base)
        for kind, at, chunk in changes:
            at = min(at, len(data))
            if kind == "replace":
                data[at:at + len(chunk)] = chunk
            elif kind == "insert":
                data[at:at] = chunk
            else:
                del data[at:at + len(chunk)]
        return bytes(data)
    return edits.map(apply)


def in_temp_file(data: bytes) -> Path:
    handle = tempfile.NamedTemporaryFile(delete=False, suffix=".bin")
    handle.write(data)
    handle.close()
    return Path(handle.name)


def check(read, data: bytes):
    path = in_temp_file(data)
    try:
        read(path)
    except UserError as e:
        assert one_line(e), repr(e)
    finally:
        path.unlink()


TINY_JSON = json.dumps(json_payload(random_splits(sizes={"train": 2, "valid": 1, "eval": 1}))).encode()
SYMBOLS = st.sampled_from([b"[", b"]", b",", b" ", b"0", b"7", b"0.5", b"-1", b"1e3", b"255", b"\n"])


@FUZZ
@given(st.one_of(mutated(TINY_JSON), st.lists(SYMBOLS, max_size=60).map(b"".join), st.binary(max_size=200)))
def test_tutorial_json_reader(text):
    check(tutorial_json.read, gzip.compress(text))


@settings(FUZZ, max_examples=50)
@given(mutated(TINY_JSON), st.integers(1, 64))
def test_tutorial_json_reader_at_any_block_size(text, block):
    original = tutorial_json.BLOCK
    tutorial_json.BLOCK = block
    try:
        check(tutorial_json.read, gzip.compress(text))
    finally:
        tutorial_json.BLOCK = original


IDX_IMAGES = struct.pack(">iiii", 2051, 2, 28, 28) + bytes(range(256)) * 6 + bytes(32)
IDX_LABELS = struct.pack(">ii", 2049, 3) + b"\x01\x02\x09"


@FUZZ
@given(st.one_of(mutated(IDX_IMAGES), st.binary(max_size=64),
                 st.tuples(st.integers(-2**31, 2**31 - 1), st.integers(-2**31, 2**31 - 1), st.integers(0, 64),
                           st.integers(0, 64), st.binary(max_size=3200))
                 .map(lambda t: struct.pack(">iiii", 2051, t[0] % 5000 if t[1] % 2 else t[0], t[2], t[3]) + t[4])),
       st.booleans())
def test_idx_image_reader(data, compress):
    check(idx.read_images, gzip.compress(data) if compress else data)


@FUZZ
@given(st.one_of(mutated(IDX_LABELS), st.binary(max_size=32)), st.booleans())
def test_idx_label_reader(data, compress):
    check(idx.read_labels, gzip.compress(data) if compress else data)


def state_bytes(protocol: int) -> bytes:
    buffer = io.BytesIO()
    pickle.dump({"fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "fc.bias": np.zeros(3, np.float32),
                 "LR_Scheduler": {"last_epoch": 3, "last_lr": 0.1}}, buffer, protocol=protocol)
    return buffer.getvalue()


@FUZZ
@given(st.one_of(mutated(state_bytes(2)), mutated(state_bytes(4)), st.binary(max_size=120)))
def test_state_file_reader(data):
    check(checkpoint.load_state, data)


VALID_METADATA = {
    "format": 2, "model": "mlp", "loss": "cross_entropy", "outputs": 10, "label_dtype": "int64",
    "normalization": {"name": "pixel/256", "scale": 256.0, "offset": 0.0}, "dataset": "mnist",
    "classes": [str(d) for d in range(10)], "data_source": "x", "epochs_done": 1, "seed": 0, "config": {},
    "metrics": {}, "best_epoch": 1, "weights": {"last": "a", "best": "b", "optimizer": "c"},
    "files": {"a": "0" * 64}, "paddle_version": "3", "history": [],
}
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                      max_size=4), max_leaves=12)


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(VALID_METADATA)), JSON_VALUES, max_size=4),
       st.sets(st.sampled_from(sorted(VALID_METADATA)), max_size=2))
def test_metadata_schema(changes, removed):
    obj = {k: v for k, v in {**VALID_METADATA, **changes}.items() if k not in removed}
    try:
        info = rundir.RunInfo.from_json(obj, Path("mnist.json"))
    except UserError as e:
        assert one_line(e), repr(e)
    else:
        assert info.outputs == 10 and len(info.classes) == 10


def test_the_valid_examples_are_accepted():
    """The fuzzers start from inputs the readers accept: otherwise they would test only the error paths."""
    assert tutorial_json.read(in_temp_file(gzip.compress(TINY_JSON))).sizes == [2, 1, 1]
    assert idx.read_images(in_temp_file(IDX_IMAGES)).shape == (2, 28, 28)
    assert idx.read_labels(in_temp_file(IDX_LABELS)).tolist() == [1, 2, 9]
    assert checkpoint.load_state(in_temp_file(state_bytes(2)))["fc.weight"].shape == (2, 3)
    assert rundir.RunInfo.from_json(VALID_METADATA, Path("mnist.json")).model == "mlp"
