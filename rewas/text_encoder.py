"""④ Text encoder: prompt -> (B, proj_dim) embedding, the CLAP text tower AudioLDM samples with.

RoBERTa (transformers' RobertaModel, pooler included) -> pooler output -> projection MLP (Linear, ReLU, Linear)
-> L2 normalisation. Parameter names follow the released `cond_stage_models.0.model.{text_branch,text_projection}`.
Tokenizers never touch a hub: "roberta-bpe" reads `vocab.json` + `merges.txt` from a local folder, "bytes"
(the debug preset) needs no files at all.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import RobertaConfig, RobertaModel

from .config import TextEncoderConfig

ROBERTA_FILES = ("vocab.json", "merges.txt")
BOS, PAD, EOS = 0, 1, 2


class ByteTokenizer:
    """UTF-8 bytes as tokens (id = byte + 3), RoBERTa's special ids; needs no vocabulary file."""

    vocab_size = 259

    def __init__(self, max_length: int):
        self.max_length = max_length

    def ids(self, text: str) -> list[int]:
        return [BOS] + [b + 3 for b in text.encode("utf-8")][: self.max_length - 2] + [EOS]

    def save(self, directory: Path) -> None:
        pass


class RobertaBPETokenizer:
    """RoBERTa's byte-level BPE from a local folder holding vocab.json and merges.txt."""

    def __init__(self, directory: str | os.PathLike, max_length: int):
        directory = Path(directory)
        missing = [name for name in ROBERTA_FILES if not (directory / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"RoBERTa tokenizer files missing in {directory}: {', '.join(missing)} "
                "(they come with the 'roberta-base' model, e.g. from huggingface.co/FacebookAI/roberta-base)"
            )
        from transformers import RobertaTokenizerFast

        self.directory = directory
        self.max_length = max_length
        self._tok = RobertaTokenizerFast(vocab_file=str(directory / "vocab.json"), merges_file=str(directory / "merges.txt"))

    def ids(self, text: str) -> list[int]:
        return self._tok(text, truncation=True, max_length=self.max_length)["input_ids"]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name in ROBERTA_FILES:
            shutil.copyfile(self.directory / name, directory / name)


def load_tokenizer(cfg: TextEncoderConfig, directory: str | os.PathLike | None = None):
    if cfg.tokenizer == "bytes":
        return ByteTokenizer(cfg.max_length)
    if cfg.tokenizer == "roberta-bpe":
        if directory is None:
            raise FileNotFoundError(
                "this model's text encoder needs RoBERTa tokenizer files (vocab.json, merges.txt): "
                "pass a folder that holds them (roberta-base from the Hugging Face hub)"
            )
        return RobertaBPETokenizer(directory, cfg.max_length)
    raise ValueError(f"unknown tokenizer kind {cfg.tokenizer!r}")


class TextEncoder(nn.Module):
    def __init__(self, cfg: TextEncoderConfig, tokenizer=None):
        super().__init__()
        self.config = cfg
        roberta = RobertaConfig(
            vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
            max_position_embeddings=cfg.max_positions, type_vocab_size=1, layer_norm_eps=cfg.layer_norm_eps,
            pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, hidden_act="gelu",
        )
        self.text_branch = RobertaModel(roberta, add_pooling_layer=True)
        self.text_projection = nn.Sequential(
            nn.Linear(cfg.hidden_size, cfg.proj_dim), nn.ReLU(), nn.Linear(cfg.proj_dim, cfg.proj_dim)
        )
        self.tokenizer = tokenizer

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> (input_ids, attention_mask), both (B, L), padded to the longest."""
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.config)
        rows = [self.tokenizer.ids(p) for p in prompts]
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), PAD, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return ids, mask

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) ids + mask -> (B, proj_dim) unit-norm embedding."""
        pooled = self.text_branch(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return F.normalize(self.text_projection(pooled), dim=-1)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        device = self.text_projection[0].weight.device
        ids, mask = self.tokenize(prompts)
        return self.forward(ids.to(device), mask.to(device))
