"""Diffusers-format AudioLDM folders (e.g. `cvssp/audioldm-m-full`) <-> our backbone, by name mapping.

Key maps are derived from our module structure, so they hold for any size: UNet (UNet2DConditionModel with
simple-projection class embedding concatenated to the time embedding), VAE (AutoencoderKL), vocoder
(transformers' SpeechT5HifiGan) and CLAP text tower (ClapTextModelWithProjection). Importing such a folder
gives a text-to-audio model whose energy adapter is the zero-initialised copy of its UNet (energy control has
no effect until ReWaS adapter weights are loaded); users can also swap the backbone of a ReWaS model this way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .checkpoint import torch_load
from .config import ModelConfig, UNetConfig, VAEConfig
from .errors import MissingFileError, UserError

RESBLOCK = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}


def _rename(
    ours: dict[str, torch.Tensor], rules: list[tuple[str, str]], inner: dict[str, str] | None = None
) -> dict[str, str]:
    """Map every key of `ours` through the first matching (our prefix, their prefix) rule, then inner renames."""
    out = {}
    for key in ours:
        for src, dst in rules:
            if key.startswith(src):
                rest = key[len(src) :]
                for a, b in (inner or {}).items():
                    if rest.startswith(a + "."):
                        rest = b + rest[len(a) :]
                        break
                out[key] = dst + rest
                break
        else:
            raise KeyError(f"no diffusers name for {key}")
    return out


def unet_key_map(cfg: UNetConfig, keys) -> dict[str, str]:
    """Our UNet (released names) -> diffusers UNet2DConditionModel names."""
    r, levels = cfg.num_res_blocks, len(cfg.channel_mult)
    rules = [
        ("time_embed.0.", "time_embedding.linear_1."),
        ("time_embed.2.", "time_embedding.linear_2."),
        ("film_emb.", "class_embedding."),
        ("input_blocks.0.0.", "conv_in."),
        ("out.0.", "conv_norm_out."),
        ("out.2.", "conv_out."),
        ("middle_block.0.", "mid_block.resnets.0."),
        ("middle_block.1.", "mid_block.attentions.0."),
        ("middle_block.2.", "mid_block.resnets.1."),
    ]
    n = 1
    for level in range(levels):
        for i in range(r):
            rules += [
                (f"input_blocks.{n}.0.", f"down_blocks.{level}.resnets.{i}."),
                (f"input_blocks.{n}.1.", f"down_blocks.{level}.attentions.{i}."),
            ]
            n += 1
        if level != levels - 1:
            rules.append((f"input_blocks.{n}.0.op.", f"down_blocks.{level}.downsamplers.0.conv."))
            n += 1
    for up in range(levels):
        for i in range(r + 1):
            n = up * (r + 1) + i
            rules += [(f"output_blocks.{n}.0.", f"up_blocks.{up}.resnets.{i}.")]
            # the second module is a transformer at attention levels, else the upsampler; the third is the upsampler
            rules += [(f"output_blocks.{n}.{j}.conv.", f"up_blocks.{up}.upsamplers.0.conv.") for j in (1, 2)]
            rules += [(f"output_blocks.{n}.1.", f"up_blocks.{up}.attentions.{i}.")]
    return _rename(dict.fromkeys(keys), rules, RESBLOCK)


def vae_key_map(cfg: VAEConfig, keys) -> dict[str, str]:
    levels = len(cfg.ch_mult)
    rules = [("quant_conv.", "quant_conv."), ("post_quant_conv.", "post_quant_conv.")]
    for part in ("encoder", "decoder"):
        rules += [
            (f"{part}.conv_in.", f"{part}.conv_in."),
            (f"{part}.conv_out.", f"{part}.conv_out."),
            (f"{part}.norm_out.", f"{part}.conv_norm_out."),
            (f"{part}.mid.block_1.", f"{part}.mid_block.resnets.0."),
            (f"{part}.mid.block_2.", f"{part}.mid_block.resnets.1."),
            (f"{part}.mid.attn_1.", f"{part}.mid_block.attentions.0."),
        ]
    for i in range(levels):
        rules += [
            (f"encoder.down.{i}.block.", f"encoder.down_blocks.{i}.resnets."),
            (f"encoder.down.{i}.downsample.", f"encoder.down_blocks.{i}.downsamplers.0."),
            (
                f"decoder.up.{i}.block.",
                f"decoder.up_blocks.{levels - 1 - i}.resnets.",
            ),  # diffusers counts from the bottom
            (f"decoder.up.{i}.upsample.", f"decoder.up_blocks.{levels - 1 - i}.upsamplers.0."),
        ]
    mapped = _rename(dict.fromkeys(k for k in keys if k != "scale_factor"), rules)
    renames = {
        ".nin_shortcut.": ".conv_shortcut.",
        ".norm.": ".group_norm.",
        ".q.": ".to_q.",
        ".k.": ".to_k.",
        ".v.": ".to_v.",
        ".proj_out.": ".to_out.0.",
    }
    for key, value in mapped.items():
        for a, b in renames.items():
            if ("attentions" in value or a == ".nin_shortcut.") and a in value:
                value = value.replace(a, b)
        mapped[key] = value
    return mapped


def vocoder_key_map(keys) -> dict[str, str]:
    return {k: k.replace("ups.", "upsampler.", 1) if k.startswith("ups.") else k for k in keys}


def text_key_map(keys) -> dict[str, str]:
    rules = {
        "text_branch.": "text_model.",
        "text_projection.0.": "text_projection.linear1.",
        "text_projection.2.": "text_projection.linear2.",
    }
    return {k: next(v + k[len(p) :] for p, v in rules.items() if k.startswith(p)) for k in keys}


def to_diffusers(component: str, state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Our state dict of one backbone component -> the diffusers/transformers layout (1x1 convs -> linear)."""
    maps = {
        "unet": lambda k: unet_key_map(config.unet, k),
        "vae": lambda k: vae_key_map(config.vae, k),
        "vocoder": vocoder_key_map,
        "text_encoder": text_key_map,
    }
    names = maps[component](list(state))
    out = {}
    for ours, theirs in names.items():
        value = state[ours]
        if component == "vae" and ".attentions." in theirs and theirs.endswith("weight") and value.dim() == 4:
            value = value[:, :, 0, 0]
        out[theirs] = value
    return out


def from_diffusers(
    component: str, state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], config: ModelConfig
) -> dict[str, torch.Tensor]:
    """The inverse of `to_diffusers`, given our module's state dict `own` (for names and shapes)."""
    names = {
        "unet": lambda k: unet_key_map(config.unet, k),
        "vae": lambda k: vae_key_map(config.vae, k),
        "vocoder": vocoder_key_map,
        "text_encoder": text_key_map,
    }[component](list(own))
    out, missing = {}, []
    for ours, theirs in names.items():
        if theirs not in state:
            missing.append(theirs)
            continue
        out[ours] = state[theirs].reshape(own[ours].shape)
    if missing:
        raise UserError(f"{component}: the diffusers weights lack {len(missing)} tensors, e.g. {missing[:3]}")
    return out


def import_audioldm_folder(folder: str | os.PathLike, config: ModelConfig) -> dict[str, dict[str, torch.Tensor]]:
    """unet/, vae/, vocoder/, text_encoder/ of a diffusers AudioLDM folder -> our state dicts (+ VAE scale_factor)."""
    from safetensors.torch import load_file

    from .pipeline import build_components, empty_weights

    folder = Path(folder)
    with empty_weights():
        own = {name: module.state_dict() for name, module in build_components(config).items()}
    out = {}
    for component, sub in (("unet", "unet"), ("vae", "vae"), ("vocoder", "vocoder"), ("text_encoder", "text_encoder")):
        files = sorted((folder / sub).glob("*.safetensors")) or sorted((folder / sub).glob("*.bin"))
        if not files:
            raise MissingFileError(f"{folder / sub}: no weights (*.safetensors) in this diffusers AudioLDM folder")
        state = {}
        for f in files:
            state.update(load_file(f) if f.suffix == ".safetensors" else torch_load(f))
        out[component] = from_diffusers(component, state, own[component], config)
    vae_cfg = folder / "vae" / "config.json"
    scale = json.loads(vae_cfg.read_text()).get("scaling_factor", 1.0) if vae_cfg.is_file() else 1.0
    out["vae"]["scale_factor"] = torch.tensor(float(scale))
    return out
