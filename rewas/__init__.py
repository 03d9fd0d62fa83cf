"""rewas: give silent video a soundtrack. ReWaS (Read, Watch and Scream!, AAAI 2025) in PyTorch.

from rewas import ReWaSPipeline
pipe = ReWaSPipeline.from_pretrained("path/to/model")      # or a preset: "debug", "paper"
result = pipe("clip.mp4", prompt="dog growling while biting a toy", steps=50, seed=0)
result.waveform  # (N,) float32 at 16 kHz, as long as the video
mix = rewas.render(pipe, "clip.mp4", [rewas.Layer("a dog", region=rewas.Region((0.1, 0.2, 0.5, 0.9))), ...])
"""

from .config import ModelConfig, debug, paper
from .energy import waveform_energy
from .pipeline import GenerationResult, ReWaSPipeline, count_parameters, load_config
from .soundtrack import Layer, Soundtrack, render
from .tracking import Region

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
