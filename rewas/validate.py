"""The checks of public arguments, one rule per argument, shared by the Python API, the CLI, `rewas batch` and the
studio. Each raises a UserError (a ValueError) whose text names the argument as the caller knows it."""

from __future__ import annotations

import math
import numbers

import torch

from .errors import UserError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_DTYPE_NAMES = {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}


def device(value: str | torch.device | None, name: str = "device") -> torch.device:
    """A torch device this machine has; None: CUDA when present, else the CPU."""
    if value is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError):
        raise UserError(f"{name} {value!r}: not a torch device (try cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{name} {value}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"{name} {value}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{name} {value}: MPS is not available on this machine")
    return dev


def dtype(value: str | torch.dtype | None, on: torch.device, name: str = "dtype") -> torch.dtype:
    """The diffusion model's precision: a torch dtype or fp32/bf16/fp16. fp16 is refused on a CPU, where torch
    emulates it (the embedded model took 62 s in fp16 against 1.05 s in fp32)."""
    if value is None:
        return torch.float32
    if isinstance(value, str):
        key = _DTYPE_NAMES.get(value.lower().removeprefix("torch."), value.lower())
        if key not in DTYPES:
            raise UserError(f"{name} {value!r}: choose one of {', '.join(DTYPES)}")
        value = DTYPES[key]
    if value not in DTYPES.values():
        raise UserError(f"{name} {value}: choose one of {', '.join(DTYPES)}")
    if value == torch.float16 and on.type == "cpu":
        raise UserError(f"{name} fp16 on a CPU is emulated and dozens of times slower than fp32; use bf16 or fp32")
    return value


def whole(value, name: str, low: int = 1) -> int:
    """A whole number >= low (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise UserError(f"{name} must be a whole number >= {low} (got {value!r})")
    return int(value)


def number(value, name: str, low: float | None = None, high: float | None = None) -> float:
    """A finite real number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise UserError(f"{name} must be a finite number (got {value!r})")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"<= {high}" if low is None else f"between {low} and {high}"
        raise UserError(f"{name} must be {bounds} (got {value!r})")
    return float(value)
