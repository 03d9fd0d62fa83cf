"""Released checkpoints -> our model folder (config.json + one safetensors file per component).

Inputs (read with torch.load(weights_only=True, mmap=True): no code is unpickled, nothing is copied into RAM twice):

* `audioldm_m_rewas_vggsound.ckpt` (Lightning, `state_dict`): UNet from the EMA weights `model_ema.*` when present
  (the release samples under its EMA scope), adapter `control_model.*`, VAE `first_stage_model.*` with its
  `scale_factor`, vocoder `first_stage_model.vocoder.*`, CLAP text tower `cond_stage_models.0.model.text_*`.
* `phi_vggsound.ckpt` (a flat state dict, `module.`-prefixed): phi, with the release's batch-axis attention flag set.
* Synchformer `24-01-04T16-39-21.pt` (`['model']`): its `vfeat_extractor.*` part is our video encoder.

Every key is either loaded, or skipped on purpose and reported (training-only or unused at inference);
anything else is an error, and so is a missing key, unless a partial load is explicitly allowed.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import release
from .checkpoint import load_state, read_state, unwrap_ddp
from .config import ModelConfig, paper
from .errors import UserError
from .files import atomic_folder, writing

SCHEDULE_BUFFERS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)
# keys of the ReWaS checkpoint that inference does not use, with the reason reported for each group
SKIPPED = [
    (r"^first_stage_model\.loss\.", "VAE training loss (LPIPS + discriminator), training only"),
    (r"^logvar$", "training-only loss weighting"),
    (r"^(" + "|".join(SCHEDULE_BUFFERS) + r")$", "diffusion schedule buffers (checked against our schedule)"),
    (r"^model_ema\.(decay|num_updates)$", "EMA bookkeeping"),
    (r"^cond_stage_models\.0\.model\.audio_", "CLAP audio tower (AudioLDM trains on it; sampling uses the text tower)"),
    (r"^cond_stage_models\.0\.model\.(text_transform|logit_scale_[at])", "CLAP contrastive-training heads"),
    (r"^cond_stage_models\.0\.mel_transform\.", "CLAP's mel front end (audio tower only)"),
    (r"position_ids$", "RoBERTa position ids (recomputed)"),
]


@dataclass
class ImportReport:
    source: str
    loaded: dict[str, int] = field(default_factory=dict)  # component -> number of tensors
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> number of keys
    missing: dict[str, list[str]] = field(default_factory=dict)  # component -> keys the file lacks
    unexpected: list[str] = field(default_factory=list)
    origins: dict[str, dict[str, int]] = field(default_factory=dict)  # component -> {file: keys taken from it}

    def problems(self) -> str:
        parts = [
            f"{c}: missing {len(k)} keys, e.g. {k[:3]}"
            + (
                f" ({COMPONENT_FILES[c][1]}, {COMPONENT_FILES[c][0]}, has them)"
                if c in COMPONENT_FILES and any(key != "scale_factor" for key in k)
                else ""
            )
            for c, k in self.missing.items()
            if k
        ]
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected keys, e.g. {self.unexpected[:3]}")
        return "; ".join(parts)


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def split_rewas(state: dict[str, torch.Tensor], use_ema: bool = True) -> tuple[dict[str, dict], ImportReport]:
    """The ReWaS Lightning state dict -> {component: state dict in our names} + what was skipped or unexpected."""
    report = ImportReport("rewas")
    state = unwrap_ddp(state)
    unet_prefix = "model.diffusion_model."
    ema_names = {
        f"model_ema.{('diffusion_model.' + k[len(unet_prefix) :]).replace('.', '')}": k[len(unet_prefix) :]
        for k in state
        if k.startswith(unet_prefix)
    }
    present = sum(1 for k in ema_names if k in state)
    take_ema = use_ema and present > 0
    if take_ema and present != len(ema_names):
        raise UserError(f"the EMA weights cover {present} of {len(ema_names)} UNet tensors; import without EMA")

    def route(key: str) -> tuple[str, str] | str:
        """(component, our key), or the reason the key is skipped, or '' if it is unknown."""
        if key in ema_names:
            return ("unet", ema_names[key]) if take_ema else "EMA UNet weights (import without EMA was asked)"
        if key.startswith(unet_prefix):
            return (
                "raw UNet weights (the EMA copy is used, as the release samples)"
                if take_ema
                else ("unet", key[len(unet_prefix) :])
            )
        for prefix, component in (("control_model.", "adapter"), ("first_stage_model.vocoder.", "vocoder")):
            if key.startswith(prefix):
                return component, key[len(prefix) :]
        if key.startswith("first_stage_model.") and not key.startswith("first_stage_model.loss."):
            return "vae", key[len("first_stage_model.") :]
        if key == "scale_factor":
            return "vae", "scale_factor"
        text = "cond_stage_models.0.model."
        if key.startswith((text + "text_branch.", text + "text_projection.")) and not key.endswith("position_ids"):
            return "text_encoder", key[len(text) :]
        return next((why for pattern, why in SKIPPED if re.search(pattern, key)), "")

    parts: dict[str, dict] = {c: {} for c in ("unet", "adapter", "vae", "vocoder", "text_encoder")}
    for key, value in state.items():
        target = route(key)
        if isinstance(target, tuple):
            parts[target[0]][target[1]] = value
        elif target:
            report.skipped[target] = report.skipped.get(target, 0) + 1
        else:
            report.unexpected.append(key)
    _check_schedule(state)
    return parts, report


def _check_schedule(state: dict) -> None:
    betas = state.get("betas")
    if betas is None or betas.is_meta:
        return
    from .config import DiffusionConfig
    from .diffusion import NoiseSchedule

    ours = NoiseSchedule(DiffusionConfig()).betas.to(betas.dtype)  # a file stored in fp16 holds fp16 betas
    if betas.shape != ours.shape or (betas.float() - ours.float()).abs().max() > 1e-6:
        raise UserError("the checkpoint's diffusion schedule differs from the paper's (scaled linear 0.0015-0.0195)")


# The parts of the ReWaS file that AudioLDM also publishes as files of their own (`release.COMPONENTS`). The
# release builds each from its file first, then loads the ReWaS file over it (strict=False): a ReWaS file without
# these keys still works there, so it must here.
COMPONENT_FILES = {c: (r.flag, r.filename) for c, r in release.COMPONENTS.items()}


def vae_file_state(state: dict, own: dict[str, torch.Tensor]) -> tuple[dict, int]:
    """`vae_mel_16k_64bins.ckpt['state_dict']` (AutoencoderKL's names) -> (our VAE's keys, keys skipped): as the
    release loads it, only the keys our VAE has with the same shape (its training loss network is left out).
    `scale_factor` is the ReWaS file's (the latents' trained 1/std), never this file's."""
    out = {k: v for k, v in state.items() if k in own and k != "scale_factor" and tuple(v.shape) == own[k].shape}
    return out, len(state) - len(out)


def hifigan_file_state(state: dict) -> dict:
    """`hifigan_16k_64bins.ckpt['generator']` -> our vocoder's keys: `_orig_mod.` (torch.compile) dropped, and every
    weight-normed pair folded into its weight, g * v / ||v|| with the norm over all dims but 0 (torch's default dim
    for weight_norm), as the release's remove_weight_norm does."""
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}
    out = {}
    for key, value in state.items():
        if key.endswith(".weight_v"):
            stem = key[: -len(".weight_v")]
            g = state.get(f"{stem}.weight_g")
            if g is None:
                raise UserError(f"hifigan: {key} has no {stem}.weight_g to fold it with")
            # in fp32, as the release folds it after loading the file into its fp32 Generator; torch's own function,
            # so that the weights equal the ones the release saved into the ReWaS file bit for bit
            out[f"{stem}.weight"] = torch._weight_norm(value.float(), g.float(), 0)
        elif not key.endswith(".weight_g"):
            out[key] = value
    return out


def clap_file_state(state: dict) -> tuple[dict, int]:
    """The CLAP checkpoint (its state dict, or under 'state_dict'; keys with or without `module.`, with or without
    position ids) -> (our text encoder's keys: the text tower and its projection, as the ReWaS file routes
    `cond_stage_models.0.model.*`; keys skipped: the audio tower and the contrastive heads)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    out = {
        k: v
        for k, v in state.items()
        if k.startswith(("text_branch.", "text_projection.")) and not k.endswith("position_ids")
    }
    return out, len(state) - len(out)


def component_state(component: str, path, own: dict[str, torch.Tensor]) -> tuple[dict, int]:
    """A component file in its published layout -> (our component's keys, keys skipped)."""
    if component == "vae":
        return vae_file_state(read_state(path, "state_dict", what="VAE"), own)
    if component == "vocoder":
        state = hifigan_file_state(read_state(path, "generator", what="HiFi-GAN"))
        kept = {k: v for k, v in state.items() if k in own}
        return kept, len(state) - len(kept)
    return clap_file_state(read_state(path, "state_dict", what="CLAP"))


def phi_state(state: dict) -> dict:
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def synchformer_state(state: dict) -> tuple[dict, int]:
    """Synchformer's whole state dict -> (video encoder part, number of other keys skipped)."""
    vfeat = _strip(state, "vfeat_extractor.")
    return vfeat, len(state) - len(vfeat)


def load_into(module: torch.nn.Module, state: dict, name: str, report: ImportReport, allow_partial: bool) -> None:
    """Strict by default: every parameter must come from the file, and nothing may be left over. What does not fit
    goes into the report; `convert` refuses the import from it, so that every component's problems are listed."""
    missing, unknown = load_state(module, state, name, allow_partial=allow_partial, assign=True)
    report.unexpected += [f"{name}.{k}" for k in unknown]
    if missing:
        report.missing[name] = missing
    if allow_partial or not (missing or unknown):
        report.loaded[name] = len(state) - len(unknown)


def convert(
    out: str | os.PathLike | None,
    *,
    rewas_ckpt: str | os.PathLike | None = None,
    phi_ckpt: str | os.PathLike | None = None,
    synchformer_ckpt: str | os.PathLike | None = None,
    roberta_dir: str | os.PathLike | None = None,
    audioldm_dir: str | os.PathLike | None = None,
    vae_ckpt: str | os.PathLike | None = None,
    hifigan_ckpt: str | os.PathLike | None = None,
    clap_ckpt: str | os.PathLike | None = None,
    config: ModelConfig | None = None,
    use_ema: bool = True,
    allow_partial: bool = False,
):
    """Import the released files into a ReWaSPipeline (saved to `out` if given). Returns (pipeline, reports).

    A component whose file is not given, or whose file lacks keys, keeps a random initialisation: that is a
    partial model, refused unless `allow_partial`. `audioldm_dir` (a diffusers AudioLDM folder) supplies the
    backbone (UNet, VAE, vocoder, text tower), replacing the ReWaS file's; without ReWaS files it makes a
    text-to-audio model whose adapter is the zero-initialised copy of the UNet (video and energy have no effect).
    """
    from .pipeline import ReWaSPipeline, build_components, empty_weights
    from .text_encoder import load_tokenizer

    config = config or paper()
    config = dataclasses.replace(config, phi=dataclasses.replace(config.phi, released_attention=True))
    given = {"rewas": rewas_ckpt, "phi": phi_ckpt, "synchformer": synchformer_ckpt}
    absent = [k for k, v in given.items() if v is None]
    backbone_only = audioldm_dir is not None and len(absent) == 3
    if absent and not allow_partial and not backbone_only:
        raise UserError(
            f"a complete model needs all three released files; missing: {', '.join(absent)} "
            "(a partial import keeps the missing parts random)"
        )
    with empty_weights():  # parameters arrive from the files (assign=True): no random init, no second copy
        components = build_components(config)
    states: dict[str, dict] = {}
    reports = []
    if rewas_ckpt is not None:
        parts, report = split_rewas(read_state(rewas_ckpt, "state_dict"), use_ema)
        report.source = str(rewas_ckpt)
        files = {"vae": vae_ckpt, "vocoder": hifigan_ckpt, "text_encoder": clap_ckpt}
        for component, path in files.items():
            own = {k for k in parts[component] if k != "scale_factor"}
            if path is None:
                if not own and not allow_partial:
                    flag, name = COMPONENT_FILES[component]
                    raise UserError(
                        f"{rewas_ckpt} holds no {component} weights (a pruned ReWaS file): fetch {name} "
                        f"({release.COMPONENTS[component].source}) and pass {flag}"
                    )
                report.origins[component] = {str(rewas_ckpt): len(parts[component])}
                continue
            from_file, skipped = component_state(component, path, components[component].state_dict())
            # as the release: the component's own file first, the ReWaS file's keys over it
            report.origins[component] = {str(path): len(set(from_file) - own), str(rewas_ckpt): len(parts[component])}
            if skipped:
                report.skipped[f"{Path(path).name}: keys {component} does not use"] = skipped
            parts[component] = {**from_file, **parts[component]}
        states.update(parts)
        reports.append((report, list(parts)))
    elif any(p is not None for p in (vae_ckpt, hifigan_ckpt, clap_ckpt)):
        raise UserError("--vae-ckpt, --hifigan-ckpt and --clap-ckpt complete a ReWaS file: give --rewas-ckpt too")
    if phi_ckpt is not None:
        states["phi"] = phi_state(read_state(phi_ckpt, "state_dict", "model"))
        reports.append((ImportReport(str(phi_ckpt)), ["phi"]))
    if synchformer_ckpt is not None:
        states["video_encoder"], other = synchformer_state(read_state(synchformer_ckpt, "model"))
        report = ImportReport(str(synchformer_ckpt))
        report.skipped["Synchformer audio branch and sync transformer (unused by ReWaS)"] = other
        reports.append((report, ["video_encoder"]))

    if audioldm_dir is not None:
        from .convert_diffusers import import_audioldm_folder

        backbone = import_audioldm_folder(audioldm_dir, config)
        states.update(backbone)
        reports = [(r, [n for n in names if n not in backbone]) for r, names in reports]
        reports.append((ImportReport(str(audioldm_dir)), list(backbone)))
        if rewas_ckpt is None:
            from .adapter import EnergyAdapter
            from .unet import UNet

            unet = UNet(config.unet)
            unet.load_state_dict(backbone["unet"])
            states["adapter"] = EnergyAdapter.from_unet(unet, config.latent_shape[2]).state_dict()
            reports[-1][1].append("adapter")
        if backbone_only:
            allow_partial = True  # phi and the video encoder stay random: without a trained adapter they are unused
            config = dataclasses.replace(config, name=f"{config.name}-backbone")
    for report, names in reports:
        for name in names:
            load_into(components[name], states[name], name, report, allow_partial)
    problems = "; ".join(f"{r.source}: {r.problems()}" for r, _ in reports if r.problems())
    if problems and not allow_partial:
        raise UserError(f"refusing a partial import: {problems}")
    incomplete = [n for n, m in components.items() if any(p.is_meta for p in m.parameters())]
    if incomplete:  # allowed partial import: random weights where the files had none
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            fresh = build_components(config)
        for name in incomplete:
            fresh[name].load_state_dict(
                {k: v for k, v in states.get(name, {}).items() if k in fresh[name].state_dict()}, strict=False
            )
            components[name] = fresh[name]
    if roberta_dir is None and audioldm_dir is not None and (Path(audioldm_dir) / "tokenizer" / "vocab.json").is_file():
        roberta_dir = Path(audioldm_dir) / "tokenizer"  # diffusers AudioLDM folders carry RoBERTa's tokenizer
    if config.text.kind == "clap" and config.text.tokenizer != "bytes" and roberta_dir is not None:
        components["text_encoder"].tokenizer = load_tokenizer(config.text, roberta_dir)
    # fp32 in memory, as a saved and loaded folder is: a file stored in fp16 (or a component folded in fp32 beside
    # fp16 biases) would otherwise leave modules of mixed precision that cannot run
    pipe = ReWaSPipeline(config, components).to("cpu")
    if out is not None:
        used = {"rewas": rewas_ckpt, "phi": phi_ckpt, "synchformer": synchformer_ckpt, "vae": vae_ckpt}
        used |= {"vocoder": hifigan_ckpt, "text_encoder": clap_ckpt}
        sources = {Path(p).name: source_of(kind, p) for kind, p in used.items() if p is not None}
        if audioldm_dir is not None:
            sources[Path(audioldm_dir).name] = release.Remote(
                Path(audioldm_dir).name, "AudioLDM's (see the folder's model card)", str(audioldm_dir)
            )
        with atomic_folder(out) as tmp:  # the weights and their licences, or nothing
            pipe.save_pretrained(tmp)
            with writing(Path(out) / "LICENSES.md"):
                (tmp / "LICENSES.md").write_text(release.licences_markdown(sources))
    return pipe, [r for r, _ in reports]


def source_of(kind: str, path) -> release.Remote:
    """What is known of the released file given for `kind`: by its name, else by the part it stands for."""
    by_kind = {"rewas": release.REWAS, "phi": release.PHI, "synchformer": release.SYNCHFORMER}
    return release.known(Path(path).name) or by_kind.get(kind) or release.COMPONENTS[kind]
