"""`rewas batch`: bad items recorded without stopping the rest, resuming after kill -9 at any moment, and two ranks
under `accelerate launch` giving what one rank gives."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from rewas import batch, files, samples
from rewas.cli import main
from rewas.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _videos(folder: Path, count: int, seconds: float = 1.0) -> list[Path]:
    paths = []
    for i in range(count):
        paths.append(folder / f"clip{i:02d}.mp4")
        samples.write_video(paths[-1], samples.flash_frames([0.2 + 0.05 * i], size=(32, 40)), seconds, 25)
    return paths


def _manifest(folder: Path, rows: list[dict]) -> Path:
    path = folder / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _playable_with_audio(path: Path) -> bool:
    with av.open(str(path)) as c:
        return bool(c.streams.video) and sum(f.samples for f in c.decode(audio=0)) > 0


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    good = _videos(folder, 10)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    return folder, good


def test_twelve_items_two_bad_ten_done_and_a_nonzero_exit(clips, tmp_path, capsys):
    folder, good = clips
    rows = [{"video": str(p), "prompt": "a click"} for p in good]
    rows.insert(3, {"video": str(folder / "nowhere.mp4"), "prompt": "a click"})
    rows.insert(7, {"video": str(folder / "broken.mp4"), "prompt": "a click"})
    out = tmp_path / "out"
    code = main(["batch", str(_manifest(tmp_path, rows)), "-o", str(out), "--model", "debug", "--steps", "1", "--wav"])
    err = capsys.readouterr().err
    assert code == 1 and "10 done, 2 failed, 0 not done (12 items" in err
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(results) == 12 and sorted(r["status"] for r in results).count("ok") == 10
    failed = {r["name"]: r["error"] for r in results if r["status"] == "failed"}
    assert set(failed) == {"nowhere", "broken"} and "no such video" in failed["nowhere"]
    assert all("\n" not in e and "Traceback" not in e for e in failed.values())
    for r in results:
        if r["status"] == "ok":
            assert _playable_with_audio(out / r["output"]) and sf.info(str(out / r["wav"])).frames == 16000
    assert not [p for p in out.iterdir() if p.name.startswith(".rewas")]  # no temporary file left behind
    # the results are a `rewas evaluate` manifest: the failed lines are left out
    report_path = tmp_path / "report.json"
    code = main(["evaluate", str(out / "results.jsonl"), "--out", str(report_path), "--metrics", "av_align"])
    report = json.loads(report_path.read_text())
    assert code == 0 and len(report["items"]) == 10


def test_an_item_never_writes_over_its_own_inputs(clips, tmp_path, capsys):
    """As `rewas generate` refuses to: an item's curve that --energy-out would replace, its reference recording
    that --wav would, a layer's curve inside its stems folder, the folder of videos as its own output folder. All
    before any work, in one line, the files as they were."""
    folder, good = clips
    out = tmp_path / "out"
    (out / "b.stems").mkdir(parents=True)
    curve, ref, inner = out / "a.csv", out / "r.wav", out / "b.stems" / "01_rain.csv"
    for path in (curve, inner):
        path.write_text("time_s,energy\n0,-5\n1,-6\n")
    sf.write(ref, np.zeros(1600, np.float32), 16000)
    before = {p: p.read_bytes() for p in (curve, ref, inner)}
    layered = {"name": "b", "video": str(good[1]), "layers": [{"prompt": "rain", "energy_in": str(inner)}]}
    cases = [
        ([{"name": "a", "video": str(good[0]), "prompt": "x", "energy_in": str(curve)}], ["--energy-out"], "a.csv"),
        ([{"name": "r", "video": str(good[0]), "prompt": "x", "reference": str(ref)}], ["--wav"], "r.wav"),
        ([layered], [], "its stems folder b.stems would replace its input"),
    ]
    for rows, flags, words in cases:
        code = main(["batch", str(_manifest(tmp_path, rows)), "-o", str(out), "--model", "debug", *flags])
        err = capsys.readouterr().err
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert {p: p.read_bytes() for p in before} == before and not (out / "results.jsonl").exists()
    # without --wav the reference is nobody's output: the item goes ahead
    items = batch.read_items(_manifest(tmp_path, cases[1][0]))
    batch.check_outputs(tmp_path / "items.jsonl", items, out, wav=False, energy=True)
    code = main(["batch", str(folder), "-o", str(folder), "--prompt", "x", "--model", "debug"])
    err = capsys.readouterr().err
    assert code == 2 and "is the folder of the videos" in err, err


def test_items_from_a_folder_a_csv_and_bad_manifests(clips, tmp_path):
    folder, good = clips
    (folder / "clip01.txt").write_text("a bell\n")
    items = batch.read_items(folder, prompt="a click")
    assert [i.name for i in items][:3] == ["broken", "clip00", "clip01"] and items[2].prompt == "a bell"
    csv_path = tmp_path / "items.csv"
    csv_path.write_text(f"video,prompt,seed,steps,negative_prompt\n{good[0]},rain,7,3,wind\n{good[1]},wind,,,\n")
    a, b = batch.read_items(csv_path)
    assert (a.seed, a.steps, b.seed, b.steps) == (7, 3, None, None)
    assert (a.negative_prompt, b.negative_prompt) == ("wind", "")
    assert batch.item_seed(0, "clip01") == batch.item_seed(0, "clip01") != batch.item_seed(1, "clip01")
    cases = {
        "not json": "{video",
        "no video": '{"prompt": "x"}',
        "bad seed": f'{{"video": "{good[0]}", "prompt": "x", "seed": 1.5}}',
        "unknown field": f'{{"video": "{good[0]}", "prompt": "x", "colour": 1}}',
        "same name": f'{{"video": "{good[0]}", "prompt": "x"}}\n{{"video": "{good[0]}", "prompt": "y"}}',
        "names told apart by case only": f'{{"video": "{good[0]}", "prompt": "x", "name": "A"}}\n'
        f'{{"video": "{good[0]}", "prompt": "y", "name": "a"}}',  # one file on macOS and Windows
        "empty": "\n",
    }
    for what, text in cases.items():
        path = tmp_path / "bad.jsonl"
        path.write_text(text + "\n")
        with pytest.raises(UserError):
            batch.read_items(path)
            pytest.fail(what)


def _batch_cmd(manifest: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rewas", "batch", str(manifest), "-o", str(out), "--model", "debug", "-q", *extra]


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_kill_9_at_random_moments_then_rerun_does_every_item_once(clips, tmp_path):
    """Runs killed with SIGKILL at random moments (once while loading, three times a random fraction of an item
    after the 1st-2nd next item is recorded), then one run to the end: every item is done, the ones already
    recorded as done are never generated again, and every output is a valid video with audio."""
    _, good = clips
    manifest = _manifest(tmp_path, [{"video": str(p), "prompt": "a click"} for p in good])
    out = tmp_path / "out"
    results = out / "results.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(0)
    first_done: dict[str, int] = {}  # item -> mtime of its video when it was first seen done
    for trial in range(4):
        # one clip per group, so that items are recorded one by one and the kills can land between them
        cmd = _batch_cmd(manifest, out, "--steps", "3", "--batch-size", "1")
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
        if trial == 0:
            time.sleep(rng.uniform(0.5, 2.5))  # still importing or loading the model
        else:
            target, deadline = _lines(results) + rng.randint(1, 2), time.monotonic() + 120
            while _lines(results) < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.4))  # somewhere inside the next item
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for name, row in batch.read_results(out).items():
            if batch.is_done(row, out):
                first_done.setdefault(name, (out / row["output"]).stat().st_mtime_ns)
    assert 3 <= len(first_done) < len(good), first_done  # the kills landed mid-run
    final = subprocess.run(_batch_cmd(manifest, out, "--steps", "3"), env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(r["name"] for r in rows) == [p.stem for p in good]
    assert {r["status"] for r in rows} == {"ok"}
    for r in rows:
        assert _playable_with_audio(out / r["output"])
        if r["name"] in first_done:  # done before a kill: not generated again
            assert (out / r["output"]).stat().st_mtime_ns == first_done[r["name"]]
    assert not [p for p in out.iterdir() if p.name.startswith(".rewas")]


def test_sigterm_stops_cleanly_and_the_rerun_finishes(clips, tmp_path):
    """SIGTERM (a scheduler's time limit, `kill`) inside an item: exit 143 with one line, no temporary file left,
    every recorded item whole; the same command then does the rest."""
    _, good = clips
    manifest = _manifest(tmp_path, [{"video": str(p), "prompt": "a click"} for p in good[:5]])
    out = tmp_path / "out"
    results = out / "results.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(_batch_cmd(manifest, out, "--steps", "3", "--batch-size", "1"), env=env,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while _lines(results) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.strip().splitlines()[-1] == "rewas: terminated", err
    assert not [p for p in out.iterdir() if p.name.startswith(".rewas")]
    done = {n for n, row in batch.read_results(out).items() if batch.is_done(row, out)}
    assert 2 <= len(done) < 5
    for name in done:
        assert _playable_with_audio(out / batch.read_results(out)[name]["output"])
    final = subprocess.run(_batch_cmd(manifest, out, "--steps", "3"), env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert sorted(json.loads(x)["name"] for x in results.read_text().splitlines()) == [p.stem for p in good[:5]]


def test_stale_temps_of_dead_processes_go_and_live_ones_stay(tmp_path):
    """What a SIGKILLed run left (a file and a folder) goes; a live process's temp (another rank still writing)
    and another host's stay."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    prefix = files.temp_prefix()
    mine = tmp_path / f"{prefix}abc.mp4"
    theirs = tmp_path / files.temp_prefix(dead.pid)
    left_file, left_dir = Path(f"{theirs}x.wav"), Path(f"{theirs}dir")
    other_host = tmp_path / f"{files.TEMP_PREFIX}elsewhere-{dead.pid}-y.mp4"
    for p in (mine, left_file, other_host):
        p.write_bytes(b"partial")
    left_dir.mkdir()
    (left_dir / "audio.wav").write_bytes(b"partial")
    assert sorted(files.remove_stale_temps(tmp_path)) == sorted([left_file, left_dir])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other_host.name])


class _FakeKernel32:
    """Windows' process queries, for the processes `live` (anything else has exited)."""

    def __init__(self, live: set[int]):
        self.live, self.handles, self.closed = live, {}, []

    def OpenProcess(self, access, inherit, pid):  # noqa: N802 (the Win32 name)
        assert access == 0x1000  # query only: never a right to terminate
        self.handles[len(self.handles) + 1] = pid
        return len(self.handles)

    def GetExitCodeProcess(self, handle, code):  # noqa: N802
        code._obj.value = 259 if self.handles[handle] in self.live else 0
        return 1

    def CloseHandle(self, handle):  # noqa: N802
        self.closed.append(handle)

    def GetLastError(self):  # noqa: N802
        return 0


def test_on_windows_the_stale_temp_cleanup_never_signals_a_process(tmp_path, monkeypatch):
    """On Windows os.kill(pid, 0) terminates the process it was meant to probe: liveness is asked with
    OpenProcess + GetExitCodeProcess, and the handles are closed."""
    import functools

    def no_kill(pid, sig):
        raise AssertionError(f"os.kill({pid}, {sig}) on Windows terminates the process")

    kernel32 = _FakeKernel32(live={os.getpid()})
    monkeypatch.setattr(files, "_WINDOWS", True)
    monkeypatch.setattr(os, "kill", no_kill)
    monkeypatch.setattr(files, "_windows_alive", functools.partial(files._windows_alive, kernel32=kernel32))
    mine, gone = tmp_path / f"{files.temp_prefix()}a.mp4", tmp_path / f"{files.temp_prefix(2**22 + 1)}b.mp4"
    for p in (mine, gone):
        p.write_bytes(b"partial")
    assert files.remove_stale_temps(tmp_path) == [gone]
    assert [p.name for p in tmp_path.iterdir()] == [mine.name] and len(kernel32.closed) == 2


def test_two_ranks_equal_one_rank(clips, tmp_path):
    _, good = clips
    manifest = _manifest(tmp_path, [{"video": str(p), "prompt": "a click"} for p in good[:5]])
    # accelerate runs each CPU rank on one thread; the single rank too, and one clip per denoiser call on both
    # sides, so that every sum is taken in the same order (other batch shapes differ by float rounding only)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = ("--steps", "2", "--wav", "--batch-size", "1")
    one = subprocess.run(_batch_cmd(manifest, tmp_path / "one", *args), env=env, capture_output=True)
    assert one.returncode == 0, one.stderr
    # torchrun: `accelerate launch --cpu` starts one process whatever --num_processes says (two ranks are checked
    # below through each rank's log line)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "rewas"]
    two = subprocess.run(
        launch + _batch_cmd(manifest, tmp_path / "two", *args)[3:],
        env=env,
        capture_output=True,
        text=True,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    assert "(5 items on 2 ranks;" in two.stderr
    assert [p.name for p in (tmp_path / "two").glob("results*.jsonl")] == ["results.jsonl"]  # rank files merged
    rows = {json.loads(line)["name"]: json.loads(line) for line in (tmp_path / "two" / "results.jsonl").open()}
    assert sorted(rows) == [f"clip{i:02d}" for i in range(5)]
    for name in rows:
        a, _ = sf.read(tmp_path / "one" / f"{name}.wav")
        b, _ = sf.read(tmp_path / "two" / f"{name}.wav")
        assert np.array_equal(a, b), name


def test_prefetching_and_sampling_clips_together_change_nothing(debug_pipe, clips, tmp_path):
    """The worker thread that prepares the next items (video, phi) while others are sampled, and clips sampled
    together (their windows in one denoiser batch, with their own prompts), give the audio that the pipeline gives
    each clip on its own at the item's seed. An energy_in curve is read on the video's clock, as `generate
    --energy-in` reads it: not stretched to the video."""
    _, good = clips
    curve = tmp_path / "curve.csv"
    curve.write_text("time_s,energy\n0,-9\n0.25,-2\n0.5,-9\n")  # half the 1 s clip, its peak at 0.25 s
    items = [batch.Item(name=p.stem, video=str(p), prompt=text) for p, text in zip(good[:3], ("a click", "rain", "x"))]
    items[1].energy_in = str(curve)
    items[2].negative_prompt = "a bell"
    options = batch.Options(steps=2, wav=True, energy=True, batch_size=3)
    wavs = {}
    for prefetch, group in ((True, 3), (False, 1), (True, 2)):
        out = tmp_path / f"prefetch_{prefetch}_{group}"
        rows = batch.run(debug_pipe, items, out, options, prefetch=prefetch, group=group)
        assert [r["status"] for r in rows] == ["ok"] * 3 and rows[0]["group"] == group
        wavs[prefetch, group] = [sf.read(out / f"{it.name}.wav", dtype="float32")[0] for it in items]
    from rewas.energy import read_csv

    times, values = read_csv(out / f"{items[1].name}.csv")
    assert times[np.argmax(values)] == pytest.approx(0.25, abs=0.02) and values[times > 0.6].max() == pytest.approx(-9)

    for i, item in enumerate(items):
        energy = read_csv(item.energy_in) if item.energy_in else None
        seed = batch.item_seed(0, item.name)
        negative = item.negative_prompt
        alone = debug_pipe(item.video, prompt=item.prompt, negative_prompt=negative, energy=energy, steps=2, seed=seed,
                           batch_size=1)  # fmt: skip
        assert np.array_equal(wavs[False, 1][i], alone.waveform), item.name  # one clip, one window a call: bits
        for key in ((True, 3), (True, 2)):  # other batch shapes: the same up to float rounding (measured 3e-8)
            np.testing.assert_allclose(wavs[key][i], alone.waveform, atol=1e-5, rtol=0, err_msg=str(key))


def test_ctrl_c_with_prefetch_drops_the_queued_items(debug_pipe, clips, tmp_path, monkeypatch):
    """Interrupted while the next group is being prepared, the run stops at once: the queued items are cancelled,
    not prepared first (before: 4 items of 1 s each, 4 s)."""
    _, good = clips
    items = [batch.Item(name=f"c{i}", video=str(good[i % len(good)]), prompt="a click") for i in range(8)]
    real, started = batch.prepare_item, []

    def slow(pipe, item):
        started.append(item.name)
        if int(item.name[1:]) >= 4:  # the second group
            time.sleep(1.0)
        return real(pipe, item)

    def interrupt(item, row):
        pressed.append(time.perf_counter())
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "prepare_item", slow)
    pressed = []
    with pytest.raises(KeyboardInterrupt):
        batch.run(
            debug_pipe, items, tmp_path / "out", batch.Options(steps=1), prefetch=True, group=4, progress=interrupt
        )
    stopped = time.perf_counter() - pressed[0]
    assert len(started) <= 6 and stopped < 0.9, (started, stopped)  # the first group, and at most one more begun
