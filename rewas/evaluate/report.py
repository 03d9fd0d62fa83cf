"""`rewas evaluate`: a manifest of clips -> per-item metrics, their means, set-level metrics, JSON + Markdown.

Manifest: one JSON object per line, {"video": path, "audio": generated audio, "reference": real audio (optional),
"prompt": text (optional)}; relative paths are relative to the manifest. Every metric that applies to an item is
computed; an item that fails is reported with its error and skipped, never silently dropped.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable

import numpy as np

from .. import files
from .._optional import MissingExtraError
from ..errors import MissingFileError, UserError
from . import metrics as M

ITEM_METRICS = ("energy_mae", "av_align", "onset")
OPTIONAL_METRICS = ("defects",)  # asked for by name: dropouts and clicks are defects only in steady material
ONSET_KEYS = ("onset_acc", "onset_detection_acc", "onset_ap")
DEFECT_KEYS = ("dropouts", "clicks")


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Items with an "audio"; lines that `rewas batch` recorded as failed (no audio) are left out."""
    items = files.read_manifest(path, required=(), path_keys=("video", "audio", "reference"))
    items = [it for it in items if it.get("status", "ok") == "ok"]
    for n, item in enumerate(items, start=1):
        if "audio" not in item:
            raise UserError(f"{path}: item {n} has no 'audio'")
    if not items:
        raise UserError(f"{path}: no item with audio to evaluate")
    return items


def evaluate_item(item: dict, which: tuple[str, ...] = ITEM_METRICS, onset_seconds: float | None = None) -> dict:
    """Every metric in `which` that applies to this item (energy/onsets need a reference, AV-Align a video)."""
    out: dict = {}
    if not os.path.isfile(item["audio"]):
        raise MissingFileError(f"{item['audio']}: no such audio file")
    ref = item.get("reference")
    if ref and "energy_mae" in which:
        out["energy_mae"] = M.energy_mae(item["audio"], ref)
    if item.get("video") and "av_align" in which:
        out["av_align"] = M.av_align(item["video"], item["audio"])
    if ref and "onset" in which:
        target = M.load_clip(ref, M.ONSET_SR, onset_seconds)
        generated = M.load_clip(item["audio"], M.ONSET_SR, onset_seconds)
        out.update(M.onset_metrics(target, generated))
    if "defects" in which:
        from ..audio import load_audio
        from .defects import detect

        found = detect(load_audio(item["audio"], 16000), 16000)
        out.update(dropouts=len(found.dropouts), clicks=len(found.clicks))
    return out


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(finite)) if finite else None


def evaluate(
    manifest: str | os.PathLike,
    *,
    which: tuple[str, ...] = ITEM_METRICS,
    onset_seconds: float | None = None,
    embedders: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    items = read_manifest(manifest)
    rows, notes = [], []
    for i, item in enumerate(items):
        row = {"index": i, **{k: item.get(k) for k in ("video", "audio", "reference", "prompt", "class") if k in item}}
        try:
            row.update(evaluate_item(item, which, onset_seconds))
        except MissingExtraError:  # not this item's fault: every item would fail the same way
            raise
        except Exception as e:  # reported, never dropped
            row["error"] = f"{e.__class__.__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        rows.append(row)
        if progress:
            progress(i + 1, len(items))
    keys = [k for k in ("energy_mae", "av_align", *ONSET_KEYS, *DEFECT_KEYS) if any(k in r for r in rows)]
    mean = {k: _mean([r.get(k) for r in rows if k in r]) for k in keys}
    counts = {k: sum(1 for r in rows if k in r and r[k] is not None and not _is_nan(r[k])) for k in keys}
    failed = [r["index"] for r in rows if "error" in r]
    if failed:
        notes.append(f"{len(failed)} item(s) failed and are left out of the means: {failed}")
    for k in keys:
        if counts[k] < sum(1 for r in rows if k in r):
            notes.append(f"{k}: undefined for some items (no peaks in audio or video); left out of the mean")
    set_level = {}
    if embedders:
        from .embedders import set_metrics

        set_level, embed_notes = set_metrics(embedders, [r for r in rows if "error" not in r])
        notes.extend(embed_notes)
    else:
        notes.append("FD, FAD, KL, IS and CLAP score need embedder weights (--embedders); not computed")
    return {"manifest": str(manifest), "items": rows, "mean": mean, "count": counts, "set": set_level, "notes": notes}


def _is_nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def to_markdown(report: dict) -> str:
    values = {**report["mean"], **report.get("set", {})}
    names = {
        "energy_mae": "Energy MAE ↓",
        "av_align": "AV-Align ↑",
        "onset_acc": "Onset Acc ↑",
        "onset_detection_acc": "Onset det. Acc ↑",
        "onset_ap": "Onset AP ↑",
        "dropouts": "Dropout frames ↓",
        "clicks": "Click frames ↓",
    }
    header = [names.get(k, k) for k in values]
    cells = ["n/a" if v is None else f"{v:.4f}" for v in values.values()]
    n = len(report["items"]) - sum(1 for r in report["items"] if "error" in r)
    lines = [
        "| clips | " + " | ".join(header) + " |",
        "|---" * (len(header) + 1) + "|",
        f"| {n} | " + " | ".join(cells) + " |",
    ]
    if report["notes"]:
        lines += [""] + [f"* {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def _json_safe(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj


def write_report(report: dict, out: str | os.PathLike, markdown: str | os.PathLike | None = None) -> None:
    with files.atomic_path(out) as tmp, files.writing(out):
        tmp.write_text(json.dumps(_json_safe(report), indent=2))
    if markdown:
        with files.atomic_path(markdown) as tmp, files.writing(markdown):
            tmp.write_text(to_markdown(report))
