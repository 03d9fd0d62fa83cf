"""Training caches: everything the trainers need, computed once from a manifest and memory-mapped afterwards.

Manifest: JSONL lines {"video": path, "audio": path (optional: else the video's soundtrack), "caption": text}.
Each clip gives one 5.12 s window (the clip's start), stored in shards of up to `shard_size` items:

    features.npy  (n, S, C) float16   video-encoder tokens (phi's input)
    energy.npy    (n, F)    float32   unsmoothed frame energy (F = 512; targets are derived from it)
    latents.npy   (n, z, T', F') f32  scaled VAE posterior means of the log-mel (the diffusion model's x0)
    text.npy      (n, D)    float32   caption embeddings (the text dropout uses the empty-prompt embedding)
    mel.npy       (n, F, n_mels) f16  log-mel of the normalised waveform (VAE and vocoder training)
    wave.npy      (n, N)    float16   the normalised waveform, 81,920 samples (vocoder training)
    meta.json     captions, sources, class labels (if the manifest has them); `empty_text.npy` (D,) once per cache

Nothing is recomputed at training time; arrays open with mmap, so a cache larger than RAM still trains.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from .. import files
from ..audio import load_audio, log_mel
from ..energy import normalize_waveform
from ..errors import MissingFileError
from ..frames import iter_frames, iter_windows, normalize, probe, segments

ARRAYS = ("features", "energy", "latents", "text", "mel", "wave")


def read_manifest(path: str | os.PathLike) -> list[dict]:
    return files.read_manifest(path, required=("video", "caption"), path_keys=("video", "audio"))


@torch.no_grad()
def encode_clip(pipe, item: dict) -> dict[str, np.ndarray]:
    """One clip -> its cached arrays (first window of the clip, padded if shorter)."""
    cfg = pipe.config
    info = probe(item["video"])
    frames = next(
        iter_windows(iter_frames(item["video"], cfg.video, info), [0], round(cfg.audio.window_seconds * cfg.video.fps))
    )
    feats = pipe.video_encoder(segments(normalize(frames, cfg.video), cfg.video)[None].to(pipe.device))[0]
    wav = load_audio(item.get("audio") or item["video"], cfg.audio.sample_rate)[: cfg.audio.window_samples]
    sound = sound_arrays(pipe, torch.from_numpy(np.pad(wav, (0, cfg.audio.window_samples - len(wav))))[None])
    text = pipe.text_encoder.encode([item["caption"]])[0]
    return {
        "features": feats.half().cpu().numpy(),
        "energy": sound["energy"][0].numpy(),
        "latents": sound["latents"][0].float().cpu().numpy(),
        "text": text.float().cpu().numpy(),
        "mel": sound["mel"][0].half().numpy(),
        "wave": sound["wave"][0].half().numpy(),
    }


@torch.no_grad()
def sound_arrays(pipe, wav: torch.Tensor) -> dict[str, torch.Tensor]:
    """Waveforms (B, N) -> what the cache holds of their sound: "wave" (B, N) peak-normalised (float64), "mel"
    (B, F, n_mels) its log-mel, "energy" (B, F) the log-mel's mean per frame (what `energy.waveform_energy` gives),
    "latents" (B, z, F / 4, n_mels / 4) the VAE's posterior mean of the log-mel (on the pipeline's device)."""
    cfg = pipe.config.audio
    wave = normalize_waveform(wav.double(), cfg.peak)
    mel = log_mel(wave, cfg)  # (B, n_mels, F)
    latents = pipe.vae.encode(mel.transpose(1, 2)[:, None].to(pipe.device), sample=False)
    return {"wave": wave, "mel": mel.transpose(1, 2), "energy": mel.mean(dim=-2), "latents": latents}


def build_cache(
    pipe, manifest: str | os.PathLike, out: str | os.PathLike, shard_size: int = 1024, progress=None
) -> Path:
    """Encode every manifest clip with `pipe`'s frozen encoders into sharded arrays under `out`."""
    items = read_manifest(manifest)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "empty_text.npy", pipe.text_encoder.encode([""])[0].float().cpu().numpy())
    for s, start in enumerate(range(0, len(items), shard_size)):
        chunk = items[start : start + shard_size]
        shard = out / f"shard_{s:05d}"
        shard.mkdir(exist_ok=True)
        arrays = None
        for i, item in enumerate(chunk):
            encoded = encode_clip(pipe, item)
            if arrays is None:  # written once, straight to disk
                arrays = {
                    k: np.lib.format.open_memmap(
                        shard / f"{k}.npy", mode="w+", dtype=v.dtype, shape=(len(chunk), *v.shape)
                    )
                    for k, v in encoded.items()
                }
            for k, v in encoded.items():
                arrays[k][i] = v
            if progress:
                progress(start + i + 1, len(items))
        for a in arrays.values():
            a.flush()
        (shard / "meta.json").write_text(
            json.dumps(
                {
                    "count": len(chunk),
                    "captions": [x["caption"] for x in chunk],
                    "sources": [x["video"] for x in chunk],
                    "classes": [x.get("class") for x in chunk],
                }
            )
        )
    (out / "cache.json").write_text(json.dumps({"model": pipe.config.to_dict(), "items": len(items)}))
    return out


@torch.no_grad()
def refresh_latents(pipe, folder: str | os.PathLike, batch_size: int = 16, progress=None) -> Path:
    """Re-encode `latents.npy` of every shard from its cached log-mel with `pipe.vae` (after the VAE was trained:
    the other arrays do not depend on it, so nothing else is recomputed)."""
    folder = Path(folder)
    shards = sorted(p for p in folder.glob("shard_*") if (p / "mel.npy").is_file())
    if not shards:
        raise MissingFileError(f"{folder}: no cache shards with log-mels (build one with `rewas train cache`)")
    total, done = sum(len(np.load(s / "mel.npy", mmap_mode="r")) for s in shards), 0
    for shard in shards:
        mel = np.load(shard / "mel.npy", mmap_mode="r")
        latents = None
        for start in range(0, len(mel), batch_size):
            x = torch.from_numpy(np.asarray(mel[start : start + batch_size], dtype=np.float32))[:, None].to(pipe.device)
            z = pipe.vae.encode(x, sample=False).float().cpu().numpy()
            if latents is None:
                latents = np.lib.format.open_memmap(
                    shard / "latents.npy.tmp", mode="w+", dtype=np.float32, shape=(len(mel), *z.shape[1:])
                )
            latents[start : start + len(z)] = z
            done += len(z)
            if progress:
                progress(done, total)
        latents.flush()
        del latents
        os.replace(shard / "latents.npy.tmp", shard / "latents.npy")
    return folder


class CachedClips(torch.utils.data.Dataset):
    """Memory-mapped view over all shards: item i -> dict of tensors."""

    def __init__(self, folder: str | os.PathLike):
        folder = Path(folder)
        shards = sorted(p for p in folder.glob("shard_*") if (p / "meta.json").is_file())
        if not shards:
            raise MissingFileError(f"{folder}: no cache shards (build one with `rewas train cache`)")
        self.shards = [
            {k: np.load(s / f"{k}.npy", mmap_mode="r") for k in ARRAYS if (s / f"{k}.npy").is_file()} for s in shards
        ]
        self.index = [(si, j) for si, s in enumerate(self.shards) for j in range(len(s["energy"]))]
        self.empty_text = torch.from_numpy(np.load(folder / "empty_text.npy"))
        labels = [c for s in shards for c in json.loads((s / "meta.json").read_text()).get("classes", [])]
        self.labels = labels if len(labels) == len(self.index) and all(labels) else None
        self.classes = sorted(set(self.labels)) if self.labels else []

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        si, j = self.index[i]
        item = {k: torch.from_numpy(np.array(a[j], dtype=np.float32)) for k, a in self.shards[si].items()}
        if self.labels:
            item["label"] = torch.tensor(self.classes.index(self.labels[i]))
        return item
