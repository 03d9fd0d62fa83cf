"""rewas: give silent video a soundtrack. ReWaS (Read, Watch and Scream!, AAAI 2025) in PyTorch.

from rewas import ReWaSPipeline
pipe = ReWaSPipeline.from_pretrained("path/to/model")      # or a preset: "debug", "paper"
result = pipe("clip.mp4", prompt="dog growling while biting a toy", steps=50, seed=0)
result.waveform  # (N,) float32 at 16 kHz, as long as the video
mix = rewas.render(pipe, "clip.mp4", [rewas.Layer("a dog", region=rewas.Region((0.1, 0.2, 0.5, 0.9))), ...])
"""

from ._optional import lazy_names

_WHERE = {
    "ModelConfig": "config",
    "debug": "config",
    "paper": "config",
    "load_config": "config",
    "waveform_energy": "energy",
    "GenerationResult": "pipeline",
    "ReWaSPipeline": "pipeline",
    "count_parameters": "pipeline",
    "Layer": "soundtrack",
    "Soundtrack": "soundtrack",
    "render": "soundtrack",
    "Region": "tracking",
}
__getattr__ = lazy_names(__name__, _WHERE)  # each name is imported on first use: the CLI starts without torch


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
