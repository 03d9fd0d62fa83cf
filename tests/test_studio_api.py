"""The studio's API as a client meets it (`gradio_client` against `rewas ui`, started as a user starts it): named,
typed endpoints; the main flow (open, edit, draw, take, re-open); a rejected call answered in one line with no
traceback in the server's log; and nothing of the server's left in its temporary folder after SIGTERM."""

from __future__ import annotations

from pathlib import Path

import pytest
import studio_server

from rewas import samples

ROOT = Path(__file__).resolve().parents[1]
ENDPOINTS = {
    "/open_video": ["video", "model"],
    "/switch_model": ["video", "model"],
    "/use_reference": ["recording"],
    "/use_video_energy": [],
    "/generate": ["prompt", "negative_prompt", "seed", "steps", "guidance"],
    "/edit_range": ["op", "start", "end", "amount"],
    "/undo": [],
    "/reset": [],
    "/draw": ["curve_value"],
    "/reopen_take": ["number"],
}
STATUS = 1  # the outputs: curve, status, takes, prompt, negative, seed, result, files, re-open choices


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`rewas ui --model debug` with its own temporary folder (TMPDIR), so that what it leaves can be seen."""
    gradio_client = pytest.importorskip("gradio_client")
    base = tmp_path_factory.mktemp("api")
    ui = studio_server.start(base)
    client = gradio_client.Client(ui.url, verbose=False, download_files=str(base / "downloads"))
    yield client, ui.proc, ui.log, ui.tmp
    ui.stop()


def test_every_endpoint_is_named_and_typed(server):
    client, *_ = server
    api = client.view_api(return_format="dict", print_info=False)
    named = {name: [p["parameter_name"] for p in e["parameters"]] for name, e in api["named_endpoints"].items()}
    assert named == ENDPOINTS
    assert not api["unnamed_endpoints"]
    types = {p["parameter_name"]: p["python_type"]["type"] for p in api["named_endpoints"]["/generate"]["parameters"]}
    assert types == {"prompt": "str", "negative_prompt": "str", "seed": "int", "steps": "float", "guidance": "float"}
    reopen = api["named_endpoints"]["/reopen_take"]["parameters"][0]["python_type"]["type"]
    assert reopen == "int"  # before: the page's list of takes, a string (empty at the start)


def test_the_main_flow_through_the_api(server, tmp_path):
    from gradio_client import handle_file

    client, *_ = server
    video = tmp_path / "ball.mp4"
    samples.write_video(video, samples.bouncing_ball_frames(bounce_period=0.5), 2.0, 25)
    assert client.predict(handle_file(str(video)), "debug", api_name="/open_video")[STATUS].startswith("2.00 s.")
    assert client.predict("mute", 0.5, 1.0, 0, api_name="/edit_range")[STATUS] == "1 edit(s) on the video (φ)."
    stroke = {"stroke": [[0.1, -5.0], [0.3, -3.0], [0.4, -4.0]]}
    assert client.predict(stroke, api_name="/draw")[STATUS] == "2 edit(s) on the video (φ)."
    out = client.predict("a click", "", 7, 2, 3.0, api_name="/generate")
    assert out[STATUS].startswith("Take 1: seed 7") and Path(out[6]).stat().st_size > 0
    assert client.predict(1, api_name="/reopen_take")[STATUS].startswith("Take 1 re-opened")
    assert client.predict(api_name="/undo")[STATUS] == "1 edit(s) on the video (φ)."


@pytest.mark.parametrize(
    "args, endpoint, message",
    [
        (("notanop", 0.0, 1.0, 0.0), "/edit_range", "Value: notanop is not in the list of choices"),
        (("a click", "", "abc", 2, 3.0), "/generate", "seed (-1: random): cannot use 'abc'"),
        (("x",), "/reopen_take", "a take is a number, not 'x'"),
        ((99,), "/reopen_take", "there is no take 99"),
        (({"stroke": "not points"},), "/draw", "the drawn stroke was not a list of (time, energy) points"),
        (("   ", "", 0, 2, 3.0), "/generate", "prompt is empty"),
    ],
)
def test_a_rejected_call_gets_one_line_and_the_log_no_traceback(server, args, endpoint, message):
    """A value a component cannot read is refused by gradio before the studio sees it (an AppError carrying the
    line); one the studio refuses comes back as the status line. Either way one line, and no traceback."""
    client, _, log, _ = server
    try:
        text = client.predict(*args, api_name=endpoint)[STATUS]
    except Exception as e:  # gradio_client's AppError
        text = str(e)
    assert message in text and "\n" not in text.strip()
    assert "Traceback" not in log.read_text()
