"""The studio: the page of `rewas ui`. A video in, its energy curve drawn beside the player for a person to edit,
takes generated and kept for comparison.

`Studio` holds what the page does (one model in memory, the session's clip, its curve and edits, its takes) and
knows nothing of gradio; `build_app` lays the page out over it. The curve edits are `rewas.edits`, the same as the
command line's flags.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import edits as edits_mod
from . import validate
from .config import AudioConfig
from .edits import Edit
from .errors import UserError, one_line

ASSETS = Path(__file__).parent / "assets" / "studio"
MAX_TAKES = 20  # per session; the oldest take's files go when a new one comes
VIDEO_SOURCE = "the video (φ)"  # where the curve comes from, as the page says it
SESSION_IDLE_S = 24 * 3600  # a session unused this long is forgotten, with its files
MAX_POINTS = 1500  # curve values sent to the page (a 3-minute clip has 18,000)
PICK_A_LAYER = "Pick a layer first: its number, beside the layers table."  # a layer's action, and none is picked
PICTURE_SHORT = 360  # the picture a region is drawn on: its short side, in pixels (small clips are enlarged)


class JobTooLong(UserError):
    pass


def _box_text(box) -> str:
    return ",".join(f"{v:.2f}" for v in box)


def _box_label(region) -> str:
    return _box_text(region.box) + (f" at {region.at:g} s" if region.at else "")


def _short(text: str, most: int = 60) -> str:
    """A prompt as the page's status line and tables show it: a long one cut, so that it does not swamp them."""
    text = " ".join(str(text).split())
    return text if len(text) <= most else text[: most - 1].rstrip() + "…"


def _newest(kept: list) -> list:
    """A session's takes (or mixes) with a new one: the newest MAX_TAKES; the older ones' files go."""
    for old in kept[:-MAX_TAKES]:
        old.delete()
    return kept[-MAX_TAKES:]


@dataclass
class Take:
    number: int
    prompt: str
    negative_prompt: str
    seed: int
    steps: int | None
    guidance: float | None
    model: str
    edits: list[Edit]
    source: str  # where the curve came from
    video: str  # the muxed result
    wav: str
    csv: str
    seconds: float
    heard: np.ndarray | None = None  # the take's own energy per mel frame, drawn over the curve it was given

    def row(self) -> list:
        edits = "; ".join(edits_mod.label(e) for e in self.edits) or "none"
        prompts = _short(self.prompt), _short(self.negative_prompt)
        return [self.number, *prompts, self.seed, edits, self.source, f"{self.seconds:.1f} s"]

    def delete(self) -> None:
        for path in (self.video, self.wav, self.csv):
            Path(path).unlink(missing_ok=True)


_LAYER_KEYS = itertools.count(1)  # MixLayer.key


@dataclass
class MixLayer:
    """A layer of the session's soundtrack, and how the mix hears it."""

    layer: object  # soundtrack.Layer
    source: str  # where its curve comes from, as the page says it
    mute: bool = False
    solo: bool = False
    heard: np.ndarray | None = None  # its own energy per mel frame in the last mix it was heard in
    heard_in: int | None = None  # that mix's number
    # the same layer whatever is added or removed around it (a mix that ends after a removal hands each sound to
    # the layer it was of), kept through mute, solo and updates
    key: int = field(default_factory=_LAYER_KEYS.__next__)

    def row(self, number: int, any_solo: bool) -> list:
        layer = self.layer
        edits = "; ".join(edits_mod.label(e) for e in layer.edits) or "none"
        pan = "follows" if layer.pan is None and layer.region is not None else f"{layer.pan or 0:+.2f}"
        if self.solo:
            heard = "solo"
        elif self.mute:
            heard = "muted"
        else:
            heard = "no (solo elsewhere)" if any_solo else "yes"
        return [number, heard, _short(layer.prompt), self.source, edits, f"{layer.gain_db:+.1f} dB", pan]


def heard_layers(layers: list[MixLayer]) -> list[int]:
    """The indices of the layers a mix hears: the soloed ones if any, else all that are not muted."""
    return [i for i, m in enumerate(layers) if m.solo] or [i for i, m in enumerate(layers) if not m.mute]


FIXED_SOURCE = " (stays put)"  # a region's source, where nothing in its box stands out


@dataclass
class Mix:
    number: int
    video: str  # the stereo mix, muxed
    files: list[str]  # the mix's WAV, each stem's WAV and curve's CSV, the soundtrack file
    seconds: float
    layers: int  # heard in it

    def delete(self) -> None:
        for path in (self.video, *self.files):
            Path(path).unlink(missing_ok=True)


@dataclass
class Session:
    """One browser's clip, curve, edits and takes."""

    folder: Path | None = None
    video: str | None = None
    model: str | None = None
    timeline: object | None = None  # pipeline.Timeline: its curve is the curve before the edits
    phi: object | None = None  # the Timeline with phi's curve, kept for "back to the video's energy"
    phi_prompt: str = ""  # the prompt phi's curve was predicted for (a phi that reads the prompt)
    source: str = ""
    edits: list[Edit] = field(default_factory=list)
    takes: list[Take] = field(default_factory=list)
    shown: Take | None = None  # the take whose energy the curve editor shows
    shown_layer: int | None = None  # else the layer (from 1) whose energy in its last mix the editor shows
    audio: AudioConfig | None = None  # the model's, kept so that edits never touch the model
    energy: dict = field(default_factory=dict)  # the curve's source as soundtrack.Layer fields ({}: phi, whole frame)
    energy_prompt: str = ""  # the prompt a region's curve was predicted for (a phi that reads the prompt)
    corners: list = field(default_factory=list)  # the points clicked on the frame, (x, y) fractions, the last two
    picture: tuple | None = None  # (seconds, (H, W, 3) uint8): the clip's picture last shown, without the box
    layers: list[MixLayer] = field(default_factory=list)
    mixes: list[Mix] = field(default_factory=list)

    def __deepcopy__(self, memo):  # gradio copies state per session; the clip's tensors need not be copied
        return dataclasses.replace(
            self, edits=list(self.edits), takes=[], shown=None, corners=list(self.corners), layers=[], mixes=[]
        )


class Studio:
    """The page's actions. Every method that a user's input reaches raises UserError with a readable line for bad
    input; the page shows that line."""

    def __init__(
        self,
        models: list[str],
        *,
        workdir: str | Path | None = None,
        max_video_seconds: float = 600.0,
        job_seconds: float = 900.0,
        device: str | None = None,
        dtype: str = "auto",
        runtime: str = "auto",
    ):
        self.models = list(dict.fromkeys(models))
        self.dtype = dtype  # the diffusion model's precision: fp32, bf16 or auto (validate.dtype)
        self.runtime = runtime  # where its video encoder and denoiser run (rewas.runtime)
        self.max_video_seconds = max_video_seconds
        self.job_seconds = job_seconds
        self.device = device
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"rewas-studio-{os.getpid()}-") if workdir is None else workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pipe = None
        self._pipe_name: str | None = None

    def close(self) -> None:
        """Remove every file the studio wrote."""
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------------------------------- the model

    def pipeline(self, model: str):
        """The pipeline of `model`, loaded on first use; one model in memory (choosing another drops it)."""
        from .pipeline import ReWaSPipeline

        if model not in self.models:
            raise UserError(f"unknown model {model!r}")
        with self._lock:
            if self._pipe_name != model or self._pipe is None:
                # free the old one before the new one loads; a load that fails leaves no model, and the next
                # request loads again (a name kept for a dropped model would hand out None)
                self._pipe, self._pipe_name = None, None
                self._pipe = ReWaSPipeline.from_pretrained(
                    model, device=self.device, dtype=self.dtype, runtime=self.runtime
                )
                self._pipe_name = model
            return self._pipe

    # ------------------------------------------------------------------------------------------- the clip

    def open_video(self, session: Session, path: str | None, model: str) -> Session:
        """An uploaded video -> the session's clip, with phi's curve and no edits."""
        from .frames import probe
        from .pipeline import check_duration

        if not path:
            raise UserError("upload a video first")
        info = check_duration(probe(path))
        if info.duration > self.max_video_seconds:
            raise UserError(
                f"the video lasts {info.duration:.0f} s; this studio takes up to {self.max_video_seconds:.0f} s "
                "(use `rewas generate` for longer ones)"
            )
        pipe = self.pipeline(model)
        folder = session.folder or self._session_folder()
        video = self._keep(path, folder)
        try:
            phi = pipe.prepare(video)
        except BaseException:  # the session keeps its clip; the new one goes
            if video != path:
                Path(video).unlink(missing_ok=True)
            raise
        for old in folder.glob("clip-*"):  # one clip per session
            if str(old) != video:
                old.unlink(missing_ok=True)
        self.forget_takes(session)  # takes belong to a clip: a new clip starts a new list
        return Session(
            folder=folder, video=video, model=model, timeline=phi, phi=phi, source=VIDEO_SOURCE, audio=pipe.config.audio
        )

    @staticmethod
    def _keep(path: str, folder: Path, prefix: str = "clip") -> str:
        """The session's own link to (or copy of) an upload: gradio's cache deletes its files after an hour, while
        the session may stay open for longer. A clip the session keeps already is its own."""
        if Path(path).parent == folder:
            return path
        kept = folder / f"{prefix}-{uuid.uuid4().hex[:8]}{Path(path).suffix.lower()}"
        try:
            os.link(path, kept)
        except OSError:  # another file system, or no hard links there
            shutil.copyfile(path, kept)
        return str(kept)

    def use_reference(self, session: Session, path: str | None) -> Session:
        """Replace the curve with the energy of a reference recording, stretched to the video's length."""
        from .energy import reference_curve

        self._need_clip(session)
        if not path:
            raise UserError("upload a reference recording (audio or video) first")
        pipe = self.pipeline(session.model)
        curve = reference_curve(path, session.timeline.duration, pipe.config.audio)
        session.timeline = pipe.prepare(session.video, energy=curve)
        session.source = f"the recording {Path(path).name}"
        session.energy = {"energy_from": self._keep(path, session.folder, "reference")}  # for a layer made of it
        return session

    def use_video_curve(self, session: Session) -> Session:
        self._need_clip(session)
        session.timeline, session.source, session.energy = session.phi, VIDEO_SOURCE, {}
        return session

    # ------------------------------------------------------------------------------------------- layers

    def frame(self, session: Session, at: float = 0.0) -> np.ndarray:
        """The clip's picture at `at` seconds, (H, W, 3) uint8, short side PICTURE_SHORT: where a region is drawn,
        with the box clicked so far."""
        from .frames import iter_whole_frames, probe

        self._need_clip(session)
        at = min(max(0.0, float(at or 0.0)), session.timeline.duration)
        if session.picture is None or session.picture[0] != at:  # each click redraws the box, not the decoding
            info = probe(session.video)
            frames = iter_whole_frames(session.video, 25.0, PICTURE_SHORT, info)
            k = min(round(at * 25), info.num_frames(25) - 1)
            session.picture = (at, next(frame for i, frame in enumerate(frames) if i >= k))
        image = session.picture[1]
        box = self.box(session)
        if box is not None:
            h, w = image.shape[:2]
            left, top, right, bottom = (round(v * n) for v, n in zip(box, (w, h, w, h)))
            image = image.copy()
            for y in (top, min(h - 1, bottom)):
                image[y, left : right + 1] = (255, 220, 0)
            for x in (left, min(w - 1, right)):
                image[top : bottom + 1, x] = (255, 220, 0)
        return image

    def click(self, session: Session, x: float, y: float) -> Session:
        """A click on the picture, (x, y) as fractions of its width and height: two make a box's corners."""
        self._need_clip(session)
        if not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in (x, y)):
            raise UserError("a click on the picture is (x, y), fractions of its width and height from 0 to 1")
        session.corners = [*session.corners[-1:], (float(x), float(y))]
        return session

    def set_box(self, session: Session, text: str | None) -> Session:
        """A box typed as "left,top,right,bottom" (fractions of the picture) -> its two corners; empty: as clicked."""
        from .tracking import Region, parse_box

        self._need_clip(session)
        if text and text.strip():
            parsed = parse_box(text)
            if parsed is None or "@" in text:  # the time is the picture's field, not part of the box
                raise UserError(f"box {text!r}: give left,top,right,bottom, fractions of the picture")
            left, top, right, bottom = parsed[0]  # any two opposite corners, as clicks may be
            box = Region((min(left, right), min(top, bottom), max(left, right), max(top, bottom))).box
            session.corners = [box[:2], box[2:]]
        return session

    @staticmethod
    def box(session: Session) -> tuple[float, float, float, float] | None:
        """The box of the last two clicks (left, top, right, bottom), or None."""
        if len(session.corners) < 2:
            return None
        (x0, y0), (x1, y1) = session.corners
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

    def use_region(self, session: Session, at: float = 0.0, prompt: str = "") -> Session:
        """The curve of the object in the box clicked at `at` s: phi on its square of the picture, tracked (a phi
        that reads the prompt is given `prompt`, the one the layer will have)."""
        from .tracking import Region

        self._need_clip(session)
        box = self.box(session)
        if box is None:
            raise UserError("click two corners of a box around an object on the picture first")
        region = Region(box, float(at or 0.0))
        session, found = self._use_energy(session, {"region": region}, f"the region {_box_label(region)}", prompt)
        if found.fixed:  # the page says why (tracking.FIXED_NOTE), and the layer list's source keeps it
            session.source += FIXED_SOURCE
        return session

    def use_level(self, session: Session, level: float) -> Session:
        """A flat curve at `level` nats: an ambience's."""
        self._need_clip(session)
        if level is None or not math.isfinite(float(level)):
            raise UserError("give the flat level in nats, e.g. -6")
        return self._use_energy(session, {"level": float(level)}, f"a flat level of {float(level):g} nats")[0]

    def _use_energy(self, session: Session, energy: dict, source: str, prompt: str = "") -> tuple[Session, object]:
        """The curve of a layer whose energy is `energy` (Layer fields) as the session's, before its edits ->
        (the session, its region's tracking.Track or None)."""
        from .soundtrack import Layer, layer_timeline

        pipe = self.pipeline(session.model)
        layer = Layer(prompt or "a layer", **energy)
        session.timeline, found = layer_timeline(pipe, session.video, layer)
        session.source, session.energy, session.energy_prompt = source, energy, layer.prompt
        return session, found

    def _curve_for(self, session: Session, prompt: str) -> bool:
        """The curve in the editor predicted again for `prompt` where phi reads the prompt, makes the curve (the
        whole picture or a region) and predicted it for another: a layer is sampled with phi's curve for its own
        prompt, and the editor shows that one. -> whether it was predicted again (the edits stay)."""
        pipe = self.pipeline(session.model)
        if not pipe.config.phi.text_dim:
            return False
        if "region" in session.energy:
            if session.energy_prompt == prompt:
                return False
            self._use_energy(session, session.energy, session.source, prompt)
            return True
        if session.energy or session.phi_prompt == prompt:  # a level, a recording, a CSV: no phi
            return False
        session.phi, session.phi_prompt = pipe.prepare(session.video, prompt=prompt), prompt
        session.timeline = session.phi
        return True

    def add_layer(
        self, session: Session, prompt: str, negative_prompt: str = "", gain_db: float = 0.0, pan: float | None = None
    ) -> tuple[Session, bool]:
        """The prompt, the curve's source and its edits, as a new layer of the session's soundtrack (the editor's
        edits then start afresh for the next one). pan None: the centre, or a region's follows its object.
        -> (session, whether the curve was predicted again for the prompt: `_curve_for`)."""
        self._need_clip(session)
        layer, again = self._layer(session, prompt, negative_prompt, gain_db, pan)
        session.layers, session.edits = [*session.layers, MixLayer(layer, session.source)], []
        # the editor now makes the next layer: no take's sound drawn over a curve it was not made with
        session.shown, session.shown_layer = None, None
        return session, again

    def update_layer(
        self, session: Session, number: int, prompt: str, negative_prompt: str = "", gain_db: float = 0.0, pan=None
    ) -> tuple[Session, bool]:
        """Layer `number` (from 1) becomes the prompt, curve and edits being edited. -> (session, whether the
        curve was predicted again for the prompt)."""
        key = session.layers[self._layer_index(session, number)].key
        layer, again = self._layer(session, prompt, negative_prompt, gain_db, pan)  # phi may run meanwhile
        index = self._place_of(session, key, number)  # where it is now: a layer before it may have gone meanwhile
        session.layers[index] = dataclasses.replace(
            session.layers[index], layer=layer, source=session.source, heard=None, heard_in=None
        )  # what an earlier mix made of it is no longer this layer's sound
        session.shown, session.shown_layer = None, index + 1  # the layer in the editor, under its number now
        return session, again

    def select_layer(self, session: Session, number: int) -> tuple[Session, object]:
        """Layer `number`'s curve and edits back in the editor; -> (session, its soundtrack.Layer)."""
        from .soundtrack import SOURCES

        mixed = session.layers[self._layer_index(session, number)]
        energy = {k: getattr(mixed.layer, k) for k in SOURCES if getattr(mixed.layer, k) is not None}
        if energy:
            self._use_energy(session, energy, mixed.source, mixed.layer.prompt)
        else:
            self.use_video_curve(session)
            self._curve_for(session, mixed.layer.prompt)
        if "region" in energy:
            session.corners = [energy["region"].box[:2], energy["region"].box[2:]]
        session.edits = list(mixed.layer.edits)
        # the editor shows its sound in the last mix; where it is now (phi ran, and a layer may have gone meanwhile)
        session.shown, session.shown_layer = None, self._place_of(session, mixed.key, number) + 1
        return session, mixed.layer

    def mix_layer(self, session: Session, number: int, mute: bool, solo: bool) -> Session:
        index = self._layer_index(session, number)
        session.layers[index] = dataclasses.replace(session.layers[index], mute=bool(mute), solo=bool(solo))
        return session

    def remove_layer(self, session: Session, number: int) -> Session:
        index = self._layer_index(session, number)
        session.layers = session.layers[:index] + session.layers[index + 1 :]
        session.shown_layer = None
        return session

    def generate_mix(
        self, session: Session, seed: int | None = None, steps: int | None = None, guidance: float | None = None,
        progress=None,
    ) -> Mix:  # fmt: skip
        """The layers that are heard (solo ones if any, else all not muted) sampled together and mixed in stereo:
        the muxed mix, its WAV, each stem and curve, and the soundtrack file, in the session's folder."""
        from .audio import write_wav
        from .energy import waveform_energy, write_csv
        from .files import atomic_path
        from .frames import probe
        from .mux import mux
        from .soundtrack import Soundtrack, render, stem_names, write_soundtrack

        self._need_clip(session)
        playing = heard_layers(session.layers)
        if not playing:
            raise UserError("add a layer first (or un-mute one)")
        seed = self._seed(seed)
        # a layer's seed and stem number are its place in the whole list, as if every layer were heard: muting or
        # soloing others leaves its sound as it was (numbered among those heard, muting the first gave the second
        # the first's seed, and another sound)
        mixed = [(session.layers[i].key, session.layers[i].layer) for i in playing]
        layers = [layer if layer.seed is not None else dataclasses.replace(layer, seed=seed + i) for i, (_, layer)
                  in zip(playing, mixed)]  # fmt: skip
        steps = self._steps(steps)
        pipe = self.pipeline(session.model)
        start = time.monotonic()
        number = session.mixes[-1].number + 1 if session.mixes else 1
        stem = session.folder / f"mix{number:03d}-seed{seed}"
        written: list[str] = []
        try:
            soundtrack = Soundtrack(tuple(layers), steps=steps, guidance=guidance, model=session.model)
            result = render(pipe, session.video, soundtrack, seed=seed, callback=self._callback(start, progress))
            video = mux(session.video, result.mix, result.sample_rate, f"{stem}.mp4", probe(session.video))
            written.append(str(video))
            outputs = [(f"{stem}.wav", lambda tmp: write_wav(tmp, result.mix, result.sample_rate))]
            names = stem_names(result.soundtrack, [i + 1 for i in playing])
            for name, part, curve in zip(names, result.stems, result.curves):
                outputs.append(
                    (f"{stem}-{name}.wav", functools.partial(write_wav, waveform=part, sample_rate=result.sample_rate))
                )
                outputs.append(
                    (f"{stem}-{name}.csv", functools.partial(write_csv, energy=curve, cfg=pipe.config.audio))
                )
            outputs.append(
                # absolute: the file is downloaded, away from the session's folder that holds a recording it names
                (
                    f"{stem}-soundtrack.json",
                    functools.partial(write_soundtrack, soundtrack=result.soundtrack, absolute=True),
                )
            )
            for path, write in outputs:
                with atomic_path(path) as tmp:
                    write(tmp)
                written.append(path)
        except BaseException:  # no half-written mix stays behind
            for path in written:
                Path(path).unlink(missing_ok=True)
            raise
        # each layer's own energy, for the editor's green line: the layers as they are now (one may have been
        # removed or changed while the mix ran: its sound is no one's)
        places = {m.key: i for i, m in enumerate(session.layers)}
        for (key, layer), sound in zip(mixed, result.sounds):
            i = places.get(key)
            if i is not None and session.layers[i].layer is layer:
                energy = waveform_energy(sound, pipe.config.audio).numpy()
                session.layers[i] = dataclasses.replace(session.layers[i], heard=energy, heard_in=number)
        mix = Mix(number, written[0], written[1:], time.monotonic() - start, len(layers))
        session.mixes = _newest([*session.mixes, mix])
        return mix

    def _layer(self, session: Session, prompt, negative_prompt, gain_db, pan):
        """The layer being edited -> (soundtrack.Layer, whether its curve was predicted again for its prompt)."""
        from .soundtrack import Layer

        layer = Layer(
            prompt or "", negative_prompt or "", edits=tuple(session.edits), gain_db=float(gain_db or 0.0),
            pan=None if pan is None else float(pan), **session.energy,
        )  # fmt: skip
        return layer, self._curve_for(session, layer.prompt)

    @staticmethod
    def _place_of(session: Session, key: int, number) -> int:
        """The index of the layer `key` now; a line saying so where it was removed while it was being worked on."""
        for i, mixed in enumerate(session.layers):
            if mixed.key == key:
                return i
        raise UserError(f"layer {number} was removed meanwhile")

    def _layer_index(self, session: Session, number) -> int:
        if number is None:
            raise UserError(PICK_A_LAYER)
        try:
            index = int(number) - 1
        except (TypeError, ValueError):
            raise UserError(f"a layer is a number, not {number!r}") from None
        if not 0 <= index < len(session.layers):
            raise UserError(f"there is no layer {number}")
        return index

    # ------------------------------------------------------------------------------------------- edits

    def add_edit(self, session: Session, edit: Edit) -> Session:
        self._need_clip(session)
        session.edits = [*session.edits, edit]
        return session

    def range_edit(self, session: Session, op: str, start: float, end: float, amount: float) -> Session:
        """The page's range controls -> one edit (amount: dB for gain, a factor for scale, seconds for smooth)."""
        self._need_clip(session)
        if start is None or end is None:
            raise UserError("give the range's start and end in seconds")
        end = min(float(end), session.timeline.duration) if end > start else end
        value = 0.0 if op == "mute" else float(amount if amount is not None else math.nan)
        return self.add_edit(session, Edit(op, float(start), float(end), value))

    def draw_edit(self, session: Session, stroke: list) -> Session:
        """A stroke drawn on the curve: (time_s, nats) points in drawing order -> one draw edit through them."""
        self._need_clip(session)
        try:
            points = sorted((float(t), float(e)) for t, e in stroke)
        except (TypeError, ValueError):
            raise UserError("the drawn stroke was not a list of (time, energy) points") from None
        duration = session.timeline.duration
        keyed = {}
        for t, e in points:
            if 0 <= t <= duration and math.isfinite(e):
                keyed[round(t, 2)] = e  # one keyframe per 10 ms frame, the latest wins
        if len(keyed) < 2:
            raise UserError("draw across the curve (at least two points)")
        return self.add_edit(session, Edit("draw", points=tuple(sorted(keyed.items()))))

    def undo(self, session: Session) -> Session:
        session.edits = session.edits[:-1]
        return session

    def reset(self, session: Session) -> Session:
        session.edits = []
        return session

    def curve(self, session: Session) -> np.ndarray:
        """The edited curve over the clip, one value per 10 ms mel frame."""
        self._need_clip(session)
        timeline = session.timeline.edited(session.edits, session.audio)
        return timeline.curve[0, : self._frames(session)].numpy()

    def view(self, session: Session) -> dict:
        """What the page's curve editor draws: the clip's duration, the edited curve, the one before the edits and
        the energy of the take shown (at most MAX_POINTS each), the axis range, the edits."""
        if session.timeline is None:
            return {"duration": 0, "t": [], "curve": [], "base": [], "floor": edits_mod.SILENCE, "top": 0}
        frames = self._frames(session)
        rate = session.audio.frame_rate
        edited = self.curve(session)
        base = session.timeline.curve[0, :frames].numpy()
        idx = np.unique(np.linspace(0, frames - 1, min(frames, MAX_POINTS)).round().astype(int))
        heard, heard_of = self._heard(session)
        heard = None if heard is None else np.pad(heard, (0, max(0, frames - len(heard))), mode="edge")[:frames]
        tops = [np.max(base), np.max(edited), edits_mod.SILENCE + 1] + ([np.max(heard)] if heard is not None else [])
        top = float(max(tops))
        return {
            "duration": session.timeline.duration,
            "t": [round((i + 0.5) / rate, 3) for i in idx],
            "curve": [round(float(v), 3) for v in edited[idx]],
            "base": [round(float(v), 3) for v in base[idx]],
            "floor": edits_mod.SILENCE,
            "top": math.ceil(top + 0.5),
            "edits": [edits_mod.label(e) for e in session.edits],
            "source": session.source,
            "heard": [] if heard is None else [round(float(v), 3) for v in heard[idx]],
            "take": session.shown.number if session.shown is not None else None,
            "heard_of": heard_of,  # what the green line is: "take 2", "layer 1 in mix 3"
        }

    @staticmethod
    def _heard(session: Session) -> tuple[np.ndarray | None, str | None]:
        """The energy the editor draws over the curve, and whose it is: the take shown, else the picked layer's
        own sound in the last mix it was heard in."""
        if session.shown is not None:
            return session.shown.heard, f"take {session.shown.number}"
        number = session.shown_layer
        if number is not None and 0 < number <= len(session.layers) and session.layers[number - 1].heard is not None:
            return session.layers[number - 1].heard, f"layer {number} in mix {session.layers[number - 1].heard_in}"
        return None, None

    # ------------------------------------------------------------------------------------------- takes

    def generate(
        self,
        session: Session,
        prompt: str,
        negative_prompt: str = "",
        seed: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        progress=None,
    ) -> Take:
        """One take: the clip's edited curve, the prompt and the settings -> the muxed video, the WAV and the CSV
        in the session's folder. progress(fraction, text) is called as the sampler steps."""
        from .audio import write_wav
        from .energy import waveform_energy, write_csv
        from .files import atomic_path
        from .frames import probe
        from .mux import mux

        self._need_clip(session)
        prompt = validate.prompt(prompt or "")
        negative_prompt = validate.prompt(negative_prompt, "negative prompt", required=False)
        seed, steps = self._seed(seed), self._steps(steps)
        edits, source = list(session.edits), session.source  # as they are now: edits made during the take wait
        pipe = self.pipeline(session.model)
        if pipe.config.phi.text_dim and session.phi_prompt != prompt:  # phi's curve depends on what is asked for
            session.phi, session.phi_prompt = pipe.prepare(session.video, prompt=prompt), prompt
            if session.source == VIDEO_SOURCE:
                session.timeline = session.phi
        start = time.monotonic()  # the job limit is the sampler's
        result = pipe(
            timeline=session.timeline,
            edits=edits,
            prompt=prompt,
            negative_prompt=negative_prompt or "",
            seed=seed,
            steps=steps,
            guidance=guidance,
            callback=self._callback(start, progress),
        )
        number = session.takes[-1].number + 1 if session.takes else 1
        stem = session.folder / f"take{number:03d}-seed{seed}"
        try:
            video = mux(session.video, result.waveform, result.sample_rate, f"{stem}.mp4", probe(session.video))
            with atomic_path(f"{stem}.wav") as tmp:
                write_wav(tmp, result.waveform, result.sample_rate)
            with atomic_path(f"{stem}.csv") as tmp:
                write_csv(tmp, result.energy, pipe.config.audio)
        except BaseException:  # no half-written take stays behind
            for suffix in (".mp4", ".wav", ".csv"):
                Path(f"{stem}{suffix}").unlink(missing_ok=True)
            raise
        take = Take(
            number, prompt, negative_prompt or "", seed, steps, guidance, session.model, edits,
            source, str(video), f"{stem}.wav", f"{stem}.csv", time.monotonic() - start,
            waveform_energy(result.waveform, pipe.config.audio).numpy(),
        )  # fmt: skip
        session.shown, session.shown_layer = take, None
        session.takes = _newest([*session.takes, take])
        return take

    def reopen(self, session: Session, number: int) -> tuple[Session, Take]:
        """A kept take's prompt, seed and curve edits back in the controls."""
        for take in session.takes:
            if take.number == number:
                session.edits = list(take.edits)
                session.shown, session.shown_layer = take, None
                return session, take
        raise UserError(f"there is no take {number}")

    # ------------------------------------------------------------------------------------------- helpers

    @staticmethod
    def _seed(seed) -> int:
        """The page's seed field: a whole number, or a fresh one when it is empty or negative."""
        if seed is not None and seed >= 0:
            seed = validate.seed(int(seed) if float(seed).is_integer() and seed < 2**63 else seed)
        return int(np.random.default_rng().integers(2**31 - 1)) if seed is None or seed < 0 else seed

    @staticmethod
    def _steps(steps) -> int | None:
        """The page's slider gives 10.0: a whole float is its whole number."""
        if steps is None:
            return None
        return validate.whole(int(steps) if float(steps).is_integer() else steps, "steps")

    def _callback(self, start: float, progress):
        """The sampler's callback: the job's time limit, and progress(fraction, text) for the page."""

        def callback(step: int, total: int) -> None:
            if time.monotonic() - start > self.job_seconds:
                raise JobTooLong(f"the take ran past this studio's limit of {self.job_seconds:.0f} s; use fewer steps")
            if progress is not None:
                progress(step / total, f"step {step}/{total}")

        return callback

    def _need_clip(self, session: Session) -> None:
        if session.timeline is None:
            raise UserError("upload a video first")

    def _frames(self, session: Session) -> int:
        return max(1, math.ceil(session.timeline.duration * session.audio.frame_rate))

    def forget_takes(self, session: Session) -> None:
        """Delete the files of a session's takes and mixes (they belong to its clip), and its layers."""
        for take in [*session.takes, *session.mixes]:
            take.delete()
        session.takes, session.shown, session.mixes, session.layers, session.corners = [], None, [], [], []

    def forget(self, session: Session) -> None:
        """A browser session has ended: its folder goes."""
        if session is not None and session.folder is not None:
            shutil.rmtree(session.folder, ignore_errors=True)

    def _session_folder(self) -> Path:
        folder = self.workdir / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True)
        return folder


# ----------------------------------------------------------------------------------------------- the page


def example_clips(folder: Path) -> list[Path]:
    """The demo's clips, rendered once into `folder`: a bouncing ball and flashes."""
    from . import samples

    folder.mkdir(parents=True, exist_ok=True)
    clips = {
        "bouncing_ball.mp4": (samples.bouncing_ball_frames(bounce_period=0.8), 6.0),
        "flashes.mp4": (samples.flash_frames([0.5, 1.5, 2.0, 3.2, 4.0], size=(240, 320), flash=0.12), 5.0),
    }
    paths = []
    for name, (frame_fn, seconds) in clips.items():
        path = folder / name
        if not path.exists():
            samples.write_video(path, frame_fn, duration=seconds, fps=25)
        paths.append(path)
    return paths


def build_app(studio: Studio, *, queue_size: int = 8):
    """The gradio Blocks of the studio (not launched)."""
    import gradio as gr

    from . import studio_components as ui

    js = (ASSETS / "curve.js").read_text(encoding="utf-8")
    css = (ASSETS / "curve.css").read_text(encoding="utf-8")
    examples = example_clips(studio.workdir / "examples")

    def shown(e: Exception, args=()) -> str:
        """The error's line, with an upload's server-side path shortened to the name the user gave it."""
        line = one_line(e)
        for arg in args:
            if isinstance(arg, str) and len(arg) > 1 and Path(arg).name and arg in line:
                line = line.replace(arg, Path(arg).name)
        return f"⚠️ {line}"

    def takes_table(session: Session) -> list[list]:
        return [t.row() for t in reversed(session.takes)]

    with gr.Blocks(title="rewas studio", delete_cache=(1800, 3600)) as app:
        # a closed tab's files go; so do a session's left idle for a day (an API client never closes a tab)
        session = gr.State(Session(), delete_callback=studio.forget, time_to_live=SESSION_IDLE_S)
        gr.Markdown("## rewas studio: a soundtrack for a silent video, with the energy curve in your hands")
        with gr.Row():
            with gr.Column(scale=5):
                video = ui.Video(label="video", sources=["upload"], elem_id="rewas-video", height=300)
                gr.Examples([[str(p)] for p in examples], inputs=[video], label="examples")
            with gr.Column(scale=4):
                prompt = ui.Textbox(label="prompt", placeholder="what should be heard", elem_id="rewas-prompt")
                negative = ui.Textbox(label="negative prompt", placeholder="what should not be heard")
                with gr.Row():
                    model = ui.Dropdown(studio.models, value=studio.models[0], label="model", scale=2)
                    seed = ui.Number(value=0, precision=0, label="seed (-1: random)", scale=1)
                sampler = studio.pipeline(studio.models[0]).config.sampler
                with gr.Row():
                    steps = ui.Slider(1, 200, value=sampler.steps, step=1, label="steps", elem_id="rewas-steps")
                    guidance = ui.Slider(1, 10, value=sampler.guidance, step=0.5, label="guidance")
                generate = gr.Button("Generate", variant="primary", elem_id="rewas-generate")
        status = gr.Markdown("Upload a video or pick an example.", elem_id="rewas-status")
        curve = gr.HTML(
            value=studio.view(Session()),
            html_template='<div class="rewas-curve"><canvas></canvas><div class="rewas-curve-info"></div></div>',
            css_template=css,
            js_on_load=js,
            elem_id="rewas-curve",
        )
        with gr.Row():
            op = ui.Dropdown(
                [("mute", "mute"), ("gain (dB)", "gain"), ("scale (× level above silence)", "scale"),
                 ("smooth (seconds)", "smooth")],
                value="mute", label="range edit", scale=2, elem_id="rewas-op",
            )  # fmt: skip
            start = ui.Number(value=0.0, label="from (s)", minimum=0, elem_id="rewas-start")
            end = ui.Number(value=1.0, label="to (s)", minimum=0, elem_id="rewas-end")
            amount = ui.Number(value=-6.0, label="amount", elem_id="rewas-amount")
            apply = gr.Button("Apply", elem_id="rewas-apply")
            undo = gr.Button("Undo", elem_id="rewas-undo")
            reset = gr.Button("Reset", elem_id="rewas-reset")
        with gr.Row():
            reference = ui.File(
                label="reference recording (audio or video)",
                file_types=["audio", "video"],
                height=110,
                scale=2,
                elem_id="rewas-reference",
            )
            use_ref = gr.Button("Use its energy", elem_id="rewas-use-reference")
            use_video = gr.Button("Back to the video's energy")
        with gr.Row():
            result = gr.Video(label="result", interactive=False, elem_id="rewas-result", height=300)
            files = gr.File(
                label="downloads: MP4, WAV, curve CSV (a mix: its stems, curves and soundtrack file too)",
                file_count="multiple",
                interactive=False,
                elem_id="rewas-files",
            )
        with gr.Row():
            takes = gr.Dataframe(
                headers=["take", "prompt", "negative", "seed", "edits", "curve from", "time"],
                label="takes",
                interactive=False,
                elem_id="rewas-takes",
                scale=5,
            )
            reopen = ui.TakeNumber(
                [], value=None, label="re-open take", scale=1, elem_id="rewas-reopen", allow_custom_value=True
            )  # the API may name any take: a number outside the list gets the studio's own one-line answer
        gr.Markdown(
            "### Layers: several sounds, each with its own prompt, curve, gain and pan, mixed in stereo\n"
            "Set a prompt and a curve above (the video's, a recording's, an object's region or a flat level, with "
            "your edits), then add it as a layer. Pick a layer to edit its curve again. To follow an object, click "
            "two opposite corners of a box around it on the picture below."
        )
        with gr.Row():
            with gr.Column(scale=5):
                picture = gr.Image(
                    label="the picture: click two corners of a box around an object", show_label=False,
                    interactive=False, height=280,
                    elem_id="rewas-picture",
                )  # fmt: skip
            with gr.Column(scale=4):
                with gr.Row():
                    at = ui.Number(value=0.0, label="picture at (s)", minimum=0, elem_id="rewas-at")
                    show = gr.Button("Show that moment", elem_id="rewas-show")
                with gr.Row():
                    box_text = ui.Textbox(
                        label="box: left,top,right,bottom (click it, or type it)", elem_id="rewas-box", scale=2
                    )
                    use_region = gr.Button("Use the object's energy (tracked)", elem_id="rewas-use-region")
                with gr.Row():
                    level = ui.Number(value=-6.0, label="flat level (nats)", elem_id="rewas-level")
                    use_level = gr.Button("Use a flat level", elem_id="rewas-use-level")
                with gr.Row():
                    gain = ui.Slider(-24, 12, value=0, step=0.5, label="layer gain (dB)", elem_id="rewas-gain")
                    pan = ui.Slider(-1, 1, value=0, step=0.05, label="pan (-1 left, 1 right)", elem_id="rewas-pan")
                follow = ui.Checkbox(value=True, label="a region's pan follows its object", elem_id="rewas-follow")
                add_layer = gr.Button("Add as a layer", elem_id="rewas-add-layer")
        with gr.Row():
            layers_table = gr.Dataframe(
                headers=["layer", "in the mix", "prompt", "curve from", "edits", "gain", "pan"],
                label="layers",
                interactive=False,
                elem_id="rewas-layers",
                scale=5,
            )
            with gr.Column(scale=2):
                layer_no = ui.TakeNumber(
                    [], value=None, label="layer", allow_custom_value=True, elem_id="rewas-layer-number"
                )
                with gr.Row():
                    mute = ui.Checkbox(label="mute", elem_id="rewas-mute")
                    solo = ui.Checkbox(label="solo", elem_id="rewas-solo")
                with gr.Row():
                    update_layer = gr.Button("Update", elem_id="rewas-update-layer")
                    remove_layer = gr.Button("Remove", elem_id="rewas-remove-layer")
        make_mix = gr.Button("Generate the mix", variant="primary", elem_id="rewas-generate-mix")

        def guarded(fn):
            """Run a page action; a user error becomes the status line, the page keeps its state."""

            @functools.wraps(fn)  # gradio reads the signature (its Progress argument)
            def run(*args, **kwargs):
                try:
                    return fn(*args, **kwargs)
                except UserError as e:
                    return {status: shown(e, args)}
                except Exception as e:  # never a traceback in the page, never the server down
                    return {status: shown(e, args).replace("⚠️ ", f"⚠️ internal error: {e.__class__.__name__}: ")}

            return run

        def uploaded(path):
            """Only files that came through the page: gradio's upload cache or the bundled examples."""
            if path and not any(Path(path).resolve().is_relative_to(root) for root in roots):
                raise UserError("only uploaded files are accepted")
            return path

        roots = [Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()]
        roots.append(studio.workdir.resolve())

        def on_video(video, s, model):
            """A video (an upload) and the model to use -> its clip, with phi's curve."""
            if not video:
                return {status: "Upload a video or pick an example."}
            had = [] if s is None else [(len(s.layers), "layer"), (len(s.takes), "take"), (len(s.mixes), "mix")]
            try:
                s = studio.open_video(s, uploaded(video), model)
            except UserError as e:
                if s is not None and s.video:  # the player shows the new file; the page still works on the old one
                    raise UserError(f"{one_line(e).rstrip('.')}. The clip you had open stays open") from None
                raise
            note = f"{s.timeline.duration:.2f} s. The curve is φ's prediction from the video; drag on it to draw."
            closed = [f"{n} {what}{'es' if what == 'mix' else 's'}" if n > 1 else f"1 {what}" for n, what in had if n]
            if closed:  # they belong to the clip before: say so, not quietly empty the tables
                note += f" The last clip's {', '.join(closed)} went with it."
            return {
                session: s, curve: studio.view(s), status: note, takes: takes_table(s), reopen: choices(s),
                picture: studio.frame(s), layers_table: [], layer_no: gr.update(choices=[], value=None),
                box_text: "", at: 0.0,
            }  # fmt: skip

        def on_model(video, s, model):
            """Another model: the session's clip (its own link, which outlives gradio's cache) opened again."""
            if s is not None and s.video and Path(s.video).is_file():
                return on_video(s.video, s, model)
            return on_video(video, s, model) if video else {}

        def edited(s):
            return {session: s, curve: studio.view(s), status: f"{len(s.edits)} edit(s) on {s.source}."}

        def on_generate(s, prompt, negative_prompt, seed, steps, guidance, progress=gr.Progress()):
            """One take of the clip with its edited curve -> the video, its WAV and its curve's CSV."""
            report = lambda f, d: progress(f, desc=d)  # noqa: E731
            take = studio.generate(s, prompt, negative_prompt, seed, steps, guidance, report)
            note = f"Take {take.number}: seed {take.seed}, {take.seconds:.1f} s."
            files_out = [take.video, take.wav, take.csv]
            return {
                session: s, result: take.video, files: files_out, takes: takes_table(s), status: note,
                reopen: choices(s), curve: studio.view(s),
            }  # fmt: skip

        def choices(s):
            return gr.update(choices=[t.number for t in reversed(s.takes)], value=None)

        def on_reopen(s, number):
            """A kept take (its number) back in the controls: prompt, seed, edits, result."""
            if number is None:
                return {}
            try:
                number = int(number)
            except (TypeError, ValueError):
                raise UserError(f"a take is a number, not {number!r}") from None
            s, take = studio.reopen(s, number)
            return {
                session: s, curve: studio.view(s), prompt: take.prompt, negative: take.negative_prompt,
                seed: take.seed, result: take.video, files: [take.video, take.wav, take.csv],
                status: f"Take {take.number} re-opened: its prompt, seed and edits are back.",
            }  # fmt: skip

        def on_stroke(curve_value, s):
            """The curve's value {"stroke": [[time_s, nats], ...]}: the points drawn, in drawing order (a JSON
            string of it is taken too)."""
            value = curve_value
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    raise UserError('draw takes {"stroke": [[time_s, nats], ...]}') from None
            stroke = (value or {}).get("stroke") if isinstance(value, dict) else None
            return edited(studio.draw_edit(s, stroke or []))

        def on_reference(s, recording):
            """A reference recording (audio or video) -> its energy, stretched to the clip, as the curve."""
            return edited(studio.use_reference(s, uploaded(recording)))

        def on_video_curve(s):
            """Back to phi's curve of the video."""
            return edited(studio.use_video_curve(s))

        def on_range(s, op, start, end, amount):
            """op (mute, gain, scale, smooth) from start to end (seconds) by amount (dB, a factor or seconds)."""
            return edited(studio.range_edit(s, op, start, end, amount))

        def on_undo(s):
            """The last edit undone."""
            return edited(studio.undo(s))

        def on_reset(s):
            """Every edit undone."""
            return edited(studio.reset(s))

        def layered(s, note, picked=None):
            """The layers table and picker after a change; `picked`: the layer that stays picked."""
            numbers = list(range(1, len(s.layers) + 1))
            any_solo = any(m.solo for m in s.layers)
            return {
                session: s, curve: studio.view(s), status: note,
                layers_table: [m.row(n, any_solo) for n, m in zip(numbers, s.layers)],
                layer_no: gr.update(choices=numbers, value=picked if picked in numbers else None),
            }  # fmt: skip

        def on_picture(s, at):
            """The picture at `at` seconds, with the box clicked so far."""
            studio._need_clip(s)
            end = s.timeline.duration
            if at is not None and at > end:  # the field says which moment is shown, and a region is drawn at it
                return {picture: studio.frame(s, end), at: end, status: f"The clip ends at {end:.2f} s: its last "
                        "moment is shown. Click two corners of a box around an object."}  # fmt: skip
            return {picture: studio.frame(s, at), status: "Click two corners of a box around an object."}

        def on_click(s, at, evt: gr.SelectData):
            """A click on the picture (pixels, from gradio) -> a corner of the box."""
            h, w = studio.frame(s, at).shape[:2]  # the picture shown: decoded once, kept in the session
            s = studio.click(s, min(1.0, evt.index[0] / w), min(1.0, evt.index[1] / h))
            box = studio.box(s)
            if box is None:
                note = "Now the opposite corner."
            elif box[0] == box[2] or box[1] == box[3]:
                note = f"Box {_box_text(box)} has no size: click two opposite corners of a box around the object."
            else:
                note = f"Box {_box_text(box)}."
            return {session: s, picture: studio.frame(s, at), status: note, box_text: _box_text(box) if box else ""}

        on_click.__annotations__["evt"] = gr.SelectData  # a real class: gradio cannot resolve the string "gr.…"

        def on_region(s, box, at, prompt):
            """The curve of the object in `box` ("left,top,right,bottom", fractions of the picture; clicked on it or
            typed) drawn at `at` seconds: phi on its tracked square of the picture, for `prompt`."""
            from .tracking import FIXED_NOTE

            s = studio.use_region(studio.set_box(s, box), at, prompt or "")
            out = edited(s)
            if s.source.endswith(FIXED_SOURCE):
                out[status] += f" {FIXED_NOTE[0].upper()}{FIXED_NOTE[1:]}."
            return out

        def on_level(s, level):
            """A flat curve at `level` nats (an ambience)."""
            return edited(studio.use_level(s, level))

        def pan_of(s, value, follows):
            return None if follows and "region" in s.energy else value

        predicted_again = " Its curve is φ's prediction for its own prompt, predicted again."

        def on_add_layer(s, prompt, negative_prompt, gain_db, pan, follows):
            """The prompt, curve and edits being edited, with a gain (dB) and a pan (-1 left to 1 right; a region's
            follows its object if `follows`), as a new layer."""
            s, again = studio.add_layer(s, prompt, negative_prompt, gain_db, pan_of(s, pan, follows))
            note = f"Layer {len(s.layers)} added: {_short(s.layers[-1].layer.prompt)}."
            note += predicted_again if again else ""
            return layered(s, note + " The edits start afresh for the next layer.")

        def on_update_layer(s, number, prompt, negative_prompt, gain_db, pan, follows):
            """Layer `number` becomes the prompt, curve and edits being edited."""
            s, again = studio.update_layer(s, number, prompt, negative_prompt, gain_db, pan_of(s, pan, follows))
            note = f"Layer {s.shown_layer} updated." + (predicted_again if again else "")
            return layered(s, note, picked=s.shown_layer)

        def on_select_layer(s, number):
            """A layer's prompt, curve and edits back in the editor."""
            if number is None:
                return {status: PICK_A_LAYER}
            s, layer = studio.select_layer(s, number)
            mixed = s.layers[s.shown_layer - 1]  # the one picked, wherever it is now
            out = layered(s, f"Layer {s.shown_layer}: its curve and edits are in the editor; Update keeps changes.")
            out.update({
                prompt: layer.prompt, negative: layer.negative_prompt, gain: layer.gain_db, layer_no: s.shown_layer,
                pan: layer.pan or 0.0, follow: layer.pan is None, mute: mixed.mute, solo: mixed.solo,
            })  # fmt: skip
            return out

        boxes = {mute: False, solo: False}  # (the handler's arguments take the boxes' names, as its API does)

        def on_mix_flags(s, number, mute, solo):
            """Mute or solo layer `number` in the mix."""
            if number is None:  # the boxes speak for no layer
                return {status: PICK_A_LAYER, **boxes}
            s = studio.mix_layer(s, number, mute, solo)
            heard = heard_layers(s.layers)
            said = "solo" if solo else "muted" if mute else "heard" if int(number) - 1 in heard else "not muted"
            note = f"Layer {number}: {said}. The mix hears " + (
                f"layer{'s' if len(heard) > 1 else ''} {', '.join(str(i + 1) for i in heard)}." if heard else "none."
            )
            return layered(s, note, picked=int(number))

        def on_remove_layer(s, number):
            return layered(studio.remove_layer(s, number), f"Layer {number} removed.")

        def on_mix(s, seed, steps, guidance, progress=gr.Progress()):
            """The layers heard, sampled together and mixed in stereo -> the mix, its WAV, stems, curves, file."""
            report = lambda f, d: progress(f, desc=d)  # noqa: E731
            mix = studio.generate_mix(s, seed, steps, guidance, report)
            note = f"Mix {mix.number}: {mix.layers} layer(s), stereo, {mix.seconds:.1f} s. Pick a layer to see it."
            return {session: s, result: mix.video, files: [mix.video, *mix.files], status: note, curve: studio.view(s)}

        everything = [session, curve, status, takes, prompt, negative, seed, result, files, reopen]
        everything += [picture, box_text, layers_table, layer_no, gain, pan, follow, mute, solo, at]
        # what runs the model waits in one queue, one job at a time; edits of the curve never wait behind a take
        model_job = dict(outputs=everything, concurrency_id="model", concurrency_limit=1, show_progress_on=[curve])
        edit_job = dict(outputs=everything, concurrency_limit=None, show_progress="hidden")
        # every event is a named endpoint of the page's API (docs/studio.md, "The studio's API")
        video.change(guarded(on_video), [video, session, model], api_name="open_video", **model_job)
        model.change(guarded(on_model), [video, session, model], api_name="switch_model", **model_job)
        use_ref.click(guarded(on_reference), [session, reference], api_name="use_reference", **model_job)
        use_video.click(guarded(on_video_curve), [session], api_name="use_video_energy", **model_job)
        take_job = {**model_job, "show_progress_on": [result]}  # the progress bar where the take (or mix) will play
        inputs = [session, prompt, negative, seed, steps, guidance]
        generate.click(guarded(on_generate), inputs, api_name="generate", **take_job)
        apply.click(guarded(on_range), [session, op, start, end, amount], api_name="edit_range", **edit_job)
        undo.click(guarded(on_undo), [session], api_name="undo", **edit_job)
        reset.click(guarded(on_reset), [session], api_name="reset", **edit_job)
        curve.stroke(guarded(on_stroke), [curve, session], api_name="draw", **edit_job)
        reopen.input(guarded(on_reopen), [session, reopen], api_name="reopen_take", **edit_job)
        show.click(guarded(on_picture), [session, at], api_name="show_picture", **edit_job)
        picture.select(guarded(on_click), [session, at], api_name=False, **edit_job)
        use_region.click(guarded(on_region), [session, box_text, at, prompt], api_name="use_region", **model_job)
        use_level.click(guarded(on_level), [session, level], api_name="use_level", **model_job)
        layer_inputs = [session, prompt, negative, gain, pan, follow]
        add_layer.click(guarded(on_add_layer), layer_inputs, api_name="add_layer", **model_job)  # phi may run
        update_inputs = [session, layer_no, prompt, negative, gain, pan, follow]
        update_layer.click(guarded(on_update_layer), update_inputs, api_name="update_layer", **model_job)
        layer_no.input(guarded(on_select_layer), [session, layer_no], api_name="select_layer", **model_job)
        mute.input(guarded(on_mix_flags), [session, layer_no, mute, solo], api_name="mix_layer", **edit_job)
        solo.input(guarded(on_mix_flags), [session, layer_no, mute, solo], api_name=False, **edit_job)
        remove_layer.click(guarded(on_remove_layer), [session, layer_no], api_name="remove_layer", **edit_job)
        make_mix.click(guarded(on_mix), [session, seed, steps, guidance], api_name="generate_mix", **take_job)
    app.queue(default_concurrency_limit=1, max_size=queue_size)
    return app


def offline_theme():
    """gradio's default theme with system fonts: its own come from Google's servers, and the studio is offline."""
    import gradio as gr

    sans, mono = ["ui-sans-serif", "system-ui", "sans-serif"], ["ui-monospace", "monospace"]
    return gr.themes.Default(font=sans, font_mono=mono)


def _bound_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates an arena of its own (up to 8 per core) and seldom returns their
    memory: the server's worker threads made its memory grow with every session (docs/reliability.md, "The studio
    under load"). A few arenas shared by all threads keep it bounded. Elsewhere than glibc, nothing to do."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):  # musl and others: no such library or call
        pass


def launch(
    models: list[str],
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_upload_mb: float = 200.0,
    max_video_seconds: float = 600.0,
    job_seconds: float = 900.0,
    queue_size: int = 8,
    device: str | None = None,
    dtype: str = "auto",
    runtime: str = "auto",
) -> None:
    """Serve the studio until interrupted (Ctrl+C or SIGTERM); every file it wrote is removed at the end."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline, and nothing reported anywhere

    def interrupt(signum, frame):  # SIGTERM (a service manager, `kill`) stops it as Ctrl+C does, cleaning up
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
    _bound_malloc_arenas()
    studio = Studio(
        models,
        max_video_seconds=max_video_seconds,
        job_seconds=job_seconds,
        device=device,
        dtype=dtype,
        runtime=runtime,
    )
    # gradio's cache (uploads, and a copy of every file it serves) inside the studio's folder, so that it goes
    # with it at the end; a GRADIO_TEMP_DIR the user set is theirs, and left alone
    own_cache = not os.environ.get("GRADIO_TEMP_DIR")
    if own_cache:
        os.environ["GRADIO_TEMP_DIR"] = str(studio.workdir / "gradio")
    try:
        studio.pipeline(studio.models[0])  # load before serving: a bad --model fails here, with one line
        app = build_app(studio, queue_size=queue_size)
        app.launch(
            server_name=host,
            server_port=port,
            max_file_size=f"{max_upload_mb:g}mb",
            show_error=False,
            quiet=True,
            theme=offline_theme(),
        )
    finally:
        studio.close()
        if own_cache:
            os.environ.pop("GRADIO_TEMP_DIR", None)
