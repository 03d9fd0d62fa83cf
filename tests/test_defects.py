"""The defect detector (`rewas.evaluate.defects`) and what it guards: the decoder's overshoots repaired, the vocoder's
output free of clicks and dropouts on the mels the model really decodes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rewas.evaluate.defects import detect, frame_levels, running_median

SR = 16000


def steady_noise(seconds: float, seed: int = 0, level: float = 0.1) -> np.ndarray:
    """Band-limited noise (a steady rain or engine stand-in) with energy over the whole band."""
    return level * np.random.default_rng(seed).standard_normal(round(seconds * SR))


def test_running_median_matches_numpy_and_keeps_length():
    x = np.random.default_rng(1).standard_normal(1000)
    got = running_median(x, 11, chunk=97)  # chunk boundaries must not show
    padded = np.pad(x, 5, mode="reflect")
    expected = np.array([np.median(padded[i : i + 11]) for i in range(1000)])
    np.testing.assert_allclose(got, expected)


def test_frame_levels_of_a_full_scale_sine_and_of_the_band_above():
    t = np.arange(SR) / SR
    sine = np.sin(2 * np.pi * 1000 * t)
    assert frame_levels(sine, SR)[5:-5] == pytest.approx(-3.01, abs=0.05)
    assert frame_levels(sine, SR, above_hz=6000)[1:-1].max() < -60  # 1 kHz has nothing above 6 kHz
    high = np.sin(2 * np.pi * 7000 * t)
    assert frame_levels(high, SR, above_hz=6000)[5:-5] == pytest.approx(-3.01, abs=0.3)


def test_steady_noise_is_clean_and_edges_silence_are_not_judged():
    wav = steady_noise(10)
    found = detect(wav, SR)
    assert found.clean and found.frames == 1000 - 20
    faded = wav * np.minimum(1, np.arange(len(wav)) / (0.08 * SR))  # a fade-in within the first 0.1 s
    assert detect(faded, SR).clean
    assert detect(np.zeros(5 * SR), SR).clean  # silence has no dropouts


def test_a_dropout_and_a_click_are_found_where_they_are():
    wav = steady_noise(10)
    wav[round(4.0 * SR) : round(4.05 * SR)] *= 0.05  # 50 ms at -26 dB
    burst = np.random.default_rng(2).standard_normal(32)
    wav[round(7.0 * SR) : round(7.0 * SR) + 32] += 2.0 * burst  # a 2 ms click
    found = detect(wav, SR)
    assert found.dropouts and all(3.99 <= t <= 4.05 for t in found.dropouts) and len(found.dropouts) >= 4
    assert found.clicks and all(6.98 <= t <= 7.01 for t in found.clicks)


def test_overs_are_counted_on_the_waveform_before_the_limiter():
    wav = steady_noise(3)
    unlimited = wav.copy()
    unlimited[SR : SR + 10] = 1.5
    assert detect(wav, SR, unlimited=unlimited).overs == 10
    assert not detect(wav, SR).overs


def test_a_decoder_overshoot_is_repaired_and_nothing_else_moves():
    """A burst far above a band's ceiling (what the decoder does off its training data) comes down to the band's
    level around it, with its neighbourhood; a mel with nothing over its ceiling comes back as it was."""
    from rewas.vae import repair_overshoot

    gen = torch.Generator().manual_seed(0)
    mel = -6 + 0.3 * torch.randn(1, 1, 600, 64, generator=gen)
    ceiling = torch.full((64,), -1.0)
    floor = math.log(1e-5)
    assert torch.equal(repair_overshoot(mel, ceiling, floor), mel)
    spiked = mel.clone()
    spiked[0, 0, 300:306, 58] = 3.5  # 60 ms, one band, 9.5 nats over its neighbours
    spiked[0, 0, 299:308, 57:60] += 2.0  # its shoulders, under the ceiling
    repaired = repair_overshoot(spiked, ceiling, floor)
    assert float(repaired.max()) <= -1.0
    assert float(repaired[0, 0, 295:311, 56:61].max()) < -5.0  # burst and shoulders back to the band's level
    far = torch.ones_like(mel, dtype=torch.bool)
    far[0, 0, 294:313, 56:61] = False
    assert torch.equal(repaired[far], spiked[far])


def test_an_overshoot_at_the_clip_s_ends_comes_down_to_the_band_s_level_too():
    """At the first and last frames the band's level comes from the frames on the one side there is, not from
    copies of the overshoot itself (which would leave it at the ceiling: a thump at the clip's end)."""
    from rewas.vae import repair_overshoot

    mel = -6 + 0.1 * torch.randn(1, 1, 300, 64, generator=torch.Generator().manual_seed(1))
    spiked = mel.clone()
    spiked[0, 0, :8, :4] = 20.0
    spiked[0, 0, -5:, 60:] = 20.0
    spiked[0, 0, 100:250, 30] = 20.0  # longer than the median's span: only the ceiling is left
    repaired = repair_overshoot(spiked, torch.full((64,), -1.0), math.log(1e-5))
    assert float(repaired[0, 0, :8, :4].max()) < -5.5 and float(repaired[0, 0, -5:, 60:].max()) < -5.5
    assert float(repaired[0, 0, 100:250, 30].max()) <= -1.0 and torch.isfinite(repaired).all()


def test_decode_mel_holds_the_vae_s_own_ceiling(default_pipe):
    """The default model's VAE carries the most each band held in its training data; a latent pushed far off the
    data overshoots it (the decoder then asks for many times full scale), and the decoded mel stays under it."""
    ceiling = torch.tensor(default_pipe.config.vae.mel_ceiling)
    assert ceiling.shape == (64,) and float(ceiling.max()) < 2.5  # tighter than any waveform's bound (up to 2.97)
    gen = torch.Generator().manual_seed(0)
    latent = 4.0 * torch.randn(1, 8, 128, 16, generator=gen)
    with torch.no_grad():
        raw = default_pipe.vae.decode(latent)[0, 0]
        decoded = default_pipe.decode_mel(latent)[0, 0]
    assert bool((raw > ceiling).any())  # the decoder does overshoot here
    assert bool((decoded <= ceiling + 1e-6).all())


def test_the_default_model_decodes_and_vocodes_without_overs_on_real_latents(default_pipe):
    """The vocoder alone, on what the decoder makes of real clips' latents (a sine sweep, noise bursts, knocks):
    nothing over full scale before the limiter, no dropouts or clicks in steady material."""
    from rewas.audio import log_mel
    from rewas.vocoder import vocode

    t = np.arange(5 * SR) / SR
    rng = np.random.default_rng(3)
    clips = [
        0.5 * np.sin(2 * np.pi * (300 + 600 * t) * t),  # a sweep from 300 Hz up to 6.3 kHz
        0.2 * rng.standard_normal(len(t)),  # steady noise
        0.3 * np.sin(2 * np.pi * 120 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t)),  # a hum, slowly modulated
    ]
    audio = default_pipe.config.audio
    with torch.no_grad():
        for i, clip in enumerate(clips):
            mel = log_mel(torch.from_numpy(clip), audio)[: audio.window_frames].T[None, None].float()
            latent = default_pipe.vae.encode(mel, sample=False) * 1.0
            decoded = default_pipe.decode_latent_mel(latent)
            raw = vocode(default_pipe.vocoder, decoded, audio.hop_length, limit=False)[0].numpy()
            heard = vocode(default_pipe.vocoder, decoded, audio.hop_length)[0].numpy()
            found = detect(heard, SR, unlimited=raw)
            assert found.overs == 0, (i, found.summary())
            if i:  # the sweep is not steady above 6 kHz
                assert not found.dropouts and len(found.clicks) <= 1, (i, found.summary())


def test_rewas_evaluate_reports_defects_when_asked(tmp_path):
    """`rewas evaluate --metrics defects`: each clip's dropout and click frames, and their means."""
    import json

    from rewas.audio import write_wav
    from rewas.cli import main

    clean, broken = steady_noise(4, seed=4), steady_noise(4, seed=5)
    broken[2 * SR : 2 * SR + 800] *= 0.02  # 50 ms gone
    for name, wav in (("clean.wav", clean), ("broken.wav", broken)):
        write_wav(tmp_path / name, wav.astype(np.float32))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"audio": n}) + "\n" for n in ("clean.wav", "broken.wav")))
    out = tmp_path / "r.json"
    assert main(["evaluate", str(manifest), "--out", str(out), "--metrics", "defects", "-q"]) == 0
    report = json.loads(out.read_text())
    assert [(i["dropouts"], i["clicks"]) for i in report["items"]][0] == (0, 0)
    assert report["items"][1]["dropouts"] >= 4 and report["mean"]["dropouts"] >= 2
