"""Per-clip metrics, each as defined where it was published (no weights needed).

* `energy_mae`   ReWaS: L1 between the unsmoothed 512-frame (5.12 s) energies of generated and reference audio.
* `av_align`     AV-Align (Yariv et al. 2024, the ReWaS evaluation script): Farneback flow peaks vs librosa onsets.
* `onset_metrics` CondFoleyGen's `predict_onset.py` (Greatest Hits): onset-count accuracy, detection accuracy, AP.
* `frechet_distance`, `kl_from_logits`, `inception_score`: the set-level formulas the embedders feed.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import torch

from .._optional import require
from ..audio import load_audio
from ..config import AudioConfig
from ..energy import waveform_energy
from ..errors import MediaError
from ..frames import arrays, open_container, video_streams

# ------------------------------------------------------------------------------------------------ energy MAE


def window_energy(path: str | os.PathLike, cfg: AudioConfig = AudioConfig()) -> torch.Tensor:
    """The energy (512,) of a file's first 5.12 s (a shorter clip zero-padded, as the loader does)."""
    wav = load_audio(path, cfg.sample_rate)[: cfg.window_samples]
    return waveform_energy(torch.from_numpy(np.pad(wav, (0, cfg.window_samples - len(wav)))), cfg)


def energy_mae(generated: str | os.PathLike, reference: str | os.PathLike, cfg: AudioConfig = AudioConfig()) -> float:
    """Mean |E_gen - E_ref| over the first 512 mel frames (`window_energy`)."""
    return float((window_energy(generated, cfg) - window_energy(reference, cfg)).abs().mean())


# ------------------------------------------------------------------------------------------------ AV-Align

AV_ALIGN_CUTOFF_S = 5.0
AV_ALIGN_SR = 22050


def native_frames_bgr(path: str | os.PathLike, cutoff: float = AV_ALIGN_CUTOFF_S) -> tuple[list[np.ndarray], float]:
    """Frames at the video's own rate (no resampling), BGR as OpenCV reads them: the first int(fps * cutoff) + 1."""
    with open_container(path) as container:
        streams = video_streams(container)
        if not streams:
            raise MediaError(f"{os.fspath(path)}: has no video stream")
        stream = streams[0]
        fps = float(stream.guessed_rate or stream.average_rate or 25)
        frames = []
        for frame in arrays(container.decode(stream), "bgr24"):
            if len(frames) > fps * cutoff:
                break
            frames.append(frame)
    if len(frames) < 2:
        raise MediaError(f"{os.fspath(path)}: AV-Align needs at least two frames")
    return frames, fps


def flow_trajectory(frames: list[np.ndarray]) -> list[float]:
    """Mean Farneback flow magnitude per frame pair; entry 0 repeats the first pair, as the reference code does."""
    cv2 = require("cv2", extra="eval", for_="AV-Align")

    gray = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]

    def magnitude(a, b) -> float:
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        return float(cv2.mean(cv2.magnitude(flow[..., 0], flow[..., 1]))[0])

    return [magnitude(gray[0], gray[1])] + [magnitude(gray[i - 1], gray[i]) for i in range(1, len(gray))]


def local_maxima_times(values: list[float], fps: float) -> list[float]:
    return [i / fps for i in range(1, len(values) - 1) if values[i - 1] < values[i] > values[i + 1]]


def audio_onset_times(wav: np.ndarray, sr: int = AV_ALIGN_SR, cutoff: float = AV_ALIGN_CUTOFF_S) -> np.ndarray:
    """librosa onset detection with default parameters on the first `cutoff` seconds."""
    librosa = require("librosa", extra="eval", for_="AV-Align")

    y = np.asarray(wav, dtype=np.float32)[: int(sr * cutoff)]
    envelope = librosa.onset.onset_strength(y=y, sr=sr)
    return librosa.frames_to_time(librosa.onset.onset_detect(onset_envelope=envelope, sr=sr), sr=sr)


def peak_iou(audio_peaks, video_peaks, fps: float) -> float:
    """Matches (an audio peak strictly within 1/fps of some video peak) / (|A| + |V| - matches); NaN if both empty."""
    matches = sum(1 for a in audio_peaks if any(v - 1 / fps < a < v + 1 / fps for v in video_peaks))
    denominator = len(audio_peaks) + len(video_peaks) - matches
    return matches / denominator if denominator else float("nan")


def av_align(video: str | os.PathLike, audio: str | os.PathLike) -> float:
    frames, fps = native_frames_bgr(video)
    video_peaks = local_maxima_times(flow_trajectory(frames), fps)
    audio_peaks = audio_onset_times(load_audio(audio, AV_ALIGN_SR))
    return peak_iou(audio_peaks, video_peaks, fps)


# ------------------------------------------------------------------------------------------------ onsets

ONSET_SR = 22050


def detect_onsets(wav: np.ndarray, sr: int = ONSET_SR) -> np.ndarray:
    """Onset sample indices: librosa onset_detect with delta 0.3 (CondFoleyGen)."""
    librosa = require("librosa", extra="eval", for_="the onset metrics")

    return librosa.onset.onset_detect(y=np.asarray(wav, dtype=np.float32), sr=sr, units="samples", delta=0.3)


def _confidence(env: np.ndarray, onset: int, half: int) -> float:
    # the reference slices env[o - half : o + half]; a negative start would wrap, so clamp at 0
    return float(np.max(env[max(0, onset - half) : onset + half]))


def onset_nms(onsets: np.ndarray, confidence: list[float], window: float = 0.05, sr: int = ONSET_SR) -> np.ndarray:
    """Keep the most confident onset, drop others within `window` seconds of it, repeat."""
    remain = list(onsets.tolist())
    out = []
    for idx in np.argsort(confidence)[::-1]:
        current = onsets[idx]
        if current not in remain:
            continue
        out.append(current)
        remain.remove(current)
        for other in list(remain):
            if abs(current - other) < window * sr:
                remain.remove(other)
    return np.array(sorted(out), dtype=int)


def average_precision(y_true: list[int], scores: list[float]) -> float:
    """Step-wise AP over distinct score thresholds, as sklearn's average_precision_score; 0 without positives."""
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(scores, dtype=float)
    if y.sum() == 0:
        return 0.0
    order = np.argsort(s, kind="mergesort")[::-1]
    y, s = y[order], s[order]
    last_of_threshold = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last_of_threshold]
    fps = last_of_threshold + 1 - tps
    precision, recall = tps / (tps + fps), tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def onset_metrics(target_wav: np.ndarray, generated_wav: np.ndarray, *, delta: float = 0.1, sr: int = ONSET_SR) -> dict:
    """CondFoleyGen's onset evaluation of one generated clip against its target clip.

    onset_acc: 1 if both have the same number of onsets (their "#onset acc"); onset_detection_acc: matched target
    onsets / target onsets; onset_ap: AP of matched (positive) and unmatched generated onsets scored by the
    normalised amplitude around them. Matching is greedy per target onset within `delta` seconds; like the
    reference, it stops once every generated onset is used.
    """
    onset1 = detect_onsets(target_wav, sr)
    onset2_raw = detect_onsets(generated_wav, sr)
    env = np.abs(np.asarray(generated_wav, dtype=np.float64))
    env = (env - env.min()) / (env.max() - env.min() + 1e-12)
    half = int(0.05 * sr)
    onset2 = (
        onset_nms(onset2_raw, [_confidence(env, o, half) for o in onset2_raw], sr=sr) if len(onset2_raw) else onset2_raw
    )
    unused = copy.deepcopy(onset2.tolist())
    hits, y_true, y_score = 0, [], []
    for o in onset1:
        in_window = [i for i, o2 in enumerate(unused) if abs(o2 - o) < delta * sr]
        y_true.append(1)
        if not in_window:
            y_score.append(0.0)
            continue
        match = in_window[int(np.argsort([env[unused[i]] for i in in_window])[-1])]
        hits += 1
        y_score.append(_confidence(env, unused[match], half))
        unused.pop(match)
        if not unused:
            break
    for o in unused:
        y_true.append(0)
        y_score.append(_confidence(env, o, half))
    return {
        "onset_acc": float(len(onset1) == len(onset2_raw)),
        "onset_detection_acc": hits / len(onset1) if len(onset1) else 0.0,
        "onset_ap": average_precision(y_true, y_score),
        "onsets_target": int(len(onset1)),
        "onsets_generated": int(len(onset2_raw)),
    }


def load_clip(path: str | os.PathLike, sr: int, seconds: float | None) -> np.ndarray:
    wav = load_audio(path, sr)
    return wav[: int(sr * seconds)] if seconds else wav


def clap_scores(rows: list[dict], key: str, sample_rate: int, embed_audio, embed_text) -> dict:
    """A CLAP score: the cosine between each generated clip (`embed_audio` of its audio at `sample_rate`, a unit
    vector) and its prompt (`embed_text([prompt])[0]`), written into each row with a prompt as `key`; -> the mean."""
    scores = []
    for row in rows:
        if not row.get("prompt"):
            continue
        audio = embed_audio(load_audio(row["audio"], sample_rate))
        row[key] = float(audio @ embed_text([row["prompt"]])[0])
        scores.append(row[key])
    return {key: float(np.mean(scores))} if scores else {}


# ------------------------------------------------------------------------------------------------ set-level


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two embedding sets (N, D) and (M, D)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    return frechet_from_stats(mu1, s1, mu2, s2)


def frechet_from_stats(mu1, s1, mu2, s2, eps: float = 1e-6) -> float:
    linalg = require("scipy.linalg", extra="eval", for_="the Fréchet distances (FD, FAD)")

    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def kl_from_logits(reference_logits: np.ndarray, generated_logits: np.ndarray) -> dict[str, float]:
    """audioldm_eval / av-benchmark KL(reference || generated), summed over classes, averaged over pairs.

    kl_softmax compares softmax distributions; kl_sigmoid applies the same formula to per-class sigmoids.
    """
    ref = torch.as_tensor(np.asarray(reference_logits), dtype=torch.float64)
    gen = torch.as_tensor(np.asarray(generated_logits), dtype=torch.float64)
    out = {}
    for name, fn in (
        ("kl_softmax", lambda x: torch.log_softmax(x, dim=1)),
        ("kl_sigmoid", torch.nn.functional.logsigmoid),
    ):
        log_ref, log_gen = fn(ref), fn(gen)
        out[name] = float((log_ref.exp() * (log_ref - log_gen)).sum() / len(gen))
    return out


def inception_score(logits: np.ndarray, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    """audioldm_eval's IS from classifier logits: shuffled (seed 2020), 10 splits -> (mean, std) of
    exp(E KL(p || p_split))."""
    x = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    n = len(x)
    x = x[np.random.RandomState(seed).permutation(n)]
    p, log_p = x.softmax(dim=1), x.log_softmax(dim=1)
    splits = max(1, min(splits, n))
    scores = []
    for i in range(splits):
        chunk, log_chunk = p[i * n // splits : (i + 1) * n // splits], log_p[i * n // splits : (i + 1) * n // splits]
        marginal = chunk.mean(dim=0, keepdim=True)
        scores.append(float((chunk * (log_chunk - marginal.log())).sum(dim=1).mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))
