"""Evaluation: per-clip metrics (energy MAE, AV-Align, onsets), set-level metrics from embedders, reports."""

from .metrics import av_align, energy_mae, frechet_distance, inception_score, kl_from_logits, onset_metrics
from .report import evaluate, read_manifest, to_markdown, write_report

__all__ = [
    "evaluate",
    "read_manifest",
    "to_markdown",
    "write_report",
    "energy_mae",
    "av_align",
    "onset_metrics",
    "frechet_distance",
    "kl_from_logits",
    "inception_score",
]
