"""Audio embedders for set-level metrics. Weights always come from a local file; nothing is downloaded.

Implemented: `panns` — PANNs CNN14 at 16 kHz (Kong et al. 2020; the `Cnn14_16k_mAP=0.438.pth` checkpoint from
zenodo.org/record/3987831, the one audioldm_eval uses). Its 2048-d embedding gives FD, its 527 AudioSet logits
give KL (softmax and sigmoid, as audioldm_eval defines them) and IS. The checkpoint is read with
`torch.load(weights_only=True)`; its `spectrogram_extractor.*` / `logmel_extractor.*` entries (a fixed STFT
and mel filterbank) are recomputed from the configuration and skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import metrics as M


@dataclass(frozen=True)
class CNN14Config:
    sample_rate: int = 16000
    window_size: int = 512
    hop_size: int = 160
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 8000.0
    classes: int = 527
    channels: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(c_out), nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return F.avg_pool2d(x, pool)


class CNN14(nn.Module):
    """(B, N) waveform at 16 kHz -> (embedding (B, 2048), logits (B, 527)). Inference only (no dropout, no augment)."""

    def __init__(self, cfg: CNN14Config = CNN14Config()):
        super().__init__()
        self.config = cfg
        self.bn0 = nn.BatchNorm2d(cfg.mel_bins)
        chans = (1, *cfg.channels)
        for i in range(len(cfg.channels)):
            self.add_module(f"conv_block{i + 1}", ConvBlock(chans[i], chans[i + 1]))
        self.fc1 = nn.Linear(cfg.channels[-1], cfg.channels[-1])
        self.fc_audioset = nn.Linear(cfg.channels[-1], cfg.classes)
        import librosa

        mel = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.window_size, n_mels=cfg.mel_bins, fmin=cfg.fmin, fmax=cfg.fmax)
        self.register_buffer("mel_basis", torch.from_numpy(mel.T.copy()).float(), persistent=False)

    def logmel(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, 1, T, mel) power log-mel in dB (ref 1, amin 1e-10), STFT centred with reflect padding."""
        spec = torch.stft(wav, self.config.window_size, self.config.hop_size, window=torch.hann_window(
            self.config.window_size, device=wav.device), center=True, pad_mode="reflect", return_complex=True)
        power = spec.abs() ** 2  # (B, F, T)
        mel = power.transpose(1, 2) @ self.mel_basis
        return (10.0 * torch.log10(mel.clamp(min=1e-10)))[:, None]

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.logmel(wav.float())
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        n = len(self.config.channels)
        for i in range(n):
            x = getattr(self, f"conv_block{i + 1}")(x, pool=2 if i < n - 1 else 1)
        x = x.mean(dim=3)
        x = x.max(dim=2).values + x.mean(dim=2)
        embedding = F.relu(self.fc1(x))
        return embedding, self.fc_audioset(embedding)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, cfg: CNN14Config = CNN14Config()) -> "CNN14":
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: PANNs CNN14 checkpoint not found (Cnn14_16k_mAP=0.438.pth, zenodo.org/record/3987831)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("model", state)
        state = {k: v for k, v in state.items() if not k.startswith(("spectrogram_extractor.", "logmel_extractor."))}
        model = cls(cfg)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path}: not a CNN14 16 kHz checkpoint (missing {missing[:3]}, unexpected {unexpected[:3]})")
        return model.eval()


@torch.no_grad()
def panns_outputs(model: CNN14, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (N, D) and logits (N, C), one clip at a time (clips may differ in length)."""
    embeddings, logits = [], []
    for path in paths:
        wav = torch.from_numpy(M.load_audio(path, model.config.sample_rate))[None]
        e, l = model(wav)
        embeddings.append(e[0].numpy())
        logits.append(l[0].numpy())
    return np.stack(embeddings), np.stack(logits)


def panns_metrics(model: CNN14, generated: list[str], references: list[str]) -> dict:
    emb_g, log_g = panns_outputs(model, generated)
    out = {"is_panns": M.inception_score(torch.from_numpy(log_g).softmax(-1).numpy())}
    if references:
        emb_r, log_r = panns_outputs(model, references)
        if len(emb_g) > 1 and len(emb_r) > 1:
            out["fd_panns"] = M.frechet_distance(emb_g, emb_r)
        if len(references) == len(generated):  # paired: KL of each generated clip against its reference
            tg, tr = torch.from_numpy(log_g), torch.from_numpy(log_r)
            out["kl_softmax"] = M.kl_divergence(tr.softmax(-1).numpy(), tg.softmax(-1).numpy())
            out["kl_sigmoid"] = M.kl_divergence(tr.sigmoid().numpy(), tg.sigmoid().numpy())
    return out


EMBEDDERS = {"panns": (CNN14.from_checkpoint, panns_metrics)}
PLANNED = ("vggish", "passt", "clap", "msclap", "synchformer")


def set_metrics(specs: dict[str, str], rows: list[dict]) -> tuple[dict, list[str]]:
    """Set-level metrics for every requested embedder; unknown or unavailable ones become notes, never numbers."""
    results, notes = {}, []
    generated = [r["audio"] for r in rows]
    references = [r["reference"] for r in rows if r.get("reference")]  # KL needs every item paired, FD does not
    for name, path in specs.items():
        if name not in EMBEDDERS:
            why = "not implemented yet" if name in PLANNED else "unknown"
            notes.append(f"embedder {name!r} is {why}; its metrics are skipped")
            continue
        load, compute = EMBEDDERS[name]
        model = load(path)
        results.update(compute(model, generated, references))
    return results, notes
