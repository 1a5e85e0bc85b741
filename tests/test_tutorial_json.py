"""The gzip-JSON reader: the fast tokenizer agrees with the stdlib, and every bad file gets a one-line error."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from paddle_mnist.data import splits, tutorial_json
from paddle_mnist.errors import DataError
from paddle_mnist.testing.data_files import json_payload, random_splits, write_json


def load_arrays(path):
    data = splits.load(path, use_cache=False)
    return data, {k: (s.pixels, s.class_ids) for k, s in data.splits.items()}


def test_scanner_matches_stdlib(tmp_path):
    raw = random_splits()
    path = write_json(tmp_path / "m.json.gz", json_payload(raw))
    fast = tutorial_json.read(path)
    images, labels = tutorial_json._parse_stdlib(gzip.decompress(path.read_bytes()), path)
    np.testing.assert_array_equal(fast.images, np.concatenate(images).astype(np.float32))
    np.testing.assert_array_equal(fast.labels, np.concatenate(labels))
    assert fast.sizes == [12, 6, 6]


def test_blocks_cut_anywhere_give_the_same_arrays(tmp_path, monkeypatch):
    """A block boundary may fall inside a number, between brackets or in whitespace."""
    raw = random_splits()
    path = write_json(tmp_path / "m.json.gz", json_payload(raw), indent=1)
    whole = tutorial_json.read(path)
    for block in (7, 64, 1000, 4096):
        monkeypatch.setattr(tutorial_json, "BLOCK", block)
        cut = tutorial_json.read(path)
        np.testing.assert_array_equal(cut.images, whole.images)
        np.testing.assert_array_equal(cut.labels, whole.labels)


@pytest.mark.parametrize("dump_args", [{"separators": (",", ":")}, {"indent": 1}])
def test_other_json_layouts_load_the_same(tmp_path, dump_args):
    raw = random_splits()
    data, arrays = load_arrays(write_json(tmp_path / "m.json.gz", json_payload(raw), **dump_args))
    for name, (pixels, labels) in raw.items():
        np.testing.assert_array_equal(arrays[name][0], pixels)
        np.testing.assert_array_equal(arrays[name][1], labels)
    assert data.encoding.name == "pixel/256"


def test_exponent_notation_falls_back_to_stdlib(tmp_path):
    raw = random_splits()
    payload = json_payload(raw)
    text = json.dumps(payload).replace("0.00390625", "3.90625e-3")
    path = tmp_path / "m.json.gz"
    path.write_bytes(gzip.compress(text.encode()))
    assert "e-3" in text
    _, arrays = load_arrays(path)
    np.testing.assert_array_equal(arrays["train"][0], raw["train"][0])


@pytest.mark.parametrize(
    "scale, offset, name", [(255.0, 0.0, "pixel/255"), (127.5, -1.0, "[-1,1]"), (1.0, 0.0, "0..255")]
)
def test_other_normalisations_are_detected_not_misscaled(tmp_path, scale, offset, name):
    raw = random_splits()
    data, arrays = load_arrays(write_json(tmp_path / "m.json.gz", json_payload(raw, scale, offset)))
    assert data.encoding.name == name
    np.testing.assert_array_equal(arrays["valid"][0], raw["valid"][0])


def test_standardised_values_are_refused_with_their_range(tmp_path):
    raw = random_splits()
    payload = [[((p.reshape(len(p), -1) / 255 - 0.1307) / 0.3081).tolist(), y.tolist()] for p, y in raw.values()]
    path = write_json(tmp_path / "std.json.gz", payload)
    with pytest.raises(DataError, match=r"std\.json\.gz: pixel values span \[-0\.4242, 2\.82\d*\].*standardised"):
        splits.load(path, use_cache=False)


def good_payload():
    return json_payload(random_splits())


def corrupt(payload, edit):
    edit(payload)
    return payload


BAD_FILES = {
    "missing": (None, "no such file"),
    "not gzip": (b"[[[], []], [[], []], [[], []]]", "not a gzip file"),
    "truncated gzip": (lambda: gzip.compress(json.dumps(good_payload()).encode())[:-200], "truncated gzip"),
    "not json": (lambda: gzip.compress(b"[[[0.1, 0.2"), "not valid JSON"),
    "not utf8": (lambda: gzip.compress(b"\xff\xfe\x00"), "not JSON"),
    "top level dict": (lambda: gzip.compress(b'{"train": []}'), "expected a list of 3 splits.*got a JSON dict"),
    "two splits": (
        lambda: gzip.compress(json.dumps(good_payload()[:2]).encode()),
        "expected a list of 3 splits.*got a list of 2",
    ),
    "split not a pair": (
        lambda: gzip.compress(json.dumps(corrupt(good_payload(), lambda p: p[1].pop())).encode()),
        "the valid split is not a pair",
    ),
    "short image": (
        lambda: gzip.compress(json.dumps(corrupt(good_payload(), lambda p: p[0][0][3].pop())).encode()),
        "train image 3 has 783 values, expected 784",
    ),
    "string pixel": (
        lambda: gzip.compress(json.dumps(corrupt(good_payload(), lambda p: p[2][0][1].__setitem__(5, "x"))).encode()),
        "eval image 1 holds 'x'",
    ),
    "label 10": (
        lambda: gzip.compress(json.dumps(corrupt(good_payload(), lambda p: p[1][1].__setitem__(2, 10))).encode()),
        "valid label 2 is 10, expected an int in 0..9",
    ),
    "float label": (
        lambda: gzip.compress(json.dumps(corrupt(good_payload(), lambda p: p[0][1].__setitem__(0, 1.0))).encode()),
        "train label 0 is 1.0",
    ),
    "length mismatch": (
        lambda: gzip.compress(json.dumps(corrupt(good_payload(), lambda p: p[0][1].pop())).encode()),
        "the train split has 12 images but 11 labels",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_gives_one_line_error_naming_the_file(tmp_path, case):
    content, message = BAD_FILES[case]
    path = tmp_path / "bad.json.gz"
    if content is not None:
        path.write_bytes(content() if callable(content) else content)
    with pytest.raises(DataError, match=message) as info:
        tutorial_json.read(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_dumps_round_trips_through_the_parser(tmp_path):
    raw = random_splits(seed=3)
    text = tutorial_json.dumps([p for p, _ in raw.values()], [y for _, y in raw.values()])
    assert json.loads(text) == json_payload(raw)
