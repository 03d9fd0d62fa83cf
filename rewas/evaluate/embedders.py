"""Audio embedders for set-level metrics. Weights always come from a local file; nothing is downloaded.

* `panns`: PANNs CNN14 at 16 kHz (Kong et al. 2020; `Cnn14_16k_mAP=0.438.pth` from zenodo.org/record/3987831,
  as audioldm_eval uses). Its 2048-d embedding gives FD, and its 527 AudioSet logits give KL (softmax and
  sigmoid, as audioldm_eval defines them) and IS.
* `passt`: PaSST-S (`passt-s-f128-p16-s10-ap.476-swa.pt`) at 32 kHz on 10 s windows: FD, KL and IS as in
  MMAudio's av-benchmark.
* `vggish`: VGGish (torchvggish's `vggish-10086976.pth`), 0.96 s examples, giving FAD.
* `msclap`: MS-CLAP 2022 (a folder with `CLAP_weights_2022.pth` and bert-base-uncased's `vocab.txt`): the CLAP
  score of the ReWaS evaluation, i.e. the cosine between a clip and its prompt.
* `laion_clap`: LAION-CLAP (a folder with `music_speech_audioset_epoch_15_esc_89.98.pt` and roberta-base's
  `vocab.json` + `merges.txt`): av-benchmark's LAION-CLAP score (`rewas.evaluate.laion_clap`).
* `synchformer`: DeSync (`rewas.evaluate.desync`).
* `classifier`: a small CNN14 trained on the corpus (`rewas train classifier`, a folder `ClassifierBundle` saves):
  `class_acc`, whether the generated audio sounds like the item's "class". It lives here, with the architecture it
  uses, so that `rewas.train` depends on `rewas.evaluate` and never the reverse.

Checkpoints are read with `torch.load(weights_only=True)`. Their fixed STFT/mel-filterbank entries are
recomputed from the configuration instead of loaded.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .._optional import require
from ..checkpoint import load_checked, read_state
from ..energy import normalize_waveform
from ..errors import MissingFileError
from . import metrics as M
from .desync import Synchformer, desync_metrics
from .laion_clap import LaionCLAP, laion_clap_metrics


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
        librosa = require("librosa", extra="eval", for_="the CNN14 embedder (PANNs, MS-CLAP, the classifier)")

        mel = librosa.filters.mel(
            sr=cfg.sample_rate, n_fft=cfg.window_size, n_mels=cfg.mel_bins, fmin=cfg.fmin, fmax=cfg.fmax
        )
        self.register_buffer("mel_basis", torch.from_numpy(mel.T.copy()).float(), persistent=False)

    def logmel(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, 1, T, mel) power log-mel in dB (ref 1, amin 1e-10), STFT centred with reflect padding."""
        spec = torch.stft(
            wav,
            self.config.window_size,
            self.config.hop_size,
            window=torch.hann_window(self.config.window_size, device=wav.device),
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
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
    def from_checkpoint(cls, path: str | os.PathLike, cfg: CNN14Config = CNN14Config()) -> CNN14:
        state = read_state(
            path, "model", what="PANNs CNN14", source="Cnn14_16k_mAP=0.438.pth, zenodo.org/record/3987831"
        )
        state = {k: v for k, v in state.items() if not k.startswith(("spectrogram_extractor.", "logmel_extractor."))}
        return load_checked(cls(cfg), state, path, "CNN14 16 kHz")


@torch.no_grad()
def panns_outputs(model: CNN14, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (N, D) and logits (N, C), one clip at a time (clips may differ in length)."""
    embeddings, logits = [], []
    for path in paths:
        wav = torch.from_numpy(M.load_audio(path, model.config.sample_rate))[None]
        embedding, logit = model(wav)
        embeddings.append(embedding[0].numpy())
        logits.append(logit[0].numpy())
    return np.stack(embeddings), np.stack(logits)


def classifier_metrics(outputs, generated: list[str], references: list[str], name: str) -> dict:
    """The set metrics of an audio classifier. `outputs(paths)` -> (features (N, D), logits (N, C)).

    IS of the generated logits; FD of features (generated vs reference sets); KL (softmax and sigmoid) of logits,
    only when every generated clip has its reference (paired).
    """
    feat_g, log_g = outputs(generated)
    out = dict(zip((f"is_{name}", f"is_{name}_std"), M.inception_score(log_g)))
    if references:
        feat_r, log_r = outputs(references)
        if len(feat_g) > 1 and len(feat_r) > 1:
            out[f"fd_{name}"] = M.frechet_distance(feat_g, feat_r)
        if len(references) == len(generated):
            out.update({f"{k[:2]}_{name}{k[2:]}": v for k, v in M.kl_from_logits(log_r, log_g).items()})
    return out


# ------------------------------------------------------------------------------------------------ corpus classifier

CLASSIFIER_WIDTHS = dict(channels=(16, 32, 64, 128, 128, 256))


class ClassifierBundle:
    """A sound-class classifier trained on the corpus: PANNs' CNN14 architecture (small widths by default) on 16 kHz
    audio, trained from scratch by `rewas train classifier` with cross-entropy on the cache's waveforms and class
    labels. Its folder holds `classifier.safetensors` + `config.json` (the CNN14 configuration and the class names).

    Duck-types the pieces of a pipeline the trainer uses: `.classifier`, `.device`, `.save_pretrained`."""

    def __init__(self, classes: list[str], cfg: CNN14Config | None = None):
        self.classes = list(classes)
        self.cnn_config = cfg or CNN14Config(classes=len(classes), **CLASSIFIER_WIDTHS)
        self.classifier = CNN14(self.cnn_config)
        self.device = torch.device("cpu")

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.classifier.state_dict().items()},
            folder / "classifier.safetensors",
        )
        (folder / "config.json").write_text(
            json.dumps(
                {"format": "rewas-classifier", "classes": self.classes, "cnn14": dataclasses.asdict(self.cnn_config)},
                indent=2,
            )
        )
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> ClassifierBundle:
        folder = Path(folder)
        missing = [n for n in ("classifier.safetensors", "config.json") if not (folder / n).is_file()]
        if missing:
            raise MissingFileError(f"{folder}: not a classifier folder (missing {', '.join(missing)})")
        meta = json.loads((folder / "config.json").read_text())
        cnn = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["cnn14"].items()}
        bundle = cls(meta["classes"], CNN14Config(**cnn))
        bundle.classifier.load_state_dict(load_file(folder / "classifier.safetensors"))
        bundle.classifier.eval()
        return bundle

    @torch.no_grad()
    def predict(self, wav, seconds: float = 5.12) -> str:
        """The class heard in a 16 kHz waveform, prepared as in training: the first `seconds` (zero-padded),
        mean removed and peak-normalised to 0.5 (the cache's waveforms)."""
        n = round(seconds * self.cnn_config.sample_rate)
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32)[:n])
        x = normalize_waveform(F.pad(x, (0, n - len(x))).double()).float()
        logits = self.classifier(x[None])[1]
        return self.classes[int(logits.argmax(-1))]


def class_accuracy(bundle: ClassifierBundle, rows: list[dict]) -> dict:
    """class_acc: how often a classifier trained on the corpus hears the item's "class" in the generated audio."""
    hits = []
    for row in rows:
        if row.get("class"):
            row["predicted_class"] = bundle.predict(M.load_audio(row["audio"], bundle.cnn_config.sample_rate))
            hits.append(row["predicted_class"] == row["class"])
    return {"class_acc": float(np.mean(hits))} if hits else {}


# ------------------------------------------------------------------------------------------------ VGGish (FAD)


@dataclass(frozen=True)
class VGGishConfig:
    sample_rate: int = 16000
    window: int = 400  # 25 ms
    hop: int = 160  # 10 ms
    fft: int = 512
    mel_bins: int = 64
    fmin: float = 125.0
    fmax: float = 7500.0
    log_offset: float = 0.01
    example_frames: int = 96  # 0.96 s examples, no overlap
    channels: tuple[int, ...] = (64, 128, 256, 256, 512, 512)
    hidden: int = 4096
    embedding: int = 128


def vggish_mel_matrix(cfg: VGGishConfig) -> np.ndarray:
    """VGGish's own filterbank (mel_features.spectrogram_to_mel_matrix): HTK mel, unnormalised triangles, DC zeroed."""
    to_mel = lambda f: 1127.0 * np.log(1.0 + np.asarray(f) / 700.0)  # noqa: E731
    bins = cfg.fft // 2 + 1
    bins_mel = to_mel(np.linspace(0.0, cfg.sample_rate / 2, bins))
    edges = np.linspace(to_mel(cfg.fmin), to_mel(cfg.fmax), cfg.mel_bins + 2)
    weights = np.empty((bins, cfg.mel_bins))
    for i in range(cfg.mel_bins):
        lower, center, upper = edges[i : i + 3]
        weights[:, i] = np.maximum(
            0.0, np.minimum((bins_mel - lower) / (center - lower), (upper - bins_mel) / (upper - center))
        )
    weights[0, :] = 0.0
    return weights


def vggish_examples(wav: np.ndarray, cfg: VGGishConfig = VGGishConfig()) -> np.ndarray:
    """(N,) 16 kHz waveform -> (E, 96, 64) log-mel examples: un-padded 25/10 ms frames, periodic Hann, |rfft 512|."""
    wav = np.asarray(wav, dtype=np.float64)
    if len(wav) < cfg.window:
        return np.zeros((0, cfg.example_frames, cfg.mel_bins))
    n_frames = 1 + (len(wav) - cfg.window) // cfg.hop
    idx = np.arange(cfg.window)[None] + cfg.hop * np.arange(n_frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.window) / cfg.window)
    spec = np.abs(np.fft.rfft(wav[idx] * window, cfg.fft))
    logmel = np.log(spec @ vggish_mel_matrix(cfg) + cfg.log_offset)
    n_examples = n_frames // cfg.example_frames
    return logmel[: n_examples * cfg.example_frames].reshape(n_examples, cfg.example_frames, cfg.mel_bins)


class VGGish(nn.Module):
    """VGGish (Hershey et al. 2017) with torchvggish's parameter names; the embedding is the last layer WITHOUT the
    ReLU torchvggish adds and without PCA, as the TensorFlow model that FAD (Kilgour et al. 2019) was defined with."""

    def __init__(self, cfg: VGGishConfig = VGGishConfig()):
        super().__init__()
        self.config = cfg
        layers: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate(cfg.channels):
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=True)]
            if i in (0, 1, 3, 5):
                layers.append(nn.MaxPool2d(2, 2))
            c_in = c
        self.features = nn.Sequential(*layers)
        flat = cfg.channels[-1] * (cfg.example_frames // 16) * (cfg.mel_bins // 16)
        self.embeddings = nn.Sequential(
            nn.Linear(flat, cfg.hidden),
            nn.ReLU(True),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.ReLU(True),
            nn.Linear(cfg.hidden, cfg.embedding),
        )

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """(E, 96, 64) log-mel examples -> (E, 128) embeddings."""
        x = self.features(examples[:, None].float())
        x = x.permute(0, 2, 3, 1).flatten(1)  # TensorFlow's NHWC flattening order
        return self.embeddings(x)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, cfg: VGGishConfig = VGGishConfig()) -> VGGish:
        state = read_state(path, "model", what="VGGish", source="torchvggish's vggish-10086976.pth")
        state = {k: v for k, v in state.items() if not k.startswith("pproc.")}
        return load_checked(cls(cfg), state, path, "VGGish")


@torch.no_grad()
def vggish_embeddings(model: VGGish, paths: list[str]) -> np.ndarray:
    """All 0.96 s example embeddings of all clips, stacked (FAD pools examples, not clips)."""
    out = [
        model(torch.from_numpy(vggish_examples(M.load_audio(p, model.config.sample_rate), model.config))).numpy()
        for p in paths
    ]
    out = [o for o in out if len(o)]
    return np.concatenate(out) if out else np.zeros((0, model.config.embedding))


def vggish_metrics(model: VGGish, generated: list[str], references: list[str]) -> dict:
    if not references:
        return {}
    gen, ref = vggish_embeddings(model, generated), vggish_embeddings(model, references)
    return {"fad_vggish": M.frechet_distance(gen, ref)} if len(gen) > 1 and len(ref) > 1 else {}


# ------------------------------------------------------------------------------------------------ PaSST


@dataclass(frozen=True)
class PaSSTConfig:
    """PaSST-S (Koutini et al. 2022), `passt_s_swa_p16_128_ap476` as hear21passt's get_basic_model builds it."""

    sample_rate: int = 32000
    clip_samples: int = 320000  # clips are padded or cut to 10 s (av-benchmark)
    n_fft: int = 1024
    win_length: int = 800
    hop: int = 320
    mel_bins: int = 128
    fmin: float = 0.0
    fmax: float = 15000.0  # sr / 2 - fmax_aug_range / 2
    dim: int = 768
    depth: int = 12
    heads: int = 12
    patch: int = 16
    stride: int = 10
    time_patches: int = 99  # (998 - 16) // 10 + 1
    classes: int = 527

    @property
    def freq_patches(self) -> int:
        return (self.mel_bins - self.patch) // self.stride + 1


def kaldi_mel_banks(cfg: PaSSTConfig) -> torch.Tensor:
    """Kaldi's mel filterbank (HTK mel, triangles over FFT bin centres), padded with a zero Nyquist column."""
    to_mel = lambda f: 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)  # noqa: E731
    lo, hi = to_mel(cfg.fmin), to_mel(cfg.fmax)
    delta = (hi - lo) / (cfg.mel_bins + 1)
    b = np.arange(cfg.mel_bins)[:, None]
    left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
    mel = to_mel(cfg.sample_rate / cfg.n_fft * np.arange(cfg.n_fft // 2))[None]
    banks = np.maximum(0.0, np.minimum((mel - left) / (center - left), (right - mel) / (right - center)))
    return torch.from_numpy(np.pad(banks, ((0, 0), (0, 1)))).float()


class PaSST(nn.Module):
    """(B, N) 32 kHz waveform -> (logits (B, 527), features (B, 768)). Parameter names of the PaSST release."""

    def __init__(self, cfg: PaSSTConfig = PaSSTConfig()):
        super().__init__()
        from ..layers import ViTBlock

        self.config = cfg
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(1, cfg.dim, cfg.patch, stride=cfg.stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, cfg.dim))
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, cfg.dim, cfg.freq_patches, 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, cfg.dim, 1, cfg.time_patches))
        self.blocks = nn.Sequential(*(ViTBlock(cfg.dim, cfg.heads) for _ in range(cfg.depth)))
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, cfg.classes))
        self.head_dist = nn.Linear(cfg.dim, cfg.classes)  # stored, unused at inference (as in PaSST)
        self.register_buffer("mel_banks", kaldi_mel_banks(cfg), persistent=False)

    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        """AugmentMelSTFT in eval mode: pre-emphasis 0.97, |STFT|^2 (symmetric Hann 800), kaldi mel, log,
        (x + 4.5) / 5."""
        cfg = self.config
        x = wav[:, 1:] - 0.97 * wav[:, :-1]
        spec = (
            torch.stft(
                x,
                cfg.n_fft,
                cfg.hop,
                cfg.win_length,
                window=torch.hann_window(cfg.win_length, periodic=False),
                center=True,
                return_complex=True,
            ).abs()
            ** 2
        )
        return (torch.log(self.mel_banks @ spec + 1e-5) + 4.5) / 5.0  # (B, mel, T)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.patch_embed.proj(self.mel(wav.float())[:, None])  # (B, D, f, t)
        x = x + self.time_new_pos_embed[..., : x.shape[-1]] + self.freq_new_pos_embed
        x = x.flatten(2).transpose(1, 2)
        b = x.shape[0]
        tokens = torch.cat([self.cls_token, self.dist_token], dim=1) + self.new_pos_embed
        x = self.norm(self.blocks(torch.cat([tokens.expand(b, -1, -1), x], dim=1)))
        features = (x[:, 0] + x[:, 1]) / 2
        return self.head(features), features

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, cfg: PaSSTConfig = PaSSTConfig()) -> PaSST:
        state = read_state(
            path, "model", what="PaSST", source="passt-s-f128-p16-s10-ap.476-swa.pt, github.com/kkoutini/PaSST releases"
        )
        state = {
            k[4:] if k.startswith("net.") else k: v
            for k, v in state.items()
            if not k.startswith(("mel.", "device_proxy"))
        }
        return load_checked(cls(cfg), state, path, "PaSST-S")


@torch.no_grad()
def passt_outputs(model: PaSST, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Features (N, 768) and logits (N, 527) of 10 s windows (padded or cut), as av-benchmark extracts them."""
    n = model.config.clip_samples
    feats, logits = [], []
    for path in paths:
        wav = M.load_audio(path, model.config.sample_rate)[:n]
        logit, feat = model(torch.from_numpy(np.pad(wav, (0, n - len(wav))))[None])
        feats.append(feat[0].numpy())
        logits.append(logit[0].numpy())
    return np.stack(feats), np.stack(logits)


# ------------------------------------------------------------------------------------------------ MS-CLAP (CLAP score)


@dataclass(frozen=True)
class MSCLAPConfig:
    """MS-CLAP 2022 (Elizalde et al.), the CLAP score of the ReWaS evaluation: CNN14 at 44.1 kHz + BERT-base."""

    audio: CNN14Config = CNN14Config(sample_rate=44100, window_size=1024, hop_size=320, fmin=50.0, fmax=14000.0)
    duration: float = 9.0  # clips are tiled to 9 s (longer ones: the first 9 s; the reference crops at random)
    d_proj: int = 1024
    text_len: int = 100
    vocab_size: int = 30522
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    intermediate: int = 3072


class Projection(nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_out, bias=False)
        self.linear2 = nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = nn.LayerNorm(d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear1(x)
        return self.layer_norm(h + self.linear2(F.gelu(h)))


class MSCLAP(nn.Module):
    """Parameter names of `CLAP_weights_2022.pth`: audio_encoder.{base,projection},
    caption_encoder.{base,projection}."""

    def __init__(self, cfg: MSCLAPConfig = MSCLAPConfig(), vocab: str | os.PathLike | None = None):
        super().__init__()
        transformers = require("transformers", extra="eval", for_="MS-CLAP")
        BertConfig, BertModel = transformers.BertConfig, transformers.BertModel

        self.config = cfg
        self.audio_encoder = nn.Module()
        self.audio_encoder.base = CNN14(cfg.audio)
        self.audio_encoder.projection = Projection(cfg.audio.channels[-1], cfg.d_proj)
        self.caption_encoder = nn.Module()
        self.caption_encoder.base = BertModel(
            BertConfig(
                vocab_size=cfg.vocab_size,
                hidden_size=cfg.hidden,
                num_hidden_layers=cfg.layers,
                num_attention_heads=cfg.heads,
                intermediate_size=cfg.intermediate,
            )
        )
        self.caption_encoder.projection = Projection(cfg.hidden, cfg.d_proj)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
        self.vocab = vocab

    @torch.no_grad()
    def embed_audio(self, wav: np.ndarray) -> torch.Tensor:
        """(N,) waveform at 44.1 kHz -> (d_proj,) unit vector; tiled to `duration` seconds like the reference."""
        n = int(self.config.duration * self.config.audio.sample_rate)
        wav = np.tile(wav, int(np.ceil(n / max(1, len(wav)))))[:n]
        emb, _ = self.audio_encoder.base(torch.from_numpy(wav).float()[None])
        return F.normalize(self.audio_encoder.projection(emb)[0], dim=-1)

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """Prompts -> (B, d_proj) unit vectors: BERT (uncased WordPiece, padded to text_len) [CLS] -> projection."""
        from tokenizers import BertWordPieceTokenizer

        if self.vocab is None or not os.path.isfile(self.vocab):
            raise MissingFileError(f"{self.vocab}: MS-CLAP needs bert-base-uncased's vocab.txt")
        tok = BertWordPieceTokenizer(str(self.vocab), lowercase=True)
        tok.enable_truncation(self.config.text_len)
        tok.enable_padding(length=self.config.text_len)
        enc = tok.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        hidden = self.caption_encoder.base(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))[0]
        return F.normalize(self.caption_encoder.projection(hidden[:, 0]), dim=-1)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, cfg: MSCLAPConfig = MSCLAPConfig()) -> MSCLAP:
        """A folder with the MS-CLAP 2022 weights (CLAP_weights_2022.pth) and bert-base-uncased's vocab.txt."""
        folder = Path(folder)
        weights = sorted(folder.glob("*.pth")) if folder.is_dir() else []
        missing = ([] if weights else ["CLAP_weights_2022.pth"]) + (
            [] if (folder / "vocab.txt").is_file() else ["vocab.txt"]
        )
        if missing:
            raise MissingFileError(
                f"{folder}: MS-CLAP folder lacks {', '.join(missing)} (weights: the MS-CLAP 2022 "
                "release on Zenodo / Hugging Face microsoft/msclap; vocab.txt: bert-base-uncased)"
            )
        state = read_state(weights[0], "model", what="MS-CLAP", source="CLAP_weights_2022.pth")
        state = {
            k: v
            for k, v in state.items()
            if "spectrogram_extractor." not in k and "logmel_extractor." not in k and not k.endswith("position_ids")
        }
        return load_checked(cls(cfg, folder / "vocab.txt"), state, weights[0], "MS-CLAP")


def msclap_metrics(model: MSCLAP, rows: list[dict]) -> dict:
    """The CLAP score of the ReWaS evaluation: cosine between each generated clip and its prompt, averaged."""
    return M.clap_scores(rows, "clap_msclap", model.config.audio.sample_rate, model.embed_audio, model.embed_text)


# ------------------------------------------------------------------------------------------------ registry

EMBEDDERS = {  # name -> (load from a local path, metrics from (model, rows))
    "classifier": (ClassifierBundle.from_pretrained, class_accuracy),
    "panns": (
        CNN14.from_checkpoint,
        lambda m, rows: classifier_metrics(partial(panns_outputs, m), *_sets(rows), "panns"),
    ),
    "vggish": (VGGish.from_checkpoint, lambda m, rows: vggish_metrics(m, *_sets(rows))),
    "passt": (
        PaSST.from_checkpoint,
        lambda m, rows: classifier_metrics(partial(passt_outputs, m), *_sets(rows), "passt"),
    ),
    "msclap": (MSCLAP.from_folder, msclap_metrics),
    "laion_clap": (LaionCLAP.from_folder, laion_clap_metrics),
    "synchformer": (Synchformer.from_checkpoint, desync_metrics),
}
PLANNED: tuple[str, ...] = ()
LEFT_OUT = ("imagebind",)  # why: docs/evaluation.md


def _sets(rows: list[dict]) -> tuple[list[str], list[str]]:
    """Generated clips, and reference clips (paired metrics need every item to have one; FD does not)."""
    return [r["audio"] for r in rows], [r["reference"] for r in rows if r.get("reference")]


def set_metrics(specs: dict[str, str], rows: list[dict]) -> tuple[dict, list[str]]:
    """Set-level metrics for every requested embedder; unknown or unavailable ones become notes, never numbers."""
    results, notes = {}, []
    for name, path in specs.items():
        if name not in EMBEDDERS:
            why = (
                "not implemented yet"
                if name in PLANNED
                else "left out on purpose (docs/evaluation.md says why)"
                if name in LEFT_OUT
                else "unknown"
            )
            notes.append(f"embedder {name!r} is {why}; its metrics are skipped (available: {', '.join(EMBEDDERS)})")
            continue
        load, compute = EMBEDDERS[name]
        results.update(compute(load(path), rows))
    return results, notes
