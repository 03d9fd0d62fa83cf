"""Trainers for every trainable part (phi, the energy adapter, and for a model without released weights the
UNet, the mel VAE and the vocoder; the evaluation's classifier), on accelerate: one process on CPU, DDP on
several GPUs, several nodes through `accelerate launch`; mixed precision; gradient accumulation; checkpoint +
exact resume. `train()` is one loop for all; each part is an `Objective` (the module it trains, its loss, what
happens before the first step and after the last), registered in OBJECTIVES by the CLI's name for it.

Objectives (docs/design.md):
* phi: MSE between phi(video tokens) and the energy target (nearest resize to the token count, Savitzky-Golay 9/2).
* adapter: epsilon-prediction MSE (v-prediction if the model's sampler says so) of the frozen UNet + trainable
  adapter on cached VAE latents, "scaled linear"
  betas 0.0015 -> 0.0195 over 1000 steps; the hint is the VAE-encoded control curve built from the true energy
  as the pipeline builds it from phi's tokens (`energy.control_target`; posterior sample * scale);
  text dropped to the empty prompt with probability 0.3. AdamW, lr 1e-5 with 2000 warm-up steps.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DiffusionConfig
from ..diffusion import NoiseSchedule
from ..energy import control_target, energy_target, timed_token_target, token_curve_matrix
from ..errors import UserError
from ..files import atomic_path, writing
from .augment import reshape_envelopes
from .recipe import TrainConfig


def drop_text(text: torch.Tensor, share: float, empty_text, generator: torch.Generator | None) -> torch.Tensor:
    """(B, D) prompt embeddings, each replaced by the empty prompt's with probability `share` (so that the model
    also learns to do without one: classifier-free guidance, phi without a prompt)."""
    if share <= 0:
        return text
    drop = torch.rand(text.shape[0], generator=generator) < share
    return torch.where(drop[:, None].to(text.device), empty_text.to(text.device).expand_as(text), text)


def phi_loss(
    pipe,
    batch: dict,
    generator: torch.Generator | None = None,
    target: str = "tokens",
    text_dropout: float = 0.0,
    empty_text: torch.Tensor | None = None,
) -> torch.Tensor:
    """target "tokens": MSE to the energy target of each token: on the real timeline (the mean energy over the
    token's tubelet), or with `timeline="uniform"` the release's target (resized evenly to the token count,
    Savitzky-Golay 9/2). target "curve": L1 between the curve the pipeline builds from the predicted tokens and
    `control_target`, the curve the adapter was trained on: the median, frame by frame, of what the sound does.
    A phi that reads the prompt (`PhiConfig.text_dim`) gets the caption's embedding, dropped at `text_dropout`."""
    cfg = pipe.config
    feats = batch["features"]
    segments = feats.shape[1] // cfg.video_encoder.tokens_per_segment
    text = drop_text(batch["text"], text_dropout, empty_text, generator) if cfg.phi.text_dim else None
    predicted = pipe.phi(feats, text)  # (B, S)
    if target == "curve":
        weights = token_curve_matrix(cfg, segments, batch["energy"].shape[-1]).to(predicted.device)  # (S, F)
        return F.l1_loss(predicted @ weights, control_target(batch["energy"], cfg).to(predicted.device))
    if cfg.energy.timeline == "uniform":
        tokens, _ = energy_target(batch["energy"], feats.shape[1], cfg.energy)
    else:
        _, tokens = timed_token_target(batch["energy"], cfg, segments)
    return F.mse_loss(predicted, tokens.to(feats.device))


def random_crop(batch: dict, frames: int, cfg, generator: torch.Generator | None, align: int = 1) -> dict:
    """Crop every item to `frames` mel frames at a random offset (a multiple of `align` and of the VAE's
    downsampling), keeping the mel, energy, latent (time / downsampling) and waveform (x hop) views aligned.
    Other entries are left as they are."""
    total = batch["energy"].shape[-1]
    if frames <= 0 or frames >= total:
        return batch
    downsample, hop = cfg.vae.downsample, cfg.audio.hop_length
    if frames % downsample or (align > 1 and frames % align):
        raise UserError(f"crop_frames={frames} must be a multiple of {max(align, downsample)}")
    step = max(align, downsample)
    starts = torch.randint(0, (total - frames) // step + 1, (batch["energy"].shape[0],), generator=generator) * step
    views = {"energy": (-1, 1), "mel": (1, 1), "latents": (2, 1 / downsample), "wave": (1, hop)}
    out = dict(batch)
    for key, (dim, scale) in views.items():
        if key in batch:
            length = int(frames * scale)
            out[key] = torch.stack(
                [
                    x.narrow(dim if dim < 0 else dim - 1, int(s * scale), length)
                    for x, s in zip(batch[key], starts.tolist())
                ]
            )
    return out


@functools.lru_cache(maxsize=4)
def _noise_schedule(cfg: DiffusionConfig) -> NoiseSchedule:
    return NoiseSchedule(cfg)  # built once, not at every step


def _diffusion_loss(
    pipe,
    batch: dict,
    generator,
    text_dropout: float,
    empty_text,
    control: bool,
    crop_frames: int = 0,
    envelopes: float = 0.0,
    envelope_db: float = 12.0,
) -> torch.Tensor:
    cfg = pipe.config
    if envelopes > 0:  # before the hint is built: the hint is the reshaped clip's energy
        batch = reshape_envelopes(pipe, batch, envelopes, generator, envelope_db)
    if control:  # the hint curve comes from the whole window (its smoothing), then is cropped with the latents
        batch = {**batch, "energy": control_target(batch["energy"].cpu(), cfg)}
    batch = random_crop(batch, crop_frames, cfg, generator, align=cfg.latent_time_multiple)
    x0 = batch["latents"]
    b, device = x0.shape[0], x0.device
    text = drop_text(batch["text"], text_dropout, empty_text, generator)
    schedule = _noise_schedule(cfg.diffusion)
    t = torch.randint(0, len(schedule), (b,), generator=generator).to(device)
    noise = torch.randn(x0.shape, generator=generator).to(device)
    x_t = schedule.add_noise(x0, noise, t)
    residuals = None
    if control:
        with torch.no_grad():
            hint = pipe.encode_energy(batch["energy"].cpu(), generator)
        residuals = pipe.adapter(x_t, hint.to(x_t.dtype), t, text)
    return F.mse_loss(pipe.unet(x_t, t, text, control=residuals).float(), schedule.target(x0, noise, t))


def adapter_loss(
    pipe,
    batch: dict,
    generator: torch.Generator | None = None,
    text_dropout: float = 0.3,
    empty_text: torch.Tensor | None = None,
    crop_frames: int = 0,
) -> torch.Tensor:
    """Energy adapter: diffusion MSE (epsilon or v) of the frozen UNet + trainable adapter; hint: `control_target`
    of the true energy."""
    return _diffusion_loss(pipe, batch, generator, text_dropout, empty_text, control=True, crop_frames=crop_frames)


@torch.no_grad()
def latent_scale(vae, dataset, items: int = 64) -> float:
    """1 / std of the VAE's posterior means over (up to) `items` whole windows: AudioLDM's `scale_factor`, so the
    diffusion model sees unit-variance latents."""
    device = next(vae.parameters()).device
    means = [vae.moments(dataset[i]["mel"][None, None].to(device))[0] for i in range(min(items, len(dataset)))]
    return float(1.0 / torch.cat(means).float().std())


def mel_ceiling(dataset, margin: float = 0.5) -> tuple[float, ...]:
    """(n_mels,) the most each band of the dataset's log-mels holds, plus `margin` nats: the VAE's `mel_ceiling`,
    above which its decoder's output is an overshoot (`vae.repair_overshoot`). Reads every clip's mel once."""
    if hasattr(dataset, "shards"):  # a cache: whole memory-mapped shards, (clips, frames, n_mels) each
        mels = (np.asarray(shard["mel"]) for shard in dataset.shards)
    else:  # any dataset of {"mel": (frames, n_mels)} items
        mels = (np.asarray(dataset[i]["mel"]) for i in range(len(dataset)))
    top = None
    for mel in mels:
        band_max = mel.reshape(-1, mel.shape[-1]).max(axis=0)
        top = band_max if top is None else np.maximum(top, band_max)
    return tuple(round(float(v) + margin, 4) for v in top)


@torch.no_grad()
def match_output_mean(vae, dataset, items: int = 16) -> None:
    """Data-dependent init: shift the decoder's output bias so that reconstructions have the data's mean. Log-mels
    sit around -7, far for Adam to move a bias from 0; a trained VAE is left (almost) as it is."""
    device = next(vae.parameters()).device
    mels = torch.stack([dataset[i]["mel"] for i in range(min(items, len(dataset)))])[:, None].to(device)
    mean, _ = vae.moments(mels)
    recon = vae.decoder(vae.post_quant_conv(mean))
    vae.decoder.conv_out.bias += (mels.mean() - recon.mean()).to(vae.decoder.conv_out.bias.dtype)


class EpochSampler(torch.utils.data.Sampler):
    """A fresh permutation per epoch from (seed, epoch): the data order after a resume is the order it would have
    had."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(
            torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)).tolist()
        )

    def __len__(self) -> int:
        return self.n


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """The LR multiplier at optimizer step `step` (0-based): linear warm-up, then constant or a cosine to 0."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.lr_schedule == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class WeightEMA:
    """Exponential moving average of a module's parameters (what diffusion models are usually sampled with).
    The decay ramps up as min(decay, (1 + n) / (10 + n)) over the first updates, so early weights fade quickly.
    Its state (the averages and the update count) is checkpointed with the run, so a resume stays exact."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.params = list(module.parameters())
        self.average = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - decay)

    @torch.no_grad()
    def copy_to_module(self) -> None:
        for p, a in zip(self.params, self.average):
            p.copy_(a)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "average": self.average}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        for a, saved in zip(self.average, state["average"]):
            a.copy_(saved)


def unet_loss(
    pipe,
    batch: dict,
    generator: torch.Generator | None = None,
    text_dropout: float = 0.1,
    empty_text: torch.Tensor | None = None,
    crop_frames: int = 0,
) -> torch.Tensor:
    """Text-to-audio backbone: diffusion MSE (epsilon or v) on cached latents, no energy control, text dropout for
    CFG."""
    return _diffusion_loss(pipe, batch, generator, text_dropout, empty_text, control=False, crop_frames=crop_frames)


def vae_loss(
    pipe, batch: dict, generator: torch.Generator | None = None, kl_weight: float = 1e-6, crop_frames: int = 0
) -> torch.Tensor:
    """Mel VAE: L1 reconstruction of the log-mel + a small KL term (the release adds LPIPS and a GAN; not here)."""
    batch = random_crop(batch, crop_frames, pipe.config, generator)
    mel = batch["mel"][:, None]  # (B, 1, F, n_mels)
    vae = pipe.vae
    mean, logvar = vae.moments(mel)
    logvar = logvar.clamp(-30.0, 20.0)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator).to(mean.device)
    recon = vae.decoder(vae.post_quant_conv(z))
    kl = 0.5 * (mean**2 + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2, 3)).mean()
    return F.l1_loss(recon, mel) + kl_weight * kl


def vocoder_loss(
    pipe, batch: dict, generator: torch.Generator | None = None, crop_frames: int = 0, vocoder_input: str = "mel"
) -> torch.Tensor:
    """HiFi-GAN generator: reconstruction losses only (log-mel L1 + multi-resolution STFT), no discriminators.
    Griffin-Lim with a learned magnitude: L1 of the log STFT magnitude + spectral convergence, on the mel's frames.

    vocoder_input "vae": the vocoder hears the frozen VAE's decoding of the cached latents instead of the true
    log-mel (what it hears at inference: decoded mels are blurrier), and still learns the true waveform."""
    from ..audio import log_mel, stft_magnitude
    from ..vocoder import GriffinLim

    batch = random_crop(batch, crop_frames, pipe.config, generator)
    cfg = pipe.config.audio
    if vocoder_input == "vae":
        with torch.no_grad():
            batch = {**batch, "mel": pipe.decode_mel(batch["latents"])[:, 0]}
    elif vocoder_input != "mel":
        raise UserError(f"vocoder_input must be 'mel' or 'vae', not {vocoder_input!r}")
    if isinstance(pipe.vocoder, GriffinLim):
        target = stft_magnitude(batch["wave"], cfg).float()  # (B, n_freq, frames)
        log_mag = pipe.vocoder.log_magnitude(batch["mel"].transpose(1, 2)[..., : target.shape[-1]])
        floor = math.log(cfg.log_clamp)
        return F.l1_loss(log_mag.clamp(min=floor), target.clamp(min=cfg.log_clamp).log()) + (
            log_mag.exp() - target
        ).norm() / target.norm().clamp(min=1e-7)
    wav = pipe.vocoder(batch["mel"].transpose(1, 2))[:, : batch["wave"].shape[1]]
    target = batch["wave"][:, : wav.shape[1]]
    loss = F.l1_loss(log_mel(wav, cfg), log_mel(target, cfg))
    for n_fft, hop in ((512, 128), (1024, 256), (2048, 512)):
        window = torch.hann_window(n_fft, device=wav.device)
        a = torch.stft(wav, n_fft, hop, window=window, return_complex=True).abs()
        b = torch.stft(target, n_fft, hop, window=window, return_complex=True).abs()
        loss = loss + (a - b).norm() / b.norm().clamp(min=1e-7) + F.l1_loss(torch.log(a + 1e-5), torch.log(b + 1e-5))
    return loss


@torch.no_grad()
def recalibrate_batchnorm(module: torch.nn.Module, dataset, forward: Callable, batch_size: int, device) -> None:
    """Set every BatchNorm's running statistics from the final weights alone: the average of the batch statistics
    over one shuffled pass of the training data (everything else in eval mode). The running averages kept during
    training mix in statistics of earlier weights; on a small corpus, where the weights move fast, that lag can
    leave the eval-mode model predicting one class for every clip while its training loss is near zero. Batches
    are shuffled (seeded) so that each is a mix of classes, as in training, not one class of an ordered cache."""
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    module.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the pass
        m.train()
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    for batch in loader:
        forward(module, {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    module.eval()


def classifier_loss(pipe, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
    """Audio classifier (for the "text matters" check): cross-entropy of CNN14 logits on the cached waveforms."""
    return F.cross_entropy(pipe.classifier(batch["wave"])[1], batch["label"])


class Objective:
    """One trainable part: the pipeline attribute it trains, its loss, and what a run does before its first step
    and after its last. Built per run from the run's TrainConfig and dataset."""

    module = ""

    def __init__(self, cfg: TrainConfig, dataset):
        self.cfg, self.dataset = cfg, dataset

    def loss(self, pipe, batch: dict, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def before(self, pipe) -> None:
        """On a fresh start (not on resume), before the first step."""

    def after(self, pipe, device) -> None:
        """After the last step, on the final weights (in eval mode), before the model is saved."""


class PhiObjective(Objective):
    module = "phi"

    def loss(self, pipe, batch, generator):
        empty_text = getattr(self.dataset, "empty_text", None)
        return phi_loss(pipe, batch, generator, self.cfg.phi_target, self.cfg.text_dropout, empty_text)


class _DiffusionObjective(Objective):
    control = False  # the adapter's residuals enter the UNet (the adapter trains) or not (the UNet trains)

    def loss(self, pipe, batch, generator):
        empty_text = getattr(self.dataset, "empty_text", None)
        return _diffusion_loss(
            pipe,
            batch,
            generator,
            self.cfg.text_dropout,
            empty_text,
            self.control,
            self.cfg.crop_frames,
            self.cfg.envelope_augment,
            self.cfg.envelope_db,
        )


class AdapterObjective(_DiffusionObjective):
    module, control = "adapter", True


class UNetObjective(_DiffusionObjective):
    module = "unet"

    def after(self, pipe, device):
        from ..adapter import EnergyAdapter

        # ControlNet init: the adapter starts as a copy of the *trained* UNet's encoder
        pipe.adapter = EnergyAdapter.from_unet(pipe.unet, pipe.config.latent_shape[2]).eval().requires_grad_(False)


class VAEObjective(Objective):
    module = "vae"

    def loss(self, pipe, batch, generator):
        return vae_loss(pipe, batch, generator, crop_frames=self.cfg.crop_frames)

    def before(self, pipe):
        match_output_mean(pipe.vae, self.dataset)

    def after(self, pipe, device):
        pipe.vae.scale_factor.fill_(latent_scale(pipe.vae, self.dataset))
        vae = dataclasses.replace(pipe.config.vae, mel_ceiling=mel_ceiling(self.dataset))
        pipe.config = dataclasses.replace(pipe.config, vae=vae)
        pipe.vae.config = vae


class VocoderObjective(Objective):
    module = "vocoder"

    def loss(self, pipe, batch, generator):
        return vocoder_loss(
            pipe, batch, generator, crop_frames=self.cfg.crop_frames, vocoder_input=self.cfg.vocoder_input
        )


class ClassifierObjective(Objective):
    module = "classifier"

    def loss(self, pipe, batch, generator):
        return classifier_loss(pipe, batch, generator)

    def after(self, pipe, device):
        recalibrate_batchnorm(pipe.classifier, self.dataset, lambda m, b: m(b["wave"]), self.cfg.batch_size, device)


OBJECTIVES: dict[str, type[Objective]] = {
    o.module: o
    for o in (PhiObjective, AdapterObjective, UNetObjective, VAEObjective, VocoderObjective, ClassifierObjective)
}


class _LossModule(torch.nn.Module):
    """The trained part, with the objective's loss as its forward. accelerate wraps this in DDP on several
    processes: DDP syncs gradients only for a backward that follows its own `forward`, and the losses reach the
    part through the pipeline (`pipe.phi(...)`, `pipe.vae.encode(...)`), so the whole loss must run inside it.
    Its state dict is the part's, so checkpoints keep the part's own key names."""

    def __init__(self, part: torch.nn.Module, objective: Objective, pipe):
        super().__init__()
        self.part = part
        self.__dict__["_run"] = (objective, pipe)  # not submodules: only the trained part's parameters sync

    def forward(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        objective, pipe = self._run
        return objective.loss(pipe, batch, generator)

    def state_dict(self, *args, **kwargs):
        return self.part.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.part.load_state_dict(state_dict, strict=strict, assign=assign)


def _save_checkpoint(accelerator, ckpt_dir: Path, step: int) -> None:
    """accelerate's state of every rank, written under a name resume does not read and renamed to step_N once
    all ranks are done: a checkpoint killed or refused (a full disk) part way is never resumed from."""
    import shutil

    final, partial = ckpt_dir / f"step_{step:08d}", ckpt_dir / f".partial-step_{step:08d}"
    if accelerator.is_main_process:
        for stale in ckpt_dir.glob(".partial-step_*"):  # what a killed run left
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    try:
        with writing(final):
            accelerator.save_state(str(partial))
    except BaseException:
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
        raise
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        partial.replace(final)
    accelerator.wait_for_everyone()


def train(
    pipe,
    dataset,
    what: str,
    out: str | Path,
    cfg: TrainConfig = TrainConfig(),
    resume: bool = True,
    log: Callable[[dict], None] = print,
) -> dict:
    """Train `pipe.<what>` on `dataset`; checkpoints in `out/checkpoints`, the final model in `out/model`.

    Exact resume: optimizer, LR schedule, step counter and every RNG (torch, the sampler's generator, the data
    order) are restored, so stopping and resuming gives the same weights as training straight through.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import set_seed

    out = Path(out)
    if what not in OBJECTIVES:
        raise UserError(f"nothing to train called {what!r}; choose one of {', '.join(OBJECTIVES)}")
    objective = OBJECTIVES[what](cfg, dataset)
    attr = objective.module
    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():  # accelerate would train in fp32, silently
        raise UserError("mixed precision fp16 needs a CUDA GPU; on this machine use bf16 or no")
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum,
        cpu=not torch.cuda.is_available(),
        # a part may leave some parameters out of a loss (phi's prompt projection when every prompt is dropped)
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    set_seed(cfg.seed)
    part = getattr(pipe, attr)
    part.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(part.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    sampler_gen = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=EpochSampler(len(dataset), cfg.seed),
        drop_last=len(dataset) >= cfg.batch_size,
        num_workers=cfg.num_workers,
    )
    model, optimizer, loader, schedule = accelerator.prepare(
        _LossModule(part, objective, pipe), optimizer, loader, schedule
    )
    pipe.device = accelerator.device
    for name in ("unet", "adapter", "vae", "phi", "vocoder"):
        if name != attr and hasattr(pipe, name):
            getattr(pipe, name).to(accelerator.device)
    state = {"step": 0, "rng": sampler_gen}

    class _Progress:  # registered so that save/load_state carries the step and the objective's generator
        def state_dict(self):
            return {"step": state["step"], "rng": state["rng"].get_state()}

        def load_state_dict(self, d):
            state["step"] = int(d["step"])
            state["rng"].set_state(d["rng"])

    accelerator.register_for_checkpointing(_Progress())
    ema = WeightEMA(part, cfg.ema_decay) if cfg.ema_decay > 0 else None
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    ckpt_dir = out / "checkpoints"
    done_ckpts = sorted(ckpt_dir.glob("step_*")) if ckpt_dir.is_dir() else []  # whole ones: see _save_checkpoint
    if resume and done_ckpts:
        latest = max(done_ckpts, key=lambda p: int(p.name.split("_")[-1]))
        accelerator.load_state(str(latest))
        log({"resumed": str(latest), "step": state["step"]})
    else:
        objective.before(pipe)
    # resume mid-epoch where training stopped. An epoch is ceil(batches / grad_accum) optimizer steps: accelerate
    # also steps on a short last group at the end of the dataloader
    epoch_steps = math.ceil(max(1, len(loader)) / cfg.grad_accum)
    epoch, done = divmod(state["step"], epoch_steps)
    skip = done * cfg.grad_accum
    history = []
    while state["step"] < cfg.steps:
        loader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        skip, epoch = 0, epoch + 1
        for batch in batches:
            with accelerator.accumulate(model):
                loss = model(batch, sampler_gen)
                accelerator.backward(loss)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            state["step"] += 1
            if ema is not None:
                ema.update()
            history.append(float(loss.detach()))
            if state["step"] % cfg.log_every == 0 or state["step"] == cfg.steps:
                log(
                    {
                        "step": state["step"],
                        "loss": sum(history[-cfg.log_every :]) / len(history[-cfg.log_every :]),
                        "lr": schedule.get_last_lr()[0],
                    }
                )
            if state["step"] % cfg.checkpoint_every == 0 or state["step"] == cfg.steps:
                _save_checkpoint(accelerator, ckpt_dir, state["step"])
            if state["step"] >= cfg.steps:
                break
    if ema is not None:  # the averaged weights are the model (the raw ones stay in the checkpoints)
        ema.copy_to_module()
    setattr(pipe, attr, part.eval().requires_grad_(False))
    objective.after(pipe, accelerator.device)
    if accelerator.is_main_process:
        if hasattr(pipe, "storage_dtype"):  # trained weights keep their precision, whatever the model was stored in
            pipe.storage_dtype = torch.float32
        pipe.save_pretrained(out / "model")
        summary = {"what": what, "config": dataclasses.asdict(cfg), "final_loss": history[-1] if history else None}
        with atomic_path(out / "train.json") as tmp, writing(out / "train.json"):
            tmp.write_text(json.dumps(summary))
    return {"step": state["step"], "loss": history[-1] if history else math.nan}
