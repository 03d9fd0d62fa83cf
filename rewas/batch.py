"""`rewas batch`: many clips through one loaded model, resumable after any crash, on one process or many ranks.

Input: a JSONL or CSV with `video` and `prompt` per item and optional overrides (`seed`, `energy_in`, `steps`,
`guidance`, `name`, `reference`), or a folder of videos with one prompt for all or a NAME.txt beside each video.
An item may instead be a soundtrack of layers (rewas/soundtrack.py): `layers`, a list of layers as a soundtrack
file writes them (JSONL), or `soundtrack`, the path of such a file; it is sampled on its own and writes
NAME.stems/ (each layer's stem, curve and the soundtrack file) beside its stereo NAME.mp4.

Output: OUTDIR/NAME.mp4 (+ NAME.wav, NAME.csv on request), each written to a temporary name and renamed, and one
JSON line per finished item in OUTDIR/results.jsonl (results.rank{R}.jsonl per rank under several ranks, merged
into results.jsonl when all are done). An item counts as done only once its line is in a results file and its
files exist, so after a crash or kill -9 the same command finishes the rest, each item exactly once.

Seeds: an item's own `seed`, else one derived from the run's seed and the item's name (not from its position or
its rank), so the audio is the same whatever the order, the sharding or the number of ranks.
"""

from __future__ import annotations

import csv
import json
import os
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import validate
from .errors import UserError, is_environment, one_line
from .files import TEMP_PREFIX, atomic_path, check_input_file, read_jsonl, remove_stale_temps

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".ts", ".mts", ".mpg", ".mpeg", ".flv", ".wmv")
FIELDS = {
    "video": str, "prompt": str, "negative_prompt": str, "name": str, "seed": int, "energy_in": str, "steps": int,
    "guidance": float, "soundtrack": str,
}  # fmt: skip
LAYERED = ("layers", "soundtrack")  # an item of layers has one of these instead of a prompt
PASSED_ON = ("reference", "class")  # kept in the results, so that they are a `rewas evaluate` manifest


@dataclass
class Item:
    name: str
    video: str
    prompt: str
    negative_prompt: str = ""
    seed: int | None = None
    energy_in: str | None = None
    steps: int | None = None
    guidance: float | None = None
    extra: dict = field(default_factory=dict)  # PASSED_ON keys
    soundtrack: object = None  # rewas.soundtrack.Soundtrack: an item of layers (its prompt is "")


# --------------------------------------------------------------------------------------------- reading items


def read_items(source: str | os.PathLike, prompt: str | None = None) -> list[Item]:
    """A JSONL / CSV manifest or a folder of videos -> items with unique names. Malformed input is a one-line user
    error naming the line; a missing video is not (it fails its item only)."""
    source = os.fspath(source)
    if os.path.isdir(source):
        items = _folder_items(source, prompt)
    else:
        check_input_file(source, "manifest")
        rows = _csv_rows(source) if source.lower().endswith(".csv") else _jsonl_rows(source)
        if not rows:
            raise UserError(f"{source}: the manifest is empty")
        base = os.path.dirname(os.path.abspath(source))
        items = [_item(row, where, base, prompt) for where, row in rows]
    names: dict[str, list[str]] = {}
    for item in items:  # X and x are one file where names are not told apart by case (macOS, Windows)
        names.setdefault(item.name.casefold(), []).append(item.name)
    repeated = sorted(" and ".join(dict.fromkeys(n)) for n in names.values() if len(n) > 1)
    if repeated:
        raise UserError(f"{source}: two items would write the same output: {', '.join(repeated[:3])} (give a 'name')")
    return items


def check_outputs(source: str | os.PathLike, items: list[Item], outdir: Path, *, wav: bool, energy: bool) -> None:
    """Before any work, as `rewas generate` does: no item's output may be one of its inputs (its video, its curve,
    its reference recording, its layers' files), nor a stems folder hold one, and a folder of videos is not its own
    output folder (the outputs would be read as videos on the next run)."""
    from .soundtrack import check_stems_folder

    if os.path.isdir(source) and outdir.resolve() == Path(source).resolve():
        raise UserError(f"-o {outdir}: is the folder of the videos; write the outputs to another folder")
    for item in items:
        inputs = [item.video, item.energy_in, item.extra.get("reference")]
        if item.soundtrack is not None:
            inputs += [p for layer in item.soundtrack.layers for p in (layer.energy_from, layer.energy_in)]
        inputs = [Path(str(p)) for p in inputs if p and os.path.exists(str(p))]
        layered = item.soundtrack is not None  # (its curves are in its stems folder: no NAME.csv)
        written = ((".mp4", True), (".wav", wav), (".csv", energy and not layered))
        outputs = [outdir / f"{item.name}{suffix}" for suffix, on in written if on]
        for out in (o for o in outputs if o.exists()):
            hit = next((p for p in inputs if os.path.samefile(out, p)), None)
            if hit is not None:
                raise UserError(f"item {item.name}: its output {out} would overwrite its input {hit}")
        if layered:
            stems = outdir / f"{item.name}.stems"
            hit = next((p for p in inputs if p.resolve().is_relative_to(stems.resolve())), None)
            if hit is not None:
                raise UserError(f"item {item.name}: its stems folder {stems.name} would replace its input {hit}")
            try:  # a folder of the user's own files, found now rather than after the item is rendered
                check_stems_folder(stems)
            except UserError as e:
                raise UserError(f"item {item.name}: {e}") from None


def _jsonl_rows(path: str) -> list[tuple[str, dict]]:
    rows = []
    for n, row in read_jsonl(path):
        if not isinstance(row, dict):
            raise UserError(f"{path}:{n}: each line must be a JSON object")
        rows.append((f"{path}:{n}", row))
    return rows


def _csv_rows(path: str) -> list[tuple[str, dict]]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            rows = [(f"{path}:{n}", {k: v for k, v in row.items() if v not in (None, "")}) for n, row in
                    enumerate(reader, start=2)]  # fmt: skip
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: not a readable CSV ({e})") from None
    return rows


def _item(row: dict, where: str, base: str, prompt: str | None) -> Item:
    unknown = sorted(set(row) - set(FIELDS) - set(PASSED_ON) - {"layers"})
    if unknown:
        known = ", ".join([*FIELDS, "layers", *PASSED_ON])
        raise UserError(f"{where}: unknown field {unknown[0]!r} (known: {known})")
    values = {key: _convert(row[key], kind, f"{where}: {key!r}") for key, kind in FIELDS.items() if key in row}
    if "video" not in values:
        raise UserError(f"{where}: each item needs a 'video'")
    for key in ("video", "energy_in", "soundtrack"):
        if key in values and not os.path.isabs(values[key]):
            values[key] = os.path.join(base, values[key])
    layered = [key for key in LAYERED if key in row]
    if layered:
        return _layered_item(row, values, layered, where, base)
    if "prompt" not in values and prompt is None:
        raise UserError(f"{where}: each item needs a 'prompt' (or give --prompt for all)")
    extra = {k: row[k] for k in PASSED_ON if k in row}
    if "reference" in extra and not os.path.isabs(str(extra["reference"])):
        extra["reference"] = os.path.join(base, str(extra["reference"]))
    values.setdefault("prompt", prompt)
    _check_overrides(values, where)
    return Item(**values, extra=extra)


def _check_overrides(values: dict, where: str) -> None:
    """An item's seed, steps and guidance by the rules of the API and the CLI; its name (the file stem of its
    video unless given) one an output can have."""
    for key, check in (("seed", validate.seed), ("steps", validate.whole), ("guidance", validate.guidance)):
        if key in values:
            check(values[key], f"{where}: {key!r}")
    values.setdefault("name", Path(values["video"]).stem)
    _check_name(values["name"], where)


def _layered_item(row: dict, values: dict, layered: list[str], where: str, base: str) -> Item:
    """An item of layers: its soundtrack read now (a malformed one fails the manifest, before any work)."""
    from .soundtrack import Soundtrack, read_soundtrack

    clash = sorted(set(values) & {"prompt", "negative_prompt", "energy_in"}) + layered[1:]
    if clash:
        raise UserError(f"{where}: an item of {layered[0]} has no {clash[0]!r} (each layer has its own)")
    if "soundtrack" in values:
        soundtrack = read_soundtrack(values.pop("soundtrack"))
    else:
        soundtrack = Soundtrack.from_dict({"layers": row["layers"]}, where).files_from(base)
    _check_overrides(values, where)
    return Item(**values, prompt="", extra={k: row[k] for k in PASSED_ON if k in row}, soundtrack=soundtrack)


def _convert(value, kind: type, what: str):
    """A JSON or CSV value -> str / int / float; 3.0 is an int, 3.5 and "three" are not."""
    try:
        if kind is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        number = float(value)
        if kind is int:
            if number != int(number) or isinstance(value, bool):
                raise ValueError
            return int(number)
        return number
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{what} must be {'text' if kind is str else f'a {kind.__name__}'}, not {value!r}") from None


def _folder_items(folder: str, prompt: str | None) -> list[Item]:
    videos = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise UserError(f"{folder}: no videos in this folder ({', '.join(VIDEO_SUFFIXES)})")
    items = []
    for video in videos:
        sidecar = video.with_suffix(".txt")
        text = sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else prompt
        if text is None:
            raise UserError(f"{video}: no prompt (give --prompt, or write it in {sidecar.name})")
        items.append(Item(name=video.stem, video=str(video), prompt=text))
    return items


def _check_name(name: str, where: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith(TEMP_PREFIX):
        raise UserError(f"{where}: {name!r} cannot be an output name")


def item_seed(base: int, name: str) -> int:
    """The seed of an item without one: the run's seed mixed with the item's name (stable across runs and ranks)."""
    return (base + zlib.crc32(name.encode("utf-8"))) % (2**31 - 1)


# --------------------------------------------------------------------------------------------- results files


def results_files(outdir: Path) -> list[Path]:
    return sorted(outdir.glob("results*.jsonl"))


def read_results(outdir: Path) -> dict[str, dict]:
    """name -> the last complete line recorded for it in any results file (a line torn by a crash is ignored)."""
    latest: dict[str, dict] = {}
    for path in results_files(outdir):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("name"), str):
                latest[row["name"]] = row
    return latest


def is_done(row: dict | None, outdir: Path) -> bool:
    """Recorded as ok, and every file it wrote is still there (paths in a row are relative to the results file)."""
    return bool(row) and row.get("status") == "ok" and all((outdir / p).is_file() for p in row.get("outputs", []))


class ResultsWriter:
    """Appends one JSON line per item and makes it durable (fsync) before the next item starts. A torn last line
    left by a crash is cut off first, so the file stays valid JSONL."""

    def __init__(self, path: Path):
        self.path = path
        if path.exists():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                with open(path, "r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)

    def write(self, row: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())


def merge_results(outdir: Path) -> Path:
    """Every results file -> results.jsonl, one line per item (its latest), in name order; the rank files go."""
    rows = read_results(outdir)
    final = outdir / "results.jsonl"
    with atomic_path(final) as tmp:
        tmp.write_text("".join(json.dumps(rows[n]) + "\n" for n in sorted(rows)), encoding="utf-8")
    for path in results_files(outdir):
        if path != final:
            path.unlink()
    return final


# --------------------------------------------------------------------------------------------- running


@dataclass
class Options:
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    wav: bool = False
    energy: bool = False
    batch_size: int | None = None


def shard(items: list[Item], rank: int, world: int) -> list[Item]:
    """The items of one rank: every world-th, by position in the input (the same split on every rank)."""
    return items[rank::world]


def todo(items: list[Item], outdir: Path, *, rank: int = 0, world: int = 1, overwrite: bool = False) -> list[Item]:
    """This rank's items that are not done (all of them with `overwrite`)."""
    done = {} if overwrite or not outdir.is_dir() else read_results(outdir)
    return [it for it in shard(items, rank, world) if not is_done(done.get(it.name), outdir)]


def run(
    pipe,
    items: list[Item],
    outdir: Path,
    options: Options,
    *,
    rank: int = 0,
    world: int = 1,
    progress: Callable[[Item, dict], None] | None = None,
    prefetch: bool = False,
    group: int = 1,
) -> list[dict]:
    """Generate `items` (this rank's `todo`), recording each in this rank's results file; -> the rows recorded.

    Up to `group` consecutive items with the same settings are sampled together (`ReWaSPipeline.generate_many`:
    their windows share the denoiser's batches). With `prefetch`, a worker thread reads the next group's videos
    and runs phi on them while the current group is sampled; it pays when sampling runs on a GPU, while on a
    2-core CPU the thread takes cores from sampling (20 clips: 28 items/min with it, 39 without). The audio is
    the same either way."""
    outdir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(outdir)  # the partial outputs of a killed run
    writer = ResultsWriter(outdir / ("results.jsonl" if world == 1 else f"results.rank{rank}.jsonl"))
    groups = _groups(items, max(1, group), options)
    rows = []
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewas-prepare")

    def submit(members: list[Item]) -> list[Future | None]:
        return [pool.submit(prepare_item, pipe, it) if prefetch else None for it in members]

    try:
        upcoming = submit(groups[0]) if groups else []
        for g, members in enumerate(groups):
            current, upcoming = upcoming, (submit(groups[g + 1]) if g + 1 < len(groups) else [])
            for item, row in generate_group(pipe, members, current, outdir, options):
                writer.write(row)
                rows.append(row)
                if progress is not None:
                    progress(item, row)
    except BaseException:  # Ctrl+C, a fault: what is queued is dropped, not prepared first (the item in hand ends)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    remove_stale_temps(outdir)  # an ffmpeg orphaned by a killed run may have been writing at the start
    return rows


def _groups(items: list[Item], size: int, options: Options) -> list[list[Item]]:
    """Consecutive items, at most `size` a group, a new group wherever the sampler settings change."""
    groups: list[list[Item]] = []
    for item in items:
        key = _settings(item, options)
        alone = item.soundtrack is not None or groups and groups[-1][0].soundtrack is not None
        if groups and len(groups[-1]) < size and _settings(groups[-1][0], options) == key and not alone:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def _settings(item: Item, options: Options) -> tuple:
    return (
        item.steps if item.steps is not None else options.steps,
        item.guidance if item.guidance is not None else options.guidance,
    )


def prepare_item(pipe, item: Item):
    """Everything of an item that comes before sampling: its checks, the video's timeline and phi's curve.
    -> (VideoInfo, Timeline); raises what the item's failure will say."""
    from .energy import read_csv
    from .frames import probe
    from .pipeline import check_duration

    info = check_duration(probe(check_input_file(item.video, "video")))
    if item.soundtrack is not None:  # its layers' curves are made when it is rendered
        return info, None
    validate.prompt(item.prompt)
    # a CSV's times are the video's seconds, as in `generate --energy-in`: not stretched, held past its ends
    energy = read_csv(item.energy_in) if item.energy_in else None
    return info, pipe.prepare(item.video, energy=energy, prompt=item.prompt)


def manifest_path(path: str, folder: Path) -> str:
    """`path` (absolute, or relative to the working directory) as a manifest in `folder` names it: relative to
    the folder, so that the folder can move with its inputs and be read from any working directory; absolute where
    no relative path leads there (another drive)."""
    try:  # real paths: `..` out of a folder that is a link leads where the file system goes, not back
        return os.path.relpath(os.path.realpath(path), os.path.realpath(folder))
    except ValueError:
        return os.path.abspath(path)


def _failed(row: dict, e: Exception) -> dict:
    kind = "" if isinstance(e, UserError) or is_environment(e) else f"internal error: {e.__class__.__name__}: "
    row.update(status="failed", error=kind + one_line(e))
    return row


def generate_group(pipe, items: list[Item], prepared: list, outdir: Path, options: Options) -> list[tuple[Item, dict]]:
    """Items with the same settings, end to end and sampled together (from `prepared`, the futures of their
    `prepare_item`, where given); -> (item, row) in order, each failure its row's one-line error."""
    from .audio import write_wav
    from .energy import write_csv
    from .mux import mux

    start = time.perf_counter()
    rows, ready = {}, []
    for item, future in zip(items, prepared or [None] * len(items)):
        seed = item.seed if item.seed is not None else item_seed(options.seed, item.name)
        row = {"name": item.name, "video": item.video, "prompt": item.prompt, "seed": seed, **item.extra}
        if item.soundtrack is not None:
            del row["prompt"]
            row["layers"] = len(item.soundtrack.layers)
        for key in ("video", "reference"):  # as every manifest's paths: relative to the results file's folder
            if isinstance(row.get(key), str):
                row[key] = manifest_path(row[key], outdir)
        rows[item.name] = row
        if item.negative_prompt:
            rows[item.name]["negative_prompt"] = item.negative_prompt
        try:
            ready.append((item, *(future.result() if future is not None else prepare_item(pipe, item))))
        except KeyboardInterrupt:
            raise
        except Exception as e:
            _failed(rows[item.name], e)
    results = []
    if ready and ready[0][0].soundtrack is not None:  # an item of layers (always alone in its group)
        item, info, _ = ready[0]
        _render_layers(pipe, item, info, rows[item.name], outdir, options)
        ready = []
    if ready:
        steps, guidance = _settings(ready[0][0], options)
        try:
            results = pipe.generate_many(
                [timeline for _, _, timeline in ready],
                [item.prompt for item, _, _ in ready],
                [rows[item.name]["seed"] for item, _, _ in ready],
                steps=steps,
                guidance=guidance,
                batch_size=options.batch_size,
                negative_prompts=[item.negative_prompt for item, _, _ in ready],
            )
        except KeyboardInterrupt:
            raise
        except Exception as e:
            for item, _, _ in ready:
                _failed(rows[item.name], e)
    for (item, info, _), result in zip(ready, results):
        row = rows[item.name]
        try:
            outputs = {"output": outdir / f"{item.name}.mp4"}
            if options.wav:
                outputs["wav"] = outdir / f"{item.name}.wav"
            if options.energy:
                outputs["energy"] = outdir / f"{item.name}.csv"
            if "wav" in outputs:
                with atomic_path(outputs["wav"]) as tmp:
                    write_wav(tmp, result.waveform, result.sample_rate)
            if "energy" in outputs:
                with atomic_path(outputs["energy"]) as tmp:
                    write_csv(tmp, result.energy, pipe.config.audio)
            mux(item.video, result.waveform, result.sample_rate, outputs["output"], info)  # renamed into place
            _done(row, outputs, [], result)
        except KeyboardInterrupt:
            raise
        except Exception as e:
            _failed(row, e)
    seconds = round(time.perf_counter() - start, 3)
    for row in rows.values():
        row.update(seconds=seconds, group=len(items))  # the time of the whole group
    return [(item, rows[item.name]) for item in items]


def _done(row: dict, outputs: dict[str, Path], more: list[str], result) -> None:
    """An item's row once its files are in place: their names relative to results.jsonl, as a manifest's paths
    are; `audio` is what `rewas evaluate` reads."""
    names = {k: v.name for k, v in outputs.items()}
    row.update(names)
    row.update(
        status="ok",
        audio=names.get("wav", names["output"]),
        outputs=[*names.values(), *more],
        duration=round(result.duration, 3),
        timings={k: round(v, 3) for k, v in result.timings.items()},
    )


def _render_layers(pipe, item: Item, info, row: dict, outdir: Path, options: Options) -> None:
    """An item of layers: NAME.mp4 (the stereo mix), NAME.wav on request, NAME.stems/ (each layer's stem and curve,
    and the soundtrack file that renders it again); its row records them, or its one-line error."""
    import dataclasses

    from .audio import write_wav
    from .mux import mux
    from .soundtrack import render, write_stems

    try:
        steps, guidance = _settings(item, options)
        soundtrack = item.soundtrack
        overrides = {k: v for k, v in (("steps", steps), ("guidance", guidance)) if v is not None}
        soundtrack = dataclasses.replace(soundtrack, **overrides)
        result = render(pipe, item.video, soundtrack, seed=row["seed"], batch_size=options.batch_size)
        outputs = {"output": outdir / f"{item.name}.mp4"}
        if options.wav:
            outputs["wav"] = outdir / f"{item.name}.wav"
            with atomic_path(outputs["wav"]) as tmp:
                write_wav(tmp, result.mix, result.sample_rate)
        stems = outdir / f"{item.name}.stems"
        files = write_stems(stems, result, pipe.config.audio)
        mux(item.video, result.mix, result.sample_rate, outputs["output"], info)
        row["stems"] = stems.name
        _done(row, outputs, [f"{stems.name}/{name}" for name in files], result)
    except KeyboardInterrupt:
        raise
    except Exception as e:
        _failed(row, e)


def summary(items: list[Item], outdir: Path) -> dict:
    """Counts over every item of the input, from the results files: ok, failed, not yet done."""
    done = read_results(outdir)
    counts = {"ok": 0, "failed": 0, "pending": 0}
    for item in items:
        row = done.get(item.name)
        counts["ok" if is_done(row, outdir) else "failed" if row and row.get("status") == "failed" else "pending"] += 1
    return counts
