"""`rewas check PATH`: what a checkpoint file or a model folder holds, against the released files' manifests,
before anything is converted or loaded for real.

A file is read once, memory-mapped, with torch.load(weights_only=True): no pickle code runs (a file that needs
some is refused), and no tensor data is read except to hash the file, which streams it from disk.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import release
from .checkpoint import layout_diff, torch_load, unwrap_ddp
from .errors import MissingFileError, UserError


@dataclass
class Verdict:
    path: str
    kind: str  # what the file is: "ReWaS", "phi", "Synchformer", "VAE", "HiFi-GAN", "CLAP", "model folder", "unknown"
    ok: bool  # converts as it is
    lines: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # what `rewas convert` needs for it
    needs: bool = False  # ready only with the component files its flags name

    def text(self) -> str:
        state = "NOT READY" if not self.ok else "ready with the component files below" if self.needs else "ready"
        head = f"{self.path}: {self.kind}, {state}"
        tail = [f"  convert with: {' '.join(self.flags)}"] if self.flags else []
        return "\n".join([head, *(f"  {line}" for line in self.lines), *tail])


# the keys of the release's ReWaS file that a component file stands in for, where the ReWaS file lacks them
PRUNED = {
    "vae": tuple(f"first_stage_model.{p}." for p in ("encoder", "decoder", "quant_conv", "post_quant_conv", "loss")),
    "vocoder": ("first_stage_model.vocoder.",),
    "text_encoder": ("cond_stage_models.",),
}


def _manifest(name: str) -> dict:
    return json.loads((release.MANIFESTS / f"{name}.json").read_text())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _compare(verdict: Verdict, what: str, state: dict, expected: dict, skip: tuple[str, ...] = ()) -> None:
    """The state dict against a manifest's key -> shape; keys under `skip` are left out on both sides (the parts
    a component file stands in for, training-only keys)."""
    expected = {k: v for k, v in expected.items() if not k.startswith(skip)}
    missing, unexpected, shapes = layout_diff({k: v for k, v in state.items() if not k.startswith(skip)}, expected)
    unexpected = sorted(unexpected)
    left_out = f" ({', '.join(p.rstrip('.') for p in skip)} left out)" if skip else ""
    verdict.lines.append(
        f"{what}: {len(expected) - len(missing)} of {len(expected)} released keys{left_out}, {len(missing)} missing, "
        f"{len(unexpected)} unexpected, {len(shapes)} of another shape"
    )
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", shapes)):
        if keys:
            verdict.lines.append(f"  {label}, e.g. {', '.join(keys[:3])}")
    if missing or unexpected or shapes:
        verdict.ok = False


def _classify(obj) -> tuple[str, dict]:
    """(kind, its state dict) of a loaded checkpoint, by its layout and keys."""
    if not isinstance(obj, dict):
        raise UserError(f"not a checkpoint (it holds a {type(obj).__name__})")
    if isinstance(obj.get("generator"), dict):
        return "HiFi-GAN", obj["generator"]
    if isinstance(obj.get("model"), dict) and any(k.startswith("vfeat_extractor.") for k in obj["model"]):
        return "Synchformer", obj["model"]
    # a Lightning file's 'state_dict', a 'model' entry, or the state dict itself (as `convert` reads them)
    state = next((obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), dict)), obj)
    state = unwrap_ddp(state)
    keys = [k for k in state if isinstance(k, str)]
    if any(k.startswith(("model.diffusion_model.", "control_model.", "model_ema.")) for k in keys):
        return "ReWaS", state
    if any(k.startswith(("projection1.", "hint_blocks.")) for k in keys):
        return "phi", state
    if any(k.startswith("text_branch.") for k in keys):
        return "CLAP", state
    if any(k.startswith(("encoder.conv_in.", "decoder.conv_in.")) for k in keys):
        return "VAE", state
    return "unknown", state


def check_file(path: Path) -> Verdict:
    import torch

    obj = torch_load(path)  # weights_only, memory-mapped: refuses a pickle that would run code
    kind, state = _classify(obj)
    verdict = Verdict(str(path), kind, ok=kind != "unknown")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    dtypes = Counter(str(v.dtype).removeprefix("torch.") for v in tensors.values())
    verdict.lines.append(
        f"{len(tensors)} tensors ({', '.join(f'{n} {d}' for d, n in dtypes.most_common())}), "
        f"{sum(v.numel() for v in tensors.values()):,} numbers, {path.stat().st_size:,} bytes, sha256 {_sha256(path)}"
    )
    known = release.known(path.name)
    if known is not None:
        verdict.lines.append(f"released as {known.filename} by {known.source}; licence {known.licence}")
    if kind == "ReWaS":
        data = _manifest("rewas_ldm")
        ema = sum(1 for k in tensors if k.startswith("model_ema."))
        verdict.lines.append(
            f"EMA weights: {'present' if ema else 'absent: the raw UNet weights are used'} ({ema} keys)"
        )
        lacking = release.components_lacking(tensors)
        parts = {"unet": ("model.diffusion_model.", "model_ema."), "adapter": ("control_model.",)}
        found = [c for c, p in parts.items() if any(k.startswith(p) for k in tensors)]
        found += [c for c in release.COMPONENT_PREFIXES if c not in lacking]
        verdict.lines.append(f"components: {', '.join(found) or 'none'}")
        # a pruned file: the parts its component files stand in for are not missing
        skip = tuple(p for c in lacking for p in PRUNED[c]) + (("model_ema.",) if not ema else ())
        expected = {k: v for k, v in data["state_dict"].items() if not k.endswith("position_ids")}
        _compare(verdict, "ReWaS", {k: v for k, v in tensors.items() if not k.endswith("position_ids")}, expected, skip)
        verdict.flags.append(f"--rewas-ckpt {path}")
        if lacking:
            verdict.needs = True
        for component in lacking:
            remote = release.COMPONENTS[component]
            verdict.lines.append(f"no {component} weights: {remote.filename} ({remote.source}) must complete it")
            verdict.flags.append(f"{remote.flag} {remote.filename}")
    elif kind == "phi":
        _compare(verdict, "phi", tensors, _manifest("phi")["state_dict"])
        verdict.flags.append(f"--phi-ckpt {path}")
    elif kind == "Synchformer":
        vfeat = {k: v for k, v in tensors.items() if k.startswith("vfeat_extractor.")}  # the manifest keeps the prefix
        _compare(verdict, "video encoder (vfeat_extractor)", vfeat, _manifest("synchformer_vfeat")["state_dict"])
        verdict.flags.append(f"--synchformer-ckpt {path}")
    elif kind in ("VAE", "HiFi-GAN", "CLAP"):
        component = {"VAE": "vae", "HiFi-GAN": "vocoder", "CLAP": "text_encoder"}[kind]
        remote = release.COMPONENTS[component]
        verdict.lines.append(f"AudioLDM's {kind} file: completes a ReWaS file that lacks its weights")
        _compare(verdict, kind, *_component_layout(kind, tensors))
        verdict.flags.append(f"{remote.flag} {path}")
    else:
        verdict.lines.append("not one of the released files' layouts (ReWaS, phi, Synchformer, VAE, HiFi-GAN, CLAP)")
    return verdict


def _component_layout(kind: str, tensors: dict) -> tuple[dict, dict, tuple[str, ...]]:
    """(the file's tensors in the ReWaS file's names, the released keys they stand for, what is left out): a
    component file is checked against the part of the ReWaS manifest it replaces."""
    released = _manifest("rewas_ldm")["state_dict"]
    if kind == "VAE":
        prefix, skip = "first_stage_model.", ("first_stage_model.vocoder.", "first_stage_model.loss.")
        state = {prefix + k: v for k, v in tensors.items()}
    elif kind == "HiFi-GAN":  # weight-normed: each weight_v stands for the weight it folds into (same shape)
        prefix, skip = "first_stage_model.vocoder.", ()
        names = {k.removeprefix("_orig_mod."): v for k, v in tensors.items()}
        state = {prefix + k.replace(".weight_v", ".weight"): v for k, v in names.items() if not k.endswith("_g")}
    else:  # CLAP: the whole model the ReWaS file holds under cond_stage_models.0.model
        prefix, skip = "cond_stage_models.0.model.", ("cond_stage_models.0.model.text_branch.embeddings.position_ids",)
        state = {prefix + k.removeprefix("module."): v for k, v in tensors.items()}
    expected = {k: v for k, v in released.items() if k.startswith(prefix)}
    return state, expected, skip


def check_folder(path: Path) -> Verdict:
    """A model folder `save_pretrained` wrote: its config, its components' files, their dtypes, sizes and hashes."""
    from safetensors import safe_open

    from .pipeline import COMPONENTS, load_config

    verdict = Verdict(str(path), "model folder", ok=True)
    config = load_config(path)  # a malformed config.json is a one-line error
    verdict.lines.append(f"config: {config.name}")
    for name in COMPONENTS:
        file = path / f"{name}.safetensors"
        if not file.is_file():
            verdict.ok = False
            verdict.lines.append(f"{name}: MISSING {file.name}")
            continue
        with safe_open(str(file), "pt") as f:  # the header only
            keys = list(f.keys())
            dtypes = Counter(str(f.get_slice(k).get_dtype()).lower() for k in keys)
        verdict.lines.append(
            f"{name}: {len(keys)} tensors ({', '.join(f'{n} {d}' for d, n in dtypes.most_common())}), "
            f"{file.stat().st_size:,} bytes, sha256 {_sha256(file)}"
        )
    if (path / "LICENSES.md").is_file():
        verdict.lines.append("LICENSES.md: the licences of the files it was converted from")
    return verdict


def check(path: str | os.PathLike) -> Verdict:
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: no such file or folder")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{path}: a folder without config.json is not a model folder")
        return check_folder(path)
    return check_file(path)
