"""ReWaSPipeline: video (+ prompt, + optional energy) -> waveform, one call through every stage, any length.

    ① frames (25 fps, 224²), one 5.12 s window at a time ─► ② video features (1, S·8, C) ─► ③ phi ─► energy
       (1, 512) per window, windows crossfaded ─► the curve over the whole timeline (1, L·4)
    ④ prompt ─► text embedding (1, 512)
    ③ curve ─► mel image per window (1, 1, 512, 64) ─► VAE encode ─► hint timeline (1, 8, L, 16)
    ⑤⑥ DPM-Solver++/DDIM + CFG over UNet + adapter, on shifted tiles of the latent timeline ─► latent (1, 8, L, 16)
    ─► VAE decode in 15.36 s windows, joined in mel space ─► mel (1, 1, L·4, 64) ─► vocoder in chunks ─► (N,)

L = max(128, duration in latent frames): a clip of one window or less is exactly the single-window model.
Weights live in a folder: config.json + one safetensors file per component (see `save_pretrained`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from . import edits as edits_mod
from . import energy as energy_mod
from . import files, validate
from . import frames as frames_mod
from .adapter import EnergyAdapter
from .audio import log_mel_ceiling
from .checkpoint import layout_diff
from .config import (  # noqa: F401  (DEFAULT_MODEL_DIR and load_config are imported from here too)
    DEFAULT_MODEL_DIR,
    FORMAT,
    FORMAT_VERSION,
    PRESETS,
    AudioConfig,
    ClapTextConfig,
    ModelConfig,
    _is_preset,
    _model_dir,
    _read_config,
    load_config,
)
from .diffusion import NoiseSchedule, classifier_free_guidance, make_sampler, randn
from .edits import Edit
from .errors import MediaError, MissingFileError, NonFiniteError, UserError, one_line
from .phi import Phi
from .text_encoder import build_text_encoder, load_tokenizer
from .timeline import WindowDenoiser, sample_timelines
from .unet import UNet
from .vae import VAE, repair_overshoot
from .video_encoder import build_video_encoder
from .vocoder import build_vocoder, vocode
from .windows import blend, window_starts

TEXT_CACHE_SIZE = 256  # prompt tuples whose embeddings are kept
COMPONENTS = ("video_encoder", "phi", "text_encoder", "unet", "adapter", "vae", "vocoder")
DIFFUSION = ("video_encoder", "unet", "adapter")  # components that follow the requested dtype; the rest stay fp32
MIN_OVERLAP_S = 1.0  # fixed windows (phi, hint, VAE decoding) overlap by at least this much
DECODE_WINDOW_S = 15.36  # VAE decoding windows, half-overlapping
END_MARGIN_S = 0.64  # a long timeline is sampled this much past both ends
TILE_CONTEXT_S = 0.64  # while sampling, each window predicts only its middle, this far from its ends
MIN_DURATION_S = 0.01  # one 10 ms mel frame: the shortest sound the model makes


@dataclass
class Timeline:
    """A clip made ready for sampling by `ReWaSPipeline.prepare`."""

    duration: float  # seconds
    samples: int  # of the soundtrack
    length: int  # latent frames, at least one window
    curve: torch.Tensor  # (1, length * 4) energy per 10 ms mel frame over the whole timeline
    timings: dict[str, float] = field(default_factory=dict)
    muted: np.ndarray | None = None  # (length * 4,) bool: frames the edits made silent, gated in the output
    prompt: str | None = None  # the prompt phi read for the curve (None: phi reads no prompt, or a given curve)

    def edited(self, edits: Sequence[Edit], audio: AudioConfig) -> Timeline:
        """The same clip with its curve edited (`rewas.edits.apply`, ranges in seconds of the clip)."""
        top = energy_mod.log_mel_range(audio)[1]
        before = self.curve[0].numpy()
        curve = edits_mod.apply(before, edits, audio.frame_rate, ceiling=top)
        muted = edits_mod.silenced(before, curve, self.muted)
        return dataclasses.replace(self, curve=torch.from_numpy(curve)[None], muted=muted if muted.any() else None)


@dataclass
class GenerationResult:
    waveform: np.ndarray  # (N,) float32 mono, N = duration * sample_rate
    sample_rate: int
    energy: np.ndarray  # (frames,) the energy curve that steered generation, one value per 10 ms mel frame
    duration: float  # seconds
    seed: int | None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, and "total"
    latent: torch.Tensor | None = field(default=None, repr=False)  # (1, z, L, F) the sampled latent, for analysis


def build_components(config: ModelConfig, dtype: torch.dtype = torch.float32) -> dict[str, torch.nn.Module]:
    """Initialised in fp32 (the same weights whatever `dtype`), each DIFFUSION component then in `dtype` as soon as
    it is built: the paper model all in fp32 at once would peak at 3.9 GB."""
    unet = UNet(config.unet).to(dtype)
    return {
        "video_encoder": build_video_encoder(config.video_encoder).to(dtype),
        "phi": Phi(config.phi),
        "text_encoder": build_text_encoder(config.text),
        "unet": unet,
        "adapter": EnergyAdapter.from_unet(unet, config.latent_shape[2]),  # its copy of the UNet's in `dtype`
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


def decode_batch(device: torch.device, batch_size: int) -> int:
    """How many clips of one length step 7 decodes in one call on `device`."""
    return 1 if device.type == "cpu" else batch_size


@contextmanager
def _timer(timings: dict, key: str):
    start = time.perf_counter()
    yield
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - start


class ReWaSPipeline:
    def __init__(self, config: ModelConfig, components: dict[str, torch.nn.Module]):
        if config.vae.mel_ceiling and len(config.vae.mel_ceiling) != config.audio.n_mels:
            raise UserError(
                f"vae.mel_ceiling has {len(config.vae.mel_ceiling)} values; the model has {config.audio.n_mels} mels"
            )
        self.config = config
        for name in COMPONENTS:
            module = components[name].eval()
            module.requires_grad_(False)
            setattr(self, name, module)
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.storage_dtype = torch.float32  # what the weights were stored in: save_pretrained keeps it
        self._text_cache: dict[tuple[str, ...], torch.Tensor] = {}  # encode_text's
        self.runtime = "torch"  # where the video encoder and the denoiser run: `use_runtime`
        self._step = None  # the denoiser call compiled by another runtime
        self.runtime_reason = "the default"  # why `runtime` was chosen (`rewas -v` says it)
        self._runtime_request = ("torch", False)  # what `use_runtime` was asked: `to()` asks it again

    # ------------------------------------------------------------------------------------------- building

    @classmethod
    def from_config(cls, config: ModelConfig, seed: int = 0, dtype: torch.dtype | str = torch.float32) -> ReWaSPipeline:
        """Random weights (paper initialisation: adapter copied from the UNet, zero convs at zero), reproducible, on
        the CPU; the same ones in any `dtype` of the diffusion model (as `.to()` gives)."""
        dtype = validate.dtype(dtype, torch.device("meta"))  # the device it will run on is not known yet
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            pipe = cls(config, build_components(config, dtype))
        pipe.dtype = dtype
        return pipe

    @classmethod
    def from_pretrained(
        cls,
        name_or_dir: str | os.PathLike,
        *,
        tokenizer_dir: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        runtime: str = "torch",
    ) -> ReWaSPipeline:
        """`default` (the trained model embedded in the package), a preset name (`debug`, `small`, `paper`: random
        weights) or a folder written by `save_pretrained`. `runtime`: see `use_runtime`."""
        device = validate.device(device or "cpu")
        target = validate.dtype(dtype, device)  # built in it: no fp32 copy of them all
        if _is_preset(name_or_dir):
            pipe = cls.from_config(PRESETS[str(name_or_dir)](), dtype=target)
        else:
            pipe = cls._load_folder(_model_dir(name_or_dir), tokenizer_dir, target)
        pipe.to(device, target)
        pipe.use_runtime(runtime)
        return pipe

    @classmethod
    def _load_folder(cls, folder: Path, tokenizer_dir, dtype: torch.dtype = torch.float32) -> ReWaSPipeline:
        if not folder.is_dir():
            raise MissingFileError(f"{folder}: no such model folder (and not a preset: {', '.join(PRESETS)})")
        meta_path = folder / "config.json"
        missing = [p.name for p in [meta_path, *(folder / f"{n}.safetensors" for n in COMPONENTS)] if not p.is_file()]
        if missing:
            raise MissingFileError(f"{folder}: incomplete model folder, missing {', '.join(missing)}")
        config = _read_config(meta_path)
        with empty_weights():  # no random init, no double allocation: weights arrive with load_state_dict(assign=True)
            try:
                components = build_components(config)  # empty: each takes its file's dtype, then `dtype` below
            except (ValueError, AssertionError) as e:  # a config that passed its checks but builds no model
                raise UserError(f"{meta_path}: describes a model that cannot be built ({one_line(e)})") from None
        stored = set()
        for name, module in components.items():
            state = _read_weights(folder / f"{name}.safetensors")
            stored |= {v.dtype for v in state.values() if v.is_floating_point()}
            _check_layout(folder / f"{name}.safetensors", state, module.state_dict())
            module.load_state_dict(state, strict=True, assign=True)
            # a tensor read from the file's buffer may start anywhere; CPU kernels round differently on memory that
            # is not 64-byte aligned (a saved and reloaded model's audio moved by 3e-5), so such tensors are copied
            for t in (*module.parameters(), *module.buffers()):
                if t.data_ptr() % 64:
                    t.data = t.data.clone()
            if name in DIFFUSION:  # one component at a time in `dtype`: never all of them stored as fp32 at once
                module.to(dtype)
        if isinstance(config.text, ClapTextConfig) and config.text.tokenizer != "bytes":
            tokenizer_dir = tokenizer_dir or folder / "tokenizer"
        components["text_encoder"].tokenizer = load_tokenizer(config.text, tokenizer_dir)
        pipe = cls(config, components)
        if len(stored) == 1:
            pipe.storage_dtype = stored.pop()
        return pipe

    def save_pretrained(self, folder: str | os.PathLike, dtype: torch.dtype | str | None = None) -> Path:
        """config.json + {component}.safetensors (+ tokenizer/ for BPE tokenizers); floating tensors stored in
        `dtype`: by default what the loaded folder stored (fp16 for the embedded model, which loading upcasts, so
        that a save does not double its size), fp32 for a model built in memory."""
        dtype = self.storage_dtype if dtype is None else validate.dtype(dtype, torch.device("meta"), "dtype")
        if any(self._released(name) for name in DIFFUSION):
            raise UserError(
                "this pipeline's weights were handed to OpenVINO (use_runtime): load the model again to save it"
            )
        folder = Path(folder)
        with files.atomic_folder(folder) as tmp:  # a failed or killed save leaves no folder that looks whole
            for name in COMPONENTS:
                state = {
                    k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
                    for k, v in getattr(self, name).state_dict().items()
                }
                with files.writing(folder / f"{name}.safetensors"):
                    save_file(state, tmp / f"{name}.safetensors")
            tokenizer = self.text_encoder.tokenizer
            if tokenizer is not None:
                with files.writing(folder / "tokenizer"):
                    tokenizer.save(tmp / "tokenizer")
            meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": self.config.to_dict()}
            with files.writing(folder / "config.json"):
                (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        return folder

    def to(self, device: str | torch.device = "cpu", dtype: torch.dtype | str = torch.float32) -> ReWaSPipeline:
        """Move to `device` (a torch device or its name) with the diffusion model in `dtype` (a torch dtype or
        fp32/bf16/fp16); the VAE, vocoder, text encoder and phi stay fp32."""
        device = validate.device(device)
        dtype = validate.dtype(dtype, device)  # both checked before anything moves: a refused call moves nothing
        gone = [name for name in DIFFUSION if self._released(name)]
        if gone and device.type != "cpu":
            raise UserError(
                f"this pipeline's {' and '.join(gone)} run on OpenVINO, which freed their PyTorch weights: load the "
                f"model again for {device}"
            )
        encoder = self.video_encoder if getattr(self.video_encoder, "segment_runner", None) is not None else None
        if gone:  # compiled again from the converted files before anything moves: a failure leaves it as it was
            step = self._step.with_dtype(dtype)
            segment = encoder.segment_runner.with_dtype(dtype) if encoder is not None else None
        self.device, self.dtype = device, dtype
        self._text_cache.clear()
        for name in COMPONENTS:
            to = {"device": self.device} if name not in gone else {}  # freed weights stay shapes without memory
            getattr(self, name).to(**to, dtype=dtype if name in DIFFUSION else torch.float32)
        if gone:
            self._step = step
            if encoder is not None:
                encoder.segment_runner = segment
        elif self._runtime_request[0] != "torch":  # chosen again for the new precision and device
            runtime, keep_torch = self._runtime_request
            try:
                if runtime == "openvino" and device.type != "cpu":
                    self._use_torch(encoder, f"openvino was asked for; torch on {device.type}")
                else:
                    self._choose_runtime(runtime, keep_torch)
            except BaseException:  # its PyTorch weights are there, moved: they run it, not the old compiled nets
                self._use_torch(encoder, "OpenVINO failed to compile for the new precision")
                raise
        return self

    def use_runtime(self, runtime: str = "auto", keep_torch: bool = False) -> str:
        """Run the video encoder (Motionformer) and the denoiser with `runtime` (`rewas.runtime`): torch, openvino
        (a CPU, the [openvino] extra) or auto (openvino for a large model on a CPU when it is installed). Returns
        why it was chosen. The first use of a model converts it for OpenVINO (about 30 s for the paper's);
        later ones load it from the cache (`rewas.runtime.cache_root`). OpenVINO holds its own copy of their
        weights, so the PyTorch ones are freed (1.2 GB for the paper in bf16) unless `keep_torch`: such a
        pipeline then stays on OpenVINO and on the CPU (load the model again for PyTorch or a GPU). `to()` chooses
        again with the same arguments."""
        why = self._choose_runtime(runtime, keep_torch)
        self._runtime_request = (runtime, keep_torch)
        return why

    def _choose_runtime(self, runtime: str, keep_torch: bool) -> str:
        from . import runtime as runtime_mod

        size = sum(p.numel() for m in (self.unet, self.adapter) for p in m.parameters())
        chosen, why = runtime_mod.resolve(runtime, self.device, size)
        encoder = self.video_encoder if hasattr(self.video_encoder, "segment_runner") else None
        nets = [m for m in (self.unet, self.adapter, encoder) if m is not None]
        if any(runtime_mod.released(m) for m in nets):
            if chosen != "openvino":
                raise UserError(
                    "this pipeline's video encoder and denoiser run on OpenVINO, which freed their PyTorch weights: "
                    "load the model again to run them with PyTorch"
                )
            self._step = self._step.with_dtype(self.dtype)
            if encoder is not None:
                encoder.segment_runner = encoder.segment_runner.with_dtype(self.dtype)
        elif chosen == "openvino":
            try:
                step = runtime_mod.compile_step(self.unet, self.adapter, self.dtype)
                segment = runtime_mod.compile_video_encoder(encoder, self.dtype) if encoder is not None else None
            except Exception as e:  # auto must never do worse than PyTorch: an OpenVINO that fails is left out
                if runtime != "auto":
                    raise
                why = f"auto: OpenVINO failed ({one_line(e)}), so torch"
                runtime_mod.log.warning("OpenVINO failed (%s): the model runs on PyTorch", one_line(e))
                return self._use_torch(encoder, why)
            self._step = step
            if encoder is not None:
                encoder.segment_runner = segment
            if not keep_torch:
                runtime_mod.release(*nets)
        else:
            return self._use_torch(encoder, why)
        self.runtime, self.runtime_reason = chosen, why
        return why

    def _use_torch(self, encoder, why: str) -> str:
        self._step = None
        if encoder is not None:
            encoder.segment_runner = None
        self.runtime, self.runtime_reason = "torch", why
        return why

    def _arrange(self) -> None:
        """The UNet's and adapter's convolution weights in channels-last layout where PyTorch runs them faster so
        (`validate.channels_last`: one guided step of the default model in bf16 took 55 against 72 ms on an AMX
        CPU, 39 against 43 ms on an AVX512-BF16 one), else in the default layout. Only the layout changes, not the
        values; the activations follow the weights' layout. Done when PyTorch's denoiser is made (`denoiser`), for
        the device and dtype of that moment: a model that goes to OpenVINO is never laid out for PyTorch first
        (converting takes the default layout), and one that comes back from it, or whose conversion failed, is laid
        out again; when the layout is already right, nothing is copied."""
        widest = self.config.unet.model_channels * max(self.config.unet.channel_mult)
        last = validate.channels_last(self.device, self.dtype, widest)
        layout = torch.channels_last if last else torch.contiguous_format
        for name in ("unet", "adapter"):
            if not self._released(name):
                getattr(self, name).to(memory_format=layout)

    def _released(self, name: str) -> bool:
        from .runtime import released

        return released(getattr(self, name))

    def parameter_counts(self) -> dict[str, int]:
        return count_parameters(self.config)

    # ------------------------------------------------------------------------------------------- stages

    def predict_energy(self, window_frames: np.ndarray, text: torch.Tensor | None = None) -> torch.Tensor:
        """(T, 224, 224, 3) uint8 frames of one window -> (1, window_frames) energy curve (phi, smoothed, resized).
        text: (1, D) the prompt's embedding (`phi_text`), for a phi that reads it."""
        return self._energies(window_frames, [text])[0]

    def _view_energies(self, window_frames: np.ndarray, texts: list[torch.Tensor | None]) -> list[torch.Tensor]:
        """One view's window -> its curve for each prompt: through `predict_energy` for one (the stage a caller may
        replace, as tests do to stand in for phi), else the video encoder once for all."""
        if len(texts) == 1:
            return [self.predict_energy(window_frames, texts[0])]
        return self._energies(window_frames, texts)

    def _energies(self, window_frames: np.ndarray, texts: list[torch.Tensor | None]) -> list[torch.Tensor]:
        """`predict_energy` for several prompts on one window: the video encoder runs once."""
        cfg = self.config
        segs = frames_mod.segments(frames_mod.normalize(window_frames, cfg.video), cfg.video)  # (S, 16, 3, 224, 224)
        feats = self.video_encoder(segs[None].to(self.device)).float()  # (1, S*8, C)
        curves = []
        for text in texts:
            if text is None and cfg.phi.text_dim:
                text = self.phi_text("")
            tokens = self.phi(feats, text).float().cpu()  # (1, S*8)
            if cfg.energy.timeline == "uniform":  # the release: tokens spread evenly over the window
                curve = energy_mod.curve_from_tokens(tokens, cfg.audio.window_frames, cfg.energy)  # (1, 512)
            else:
                times = energy_mod.model_token_times(cfg, segs.shape[0])
                curve = energy_mod.curve_from_timed_tokens(
                    tokens, times, cfg.audio.window_frames, cfg.audio.frame_rate, cfg.energy
                )
            # an energy cannot leave the log-mel's range; a phi trained towards silence's floor can step past it
            curves.append(curve.clamp(*energy_mod.log_mel_range(cfg.audio)))
        return curves

    def phi_text(self, prompt: str) -> torch.Tensor | None:
        """The prompt's embedding as phi reads it, (1, D); None for a phi that sees the video alone (the paper)."""
        if not self.config.phi.text_dim:
            return None
        return self.encode_text(prompt).to(self.device, torch.float32)

    def encode_text(self, *prompts: str) -> torch.Tensor:
        """(len(prompts), D) embeddings of prompts encoded together, computed once per such tuple: takes in the
        studio and items of a batch that share their prompts do not encode them again. Keyed by the whole tuple,
        since an embedding moves (by ~1e-7) with the prompts that share its batch. The text encoder is frozen;
        `.to()` clears the cache."""
        if prompts not in self._text_cache:
            self._text_cache[prompts] = self.text_encoder.encode(list(prompts))
            while len(self._text_cache) > TEXT_CACHE_SIZE:  # the oldest first
                self._text_cache.pop(next(iter(self._text_cache)))
        return self._text_cache[prompts]

    def encode_energy(self, curve: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(B, F) energy of one window -> (B, z, F/4, n_mels/4) hint latent: the curve repeated over mel bins,
        VAE-encoded (sampled)."""
        mel = curve[:, None, :, None].expand(-1, 1, -1, self.config.audio.n_mels).to(self.device, torch.float32)
        return self.vae.encode(mel, generator=generator, sample=True)

    def encode_energy_timeline(self, curve: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(1, L * 4) energy of a whole timeline -> (1, z, L, n_mels/4) hint latent. One window is `encode_energy`.
        Longer: the posterior's mean and std are computed window by window and crossfaded, then sampled with one
        noise for the whole timeline (crossfading samples would halve the noise's variance in every overlap)."""
        window, d = self.config.latent_shape[1], self.config.vae.downsample
        length = curve.shape[1] // d
        if length <= window:
            return self.encode_energy(curve, generator)
        starts = window_starts(length, window, round(MIN_OVERLAP_S * self.latent_rate))
        n_mels = self.config.audio.n_mels
        moments = [
            self.vae.moments(curve[:, None, s * d : (s + window) * d, None].expand(-1, 1, -1, n_mels).to(self.device))
            for s in starts
        ]
        mean = blend((m for m, _ in moments), starts, length, dim=2)
        std = blend((torch.exp(0.5 * v.clamp(-30.0, 20.0)) for _, v in moments), starts, length, dim=2)
        noise = randn(mean.shape, generator, self.device)
        return (mean + std * noise) * self.vae.scale_factor

    def decode_mel(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, z, T', F') latent -> (B, 1, T' * 4, n_mels) log-mel, held to what a log-mel of this model can be: a
        small model's decoder can overshoot wildly off its training data (log-mel 40, e^40 after exp), which the
        vocoder would render as clicks at many times full scale, or inf/NaN. Each band is held under the VAE's
        `mel_ceiling` (what its training data held), or else what a waveform in [-1, 1] can give, and the
        overshoots are repaired (`vae.repair_overshoot`)."""
        audio = self.config.audio
        ceiling = self.config.vae.mel_ceiling
        ceiling = torch.tensor(ceiling) if ceiling else log_mel_ceiling(audio)
        mel = check_finite(self.vae.decode(latent.to(self.device, torch.float32)), "the VAE decoder's log-mel")
        return repair_overshoot(mel, ceiling, math.log(audio.log_clamp))

    def decode_latent_mel(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, z, L, F) latent of any length -> (B, n_mels, L * 4) log-mel: the VAE decodes overlapping windows that
        are joined in mel space (its mid block attends over the whole window, and its group norms pool over it, so
        it cannot take an hour at once)."""
        starts, window = self.decode_windows(latent.shape[2])
        d = self.config.vae.downsample
        mels = (self.decode_mel(latent[:, :, s : s + window]) for s in starts)  # (B, 1, window * 4, n_mels) each
        return blend(mels, [s * d for s in starts], latent.shape[2] * d, dim=2)[:, 0].transpose(1, 2)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, z, L, F) latent of any length -> (B, L * 4 * hop) waveform: `decode_latent_mel`, then the vocoder in
        overlapping chunks."""
        audio = self.config.audio
        mel = self.decode_latent_mel(check_finite(latent, "the sampled latent"))
        return check_finite(vocode(self.vocoder, mel, audio.hop_length, sample_rate=audio.sample_rate), "the vocoder")

    def decode_windows(self, length: int) -> tuple[list[int], int]:
        """(starts, window) of the VAE decoding windows over a latent of `length` frames: DECODE_WINDOW_S long,
        half-overlapping. The decoder's group norms and mid-block attention pool over its whole window, so what it
        renders for a frame depends on the window; long windows that share half their content render it alike
        (docs/long_videos.md)."""
        window = min(length, round(DECODE_WINDOW_S * self.latent_rate))
        return window_starts(length, window, window // 2), window

    def timeline_length(self, samples: int) -> int:
        """Latent frames of the timeline of a soundtrack of `samples` samples: at least one window."""
        d, hop = self.config.vae.downsample, self.config.audio.hop_length
        return max(self.config.latent_shape[1], math.ceil(math.ceil(samples / hop) / d))

    @property
    def latent_rate(self) -> float:
        """Latent frames per second (25 for the paper: one per video frame)."""
        return self.config.audio.frame_rate / self.config.vae.downsample

    def denoiser(
        self, text: torch.Tensor, negative: torch.Tensor, guidance: float, control_scale: float = 1.0
    ) -> WindowDenoiser:
        """eps(x_t (B, z, W, F), t, hint (B, z, W, F), rows=None, negative_rows=None) with CFG; `rows` (B, D) gives
        each window its own prompt embedding (windows of several clips), else all have `text`; `negative_rows` the
        same for `negative`. The unconditional branch has the negative prompt (the empty prompt, unless one is
        given) and an all-zero energy latent (the hint itself where the sampler config's guide_energy is False).
        control_scale multiplies the adapter's residuals (0: the adapter is not run, text-to-audio only)."""
        if self._step is None:
            self._arrange()

        def eps(
            x: torch.Tensor,
            t: torch.Tensor,
            hint: torch.Tensor,
            rows: torch.Tensor | None = None,
            negative_rows: torch.Tensor | None = None,
        ) -> torch.Tensor:
            b = x.shape[0]
            cond = text.expand(b, -1) if rows is None else rows  # rows: (B, D), each window's own prompt
            if guidance == 1.0:
                x_in, text_in, hint_in = x, cond, hint
            else:
                x_in = torch.cat([x, x])
                uncond = negative.expand(b, -1) if negative_rows is None else negative_rows
                text_in = torch.cat([uncond, cond])
                hint_in = torch.cat([torch.zeros_like(hint) if self.config.sampler.guide_energy else hint, hint])
            text_in, hint_in = text_in.to(self.dtype), hint_in.to(self.dtype)
            t_in = t.reshape(1).expand(x_in.shape[0]).to(self.device)
            if self._step is not None:  # control_scale 0 adds zero residuals: the same as no adapter
                out = self._step(x_in, t_in, text_in, hint_in, control_scale)
                return out if guidance == 1.0 else classifier_free_guidance(*out.chunk(2), guidance)
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
        prompt: str | None = None,
        negative_prompt: str = "",
        energy: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None,
        edits: Sequence[Edit] = (),
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
        batch_size: int | None = None,
        timeline: Timeline | None = None,
    ) -> GenerationResult:
        """Generate the soundtrack of `video` (a path) or `frames` ((T, H, W, 3) RGB at 25 fps: uint8, or floats in
        [0, 1]), any length.

        prompt: what should be heard; required, and not empty (the rule of every entry point). Bad arguments raise
        `rewas.errors.UserError` (a ValueError) naming the argument.

        negative_prompt: what the sound should not be: classifier-free guidance steers away from it (its embedding
        replaces the empty prompt's in the unconditional branch).
        energy: optional control curve replacing phi's prediction: one value per 10 ms mel frame, or a
        (times_s, values) pair (`energy.reference_curve` makes one from a recording). Without a video, the curve
        alone sets the duration.
        edits: `rewas.edits.Edit`s (mute, gain, scale, smooth, draw) applied in order to whichever curve is in use.
        seed / generator: the source of all randomness (an explicit torch.Generator wins).
        device / dtype: move the pipeline first (same as `.to(device, dtype)`; dtype applies to the diffusion model
        and video encoder, the rest stays float32).
        callback(step, total) is called after every sampler step (each step covers the whole timeline).
        control_scale: strength of the energy control (1: as trained; 0: none, the backbone follows the text alone).
        batch_size: windows per denoiser call (default: 4 on the CPU, 8 elsewhere); the audio depends on it only
        by the float rounding of the kernels each batch shape gets.
        timeline: the result of `prepare` (instead of video / frames / energy).
        """
        # 1. settings; every random draw comes from one generator, in a fixed order
        t_start = time.perf_counter()
        prompt = validate.prompt(prompt)
        negative_prompt = validate.prompt(negative_prompt, "negative_prompt", required=False)
        seed = validate.seed(seed)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise UserError(f"generator must be a torch.Generator (got {type(generator).__name__})")
        edits = validate.edits(edits)
        settings = self.sampler_settings(steps, guidance, scheduler, eta, control_scale, batch_size, device, dtype)
        if generator is None:
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item()) if seed is None else seed
            generator = torch.Generator("cpu").manual_seed(seed)
        # 2-3. the timeline and its energy curve (done already when `timeline` comes from `prepare`)
        if timeline is None:
            timeline = self.prepare(video, frames=frames, energy=energy, edits=edits, prompt=prompt)
        elif video is not None or frames is not None or energy is not None:
            raise UserError("give a prepared timeline or a video, frames or energy curve, not both")
        else:
            self._check_timeline(timeline, prompt)
            if edits:
                timeline = timeline.edited(edits, self.config.audio)
        prompts = [(prompt, negative_prompt)]
        return self._generate([timeline], prompts, [generator], [seed], settings, callback, t_start)[0]

    @torch.no_grad()
    def generate_many(
        self,
        timelines: list[Timeline],
        prompts: list[str],
        seeds: list[int],
        *,
        steps: int | None = None,
        guidance: float | None = None,
        scheduler: str | None = None,
        eta: float | None = None,
        control_scale: float = 1.0,
        batch_size: int | None = None,
        callback: Callable[[int, int], None] | None = None,
        negative_prompts: list[str] | None = None,
    ) -> list[GenerationResult]:
        """Several prepared clips (`prepare`) sampled together: at every step the windows of all of them go through
        the denoiser in batches of `batch_size`, which keeps a GPU busy with short clips. Each clip's audio is what
        `__call__` gives it alone at its seed, up to the float rounding of other batch shapes."""
        if not all(isinstance(x, (list, tuple)) for x in (timelines, prompts, seeds)):
            raise UserError("timelines, prompts and seeds must be lists, one entry per clip")
        negative_prompts = [""] * len(prompts) if negative_prompts is None else negative_prompts
        if not len(timelines) == len(prompts) == len(seeds) == len(negative_prompts) or not timelines:
            raise UserError("give one prompt and one seed per timeline, and at least one timeline")
        prompts = [validate.prompt(p, f"prompts[{i}]") for i, p in enumerate(prompts)]
        negative_prompts = [
            validate.prompt(p, f"negative_prompts[{i}]", required=False) for i, p in enumerate(negative_prompts)
        ]
        seeds = [validate.seed(s, f"seeds[{i}]") for i, s in enumerate(seeds)]
        if None in seeds:
            raise UserError("seeds: give every clip its seed")
        for timeline, prompt in zip(timelines, prompts):
            self._check_timeline(timeline, prompt)
        t_start = time.perf_counter()
        settings = self.sampler_settings(steps, guidance, scheduler, eta, control_scale, batch_size, None, None)
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        pairs = list(zip(prompts, negative_prompts))
        return self._generate(timelines, pairs, generators, seeds, settings, callback, t_start)

    def sampler_settings(self, steps, guidance, scheduler, eta, control_scale, batch_size, device, dtype) -> dict:
        """The sampler settings of a call, defaults filled in and checked (bad ones are the user's error)."""
        if device is not None or dtype is not None:
            device = validate.device(device) if device is not None else self.device
            dtype = validate.dtype(dtype, device) if dtype is not None else self.dtype
            if (device, dtype) != (self.device, self.dtype):  # where it is already: nothing compiled or encoded again
                self.to(device, dtype)
        cfg = self.config.sampler
        steps = cfg.steps if steps is None else steps
        guidance = cfg.guidance if guidance is None else guidance
        eta = cfg.eta if eta is None else eta
        batch_size = (4 if self.device.type == "cpu" else 8) if batch_size is None else batch_size
        steps = validate.steps(steps, self.config.diffusion.num_train_timesteps)
        batch_size = validate.whole(batch_size, "batch_size")
        guidance = validate.guidance(guidance)  # 1: no guidance; below 1, towards no prompt
        control_scale = validate.control_scale(control_scale)  # 0: no energy control
        eta = validate.eta(eta)
        if scheduler is not None and not isinstance(scheduler, str):
            raise UserError(f"scheduler must be a name such as 'ddim' or 'dpmsolver++' (got {scheduler!r})")
        scheduler = scheduler or cfg.scheduler
        make_sampler(NoiseSchedule(self.config.diffusion), scheduler)  # an unknown name fails here, before any work
        return dict(
            steps=steps,
            guidance=guidance,
            scheduler=scheduler,
            eta=eta,
            control_scale=control_scale,
            batch_size=batch_size,
        )

    def _generate(self, timelines, prompts, generators, seeds, settings, callback, t_start) -> list[GenerationResult]:
        """Steps ④-⑦ for prepared clips, each with a (prompt, negative prompt) pair; their windows share the
        denoiser's batches."""
        cfg = self.config
        channels, window, freq = cfg.latent_shape
        d, hop = cfg.vae.downsample, cfg.audio.hop_length
        timings = [dict(timeline.timings) for timeline in timelines]

        # 4. each clip's control latent, (1, z, M + L + M, F): the curve VAE-encoded window by window. A timeline
        # longer than one window is sampled with M frames of margin at both ends, dropped afterwards: the frames at
        # a window's very ends come out badly (large latents that shift a whole decoding window).
        margins, hints = [], []
        for timeline, generator, clock in zip(timelines, generators, timings):
            margins.append(round(END_MARGIN_S * self.latent_rate) if timeline.length > window else 0)
            with _timer(clock, "energy"):
                padded = torch.nn.functional.pad(timeline.curve[None], (margins[-1] * d,) * 2, mode="replicate")[0]
                hints.append(self.encode_energy_timeline(padded, generator))

        # 5. the prompts, (1, D) each, and the negative (by default the empty) prompts of the unconditional branch
        texts, negatives = [], []
        for (prompt, negative), clock in zip(prompts, timings):
            with _timer(clock, "text"):
                text = self.encode_text(prompt, negative).to(self.device)
            texts.append(text[:1])
            negatives.append(text[1:])
        several = len(texts) > 1

        # 6. the reverse process over every latent timeline at once
        start = time.perf_counter()
        samplers = [make_sampler(NoiseSchedule(cfg.diffusion), settings["scheduler"]) for _ in timelines]
        latents = sample_timelines(
            self.denoiser(texts[0], negatives[0], settings["guidance"], settings["control_scale"]),
            samplers,
            [(1, channels, t.length + 2 * m, freq) for t, m in zip(timelines, margins)],
            hints,
            window,
            texts=texts if several else None,
            negatives=negatives if several else None,
            steps=settings["steps"],
            context=round(TILE_CONTEXT_S * self.latent_rate),
            batch_size=settings["batch_size"],
            generators=generators,
            eta=settings["eta"],
            device=self.device,
            dtype=self.dtype,
            callback=callback,
        )
        for clock in timings:
            clock["diffusion"] = time.perf_counter() - start  # shared by the clips sampled together

        # 7. latent -> mel -> waveform, cut to each video's length
        latents = [latent[:, :, m : m + t.length] for latent, m, t in zip(latents, margins, timelines)]
        waveforms = self._decode_all(latents, [t.samples for t in timelines], timings, settings["batch_size"])
        results = []
        for timeline, latent, waveform, seed, clock in zip(timelines, latents, waveforms, seeds, timings):
            if len(waveform) < timeline.samples:
                waveform = np.pad(waveform, (0, timeline.samples - len(waveform)))
            if timeline.muted is not None:  # what the edits silenced is silent, whatever the model made of it
                waveform = waveform * edits_mod.gate(timeline.muted, timeline.samples, hop)
            clock["total"] = time.perf_counter() - t_start
            energy_out = timeline.curve[0, : max(1, timeline.samples // hop)].numpy()
            rate = cfg.audio.sample_rate
            results.append(
                GenerationResult(waveform, rate, energy_out, timeline.duration, seed, clock, latent.float().cpu())
            )
        return results

    def _decode_all(self, latents: list[torch.Tensor], samples: list[int], timings: list[dict], batch_size: int):
        """Latents (1, z, L_i, F) -> waveforms (samples_i,) as numpy. Off a CPU, those of one length (a soundtrack's
        layers, clips of one length in `rewas batch`) are decoded `batch_size` at a time: there the small
        decoders' calls cost launches, not arithmetic; a CPU decodes one at a time, in less memory and no more
        time. Each clip's "decode" timing is its share of its call."""
        waveforms: list[np.ndarray] = [np.zeros(0, np.float32)] * len(latents)
        lengths: dict[int, list[int]] = {}
        for i, latent in enumerate(latents):
            lengths.setdefault(latent.shape[2], []).append(i)
        size = decode_batch(self.device, batch_size)
        for group in lengths.values():
            for first in range(0, len(group), size):
                together = group[first : first + size]
                start = time.perf_counter()
                batch = torch.cat([latents[i] for i in together]) if len(together) > 1 else latents[together[0]]
                decoded = self.decode(batch).float().cpu().numpy()
                for row, i in enumerate(together):
                    waveforms[i] = decoded[row, : samples[i]].copy()
                share = (time.perf_counter() - start) / len(together)
                for i in together:
                    timings[i]["decode"] = share
        return waveforms

    def prepare(
        self,
        video: str | os.PathLike | None = None,
        *,
        frames: np.ndarray | None = None,
        energy: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None,
        edits: Sequence[Edit] = (),
        prompt: str = "",
        region: np.ndarray | None = None,
    ) -> Timeline:
        """Steps ②-③ of a generation, which need no randomness: the video's length -> the latent timeline, and the
        energy curve over it (phi on the video, one window of frames at a time, or the given curve). Passing the
        result to `__call__(timeline=...)` gives the same audio as passing the video; `rewas batch` prepares the
        next clip while the current one is sampled. A phi that reads the prompt (`PhiConfig.text_dim`) is given
        `prompt`: pass the one the clip will be generated with. `region`: (T, 3) squares (left, top, side) of the
        video's picture, one per frame at the model's rate, that phi sees instead of the whole frame
        (`rewas.tracking.Track.squares`: one object's part of the picture; resized with OpenCV, the layers
        extra)."""
        cfg, timings = self.config, {}
        prompt = validate.prompt(prompt, required=False)
        edits = validate.edits(edits)
        if video is not None and frames is not None:
            raise UserError("give a video or frames, not both")
        if video is not None and not isinstance(video, (str, os.PathLike)):
            raise UserError(f"video must be a path (a str or os.PathLike), not {type(video).__name__}")
        frames = validate.frames(frames) if frames is not None else None
        energy = validate.energy(energy) if energy is not None else None
        if region is not None and (video is None or energy is not None):
            raise UserError("a region is a part of a video's picture: give it with a video and no energy curve")
        # 2. the timeline: L latent frames (at least one window), covered by fixed windows for all but sampling
        with _timer(timings, "frames"):
            frame_iter, duration = self._frame_source(video, frames, energy, region)
        d = cfg.vae.downsample
        samples, length, starts = self._layout(duration)
        # 3. the energy curve over the whole timeline, (1, L * 4): phi on each window as the frames stream past
        with _timer(timings, "energy"):
            if energy is not None:
                curve = torch.from_numpy(self._user_curve(energy, duration))[None]
                curve = torch.nn.functional.pad(curve, (0, max(0, length * d - curve.shape[1])), mode="replicate")
        if energy is None:
            with _timer(timings, "text"):
                text = self.phi_text(prompt)
            views = (frame[None] for frame in frame_iter)  # (1, crop, crop, 3): one view
            curve = self._predict_timelines(views, starts, length, timings, [text], [0])[0]
        read = prompt if energy is None and cfg.phi.text_dim else None  # what phi's curve depends on
        timeline = Timeline(duration, samples, length, curve[:, : length * d].float(), timings, prompt=read)
        return timeline.edited(edits, cfg.audio) if edits else timeline

    def prepare_many(
        self,
        video: str | os.PathLike,
        prompts: Sequence[str],
        regions: Sequence[np.ndarray | None],
        info: frames_mod.VideoInfo | None = None,
    ) -> list[Timeline]:
        """`prepare(video, prompt=prompts[i], region=regions[i])` for each i, the same curves, from one decoding of
        the video (a soundtrack's layers; `info`: its `frames.probe`, if known): the video encoder sees the whole
        picture once for all the prompts that read it."""
        cfg, timings = self.config, {}
        if not isinstance(video, (str, os.PathLike)):
            raise UserError(f"video must be a path (a str or os.PathLike), not {type(video).__name__}")
        if len(prompts) != len(regions) or not prompts:
            raise UserError("give one region (or None: the whole picture) per prompt, and at least one prompt")
        prompts = [validate.prompt(p, f"prompts[{i}]", required=False) for i, p in enumerate(prompts)]
        squares = [validate.squares(r, f"regions[{i}]") if r is not None else None for i, r in enumerate(regions)]
        views: list[np.ndarray | None] = []  # the whole picture once, however many prompts read it
        view_of, whole = [], None  # each prompt's view; the whole picture's
        for square in squares:
            if square is None and whole is not None:
                view_of.append(whole)
                continue
            whole = len(views) if square is None else whole
            view_of.append(len(views))
            views.append(square)
        with _timer(timings, "frames"):
            info = check_duration(info or frames_mod.probe(video))
            frame_iter = frames_mod.iter_views(video, cfg.video, views, info)
        samples, length, starts = self._layout(info.duration)
        with _timer(timings, "text"):
            texts = [self.phi_text(p) for p in prompts]
        curves = self._predict_timelines(frame_iter, starts, length, timings, texts, view_of)
        end = length * cfg.vae.downsample
        out = []
        for prompt, curve in zip(prompts, curves):
            read = prompt if cfg.phi.text_dim else None  # what phi's curve depends on
            out.append(Timeline(info.duration, samples, length, curve[:, :end].float(), dict(timings), prompt=read))
        return out

    def _layout(self, duration: float) -> tuple[int, int, list[int]]:
        """A clip of `duration` s -> (samples of its soundtrack, latent frames L of its timeline, the starts of
        the fixed windows that cover it for all but sampling)."""
        samples = round(duration * self.config.audio.sample_rate)
        length = self.timeline_length(samples)
        overlap = round(MIN_OVERLAP_S * self.latent_rate)
        return samples, length, window_starts(length, self.config.latent_shape[1], overlap)

    def _check_timeline(self, timeline: Timeline, prompt: str) -> None:
        """A prepared timeline whose curve phi predicted for another prompt than the one it is sampled with gets
        a warning: the curve would differ (by up to 1.31 nats measured), though the audio follows either."""
        if not isinstance(timeline, Timeline):
            raise UserError(f"timeline must come from prepare() (got {type(timeline).__name__})")
        if timeline.prompt is not None and timeline.prompt != prompt:
            warnings.warn(
                f"this timeline's curve was predicted by phi for the prompt {timeline.prompt!r}, and phi reads the "
                f"prompt: prepare(video, prompt={prompt!r}) gives the curve of a direct call",
                UserWarning,
                stacklevel=3,
            )

    def _predict_timelines(
        self, views, starts: list[int], length: int, timings: dict, texts: list, view_of: list[int]
    ) -> list[torch.Tensor]:
        """phi's energy over the whole timeline, (1, L * 4), for each prompt embedding `texts[i]` on view
        `view_of[i]` of `views` ((V, crop, crop, 3) frames, decoded lazily), one window at a time, the windows'
        curves crossfaded where they overlap."""
        cfg = self.config
        to_video = cfg.video.fps / self.latent_rate  # video frames per latent frame (1 for the paper)
        win_frames = round(cfg.audio.window_seconds * cfg.video.fps)
        video_starts = [round(s * to_video) for s in starts]
        windows = frames_mod.iter_windows(views, video_starts, win_frames)
        readers: dict[int, list[int]] = {}  # view -> the prompts that read it
        for i, v in enumerate(view_of):
            readers.setdefault(v, []).append(i)
        curves: list[list[torch.Tensor]] = [[] for _ in texts]
        for _ in starts:
            with _timer(timings, "frames"):
                window = next(windows)  # (T, V, crop, crop, 3)
            with _timer(timings, "energy"):
                for v, prompts in readers.items():
                    for i, curve in zip(prompts, self._view_energies(window[:, v], [texts[i] for i in prompts])):
                        curves[i].append(curve)  # (1, 512)
        d = cfg.vae.downsample
        return [blend(mine, [s * d for s in starts], length * d) for mine in curves]

    def _frame_source(self, video, frames, energy, region=None):
        """-> (iterator of preprocessed uint8 frames or None, duration in seconds)."""
        cfg = self.config.video
        if video is not None:
            info = check_duration(frames_mod.probe(video))
            if region is not None:
                return frames_mod.iter_region_frames(video, cfg, validate.squares(region)), info.duration
            return frames_mod.iter_frames(video, cfg, info), info.duration
        if frames is not None:
            return frames_mod.crop_frames(frames, cfg.resize_short, cfg.crop), frames.shape[0] / cfg.fps
        if energy is not None:
            length = len(energy[0]) if isinstance(energy, tuple) else len(energy)
            times = energy[0] if isinstance(energy, tuple) else None
            # the times are the starts of 10 ms frames (as `--energy-out` writes them): a curve lasts until the end
            # of the frame its last time starts, so that a written curve read back gives the same length
            rate = self.config.audio.frame_rate
            duration = float(times[-1]) + 1 / rate if times is not None else length / rate
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


def check_finite(x: torch.Tensor, stage: str) -> torch.Tensor:
    """`x`, unless it holds NaN or inf: then a one-line NonFiniteError naming the stage that made it."""
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise NonFiniteError(
            f"{stage} holds {bad} NaN or infinite value(s) of {x.numel()}; nothing was written"
            + (" (the diffusion model runs in reduced precision: try fp32)" if x.dtype != torch.float32 else "")
        )
    return x


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A component's safetensors file; a truncated, emptied or foreign file is a one-line error naming it."""
    from safetensors import SafetensorError

    try:
        return load_file(path)
    except SafetensorError as e:
        reason = str(e).strip().removeprefix("Error while deserializing header: ")
        raise UserError(
            f"{path}: damaged or not a safetensors file ({reason}); re-download or re-convert the model"
        ) from None


def _check_layout(path: Path, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """The file's tensors are those of the module its config builds, shape for shape; else one line saying how
    they differ (a config edited by hand, or a file from another model)."""
    missing, unexpected, wrong = (sorted(keys) for keys in layout_diff(state, expected))
    parts = [f"{len(missing)} tensor(s) missing, e.g. {missing[0]}"] if missing else []
    parts += [f"{len(unexpected)} not in the configured model, e.g. {unexpected[0]}"] if unexpected else []
    if wrong:
        k = wrong[0]
        parts.append(
            f"{len(wrong)} of another shape, e.g. {k} {tuple(state[k].shape)} where config.json gives "
            f"{tuple(expected[k].shape)}"
        )
    if parts:
        raise UserError(f"{path}: does not match config.json ({'; '.join(parts)})")


def count_parameters(config: ModelConfig) -> dict[str, int]:
    """Parameters per component of a config, built on the meta device (nothing allocated, instant even for `paper`)."""
    with empty_weights():
        components = build_components(config)
    counts = {name: sum(p.numel() for p in components[name].parameters()) for name in COMPONENTS}
    counts["total"] = sum(counts.values())
    return counts
