"""rewas: give silent video a soundtrack. ReWaS (Read, Watch and Scream!, AAAI 2025) in PyTorch.

from rewas import ReWaSPipeline
pipe = ReWaSPipeline.from_pretrained("path/to/model")      # or a preset: "debug", "paper"
result = pipe("clip.mp4", prompt="dog growling while biting a toy", steps=50, seed=0)
result.waveform  # (N,) float32 at 16 kHz, as long as the video
mix = rewas.render(pipe, "clip.mp4", [rewas.Layer("a dog", region=rewas.Region((0.1, 0.2, 0.5, 0.9))), ...])
"""

import importlib

# Each name is imported on first use, so that `rewas --help` and a mistyped command answer without importing torch
# (about 1 s): the command line parses its arguments before it loads anything heavy.
_WHERE = {
    "ModelConfig": "config",
    "debug": "config",
    "paper": "config",
    "waveform_energy": "energy",
    "GenerationResult": "pipeline",
    "ReWaSPipeline": "pipeline",
    "count_parameters": "pipeline",
    "load_config": "config",
    "Layer": "soundtrack",
    "Soundtrack": "soundtrack",
    "render": "soundtrack",
    "Region": "tracking",
}


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
    "ReWaSPipeline",
    "GenerationResult",
    "ModelConfig",
    "paper",
    "debug",
    "waveform_energy",
    "count_parameters",
    "load_config",
    "Layer",
    "Region",
    "Soundtrack",
    "render",
]
__version__ = "0.1.0"
