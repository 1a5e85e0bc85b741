"""Hostile and broken files, each in a subprocess under an address-space limit: one line naming the file
and the problem, exit code 1, memory proportional to what the file really holds, no hang, no crash."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from paddle_mnist import checkpoint, rundir, safe_pickle
from paddle_mnist.data import cache, splits
from paddle_mnist.testing import hostile
from paddle_mnist.testing.hostile import run_limited

from fixtures import plant


def data_show(path, tmp_path, **kwargs):
    return run_limited(
        ["-m", "paddle_mnist", "data", "show", "--data", str(path), "--out", str(tmp_path / "g.png")], **kwargs
    )


def assert_one_line(outcome, *fragments):
    assert outcome.returncode == 1, (outcome.returncode, outcome.stderr[-3000:])
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- data files -------------------------------------------------------------------------


def test_valid_json_of_many_blank_images_costs_memory_in_proportion(tmp_path):
    """~200 MB of text in a 180 KB gzip holds 63,693 real (blank) images: accepted, in a few hundred MB."""
    path = hostile.blank_images_json(tmp_path / "blank.json.gz")
    assert path.stat().st_size < 400_000
    outcome = data_show(path, tmp_path, limit_mb=2048)
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    # ~840 MB measured (~950 when matplotlib first builds its font cache); the old reader needed 5.7 GB
    assert outcome.peak_rss_mb < 1300, outcome.peak_rss_mb


@pytest.mark.parametrize(
    "repeat, fragment",
    [
        (4, "not in the tutorial's layout of plain decimal numbers (no JSON in it)"),  # 256 MB of spaces
        (80, "decompresses to more than 1,073,741,824 bytes"),  # 5 GB of spaces
    ],
)
def test_whitespace_bombs_are_refused_in_bounded_memory(tmp_path, repeat, fragment):
    path = hostile.gzip_members(tmp_path / "space.json.gz", b" " * (64 << 20), repeat)
    outcome = data_show(path, tmp_path, limit_mb=1024)
    assert_one_line(outcome, str(path), fragment)
    assert outcome.peak_rss_mb < 600, outcome.peak_rss_mb


@pytest.mark.parametrize(
    "make, fragment",
    [
        (hostile.deep_nesting_json, "arrays nested far deeper than the tutorial's 4 levels"),
        (hostile.huge_number_json, "a number JSON cannot hold"),
    ],
)
def test_pathological_json_is_one_line(tmp_path, make, fragment):
    path = make(tmp_path / "bad.json.gz")
    outcome = data_show(path, tmp_path, limit_mb=1024)
    assert_one_line(outcome, str(path), fragment)
    assert outcome.peak_rss_mb < 600, outcome.peak_rss_mb


def test_idx_header_is_checked_before_reading(tmp_path):
    directory = hostile.idx_claiming_billions(tmp_path / "idx")
    outcome = data_show(directory, tmp_path, limit_mb=1024)
    assert_one_line(outcome, "train-images-idx3-ubyte", "header announces 2147483647 images")
    assert outcome.peak_rss_mb < 600


def test_empty_splits_are_refused_before_training(tmp_path):
    from paddle_mnist.testing.data_files import json_payload, random_splits, write_json

    payload = json_payload(random_splits(sizes={"train": 1, "valid": 2, "eval": 2}))
    payload[0] = [[], []]
    path = write_json(tmp_path / "empty.json.gz", payload)
    outcome = run_limited(["-m", "paddle_mnist", "train", "--data", str(path), "--out", str(tmp_path / "o")])
    assert_one_line(outcome, str(path), "the train split holds no images")


# --- the cache is untrusted too -----------------------------------------------------------


@pytest.fixture
def cached(tmp_path):
    from paddle_mnist.testing.data_files import json_payload, random_splits, write_json

    source = write_json(tmp_path / "m.json.gz", json_payload(random_splits()))
    splits.load(source)
    return source, cache.path_for(cache.content_key([source]))


def test_fifo_at_the_cache_path_does_not_hang(cached):
    """In a subprocess with a deadline: a regression would hang that process, not the suite."""
    source, path = cached
    path.unlink()
    os.mkfifo(path)
    outcome = run_limited(
        [
            "-c",
            f"from paddle_mnist.data import splits; print(len(splits.load({str(source)!r}).splits['train'].pixels))",
        ],
        limit_mb=1024,
        timeout=60,
        env={"PADDLE_MNIST_CACHE": str(path.parent)},
    )
    assert outcome.returncode == 0 and outcome.stdout.strip() == "12", (outcome.returncode, outcome.stderr[-2000:])
    assert "a FIFO (named pipe), not a regular file" in outcome.stderr and path.is_file()
    assert outcome.peak_rss_mb < 600


def test_compressed_npz_bomb_and_poisoned_labels_are_rebuilt(cached, tmp_path, capsys):
    source, path = cached
    key = np.array(cache.content_key([source]))
    bomb = {"key": key, "train_pixels": np.zeros((2_000_000, 28, 28), np.uint8)}  # 1.5 GB, compressed to ~1.5 MB
    np.savez_compressed(path, **bomb)
    outcome = run_limited(
        ["-c", f"from paddle_mnist.data import splits; splits.load({str(source)!r})"],
        limit_mb=1024,
        env={"PADDLE_MNIST_CACHE": str(path.parent)},
    )
    assert outcome.returncode == 0 and "compressed members" in outcome.stderr, outcome.stderr[-2000:]
    assert outcome.peak_rss_mb < 600
    capsys.readouterr()
    arrays = {k: v for k, v in np.load(path).items() if k not in ("key", "digest")}
    arrays["eval_class_ids"] = np.full_like(arrays["eval_class_ids"], 12)
    np.savez(path, key=key, digest=np.array(cache.arrays_digest(arrays)), **arrays)  # a matching digest, even
    assert splits.load(source).splits["eval"].class_ids.max() <= 9
    assert "class id above 9" in capsys.readouterr().err


def test_a_cache_whose_labels_were_rewritten_is_rebuilt(cached, capsys):
    """Labels that are valid but not the source's (all 7): the cache's digest of its arrays catches them."""
    source, path = cached
    arrays = dict(np.load(path))
    arrays["train_class_ids"] = np.full_like(arrays["train_class_ids"], 7)
    np.savez(path, **arrays)
    data = splits.load(source)
    from paddle_mnist.testing.data_files import random_splits

    np.testing.assert_array_equal(data.splits["train"].class_ids, random_splits()["train"][1])
    assert "its arrays do not match their digest: truncated or edited" in capsys.readouterr().err


# --- checkpoints and metadata -----------------------------------------------------------------


def predict(model_dir, tmp_path, *extra):
    picture = tmp_path / "digit.png"
    if not picture.exists():
        from PIL import Image

        pixels = np.zeros((28, 28), np.uint8)
        pixels[6:22, 12:16] = 255
        Image.fromarray(pixels).save(picture)
    return run_limited(["-m", "paddle_mnist", "predict", str(picture), "--model-dir", str(model_dir), *extra])


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (hostile.MEMO_BOMB, "weights do not fit the model: missing"),
        (hostile.NDARRAY_BOMB, "refused to load: it calls numpy.ndarray directly"),
        (hostile.ZERO_STRIDE, "refused to load: it holds an array of dtype |V0"),
        (hostile.DEEP_TUPLE_KEY, "refused to load: it nests tuples more than 32 deep"),
        (
            pickle.dumps({10**5000: np.zeros(1, np.float32)}, protocol=2),
            "refused to load: it holds an integer of 16,610 bits",
        ),
        (pickle.dumps({2**40: np.zeros(1, np.float32)}, protocol=2), "has a key 1099511627776 that is not a name"),
        (b"\x80\x02" + b"(" * (50 << 20), "more containers and memo entries than a state dict of its size holds"),
        (b"\x80\x02" + b"}" * (10 << 20), "more containers and memo entries than a state dict of its size holds"),
    ],
    ids=[
        "memo index",
        "ndarray allocation",
        "zero-stride view",
        "deep tuple key",
        "5000-digit key",
        "integer key",
        "50 MB of MARK",
        "10 MB of EMPTY_DICT",
    ],
)
def test_crafted_state_files_cost_no_memory_and_never_crash(tiny_model_dir, tmp_path, payload, fragment):
    model_dir = tiny_model_dir()
    path = plant(model_dir, "best", payload)
    outcome = predict(model_dir, tmp_path)
    assert_one_line(outcome, str(path), fragment)
    assert outcome.peak_rss_mb < 900 and outcome.seconds < 60, (outcome.peak_rss_mb, outcome.seconds)


@pytest.mark.parametrize("kind", ["link to /dev/zero", "fifo"])
def test_weights_must_be_regular_files_of_the_run(tiny_model_dir, tmp_path, kind):
    model_dir = tiny_model_dir()
    path = model_dir / rundir.read(model_dir).file_names["last"]
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)
    fragment = "not a regular file" if kind == "fifo" else "a symbolic link"
    outcome = predict(model_dir, tmp_path, "--weights", "last")
    assert_one_line(outcome, str(path), fragment)
    resume = run_limited(
        hostile.train_command(tmp_path / "learnable.json.gz", model_dir, "--resume"),
        timeout=60,
    )
    assert_one_line(resume, str(path), fragment)
    assert max(outcome.peak_rss_mb, resume.peak_rss_mb) < 900 and resume.seconds < 60


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("outputs", 1_000_000, "'outputs' must be 10 for the cross_entropy loss, got 1000000"),
        ("loss", "hinge", "'loss' must be one of cross_entropy, mse, mse_onehot, softmax_twice, got \"hinge\""),
        ("classes", ["a"], "'classes' must be a list of 10 class names"),
        (
            "normalization",
            {"name": "pixel/256", "scale": "x", "offset": 0},
            "'normalization' must be pixel/256's scale",
        ),
        (
            "weights",
            {"last": "/dev/zero", "best": "b", "optimizer": "o"},
            "'weights' must be file names inside the run",
        ),
        ("epochs_done", -3, "'epochs_done' must be an integer of 0 or more, got -3"),
    ],
)
def test_metadata_is_validated_before_anything_is_built(tiny_model_dir, tmp_path, field, value, fragment):
    model_dir = tiny_model_dir()
    meta = json.loads((model_dir / rundir.METADATA).read_text())
    meta[field] = value
    (model_dir / rundir.METADATA).write_text(json.dumps(meta))
    outcome = predict(model_dir, tmp_path)
    assert_one_line(outcome, str(model_dir / rundir.METADATA), fragment)
    assert outcome.peak_rss_mb < 900


def test_non_finite_and_mistyped_weights_are_refused(tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir()
    state = checkpoint.load_state(model_dir / "mnist.pdparams")
    cases = [
        ({"body.0.weight": np.full_like(state["body.0.weight"], np.nan)}, "'body.0.weight' holds NaN or infinite"),
        ({"body.0.weight": np.full_like(state["body.0.weight"], -np.inf)}, "'body.0.weight' holds NaN or infinite"),
        (
            {"body.0.weight": state["body.0.weight"].astype(np.float64)},
            "body.0.weight is float64, the model expects float32",
        ),
        ({"body.0.weight": "hello"}, "body.0.weight is a str, expected an array"),
    ]
    for change, fragment in cases:
        path = plant(model_dir, "best", pickle.dumps(dict(state, **change), protocol=2))
        outcome = predict(model_dir, tmp_path)
        assert_one_line(outcome, str(path), fragment)
        assert outcome.peak_rss_mb < 900


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_what_paddle_save_writes_loads(protocol, tmp_path):
    import paddle

    from paddle_mnist import models

    model = models.build("cnn", 10)
    path = tmp_path / "w.pdparams"
    paddle.save(model.state_dict(), str(path), protocol=protocol)
    state = checkpoint.load_state(path)
    for name, tensor in model.state_dict().items():
        np.testing.assert_array_equal(state[name], tensor.numpy())


def test_safe_pickle_never_calls_what_it_was_not_given():
    class Boom:
        def __reduce__(self):
            return (os.system, ("exit 3",))

    with pytest.raises(safe_pickle.Refused, match="posix.system"):
        safe_pickle.loads(pickle.dumps({"w": Boom()}))


# --- user mistakes that used to print tracebacks -----------------------------------------------


def test_a_file_name_that_is_not_utf8(data_file, tmp_path):
    odd = tmp_path / os.fsdecode(b"d\xffata.json.gz")
    odd.write_bytes(data_file.read_bytes())
    outcome = run_limited(
        [
            "-m",
            "paddle_mnist",
            "train",
            "--data",
            str(odd),
            "--model",
            "linear",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    assert "trained on " in outcome.stdout and "\\udcff" in outcome.stdout


def test_resume_after_the_best_weights_were_deleted(tiny_model_dir, data_file, tmp_path):
    model_dir = tiny_model_dir()
    best = model_dir / rundir.read(model_dir).file_names["best"]
    for path in (best, model_dir / "best.pdparams"):
        path.unlink()
    outcome = run_limited(
        hostile.train_command(data_file, model_dir, "--resume"),
    )
    assert_one_line(outcome, str(best), "no such file")


def test_export_under_a_file_and_a_corrupt_exported_model(tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir()
    (tmp_path / "file").write_text("x")
    outcome = run_limited(
        ["-m", "paddle_mnist", "export", "--model-dir", str(model_dir), "--out", str(tmp_path / "file" / "model")]
    )
    assert_one_line(outcome, "cannot write the exported model there")
    (model_dir / "inference").mkdir()
    (model_dir / "inference" / "mnist.json").write_text("garbage")
    (model_dir / "inference" / "mnist.pdiparams").write_bytes(b"x")
    assert_one_line(
        predict(model_dir, tmp_path, "--engine", "inference"), "not a program as paddle.jit.save writes one"
    )


# --- what --resume trusts -----------------------------------------------------------------------

ADAM = hostile.ADAM  # 300 training images: 6 steps an epoch, 12 in all


@pytest.fixture
def adam_run(data_file, tmp_path):
    from fixtures import train_cli

    out = tmp_path / "adam"
    train_cli("--data", data_file, "--out", out, *ADAM)
    return out, data_file


def resume(out, data_file):
    from fixtures import train_cli

    return train_cli("--data", data_file, "--out", out, *ADAM, "--resume")


def with_optimizer_state(out, change):
    """Plant ``change(state)`` as the run's optimizer state (its hash recorded, as its owner could)."""
    state = checkpoint.load_state(out / rundir.read(out).file_names["optimizer"])
    return plant(out, "optimizer", checkpoint.save_state_bytes(change(state)))


without, scheduler = hostile.without, hostile.scheduler


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda state: {}, "lacks 'body.0.weight_moment1_0': the Adam optimizer keeps it for every parameter"),
        (without("body.4.bias_moment2_0"), "lacks 'body.4.bias_moment2_0'"),
        (
            lambda state: {**state, "body.0.weight_moment1_0": np.zeros(3, np.float32)},
            "'body.0.weight_moment1_0' is float32 [3], expected float32 [784, 256]",
        ),
        (
            lambda state: {**state, "body.2.bias_beta1_pow_acc_0": np.zeros(1, np.float64)},
            "'body.2.bias_beta1_pow_acc_0' is float64 [1], expected float32 [1]",
        ),
        (
            lambda state: {**state, "extra_velocity_0": np.zeros(1, np.float32)},
            "holds 'extra_velocity_0', which this run's Adam optimizer does not keep",
        ),
        (without("LR_Scheduler"), "its 'LR_Scheduler' must hold ['last_epoch', 'last_lr'], got none"),
        (scheduler(last_epoch="x"), "LR_Scheduler.last_epoch is 'x', expected 12 (the steps of the epochs saved)"),
        (scheduler(last_epoch=10**9), "LR_Scheduler.last_epoch is 1000000000, expected 12"),
        (scheduler(last_lr=-1.0), "LR_Scheduler.last_lr is -1.0, expected a number in 0..1e6"),
        (scheduler(extra=1), "its 'LR_Scheduler' must hold ['last_epoch', 'last_lr'], got ['extra', 'last_epoch'"),
    ],
    ids=[
        "empty",
        "a moment missing",
        "wrong shape",
        "wrong dtype",
        "an extra key",
        "no scheduler",
        "last_epoch a string",
        "last_epoch 10**9",
        "negative rate",
        "an extra scheduler field",
    ],
)
def test_resume_refuses_an_optimizer_state_that_is_not_this_optimizers(adam_run, change, fragment):
    out, data_file = adam_run
    path = with_optimizer_state(out, change)
    with pytest.raises(checkpoint.CheckpointError) as raised:
        resume(out, data_file)
    assert str(raised.value).startswith(f"{path}: ") and fragment in str(raised.value), str(raised.value)


def test_resume_refusals_through_the_command(adam_run, tmp_path):
    """The 9-byte memo-index pickle (an empty dict whose hash matches) used to resume with rc 0 and
    restart Adam's moments without a word."""
    out, data_file = adam_run
    assert resume(out, data_file).epochs_done == 2  # the state as saved resumes
    path = plant(out, "optimizer", hostile.MEMO_BOMB)
    outcome = run_limited(
        ["-m", "paddle_mnist", "train", "--data", str(data_file), "--out", str(out), *ADAM, "--resume"]
    )
    assert_one_line(outcome, str(path), "lacks 'body.0.weight_moment1_0'")


# --- huge integers -----------------------------------------------------------------------------------


def test_a_5000_digit_integer_in_the_metadata_is_one_line(tiny_model_dir, data_file, tmp_path):
    model_dir = tiny_model_dir()
    meta = model_dir / rundir.METADATA
    meta.write_text(meta.read_text().replace('"epochs_done": 1', '"epochs_done": ' + "9" * 5000))
    fragment = f"{meta}: not valid JSON (an integer of more than 4,300 digits)"
    train = hostile.train_command(data_file, model_dir)
    for command in (["-m", "paddle_mnist", "export", "--model-dir", str(model_dir)], train + ["--resume"]):
        assert_one_line(run_limited(command), fragment)
    assert_one_line(predict(model_dir, tmp_path), fragment)
    fresh = run_limited(train)  # over a run it cannot read: refused all the same, without a traceback
    assert_one_line(fresh, f"{model_dir}: already holds a run; continue it with --resume")


# --- what predict is handed ---------------------------------------------------------------------------


def test_predict_names_what_a_path_is_when_it_is_no_file(tiny_model_dir, tmp_path):
    import socket

    model_dir = tiny_model_dir()
    (tmp_path / "a-dir").mkdir()
    os.mkfifo(tmp_path / "a-fifo")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "a-socket"))
    outcome = run_limited(
        [
            "-m",
            "paddle_mnist",
            "predict",
            str(tmp_path / "a-dir"),
            str(tmp_path / "a-fifo"),
            "/dev/zero",
            str(tmp_path / "a-socket"),
            "--model-dir",
            str(model_dir),
        ],
        timeout=60,
    )
    listener.close()
    assert outcome.returncode == 1 and outcome.stdout == ""
    assert outcome.stderr.splitlines() == [
        f"paddle-mnist predict: error: {tmp_path / 'a-dir'}: a directory",
        f"paddle-mnist predict: error: {tmp_path / 'a-fifo'}: a FIFO (named pipe), not a regular file",
        "paddle-mnist predict: error: /dev/zero: a character device, not a regular file",
        f"paddle-mnist predict: error: {tmp_path / 'a-socket'}: a socket, not a regular file",
    ]


def test_a_newline_in_a_file_name_cannot_forge_a_line(tiny_model_dir, tmp_path):
    from PIL import Image

    model_dir = tiny_model_dir()
    pixels = np.zeros((28, 28), np.uint8)
    pixels[6:22, 12:16] = 255
    forged = tmp_path / "x.png: 7 (p=1.000) top-1: 7 1.000\nreal.png"
    Image.fromarray(pixels).save(forged, "PNG")
    (tmp_path / "gone\nnext.png").write_bytes(b"not an image")
    outcome = run_limited(
        ["-m", "paddle_mnist", "predict", str(forged), str(tmp_path / "gone\nnext.png"), "--model-dir", str(model_dir)]
    )
    [line] = outcome.stdout.splitlines()
    assert line.startswith(f"{tmp_path}/x.png: 7 (p=1.000) top-1: 7 1.000\\nreal.png: ")
    assert outcome.stderr.splitlines() == [
        f"paddle-mnist predict: error: {tmp_path}/gone\\nnext.png: not an image (Pillow cannot identify it)"
    ]


def test_a_float_picture_with_an_infinite_pixel_says_so(tiny_model_dir, tmp_path):
    from PIL import Image

    model_dir = tiny_model_dir()
    values = np.full((40, 40), 1.0, np.float32)
    values[10:30, 18:22] = 0.0
    values[0, 0] = np.inf
    Image.fromarray(values, mode="F").save(tmp_path / "float.tiff")
    outcome = predict_file(model_dir, tmp_path / "float.tiff")
    assert_one_line(outcome, f"{tmp_path / 'float.tiff'}: holds 1 NaN or infinite pixel values")


def predict_file(model_dir, path):
    return run_limited(["-m", "paddle_mnist", "predict", str(path), "--model-dir", str(model_dir)])
