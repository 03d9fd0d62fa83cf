"""The studio: the page of `rewas ui`. A video in, its energy curve drawn beside the player for a person to edit,
takes generated and kept for comparison.

`Studio` holds what the page does (one model in memory, the session's clip, its curve and edits, its takes) and
knows nothing of gradio; `build_app` lays the page out over it. The curve edits are `rewas.edits`, the same as the
command line's flags.
"""

from __future__ import annotations

import dataclasses
import functools
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


class JobTooLong(UserError):
    pass


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
        return [self.number, self.prompt, self.negative_prompt, self.seed, edits, self.source, f"{self.seconds:.1f} s"]

    def delete(self) -> None:
        for path in (self.video, self.wav, self.csv):
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
    audio: AudioConfig | None = None  # the model's, kept so that edits never touch the model

    def __deepcopy__(self, memo):  # gradio copies state per session; the clip's tensors need not be copied
        return dataclasses.replace(self, edits=list(self.edits), takes=[], shown=None)


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
        dtype: str = "fp32",
    ):
        self.models = list(dict.fromkeys(models))
        self.dtype = dtype  # the diffusion model's precision: fp32, bf16 or auto (validate.dtype)
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
                self._pipe = ReWaSPipeline.from_pretrained(model, device=self.device, dtype=self.dtype)
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
    def _keep(path: str, folder: Path) -> str:
        """The session's own link to (or copy of) an upload: gradio's cache deletes its files after an hour, while
        the session may stay open for longer. A clip the session keeps already is its own."""
        if Path(path).parent == folder:
            return path
        kept = folder / f"clip-{uuid.uuid4().hex[:8]}{Path(path).suffix.lower()}"
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
        return session

    def use_video_curve(self, session: Session) -> Session:
        self._need_clip(session)
        session.timeline, session.source = session.phi, VIDEO_SOURCE
        return session

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
        heard = session.shown.heard if session.shown is not None else None
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
        }

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
        if seed is not None and seed >= 0:  # the page's number field: a negative seed asks for a fresh one
            seed = validate.seed(int(seed) if float(seed).is_integer() and seed < 2**63 else seed)
        seed = int(np.random.default_rng().integers(2**31 - 1)) if seed is None or seed < 0 else seed
        if steps is not None:  # the page's slider gives 10.0: a whole float is its whole number
            steps = validate.whole(int(steps) if float(steps).is_integer() else steps, "steps")
        edits, source = list(session.edits), session.source  # as they are now: edits made during the take wait
        pipe = self.pipeline(session.model)
        if pipe.config.phi.text_dim and session.phi_prompt != prompt:  # phi's curve depends on what is asked for
            session.phi, session.phi_prompt = pipe.prepare(session.video, prompt=prompt), prompt
            if session.source == VIDEO_SOURCE:
                session.timeline = session.phi
        start = time.monotonic()  # the job limit is the sampler's

        def callback(step: int, total: int) -> None:
            if time.monotonic() - start > self.job_seconds:
                raise JobTooLong(f"the take ran past this studio's limit of {self.job_seconds:.0f} s; use fewer steps")
            if progress is not None:
                progress(step / total, f"step {step}/{total}")

        result = pipe(
            timeline=session.timeline,
            edits=edits,
            prompt=prompt,
            negative_prompt=negative_prompt or "",
            seed=seed,
            steps=steps,
            guidance=guidance,
            callback=callback,
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
        session.shown = take
        session.takes = [*session.takes, take]
        for old in session.takes[:-MAX_TAKES]:
            old.delete()
        session.takes = session.takes[-MAX_TAKES:]
        return take

    def reopen(self, session: Session, number: int) -> tuple[Session, Take]:
        """A kept take's prompt, seed and curve edits back in the controls."""
        for take in session.takes:
            if take.number == number:
                session.edits = list(take.edits)
                session.shown = take
                return session, take
        raise UserError(f"there is no take {number}")

    # ------------------------------------------------------------------------------------------- helpers

    def _need_clip(self, session: Session) -> None:
        if session.timeline is None:
            raise UserError("upload a video first")

    def _frames(self, session: Session) -> int:
        return max(1, math.ceil(session.timeline.duration * session.audio.frame_rate))

    def forget_takes(self, session: Session) -> None:
        """Delete the files of a session's takes."""
        for take in session.takes:
            take.delete()
        session.takes, session.shown = [], None

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
            files = gr.File(label="downloads: MP4, WAV, curve CSV", file_count="multiple", interactive=False)
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
            s = studio.open_video(s, uploaded(video), model)
            note = f"{s.timeline.duration:.2f} s. The curve is φ's prediction from the video; drag on it to draw."
            return {session: s, curve: studio.view(s), status: note, takes: takes_table(s), reopen: choices(s)}

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

        everything = [session, curve, status, takes, prompt, negative, seed, result, files, reopen]
        # what runs the model waits in one queue, one job at a time; edits of the curve never wait behind a take
        model_job = dict(outputs=everything, concurrency_id="model", concurrency_limit=1, show_progress_on=[curve])
        edit_job = dict(outputs=everything, concurrency_limit=None, show_progress="hidden")
        # every event is a named endpoint of the page's API (docs/studio.md, "The studio's API")
        video.change(guarded(on_video), [video, session, model], api_name="open_video", **model_job)
        model.change(guarded(on_model), [video, session, model], api_name="switch_model", **model_job)
        use_ref.click(guarded(on_reference), [session, reference], api_name="use_reference", **model_job)
        use_video.click(guarded(on_video_curve), [session], api_name="use_video_energy", **model_job)
        take_job = {**model_job, "show_progress_on": [result]}  # the progress bar where the take will play
        inputs = [session, prompt, negative, seed, steps, guidance]
        generate.click(guarded(on_generate), inputs, api_name="generate", **take_job)
        apply.click(guarded(on_range), [session, op, start, end, amount], api_name="edit_range", **edit_job)
        undo.click(guarded(on_undo), [session], api_name="undo", **edit_job)
        reset.click(guarded(on_reset), [session], api_name="reset", **edit_job)
        curve.stroke(guarded(on_stroke), [curve, session], api_name="draw", **edit_job)
        reopen.input(guarded(on_reopen), [session, reopen], api_name="reopen_take", **edit_job)
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
    dtype: str = "fp32",
) -> None:
    """Serve the studio until interrupted (Ctrl+C or SIGTERM); every file it wrote is removed at the end."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline, and nothing reported anywhere

    def interrupt(signum, frame):  # SIGTERM (a service manager, `kill`) stops it as Ctrl+C does, cleaning up
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
    _bound_malloc_arenas()
    studio = Studio(models, max_video_seconds=max_video_seconds, job_seconds=job_seconds, device=device, dtype=dtype)
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
