"""The studio's actions (rewas/studio.py `Studio`), without a browser: what each control does to the session, the
errors a person sees, the limits, and that the files go when the studio closes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rewas.audio import load_audio, write_wav
from rewas.cli import main
from rewas.edits import SILENCE
from rewas.errors import UserError
from rewas.studio import MAX_TAKES, Session, Studio, example_clips


@pytest.fixture
def studio(tmp_path):
    s = Studio(["debug"], max_video_seconds=10.0)
    yield s
    s.close()


def test_a_clip_its_curve_edits_undo_reset(studio, media):
    session = studio.open_video(Session(), str(media["v25"]), "debug")
    view = studio.view(session)
    assert view["duration"] == pytest.approx(3.0, abs=0.05) and len(view["t"]) == len(view["curve"]) == 300
    assert view["curve"] == view["base"] and view["edits"] == []
    session = studio.range_edit(session, "mute", 1.0, 2.0, None)
    session = studio.range_edit(session, "gain", 0.0, 0.5, 6.0)
    session = studio.draw_edit(session, [[2.6, -4.0], [2.2, -8.0], [2.4, -2.0]])  # drawn right to left: sorted
    view = studio.view(session)
    curve = studio.curve(session)
    assert view["edits"] == ["mute 1-2", "gain 0-0.5:+6dB", "draw 2.2:-8,2.4:-2,2.6:-4"]
    assert np.all(curve[100:200] == np.float32(SILENCE)) and curve[240] == pytest.approx(
        -2.05, abs=1e-4
    )  # frame centre 2.405 s
    session = studio.undo(session)
    assert studio.view(session)["edits"] == ["mute 1-2", "gain 0-0.5:+6dB"]
    session = studio.reset(session)
    assert studio.view(session)["curve"] == studio.view(session)["base"]


def test_a_range_past_the_end_stops_at_the_end_and_bad_ranges_are_refused(studio, media):
    session = studio.open_video(Session(), str(media["v25"]), "debug")
    session = studio.range_edit(session, "mute", 2.0, 99.0, None)
    assert str(session.edits[-1]) == "mute 2-3"
    for args in (("mute", 2.0, 1.0, None), ("gain", 0.0, 1.0, None), ("scale", 0, 1, -1), ("mute", None, 1, None)):
        with pytest.raises(UserError):
            studio.range_edit(session, *args)
    for stroke in ([], [[1.0, -3.0]], "nonsense", [[1, 2, 3]]):
        with pytest.raises(UserError):
            studio.draw_edit(session, stroke)


def test_errors_a_person_sees(studio, media, tmp_path):
    with pytest.raises(UserError, match="upload a video first"):
        studio.range_edit(Session(), "mute", 0, 1, None)
    with pytest.raises(UserError, match="upload a video first"):
        studio.generate(Session(), "rain")
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    with pytest.raises(UserError, match="notes.mp4"):
        studio.open_video(Session(), str(notes), "debug")
    with pytest.raises(UserError, match="up to 10 s"):
        studio.open_video(Session(), str(media["long12"]), "debug")
    session = studio.open_video(Session(), str(media["v25"]), "debug")
    with pytest.raises(UserError, match="prompt is empty"):
        studio.generate(session, "  ")
    with pytest.raises(UserError, match="unknown model"):
        studio.open_video(Session(), str(media["v25"]), "/etc")


def test_takes_are_kept_reopened_and_capped(studio, media, monkeypatch):
    monkeypatch.setattr("rewas.studio.MAX_TAKES", 2)
    session = studio.open_video(Session(), str(media["v25"]), "debug")
    session = studio.range_edit(session, "mute", 1.0, 2.0, None)
    seen = []
    first = studio.generate(session, "a click", "rain", seed=5, steps=2, progress=lambda f, d: seen.append(f))
    assert seen[-1] == 1.0 and first.seed == 5 and first.negative_prompt == "rain"
    view = studio.view(session)  # the take's own energy, drawn over the curve: at silence where it was muted
    assert view["take"] == 1 and len(view["heard"]) == len(view["t"])
    assert max(view["heard"][110:190]) < SILENCE + 0.5  # (the energy removes the mean first: not exactly 0)
    wav = load_audio(first.wav)
    assert np.abs(wav[16000 + 160 : 32000 - 160]).max() == 0  # the muted second is silent in the take
    session = studio.reset(session)
    second = studio.generate(session, "a bell", seed=-1, steps=2)
    assert second.seed >= 0 and second.edits == []
    session, again = studio.reopen(session, 1)
    assert again is first and [str(e) for e in session.edits] == ["mute 1-2"]
    studio.generate(session, "a click", seed=5, steps=2)
    assert [t.number for t in session.takes] == [2, 3]
    assert not any(os.path.exists(p) for p in (first.video, first.wav, first.csv))  # capped: gone
    with pytest.raises(UserError):
        studio.reopen(session, 1)
    assert MAX_TAKES >= 10


def test_the_job_time_limit_stops_a_take(media):
    studio = Studio(["debug"], job_seconds=1e-9)
    try:
        session = studio.open_video(Session(), str(media["v25"]), "debug")
        with pytest.raises(UserError, match="limit"):
            studio.generate(session, "a click", steps=3)
        assert session.takes == []
    finally:
        studio.close()


def test_a_reference_recording_replaces_the_curve(studio, media, tmp_path):
    session = studio.open_video(Session(), str(media["v25"]), "debug")
    wav = np.zeros(16000, np.float32)
    wav[8000:9000] = np.sin(np.arange(1000) * 0.2)  # a burst in the middle of a 1 s recording
    ref = tmp_path / "ref.wav"
    write_wav(ref, wav, 16000)
    session = studio.use_reference(session, str(ref))
    view = studio.view(session)
    assert "ref.wav" in view["source"]
    assert 1.5 <= view["t"][int(np.argmax(view["curve"]))] <= 1.75  # 0.50-0.56 s of 1 s -> 1.50-1.69 s of 3 s
    session = studio.use_video_curve(session)
    assert view["curve"] != studio.view(session)["curve"]


def test_one_model_in_memory(media):
    studio = Studio(["debug", "small"])
    try:
        a = studio.pipeline("debug")
        assert studio.pipeline("debug") is a
        studio.pipeline("small")
        assert studio._pipe_name == "small" and studio.pipeline("debug") is not a
    finally:
        studio.close()


def test_a_failed_model_switch_leaves_the_studio_working(media, monkeypatch):
    """A load that fails (out of memory, a damaged folder) drops the old model; the next request loads again
    instead of handing out no model."""
    from rewas.pipeline import ReWaSPipeline

    studio = Studio(["debug", "small"])
    real = ReWaSPipeline.from_pretrained.__func__
    try:
        studio.pipeline("debug")

        def fails(cls, name, **kwargs):
            raise MemoryError("out of memory")

        monkeypatch.setattr(ReWaSPipeline, "from_pretrained", classmethod(fails))
        with pytest.raises(MemoryError):
            studio.pipeline("small")
        monkeypatch.setattr(ReWaSPipeline, "from_pretrained", classmethod(real))
        session = studio.open_video(Session(), str(media["v25"]), "debug")
        assert studio.pipeline("debug") is not None and session.timeline is not None
    finally:
        studio.close()


def test_a_session_keeps_its_clip_when_the_upload_cache_deletes_it(studio, media, tmp_path):
    """gradio's cache deletes uploads after an hour; an open session goes on with its own link to the clip."""
    upload = tmp_path / "gradio" / "clip.mp4"
    upload.parent.mkdir()
    upload.write_bytes(media["v25"].read_bytes())
    session = studio.open_video(Session(), str(upload), "debug")
    upload.unlink()
    take = studio.generate(session, "a click", steps=1)
    assert os.path.getsize(take.video) > 0 and Path(session.video).parent == session.folder
    again = studio.open_video(session, str(media["v25"]), "debug")  # a new clip replaces the kept one
    assert [p.name for p in again.folder.glob("clip-*")] == [Path(again.video).name]


def test_a_model_switch_after_the_upload_went_uses_the_sessions_clip(studio, media, tmp_path):
    """Switching model re-opens the session's own clip, not gradio's (deleted) upload; a clip that fails to open
    leaves the session's clip in place."""
    from rewas.studio import build_app  # noqa: F401 (the page's handler does what this test does)

    upload = tmp_path / "up" / "clip.mp4"
    upload.parent.mkdir()
    upload.write_bytes(media["v25"].read_bytes())
    session = studio.open_video(Session(), str(upload), "debug")
    upload.unlink()
    again = studio.open_video(session, session.video, "debug")  # what the page's model switch calls
    assert again.video == session.video and Path(again.video).is_file()
    with pytest.raises(UserError):
        studio.open_video(again, str(media["not_video"]), "debug")
    assert Path(again.video).is_file() and studio.generate(again, "a click", steps=1).video


def test_close_removes_every_file(media):
    studio = Studio(["debug"])
    example_clips(studio.workdir / "examples")
    session = studio.open_video(Session(), str(media["v25"]), "debug")
    studio.generate(session, "a click", steps=1)
    assert any(studio.workdir.rglob("*.mp4"))
    studio.close()
    assert not studio.workdir.exists()


def test_ui_refuses_bad_options_with_one_line(capsys):
    for args in (["--model", "/nonexistent"], ["--max-upload-mb", "0"], ["--queue", "0"],
                 ["--max-video-seconds", "nan"], ["--port", "70000"], ["--max-upload-mb", "inf"],
                 ["--device", "cpu", "--dtype", "fp16"]):  # fmt: skip
        code = main(["ui", *args])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, (args, err)


def test_a_take_records_the_edits_it_was_made_with(studio, media):
    """Edits do not wait behind a take (they are not queued with it): one made while a take samples belongs to the
    next take, not to this one. Opening another clip deletes the old clip's takes."""
    from rewas.edits import parse

    session = studio.open_video(Session(), str(media["v25"]), "debug")
    session = studio.range_edit(session, "mute", 1.0, 2.0, None)
    take = studio.generate(session, "a click", seed=1, steps=2, progress=lambda f, d: studio.add_edit(
        session, parse("gain", "+3dB")))  # fmt: skip
    assert [str(e) for e in take.edits] == ["mute 1-2"] and len(session.edits) == 3  # two steps, two late edits
    session = studio.open_video(session, str(media["v2997"]), "debug")
    assert session.takes == [] and not os.path.exists(take.video) and not os.path.exists(take.wav)


def test_a_phi_that_reads_the_prompt_redraws_the_video_curve_for_the_prompt(media, tmp_path):
    """The curve shown at upload is phi's without a prompt; a take predicts it again for its prompt (and keeps a
    reference recording's curve in use, with phi's new one behind "back to the video")."""
    from conftest import prompt_reading_phi_pipe

    from rewas import ReWaSPipeline

    pipe = prompt_reading_phi_pipe()
    model = str(pipe.save_pretrained(tmp_path / "text_phi"))
    pipe = ReWaSPipeline.from_pretrained(model, dtype="auto")  # as the studio loads it

    def close(a, b):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)

    studio = Studio([model], max_video_seconds=10.0)
    try:
        video = str(media["v25"])
        session = studio.open_video(Session(), video, model)
        blank = studio.curve(session)
        close(blank, pipe.prepare(video).curve[0, : len(blank)].numpy())
        studio.generate(session, "rain", seed=0, steps=1)
        rain = pipe.prepare(video, prompt="rain").curve[0, : len(blank)].numpy()
        close(studio.curve(session), rain)
        assert not np.array_equal(rain, blank)
        ref = tmp_path / "ref.wav"
        write_wav(ref, np.sin(np.arange(16000) * 0.2).astype(np.float32) * 0.5, 16000)
        session = studio.use_reference(session, str(ref))
        kept = studio.curve(session)
        studio.generate(session, "a door knock", seed=0, steps=1)
        np.testing.assert_array_equal(studio.curve(session), kept)
        knock = pipe.prepare(video, prompt="a door knock").curve[0, : len(blank)].numpy()
        close(studio.curve(studio.use_video_curve(session)), knock)
    finally:
        studio.close()


def test_layers_a_region_clicked_on_the_picture_a_flat_layer_mute_solo_and_the_mix(studio, tmp_path):
    """The studio's layers: a box clicked on the picture gives the tracked object's curve; each layer keeps its
    own curve and edits and comes back to the editor when picked; the mix is stereo, its stems sum to it, and its
    soundtrack file renders it again."""
    import json

    import soundfile as sf

    from rewas import samples
    from rewas.soundtrack import read_soundtrack, render

    clip = tmp_path / "two.mp4"
    samples.write_video(clip, samples.two_objects_frames([0.6, 1.5, 2.4], [1.0, 2.0, 2.8]), 3.0, 25)
    session = studio.open_video(Session(), str(clip), "debug")
    picture = studio.frame(session)
    assert picture.shape == (360, 720, 3)  # enlarged to be drawn on
    with pytest.raises(UserError, match="click two corners"):
        studio.use_region(session)
    session = studio.click(studio.click(session, 0.32, 0.36), 0.18, 0.16)  # any two opposite corners
    assert studio.box(session) == (0.18, 0.16, 0.32, 0.36)
    assert (studio.frame(session)[58, 130:231] == (255, 220, 0)).all()  # the box is drawn on the picture
    empty = studio.use_region(studio.set_box(session, "0.6,0.02,0.9,0.2"))  # the plain wall above the balls
    assert empty.source == "the region 0.60,0.02,0.90,0.20 (stays put)"  # nothing in it stands out
    session = studio.use_region(studio.set_box(session, "0.18,0.16,0.32,0.36"))
    assert session.source == "the region 0.18,0.16,0.32,0.36"
    session = studio.range_edit(session, "mute", 2.5, 3.0, None)
    session, again = studio.add_layer(session, "a ball", gain_db=-3)
    assert not again  # the debug model's phi does not read the prompt
    session = studio.use_level(session, -5)
    session, _ = studio.add_layer(session, "wind", pan=0.5)
    assert [m.row(n, False)[:4] for n, m in enumerate(session.layers, 1)] == [
        [1, "yes", "a ball", "the region 0.18,0.16,0.32,0.36"], [2, "yes", "wind", "a flat level of -5 nats"],
    ]  # fmt: skip
    assert session.edits == [] and session.layers[1].layer.edits == ()  # each layer its own edits
    session, layer = studio.select_layer(session, 1)  # its curve and edits back in the editor
    assert layer.prompt == "a ball" and [str(e) for e in session.edits] == ["mute 2.5-3"]
    assert session.source.startswith("the region") and studio.box(session) == (0.18, 0.16, 0.32, 0.36)
    session = studio.mix_layer(session, 2, mute=True, solo=False)
    mix = studio.generate_mix(session, seed=3, steps=2)
    names = [Path(f).name for f in mix.files]
    assert names == ["mix001-seed3.wav", "mix001-seed3-01_a_ball.wav", "mix001-seed3-01_a_ball.csv",
                     "mix001-seed3-soundtrack.json"]  # fmt: skip
    assert session.layers[0].heard_in == 1 and session.layers[1].heard is None  # the muted one was not heard
    shown = studio.view(session)  # layer 1 is picked: its own sound in mix 1 is drawn over its curve
    assert shown["heard_of"] == "layer 1 in mix 1" and len(shown["heard"]) == len(shown["curve"])
    session = studio.mix_layer(session, 2, mute=False, solo=False)
    mix = studio.generate_mix(session, seed=3, steps=2)
    mixed = sf.read(mix.files[0], dtype="float32")[0]
    session, _ = studio.select_layer(session, 2)
    from rewas.energy import waveform_energy

    sound = render(studio.pipeline("debug"), session.video, read_soundtrack(mix.files[-1])).sounds[1]
    heard = waveform_energy(sound, session.audio).numpy()
    assert studio.view(session)["heard_of"] == "layer 2 in mix 2"
    np.testing.assert_allclose(session.layers[1].heard, heard, atol=1e-5)  # before its gain and pan
    stems = [sf.read(f, dtype="float32")[0] for f in mix.files if f.endswith(".wav")][1:]
    assert mixed.shape[1] == 2 and len(stems) == 2
    np.testing.assert_allclose(mixed, stems[0] + stems[1], atol=1e-6)
    soundtrack = read_soundtrack(mix.files[-1])
    assert json.loads(Path(mix.files[-1]).read_text())["layers"][0]["edits"] == ["mute 2.5-3"]
    again = render(studio.pipeline("debug"), session.video, soundtrack)
    np.testing.assert_array_equal(again.mix, mixed)
    # muting a layer leaves the others' sounds as they were: each keeps its seed and its stem's number
    session = studio.mix_layer(session, 1, mute=True, solo=False)
    alone = studio.generate_mix(session, seed=3, steps=2)
    assert [Path(f).name for f in alone.files[1:3]] == ["mix003-seed3-02_wind.wav", "mix003-seed3-02_wind.csv"]
    np.testing.assert_array_equal(sf.read(alone.files[1], dtype="float32")[0], stems[1])
    assert [m.row(n, True)[1] for n, m in enumerate(session.layers, 1)] == ["muted", "no (solo elsewhere)"]
    session = studio.mix_layer(session, 1, mute=False, solo=False)
    session = studio.remove_layer(session, 1)
    assert [m.layer.prompt for m in session.layers] == ["wind"]
    with pytest.raises(UserError, match="there is no layer 5"):
        studio.select_layer(session, 5)
    session = studio.mix_layer(session, 1, mute=True, solo=False)
    with pytest.raises(UserError, match="add a layer first"):
        studio.generate_mix(session)


def test_a_layer_removed_while_its_mix_runs(studio, tmp_path, monkeypatch):
    """The page lets a layer be removed while a mix runs: the mix ends as it began, and each sound goes to the layer
    it was of (the one removed has none to take)."""
    from rewas import samples
    from rewas.energy import waveform_energy
    from rewas.soundtrack import read_soundtrack, render

    clip = tmp_path / "two.mp4"
    samples.write_video(clip, samples.two_objects_frames([0.6, 1.5], [1.0, 1.8]), 2.0, 25)
    session = studio.open_video(Session(), str(clip), "debug")
    session, _ = studio.add_layer(studio.use_level(session, -4), "a ball")
    session, _ = studio.add_layer(studio.use_level(session, -6), "wind")
    removed = []

    def progress(fraction, text):  # the user clicks Remove on layer 1 as the sampler starts
        if not removed:
            removed.append(studio.remove_layer(session, 1))

    mix = studio.generate_mix(session, seed=2, steps=2, progress=progress)
    assert mix.layers == 2 and [m.layer.prompt for m in session.layers] == ["wind"]
    wind = render(studio.pipeline("debug"), session.video, read_soundtrack(mix.files[-1])).sounds[1]
    assert session.layers[0].heard_in == mix.number
    np.testing.assert_allclose(session.layers[0].heard, waveform_energy(wind, session.audio).numpy(), atol=1e-5)
    # an Update whose curve is predicted again while the layer before it is removed updates the layer it was for
    session, _ = studio.add_layer(studio.use_level(session, -5), "rain")
    predict = studio._curve_for

    def removing(s, prompt):
        studio.remove_layer(s, 1)  # wind goes meanwhile
        return predict(s, prompt)

    monkeypatch.setattr(studio, "_curve_for", removing)
    session, _ = studio.update_layer(session, 2, "heavy rain")
    assert [m.layer.prompt for m in session.layers] == ["heavy rain"]


def test_a_regions_curve_in_the_editor_is_the_one_its_layer_is_sampled_with(tmp_path):
    """The default model's phi reads the prompt: the region's curve shown is predicted for the layer's prompt, so
    the editor shows what the mix will follow."""
    from rewas import samples
    from rewas.soundtrack import layer_timeline

    clip = tmp_path / "two.mp4"
    samples.write_video(clip, samples.two_objects_frames([0.6, 1.5, 2.4], [1.0, 2.0, 2.8]), 3.0, 25)
    studio = Studio(["default"], max_video_seconds=10.0, dtype="fp32")
    try:
        session = studio.open_video(Session(), str(clip), "default")
        session = studio.use_region(studio.set_box(session, "0.17,0.15,0.33,0.38"), 0.0, "a ball bouncing")
        shown = studio.curve(session)
        session, again = studio.add_layer(session, "a ball bouncing")
        assert not again
        sampled = layer_timeline(studio.pipeline("default"), session.video, session.layers[0].layer)[0]
        np.testing.assert_array_equal(shown, sampled.curve[0, : len(shown)].numpy())
        # the box used before the prompt was typed (or the prompt changed after): the curve is predicted again for
        # the layer's prompt when it is added, so that the edits are made on the curve the layer will follow
        session = studio.use_region(studio.set_box(session, "0.17,0.15,0.33,0.38"), 0.0, "")
        session = studio.range_edit(session, "mute", 2.5, 3.0, None)
        unprompted = studio.curve(session)
        session, again = studio.add_layer(session, "a ball bouncing")
        assert again and np.abs(studio.curve(session) - unprompted).max() > 0.1
        np.testing.assert_array_equal(studio.curve(session)[:200], shown[:200])  # before the muted end: as above
        assert [str(e) for e in session.layers[1].layer.edits] == ["mute 2.5-3"]  # the edits stay
        # the whole picture's curve likewise, for a layer with another prompt than the take's
        session = studio.use_video_curve(session)
        session, again = studio.add_layer(session, "a door slams")
        whole = layer_timeline(studio.pipeline("default"), session.video, session.layers[2].layer)[0]
        assert again and session.phi_prompt == "a door slams"
        np.testing.assert_array_equal(studio.curve(session), whole.curve[0, : len(shown)].numpy())
    finally:
        studio.close()
