"""Layers: one video, several sounds, each with its own prompt, energy, gain and pan, mixed in stereo.

    Layer ─► its curve: phi on the whole picture | phi on a tracked region (rewas.tracking) | a flat level |
             a reference recording | a CSV; then its curve edits                          (pipeline.prepare)
    every layer's timeline ─► one sampling pass, their windows sharing the denoiser's batches
                                                                                     (pipeline.generate_many)
    stems ─► gain, pan (a region's follows its box) ─► stereo mix, exactly the sum of the panned stems (mix.py)

A `Soundtrack` (layers + sampler settings, every layer's seed filled in) is written as JSON beside the stems, and
`render(pipe, video, read_soundtrack(path))` gives the same audio again. `rewas generate --layer/--soundtrack`,
`rewas batch` ("layers" per item) and the studio use this module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import edits as edits_mod
from . import validate
from .errors import UserError, one_line
from .tracking import Region, Track, parse_box, track, track_many

FORMAT = "rewas-soundtrack"
SOURCES = ("region", "level", "energy_from", "energy_in")  # a layer has at most one; none: phi on the whole picture
FILE_KEYS = ("energy_from", "energy_in")  # layer keys that name files
SAMPLER_KEYS = ("steps", "guidance", "scheduler", "eta", "control_scale")
_LAYER_KEYS = ("name", "prompt", "negative_prompt", *SOURCES, "edits", "gain_db", "pan", "seed")


@dataclass(frozen=True)
class Layer:
    """One sound of a soundtrack. Its energy comes from at most one of `region` (phi on that object),
    `level` (a flat curve, nats: ambience), `energy_from` (a recording's loudness) and `energy_in` (a CSV of
    time_s,energy); with none, from phi on the whole picture, as a one-prompt soundtrack. `pan`: -1 (left) to 1
    (right); None centres it, or, for a region, follows the object across the picture."""

    prompt: str
    negative_prompt: str = ""
    region: Region | None = None
    level: float | None = None
    energy_from: str | None = None
    energy_in: str | None = None
    edits: tuple[edits_mod.Edit, ...] = ()
    gain_db: float = 0.0
    pan: float | None = None
    seed: int | None = None
    name: str = ""

    def __post_init__(self):
        what = f"layer {self.name!r}" if self.name else "layer"
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen)
        set_("prompt", validate.prompt(self.prompt, f"{what}: prompt"))
        set_("negative_prompt", validate.prompt(self.negative_prompt, f"{what}: negative_prompt", required=False))
        given = [k for k in SOURCES if getattr(self, k) is not None]
        if len(given) > 1:
            raise UserError(f"{what}: give at most one energy source, not {' and '.join(given)}")
        if self.region is not None and not isinstance(self.region, Region):
            set_("region", _region(self.region, what))
        if self.level is not None:
            set_("level", validate.number(self.level, f"{what}: level", *validate.ENERGY_RANGE))
        for key in FILE_KEYS:
            value = getattr(self, key)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise UserError(f"{what}: {key} must be a file path")
            if value is not None:
                set_(key, os.fspath(value))
        # a single edit, as the pipeline takes one: a string iterated was read letter by letter
        edits = self.edits if isinstance(self.edits, (str, edits_mod.Edit)) else list(self.edits)
        set_("edits", tuple(validate.edits(edits, f"{what}: edits")))
        set_("gain_db", _number(self.gain_db, f"{what}: gain_db"))
        if self.pan is not None:
            pan = _number(self.pan, f"{what}: pan")
            if not -1 <= pan <= 1:
                raise UserError(f"{what}: pan must be from -1 (left) to 1 (right), got {pan:g}")
            set_("pan", pan)
        set_("seed", validate.seed(self.seed, f"{what}: seed"))
        if not isinstance(self.name, str):
            raise UserError(f"{what}: name must be text")

    def to_dict(self) -> dict:
        out = {"name": self.name, "prompt": self.prompt}
        if self.negative_prompt:
            out["negative_prompt"] = self.negative_prompt
        if self.region is not None:
            out["region"] = {"box": list(self.region.box), "at": self.region.at}
        for key in ("level", "energy_from", "energy_in"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.edits:
            out["edits"] = [str(e) for e in self.edits]
        out.update(gain_db=self.gain_db, pan=self.pan, seed=self.seed)
        return out

    @classmethod
    def from_dict(cls, d: dict, where: str = "layer") -> Layer:
        if not isinstance(d, dict):
            raise UserError(f"{where}: must be a table of keys ({', '.join(_LAYER_KEYS)})")
        unknown = sorted(set(d) - set(_LAYER_KEYS))
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(_LAYER_KEYS)})")
        if "prompt" not in d:
            raise UserError(f"{where}: needs a prompt")
        kwargs = dict(d)
        if kwargs.get("edits") is not None:
            if not isinstance(kwargs["edits"], list):
                raise UserError(f'{where}: edits must be a list such as ["mute 1-2", "gain 3-4:+6dB"]')
            kwargs["edits"] = tuple(_edit(e, where) for e in kwargs["edits"])
        return cls(**{k: v for k, v in kwargs.items() if v is not None or k == "pan"})


def _number(value, what: str) -> float:
    return validate.number(value, what)  # numpy's numbers too, as the pipeline's arguments take them


def _region(value, what: str) -> Region:
    """A Region, or its dict form {"box": [l, t, r, b], "at": seconds}."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"box", "at"})
        if unknown or "box" not in value:
            raise UserError(f'{what}: a region is {{"box": [left, top, right, bottom], "at": seconds}}')
        return Region(value["box"], value.get("at", 0.0))
    if isinstance(value, (list, tuple)):
        return Region(value)
    raise UserError(f'{what}: region must be a box [left, top, right, bottom] or {{"box": ..., "at": ...}}')


def _edit(text, where: str) -> edits_mod.Edit:
    """One edit as `str(Edit)` writes it: "mute 1-2", "gain 3-4:+6dB", "scale 0.8", "smooth 0.2", "draw 0:-6,…"."""
    if isinstance(text, edits_mod.Edit):
        return text
    op, _, rest = str(text).strip().partition(" ")
    if op not in edits_mod.OPS:
        raise UserError(f"{where}: edit {text!r}: starts with one of {', '.join(edits_mod.OPS)}")
    return edits_mod.parse(op, "0-inf" if op == "mute" and rest.strip() == "all" else rest)


# ------------------------------------------------------------------------------------------ the --layer spelling

# --layer keys -> Layer fields; the curve edits keep their flags' names (the layer's own gain is `gain`)
_SPEC_KEYS = {
    "prompt": "prompt",
    "negative": "negative_prompt",
    "name": "name",
    "region": "region",
    "level": "level",
    "energy-from": "energy_from",
    "energy-in": "energy_in",
    "gain": "gain_db",
    "pan": "pan",
    "seed": "seed",
}
_SPEC_EDITS = {"mute": "mute", "curve-gain": "gain", "energy-scale": "scale", "smooth": "smooth", "draw": "draw"}
LAYER_FORM = "PROMPT[;key=value...]"
LAYER_HELP = (
    "a layer of a stereo soundtrack (repeatable): its prompt, then ;-separated keys: negative=TEXT, name=NAME, "
    "one energy source of region=LEFT,TOP,RIGHT,BOTTOM[@SECONDS] (fractions of the picture; a tracked object), "
    "level=NATS, energy-from=FILE, energy-in=CSV (default: the whole picture), gain=±DB, pan=-1..1 (a region's "
    "follows it), seed=N, and curve edits mute=, curve-gain=, energy-scale=, smooth=, draw= as for the flags; "
    "e.g. 'a dog barking;region=0.1,0.3,0.45,0.9;gain=-3'"
)


def parse_layer(spec: str) -> Layer:
    """The command line's `--layer` -> Layer; anything malformed is a one-line user error naming the key."""
    if not isinstance(spec, str):
        raise UserError(f"a layer spec is text, 'PROMPT;key=value;...' (got {type(spec).__name__})")
    parts = [p.strip() for p in spec.split(";")]
    fields: dict = {}
    edits: list = []
    for i, part in enumerate(parts):
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or (i == 0 and key not in _SPEC_KEYS and key not in _SPEC_EDITS):
            if i != 0:
                raise UserError(f"--layer {spec!r}: {part!r} is not key=value")
            fields["prompt"] = part
            continue
        value = value.strip()
        if key in _SPEC_EDITS:
            edits.append(edits_mod.parse(_SPEC_EDITS[key], value))
        elif key not in _SPEC_KEYS:
            known = ", ".join([*_SPEC_KEYS, *_SPEC_EDITS])
            raise UserError(f"--layer {spec!r}: unknown key {key!r} (known: {known})")
        elif _SPEC_KEYS[key] in fields:  # the last one winning quietly hid a typo
            raise UserError(f"--layer {spec!r}: {key} is given twice")
        else:
            fields[_SPEC_KEYS[key]] = _spec_value(key, value, spec)
    if not fields.get("prompt"):
        raise UserError(f"--layer {spec!r}: starts with the layer's prompt, e.g. 'rain on a roof;level=-5'")
    return Layer(**fields, edits=tuple(edits))


def _spec_value(key: str, value: str, spec: str):
    bad = UserError(f"--layer {spec!r}: {key}={value!r} is not {_SPEC_FORMS.get(key, 'valid')}")
    if key == "region":
        parsed = parse_box(value)
        if parsed is None:
            raise bad
        return Region(*parsed)
    if key in ("level", "gain", "pan"):
        try:
            return float(re.sub(r"\s*db\s*$", "", value, flags=re.IGNORECASE) if key == "gain" else value)
        except ValueError:
            raise bad from None
    if key == "seed":
        try:
            return int(value)
        except ValueError:
            raise bad from None
    return value


_SPEC_FORMS = {
    "region": "LEFT,TOP,RIGHT,BOTTOM[@SECONDS]",
    "level": "a number of nats, e.g. -5",
    "gain": "±DB, e.g. -3dB",
    "pan": "a number from -1 to 1",
    "seed": "a whole number",
}


# ------------------------------------------------------------------------------------------ the soundtrack file


@dataclass(frozen=True)
class Soundtrack:
    """Layers and the sampler settings they are sampled with (None: the model's)."""

    layers: tuple[Layer, ...]
    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    eta: float | None = None
    control_scale: float = 1.0
    model: str | None = None  # the model it was made with (informative: --model chooses)

    def __post_init__(self):
        layers = tuple(self.layers)
        if not layers:
            raise UserError("a soundtrack needs at least one layer")
        if not all(isinstance(x, Layer) for x in layers):
            raise UserError("layers must be rewas.soundtrack.Layer objects")
        object.__setattr__(self, "layers", layers)

    def to_dict(self) -> dict:
        sampler = {k: getattr(self, k) for k in SAMPLER_KEYS if getattr(self, k) is not None}
        return {
            "format": FORMAT,
            "version": 1,
            "model": self.model,
            "sampler": sampler,
            "layers": [layer.to_dict() for layer in self.layers],
        }

    def files_from(self, folder: str | os.PathLike) -> Soundtrack:
        """The same, with the layers' relative energy file paths taken as relative to `folder`."""
        layers = [
            dataclasses.replace(
                layer, **{k: os.path.join(folder, getattr(layer, k)) for k in FILE_KEYS if getattr(layer, k)}
            )
            for layer in self.layers
        ]
        return dataclasses.replace(self, layers=tuple(layers))

    @classmethod
    def from_dict(cls, d: dict, where: str = "soundtrack") -> Soundtrack:
        if not isinstance(d, dict) or d.get("format", FORMAT) != FORMAT:
            raise UserError(f"{where}: not a rewas soundtrack (format {FORMAT!r})")
        unknown = sorted(set(d) - {"format", "version", "model", "sampler", "layers"})
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} (known: model, sampler, layers)")
        if d.get("version", 1) != 1:
            raise UserError(f"{where}: version {d['version']!r}; this rewas reads version 1")
        sampler = {} if d.get("sampler") is None else d["sampler"]
        if not isinstance(sampler, dict) or set(sampler) - set(SAMPLER_KEYS):
            raise UserError(f"{where}: sampler takes {', '.join(SAMPLER_KEYS)}")
        layers = d.get("layers")
        if not isinstance(layers, list) or not layers:
            raise UserError(f"{where}: needs a list of layers, at least one")
        parsed = tuple(Layer.from_dict(x, f"{where}: layer {i + 1}") for i, x in enumerate(layers))
        return cls(parsed, model=d.get("model"), **sampler)


def read_soundtrack(path: str | os.PathLike) -> Soundtrack:
    """A soundtrack file, JSON or TOML (by its suffix). Relative energy file paths are relative to the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such soundtrack file")
    try:
        text = path.read_text()
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise UserError(f"{path}: not a readable soundtrack file ({one_line(e)})") from None
    return Soundtrack.from_dict(data, str(path)).files_from(path.resolve().parent)


def write_soundtrack(
    path: str | os.PathLike, soundtrack: Soundtrack, folder: str | os.PathLike | None = None, *, absolute: bool = False
) -> None:
    """The soundtrack as JSON at `path`; its layers' energy files relative to `folder` (default: the file's own),
    where the file will be read from, as `read_soundtrack` takes them: relative to the working directory, a file
    written elsewhere could not find them. Real paths, as `read_soundtrack` resolves the file's folder (`..` out of
    a link leads where the file system goes); absolute where no relative path leads there (another drive), or with
    `absolute` (a file that leaves its folder: the studio's download)."""
    folder = Path(folder if folder is not None else Path(path).parent).resolve()

    def relative(file: str) -> str:
        try:
            return str(Path(file).resolve()) if absolute else os.path.relpath(Path(file).resolve(), folder)
        except ValueError:
            return str(Path(file).resolve())

    layers = [
        dataclasses.replace(layer, **{k: relative(getattr(layer, k)) for k in FILE_KEYS if getattr(layer, k)})
        for layer in soundtrack.layers
    ]
    data = dataclasses.replace(soundtrack, layers=tuple(layers)).to_dict()
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


STEM_FILE = re.compile(r"\d{2,}_[a-z0-9_]+\.(wav|csv)")  # what `write_stems` names a layer's files
# what a file browser leaves in a folder it showed: no one's work, and gone with the folder
BROWSER_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}


def _entries(folder: Path) -> tuple[list[str], bool]:
    """What in `folder` `write_stems` did not write (folders, links, other names), by name; and whether it holds
    anything but a file browser's files."""
    others, any_else = [], False
    for e in folder.iterdir():
        plain = e.is_file() and not e.is_symlink()
        if plain and e.name in BROWSER_FILES:
            continue
        any_else = True
        if not (plain and (e.name == "soundtrack.json" or STEM_FILE.fullmatch(e.name))):
            others.append(e.name)
    return sorted(others), any_else


def is_stems_folder(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds what `write_stems` writes and nothing else (an earlier run's stems, which a new run
    replaces whole): its soundtrack.json and files named as stems and curves, no folders, no links."""
    return (Path(folder) / "soundtrack.json").is_file() and not _entries(Path(folder))[0]


def check_stems_folder(folder: str | os.PathLike, named: str | None = None) -> None:
    """A stems folder may be new, empty (but for a file browser's files), or an earlier run's (`is_stems_folder`):
    anything else would be lost when the folder is replaced, and is refused. `named`: how the error names it."""
    folder = Path(folder)
    named = named or f"stems folder {folder}"
    if folder.is_symlink():
        raise UserError(f"{named}: is a link; give the folder's own path")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{named}: exists and is not a folder")
    if not folder.is_dir():
        return
    others, any_else = _entries(folder)
    if any_else and (others or not (folder / "soundtrack.json").is_file()):
        what = f" ({', '.join(others[:3])}{', …' if len(others) > 3 else ''})" if others else ""
        raise UserError(f"{named}: holds files that are not an earlier run's stems{what}; give a new or empty one")


def stem_names(soundtrack: Soundtrack, numbers: list[int] | None = None) -> list[str]:
    """File names (no suffix) of the layers' stems, in order: 01_rain, 02_a_dog_barking, … (safe on any system);
    `numbers`: each layer's own number instead of its place (the studio's, where muted layers are left out)."""
    names = []
    for i, layer in enumerate(soundtrack.layers):
        slug = re.sub(r"[^a-z0-9]+", "_", (layer.name or layer.prompt).lower()).strip("_")[:40] or "layer"
        names.append(f"{i + 1 if numbers is None else numbers[i]:02d}_{slug}")
    return names


# ------------------------------------------------------------------------------------------ rendering


@dataclass
class SoundtrackResult:
    mix: np.ndarray  # (N, 2) float32 stereo, exactly the sum of `stems`
    stems: list[np.ndarray]  # (N, 2) float32 per layer: its sound as it is in the mix (gain, pan, master gain)
    curves: list[np.ndarray]  # (frames,) per layer: the energy curve that steered it, one value per 10 ms
    pans: list[np.ndarray]  # (N,) per layer: its pan per sample
    tracks: list[Track | None]  # per layer: its region followed through the clip
    soundtrack: Soundtrack  # what was rendered, every layer's seed filled in: render it again for the same audio
    sample_rate: int
    duration: float
    master_db: float  # the gain the whole mix took to stay under full scale (0: none)
    sounds: list[np.ndarray]  # (N,) float32 per layer: its sound as the model made it, before gain and pan
    timings: dict[str, float] = field(default_factory=dict)


def render(
    pipe,
    video: str | os.PathLike,
    soundtrack: Soundtrack | Sequence[Layer],
    *,
    seed: int | None = None,
    batch_size: int | None = None,
    callback: Callable[[int, int], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> SoundtrackResult:
    """Every layer of `soundtrack` over `video`, sampled together, mixed in stereo. A layer without its own seed
    gets `seed` + its index (`seed`: a fresh one when None). `progress(message)` hears what is being done: the
    regions' tracking, phi on the video, each other layer's curve, then the sampling."""
    import time

    import torch

    from .frames import probe
    from .mix import mix, pan_per_sample, place
    from .pipeline import check_duration

    t_start = time.perf_counter()
    if not isinstance(soundtrack, Soundtrack):
        soundtrack = Soundtrack(tuple(soundtrack))
    if video is None:
        raise UserError("a soundtrack is made for a video: give one")
    seed = validate.seed(seed)
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    layers = [
        layer if layer.seed is not None else dataclasses.replace(layer, seed=seed + i)
        for i, layer in enumerate(soundtrack.layers)
    ]
    info = check_duration(probe(video))
    say = progress or (lambda message: None)
    # the layers whose curve phi makes from the video share one decoding of it: their regions are tracked in one
    # pass, then phi sees each one's view (the whole picture, or its region's squares) in another (docs/layers.md)
    heard = [i for i, layer in enumerate(layers) if _reads_video(layer)]
    regions = [i for i in heard if layers[i].region is not None]
    tracks: list[Track | None] = [None] * len(layers)
    timelines: list = [None] * len(layers)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with torch.no_grad():
        if regions:
            say(f"tracking {len(regions)} region{'s' * (len(regions) > 1)}")
            found = track_many(video, [layers[i].region for i in regions], pipe.config.video.fps, info)
            for i, one in zip(regions, found):
                tracks[i] = one
        timings["tracking"] = time.perf_counter() - t0
        if heard:
            say(f"phi on the video for {len(heard)} layer{'s' * (len(heard) > 1)}")
            squares = [tracks[i].squares() if tracks[i] is not None else None for i in heard]
            prepared = pipe.prepare_many(video, [layers[i].prompt for i in heard], squares, info=info)
            for i, timeline in zip(heard, prepared):
                timelines[i] = timeline
        for i, layer in enumerate(layers):
            if timelines[i] is None:
                say(f"layer {i + 1}/{len(layers)}: {layer.name or layer.prompt}")
                timelines[i] = layer_timeline(pipe, video, layer, info)[0]
    timelines = [t.edited(layer.edits, pipe.config.audio) if layer.edits else t for t, layer in zip(timelines, layers)]
    timings["curves"] = time.perf_counter() - t0 - timings["tracking"]
    say(f"sampling {len(layers)} layer{'s' * (len(layers) > 1)} together")
    results = pipe.generate_many(
        timelines,
        [layer.prompt for layer in layers],
        [layer.seed for layer in layers],
        negative_prompts=[layer.negative_prompt for layer in layers],
        steps=soundtrack.steps,
        guidance=soundtrack.guidance,
        scheduler=soundtrack.scheduler,
        eta=soundtrack.eta,
        control_scale=soundtrack.control_scale,
        batch_size=batch_size,
        callback=callback,
    )
    timings["sampling"] = results[0].timings.get("diffusion", 0.0)  # every layer's windows together
    timings["decoding"] = sum(r.timings.get("decode", 0.0) for r in results)  # each layer's share
    rate = pipe.config.audio.sample_rate
    samples = len(results[0].waveform)
    fps = pipe.config.video.fps
    pans = [pan_per_sample(_pan(layer, found), samples, rate, fps) for layer, found in zip(layers, tracks)]
    placed = [place(r.waveform, layer.gain_db, p) for r, layer, p in zip(results, layers, pans)]
    mixed, stems, master_db = mix(placed)
    settings = pipe.sampler_settings(*(getattr(soundtrack, k) for k in SAMPLER_KEYS), batch_size, None, None)
    done = dataclasses.replace(soundtrack, layers=tuple(layers), **{k: settings[k] for k in SAMPLER_KEYS})
    timings["total"] = time.perf_counter() - t_start
    return SoundtrackResult(
        mixed, stems, [r.energy for r in results], pans, tracks, done, rate, info.duration, master_db,
        [r.waveform for r in results], timings,
    )  # fmt: skip


def write_stems(folder: str | os.PathLike, result: SoundtrackResult, audio) -> list[str]:
    """A folder of a rendered soundtrack, written whole or not at all (replacing an earlier one): each layer's stem
    NN_NAME.wav (stereo, as in the mix) and curve NN_NAME.csv, and soundtrack.json. -> the files' names."""
    from .files import atomic_folder

    check_stems_folder(folder)  # never a folder of the user's own files replaced
    with atomic_folder(folder) as tmp:
        return write_stems_into(tmp, result, audio, folder)


def write_stems_into(tmp: Path, result: SoundtrackResult, audio, folder: str | os.PathLike) -> list[str]:
    """`write_stems`' files, into the empty folder `tmp` that will become `folder` (the soundtrack file names its
    energy files relative to that). -> the files' names."""
    from .audio import write_wav
    from .energy import write_csv

    names = []
    for name, stem, curve in zip(stem_names(result.soundtrack), result.stems, result.curves):
        write_wav(tmp / f"{name}.wav", stem, result.sample_rate)
        write_csv(tmp / f"{name}.csv", curve, audio)
        names += [f"{name}.wav", f"{name}.csv"]
    write_soundtrack(tmp / "soundtrack.json", result.soundtrack, folder)
    return [*names, "soundtrack.json"]


def layer_timeline(pipe, video, layer: Layer, info=None):
    """A layer's clip before its curve edits: -> (pipeline.Timeline, its region's Track or None). The curve is phi's
    on the whole picture or on the tracked region, a flat level, a recording's energy or a CSV's."""
    from .energy import read_csv, reference_curve
    from .frames import probe

    info = info or probe(video)
    region, energy, found = None, None, None
    if layer.region is not None:
        found = track(video, layer.region, pipe.config.video.fps, info)
        region = found.squares()
    elif layer.level is not None:
        energy = (np.array([0.0, info.duration]), np.array([layer.level, layer.level]))
    elif layer.energy_from is not None:
        energy = reference_curve(layer.energy_from, info.duration, pipe.config.audio)
    elif layer.energy_in is not None:
        energy = read_csv(layer.energy_in)
    return pipe.prepare(video, energy=energy, prompt=layer.prompt, region=region), found


def _reads_video(layer: Layer) -> bool:
    """Whether phi makes the layer's curve from the video (the whole picture or its region)."""
    return all(source is None for source in (layer.level, layer.energy_from, layer.energy_in))


def _pan(layer: Layer, found: Track | None) -> float | np.ndarray:
    """The layer's own pan; else a region's follows its object (one value per frame); else the centre."""
    if layer.pan is not None:
        return layer.pan
    return found.pan() if found is not None else 0.0
