"""The checks of public arguments, one rule per argument, shared by the Python API, the CLI, `rewas batch` and the
studio. Each raises a UserError (a ValueError) whose text names the argument as the caller knows it."""

from __future__ import annotations

import math
import numbers
import sys
from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:
    import torch

# torch is imported where a check needs it: the command line validates its arguments before it loads torch
DTYPES = ("fp32", "bf16", "fp16")
_DTYPE_NAMES = {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}


def device(value: str | torch.device | None, name: str = "device") -> torch.device:
    """A torch device this machine has; None: CUDA when present, else the CPU."""
    import torch

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


def native_bf16() -> str | None:
    """The instruction set with which this CPU computes bf16 natively (AMX, AVX512-BF16), or None: there torch
    emulates bf16 and fp32 is faster."""
    import torch

    if torch.cpu._is_amx_tile_supported():
        return "AMX"
    if torch.cpu._is_avx512_bf16_supported():
        return "AVX512-BF16"
    return None


def auto_dtype(on: torch.device) -> tuple[torch.dtype, str]:
    """What `dtype="auto"` means on `on`, and why: bf16 on a CPU that computes it natively (scripts/bench_cpu.py:
    docs/speed.md), fp32 on other CPUs and on GPUs (on an H200 bf16 was no faster; elsewhere not yet measured)."""
    import torch

    if on.type == "cuda":
        return torch.float32, "fp32 on cuda: bf16 was no faster on an H200 (5 s clips, docs/speed.md)"
    if on.type != "cpu":
        return torch.float32, f"fp32 on {on.type}: bf16 is not yet measured there"
    isa = native_bf16()
    if isa:
        return torch.bfloat16, f"this CPU computes bf16 natively ({isa})"
    return torch.float32, "this CPU has no native bf16 (no AVX512-BF16 or AMX), where fp32 is faster"


def channels_last(on: torch.device, dtype: torch.dtype, widest: int) -> bool:
    """Whether the denoiser's convolutions are faster with channels-last weights on `on` in `dtype`, for a UNet whose
    widest level has `widest` channels: in bf16 on an AMX CPU, where oneDNN's kernels take that layout, and on an
    AVX512-BF16 CPU without AMX up to 384 channels, beyond which its blocked layout wins (docs/speed.md: a guided
    step 0.88-0.98 of the default layout's time up to 384, 1.00 at 576, 1.15 at 960, the paper preset's width; the
    paper preset itself 1.08). fp32 was no faster on either; GPUs are not measured."""
    import torch

    if on.type != "cpu" or dtype != torch.bfloat16:
        return False
    isa = native_bf16()
    return isa == "AMX" or (isa == "AVX512-BF16" and widest <= 384)


def dtype(value: str | torch.dtype | None, on: torch.device, name: str = "dtype") -> torch.dtype:
    """The diffusion model's precision: a torch dtype, fp32/bf16/fp16, or "auto" (`auto_dtype`). fp16 is refused
    on a CPU, where torch emulates it (the embedded model took 62 s in fp16 against 1.05 s in fp32)."""
    import torch

    if value is None:
        return torch.float32
    if isinstance(value, str) and value.lower() == "auto":
        return auto_dtype(on)[0]
    if isinstance(value, str):
        key = _DTYPE_NAMES.get(value.lower().removeprefix("torch."), value.lower())
        if key not in DTYPES:
            raise UserError(f"{name} {value!r}: choose one of {', '.join(DTYPES)} or auto")
        value = getattr(torch, {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[key])
    if value not in (torch.float32, torch.bfloat16, torch.float16):
        raise UserError(f"{name} {value}: choose one of {', '.join(DTYPES)}")
    if value == torch.float16 and on.type == "cpu":
        raise UserError(f"{name} fp16 on a CPU is emulated and dozens of times slower than fp32; use bf16 or fp32")
    return value


def whole(value, name: str, low: int = 1) -> int:
    """A whole number >= low (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise UserError(f"{name} must be a whole number >= {low} (got {value!r})")
    return int(value)


def steps(value, diffusion_steps: int, name: str = "steps") -> int:
    """The sampler's steps: 1 to one under the diffusion's own (all of them put DDIM's first step past its table's
    end, an IndexError, and DPM-Solver's on one timestep twice, a NaN)."""
    value = whole(value, name)
    if value >= diffusion_steps:
        raise UserError(
            f"{name} must be at most {diffusion_steps - 1}, under the model's diffusion steps (got {value})"
        )
    return value


def number(value, name: str, low: float | None = None, high: float | None = None) -> float:
    """A finite real number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise UserError(f"{name} must be a finite number (got {value!r})")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low:g}" if high is None else f"<= {high:g}" if low is None else f"between {low:g} and {high:g}"
        raise UserError(f"{name} must be {bounds} (got {value!r})")
    return float(value)


# far past any useful setting: beyond, the guided prediction or the hint's residuals overflow, and the latent is NaN
SCALE_MOST = 100.0
# nats of mean log-mel energy: silence is -11.5, the loudest a band can be about 3.5. Wider than that, for a curve
# made another way; a value past it is a mistake (dB given as nats, an overflowed number), which sampled NaN
ENERGY_RANGE = (-50.0, 50.0)


def guidance(value, name: str = "guidance") -> float:
    """Classifier-free guidance: 0 to SCALE_MOST (1: none; below 1, towards no prompt)."""
    return number(value, name, low=0, high=SCALE_MOST)


def control_scale(value, name: str = "control_scale") -> float:
    """The energy hint's weight: 0 (no energy control) to SCALE_MOST."""
    return number(value, name, low=0, high=SCALE_MOST)


def eta(value, name: str = "eta") -> float:
    """DDIM's eta, 0 (deterministic) to 1 (as much noise as DDPM): more leaves its noise term with no real size."""
    return number(value, name, low=0, high=1)


def prompt(value, name: str = "prompt", required: bool = True) -> str:
    """A prompt: a string; the prompt itself must say something (one rule for the API, the CLI, `batch` and the
    studio: an empty prompt would leave the sound to chance), a negative prompt may be empty or None."""
    if value is None:
        if required:
            raise UserError(f"{name} is missing: say what should be heard")
        return ""
    if not isinstance(value, str):
        raise UserError(f"{name} must be a string (got {type(value).__name__})")
    if required and not value.strip():
        raise UserError(f"{name} is empty: say what should be heard")
    return value


def seed(value, name: str = "seed") -> int | None:
    """None (a random seed) or a whole number in [0, 2^63)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < 2**63:
        raise UserError(f"{name} must be a whole number from 0 to 2^63 - 1 (got {value!r})")
    return int(value)


def frames(value, name: str = "frames"):
    """(T, H, W, 3) RGB frames -> uint8: uint8 as they are, floats in [0, 1] scaled to 0-255 (not taken as black)."""
    import numpy as np

    torch = sys.modules.get("torch")  # a tensor can only come from a loaded torch
    if torch is not None and isinstance(value, torch.Tensor):  # any device or dtype (bf16 has no numpy counterpart)
        value = value.detach().cpu()
        value = (value if value.dtype == torch.uint8 else value.double()).numpy()
    try:
        array = np.asarray(value)
    except Exception:  # a ragged list
        raise UserError(f"{name} must be an array of shape (T, H, W, 3)") from None
    if array.ndim != 4 or array.shape[-1] != 3 or 0 in array.shape:
        raise UserError(f"{name} must be (T, H, W, 3) RGB with T, H, W >= 1 (got shape {array.shape})")
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise UserError(f"{name}: float frames must be finite and in [0, 1] (uint8 frames are 0-255)")
        return np.round(array * 255).astype(np.uint8)
    if array.dtype.kind in "iu" and array.dtype != np.uint8:
        if array.min() < 0 or array.max() > 255:
            raise UserError(f"{name}: whole-number frames must be 0-255")
        return array.astype(np.uint8)
    raise UserError(f"{name} must be uint8 (0-255) or float (0-1), not {array.dtype}")


def energy(value, name: str = "energy"):
    """An energy curve: values (one per 10 ms mel frame), or (times_s, values) with increasing times >= 0; every
    number finite; at least one value."""
    import numpy as np

    def array(x, what):
        try:
            a = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise UserError(f"{name}: {what} must be numbers") from None
        if a.ndim == 2 and a.shape[0] == 2 and what == "the values":
            raise UserError(f"{name}: give times and values as a (times_s, values) tuple, not as rows of one array")
        if a.ndim != 1 or len(a) == 0:
            raise UserError(f"{name}: {what} must be a non-empty 1-D sequence (got shape {a.shape})")
        if not np.isfinite(a).all():
            raise UserError(f"{name}: {what} hold NaN or infinite values")
        low, high = ENERGY_RANGE
        if what == "the values" and not ((a >= low) & (a <= high)).all():
            raise UserError(
                f"{name}: values from {a.min():g} to {a.max():g} nats; an energy curve lies between {low:g} and "
                f"{high:g} nats, not dB (silence is -11.5, a loud sound about -2)"
            )
        return a

    if isinstance(value, tuple):
        if len(value) != 2:
            raise UserError(f"{name} must be values, or a (times_s, values) pair")
        times, values = array(value[0], "the times"), array(value[1], "the values")
        if len(times) != len(values):
            raise UserError(f"{name}: {len(times)} times and {len(values)} values")
        if times[0] < 0 or (len(times) > 1 and not (np.diff(times) > 0).all()):
            raise UserError(f"{name}: the times must increase from 0 or later")
        return times, values
    return array(value, "the values")


def squares(value, name: str = "region"):
    """Per-frame squares of a picture: (T, 3) left, top, side, finite, side in (0, 1] (`tracking.Track.squares`)."""
    import numpy as np

    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{name}: must be numbers, (frames, 3) left, top, side") from None
    if a.ndim != 2 or a.shape[1] != 3 or len(a) == 0:
        raise UserError(f"{name}: must have shape (frames, 3): left, top, side per frame (got {a.shape})")
    if not np.isfinite(a).all() or not ((a[:, 2] > 0) & (a[:, 2] <= 1)).all() or (a[:, :2] < 0).any():
        raise UserError(f"{name}: left and top must be >= 0 and each side in (0, 1], as fractions of the picture")
    return a


def edits(value, name: str = "edits") -> list:
    """Curve edits: `rewas.edits.Edit`s, or their spellings ("mute 1-2", "gain 3-4:+6dB", "draw 0:-6,1:-2")."""
    from .edits import OPS, Edit, parse

    if isinstance(value, (str, Edit)):
        value = [value]
    if value is not None and not isinstance(value, (list, tuple)):
        raise UserError(f"{name} must be a list of edits (got {type(value).__name__})")
    out = []
    for e in value or ():
        if isinstance(e, Edit):
            out.append(e)
        elif isinstance(e, str):
            op, _, text = e.strip().partition(" ")
            if op not in OPS:
                raise UserError(f"{name}: {e!r} is not an edit (one of {', '.join(OPS)}, e.g. 'mute 1-2')")
            out.append(Edit("mute") if (op, text.strip()) == ("mute", "all") else parse(op, text))
        else:
            raise UserError(f"{name}: {e!r} is not an edit (an Edit or a string like 'mute 1-2')")
    return out
