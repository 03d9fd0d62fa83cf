"""Checkpoint files: reading a state dict from a local file, and the one strict loader that both the model import
(`rewas.convert`) and the evaluation embedders use, so a file either fits a module exactly or is refused."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from .errors import MissingFileError, UserError


def torch_load(path: Path):
    """torch.load(weights_only=True), memory-mapped where the format allows; a file that is not a PyTorch
    checkpoint (or one that needs code to unpickle) is the user's error, in one line."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(e) and "zip" not in str(e).lower():
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, MemoryError):  # the disk or the machine, not the file's content
        raise
    except Exception as e:  # torch's weights-only unpickler raises anything (KeyError, IndexError...) on garbage
        first = type(e).__name__ + (f": {str(e).strip().splitlines()[0]}" if str(e).strip() else "")
        raise UserError(f"{path}: not a PyTorch checkpoint that loads without running code ({first[:160]})") from None


def unwrap_ddp(state: dict) -> dict:
    """A state dict saved from a DDP- or DataParallel-wrapped model (every key under `module.`) -> the model's own
    keys; any other state dict as it is."""
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def read_state(path: str | os.PathLike, *nested: str, what: str = "", source: str = "") -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, memory-mapped, under the first of `nested` present (e.g. 'state_dict', 'model').

    Read with weights_only=True: no code is unpickled. `what` and `source` (where the file comes from) go into the
    error when the file is missing."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            " ".join(filter(None, (f"{path}: no such", what, "checkpoint"))) + (f" ({source})" if source else "")
        )
    obj = torch_load(path)
    if not isinstance(obj, dict):
        raise UserError(f"{path}: not a {what + ' ' if what else ''}checkpoint (it holds a {type(obj).__name__})")
    for key in nested:
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            return obj[key]
    return obj


def layout_diff(state: dict, expected: dict) -> tuple[list[str], list[str], list[str]]:
    """A state dict's keys against the expected key -> tensor (or shape): (missing, in `expected`'s order;
    unexpected, in `state`'s order; of another shape, in `expected`'s order)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    other = [
        k for k in expected if k in state and tuple(state[k].shape) != tuple(getattr(expected[k], "shape", expected[k]))
    ]
    return missing, unexpected, other


def load_state(
    module: nn.Module, state: dict, name: str, *, allow_partial: bool = False, assign: bool = False
) -> tuple[list[str], list[str]]:
    """Load `state` into `module` only if its keys are exactly the module's -> (missing, unexpected) keys.

    On a mismatch nothing is loaded (a wrong file must not load half-way), unless `allow_partial`: then the keys
    both have are loaded and the rest of the module keeps its values. Differing shapes are always an error.
    `assign` keeps the given tensors instead of copying them (modules built on the meta device)."""
    own = module.state_dict()
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state]
    bad_shape = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if bad_shape:
        raise UserError(
            f"{name}: shapes differ for {len(bad_shape)} tensors, e.g. {bad_shape[0]}: "
            f"{tuple(state[bad_shape[0]].shape)} in the file vs {tuple(own[bad_shape[0]].shape)}"
        )
    if (missing or unexpected) and not allow_partial:
        return missing, unexpected
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False, assign=assign)
    return missing, unexpected


def load_checked(model: nn.Module, state: dict, path, what: str) -> nn.Module:
    """`load_state`, refusing a file that does not fit exactly with an error naming what it should have been."""
    missing, unexpected = load_state(model, state, str(path))
    if missing or unexpected:
        raise UserError(f"{path}: not a {what} checkpoint (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()
