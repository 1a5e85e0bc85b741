"""Property tests: whatever bytes the readers are given, they return a result or raise a one-line
``UserError``; never another exception, a crash or memory out of proportion.  Each target runs a
fixed number of examples (a few seconds in CI); ``--hypothesis-seed`` reproduces a failure."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paddle_mnist import checkpoint, rundir, safe_pickle
from paddle_mnist.data import idx, tutorial_json
from paddle_mnist.errors import UserError
from paddle_mnist.testing.data_files import json_payload, random_splits

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


def one_line(error: Exception) -> bool:
    return isinstance(error, UserError) and "\n" not in str(error)


def mutated(base: bytes):
    """``base`` with a few bytes replaced, inserted or deleted: near-valid input, where parsers break."""
    edits = st.lists(
        st.tuples(
            st.sampled_from(["replace", "insert", "delete"]),
            st.integers(0, max(len(base) - 1, 0)),
            st.binary(min_size=1, max_size=4),
        ),
        min_size=1,
        max_size=4,
    )

    def apply(changes):
        data = bytearray(base)
        for kind, at, chunk in changes:
            at = min(at, len(data))
            if kind == "replace":
                data[at : at + len(chunk)] = chunk
            elif kind == "insert":
                data[at:at] = chunk
            else:
                del data[at : at + len(chunk)]
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
@given(
    st.one_of(
        mutated(IDX_IMAGES),
        st.binary(max_size=64),
        st.tuples(
            st.integers(-(2**31), 2**31 - 1),
            st.integers(-(2**31), 2**31 - 1),
            st.integers(0, 64),
            st.integers(0, 64),
            st.binary(max_size=3200),
        ).map(lambda t: struct.pack(">iiii", 2051, t[0] % 5000 if t[1] % 2 else t[0], t[2], t[3]) + t[4]),
    ),
    st.booleans(),
)
def test_idx_image_reader(data, compress):
    check(idx.read_images, gzip.compress(data) if compress else data)


@FUZZ
@given(st.one_of(mutated(IDX_LABELS), st.binary(max_size=32)), st.booleans())
def test_idx_label_reader(data, compress):
    check(idx.read_labels, gzip.compress(data) if compress else data)


def state_bytes(protocol: int) -> bytes:
    buffer = io.BytesIO()
    pickle.dump(
        {
            "fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
            "fc.bias": np.zeros(3, np.float32),
            "LR_Scheduler": {"last_epoch": 3, "last_lr": 0.1},
        },
        buffer,
        protocol=protocol,
    )
    return buffer.getvalue()


@FUZZ
@given(
    st.one_of(
        mutated(state_bytes(2)),
        mutated(state_bytes(4)),
        st.binary(max_size=120),
        st.binary(max_size=24).map(lambda chunk: b"\x80\x02" + chunk * 20_000),
    )
)
def fuzz_state_file_reader(data):
    check(checkpoint.load_state, data)


def test_state_file_reader_in_memory_in_proportion(tmp_path):
    """The fuzz of the state-file reader, near-valid files and repeated opcode runs of up to 480 KB among
    them, in a subprocess under RLIMIT_AS: a case that allocated far beyond its size would fail it."""
    from paddle_mnist.testing.hostile import run_limited

    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_fuzz; "
        "test_fuzz.fuzz_state_file_reader(); print('fuzzed')"
    )
    outcome = run_limited(["-c", code], limit_mb=1536, timeout=300, env={"HOME": str(tmp_path)})
    assert outcome.returncode == 0 and "fuzzed" in outcome.stdout, outcome.stderr[-3000:]
    assert outcome.peak_rss_mb < 900, outcome.peak_rss_mb


VALID_METADATA = {
    "format": 2,
    "model": "mlp",
    "loss": "cross_entropy",
    "outputs": 10,
    "label_dtype": "int64",
    "normalization": {"name": "pixel/256", "scale": 256.0, "offset": 0.0},
    "dataset": "mnist",
    "classes": [str(d) for d in range(10)],
    "data_source": "x",
    "epochs_done": 1,
    "seed": 0,
    "config": {},
    "metrics": {},
    "best_epoch": 1,
    "weights": {"last": "a", "best": "b", "optimizer": "c"},
    "files": {"a": "0" * 64},
    "paddle_version": "3",
    "history": [],
}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(
    st.dictionaries(st.sampled_from(sorted(VALID_METADATA)), JSON_VALUES, max_size=4),
    st.sets(st.sampled_from(sorted(VALID_METADATA)), max_size=2),
)
def test_metadata_schema(changes, removed):
    obj = {k: v for k, v in {**VALID_METADATA, **changes}.items() if k not in removed}
    try:
        info = rundir.RunInfo.from_json(obj, Path("mnist.json"))
    except UserError as e:
        assert one_line(e), repr(e)
    else:
        assert info.head_size == 10 and len(info.classes) == 10


def test_the_valid_examples_are_accepted():
    """The fuzzers start from inputs the readers accept: otherwise they would test only the error paths."""
    assert tutorial_json.read(in_temp_file(gzip.compress(TINY_JSON))).sizes == [2, 1, 1]
    assert idx.read_images(in_temp_file(IDX_IMAGES)).shape == (2, 28, 28)
    assert idx.read_labels(in_temp_file(IDX_LABELS)).tolist() == [1, 2, 9]
    assert checkpoint.load_state(in_temp_file(state_bytes(2)))["fc.weight"].shape == (2, 3)
    assert rundir.RunInfo.from_json(VALID_METADATA, Path("mnist.json")).model == "mlp"


# --- each refusal of the unpickler, by a payload crafted for it ---------------------------------------

RECONSTRUCT = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"  # an empty array
F4 = b"cnumpy\ndtype\nX\x02\x00\x00\x00f4\x89\x88\x87R"  # numpy.dtype("f4")


def array_with(state: bytes) -> bytes:
    """``{"w": <the empty array>}`` given ``state`` through BUILD, as numpy pickles an array."""
    return b"\x80\x02}X\x01\x00\x00\x00w" + RECONSTRUCT + state + b"bs."


class Reduces:
    """Pickles as ``function(*args)``."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize(
    "payload, message",
    [
        (
            pickle.dumps({"w": np.zeros(2, object)}, protocol=2),
            "it holds an array of dtype object, which no tensor has",
        ),
        (
            pickle.dumps({"w": Reduces(np.core.multiarray._reconstruct, np.ndarray, (5,), b"b")}, protocol=2),
            "it builds an array in a way paddle.save never does",
        ),
        (
            pickle.dumps({"w": Reduces(np.core.multiarray.scalar, np.dtype("f4"), b"\0\0")}, protocol=2),
            "it holds a float32 scalar of 2 bytes",
        ),
        (
            pickle.dumps({"w": Reduces(__import__("codecs").encode, "abc", "utf-8")}, protocol=2),
            "it calls _codecs.encode other than for protocol-2 bytes",
        ),
        (
            pickle.dumps({"w": Reduces(os.getcwd)}, protocol=2),
            "it refers to posix.getcwd, which no state dict contains",
        ),
        (b"\x80\x02cnumpy\ndtype\n)\x81.", "it constructs objects through an opcode paddle.save never writes"),
        (b"\x80\x02}}b.", "it sets the state of a dict"),
        (
            b"\x80\x02" + F4 + b"(K\x03X\x01\x00\x00\x00<}NNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb.",
            "it gives a dtype a structure paddle.save never writes",
        ),
        (array_with(b"(K\x01t"), "it gives an array a state paddle.save never writes"),
        (array_with(b"(K\x01J\xff\xff\xff\xff\x85" + F4 + b"\x89C\x00t"), "it gives an array the shape (-1,)"),
        (
            array_with(b"(K\x01K\x03\x85" + F4 + b"\x89C\x08" + bytes(8) + b"t"),
            "an array's data does not match its shape",
        ),
        (b"\x80\x02})" + b"\x85" * 40 + b"K\x01s.", "it nests tuples more than 32 deep"),
        (b"\x80\x02" + b"]" * 5_000 + b".", "more containers and memo entries than a state dict of its size holds"),
        (pickle.dumps({"w": 1 << 70}, protocol=2), "it holds an integer of 71 bits"),
    ],
    ids=[
        "object dtype",
        "reconstruct",
        "scalar bytes",
        "codecs",
        "global",
        "NEWOBJ",
        "BUILD a dict",
        "dtype state",
        "array state",
        "negative shape",
        "data and shape",
        "deep tuple",
        "containers",
        "big integer",
    ],
)
def test_each_refusal_of_the_unpickler(payload, message):
    """Every check of ``safe_pickle`` has a payload that only it stops: removing one fails its case here."""
    with pytest.raises(safe_pickle.Refused) as refused:
        safe_pickle.loads(payload)
    assert str(refused.value) == message or message in str(refused.value), str(refused.value)


def test_the_right_array_payload_loads():
    """The payloads above are one change away from what loads: the same array with its 12 bytes."""
    state = safe_pickle.loads(array_with(b"(K\x01K\x03\x85" + F4 + b"\x89C\x0c" + bytes(12) + b"t"))
    np.testing.assert_array_equal(state["w"], np.zeros(3, np.float32))
