"""ReWaSPipeline: video (+ prompt, + optional energy) -> waveform, one call through every stage.

    ① frames (25 fps, 224²) ─► ② video features (1, S·8, C) ─► ③ phi ─► energy (1, 512) per 5.12 s window
    ④ prompt ─► text embedding (1, 512) ─────────────────────────────────┐
    ③ energy ─► mel image (1, 1, 512, 64) ─► VAE encode ─► hint (1, 8, 128, 16)
    ⑤⑥ DDIM/DPM-Solver + CFG over UNet + adapter ─► latent (1, 8, 128, 16) ─► VAE decode ─► mel (1, 1, 512, 64)
    ─► vocoder ─► waveform (1, 81,920) ─► windows joined by an equal-power crossfade ─► (N,) at 16 kHz

Videos longer than one window are covered by overlapping windows (never cut, never looped).
Weights live in a folder: config.json + one safetensors file per component (see `save_pretrained`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from . import energy as energy_mod
from . import frames as frames_mod
from .adapter import EnergyAdapter
from .config import FORMAT_VERSION, PRESETS, ClapTextConfig, ModelConfig
from .diffusion import NoiseSchedule, classifier_free_guidance, make_sampler, sample
from .errors import MediaError, MissingFileError, UserError
from .phi import Phi
from .text_encoder import build_text_encoder, load_tokenizer
from .unet import UNet
from .vae import VAE
from .video_encoder import build_video_encoder
from .vocoder import build_vocoder

FORMAT = "rewas"
COMPONENTS = ("video_encoder", "phi", "text_encoder", "unet", "adapter", "vae", "vocoder")
DIFFUSION = ("video_encoder", "unet", "adapter")  # components that follow the requested dtype; the rest stay fp32
MIN_OVERLAP_S = 1.0
MIN_DURATION_S = 0.01  # one 10 ms mel frame: the shortest sound the model makes


@dataclass
class GenerationResult:
    waveform: np.ndarray  # (N,) float32 mono, N = duration * sample_rate
    sample_rate: int
    energy: np.ndarray  # (frames,) the energy curve that steered generation, one value per 10 ms mel frame
    duration: float  # seconds
    seed: int | None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, and "total"


def build_components(config: ModelConfig) -> dict[str, torch.nn.Module]:
    unet = UNet(config.unet)
    return {
        "video_encoder": build_video_encoder(config.video_encoder),
        "phi": Phi(config.phi),
        "text_encoder": build_text_encoder(config.text),
        "unet": unet,
        "adapter": EnergyAdapter.from_unet(unet, config.latent_shape[2]),
        "vae": VAE(config.vae),
        "vocoder": build_vocoder(config.vocoder, config.audio),
    }


@contextmanager
def empty_weights():
    """Build modules with parameters on the meta device and no initialisation (buffers stay real).

    Skipping torch.nn.init matters: initialising meta tensors imports torch's compiler stack (seconds).
    Each parameter is moved to meta as it is registered (what accelerate's init_empty_weights(include_buffers=False)
    does); `with torch.device("meta")` would not do: it puts the buffers (mel filters, position ids) there too.
    """
    names = [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    # nn.MultiheadAttention imports some init functions by name, so patch them where they are used too
    owners = [torch.nn.init, torch.nn.modules.activation]
    saved = [(m, n, getattr(m, n)) for m in owners for n in names if hasattr(m, n)]
    register_parameter = torch.nn.Module.register_parameter

    def register_on_meta(module: torch.nn.Module, name: str, param) -> None:
        register_parameter(module, name, param)
        if param is not None:
            p = module._parameters[name]
            meta = type(p)(p.to("meta"), requires_grad=p.requires_grad)
            meta.__dict__.update(p.__dict__)
            module._parameters[name] = meta

    try:
        for m, n, _ in saved:
            setattr(m, n, lambda tensor, *args, **kwargs: tensor)
        torch.nn.Module.register_parameter = register_on_meta
        yield
    finally:
        torch.nn.Module.register_parameter = register_parameter
        for m, n, fn in saved:
            setattr(m, n, fn)


@contextmanager
def _timer(timings: dict, key: str):
    start = time.perf_counter()
    yield
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - start


class ReWaSPipeline:
    def __init__(self, config: ModelConfig, components: dict[str, torch.nn.Module]):
        self.config = config
        for name in COMPONENTS:
            module = components[name].eval()
            module.requires_grad_(False)
            setattr(self, name, module)
        self.device = torch.device("cpu")
        self.dtype = torch.float32

    # ------------------------------------------------------------------------------------------- building

    @classmethod
    def from_config(cls, config: ModelConfig, seed: int = 0) -> ReWaSPipeline:
        """Random weights (paper initialisation: adapter copied from the UNet, zero convs at zero), reproducible."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(config, build_components(config))

    @classmethod
    def from_pretrained(
        cls,
        name_or_dir: str | os.PathLike,
        *,
        tokenizer_dir: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> ReWaSPipeline:
        """`default` (the trained model embedded in the package), a preset name (`debug`, `small`, `paper`: random
        weights) or a folder written by `save_pretrained`."""
        if _is_preset(name_or_dir):
            pipe = cls.from_config(PRESETS[str(name_or_dir)]())
        else:
            pipe = cls._load_folder(_model_dir(name_or_dir), tokenizer_dir)
        return pipe.to(device or "cpu", dtype or torch.float32)

    @classmethod
    def _load_folder(cls, folder: Path, tokenizer_dir) -> ReWaSPipeline:
        if not folder.is_dir():
            raise MissingFileError(f"{folder}: no such model folder (and not a preset: {', '.join(PRESETS)})")
        meta_path = folder / "config.json"
        missing = [p.name for p in [meta_path, *(folder / f"{n}.safetensors" for n in COMPONENTS)] if not p.is_file()]
        if missing:
            raise MissingFileError(f"{folder}: incomplete model folder, missing {', '.join(missing)}")
        config = _read_config(meta_path)
        with empty_weights():  # no random init, no double allocation: weights arrive with load_state_dict(assign=True)
            components = build_components(config)
        for name, module in components.items():
            state = load_file(folder / f"{name}.safetensors")
            module.load_state_dict(state, strict=True, assign=True)
        if isinstance(config.text, ClapTextConfig) and config.text.tokenizer != "bytes":
            tokenizer_dir = tokenizer_dir or folder / "tokenizer"
        components["text_encoder"].tokenizer = load_tokenizer(config.text, tokenizer_dir)
        return cls(config, components)

    def save_pretrained(self, folder: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Path:
        """config.json + {component}.safetensors (+ tokenizer/ for BPE tokenizers); floating tensors stored in
        `dtype` (fp32 by default; fp16 halves the size, and loading upcasts again)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in COMPONENTS:
            state = {
                k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
                for k, v in getattr(self, name).state_dict().items()
            }
            save_file(state, folder / f"{name}.safetensors")
        tokenizer = self.text_encoder.tokenizer
        if tokenizer is not None:
            tokenizer.save(folder / "tokenizer")
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": self.config.to_dict()}
        (folder / "config.json").write_text(json.dumps(meta, indent=2))
        return folder

    def to(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> ReWaSPipeline:
        self.device, self.dtype = torch.device(device), dtype
        for name in COMPONENTS:
            getattr(self, name).to(device=self.device, dtype=dtype if name in DIFFUSION else torch.float32)
        return self

    def parameter_counts(self) -> dict[str, int]:
        return count_parameters(self.config)

    # ------------------------------------------------------------------------------------------- stages

    def predict_energy(self, window_frames: np.ndarray) -> torch.Tensor:
        """(T, 224, 224, 3) uint8 frames of one window -> (1, window_frames) energy curve (phi, smoothed, resized)."""
        cfg = self.config
        segs = frames_mod.segments(frames_mod.normalize(window_frames, cfg.video), cfg.video)  # (S, 16, 3, 224, 224)
        feats = self.video_encoder(segs[None].to(self.device))  # (1, S*8, C)
        tokens = self.phi(feats.float()).float().cpu()  # (1, S*8)
        if cfg.energy.timeline == "uniform":  # the release: tokens spread evenly over the window
            return energy_mod.curve_from_tokens(tokens, cfg.audio.window_frames, cfg.energy)  # (1, 512)
        times = energy_mod.model_token_times(cfg, segs.shape[0])
        return energy_mod.curve_from_timed_tokens(
            tokens, times, cfg.audio.window_frames, cfg.audio.frame_rate, cfg.energy
        )

    def encode_energy(self, curve: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(B, F) energy -> (B, z, F/4, n_mels/4) hint latent: the curve repeated over mel bins, VAE-encoded
        (sampled)."""
        mel = curve[:, None, :, None].expand(-1, 1, -1, self.config.audio.n_mels).to(self.device, torch.float32)
        return self.vae.encode(mel, generator=generator, sample=True)

    def decode_mel(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, z, T', F') latent -> (B, 1, T' * 4, n_mels) log-mel, clamped to what a log-mel can be: a small model's
        decoder can overshoot wildly off its training data (log-mel 40, e^40 after exp), and the vocoder would
        return inf/NaN instead of a loud frame."""
        return self.vae.decode(latent.float()).clamp(*energy_mod.log_mel_range(self.config.audio))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, z, T', F') latent -> (B, T' * 4 * hop) waveform."""
        mel = self.decode_mel(latent)  # (B, 1, T, n_mels)
        wav = self.vocoder(mel[:, 0].transpose(1, 2))  # (B, T * hop + 32)
        return wav[:, : mel.shape[2] * self.config.audio.hop_length]

    def denoiser(
        self, text: torch.Tensor, empty: torch.Tensor, hint: torch.Tensor, guidance: float, control_scale: float = 1.0
    ) -> Callable:
        """eps(x_t, t) with CFG; the unconditional branch has the empty prompt AND an all-zero energy latent.
        control_scale multiplies the adapter's residuals (0: the adapter is not run, text-to-audio only)."""
        if guidance == 1.0:
            text_in, hint_in = text, hint
        else:
            text_in, hint_in = torch.cat([empty, text]), torch.cat([torch.zeros_like(hint), hint])
        text_in, hint_in = text_in.to(self.dtype), hint_in.to(self.dtype)

        def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            x_in = x if guidance == 1.0 else torch.cat([x, x])
            t_in = t.reshape(1).expand(x_in.shape[0]).to(self.device)
            control = None
            if control_scale != 0:
                control = self.adapter(x_in, hint_in, t_in, text_in)
                control = control if control_scale == 1 else [c * control_scale for c in control]
            out = self.unet(x_in, t_in, text_in, control=control)
            return out if guidance == 1.0 else classifier_free_guidance(*out.chunk(2), guidance)

        return eps

    # ------------------------------------------------------------------------------------------- generation

    @torch.no_grad()
    def __call__(
        self,
        video: str | os.PathLike | None = None,
        *,
        frames: np.ndarray | None = None,
        prompt: str = "",
        energy: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        scheduler: str | None = None,
        eta: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        callback: Callable[[int, int], None] | None = None,
        control_scale: float = 1.0,
    ) -> GenerationResult:
        """Generate the soundtrack of `video` (a path) or `frames` ((T, H, W, 3) uint8 RGB at 25 fps).

        energy: optional control curve replacing phi's prediction: one value per 10 ms mel frame, or a
        (times_s, values) pair. Without a video, the curve alone sets the duration.
        seed / generator: the source of all randomness (an explicit torch.Generator wins).
        device / dtype: move the pipeline first (same as `.to(device, dtype)`; dtype applies to the diffusion model
        and video encoder, the rest stays float32).
        callback(step, total) is called after every sampler step over all windows.
        control_scale: strength of the energy control (1: as trained; 0: none, the backbone follows the text alone).
        """
        if device is not None or dtype is not None:
            self.to(device or self.device, dtype or self.dtype)
        cfg, timings, t_start = self.config, {}, time.perf_counter()
        steps = steps or cfg.sampler.steps
        guidance = cfg.sampler.guidance if guidance is None else guidance
        eta = cfg.sampler.eta if eta is None else eta
        if generator is None:
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item()) if seed is None else seed
            generator = torch.Generator("cpu").manual_seed(seed)
        fps, rate = cfg.video.fps, cfg.audio.frame_rate

        with _timer(timings, "frames"):
            frame_iter, duration = self._frame_source(video, frames, energy)
        user_curve = self._user_curve(energy, duration) if energy is not None else None

        win_frames = round(cfg.audio.window_seconds * fps)  # video frames per window (128)
        starts = sorted(
            {round(s * fps) for s in frames_mod.window_starts(duration, cfg.audio.window_seconds, MIN_OVERLAP_S)}
        )
        mel_per_frame = rate / fps  # 4 mel frames per video frame
        windows = (
            frames_mod.iter_windows(frame_iter, starts, win_frames)
            if frame_iter is not None
            else (None for _ in starts)
        )

        with _timer(timings, "text"):
            text = self.text_encoder.encode([prompt, ""]).to(self.device)
        cond, empty = text[:1], text[1:]
        sampler = make_sampler(NoiseSchedule(cfg.diffusion), scheduler or cfg.sampler.scheduler)
        total_steps = steps * len(starts)
        chunks, curves = [], []
        for w, start in enumerate(starts):
            first_mel = round(start * mel_per_frame)
            with _timer(timings, "frames"):  # decoding is lazy: a window's frames are read here
                window = next(windows)
            with _timer(timings, "energy"):
                if user_curve is not None:
                    curve = torch.from_numpy(user_curve[first_mel : first_mel + cfg.audio.window_frames]).float()[None]
                    curve = torch.nn.functional.pad(
                        curve, (0, cfg.audio.window_frames - curve.shape[1]), mode="replicate"
                    )
                else:
                    curve = self.predict_energy(window)
                hint = self.encode_energy(curve, generator)
            with _timer(timings, "diffusion"):
                denoise = self.denoiser(cond, empty, hint, guidance, control_scale)
                step_cb = (lambda i, n, w=w: callback(w * steps + i, total_steps)) if callback else None
                latent = sample(
                    denoise,
                    sampler,
                    (1, *cfg.latent_shape),
                    steps=steps,
                    generator=generator,
                    eta=eta,
                    device=self.device,
                    dtype=self.dtype,
                    callback=step_cb,
                )
            with _timer(timings, "decode"):
                chunks.append(self.decode(latent)[0].float().cpu().numpy())
            curves.append(curve[0].numpy())

        hop = cfg.audio.hop_length
        samples = round(duration * cfg.audio.sample_rate)
        waveform = crossfade_join(chunks, [round(s * mel_per_frame) * hop for s in starts], samples)
        curve = crossfade_join(curves, [round(s * mel_per_frame) for s in starts], max(1, samples // hop), power=False)
        timings["total"] = time.perf_counter() - t_start
        return GenerationResult(waveform, cfg.audio.sample_rate, curve, duration, seed, timings)

    def _frame_source(self, video, frames, energy):
        """-> (iterator of preprocessed uint8 frames or None, duration in seconds)."""
        cfg = self.config.video
        if video is not None:
            info = check_duration(frames_mod.probe(video))
            return frames_mod.iter_frames(video, cfg, info), info.duration
        if frames is not None:
            frames = np.asarray(frames)
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
                raise UserError(f"frames must be (T, H, W, 3) uint8 with T >= 1, got {frames.shape}")
            return (frames_mod.crop_frame(f, cfg.resize_short, cfg.crop) for f in frames), frames.shape[0] / cfg.fps
        if energy is not None:
            length = len(energy[0]) if isinstance(energy, tuple) else len(energy)
            times = energy[0] if isinstance(energy, tuple) else None
            duration = (
                float(times[-1]) + 1 / self.config.audio.frame_rate
                if times is not None
                else length / self.config.audio.frame_rate
            )
            return None, duration
        raise UserError("give a video, frames or an energy curve")

    def _user_curve(self, energy, duration: float) -> np.ndarray:
        """A user curve -> one value per mel frame over the whole duration (interpolated, ends held)."""
        n = max(1, math.ceil(duration * self.config.audio.frame_rate))
        frame_t = energy_mod.frame_times(n, self.config.audio)
        if isinstance(energy, tuple):
            return energy_mod.resample_curve(energy[0], energy[1], frame_t).astype(np.float32)
        values = np.asarray(energy, dtype=np.float64).reshape(-1)
        return energy_mod.resample_curve(
            energy_mod.frame_times(len(values), self.config.audio), values, frame_t
        ).astype(np.float32)


def check_duration(info: frames_mod.VideoInfo) -> frames_mod.VideoInfo:
    """A video too short to hold one mel frame gets a clear error, not an empty soundtrack."""
    if info.duration < MIN_DURATION_S:
        raise MediaError(
            f"{info.path}: the video lasts {info.duration * 1000:.3g} ms; a soundtrack needs at least "
            f"{MIN_DURATION_S * 1000:g} ms"
        )
    return info


def crossfade_join(chunks: list[np.ndarray], offsets: list[int], length: int, power: bool = True) -> np.ndarray:
    """Overlap-add windows placed at `offsets`, fading across each overlap (equal-power for audio, linear for
    curves)."""
    out = np.zeros(length, dtype=np.float64)
    for i, (chunk, offset) in enumerate(zip(chunks, offsets)):
        chunk = np.asarray(chunk, dtype=np.float64)[: max(0, length - offset)]
        weight = np.ones(len(chunk))
        if i > 0:  # fade in across the overlap with the previous window
            overlap = max(0, min(len(chunk), offsets[i - 1] + len(chunks[i - 1]) - offset))
            weight[:overlap] = np.linspace(0, 1, overlap + 2)[1:-1]
        if i + 1 < len(chunks):  # fade out across the overlap with the next window
            overlap = max(0, min(len(chunk), offset + len(chunk) - offsets[i + 1]))
            if overlap:
                weight[len(chunk) - overlap :] *= np.linspace(1, 0, overlap + 2)[1:-1]
        if power:
            weight = np.sin(weight * np.pi / 2)
        out[offset : offset + len(chunk)] += weight * chunk
    return out.astype(np.float32)


def _is_preset(name_or_dir) -> bool:
    return str(name_or_dir) in PRESETS and not Path(name_or_dir).is_dir()


DEFAULT_MODEL = "default"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "default"


def _model_dir(name_or_dir) -> Path:
    """`default` -> the embedded model's folder (unless a folder of that name exists here); else the path itself."""
    if str(name_or_dir) == DEFAULT_MODEL and not Path(name_or_dir).is_dir():
        if not (DEFAULT_MODEL_DIR / "config.json").is_file():
            raise MissingFileError(
                f"the embedded default model is missing from this install ({DEFAULT_MODEL_DIR}); "
                "reinstall rewas, or pass --model DIR"
            )
        return DEFAULT_MODEL_DIR
    return Path(name_or_dir)


def count_parameters(config: ModelConfig) -> dict[str, int]:
    """Parameters per component of a config, built on the meta device (nothing allocated, instant even for `paper`)."""
    with empty_weights():
        components = build_components(config)
    counts = {name: sum(p.numel() for p in components[name].parameters()) for name in COMPONENTS}
    counts["total"] = sum(counts.values())
    return counts


def load_config(name_or_dir: str | os.PathLike) -> ModelConfig:
    """The config of a preset or a saved folder, without loading weights."""
    if _is_preset(name_or_dir):
        return PRESETS[str(name_or_dir)]()
    path = _model_dir(name_or_dir) / "config.json"
    if not path.is_file():
        raise MissingFileError(
            f"{name_or_dir}: neither a preset ({', '.join(PRESETS)}) nor a model folder with config.json"
        )
    return _read_config(path)


def _read_config(path: Path) -> ModelConfig:
    """A model folder's config.json -> ModelConfig; anything malformed in it is the folder's fault, not ours."""
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("model"), dict):
        raise UserError(f"{path}: not a rewas model config")
    try:
        return ModelConfig.from_dict(meta["model"], version=meta.get("format_version", 1))
    except (TypeError, KeyError, AttributeError) as e:
        raise UserError(f"{path}: malformed model config ({e.__class__.__name__}: {e})") from None
