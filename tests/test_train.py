"""Training smoke tests on tiny data: caches, phi and adapter steps, checkpoints and exact resume."""

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import prompt_reading_phi_pipe
from train_ranks import Clips as _Clips

from rewas import ReWaSPipeline, samples
from rewas.audio import write_wav
from rewas.train import CachedClips, TrainConfig, build_cache, train
from rewas.train.trainer import WeightEMA, lr_factor


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    lines = []
    for i, period in enumerate([0.5, 0.8, 1.1]):
        samples.write_video(d / f"v{i}.mp4", samples.bouncing_ball_frames(bounce_period=period), 2.0, 25)
        hits = list(np.arange(0, 2.0, period))
        write_wav(d / f"a{i}.wav", samples.click_track(2.0, hits))
        lines.append({"video": f"v{i}.mp4", "audio": f"a{i}.wav", "caption": f"ball bouncing every {period} s"})
    (d / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    pipe = ReWaSPipeline.from_pretrained("debug")
    build_cache(pipe, d / "m.jsonl", d / "cache", shard_size=2)
    return d


def test_cache_layout(cache):
    ds = CachedClips(cache / "cache")
    assert len(ds) == 3 and len(ds.shards) == 2
    item = ds[2]
    assert item["features"].shape == (120, 32) and item["energy"].shape == (512,)
    assert item["latents"].shape == (8, 128, 16) and item["text"].shape == (32,) and ds.empty_text.shape == (32,)
    assert item["mel"].shape == (512, 64) and item["wave"].shape == (81920,)


def fresh(what: str) -> ReWaSPipeline:
    """A debug model; for adapter training its UNet stands in for a trained one (the preset's zero-initialised
    output layers would give the adapter no gradient at all)."""
    pipe = prompt_reading_phi_pipe(live=False) if what == "phi_text" else ReWaSPipeline.from_pretrained("debug")
    if what in ("adapter", "unet"):
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in pipe.unet.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return pipe


@pytest.mark.parametrize("what", ["phi", "phi_text", "adapter", "unet", "vae", "vocoder"])
def test_training_steps_and_exact_resume(cache, tmp_path, what):
    # the weight average is part of the state a resume must restore; phi_text: a phi that reads the prompt, trained
    # on its curve with half the captions dropped (the dropout's draws are part of the state too)
    part = "phi" if what == "phi_text" else what
    cfg = TrainConfig(
        steps=4,
        batch_size=2,
        lr=1e-3,
        warmup=1,
        checkpoint_every=2,
        log_every=1,
        ema_decay=0.9 if what in ("unet", "adapter") else 0.0,
        text_dropout=0.5 if what == "phi_text" else 0.3,
        phi_target="curve" if what == "phi_text" else "tokens",
    )
    logs = []
    straight = fresh(what)
    train(straight, CachedClips(cache / "cache"), part, tmp_path / "a", cfg, log=logs.append)
    assert [x["step"] for x in logs if "loss" in x] == [1, 2, 3, 4] and all(
        np.isfinite(x["loss"]) for x in logs if "loss" in x
    )
    before = fresh(what)
    changed = [
        k
        for k, v in getattr(before, part).state_dict().items()
        if not torch.equal(v, getattr(straight, part).state_dict()[k])
    ]
    assert changed, "training changed nothing"
    # stop after 2 steps, then resume to 4 in a new process-like run: the same weights as straight through
    half = fresh(what)
    train(
        half,
        CachedClips(cache / "cache"),
        part,
        tmp_path / "b",
        TrainConfig(**{**cfg.__dict__, "steps": 2}),
        log=logs.append,
    )
    resumed = fresh(what)
    train(resumed, CachedClips(cache / "cache"), part, tmp_path / "b", cfg, log=logs.append)
    assert any("resumed" in x for x in logs)
    for (k, a), b in zip(getattr(straight, part).state_dict().items(), getattr(resumed, part).state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=k)
    loaded = ReWaSPipeline.from_pretrained(tmp_path / "a" / "model")
    assert torch.equal(next(getattr(loaded, part).parameters()), next(getattr(straight, part).parameters()))
    if what == "unet":  # the adapter is re-derived from the trained UNet (ControlNet init), and saved so
        unet, adapter = loaded.unet.state_dict(), loaded.adapter.state_dict()
        shared = [k for k in adapter if k in unet]
        assert shared and all(torch.equal(adapter[k], unet[k]) for k in shared)


class _Killed(Exception):
    pass


def _interrupted_run(what: str, data, cfg: TrainConfig, out, at: int) -> tuple[ReWaSPipeline, list]:
    """Train in `out` and die in step `at` (after its optimizer step, before its checkpoint), as a killed job
    would; then resume in a new run. The resumed run's pipeline and log."""

    def die(record):
        if record.get("step") == at and "loss" in record:
            raise _Killed

    with pytest.raises(_Killed):
        train(fresh(what), data, what, out, cfg, log=die)
    logs = []
    resumed = fresh(what)
    train(resumed, data, what, out, cfg, log=logs.append)
    return resumed, logs


def test_mid_epoch_resume_with_gradient_accumulation(cache, tmp_path):
    """Four clips, batch size 1, accumulation 2: two optimizer steps per epoch. Killed in step 4, the run resumes from
    step 3's checkpoint, in the middle of the second epoch, and ends with the weight average and the raw weights of
    an uninterrupted run, bit for bit. The adapter draws noise, timesteps, text dropout and crops from the run's
    generator, so the RNGs, the data position, the LR schedule and the average must all be restored."""
    from safetensors.torch import load_file

    data = _Clips(CachedClips(cache / "cache"), 4)
    cfg = TrainConfig(
        steps=5,
        batch_size=1,
        grad_accum=2,
        lr=1e-3,
        warmup=1,
        lr_schedule="cosine",
        ema_decay=0.9,
        checkpoint_every=3,
        log_every=1,
        crop_frames=64,
    )
    straight = fresh("adapter")
    train(straight, data, "adapter", tmp_path / "a", cfg, log=lambda d: None)
    resumed, logs = _interrupted_run("adapter", data, cfg, tmp_path / "b", at=4)
    # a run that ignored the checkpoint and started over would end with the same weights: it must have resumed
    assert logs[0] == {"resumed": str(tmp_path / "b" / "checkpoints" / "step_00000003"), "step": 3}
    assert [x["step"] for x in logs if "loss" in x] == [4, 5]
    average = (straight.adapter.state_dict(), resumed.adapter.state_dict())  # the saved model is the average
    assert [k for k in average[0] if not torch.equal(average[0][k], average[1][k])] == []
    raw = [load_file(tmp_path / run / "checkpoints" / "step_00000005" / "model.safetensors") for run in "ab"]
    assert raw[0].keys() == raw[1].keys() and [k for k in raw[0] if not torch.equal(raw[0][k], raw[1][k])] == []
    assert any(not torch.equal(raw[0][k], v) for k, v in average[0].items()), "the average is the raw weights"


def test_mid_epoch_resume_when_accumulation_does_not_divide_the_epoch(cache, tmp_path):
    """Three clips, batch size 1, accumulation 2: each epoch is a step of two batches and a step of one."""
    data = CachedClips(cache / "cache")
    cfg = TrainConfig(steps=4, batch_size=1, grad_accum=2, lr=1e-3, warmup=1, checkpoint_every=3, log_every=1)
    straight = fresh("phi")
    train(straight, data, "phi", tmp_path / "a", cfg, log=lambda d: None)
    resumed, logs = _interrupted_run("phi", data, cfg, tmp_path / "b", at=4)
    assert logs[0]["step"] == 3
    weights = (straight.phi.state_dict(), resumed.phi.state_dict())
    assert [k for k in weights[0] if not torch.equal(weights[0][k], weights[1][k])] == []


def test_gradient_accumulation_equals_the_larger_batch(cache, tmp_path):
    """Two accumulated batches of one clip make the same optimizer step as one batch of two (phi's loss is a plain
    mean over equal-sized items, and the data order does not depend on the batch size)."""
    data = _Clips(CachedClips(cache / "cache"), 4)
    weights = {}
    for batch, accum in ((2, 1), (1, 2), (1, 1)):
        pipe = fresh("phi")
        train(
            pipe,
            data,
            "phi",
            tmp_path / f"{batch}x{accum}",
            TrainConfig(steps=2, batch_size=batch, grad_accum=accum, lr=1e-3, warmup=1, log_every=1),
            log=lambda d: None,
        )
        weights[batch, accum] = torch.cat([p.flatten() for p in pipe.phi.parameters()])
    torch.testing.assert_close(weights[1, 2], weights[2, 1], atol=1e-6, rtol=0)
    assert (weights[1, 1] - weights[2, 1]).abs().max() > 1e-4  # two steps on single clips land elsewhere


def test_two_ranks_train_as_one_rank_on_their_combined_batches(cache, tmp_path):
    """DDP on two processes: each rank takes half of every batch, and the synced gradients make the steps one rank
    makes on whole batches. A rank that trained on its own half (gradients never synced) lands elsewhere."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    here = Path(__file__).parent
    # each CPU rank on one thread, as the single rank, so that sums run in the same order
    env = {**os.environ, "PYTHONPATH": str(here.parent), "OMP_NUM_THREADS": "1"}
    script = [str(here / "train_ranks.py"), str(cache / "cache")]
    # torchrun: `accelerate launch --cpu` starts one process whatever --num_processes says
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    for cmd in ([sys.executable, *script, str(tmp_path / "one"), "2"], [*launch, *script, str(tmp_path / "two"), "1"]):
        run = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
    one, two = (load_file(tmp_path / d / "model" / "phi.safetensors") for d in ("one", "two"))
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(two[k], one[k], atol=1e-6, rtol=0, msg=k)
    start = ReWaSPipeline.from_pretrained("debug").phi.state_dict()
    assert max((one[k] - start[k]).abs().max() for k in one) > 1e-4  # the two steps moved the weights


def test_lr_schedules():
    cfg = TrainConfig(steps=110, warmup=10, lr_schedule="cosine")
    assert [lr_factor(s, cfg) for s in (0, 9)] == [0.1, 1.0]
    assert lr_factor(60, cfg) == pytest.approx(0.5) and lr_factor(110, cfg) == pytest.approx(0.0)
    assert lr_factor(100, TrainConfig(steps=110, warmup=10)) == 1.0
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_factor(20, TrainConfig(lr_schedule="linear"))


def test_weight_ema_averages_and_ramps_its_decay():
    layer = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    ema = WeightEMA(layer, decay=0.999)
    with torch.no_grad():
        layer.weight.fill_(3.0)
    ema.update()  # first update: decay (1 + 1) / (10 + 1), not 0.999
    torch.testing.assert_close(ema.average[0], torch.full((1, 2), 1.0 * 2 / 11 + 3.0 * 9 / 11))
    restored = WeightEMA(layer, decay=0.999)
    restored.load_state_dict(ema.state_dict())
    restored.copy_to_module()
    assert restored.updates == 1 and torch.equal(layer.weight, ema.average[0])


def test_ema_run_saves_the_average_of_its_steps(cache, tmp_path):
    """With --ema-decay the saved model is the average of the weights after each step, not the last weights."""
    cfg = TrainConfig(steps=2, batch_size=2, lr=1e-2, warmup=1, checkpoint_every=100, log_every=1)
    weights = []
    for steps, decay in ((0, 0.0), (1, 0.0), (2, 0.0), (2, 0.5)):
        pipe = fresh("phi")
        if steps:
            train(
                pipe,
                CachedClips(cache / "cache"),
                "phi",
                tmp_path / f"{steps}_{decay}",
                TrainConfig(**{**cfg.__dict__, "steps": steps, "ema_decay": decay}),
                log=lambda d: None,
            )
        weights.append(next(pipe.phi.parameters()).detach().clone())
    w0, w1, w2, saved = weights
    assert not torch.allclose(w1, w2)
    # decays min(0.5, 2/11) and min(0.5, 3/12): the average moves 9/11, then 3/4 of the way to the new weights
    torch.testing.assert_close(saved, torch.lerp(torch.lerp(w0, w1, 9 / 11), w2, 0.75))


@pytest.mark.parametrize("vocoder_input", ["mel", "vae"])
def test_learned_magnitude_vocoder_learns_the_stft_magnitude(cache, tmp_path, vocoder_input):
    """The Griffin-Lim vocoder's magnitude net trains on (mel, STFT magnitude) pairs, the mel being the true one or
    the VAE's decoding of the cached latents: the loss falls from NNLS's."""
    from rewas.config import GriffinLimConfig
    from rewas.vocoder import build_vocoder

    pipe = ReWaSPipeline.from_pretrained("debug")
    vocoder = GriffinLimConfig(magnitude_channels=16, magnitude_dilations=(1, 2))
    pipe.config = pipe.config.replace(vocoder=vocoder)
    pipe.vocoder = build_vocoder(vocoder, pipe.config.audio)
    logs = []
    train(
        pipe,
        CachedClips(cache / "cache"),
        "vocoder",
        tmp_path / "v",
        TrainConfig(
            steps=30,
            batch_size=3,
            lr=3e-3,
            warmup=1,
            checkpoint_every=100,
            log_every=10,
            crop_frames=64,
            vocoder_input=vocoder_input,
        ),
        log=logs.append,
    )
    losses = [x["loss"] for x in logs if "loss" in x]
    assert len(losses) == 3 and losses[-1] < 0.8 * losses[0]
    loaded = ReWaSPipeline.from_pretrained(tmp_path / "v" / "model")
    assert loaded.config.vocoder.magnitude_channels == 16
    torch.testing.assert_close(loaded.vocoder.state_dict(), pipe.vocoder.state_dict())


def test_train_command(cache, tmp_path, capsys):
    from rewas.cli import main

    assert main(["train", "cache", str(cache / "m.jsonl"), "--model", "debug", "-o", str(tmp_path / "c")]) == 0
    assert (
        main(
            [
                "train",
                "phi",
                str(tmp_path / "c"),
                "--model",
                "debug",
                "-o",
                str(tmp_path / "run"),
                "--steps",
                "2",
                "--batch-size",
                "3",
                "--lr",
                "1e-3",
                "--log-every",
                "1",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert '"step": 2' in err and (tmp_path / "run" / "model" / "phi.safetensors").is_file()
    assert main(["train", "phi", str(tmp_path / "nothing"), "--model", "debug", "-o", str(tmp_path / "r2")]) == 2


def test_corpus_builder(tmp_path):
    from rewas.audio import load_audio
    from rewas.config import VideoConfig
    from rewas.frames import iter_frames, probe
    from rewas.train.corpus import CLASSES, build_corpus, film_corpus, frame_envelope

    assert len(CLASSES) >= 20 and len({c.name for c in CLASSES}) == len(CLASSES)
    chosen = [c for c in CLASSES if c.name in ("drum_hit", "engine")]
    out = build_corpus(tmp_path / "corpus", clips_per_class=10, duration=2.0, classes=chosen)
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 20 and {x["split"] for x in lines} == {"train", "val", "test"}
    for split in ("train", "val", "test"):  # splits by source: no source in two splits
        assert {x["source"] for x in lines if x["split"] == split}.isdisjoint(
            {x["source"] for x in lines if x["split"] != split}
        )
    assert all(x["licence"].startswith("CC0") and x["caption"] for x in lines)
    for x in lines[:1] + lines[10:11]:  # one impact clip, one continuous clip: motion follows loudness
        assert abs(probe(out / x["video"]).duration - 2.0) < 0.05
        frames = (
            np.stack(list(iter_frames(out / x["video"], VideoConfig(resize_short=128, crop=128))))
            .astype(float)
            .mean(-1)
        )
        motion = np.r_[0, np.abs(np.diff(frames, axis=0)).mean((1, 2))]
        env = frame_envelope(load_audio(out / x["audio"]))
        n = min(len(env), len(motion))
        assert np.corrcoef(motion[:n], env[:n])[0, 1] > 0.25, x["class"]
    # the manifest feeds the cache builder directly
    pipe = ReWaSPipeline.from_pretrained("debug")
    build_cache(pipe, out / "test.jsonl", tmp_path / "cache")
    assert len(CachedClips(tmp_path / "cache")) == 2

    # filmed again with a real camera: a split of its own, the same audio and captions, other pictures
    film_corpus(out, splits=("test",))
    plain = [json.loads(x) for x in (out / "test.jsonl").read_text().splitlines()]
    filmed = [json.loads(x) for x in (out / "camera_test.jsonl").read_text().splitlines()]
    assert [x["audio"] for x in filmed] == [x["audio"] for x in plain] and all(
        x["split"] == "camera_test" for x in filmed
    )
    for a, b in zip(plain, filmed):
        assert b["video"] == f"camera/test/{Path(a['video']).stem}.mp4" and b["caption"] == a["caption"]
        assert abs(probe(out / b["video"]).duration - 2.0) < 0.05
        before = np.stack(list(iter_frames(out / a["video"], VideoConfig()))).astype(float)
        after = np.stack(list(iter_frames(out / b["video"], VideoConfig()))).astype(float)
        assert before.shape == after.shape and np.abs(before - after).mean() > 10
    build_cache(pipe, out / "camera_test.jsonl", tmp_path / "camera_cache")
    assert len(CachedClips(tmp_path / "camera_cache")) == 2


def test_held_out_styles_never_overlap_the_training_styles():
    """phi is measured on renders whose settings its training renders never use: other shapes and backgrounds,
    and sizes, hues, floors, speeds, heights, leads, shake and glow in the gaps between the training ranges."""
    from rewas.train.corpus import draw_style

    rng = np.random.default_rng(0)
    train = [draw_style(rng, camera=0.4) for _ in range(400)]
    novel = [draw_style(rng, novel=True) for _ in range(400)]
    assert not {s.shape for s in train} & {s.shape for s in novel}
    assert not {s.background for s in train} & {s.background for s in novel}
    for field, gap in [
        ("radius", (10.5, 13.5)),
        ("drop", (58.0, 72.0)),
        ("shake", (9.0, 12.0)),
        ("glow", (0.55, 0.7)),
        ("lead", (0.65, 0.9)),
    ]:
        assert all(not gap[0] <= getattr(s, field) <= gap[1] for s in train), field
        assert all(gap[0] <= getattr(s, field) <= gap[1] for s in novel), field
    assert all(not 14 <= abs(s.travel) <= 28 for s in train) and all(14 <= abs(s.travel) <= 28 for s in novel)
    assert all(not 26 <= s.ground <= 36 for s in train) and all(26 <= s.ground <= 36 for s in novel)
    assert 0.3 < np.mean([s.camera for s in train]) < 0.5 and not any(s.camera for s in novel)


def test_a_styled_object_lands_at_every_onset_and_travels_in_between(tmp_path):
    """`styled_renderer` keeps the corpus's motion -> sound structure in any style: the object is on its floor at
    each onset and in the air between them, and its horizontal travel makes no landing."""
    from rewas.train.corpus import SIZE, draw_style, styled_renderer

    events = [0.6, 1.4, 1.9]
    style = dataclasses.replace(draw_style(np.random.default_rng(5)), camera=False, travel=40.0, ground=10)
    wav = np.zeros(16000 * 3, np.float32)
    frame = styled_renderer("impact", wav, events, style, seed=1, duration=3.0)
    back = np.array(frame(0.0), float)

    def centre(t):
        img = np.array(frame(t), float)
        mask = np.abs(img - np.array(style.color)).sum(-1) < 3
        ys, xs = np.nonzero(mask[: SIZE - style.ground])
        return ys.mean(), xs.mean()

    for e in events:
        y, _ = centre(e)
        assert y > SIZE - style.ground - 2 * style.radius - 1  # resting on the floor
        y_mid, _ = centre(e - 0.2)
        assert y_mid < y - 5  # in the air before it
    assert abs(centre(1.0)[1] - centre(1.2)[1]) > 4  # moving sideways
    assert back.std() > 0 or style.background == "flat"


def test_style_corpus_writes_its_splits(tmp_path):
    from rewas.frames import probe
    from rewas.train.corpus import CLASSES, build_corpus, style_corpus

    chosen = [c for c in CLASSES if c.name in ("drum_hit", "whistle")]
    out = build_corpus(tmp_path / "corpus", clips_per_class=10, duration=2.0, classes=chosen)
    style_corpus(out, splits=("test",))
    style_corpus(out, splits=("test",), novel=True)
    plain = [json.loads(x) for x in (out / "test.jsonl").read_text().splitlines()]
    for name in ("styled", "novel"):
        drawn = [json.loads(x) for x in (out / f"{name}_test.jsonl").read_text().splitlines()]
        assert [x["audio"] for x in drawn] == [x["audio"] for x in plain]
        assert all(x["split"] == f"{name}_test" and x["video"].startswith(f"{name}/test/") for x in drawn)
        assert all(abs(probe(out / x["video"]).duration - 2.0) < 0.05 for x in drawn)
    assert [json.loads(x)["style"] for x in (out / "novel_test.jsonl").read_text().splitlines()][0]["shape"] in (
        "triangle",
        "cross",
    )


def test_corpus_with_debian_recordings(tmp_path):
    from rewas.train.corpus import SONIC_PI, build_corpus, debian_sources

    if not SONIC_PI.is_dir():
        pytest.skip("Debian's sonic-pi-samples is not installed here (make corpus installs it)")
    sources = debian_sources()
    assert len(sources) > 100 and all(s["licence"].upper().startswith("CC0") for s in sources)
    out = build_corpus(tmp_path / "c", clips_per_class=0, duration=2.0, debian=True, clips_per_recording=1)
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == len(sources) and {x["split"] for x in lines} == {"train", "val", "test"}
    assert all(x["source"].startswith("sonic-pi:") and "CC0" in x["licence"] for x in lines)


def test_classifier_training_and_class_accuracy(tmp_path, capsys):
    """A drum hit and a whistle are told apart after a few steps: the classifier the evaluation loads is the one
    trained, its predictions are per clip, and class_acc is their share right."""
    from rewas.cli import main
    from rewas.train.corpus import CLASSES, build_corpus

    chosen = [c for c in CLASSES if c.name in ("drum_hit", "whistle")]
    out = build_corpus(tmp_path / "corpus", clips_per_class=4, duration=2.0, classes=chosen)
    assert main(["train", "cache", str(out / "manifest.jsonl"), "--model", "debug", "-o", str(tmp_path / "cache")]) == 0
    assert CachedClips(tmp_path / "cache").classes == ["drum_hit", "whistle"]
    assert (
        main(
            [
                "train",
                "classifier",
                str(tmp_path / "cache"),
                "-o",
                str(tmp_path / "clf"),
                "--steps",
                "20",
                "--batch-size",
                "8",
                "--lr",
                "1e-3",
                "--warmup",
                "1",
                "--log-every",
                "1",
            ]
        )
        == 0
    )
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    manifest = tmp_path / "eval.jsonl"
    manifest.write_text(
        "".join(json.dumps({"audio": str(out / x["audio"]), "class": x["class"]}) + "\n" for x in lines)
    )
    assert (
        main(
            [
                "evaluate",
                str(manifest),
                "--out",
                str(tmp_path / "r.json"),
                "--embedders",
                f"classifier={tmp_path / 'clf' / 'model'}",
                "-q",
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "r.json").read_text())
    predicted = [r["predicted_class"] for r in report["items"]]
    truth = [x["class"] for x in lines]
    assert sorted(set(predicted)) == ["drum_hit", "whistle"], predicted
    assert report["set"]["class_acc"] == pytest.approx(np.mean([p == t for p, t in zip(predicted, truth)]))
    assert report["set"]["class_acc"] >= 0.9, list(zip(truth, predicted))
    capsys.readouterr()
    assert main(["train", "phi", str(tmp_path / "cache"), "-o", str(tmp_path / "x")]) == 2  # phi needs --model


def test_random_crop_keeps_every_view_aligned():
    from rewas.config import small
    from rewas.train.trainer import random_crop

    cfg = small()
    frames = torch.arange(512.0)
    batch = {
        "energy": frames.expand(3, 512),
        "mel": frames[None, :, None].expand(3, 512, 64),
        "latents": (torch.arange(128.0) * 4)[None, None, :, None].expand(3, 8, 128, 16),
        "wave": (torch.arange(512 * 160) // 160).float().expand(3, -1),
        "text": torch.zeros(3, 384),
    }
    out = random_crop(batch, 128, cfg, torch.Generator().manual_seed(0), align=cfg.latent_time_multiple)
    assert (
        out["energy"].shape == (3, 128)
        and out["latents"].shape == (3, 8, 32, 16)
        and out["wave"].shape == (3, 128 * 160)
    )
    starts = out["energy"][:, 0]
    assert len(set(starts.tolist())) > 1 and all(s % cfg.latent_time_multiple == 0 for s in starts.tolist())
    for i in range(3):
        assert torch.equal(out["energy"][i], starts[i] + torch.arange(128.0))
        assert torch.equal(out["mel"][i, :, 0], out["energy"][i]) and torch.equal(
            out["wave"][i, ::160], out["energy"][i]
        )
        assert torch.equal(out["latents"][i, 0, :, 0], out["energy"][i, ::4])
    assert out["text"] is batch["text"] and random_crop(batch, 0, cfg, None) is batch
    with pytest.raises(ValueError):
        random_crop(batch, 130, cfg, None)


def test_phi_target_on_the_real_timeline_puts_an_event_at_its_time():
    from rewas.config import small
    from rewas.energy import token_times, tubelet_energy

    cfg = small()
    energy = torch.full((1, 512), -5.0)
    energy[0, 200:204] = 0.0  # 2.00-2.04 s
    times = token_times(15, 8, 8, 2, 25.0)
    target = tubelet_energy(energy, times, 2 / 25, 100.0)[0]
    hot = times[target > -4.9]
    assert len(hot) and np.all(np.abs(hot - 2.02) <= 0.06)
    assert torch.allclose(tubelet_energy(torch.ones(1, 512), times, 0.08, 100.0), torch.ones(1, 120))
    assert cfg.energy.timeline == "true"


def test_vae_training_sets_the_scale_factor_and_latents_are_refreshed(cache, tmp_path):
    from rewas.train import refresh_latents
    from rewas.train.trainer import latent_scale, mel_ceiling

    data = tmp_path / "cache"
    import shutil

    shutil.copytree(cache / "cache", data)
    pipe = fresh("vae")
    train(
        pipe,
        CachedClips(data),
        "vae",
        tmp_path / "run",
        TrainConfig(steps=1, batch_size=2, lr=1e-3, warmup=1, crop_frames=64, log_every=1),
        log=lambda d: None,
    )
    trained = ReWaSPipeline.from_pretrained(tmp_path / "run" / "model")
    scale = float(trained.vae.scale_factor)
    assert scale != 1.0 and scale == pytest.approx(latent_scale(trained.vae, CachedClips(data)), rel=1e-5)
    # the most each band held in the training mels (+ 0.5 nats) travels with the model, by shards or item by item
    mels = torch.stack([CachedClips(data)[i]["mel"] for i in range(len(CachedClips(data)))])
    expected_ceiling = (mels.amax(dim=(0, 1)) + 0.5).tolist()
    assert trained.config.vae.mel_ceiling == pytest.approx(expected_ceiling, abs=1e-4)
    items = [CachedClips(data)[i] for i in range(len(CachedClips(data)))]
    assert mel_ceiling(items) == pytest.approx(expected_ceiling, abs=1e-4)
    refresh_latents(trained, data, batch_size=2)
    ds = CachedClips(data)
    with torch.no_grad():
        expected = trained.vae.encode(ds[1]["mel"][None, None], sample=False)[0]
    torch.testing.assert_close(ds[1]["latents"], expected, atol=1e-5, rtol=1e-5)
    assert float(expected.std()) == pytest.approx(1.0, rel=0.5)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_diffusion_target_follows_the_prediction_type(prediction):
    """With x0 = 0, x_t = sqrt(1 - a) * noise, so a model returning sqrt(a / (1 - a)) * x_t predicts v exactly and
    one returning x_t / sqrt(1 - a) predicts the noise exactly: each has zero loss under its own target only."""
    from types import SimpleNamespace

    from rewas.config import PRESETS
    from rewas.diffusion import NoiseSchedule
    from rewas.train.trainer import unet_loss

    cfg = PRESETS["debug"]().replace(diffusion={"prediction": prediction})
    a = NoiseSchedule(cfg.diffusion).alphas_cumprod

    def model(v: bool):
        def unet(x, t, text, control=None):
            at = a[t].view(-1, 1, 1, 1)
            return (at.sqrt() if v else 1.0) * x / (1 - at).sqrt()

        return unet

    batch = {
        "latents": torch.zeros(4, *cfg.latent_shape),
        "text": torch.zeros(4, cfg.text.proj_dim),
        "energy": torch.zeros(4, 512),
    }
    losses = {
        v: float(
            unet_loss(
                SimpleNamespace(config=cfg, unet=model(v)), batch, torch.Generator().manual_seed(0), text_dropout=0.0
            )
        )
        for v in (False, True)
    }
    right, wrong = (losses[True], losses[False]) if prediction == "v_prediction" else (losses[False], losses[True])
    assert right < 1e-8 < 1e-3 < wrong


def test_real_camera_films_a_still_scene_with_motion_of_its_own():
    """`real_camera` (phi's robustness renders): a still scene gets camera motion, a distractor and noise, the same
    for the same seed, and stays a valid frame."""
    from rewas.train.corpus import SIZE, real_camera

    still = lambda t: np.full((SIZE, SIZE, 3), 20, np.uint8)  # noqa: E731
    a, b, c = real_camera(still, 3, 5.0), real_camera(still, 3, 5.0), real_camera(still, 4, 5.0)
    frames_a = [a(t) for t in (0.0, 1.0, 2.0)]
    frames_b = [b(t) for t in (0.0, 1.0, 2.0)]
    assert frames_a[0].shape == (SIZE, SIZE, 3) and frames_a[0].dtype == np.uint8
    assert all(np.array_equal(x, y) for x, y in zip(frames_a, frames_b))
    assert not np.array_equal(frames_a[0], c(0.0))
    assert np.abs(frames_a[0].astype(int) - frames_a[1].astype(int)).mean() > 2  # it moves; the scene does not


def test_random_envelopes_are_smooth_swings_within_their_bounds():
    """Every kind spans at least 6 dB and at most 2 x max_db around 0 dB, the same for the same seed; only the gate
    moves fast, and even it takes 20 ms ramps (no clicks)."""
    from rewas.train.augment import KINDS, random_envelope

    for kind in KINDS:
        for seed in range(5):
            g = random_envelope(512, 100.0, torch.Generator().manual_seed(seed), max_db=12.0, kind=kind)
            again = random_envelope(512, 100.0, torch.Generator().manual_seed(seed), max_db=12.0, kind=kind)
            assert torch.equal(g, again) and g.shape == (512,)
            span = float(g.max() - g.min())
            assert g.abs().max() <= 12.0 + 1e-4 and span >= 6.0 - 1e-4, (kind, seed, span)
            steepest = float((g[1:] - g[:-1]).abs().max())
            assert steepest <= span / 4 + 1e-4, (kind, seed, steepest, span)  # 10 ms frames: >= 40 ms from 0 to 1
    with pytest.raises(ValueError, match="unknown envelope kind"):
        random_envelope(512, 100.0, kind="sawtooth")


def test_an_envelope_reshapes_the_energy_the_mel_and_the_latent_together(cache):
    """A clip under a gain envelope: its recomputed energy moves with the gain in nats (g dB = g ln10 / 20) up to
    the peak normalisation's constant, its latent is the VAE's encoding of the recomputed mel, and clips not chosen
    keep their cached arrays."""
    from rewas.audio import log_mel
    from rewas.energy import normalize_waveform
    from rewas.train.augment import apply_envelopes, reshape_envelopes

    pipe = ReWaSPipeline.from_pretrained("debug")
    ds = CachedClips(cache / "cache")
    batch = {k: torch.stack([ds[i][k] for i in range(3)]) for k in ("wave", "mel", "energy", "latents", "text")}
    noise = normalize_waveform(torch.randn(81920, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    batch["wave"][1] = noise.to(batch["wave"].dtype)  # stationary: every frame well above the log-mel floor
    t = torch.arange(512) / 100.0
    gain = 9.0 * torch.sin(2 * np.pi * 1.5 * t)  # dB
    out = apply_envelopes(pipe, batch, torch.tensor([1]), gain[None])
    before = log_mel(normalize_waveform(batch["wave"][1].double()), pipe.config.audio).mean(dim=-2)
    moved = (out["energy"][1] - before)[8:-8]  # the STFT's half window at the ends sees the padding
    expected = (gain * np.log(10) / 20)[8:-8]
    assert float(torch.corrcoef(torch.stack([moved.float(), expected.float()]))[0, 1]) > 0.99
    assert float((moved - expected - (moved - expected).mean()).abs().max()) < 0.1  # nats
    assert torch.allclose(out["energy"][1], out["mel"][1].float().mean(dim=-1), atol=2e-3)
    latent = pipe.vae.encode(out["mel"][1].float()[None, None], sample=False)[0]
    assert torch.allclose(out["latents"][1], latent, atol=1e-4)
    for key in ("wave", "mel", "energy", "latents"):
        assert torch.equal(out[key][0], batch[key][0]) and torch.equal(out[key][2], batch[key][2]), key
    assert not torch.equal(out["energy"][1], batch["energy"][1])
    none = reshape_envelopes(pipe, batch, 0.0, torch.Generator().manual_seed(0))
    assert none is batch
    every = reshape_envelopes(pipe, batch, 1.0, torch.Generator().manual_seed(0))
    assert all(not torch.equal(every["energy"][i], batch["energy"][i]) for i in range(3))


def test_adapter_trains_with_envelopes_and_the_share_is_checked(cache, tmp_path):
    cfg = TrainConfig(steps=2, batch_size=2, lr=1e-3, warmup=1, checkpoint_every=2, log_every=1, envelope_augment=0.5)
    result = train(fresh("adapter"), CachedClips(cache / "cache"), "adapter", tmp_path / "run", cfg, log=lambda d: 0)
    assert result["step"] == 2 and np.isfinite(result["loss"])
    from rewas.errors import UserError

    with pytest.raises(UserError, match="envelope_augment"):
        TrainConfig(envelope_augment=1.5)


def test_phi_trained_on_its_curve_lowers_the_curves_error(cache):
    """--phi-target curve: the loss is the L1 between the curve the pipeline builds from phi's tokens and the
    adapter's control target, and training on it brings that curve closer."""
    from rewas.energy import control_target, curve_from_timed_tokens, model_token_times
    from rewas.errors import UserError
    from rewas.train.trainer import phi_loss

    data = CachedClips(cache / "cache")
    batch = {k: torch.stack([data[i][k] for i in range(3)]) for k in ("features", "energy")}
    pipe = fresh("phi")
    cfg = pipe.config
    with torch.no_grad():
        tokens = pipe.phi(batch["features"])
        curve = curve_from_timed_tokens(tokens, model_token_times(cfg, 15), 512, cfg.audio.frame_rate, cfg.energy)
        expected = (curve - control_target(batch["energy"], cfg)).abs().mean()
        torch.testing.assert_close(phi_loss(pipe, batch, target="curve"), expected)
        assert not torch.isclose(phi_loss(pipe, batch), expected)  # the default is the paper's token MSE
    run = TrainConfig(steps=30, batch_size=3, lr=3e-3, warmup=1, checkpoint_every=30, log_every=1, phi_target="curve")
    train(pipe, data, "phi", cache / "phi_curve_run", run, resume=False, log=lambda d: 0)
    with torch.no_grad():
        pipe.phi.eval()
        assert phi_loss(pipe, batch, target="curve") < 0.7 * expected
    with pytest.raises(UserError, match="phi_target"):
        TrainConfig(phi_target="frames")
