import math

import numpy as np
import pytest
import torch

from rewas.config import AudioConfig, EnergyConfig
from rewas.energy import curve_from_tokens, energy_target, read_csv, resample_curve, smooth, waveform_energy, write_csv

SR = 16000


def librosa_energy(y: np.ndarray) -> np.ndarray:
    """Independent computation with librosa + numpy, written from the definition in docs/design.md."""
    import librosa

    y = y.astype(np.float64)
    y = y - y.mean()
    y = 0.5 * y / (np.abs(y).max() + 1e-8)
    y = np.pad(y, 432, mode="reflect")
    spec = np.abs(librosa.stft(y, n_fft=1024, hop_length=160, win_length=1024, window="hann", center=False))
    mel = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=64, fmin=0, fmax=8000, htk=False, norm="slaney") @ spec
    return np.log(np.maximum(mel, 1e-5)).mean(axis=0)


def signals(n=81920):
    rng = np.random.default_rng(0)
    t = np.arange(n) / SR
    bursts = np.zeros(n)
    for start in (0.3, 1.7, 3.2, 4.6):
        i = int(start * SR)
        bursts[i : i + 3000] = rng.normal(size=3000) * np.exp(-np.arange(3000) / 800)
    chirp = np.sin(2 * np.pi * (100 * t + 700 * t**2))
    quiet_tail = np.where(t < 2.0, np.sin(2 * np.pi * 440 * t), 0.0)  # a tone, then digital silence
    silence = np.zeros(n)
    return {"bursts": bursts, "chirp": chirp, "tone_then_silence": quiet_tail, "silence": silence}


@pytest.mark.parametrize("name", list(signals()))
def test_energy_matches_independent_librosa(name):
    y = signals()[name]
    ours = waveform_energy(torch.from_numpy(y).float()).numpy()
    ref = librosa_energy(y.astype(np.float32))
    assert ours.shape == (512,) == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_energy_is_batched_and_lengths_follow_hop():
    batch = torch.from_numpy(np.stack(list(signals().values()))).float()
    together = waveform_energy(batch)
    assert together.shape == (4, 512)
    for i in range(4):
        torch.testing.assert_close(together[i], waveform_energy(batch[i]), atol=1e-5, rtol=0)
    assert waveform_energy(torch.randn(16000)).shape == (100,)
    assert waveform_energy(torch.randn(100)).shape == (1,)  # very short clips still give one frame


def test_energy_is_gain_invariant_and_silence_is_floor():
    y = torch.from_numpy(signals()["bursts"]).float()
    torch.testing.assert_close(waveform_energy(y), waveform_energy(7.0 * y + 0.1), atol=1e-4, rtol=0)
    assert torch.allclose(waveform_energy(torch.zeros(81920)), torch.tensor(np.log(1e-5), dtype=torch.float32))


def test_energy_target_and_inverse_path():
    e = waveform_energy(torch.from_numpy(signals()["bursts"]).float())[None]
    tokens, curve = energy_target(e, 112)
    assert tokens.shape == (1, 112) and curve.shape == (1, 512)
    from scipy.signal import savgol_filter

    nearest = e[0, (np.arange(112) * 512 // 112)]  # F.interpolate nearest: floor(i * in / out)
    np.testing.assert_allclose(tokens[0].numpy(), savgol_filter(nearest.numpy().astype(np.float64), 9, 2), atol=1e-5)
    np.testing.assert_allclose(curve[0].numpy(), tokens[0].numpy()[(np.arange(512) * 112 // 512)], atol=1e-6)
    torch.testing.assert_close(curve_from_tokens(tokens, 512), resize_back(smooth(tokens)))


def resize_back(x):
    return x[..., (np.arange(512) * x.shape[-1] // 512)]


def test_smooth_handles_short_curves():
    assert torch.equal(smooth(torch.ones(1, 2)), torch.ones(1, 2))
    assert smooth(torch.arange(5.0)[None]).shape == (1, 5)
    assert smooth(torch.arange(5.0)[None], EnergyConfig(smooth_window=9)).shape == (1, 5)


def test_csv_round_trip_and_errors(tmp_path):
    e = np.linspace(-5, 0, 300)
    write_csv(tmp_path / "e.csv", e)
    lines = (tmp_path / "e.csv").read_text().splitlines()
    assert lines[0] == "time_s,energy" and len(lines) == 301 and lines[2].startswith("0.010,")
    times, values = read_csv(tmp_path / "e.csv")
    np.testing.assert_allclose(times, np.arange(300) / 100)
    np.testing.assert_allclose(values, e, atol=1e-6)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="header"):
        read_csv(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("time_s,energy\n1,x\n")
    with pytest.raises(ValueError):
        read_csv(tmp_path / "bad2.csv")


def test_resample_curve_interpolates_and_holds_ends():
    out = resample_curve(np.array([1.0, 0.0]), np.array([2.0, 0.0]), np.array([-1.0, 0.5, 2.0]))
    np.testing.assert_allclose(out, [0.0, 1.0, 2.0])


def test_config_numbers():
    c = AudioConfig()
    assert (c.pad, c.window_samples, c.window_frames, c.frame_rate) == (432, 81920, 512, 100.0)


def test_token_times_follow_overlapping_segments():
    from rewas.energy import token_times

    t = token_times(num_segments=15, stride=8, tokens_per_segment=8, tubelet=2, fps=25.0)
    assert t.shape == (120,)
    assert t[0] == pytest.approx(0.5 / 25) and t[8] == pytest.approx(8.5 / 25) and t[4] == t[8]  # 50% overlap
    assert len(np.unique(np.round(t, 6))) == 64 and t.max() == pytest.approx(126.5 / 25)


def test_timed_curve_places_events_at_their_real_time():
    from rewas.energy import curve_from_timed_tokens, token_times

    times = token_times(15, 8, 8, 2, 25.0)
    tokens = torch.from_numpy(np.where(np.abs(times - 2.0) < 0.05, 0.0, -10.0))[None].float()  # a burst at 2.0 s
    curve = curve_from_timed_tokens(tokens, times, 512, 100.0, EnergyConfig(smooth_window=1))[0].numpy()
    assert curve.shape == (512,) and abs(np.argmax(curve) - 200) <= 4  # within a tubelet of 2.0 s
    uniform = curve_from_tokens(tokens, 512, EnergyConfig(smooth_window=1))[0].numpy()
    peaks = np.flatnonzero(uniform == uniform.max())
    assert abs(peaks[0] - 200) >= 8 and peaks[-1] - peaks[0] > 15  # the release's even spreading: off and split in two


def test_control_target_is_the_inference_curve_of_the_true_energy():
    """The adapter trains on the curve the pipeline builds at inference, made from the true energy instead of phi."""
    from rewas.config import PRESETS
    from rewas.energy import control_target

    small = PRESETS["small"]()  # real timeline, no smoothing
    e = torch.full((2, 512), -10.0)
    e[:, 200:240] = -3.0  # a 0.4 s burst at 2.0 s
    curve = control_target(e, small)
    assert curve.shape == (2, 512) and curve.dtype == e.dtype
    assert torch.allclose(curve[:, 210:232], torch.tensor(-3.0))  # tokens wholly inside the burst
    assert torch.allclose(curve[:, :190], torch.tensor(-10.0)) and torch.allclose(curve[:, 255:], torch.tensor(-10.0))
    torch.testing.assert_close(control_target(torch.full((1, 512), -7.0), small), torch.full((1, 512), -7.0))
    uniform = small.replace(energy=EnergyConfig(timeline="uniform"))  # the release's target
    torch.testing.assert_close(control_target(e, uniform), energy_target(e, 112)[1])


def test_token_curve_matrix_is_the_pipelines_curve_of_the_tokens():
    """phi trained on the curve needs the curve as a matrix; it must be the very curve predict_energy builds."""
    from rewas.config import PRESETS
    from rewas.energy import (
        control_target,
        curve_from_timed_tokens,
        model_token_times,
        timed_token_target,
        token_curve_matrix,
    )

    small = PRESETS["small"]()
    tokens = torch.randn(3, 120, generator=torch.Generator().manual_seed(0)) * 2 - 6
    times = model_token_times(small, 15)
    weights = token_curve_matrix(small, 15, 512)
    assert weights.shape == (120, 512)
    torch.testing.assert_close(tokens @ weights, curve_from_timed_tokens(tokens, times, 512, 100.0, small.energy))
    smoothed = small.replace(energy=EnergyConfig(smooth_window=9))  # smoothing is linear too
    torch.testing.assert_close(
        tokens @ token_curve_matrix(smoothed, 15, 512),
        curve_from_timed_tokens(tokens, times, 512, 100.0, smoothed.energy),
    )
    uniform = small.replace(energy=EnergyConfig(timeline="uniform"))
    torch.testing.assert_close(tokens @ token_curve_matrix(uniform, 15, 512), curve_from_tokens(tokens, 512))
    energy = torch.randn(2, 512, generator=torch.Generator().manual_seed(1)) - 7
    _, exact = timed_token_target(energy, small, 15)  # the true energy's tokens give the control target
    torch.testing.assert_close(exact @ weights, control_target(energy, small), atol=1e-5, rtol=0)
    weights[0, 0] = 99.0  # a copy: the cached matrix stays as it was
    assert token_curve_matrix(small, 15, 512)[0, 0] != 99.0


def test_own_savgol_and_mel_filterbank_equal_the_libraries():
    """Written out to keep scipy.signal and transformers out of start-up; equal to them."""
    from scipy.signal import savgol_filter
    from transformers.audio_utils import mel_filter_bank

    from rewas.audio import mel_filterbank
    from rewas.config import AudioConfig
    from rewas.energy import savgol

    x = np.random.default_rng(0).standard_normal((3, 40))
    for window, order in ((9, 2), (5, 2), (7, 3), (39, 2)):
        np.testing.assert_allclose(savgol(x, window, order), savgol_filter(x, window, order, axis=-1), atol=1e-10)
    cfg = AudioConfig()
    ref = mel_filter_bank(
        num_frequency_bins=cfg.n_fft // 2 + 1,
        num_mel_filters=cfg.n_mels,
        min_frequency=cfg.fmin,
        max_frequency=cfg.fmax,
        sampling_rate=cfg.sample_rate,
        norm="slaney",
        mel_scale="slaney",
    ).T
    np.testing.assert_allclose(mel_filterbank(cfg).numpy(), ref, rtol=1e-6, atol=1e-10)


def test_log_mel_range_bounds_every_waveform_in_range():
    """Silence, a full-scale sine, a full-scale square wave and full-scale noise all stay inside log_mel_range."""
    from rewas.audio import log_mel
    from rewas.energy import log_mel_range

    cfg = AudioConfig()
    lo, hi = log_mel_range(cfg)
    t = torch.arange(cfg.sample_rate, dtype=torch.float64) / cfg.sample_rate
    for wav in (
        torch.zeros(16000),
        torch.sin(2 * math.pi * 7000 * t),
        torch.sign(torch.sin(2 * math.pi * 50 * t)),
        torch.rand(16000, generator=torch.Generator().manual_seed(0)) * 2 - 1,
    ):
        mel = log_mel(wav, cfg)
        assert lo - 1e-9 <= float(mel.min()) and float(mel.max()) <= hi
