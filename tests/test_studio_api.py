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
    "/show_picture": ["at"],
    "/use_region": ["box", "at", "prompt"],
    "/use_level": ["level"],
    "/add_layer": ["prompt", "negative_prompt", "gain_db", "pan", "follows"],
    "/update_layer": ["number", "prompt", "negative_prompt", "gain_db", "pan", "follows"],
    "/select_layer": ["number"],
    "/mix_layer": ["number", "mute", "solo"],
    "/remove_layer": ["number"],
    "/generate_mix": ["seed", "steps", "guidance"],
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


def test_layers_through_the_api(server, tmp_path):
    """A region typed as a box, a flat ambience, the mix: its stereo WAV, each stem and the soundtrack file."""
    import soundfile as sf
    from gradio_client import handle_file

    client, *_ = server
    video = tmp_path / "two.mp4"
    samples.write_video(video, samples.two_objects_frames([0.5, 1.2], [0.8, 1.6]), 2.0, 25)
    client.predict(handle_file(str(video)), "debug", api_name="/open_video")
    assert client.predict("0.17,0.15,0.33,0.38", 0, "a ball", api_name="/use_region")[STATUS].endswith(
        "on the region 0.17,0.15,0.33,0.38."
    )
    assert client.predict("a ball", "", -3, 0, True, api_name="/add_layer")[STATUS].startswith("Layer 1 added")
    client.predict(-5, api_name="/use_level")
    assert client.predict("wind", "", 0, 0.5, True, api_name="/add_layer")[STATUS].startswith("Layer 2 added")
    assert client.predict(2, True, False, api_name="/mix_layer")[STATUS] == "Layer 2: muted. The mix hears layer 1."
    client.predict(2, False, False, api_name="/mix_layer")
    out = client.predict(5, 2, 3.0, api_name="/generate_mix")
    assert out[STATUS].startswith("Mix 1: 2 layer(s), stereo")
    names = sorted(Path(f).name for f in out[7])
    assert names == sorted(["mix001-seed5.mp4", "mix001-seed5.wav", "mix001-seed5-01_a_ball.wav",
                            "mix001-seed5-01_a_ball.csv", "mix001-seed5-02_wind.wav", "mix001-seed5-02_wind.csv",
                            "mix001-seed5-soundtrack.json"])  # fmt: skip
    assert sf.read(next(f for f in out[7] if f.endswith("mix001-seed5.wav")))[0].shape == (32000, 2)
    message = client.predict("0.6,0.02,0.9,0.2", 0, "", api_name="/use_region")[STATUS]  # the plain wall
    assert message.endswith("on the region 0.60,0.02,0.90,0.20 (stays put). Nothing in the box stands out from "
                            "around it, and it lies on no object that does, so the box stays where it was drawn "
                            "(draw it around the whole object for it to follow the object)."), message  # fmt: skip
    message = client.predict("0.5,0.2,0.1", 0, "", api_name="/use_region")[STATUS]
    assert message.startswith("⚠️ box '0.5,0.2,0.1': give left,top,right,bottom"), message
    message = client.predict("0.5,0.2,1.3,0.9", 0, "", api_name="/use_region")[STATUS]
    assert "is not inside the frame" in message, message


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
