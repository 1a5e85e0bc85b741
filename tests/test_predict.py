"""The predictor: realistic pictures, the API's input forms, bad input, malicious weights, export parity."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from paddle_mnist import checkpoint, export, photos, rendering, rundir
from paddle_mnist.errors import UserError
from paddle_mnist.predict import Predictor

from fixtures import plant, run_python


def run_predict(*args):
    return run_python("-m", "paddle_mnist.predict", *args)


# --- with a model trained on real MNIST ---------------------------------------


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory, trained_dir, shared_eval):
    digits, labels = shared_eval.pixels[:90], shared_eval.class_ids[:90]
    return photos.write_set(digits, labels, tmp_path_factory.mktemp("photos"), seed=1)


def test_realistic_pictures_need_the_real_preprocessing(trained_dir, photo_set):
    predictor = Predictor.from_dir(trained_dir)
    default = photos.accuracy_by_style(predictor, photo_set, naive=False)
    naive = photos.accuracy_by_style(predictor, photo_set, naive=True)
    assert default["all"] >= 0.9, default
    assert naive["all"] <= 0.5, naive
    for style in photos.STYLES:
        assert default[style] > naive[style], (style, default, naive)


def test_inputs_of_every_form_in_one_forward_pass(trained_dir, photo_set):
    predictor = Predictor.from_dir(trained_dir)
    calls = []
    engine = predictor.forward
    predictor = replace(predictor, forward=lambda batch: calls.append(batch.shape) or engine(batch))
    path, label, _ = photo_set[0]
    image = Image.open(path)
    gray = np.asarray(image.convert("L"))
    items = [str(path), image, gray, gray / 255.0, Path(path)]
    results = predictor.predict(items)
    assert calls == [(5 * len(predictor.plan(image).pixels), 1, 28, 28)]  # each item's pieces, one pass
    assert {r.digit for r in results} == {label}
    single = predictor.predict(str(path), topk=5)
    assert single.digit == label and len(single.topk) == 5 and single.topk[0][0] == label
    assert 0.5 < single.probability <= 1


def test_cli_lines_json_and_exit_codes(trained_dir, photo_set, tmp_path):
    (path, label, _), (path2, label2, _) = photo_set[:2]
    ok = run_predict(path, path2, "--model-dir", trained_dir)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{path}: {label} (p=") and "top-3:" in lines[0]
    blank = tmp_path / "blank.png"
    Image.new("L", (300, 200), 235).save(blank)
    mixed = run_predict(blank, tmp_path / "missing.jpg", path, "--model-dir", trained_dir, "--json")
    assert mixed.returncode == 1
    rows = [json.loads(line) for line in mixed.stdout.strip().splitlines()]
    assert rows[0]["error"].startswith(f"{blank}: no digit found")
    assert rows[1]["error"] == f"{tmp_path / 'missing.jpg'}: no such file"
    assert rows[2]["digit"] == label and len(rows[2]["topk"]) == 3, "every image is still attempted"
    assert "Traceback" not in mixed.stderr and len(mixed.stderr.strip().splitlines()) == 2


def test_export_matches_the_dynamic_model(trained_dir, photo_set):
    difference = export.export(trained_dir, trained_dir / "inference" / "mnist")
    assert difference <= 1e-5
    paths = [str(p) for p, _, _ in photo_set[:12]]
    dynamic = Predictor.from_dir(trained_dir).predict(paths)
    static = Predictor.from_dir(trained_dir, engine="inference").predict(paths)
    assert [r.digit for r in dynamic] == [r.digit for r in static]
    np.testing.assert_allclose([r.probability for r in dynamic], [r.probability for r in static], atol=1e-5)


# --- plumbing, with a tiny model ----------------------------------------------


def test_the_exports_parity_figure_is_the_check_it_ran(tiny_model_dir, monkeypatch):
    """The difference an export records is what its check measured: an exported model that is off by 1e-3
    is recorded so, and the command refuses it."""
    from paddle_mnist import engines, export

    model_dir = tiny_model_dir()
    real_call = engines.InferenceEngine.__call__
    monkeypatch.setattr(engines.InferenceEngine, "__call__", lambda self, batch: real_call(self, batch) + 1e-3)
    prefix = model_dir / "inference" / "mnist"
    assert export.export(model_dir, prefix) == pytest.approx(1e-3, rel=0.01)
    assert engines.read_record(Path(f"{prefix}.pdiparams")).difference == pytest.approx(1e-3, rel=0.01)
    assert export.main(["--model-dir", str(model_dir)]) == 1


def test_mse_model_reports_the_raw_value(tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir("mse")
    picture = tmp_path / "x.png"
    Image.fromarray(np.pad(np.full((20, 8), 255, np.uint8), 4)).save(picture)
    result = run_predict(picture, "--model-dir", model_dir, "--json")
    row = json.loads(result.stdout)
    assert isinstance(row["raw"], float) and row["digit"] == min(9, max(0, round(row["raw"])))


def test_model_dir_problems_are_one_line_errors(tiny_model_dir, tmp_path):
    with pytest.raises(UserError, match="mnist.json: no such file"):
        Predictor.from_dir(tmp_path / "empty")
    model_dir = tiny_model_dir()
    best = model_dir / rundir.read(model_dir).file_names["best"]
    best.unlink()
    with pytest.raises(UserError, match=f"{best.name}: no such file"):
        Predictor.from_dir(model_dir)
    meta = json.loads((model_dir / "mnist.json").read_text())
    meta["model"] = "cnn"
    (model_dir / "mnist.json").write_text(json.dumps(meta))
    with pytest.raises(
        UserError, match=r"weights do not fit the model: missing \['conv1.bias'.*unexpected \['body.0.bias'"
    ):
        Predictor.from_dir(model_dir, weights="last")
    result = run_predict("x.png", "--model-dir", tmp_path / "empty")
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "no such file" in result.stderr


def test_swapped_weights_are_caught_by_their_hash(tiny_model_dir):
    model_dir = tiny_model_dir()
    info = rundir.read(model_dir)
    last, best = (model_dir / info.file_names[k] for k in ("last", "best"))
    os.unlink(best)
    (model_dir / "other.pdparams").write_bytes(checkpoint.save_state_bytes({"w": np.zeros(3, np.float32)}))
    os.rename(model_dir / "other.pdparams", best)
    with pytest.raises(checkpoint.CheckpointError, match=f"{best.name}: does not match the hash"):
        Predictor.from_dir(model_dir)
    block = np.zeros((28, 28), np.uint8)
    block[6:22, 12:16] = 255
    assert Predictor.from_dir(model_dir, weights="last").predict(block).digit is not None, "the intact file still loads"


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir()
    marker = tmp_path / "pwned"
    exploit = Exploit()
    exploit.marker = marker
    plant(model_dir, "best", pickle.dumps({"body.0.weight": exploit}))
    with pytest.raises(checkpoint.CheckpointError, match=r"refused to load: it refers to posix.system"):
        Predictor.from_dir(model_dir)
    assert not marker.exists(), "the payload must never run"
    last = model_dir / rundir.read(model_dir).file_names["last"]
    plant(model_dir, "last", last.read_bytes()[:100])
    with pytest.raises(checkpoint.CheckpointError, match="not a paddle state file"):
        Predictor.from_dir(model_dir, weights="last")


def test_export_and_inference_engine_from_the_command_line(tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir()
    result = run_python("-m", "paddle_mnist.export", "--model-dir", model_dir)
    assert result.returncode == 0, result.stderr
    assert "Paddle Inference matches the dynamic model" in result.stdout
    inference = sorted(p.name for p in (model_dir / "inference").iterdir())
    assert inference == ["mnist.json", "mnist.pdiparams", "mnist.pdiparams.json"], "the program, weights, record"
    picture = tmp_path / "block.png"
    pixels = np.zeros((28, 28), np.uint8)
    pixels[10:18, 2:10] = 255
    Image.fromarray(pixels).save(picture)
    rows = [
        json.loads(run_predict(picture, "--model-dir", model_dir, "--json", *engine).stdout)
        for engine in ([], ["--engine", "inference"])
    ]
    assert rows[0]["digit"] == rows[1]["digit"]
    assert abs(rows[0]["probability"] - rows[1]["probability"]) < 1e-5
    assert [row["engine"] for row in rows] == ["dynamic", "inference"]


def test_one_bad_item_never_stops_the_others(trained_dir, photo_set, tmp_path):
    from PIL import Image

    lab = tmp_path / "lab.tif"
    Image.new("RGB", (40, 40), (200, 200, 200)).convert("LAB").save(lab)
    (path, label, _) = photo_set[0]
    result = run_predict(lab, path, "--model-dir", trained_dir, "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert rows[0]["error"].startswith(f"{lab}: cannot decode the image (ValueError: conversion from LAB")
    assert rows[1]["digit"] == label


def test_arrays_of_every_dtype_get_a_prediction_or_their_own_error(trained_dir, photo_set):
    predictor = Predictor.from_dir(trained_dir)
    gray = np.asarray(Image.open(photo_set[0][0]).convert("L"))
    items = [
        gray.astype(np.int64),
        gray.astype(np.uint16),
        gray > 128,
        np.zeros((0, 5)),
        gray.astype(np.int32) * 4,
        gray.astype(np.complex64),
        np.full((5, 5), np.nan),
    ]
    results = predictor.predict(items)
    assert [r.digit is not None for r in results[:3]] == [True, True, True]
    assert "a non-empty [H, W], got shape [0, 5]" in results[3].error
    assert re.search(r"grey levels 0..255, got \d+\.\.\d+$", results[4].error)
    assert "must hold numbers, got dtype complex64" in results[5].error
    assert "finite values in [0, 1]" in results[6].error


def test_long_lists_go_through_in_chunks(trained_dir, photo_set, monkeypatch):
    predictor = Predictor.from_dir(trained_dir).without_rejection()  # every picture read: the chunks are the point
    chunks, batches = [], []
    read_chunk = Predictor._predict_chunk
    monkeypatch.setattr(
        Predictor, "_predict_chunk", lambda self, items, **o: chunks.append(len(items)) or read_chunk(self, items, **o)
    )
    engine = predictor.forward
    predictor = replace(predictor, forward=lambda batch: batches.append(len(batch)) or engine(batch))
    paths = (str(photo_set[i % len(photo_set)][0]) for i in range(150))  # a generator: never a list in memory
    results = list(predictor.predict_iter(paths, chunk=64))
    assert chunks == [64, 64, 22] and len(results) == 150
    pieces = [len(predictor.plan(str(path)).pixels) for path, _, _ in photo_set]  # each photo's inputs
    assert sum(batches) == sum(pieces[i % len(photo_set)] for i in range(150))
    assert all(r.error is None and r.text for r in results)


def test_large_jpegs_are_decoded_at_a_reduced_scale_with_the_same_answer(trained_dir, shared_eval):
    """A 4000x3000 phone-like JPEG decoded through Image.draft reads the same digit as a full decode,
    with a model input within a few grey levels of it."""
    from paddle_mnist import preprocess

    predictor = Predictor.from_dir(trained_dir)
    evaluation = shared_eval
    rng = np.random.default_rng(0)
    for pixels in evaluation.pixels[:4]:
        ink = np.zeros((3000, 4000), np.float32)
        ink[800:1700, 1500:2400] = np.asarray(Image.fromarray(pixels).resize((900, 900), Image.BICUBIC)) / 255
        photo = 235 - 210 * ink[..., None] + rng.normal(0, 6, (3000, 4000, 3))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
        reduced = preprocess.open_image_bytes(buffer.getvalue())
        full = Image.open(io.BytesIO(buffer.getvalue()))
        full.load()
        assert max(reduced.size) < 1000, "decoded at 1/8 scale"
        fast, slow = preprocess.mnist_like(reduced), preprocess.mnist_like(full)
        assert np.abs(fast.astype(int) - slow.astype(int)).mean() < 16
        assert predictor.predict(fast).digit == predictor.predict(slow).digit


@pytest.fixture(scope="module")
def exported_run(trained_dir, tmp_path_factory):
    """A copy of the trained run with its ONNX export, written by ``paddle-mnist export`` (the session's
    trained run stays without one, so every other test reads it on paddle)."""
    from conftest import require_module

    require_module("paddle2onnx")
    require_module("onnxruntime")
    run = tmp_path_factory.mktemp("exported") / "run"
    shutil.copytree(trained_dir, run, ignore=shutil.ignore_patterns("inference"))  # an earlier test exports there
    result = run_python("-m", "paddle_mnist", "export", "--model-dir", run, "--format", "onnx")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"wrote {run / 'inference' / 'mnist.onnx'}; onnxruntime matches"), result.stdout
    assert sorted(p.name for p in (run / "inference").iterdir()) == ["mnist.onnx", "mnist.onnx.json"]
    return run


def probabilities(predictions) -> np.ndarray:
    """Every digit's ten probabilities, picture after picture."""
    return np.array([[dict(d.topk)[k] for k in range(10)] for r in predictions for d in r.digits])


def test_onnx_gives_the_digits_and_probabilities_of_paddle(exported_run, photo_set, shared_eval):
    """On the eval split's first 1,000 images and on every photo style: the same digit, and each class
    probability within 1e-5 of the paddle model's."""
    dynamic = Predictor.from_dir(exported_run, engine="dynamic")
    onnx = Predictor.from_dir(exported_run)  # auto: the export is current, so onnx answers
    assert (dynamic.summary.engine, onnx.summary.engine) == ("dynamic", "onnx") and onnx.notes == ()
    images = shared_eval.images[:1000]
    paddle_scores, onnx_scores = (p.loss.scores(p.forward(images)) for p in (dynamic, onnx))
    np.testing.assert_allclose(onnx_scores, paddle_scores, atol=1e-5)
    assert (onnx_scores.argmax(1) == paddle_scores.argmax(1)).all()
    paths = [str(p) for p, _, _ in photo_set]
    assert {style for _, _, style in photo_set} == set(photos.STYLES)
    by_paddle, by_onnx = dynamic.predict(paths, topk=10), onnx.predict(paths, topk=10)
    assert [r.text for r in by_onnx] == [r.text for r in by_paddle]
    np.testing.assert_allclose(probabilities(by_onnx), probabilities(by_paddle), atol=1e-5)


def test_onnx_refuses_exactly_what_paddle_refuses(exported_run, photo_set):
    """The run's temperature and threshold come from mnist.json whatever the engine, and are applied to the
    outputs in numpy: with a threshold between the scores of letters and of digits, both engines refuse the
    same marks and give the same calibrated probabilities."""
    from paddle_mnist import calibration, notdigits

    dynamic = Predictor.from_dir(exported_run, engine="dynamic")
    onnx = Predictor.from_dir(exported_run)
    saved = rundir.open_run(exported_run).info.calibration
    assert onnx.summary.engine == "onnx" and dynamic.calibration == onnx.calibration == saved and saved.fitted
    items = notdigits.family("letters", 12, 0) + [str(p) for p, _, _ in photo_set[:12]]
    scores = [d.topk[0][1] for r in dynamic.without_rejection().predict(items) for d in r.digits]
    middle = calibration.Calibration(saved.temperature, "msp", float(np.median(scores)), True)
    by_paddle, by_onnx = (replace(p, calibration=middle).predict(items, topk=10) for p in (dynamic, onnx))
    assert [(r.text, r.reason) for r in by_onnx] == [(r.text, r.reason) for r in by_paddle]
    assert any(r.reason or "?" in r.text for r in by_paddle) and any(r.text and "?" not in r.text for r in by_paddle)
    np.testing.assert_allclose(probabilities(by_onnx), probabilities(by_paddle), atol=1e-5)


def test_predict_on_an_onnx_export_never_imports_paddle(exported_run, photo_set):
    """``python -X importtime`` lists every module a process imports: through the export (chosen by auto or
    asked for), paddle is not among them, and the JSON says which engine answered."""
    path = str(photo_set[0][0])
    for engine in ("auto", "onnx"):
        result = run_python(
            "-X",
            "importtime",
            "-m",
            "paddle_mnist.predict",
            path,
            "--model-dir",
            exported_run,
            "--engine",
            engine,
            "--json",
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        imported = {
            line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
        }
        assert "onnxruntime" in imported and "PIL" in imported, "importtime must list the imports"
        assert not {m for m in imported if m == "paddle" or m.startswith("paddle.")}, engine
        assert json.loads(result.stdout)["engine"] == "onnx"


def test_auto_falls_back_to_paddle_with_one_line_when_the_export_cannot_stand_for_the_weights(
    exported_run, photo_set, tmp_path
):
    path = str(photo_set[0][0])
    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    model_file = run / "inference" / "mnist.onnx"
    record = json.loads((run / "inference" / "mnist.onnx.json").read_text())

    def answer(*flags, hide_onnxruntime=False):
        code = (
            "import sys, runpy\n"
            + ("sys.modules['onnxruntime'] = None\n" if hide_onnxruntime else "")
            + f"sys.argv = ['predict', {path!r}, '--model-dir', {str(run)!r}, '--json', *{list(flags)!r}]\n"
            + "runpy.run_module('paddle_mnist.predict', run_name='__main__')"
        )
        result = run_python("-c", code, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        notes = [line for line in result.stderr.splitlines() if line.startswith("paddle-mnist predict:")]
        return json.loads(result.stdout)["engine"], notes

    assert answer() == ("onnx", [])
    assert answer(hide_onnxruntime=True) == (
        "dynamic",
        [
            f"paddle-mnist predict: {model_file}: onnxruntime is not installed, so paddle answers "
            "(pip install 'paddle-mnist[onnx]')"
        ],
    )
    fallback = "; paddle answers (paddle-mnist export --format onnx redoes it)"
    (run / "inference" / "mnist.onnx.json").write_text(json.dumps({**record, "weights_sha256": "0" * 64}))
    assert answer() == (
        "dynamic",
        [
            f"paddle-mnist predict: {model_file}: not used, it was made from other weights than the ones asked for{fallback}"
        ],
    )
    engine, notes = answer("--engine", "onnx")  # asked for by name: used, with the warning
    assert engine == "onnx" and notes == [
        f"paddle-mnist predict: {model_file}: warning: it was made from other weights than the ones asked for"
    ]
    assert answer("--weights", "last")[0] == "dynamic", "the export is of the best weights"
    (run / "inference" / "mnist.onnx.json").write_text(json.dumps(record))
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    assert answer()[1] == [f"paddle-mnist predict: {model_file}: not used, it changed after it was exported{fallback}"]
    (run / "inference" / "mnist.onnx.json").write_text("{")
    assert answer()[1] == [
        f"paddle-mnist predict: {model_file}: not used, its record is unusable (not valid JSON){fallback}"
    ]
    (run / "inference" / "mnist.onnx.json").unlink()
    assert answer()[1] == [
        f"paddle-mnist predict: {model_file}: not used, its record is unusable (no such file){fallback}"
    ]
    shutil.rmtree(run / "inference")
    assert answer() == ("dynamic", []), "no export: nothing to say"


def test_each_member_of_a_committee_runs_on_its_own_engine(exported_run, trained_dir, photo_set):
    paths = [str(p) for p, _, _ in photo_set[:6]]
    mixed = Predictor.committee([exported_run, trained_dir])
    assert mixed.summary.engine == "onnx + dynamic"
    on_paddle = Predictor.committee([exported_run, trained_dir], engine="dynamic")
    assert on_paddle.summary.engine == "dynamic + dynamic"
    np.testing.assert_allclose(
        probabilities(mixed.predict(paths, topk=10)), probabilities(on_paddle.predict(paths, topk=10)), atol=1e-5
    )


def test_a_committee_averages_its_members_probabilities(trained_dir, photo_set, tiny_model_dir, tmp_path):
    """Two different models: the committee's probabilities are the mean of the two members' (not the first
    member's, nor the larger of the two)."""
    paths = [str(p) for p, _, _ in photo_set[:6]]
    other = tiny_model_dir()

    def read(predictor):  # as one digit a picture: where a weak member would cut a picture, the other would not
        return probabilities(predictor.predict(paths, topk=10, single=True))

    first, second = read(Predictor.from_dir(trained_dir)), read(Predictor.from_dir(other))
    assert np.abs(first - second).max() > 0.1, "the members must disagree for this test to mean anything"
    together = read(Predictor.committee([trained_dir, other]))
    np.testing.assert_allclose(together, (first + second) / 2, atol=1e-5)
    result = run_predict(
        paths[0], "--model-dir", trained_dir, "--model-dir", other, "--json", "--topk", "10", "--single"
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose([p for _, p in sorted(json.loads(result.stdout)["topk"])], together[0], atol=1e-5)
    with pytest.raises(UserError, match="a mse model has no class probabilities to average"):
        Predictor.committee([trained_dir, tiny_model_dir("mse")])
    refused = run_predict(paths[0], "--model-dir", trained_dir, "--model-dir", other, "--inference-prefix", "x/mnist")
    assert (refused.returncode, refused.stdout) == (1, ""), refused
    assert refused.stderr.strip().splitlines() == [
        "paddle-mnist predict: error: --inference-prefix names one model's export; "
        "a committee reads MODEL_DIR/inference/mnist"
    ]


def test_a_crossed_seven_gets_a_bar_through_its_stem():
    canvas = Image.new("L", (220, 200), 0)
    ImageDraw.Draw(canvas).line([(60, 40), (160, 40), (100, 170)], fill=255, width=12)  # a 7: top bar, then stem
    before = np.asarray(canvas) > 127
    photos._cross(canvas)
    after = np.asarray(canvas) > 127
    added = np.argwhere(after & ~before)
    assert (after | ~before).all() and len(added) > 0
    stem = np.flatnonzero(before[105])  # the stem at mid-height (rows 34..176 hold ink)
    assert added[:, 1].min() < stem.min() and added[:, 1].max() > stem.max()  # the bar sticks out on both sides
    assert 100 - 12 <= added[:, 0].min() and added[:, 0].max() <= 110 + 12  # at mid-height, as thick as the top bar


def test_the_realism_sets_and_the_error_grid(trained_dir, tmp_path):
    """Digits that are not MNIST's (fonts, pens, scans, no margin): rendered, scored, misreads drawn."""
    from conftest import SHARED

    missing = [packages for kind, (_, packages) in rendering.FONTS.items() if not rendering.font_files(kind)]
    if missing:
        from conftest import missing as absent

        absent(f"fonts for the font sets (Debian's {' '.join(missing)})", ".ci/run installs them")
    grid = tmp_path / "misread.png"
    result = run_python(
        "-m",
        "paddle_mnist",
        "photos",
        "--model-dir",
        trained_dir,
        "--data",
        SHARED / "mnist.json.gz",
        "--n",
        "30",
        "--sets",
        *photos.SETS,
        "--errors",
        grid,
        "--out",
        tmp_path / "pictures",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == 30 and set(report["default"]) == {*photos.SETS, "all"}
    assert report["default"]["all"] >= 0.7 and report["default"]["all"] > report["naive"]["all"]
    assert grid.read_bytes()[:4] == b"\x89PNG"
    names = sorted(p.name for p in (tmp_path / "pictures").iterdir())
    assert len(names) == 30 and {n.split("_", 1)[1].rsplit("_", 1)[0] for n in names} == set(photos.SETS)


def test_test_time_views_average_the_models_probabilities(trained_dir, photo_set, tiny_model_dir):
    from paddle_mnist import views

    predictor = Predictor.from_dir(trained_dir)
    assert predictor.with_views("none") is predictor
    paths = [str(p) for p, _, _ in photo_set[:8]]
    batch = np.stack([predictor.model_input(p) for p in paths])
    background = predictor.encoding.background
    plain = predictor.probabilities(predictor.forward(batch))  # calibrated: the run's temperature
    expected = np.mean(
        [plain]
        + [
            predictor.probabilities(predictor.forward(views.warp(batch, theta, background)))
            for theta in views.VIEW_SETS["zoom"]
        ],
        axis=0,
    )
    assert not np.allclose(expected, plain, atol=1e-3), "the views must change what the model sees"
    zoomed = predictor.with_views("zoom").predict(paths, topk=10)
    np.testing.assert_allclose([[p for _, p in sorted(r.topk)] for r in zoomed], expected, atol=1e-5)
    result = run_predict(paths[0], "--model-dir", trained_dir, "--tta", "zoom", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["digit"] == zoomed[0].digit, result.stderr
    mse = run_predict(paths[0], "--model-dir", tiny_model_dir("mse"), "--tta", "shifts")
    assert mse.returncode != 0 and "Traceback" not in mse.stderr
    assert mse.stderr.strip().endswith("a mse model has no class probabilities to average over views")
