"""``paddle-mnist serve`` under hostile load: the real server with small budgets and a lowered open-file
limit, each attack of tests/serve_attacks.py beside a bystander drawing a digit.  Each asserts the answers'
status and JSON shape, the server's peak RSS during the attack, the bystander's latency, no traceback in
the log, and a healthy server afterwards."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest

from paddle_mnist.testing import serve_attacks as attacks
from paddle_mnist.testing import served

from conftest import require_module

require_module("fastapi")

FLAGS = (
    "--max-upload-mb",
    4,
    "--body-budget-mb",
    16,
    "--image-budget-mb",
    24,
    "--request-budget-mb",
    48,
    "--decode-budget-mb",
    64,
    "--decode-workers",
    8,
    "--max-images",
    8,
    "--client-timeout",
    2,
    "--request-timeout",
    5,
)
# 8 decoding threads: 7 may decode big images at once, so the decode budget, not the thread count, is what
# holds the concurrent decodes below to 64 MB.
NOFILE = 256  # the server's open-file limit: the connection cap is lowered to fit it
BYSTANDER_MAX_MS = 1500  # the bystander's slowest answer during any attack


@pytest.fixture(scope="module")
def server(trained_dir, tmp_path_factory):
    server = served.Server(trained_dir, tmp_path_factory.mktemp("hostile") / "server.log", *FLAGS, nofile=NOFILE)
    for _ in range(3):  # warm up: the first decodes and forward passes allocate for good
        server.request("POST", "/api/predict", served.drawn_seven(), {"Content-Type": "image/png"})
    yield server
    assert server.stop() == 0
    assert not [line for line in server.log_lines() if "Traceback" in line or "Exception in ASGI" in line]


def check(server, outcome, rss_growth_mb: float):
    """What every attack must leave true: the bystander served promptly, memory bounded, a quiet log,
    a healthy server."""
    assert outcome.bystander_failures == [], outcome.bystander_failures
    assert outcome.bystander_ms and max(outcome.bystander_ms) < BYSTANDER_MAX_MS, sorted(outcome.bystander_ms)[-5:]
    assert outcome.peak_rss_mb < outcome.rss_before_mb + rss_growth_mb, (outcome.peak_rss_mb, outcome.rss_before_mb)
    assert outcome.tracebacks == 0 and len(outcome.log) <= 2, outcome.log[:5]
    assert server.request("GET", "/healthz")[:2] == (200, {"status": "ok"})


def errors(outcome) -> list[tuple[int, str]]:
    return [(status, body.get("error") or body.get("errorMsg")) for status, body in outcome.answers]


def test_images_over_the_per_image_budget_are_refused_undecoded(server):
    # 8 PNGs of ~30 KB that would decode to 50 MB each (2500x2500 16-bit RGBA)
    outcome = served.attack(server, "decode bomb", attacks.decode_bomb(8, 2500))
    [(status, body)] = outcome.answers
    assert status == 200 and len(body["results"]) == 8
    assert all(
        "RGBA would take 50 MB to decode, over the 24 MB per-image budget" in row["error"] for row in body["results"]
    ), body["results"][0]
    check(server, outcome, rss_growth_mb=40)  # decoding even one would take 50


def test_one_image_over_its_budget_is_413(server):
    status, body, _ = server.request(
        "POST", "/api/predict", attacks.rgba16_png(2500, 2500), {"Content-Type": "image/png"}
    )
    assert status == 413 and "over the 24 MB per-image budget" in body["error"] and "\n" not in body["error"]


def test_a_request_over_its_budget_is_one_413(server):
    # 8 grey 3000x3000 PNGs: 10.6 MB each (pixels and the analysis), 85 MB together, over the 48 MB per-request budget
    outcome = served.attack(server, "many big greys", attacks.many_grey(8, 3000))
    assert errors(outcome) == [
        (413, "the 8 images of this request would take 85 MB to decode, over the 48 MB per-request budget")
    ]
    check(server, outcome, rss_growth_mb=40)


def test_requests_over_the_process_budget_wait_their_turn(server):
    # 12 concurrent requests of 2 grey 4500x4500 PNGs (21 MB each to decode): 3 fit the 64 MB budget at once,
    # where the threads alone would let 7 (150 MB) run (measured without the budget: 112-119 MB more)
    outcome = served.attack(server, "concurrent decodes", attacks.many_grey(2, 4500, requests=12))
    for status, body in outcome.answers:
        assert status == 200, body
        assert [row["error"].split(": ", 1)[1] for row in body["results"]] == [
            "no digit found (ink contrast 0.00 is below 0.15)"
        ] * 2
    # the budget, plus allocator slack: measured 61-69 MB more (80-97 while a refused picture's error kept the
    # analysis's frames alive until its request was answered: Service._planned)
    check(server, outcome, rss_growth_mb=64 + 20)


def test_a_flood_of_uploads_is_held_to_the_body_budget(server):
    outcome = served.attack(server, "upload flood", attacks.upload_flood(24, (4 << 20) - 1000))
    statuses = outcome.statuses
    assert set(statuses) <= {400, 503} and statuses[400] >= 2, statuses
    for status, body in outcome.answers:
        assert ("upload: not an image" in body["error"]) if status == 400 else ("body budget" in body["error"]), body
    check(server, outcome, rss_growth_mb=16 + 48)


def test_slow_headers_cannot_use_up_the_connections(server):
    # more connections than the open-file limit allows, each sending its head a byte every 0.5 s
    outcome = served.attack(server, "slow headers", attacks.slow_headers(NOFILE + 60, 4))
    [(_, opened), (_, closed)] = outcome.answers
    assert opened == NOFILE + 60 and closed == opened, "every slow connection was closed (evicted or timed out)"
    assert not [line for line in outcome.log if "Too many open files" in line]
    # a SYN the kernel dropped is resent after 1 s: the queue is deep enough that none is (measured: 0.06-0.34 s)
    assert max(outcome.bystander_ms) < 1000, sorted(outcome.bystander_ms)[-3:]
    check(server, outcome, rss_growth_mb=40)


def test_huge_integers_are_json_errors(server):
    outcome = served.attack(server, "huge integers", attacks.huge_integers)
    (s1, b1), (s2, b2), (s3, b3) = outcome.answers
    assert (s1, s2, s3) == (400, 400, 422)
    assert (
        b1["errorCode"] == 400
        and b1["errorMsg"].startswith("malformed JSON")
        and set(b1) == {"logId", "errorCode", "errorMsg"}
    )
    assert b2["errorMsg"].startswith("malformed JSON") and len(b2["errorMsg"]) < 200
    assert b3 == {"error": "query.topk: Unable to parse input string as an integer, exceeded maximum size"}
    check(server, outcome, rss_growth_mb=40)


def test_clients_that_leave_midway_are_not_errors(server):
    outcome = served.attack(server, "disconnects", attacks.disconnects(5))
    assert outcome.log == []
    check(server, outcome, rss_growth_mb=40)


def test_head_and_options(server):
    outcome = served.attack(server, "HEAD and OPTIONS", attacks.head_and_options)
    assert outcome.answers == [
        (200, {"body": "", "allow": None}),
        (200, {"body": "", "allow": None}),
        (200, {"body": "", "allow": None}),
        (204, {"body": "", "allow": "OPTIONS, POST"}),
        (204, {"body": "", "allow": "GET, HEAD, OPTIONS"}),
        (404, {"body": {"error": "Not Found"}, "allow": None}),
    ]
    check(server, outcome, rss_growth_mb=40)


def test_clients_that_never_read_their_answers_lock_nobody_out(server):
    """Pipelined requests whose answers are never read hold their connections busy; past the connection cap
    the stalled ones are the first to go, and each is dropped once it has read nothing for --client-timeout."""
    cap = NOFILE - 160  # the connection cap the open-file limit leaves
    outcome = served.attack(server, "never read", attacks.never_read(2 * cap, pipelined=1000, seconds=8))
    opened, dropped = dict(outcome.answers)["opened"], dict(outcome.answers)["dropped by the server"]
    assert opened == 2 * cap and dropped == opened, outcome.answers
    check(server, outcome, rss_growth_mb=60)


def test_text_in_pngs_is_bounded_before_any_pixel(server):
    """8 PNGs of 4 KB each, whose compressed text is 8 x 64 K characters of 4 bytes: each refused with one line
    as its header is read (Pillow's text bound), the memory of one image's bounded text at most."""
    outcome = served.attack(server, "PNG text", attacks.png_text(8, 8))
    [(status, body)] = outcome.answers
    assert status == 200 and len(body["results"]) == 8
    assert all("Too much memory used in text chunks" in row["error"] for row in body["results"]), body["results"][0]
    check(server, outcome, rss_growth_mb=40)


def test_a_chunked_body_that_declares_a_length_is_refused(server):
    """Transfer-Encoding with Content-Length (RFC 9112 6.3): 400, never charged as the 1 byte it declares."""
    outcome = served.attack(server, "chunked with length", attacks.chunked_with_length(12, 3 << 20))
    assert outcome.answers == [(400, {"error": "both Transfer-Encoding and Content-Length: send one"})] * 12
    check(server, outcome, rss_growth_mb=40)


def test_json_of_many_containers_is_refused_unparsed(server):
    outcome = served.attack(server, "JSON containers", attacks.json_containers(3 << 20))
    [(status, body)] = outcome.answers
    assert status == 413 and body["errorMsg"] == "the JSON body holds over 16 objects and arrays", body
    check(server, outcome, rss_growth_mb=40)


def test_a_jpeg_of_many_scans_is_refused_undecoded(server):
    outcome = served.attack(server, "JPEG scans", attacks.jpeg_scans(4, 1000))
    for status, body in outcome.answers:
        assert status == 400 and "a JPEG of 1,00" in body["error"] and "scans" in body["error"], body
    check(server, outcome, rss_growth_mb=40)


def test_heavy_drawings_and_explanations_do_not_starve_a_small_drawing(server):
    """Rendering and explaining are charged by their time, so the heaviest go behind a bystander's drawing
    instead of ahead of it (they were charged less than any picture)."""
    for name, run in (
        ("heavy drawings", attacks.heavy_drawings(32)),
        ("explanations", attacks.explanations(16)),
    ):
        outcome = served.attack(server, name, run)
        assert all(status in (200, 503) for status, _ in outcome.answers), outcome.answers[:3]
        check(server, outcome, rss_growth_mb=60)


def test_upgrade_headers_cost_no_log_lines_and_get_json(server):
    outcome = served.attack(server, "upgrades", attacks.upgrades(200))
    assert outcome.answers == [("upgrade", {200: 200}), ("websocket", (404, {"error": "Not Found"}))]
    check(server, outcome, rss_growth_mb=40)


def test_a_head_over_16_kb_is_refused_even_in_one_write(server):
    outcome = served.attack(server, "big head", attacks.big_head(100_000))
    assert outcome.answers == [(400, {"error": "invalid HTTP request (malformed, or a head over 16 KB)"})]
    check(server, outcome, rss_growth_mb=40)


def test_a_body_sent_a_byte_at_a_time_is_refused(server):
    outcome = served.attack(server, "body in bytes", attacks.body_in_bytes(4, 5))
    message = "the request body arrives in pieces of under 1,024 bytes on average"
    assert outcome.answers == [(400, {"error": message})] * 4
    check(server, outcome, rss_growth_mb=40)


def test_requests_http_cannot_parse_get_the_json_error(server):
    outcome = served.attack(server, "invalid HTTP", attacks.invalid_http)
    for status, body in outcome.answers:
        assert status == 400 and isinstance(body, dict), (status, body)
        assert body["error"] in ("invalid HTTP request (malformed, or a head over 16 KB)", "malformed Content-Length")
    check(server, outcome, rss_growth_mb=40)


def test_a_body_that_stops_arriving_gets_408(server):
    outcome = served.attack(server, "slow body", attacks.slow_body)
    assert outcome.answers == [(408, {"error": "the request body did not arrive within 2 s"})]
    check(server, outcome, rss_growth_mb=40)


# --- in this process: failures that no client can cause on purpose ------------------------------------


class Engine:
    """A stand-in for the model's engine that fails or dawdles."""

    def __init__(self, fail: bool = False, seconds: float = 0.0):
        self.fail, self.seconds = fail, seconds

    def __call__(self, batch):
        import time

        import numpy as np

        if self.fail:
            raise RuntimeError("the model broke\nsecond line")
        time.sleep(self.seconds)
        return np.full((len(batch), 10), 0.1, np.float32)


def app_with(trained_dir, engine, **limits):
    from paddle_mnist.predict import Predictor
    from paddle_mnist.serve import app as serve
    from paddle_mnist.serve.limits import Limits

    predictor = replace(Predictor.from_dir(trained_dir), forward=engine)
    return serve.create_app(predictor, limits=Limits(**limits))


def test_an_unexpected_exception_is_a_json_500_and_one_log_line(trained_dir, caplog):
    from fastapi.testclient import TestClient

    app = app_with(trained_dir, Engine(fail=True))
    with caplog.at_level(logging.INFO, logger="paddle_mnist.serve"), TestClient(app) as client:
        response = client.post("/api/predict", content=served.drawn_seven(), headers={"content-type": "image/png"})
    assert response.status_code == 500 and response.json() == {"error": "internal error: RuntimeError"}
    [record] = [r for r in caplog.records if r.name == "paddle_mnist.serve"]
    assert record.getMessage() == "POST /api/predict: RuntimeError: the model broke second line"
    assert not record.exc_info, "the traceback only with --debug"


def test_a_request_past_its_deadline_is_503_with_retry_after(trained_dir):
    from fastapi.testclient import TestClient

    app = app_with(trained_dir, Engine(seconds=1.5), request_timeout=0.5)
    with TestClient(app) as client:
        response = client.post("/api/predict", content=served.drawn_seven(), headers={"content-type": "image/png"})
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.json() == {"error": "busy: no answer within the 0.5 s request deadline; retry later"}
        asyncio.run(asyncio.sleep(1.2))  # the dropped forward pass ends; the next request is answered
        assert client.get("/healthz").json() == {"status": "ok"}


class Socketless(asyncio.Transport):
    """A connection's transport without a socket: what the protocol needs to be made, evicted and closed."""

    def __init__(self):
        super().__init__()
        self.closed = False

    def get_extra_info(self, name, default=None):
        return default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def write(self, data) -> None:
        pass


def test_a_connection_past_the_cap_makes_room_as_soon_as_it_is_accepted():
    # asyncio makes a burst's protocols a loop iteration before their connection_made; the longest-idle
    # connection closed then is freed before the next bursts are accepted (serve.protocol.GuardedH11Protocol)
    import uvicorn
    from uvicorn.server import ServerState

    from paddle_mnist.serve import protocol
    from paddle_mnist.serve.limits import Limits

    async def scenario():
        config = uvicorn.Config(lambda scope, receive, send: None, ws="none")
        guarded = protocol.guarded_protocol(Limits(max_connections=2), lambda *_: {})
        state = ServerState()

        def accepted():
            return guarded(config=config, server_state=state, app_state={})

        old, recent = accepted(), accepted()
        old.connection_made(Socketless())
        await asyncio.sleep(0.01)
        recent.connection_made(Socketless())
        assert not old.transport.is_closing()
        new = accepted()
        assert old.transport.is_closing() and not recent.transport.is_closing(), "closed as it was made"
        new.connection_made(Socketless())
        assert not new.transport.is_closing() and not recent.transport.is_closing(), "nobody else is closed"

    asyncio.run(scenario())


def test_the_kernel_queues_a_flood_of_connections_instead_of_dropping_them():
    # listened BACKLOG deep, the 66th connection not yet accepted had its SYN dropped (resent after 1 s); the
    # server deepens the queue once listening (serve.command.deepen_queues), asyncio still accepting 64 at once
    import socket
    from types import SimpleNamespace

    from paddle_mnist.serve import command

    with socket.create_server(("127.0.0.1", 0), backlog=command.BACKLOG) as listening:
        command.deepen_queues(SimpleNamespace(servers=[SimpleNamespace(sockets=[listening])]))
        clients = [socket.socket() for _ in range(3 * command.BACKLOG)]
        try:
            for client in clients:
                client.settimeout(0.5)
                client.connect(listening.getsockname())  # completes only if the kernel queued it
        finally:
            for client in clients:
                client.close()
