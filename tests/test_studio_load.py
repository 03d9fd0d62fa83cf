"""The studio under load (issue 30): eight people on `rewas ui` at once through a real client (`gradio_client`),
each uploading, editing and generating. Every session gets its own take, bit for bit what the Python API gives
for its clip and edits; the queue bound and the take time limit hold; memory stays bounded; and no route the
server exposes gives one session another's files, or any file outside the upload cache and the examples."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import studio_server

from rewas import samples

SESSIONS = 8
STATUS, RESULT, FILES = 1, 6, 7  # the outputs: curve, status, takes, prompt, negative, seed, result, files, ...


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    pytest.importorskip("gradio_client")
    base = tmp_path_factory.mktemp("load")
    server = studio_server.start(base, "--queue", "8", "--job-seconds", "6")
    yield server, base
    server.stop()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """One clip per session, each its own length and rhythm, so that a take in the wrong session shows."""
    folder = tmp_path_factory.mktemp("clips")
    paths = []
    for i in range(SESSIONS):
        paths.append(folder / f"clip{i}.mp4")
        seconds = 1.0 + 0.2 * i
        samples.write_video(paths[-1], samples.bouncing_ball_frames(bounce_period=0.3 + 0.05 * i), seconds, 25)
    return paths


def _client(url: str, folder: Path):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=str(folder))


def _session(url: str, folder: Path, clip: Path, i: int) -> dict:
    """What one person does: open their clip, mute a part of its curve, take one take."""
    from gradio_client import handle_file

    client = _client(url, folder)
    opened = client.predict(handle_file(str(clip)), "debug", api_name="/open_video")[STATUS]
    edited = client.predict("mute", 0.1 * i, 0.1 * i + 0.4, 0, api_name="/edit_range")[STATUS]
    out = client.predict("a ball bouncing", "", 100 + i, 2, 3.0, api_name="/generate")
    wav = next(f for f in out[FILES] if str(f).endswith(".wav"))
    return {"opened": opened, "edited": edited, "status": out[STATUS], "video": out[RESULT], "wav": wav}


def _round(url: str, folder: Path, clips: list[Path]) -> list[dict]:
    """Every session at once, each with its own clip."""
    with ThreadPoolExecutor(SESSIONS) as pool:
        return list(pool.map(lambda i: _session(url, folder / str(i), clips[i], i), range(SESSIONS)))


def _expected(clip: Path, i: int) -> np.ndarray:
    from rewas import ReWaSPipeline

    pipe = ReWaSPipeline.from_pretrained("debug", dtype="auto")  # as `rewas ui` loads it by default
    mute = f"mute {0.1 * i:g}-{0.1 * i + 0.4:g}"
    return pipe(str(clip), prompt="a ball bouncing", edits=[mute], seed=100 + i, steps=2, guidance=3.0).waveform


def test_eight_sessions_at_once_each_get_their_own_take(ui, clips):
    server, base = ui
    runs = _round(server.url, base / "round0", clips)
    for i, run in enumerate(runs):
        assert run["opened"].startswith(f"{1.0 + 0.2 * i:.2f} s."), run
        assert run["edited"] == "1 edit(s) on the video (φ).", run
        assert run["status"].startswith(f"Take 1: seed {100 + i}"), run
        audio, sr = sf.read(run["wav"], dtype="float32")
        assert np.array_equal(audio, _expected(clips[i], i)), f"session {i}: not its own clip's take"
    # more rounds of new sessions do not grow the server: sessions, takes and the allocator's arenas are bounded
    after = [server.memory_mb()]
    for again in (1, 2):
        _round(server.url, base / f"round{again}", clips)
        after.append(server.memory_mb())
    print(f"\nserver memory after each round of {SESSIONS} sessions: {after} MiB, peak {server.memory_mb('VmHWM')}")
    if after[0] is not None:
        # a leak of some 12 MiB per session fails; the allocator's slower growth (docs/reliability.md) is measured
        # there, since one run's noise here (+14 to +82 MiB over two rounds) is of its size
        assert after[-1] - after[0] < 200 and server.memory_mb("VmHWM") < 2048, after
    assert "Traceback" not in server.log.read_text()


def test_the_queue_bound_and_the_take_limit_hold(ui, clips, tmp_path):
    """More takes than the queue holds, at once: the extra ones are refused in one line, the rest are done; a
    take longer than --job-seconds stops at the limit with one line, and the server goes on."""
    from gradio_client import handle_file

    server, base = ui
    client = _client(server.url, base / "queue")
    client.predict(handle_file(str(clips[0])), "debug", api_name="/open_video")
    jobs = [client.submit("a ball", "", 7, 20, 3.0, api_name="/generate") for _ in range(14)]
    done, refused = [], []
    for job in jobs:
        try:
            done.append(job.result(timeout=300)[STATUS])
        except Exception as e:  # gradio_client's error for a full queue
            refused.append(str(e))
    assert refused and all("queue" in r.lower() and "\n" not in r.strip() for r in refused), refused
    assert len(done) >= 9 and all(d.startswith("Take ") for d in done), done
    long = tmp_path / "long.mp4"  # 200 steps over 6 s take some 15 s on a 2-core CPU
    samples.write_video(long, samples.bouncing_ball_frames(bounce_period=0.4), 6.0, 25)
    client.predict(handle_file(str(long)), "debug", api_name="/open_video")
    status = client.predict("a ball", "", 7, 200, 3.0, api_name="/generate")[STATUS]
    assert "ran past this studio's limit of 6 s" in status and "\n" not in status.strip(), status
    assert client.predict("a ball", "", 7, 2, 3.0, api_name="/generate")[STATUS].startswith("Take ")
    assert "Traceback" not in server.log.read_text()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def test_no_route_reads_another_sessions_files_or_any_file_outside(ui, clips, tmp_path):
    """Another session's take by its path in the studio's folder, files outside (by absolute path, by ../ and
    its encodings), and a payload naming a server-side file instead of an upload: all refused."""
    from gradio_client import handle_file

    server, base = ui
    mine = _session(server.url, base / "mine", clips[0], 0)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the page")
    session_files = [p for p in server.tmp.rglob("take*.wav") if "gradio" not in p.parts]
    assert session_files  # the takes in the studio's own session folders
    targets = [str(session_files[0]), str(secret), "/etc/passwd"]
    api = server.url + "gradio_api/file="
    for target in targets:
        up = "../" * 8 + target.lstrip("/")
        for spelled in (
            target,
            urllib.parse.quote(target),
            up,
            urllib.parse.quote(up, safe=""),
            up.replace("/", "%2f"),
        ):
            for route in (api, server.url + "file=", server.url + "gradio_api/file/"):  # and older spellings
                code, body = _get(route + spelled)
                assert code >= 400 and b"not for the page" not in body and b"root:" not in body, (route, spelled, code)
    # the page's own download of a take works (the route is not simply closed)
    served = next(p for p in server.tmp.rglob("*.wav") if "gradio" in p.parts)
    assert _get(api + str(served))[0] == 200
    # a call that names a file on the server instead of uploading one
    for target in (str(secret), "/etc/passwd", str(session_files[0])):
        body = json.dumps({"data": [{"path": target, "meta": {"_type": "gradio.FileData"}}, "debug"]}).encode()
        request = urllib.request.Request(server.url + "gradio_api/call/open_video", body,
                                         {"Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                event = json.loads(r.read())["event_id"]
            code, stream = _get(server.url + f"gradio_api/call/open_video/{event}")
        except urllib.error.HTTPError as e:
            code, stream = e.code, b""
        assert b"not for the page" not in stream and b"root:" not in stream, stream[:300]
        assert b"error" in stream or code >= 400 or b"only uploaded files" in stream, stream[:300]
    client = _client(server.url, base / "other")
    client.predict(handle_file(str(clips[1])), "debug", api_name="/open_video")
    assert mine["status"].startswith("Take 1")
