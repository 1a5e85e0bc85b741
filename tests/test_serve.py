"""``paddle-mnist serve``: the API against a real uvicorn server on 127.0.0.1, batching, bad input, a bounded
load test, and the page in a real headless Chromium driven by selenium."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from paddle_mnist.testing.served import Server, multipart

from conftest import require_module, require_programs  # noqa: E402
from fixtures import refused_letter, run_python

require_module("fastapi")

MAX_UPLOAD_MB = 2


def drawn(strokes, size=280, width=20) -> bytes:
    """A PNG of black strokes on white, as the page's canvas sends it."""
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        draw.line(stroke, fill=0, width=width, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


ONE = drawn([[(140, 40), (140, 240)]])
SEVEN = drawn([[(70, 60), (210, 60), (120, 240)]])
BLANK = drawn([])


@pytest.fixture(scope="module")
def server(trained_dir, tmp_path_factory):
    """The real command on a free port; stopped with Ctrl-C (SIGINT) at the end, which must be clean.

    It reads with test-time views (``--tta zoom``), so every request here takes that path too
    (the in-process batching test below serves the plain model)."""
    log = tmp_path_factory.mktemp("serve") / "server.log"
    server = Server(trained_dir, log, "--max-upload-mb", MAX_UPLOAD_MB, "--tta", "zoom")
    yield f"http://127.0.0.1:{server.port}/"
    assert server.stop() == 0, log.read_text()[-2000:]  # Ctrl-C
    assert server.proc.stdout.read().strip().endswith("stopped")


def call(url, path, data=None, content_type=None, method=None, headers=None):
    """(status, parsed JSON or text) of one request; never raises for an HTTP error status."""
    request = urllib.request.Request(
        url.rstrip("/") + path,
        data=data,
        method=method,
        headers={**({"Content-Type": content_type} if content_type else {}), **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, body, kind = response.status, response.read(), response.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        status, body, kind = e.code, e.read(), e.headers.get("content-type", "")
    return status, json.loads(body) if "json" in kind else body.decode()


# --- the API --------------------------------------------------------------------------------


def test_drawn_digits_and_the_fields_of_predict_json(server):
    for image, digit in ((ONE, 1), (SEVEN, 7)):
        status, body = call(server, "/api/predict?topk=10", image, "image/png")
        assert status == 200, body
        [row] = body["results"]
        assert row["digit"] == digit and row["source"] == "upload"
        assert {"digit", "probability", "topk", "model_input"} <= set(row) and len(row["topk"]) == 10
        assert abs(sum(p for _, p in row["topk"]) - 1) < 1e-4
        seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(row["model_input"]))))
        assert seen.shape == (28, 28) and seen.max() > 200 and seen[:4].max() == 0  # white ink in a black margin


def test_several_files_in_one_form_each_get_their_own_answer(server):
    body, kind = multipart([("one.png", ONE), ("blank.png", BLANK), ("seven.png", SEVEN)])
    status, answer = call(server, "/api/predict", body, kind)
    assert status == 200
    one, blank, seven = answer["results"]
    assert (one["source"], one["digit"], seven["digit"]) == ("one.png", 1, 7)
    assert blank == {"source": "blank.png", "error": "blank.png: no digit found (ink contrast 0.00 is below 0.15)"}


def test_the_paddlex_contract(server):
    status, body = call(
        server,
        "/image-classification",
        json.dumps({"image": base64.b64encode(SEVEN).decode(), "topk": 2}).encode(),
        "application/json",
    )
    assert status == 200
    assert set(body) == {"logId", "errorCode", "errorMsg", "result"} and (body["errorCode"], body["errorMsg"]) == (
        0,
        "Success",
    )
    categories = body["result"]["categories"]
    assert [set(c) for c in categories] == [{"id", "name", "score"}] * 2
    assert (categories[0]["id"], categories[0]["name"]) == (7, "7") and categories[0]["score"] > categories[1]["score"]
    for payload, status_code, message in (
        ({"image": "http://example.com/seven.png"}, 422, "image URLs are refused"),
        ({"image": "%%%"}, 400, "not valid base64"),
        ({"image": base64.b64encode(BLANK).decode()}, 422, "no digit found"),
    ):
        status, body = call(server, "/image-classification", json.dumps(payload).encode(), "application/json")
        assert status == status_code and set(body) == {"logId", "errorCode", "errorMsg"}
        assert body["errorCode"] == status_code and message in body["errorMsg"]


def test_model_health_and_schema(server):
    status, model = call(server, "/api/model")
    assert status == 200 and model["model"] == "convnet" and model["classes"][7] == "7" and model["eval_acc"] > 0.9
    assert model["tta"] == "zoom"
    assert call(server, "/healthz") == (200, {"status": "ok"})
    status, schema = call(server, "/openapi.json")
    assert status == 200 and {"/api/predict", "/image-classification", "/api/model", "/healthz"} <= set(schema["paths"])
    assert call(server, "/docs")[0] == 404, "the interactive docs would load from a CDN"
    status, page = call(server, "/")
    assert status == 200 and "<canvas" in page and "https://" not in page


def big_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (10_000, 5_000)).save(buffer, "PNG")  # 50 megapixels in a few KB
    return buffer.getvalue()


@pytest.mark.parametrize(
    "path, data, kind, status, message",
    [
        ("/api/predict", b"plain text", "image/png", 400, "upload: not an image"),
        ("/api/predict", ONE[:200], "image/png", 400, "upload: unreadable image"),
        ("/api/predict", b"", "image/png", 400, "empty request body"),
        ("/api/predict", None, "big", 400, "pixels is over the 40,000,000-pixel limit"),
        ("/api/predict", BLANK, "image/png", 422, "upload: no digit found"),
        ("/api/predict", Image.new("L", (50, 50), 128).tobytes(), "image/x-portable-graymap", 400, "not an image"),
        ("/api/predict", b"{}", "application/json", 422, 'a drawing is {"strokes": [[[x, y], ...], ...]'),
        ("/api/predict", b"{not json", "application/json", 400, "malformed JSON"),
        ("/api/predict", b"{}", "text/plain", 415, "or application/json strokes"),
        ("/api/predict?topk=0", ONE, "image/png", 422, "topk must be 1..10"),
        ("/image-classification", b"{not json", "application/json", 400, "malformed JSON"),
        ("/image-classification", b"{}", "text/plain", 415, "send application/json"),
        ("/nowhere", b"", "image/png", 404, "Not Found"),
    ],
)
def test_bad_requests_get_one_line_and_the_server_keeps_serving(server, path, data, kind, status, message):
    if kind == "big":
        data, kind = big_png(), "image/png"
    got, body = call(server, path, data, kind, method="POST")
    text = body.get("error") or body.get("errorMsg")
    assert got == status and message in text and "\n" not in text, body
    assert call(server, "/healthz")[0] == 200


def test_strokes_are_read_as_mnist_digits(server):
    """The pad's strokes as the page sends them: 50 drawings of every digit in its usual ways (small to
    filling the pad, tilted, squashed) are read as the image route reads a photo, with the same fields."""
    from paddle_mnist.testing import drawn_digits

    read, refused = [], 0
    for label, _style, strokes in drawn_digits.benchmark(50, seed=5):
        body = json.dumps(drawn_digits.as_json(strokes)).encode()
        status, answer = call(server, "/api/predict?topk=10", body, "application/json", method="POST")
        assert status == 200, answer
        [row] = answer["results"]
        assert row["source"] == "strokes" and len(row["topk"]) == 10 and row["model_input"]
        read.append(label in (row["digit"], row.get("closest")))  # the digit, or the closest to a refused one
        refused += row["digit"] is None
    assert sum(read) >= 47, f"{sum(read)} of 50 drawings read right"
    assert refused <= 3, f"{refused} of 50 drawn digits refused as not digits"


HASH = {  # a "#" filling the pad: four strokes, one mark
    "strokes": [[[100, 40], [90, 240]], [[180, 40], [170, 240]], [[40, 110], [240, 110]], [[40, 180], [240, 180]]],
    "width": 280,
    "height": 280,
}


def test_a_doodle_and_a_letter_through_the_api_are_not_digits(server, trained_dir):
    """The session's model trains with outliers (``fast``): a "#" sent as strokes and a printed letter sent as
    a picture are answered "not a digit", with the closest digit; a drawn 7 is still a 7.  The letter is one
    the model refuses, read in-process as the server reads (this brief model accepts some letters: the A of
    DejaVu Sans at 0.50, which the whole recipe refuses)."""
    from paddle_mnist.predict import Predictor

    status, answer = call(server, "/api/predict", json.dumps(HASH).encode(), "application/json", method="POST")
    assert status == 200 and answer["results"][0]["reason"] == "not a digit", answer
    letter = io.BytesIO()
    refused_letter(Predictor.from_dir(trained_dir).with_views("zoom")).save(letter, "PNG")
    status, answer = call(server, "/api/predict", letter.getvalue(), "image/png", method="POST")
    [row] = answer["results"]
    assert status == 200 and (row["digit"], row["text"], row["reason"]) == (None, None, "not a digit"), row
    assert row["closest"] in range(10) and row["digits"][0]["closest"] == row["closest"]
    status, answer = call(server, "/api/predict", json.dumps(STROKES_SEVEN).encode(), "application/json", method="POST")
    assert answer["results"][0]["text"] == "7", answer


def test_numbers_through_the_api_as_strokes_and_as_a_picture(server):
    """A drawn 5 whose flag was drawn last, a crossed 7 and a 4 in two strokes are one digit each, as strokes
    and as the picture of them; each digit has its box, probability and model input."""
    from paddle_mnist.testing import drawn_digits

    rng = np.random.default_rng(3)
    strokes = drawn_digits.number([5, 4, 7], rng, styles=["two_strokes", "open", "crossed"])
    strokes.append(strokes.pop(1))  # the 5's flag, drawn after everything else
    body = json.dumps(drawn_digits.as_json(strokes, drawn_digits.WIDE_PAD)).encode()
    status, answer = call(server, "/api/predict?topk=3", body, "application/json", method="POST")
    assert status == 200, answer
    [row] = answer["results"]
    assert len(row["digits"]) == 3 and row["text"][:2] == "54" and "digit" not in row and "model_input" not in row, row
    assert [len(d["topk"]) for d in row["digits"]] == [3, 3, 3] and all(d["model_input"] for d in row["digits"])
    boxes = [d["box"] for d in row["digits"]]
    assert all(a[2] <= b[0] for a, b in zip(boxes, boxes[1:])) and all(0 <= v <= 560 for b in boxes for v in b)
    picture = drawn_digits.as_png(strokes, drawn_digits.WIDE_PAD)
    status, answer = call(server, "/api/predict", picture, "image/png", method="POST")
    assert status == 200 and answer["results"][0]["text"][:2] == "54", answer
    status, answer = call(  # the PaddleX contract classifies: one label a picture
        server,
        "/image-classification",
        json.dumps({"image": base64.b64encode(picture).decode()}).encode(),
        "application/json",
    )
    assert status == 200 and len(answer["result"]["categories"]) == 5


@pytest.mark.parametrize(
    "drawing, status, message",
    [
        ({"strokes": [], "width": 280, "height": 280}, 422, "no digit found (the drawing is empty)"),
        ({"strokes": [[[140, 140]]], "width": 280, "height": 280}, 422, "no digit found (the drawing is a single dot)"),
        ({"strokes": [[[1, 2]]] * 257, "width": 280, "height": 280}, 422, "more than 256 strokes"),
        ({"strokes": [[[1, 2]] * 20_001], "width": 280, "height": 280}, 422, "more than 20000 points"),
        ({"strokes": [[[1, "2"]]], "width": 280, "height": 280}, 422, "each point must be [x, y], two finite numbers"),
        ({"strokes": [[[1, 2, 3]]], "width": 280, "height": 280}, 422, "each point must be [x, y]"),
        ({"strokes": [[[10, 10], [1e9, 10]]], "width": 280, "height": 280}, 422, "outside the 280x280 pad"),
        ({"strokes": [[[10, 10]]], "width": 0, "height": 280}, 422, "width must be the pad's size"),
        ({"strokes": [[[10, 10]]], "width": 10**40, "height": 280}, 422, "width must be the pad's size"),
        ({"strokes": "abc", "width": 280, "height": 280}, 422, 'a drawing is {"strokes"'),
        ({"strokes": [5], "width": 280, "height": 280}, 422, "each stroke must be a list"),
    ],
)
def test_bad_drawings_get_one_json_line(server, drawing, status, message):
    got, body = call(server, "/api/predict", json.dumps(drawing).encode(), "application/json", method="POST")
    assert got == status and message in body["error"] and "\n" not in body["error"], body
    assert call(server, "/healthz")[0] == 200


def test_non_finite_and_oversized_drawings_are_refused(server):
    nan = b'{"strokes": [[[NaN, 1], [2, 2]]], "width": 280, "height": 280}'  # Python's json reads NaN
    assert call(server, "/api/predict", nan, "application/json", method="POST") == (
        422,
        {"error": "each point must be [x, y], two finite numbers"},
    )
    big = json.dumps({"strokes": [[[100.123456, 100.123456]] * 60_000], "width": 280, "height": 280}).encode()
    status, body = call(server, "/api/predict", big, "application/json", method="POST")
    assert status == 413 and "at most 1024 KB" in body["error"], body


def test_explain_adds_a_heat_map_of_where_the_model_looked(server, trained_dir):
    from paddle_mnist.testing import drawn_digits

    [(label, _, strokes)] = drawn_digits.benchmark(1, seed=2)
    body = json.dumps(drawn_digits.as_json(strokes)).encode()
    status, answer = call(server, "/api/predict?explain=1", body, "application/json", method="POST")
    assert status == 200, answer
    [row] = answer["results"]
    heat = Image.open(io.BytesIO(base64.b64decode(row["explanation"])))
    assert heat.mode == "RGB" and heat.size == (28, 28)
    red = np.asarray(heat)[..., 0].astype(float) - np.asarray(heat)[..., 2]
    assert red.max() > 100, "the map is drawn in red over the grey input"
    status, plain = call(server, "/api/predict", ONE, "image/png", method="POST")
    assert status == 200 and "explanation" not in plain["results"][0]

    from fastapi.testclient import TestClient

    from paddle_mnist.predict import Predictor
    from paddle_mnist.serve import app as serve

    with TestClient(serve.create_app(Predictor.from_dir(trained_dir))) as client:  # no explainer: a committee
        refused = client.post("/api/predict?explain=1", content=ONE, headers={"Content-Type": "image/png"})
    assert refused.status_code == 422 and refused.json() == {
        "error": "explain=1 needs one model: this server reads a committee"
    }


def test_the_heat_map_explains_the_digit_read_not_the_runner_up(server, trained_dir):
    """The map the API draws is Grad-CAM of the digit it answers, computed here on the same weights and the
    model input it returned, and unlike the runner-up's."""
    from paddle_mnist import explain, rundir
    from paddle_mnist.predictor import on_paddle

    status, answer = call(server, "/api/predict?explain=1", SEVEN, "image/png", method="POST")
    assert status == 200, answer
    [row] = answer["results"]
    predictor = on_paddle(rundir.open_run(trained_dir))
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(row["model_input"]))))
    batch = predictor.encoding.to_floats(pixels)[None, None]
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(row["explanation"])))).astype(int)
    read, runner_up = (explain.heat_map_of(predictor.network, batch, k).astype(int) for k, _ in row["topk"][:2])
    assert row["topk"][0][0] == row["digit"]
    assert np.abs(shown - read).max() <= 2 < np.abs(shown - runner_up).max()


def test_wrong_method(server):
    status, body = call(server, "/api/predict")
    assert status == 405 and body == {"error": "Method Not Allowed"}


def answer_while_sending(url: str, head: bytes, chunks: int, chunk: bytes) -> tuple[int, bytes]:
    """Send ``head``, then up to ``chunks`` copies of ``chunk``, looking for an answer after each;
    (how many chunks went out before the answer came, the answer)."""
    import select
    import socket

    host, port = url.removeprefix("http://").rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(head)
        sent = 0
        while sent < chunks and not select.select([s], [], [], 0.05)[0]:
            s.sendall(chunk)
            sent += 1
        assert select.select([s], [], [], 30)[0], "no answer at all"
        answer = b""
        while data := s.recv(1 << 16):
            answer += data
    return sent, answer


def test_bodies_over_the_limit_are_refused_while_they_arrive(server):
    limit = MAX_UPLOAD_MB << 20
    # declared too long: the answer comes before a byte of the body
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {limit + 1}\r\n\r\n"
    ).encode()
    sent, answer = answer_while_sending(server, head, 64, b"\0" * (256 << 10))
    assert sent == 0 and answer.startswith(b"HTTP/1.1 413 "), (sent, answer[:200])
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == f"request body over the {limit:,}-byte upload limit"
    # no Content-Length: the server counts, and answers soon after the limit, long before the 16 MB end
    head = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = b"40000\r\n" + b"\0" * (256 << 10) + b"\r\n"
    sent, answer = answer_while_sending(server, head, 64, piece)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"upload limit" in answer, answer[:200]
    assert 8 <= sent <= 16, f"answered after {sent} of 64 chunks of 256 KB (the limit is 8)"
    # and the same through an ordinary client, which sends all of its body before reading the answer
    status, body = call(server, "/api/predict", b"\0" * (limit + 1), "image/png")
    assert status == 413 and "upload limit" in body["error"]
    assert call(server, "/healthz")[0] == 200


# --- batching and load ---------------------------------------------------------------------


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(trained_dir):
    from fastapi.testclient import TestClient

    from paddle_mnist.predict import Predictor
    from paddle_mnist.serve import app as serve

    predictor = Predictor.from_dir(trained_dir)
    app = serve.create_app(predictor, max_batch=16, max_wait=0.05)
    images = [(ONE, 1), (SEVEN, 7)] * 12
    with TestClient(app) as client, ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(
                lambda item: client.post("/api/predict", content=item[0], headers={"content-type": "image/png"}).json(),
                images,
            )
        )
        batches = app.app.state.service.batcher.batches
    assert [a["results"][0]["digit"] for a in answers] == [digit for _, digit in images]
    inputs = [len(predictor.plan(Image.open(io.BytesIO(png))).pixels) for png, _ in images]  # a mark's ways to cut
    assert max(batches) > max(inputs) and sum(batches) == sum(inputs), batches  # requests share forward passes


def test_bounded_load_of_mixed_requests(server):
    """300 requests from 16 threads, a quarter of them bad: every answer right, no 5xx, healthy after."""
    cases = [
        (ONE, "image/png", 200, 1),
        (SEVEN, "image/png", 200, 7),
        (BLANK, "image/png", 422, None),
        (b"garbage", "image/png", 400, None),
    ]
    plan = [cases[i % 4] for i in range(300)]
    start = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda case: call(server, "/api/predict", case[0], case[1]), plan))
    wrong = [
        (case[2], case[3], got)
        for case, got in zip(plan, outcomes)
        if got[0] != case[2] or (case[3] is not None and got[1]["results"][0]["digit"] != case[3])
    ]
    assert wrong == [] and time.monotonic() - start < 120
    assert call(server, "/healthz") == (200, {"status": "ok"})


def test_a_broken_model_dir_fails_at_start_up(tmp_path):
    result = run_python("-m", "paddle_mnist", "serve", "--model-dir", tmp_path / "none", "--port", "0", timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"paddle-mnist serve: error: {tmp_path / 'none' / 'mnist.json'}: no such file (train a model into "
        f"{tmp_path / 'none'} first)"
    ]


def test_other_addresses_get_a_warning(trained_dir):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paddle_mnist",
            "serve",
            "--model-dir",
            str(trained_dir),
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().startswith("serving on http://0.0.0.0:")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert "warning: listening on 0.0.0.0: the API has no authentication" in proc.stderr.read()


# --- the page in a real browser ------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    require_programs(CHROMIUM, CHROMEDRIVER)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1000,800",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def draw(driver, strokes):
    """Pointer strokes on the pad, in its own pixels (560 x 280)."""
    from selenium.webdriver.common.action_chains import ActionChains

    pad = driver.find_element("id", "pad")
    width, height = int(pad.get_attribute("width")), int(pad.get_attribute("height"))
    scale = pad.size["width"] / width
    for stroke in strokes:
        (x0, y0), rest = stroke[0], stroke[1:]
        actions = ActionChains(driver, duration=20)
        actions.move_to_element_with_offset(pad, (x0 - width / 2) * scale, (y0 - height / 2) * scale).click_and_hold()
        previous = (x0, y0)
        for x, y in rest:
            for _ in range(5):  # small moves, as a hand makes
                actions.move_by_offset((x - previous[0]) * scale / 5, (y - previous[1]) * scale / 5)
            previous = (x, y)
        actions.release().perform()


def shown(driver, expected, timeout=20):
    """The digit the page shows, once it shows ``expected`` (or what it shows at the timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = driver.find_element("id", "digit").text
        if text == expected:
            return text
        time.sleep(0.1)
    return driver.find_element("id", "digit").text


def bar_total(driver) -> float:
    return sum(float(item.get_attribute("data-score")) for item in driver.find_elements("css selector", "#bars li"))


SENT = """window.sent = [];
const fetched = window.fetch;
window.fetch = (url, options) => {
  if (options && options.method === "POST") window.sent.push(options.headers["Content-Type"]);
  return fetched(url, options);
};"""


def test_the_page_draws_clears_and_reads_photos(server, browser, photo_set, tmp_path):
    browser.get(server)
    assert "Draw a digit" in browser.title + browser.find_element("tag name", "h1").text
    assert "convnet" in shown_info(browser)
    browser.execute_script(SENT)  # what the page posts, by content type
    draw(browser, [[(140, 40), (140, 240)]])
    assert shown(browser, "1") == "1"
    assert set(browser.execute_script("return window.sent")) == {"application/json"}, "a drawing goes as strokes"
    assert abs(bar_total(browser) - 1) < 1e-3, "the bars are the ten probabilities"
    browser.find_element("id", "clear").click()
    assert shown(browser, "–") == "–" and "no digit" in browser.find_element("id", "status").text
    draw(browser, [[(70, 60), (210, 60), (120, 240)]])
    assert shown(browser, "7") == "7"
    browser.save_screenshot(str(tmp_path / "serve.png"))
    if os.environ.get("PADDLE_MNIST_SCREENSHOT"):
        shutil.copy(tmp_path / "serve.png", os.environ["PADDLE_MNIST_SCREENSHOT"])
    browser.find_element("tag name", "body").send_keys("\ue00c")  # Escape clears
    assert shown(browser, "–") == "–"
    path, label, _ = photo_set[0]
    browser.find_element("id", "file").send_keys(str(path))
    assert shown(browser, str(label)) == str(label)
    assert browser.execute_script("return window.sent")[-1] != "application/json", "a photo goes as an image"
    seen = browser.find_element("id", "seen")
    assert seen.get_attribute("data-showing") == "input"
    browser.find_element("id", "explain").click()  # the toggle: the photo is sent again, with explain=1
    assert wait_for(lambda: seen.get_attribute("data-showing") == "explanation"), "the heat map is shown"
    assert "where the model looked" in browser.find_element("id", "seen-caption").text
    browser.find_element("id", "explain").click()
    assert wait_for(lambda: seen.get_attribute("data-showing") == "input")


def test_the_page_reads_a_number_with_a_box_per_digit(server, browser, tmp_path):
    """A 1 and a 7 written side by side on the wide pad read "17", with a chip and a box per digit; choosing
    the second chip shows its probabilities; a photo of a number reads as one, its boxes over the photo."""
    browser.get(server)
    shown_info(browser)
    draw(browser, [[(120, 40), (120, 240)], [(300, 60), (440, 60), (350, 240)]])
    assert shown(browser, "17") == "17"
    chips = browser.find_elements("css selector", "#digits .chip")
    assert [c.text.split(" ")[0] for c in chips] == ["1", "7"]
    boxes = json.loads(browser.find_element("id", "pad").get_attribute("data-boxes"))
    assert len(boxes) == 2 and boxes[0][2] < 200 < 280 < boxes[1][0], boxes
    chips[1].click()
    top = browser.find_element("css selector", "#bars li.top .name").text
    assert top == "7" and browser.find_element("id", "seen").get_attribute("data-digit") == "1"
    browser.find_element("id", "clear").click()
    from paddle_mnist.testing import drawn_digits

    photo = tmp_path / "number.png"
    # 2 and 5: the session's briefly trained model cuts some wide drawn 0s in two (the benchmarks' models do not)
    photo.write_bytes(drawn_digits.as_png(drawn_digits.number([2, 5], np.random.default_rng(1)), drawn_digits.WIDE_PAD))
    browser.find_element("id", "file").send_keys(str(photo))
    assert shown(browser, "25") == "25"
    assert wait_for(lambda: len(json.loads(browser.find_element("id", "pad").get_attribute("data-boxes") or "[]")) == 2)


def test_the_page_says_a_doodle_is_not_a_digit(server, browser):
    """A "#" drawn on the page: the session's model (trained with outliers) refuses it, and the page says so
    in words, shows "?" and the digit it is closest to."""
    browser.get(server)
    shown_info(browser)
    draw(browser, HASH["strokes"])  # four strokes: the page asks after each, and shows the latest answer
    assert wait_for(lambda: "this is not a digit" in text_of(browser, "#status")), text_of(browser, "#status")
    assert shown(browser, "?") == "?"
    assert wait_for(lambda: "not a digit (closest" in text_of(browser, "#digits .chip"))
    time.sleep(1)  # an answer to an earlier stroke could have matched: the last one must say the same
    assert "this is not a digit" in text_of(browser, "#status") and text_of(browser, "#digit") == "?"


def test_not_a_digit_through_the_api_and_on_the_page(trained_dir, browser, tmp_path):
    """A run whose calibration refuses a mark: the API answers a null digit and text with the reason and the
    closest digit, for an image and for strokes; the page says it in words, shows "?" and the closest digit."""
    run = tmp_path / "refusing"
    shutil.copytree(trained_dir, run, ignore=shutil.ignore_patterns("inference"))
    meta = json.loads((run / "mnist.json").read_text())
    meta["calibration"] = {"temperature": 1.0, "score": "msp", "threshold": 1.01, "fitted": True}  # refuses all
    (run / "mnist.json").write_text(json.dumps(meta))
    server = Server(run, tmp_path / "server.log")
    url = f"http://127.0.0.1:{server.port}/"
    try:
        for body, kind in ((SEVEN, "image/png"), (json.dumps(STROKES_SEVEN).encode(), "application/json")):
            status, answer = call(url, "/api/predict", body, kind, method="POST")
            assert status == 200, answer
            [row] = answer["results"]
            assert (row["digit"], row["text"], row["reason"]) == (None, None, "not a digit"), row
            assert row["closest"] == row["topk"][0][0] and row["digits"][0]["digit"] is None
        browser.get(url)
        shown_info(browser)
        draw(browser, [[(70, 60), (210, 60), (120, 240)]])
        assert shown(browser, "?") == "?"
        assert wait_for(lambda: "not a digit" in text_of(browser, "#status"))
        assert wait_for(lambda: "closest" in text_of(browser, "#digits .chip"))
    finally:
        assert server.stop() == 0, (tmp_path / "server.log").read_text()[-2000:]


STROKES_SEVEN = {"strokes": [[[70, 60], [210, 60], [120, 240]]], "width": 280, "height": 280}


def text_of(driver, selector: str) -> str:
    """The text of the first element ``selector`` finds, or "" while the page is replacing it."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return driver.find_element("css selector", selector).text
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def wait_for(condition, timeout=20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def shown_info(driver, timeout=20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and "loading" in driver.find_element("id", "model-info").text:
        time.sleep(0.1)
    return driver.find_element("id", "model-info").text


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory, trained_dir, shared_eval):
    from paddle_mnist import photos

    return photos.write_set(
        shared_eval.pixels[:6], shared_eval.class_ids[:6], tmp_path_factory.mktemp("photos"), seed=2
    )
