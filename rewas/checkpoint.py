"""Checkpoint files: reading a state dict from a local file, and loading it only when it fits the module exactly."""

from __future__ import annotations

import os

import torch
import torch.nn as nn

from .errors import MissingFileError, UserError


def read_checkpoint(path: str | os.PathLike, what: str, source: str) -> dict[str, torch.Tensor]:
    """A local checkpoint's state dict (under "model" if nested), read with weights_only=True."""
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: {what} checkpoint not found ({source})")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("model", state)


def load_checked(model: nn.Module, state: dict, path, what: str) -> nn.Module:
    """Load non-strictly, then refuse anything but an exact match (a wrong file must not load half-way)."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{path}: not a {what} checkpoint (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()
