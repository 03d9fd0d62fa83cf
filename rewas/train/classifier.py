"""A sound-class classifier trained on the corpus, to check that generated audio sounds like its prompt.

It is PANNs' CNN14 architecture (small widths by default) on 16 kHz audio, trained from scratch with
cross-entropy on the cache's waveforms and class labels. A folder holds `classifier.safetensors` + `config.json`
(the CNN14 configuration and the class names), and `rewas evaluate --embedders classifier=DIR` scores
`class_acc` on manifest items that carry a "class".
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import MissingFileError
from ..evaluate.embedders import CNN14, CNN14Config

SMALL = dict(channels=(16, 32, 64, 128, 128, 256))


class ClassifierBundle:
    """Duck-types the pieces of a pipeline the trainer uses: `.classifier`, `.device`, `.save_pretrained`."""

    def __init__(self, classes: list[str], cfg: CNN14Config | None = None):
        self.classes = list(classes)
        self.cnn_config = cfg or CNN14Config(classes=len(classes), **SMALL)
        self.classifier = CNN14(self.cnn_config)
        self.device = torch.device("cpu")

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.classifier.state_dict().items()},
                  folder / "classifier.safetensors")
        (folder / "config.json").write_text(json.dumps({"format": "rewas-classifier", "classes": self.classes,
                                                        "cnn14": dataclasses.asdict(self.cnn_config)}, indent=2))
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> "ClassifierBundle":
        folder = Path(folder)
        missing = [n for n in ("classifier.safetensors", "config.json") if not (folder / n).is_file()]
        if missing:
            raise MissingFileError(f"{folder}: not a classifier folder (missing {', '.join(missing)})")
        meta = json.loads((folder / "config.json").read_text())
        cnn = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["cnn14"].items()}
        bundle = cls(meta["classes"], CNN14Config(**cnn))
        bundle.classifier.load_state_dict(load_file(folder / "classifier.safetensors"))
        bundle.classifier.eval()
        return bundle

    @torch.no_grad()
    def predict(self, wav, seconds: float = 5.12) -> str:
        """The class heard in a 16 kHz waveform, prepared as in training: the first `seconds` (zero-padded),
        mean removed and peak-normalised to 0.5 (the cache's waveforms)."""
        from ..energy import normalize_waveform

        n = round(seconds * self.cnn_config.sample_rate)
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32)[:n])
        x = normalize_waveform(torch.nn.functional.pad(x, (0, n - len(x))).double()).float()
        logits = self.classifier(x[None])[1]
        return self.classes[int(logits.argmax(-1))]
