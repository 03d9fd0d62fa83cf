"""Command line: a thin shell over the Python API.

    rewas generate VIDEO --prompt TEXT -o OUT.mp4 [--wav OUT.wav] [--energy-out E.csv] [--model NAME|DIR] ...
    rewas energy AUDIO_OR_VIDEO --out E.csv [--plot E.png]
    rewas evaluate MANIFEST.jsonl --out REPORT.json [--markdown REPORT.md] [--embedders NAME=PATH ...]
    rewas convert --rewas-ckpt F --phi-ckpt F --synchformer-ckpt F [--roberta-dir D] -o DIR
    rewas download DIR
    rewas train cache|phi|adapter DATA --model M -o OUT [--steps N ...]
    rewas corpus OUT [--clips-per-class N]
    rewas info MODEL [--json]

User errors (bad input, bad options: rewas.errors.UserError) print one line and exit with 2; any other failure is
ours: one line, exit 1, and REWAS_DEBUG=1 re-raises it with its traceback. No partial output is ever left behind.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import errno
import json
import logging
import math
import os
import select
import signal
import sys
import threading
from pathlib import Path

from ._optional import require, require_extra
from .errors import DownloadError, MissingFileError, Terminated, UserError, is_environment, one_line
from .soundtrack import LAYER_FORM, LAYER_HELP

EXIT_USER = 2
EXIT_INTERNAL = 1
EXIT_PIPE = 128 + 13  # as a Unix tool that SIGPIPE ends (SIGPIPE is 13 on Linux and macOS)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage + message otherwise)
        print(f"rewas: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USER)

    def exit(self, status=0, message=None):  # --help, --version: what they printed is written as a command's is
        failed = _flush_stdout() if status == 0 else None
        super().exit(status if failed is None else failed, message)

    def parse_known_args(self, args=None, namespace=None):
        # a subcommand's parser reports its own unknown flags, so the hint names the command that was run
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def _check_suffix(path: str | None, suffixes: tuple[str, ...], flag: str) -> None:
    if path is not None and Path(path).suffix.lower() not in suffixes:
        raise UserError(f"{flag} {path}: must end in {' or '.join(suffixes)}")


def _check_outputs(inputs: list[str], outputs: list[str | None]) -> None:
    """Before any work: output folders exist, no output is an input, no two outputs are the same file."""
    from .mux import check_output_path

    given = [o for o in outputs if o is not None]
    if len({os.path.abspath(o) for o in given}) != len(given):
        raise UserError("two outputs name the same file")
    for out in given:
        check_output_path(out, *inputs, suffixes=(Path(out).suffix.lower(),))


def _check_sampler_options(args) -> None:
    """The sampler options, by the rules the Python API applies (rewas/validate.py), before any work."""
    from . import validate

    for flag, name, check in (
        ("--steps", "steps", validate.whole),
        ("--batch-size", "batch_size", validate.whole),
        ("--guidance", "guidance", validate.guidance),
        ("--eta", "eta", validate.eta),
        ("--control-scale", "control_scale", validate.control_scale),
        ("--seed", "seed", validate.seed),
    ):
        value = getattr(args, name, None)
        if value is not None:
            check(value, flag)


def _precision(args, device) -> object:
    """--dtype as a torch dtype on `device`; with -v, which one and why (for auto: the CPU's bf16 support)."""
    import torch

    from . import validate

    dtype = validate.dtype(args.dtype, torch.device(device), "--dtype")
    if getattr(args, "verbose", False):
        why = (
            f"auto: {validate.auto_dtype(torch.device(device))[1]}" if args.dtype == "auto" else f"--dtype {args.dtype}"
        )
        print(
            f"rewas: on {device}, the diffusion model in {str(dtype).removeprefix('torch.')} ({why})", file=sys.stderr
        )
    return dtype


class _SayHandler(logging.Handler):
    """A library message as one line on stderr (whichever stderr is current: tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"rewas: {record.getMessage()}", file=sys.stderr)


def _load(args, device, dtype):
    """The model of --model on `device` in `dtype`, its networks on --runtime; with -v, which runtime and why."""
    from . import validate
    from .pipeline import ReWaSPipeline

    log = logging.getLogger("rewas.runtime")  # a first use of OpenVINO converts the model: say so, it takes a while
    log.setLevel(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    if not any(isinstance(h, _SayHandler) for h in log.handlers):
        log.addHandler(_SayHandler())
    pipe = ReWaSPipeline.from_pretrained(
        args.model, tokenizer_dir=args.tokenizer_dir, device=device, dtype=dtype, runtime=args.runtime
    )
    if getattr(args, "verbose", False):
        print(f"rewas: the video encoder and the denoiser on {pipe.runtime} ({pipe.runtime_reason})", file=sys.stderr)
    if getattr(args, "steps", None) is not None:  # before any progress bar: one line
        validate.steps(args.steps, pipe.config.diffusion.num_train_timesteps, "--steps")
    return pipe


def _device(name: str | None):
    from . import validate

    return validate.device(name, "--device")


class _EditAction(argparse.Action):
    """Collects the curve edits of every flag into one list, in the order given on the command line."""

    def __call__(self, parser, namespace, value, option_string=None):
        from .edits import parse

        try:
            edit = parse(self.dest.removeprefix("edit_"), value)
        except UserError as e:
            parser.error(str(e))
        namespace.edits = [*(getattr(namespace, "edits", None) or []), edit]


def add_edit_arguments(parser: argparse.ArgumentParser) -> None:
    from .edits import FORMS

    edits = parser.add_argument_group(
        "curve edits", "applied in the order given to the curve in use (the video's, --energy-in's or --energy-from's)"
    )
    edits.set_defaults(edits=[])
    for op, (flag, form, what, example) in FORMS.items():
        edits.add_argument(flag, dest=f"edit_{op}", action=_EditAction, metavar=form, help=f"{what}, e.g. {example}")


def cmd_generate(args) -> None:
    from tqdm import tqdm

    from . import validate
    from .audio import write_wav
    from .energy import read_csv, reference_curve, write_csv
    from .files import atomic_outputs
    from .frames import probe
    from .mux import CONTAINERS, mux
    from .pipeline import check_duration

    _check_suffix(args.output, tuple(CONTAINERS), "-o")
    _check_suffix(args.wav, (".wav",), "--wav")
    _check_suffix(args.energy_out, (".csv",), "--energy-out")
    _check_outputs([args.video, args.energy_in, args.energy_from], [args.output, args.wav, args.energy_out])
    _check_sampler_options(args)
    if args.layer or args.soundtrack:
        return _generate_layers(args)
    if args.stems:
        raise UserError("--stems: a one-prompt soundtrack has no stems; give --layer or --soundtrack")
    if args.prompt is None:
        raise UserError("--prompt is missing: say what should be heard (or give --layer/--soundtrack for layers)")
    validate.prompt(args.prompt, "--prompt")
    if args.tokenizer_dir is not None and not os.path.isdir(args.tokenizer_dir):
        raise MissingFileError(f"--tokenizer-dir {args.tokenizer_dir}: no such folder")
    info = check_duration(probe(args.video))  # fails fast on a bad video, before the model loads
    energy = read_csv(args.energy_in) if args.energy_in else None
    if args.energy_from:
        energy = reference_curve(args.energy_from, info.duration)
    device = _device(args.device)
    dtype = _precision(args, device)

    pipe = _load(args, device, dtype)
    with tqdm(total=None, desc="generating", unit="step", file=sys.stderr, disable=args.quiet) as bar:
        progress = _updater(bar)
        result = pipe(
            args.video,
            prompt=args.prompt,
            negative_prompt=args.negative_prompt,
            energy=energy,
            edits=args.edits,
            steps=args.steps,
            guidance=args.guidance,
            scheduler=args.scheduler,
            eta=args.eta,
            seed=args.seed,
            callback=progress,
            control_scale=args.control_scale,
            batch_size=args.batch_size,
        )
    outputs = [args.output, *(o for o in (args.wav, args.energy_out) if o)]
    with atomic_outputs(*outputs) as temps:  # all of them or none
        video, *others = temps
        mux(args.video, result.waveform, result.sample_rate, video, info)
        if args.wav:
            write_wav(others.pop(0), result.waveform, result.sample_rate)
        if args.energy_out:
            write_csv(others.pop(0), result.energy, pipe.config.audio)
    if not args.quiet:
        print(
            f"wrote {args.output} ({result.duration:.2f} s, seed {result.seed}, {result.timings['total']:.1f} s)",
            file=sys.stderr,
        )
    if args.verbose:
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items() if k != "total")
        print(f"rewas: stages: {stages}", file=sys.stderr)


def _generate_layers(args) -> None:
    """`generate --layer/--soundtrack`: a stereo soundtrack of layers; the mix muxed, each stem, curve and the
    soundtrack file in --stems."""
    from tqdm import tqdm

    from . import soundtrack as st
    from .audio import write_wav
    from .files import atomic_outputs
    from .frames import probe
    from .mux import mux
    from .pipeline import check_duration

    one_prompt = {
        "--prompt": args.prompt is not None,
        "--negative-prompt": bool(args.negative_prompt),
        "--energy-in": args.energy_in is not None,
        "--energy-from": args.energy_from is not None,
        "--energy-out": args.energy_out is not None,
        "curve edits": bool(args.edits),
    }
    clash = [flag for flag, given in one_prompt.items() if given]
    if clash:
        raise UserError(
            f"{', '.join(clash)}: with layers, each layer has its own (e.g. --layer 'rain;level=-5;mute=1-2'); "
            "its curve is written to --stems"
        )
    if args.layer and args.soundtrack:
        raise UserError("give --layer or --soundtrack, not both")
    if args.soundtrack:
        soundtrack = st.read_soundtrack(args.soundtrack)
    else:
        soundtrack = st.Soundtrack(tuple(st.parse_layer(spec) for spec in args.layer))
    flags = {k: getattr(args, k) for k in ("steps", "guidance", "scheduler", "eta") if getattr(args, k) is not None}
    if args.control_scale != 1.0:
        flags["control_scale"] = args.control_scale
    soundtrack = dataclasses.replace(soundtrack, model=str(args.model), **flags)  # the flags win over the file
    out = Path(args.output)
    stems = Path(args.stems) if args.stems else out.with_name(out.stem + ".stems")
    files = [p for layer in soundtrack.layers for p in (layer.energy_from, layer.energy_in) if p]
    inputs = [args.video, *([args.soundtrack] if args.soundtrack else []), *files]  # a layer's files are inputs too
    _check_outputs(inputs, [args.output, args.wav])
    _check_stems_folder(stems, inputs, [args.output, args.wav], args.soundtrack, given=bool(args.stems))
    info = check_duration(probe(args.video))  # fails fast on a bad video, before the model loads
    device = _device(args.device)
    dtype = _precision(args, device)
    pipe = _load(args, device, dtype)
    with tqdm(total=None, desc="generating", unit="step", file=sys.stderr, disable=args.quiet) as bar:
        result = st.render(
            pipe,
            args.video,
            soundtrack,
            seed=args.seed,
            batch_size=args.batch_size,
            callback=_updater(bar),
            progress=None if args.quiet else bar.set_postfix_str,
        )
    st.check_stems_folder(stems)  # as it is now: checked before the model loaded, and again as it is replaced
    with atomic_outputs(args.output, stems, *([args.wav] if args.wav else [])) as (video, folder, *wav):
        mux(args.video, result.mix, result.sample_rate, video, info)
        folder.mkdir()
        st.write_stems_into(folder, result, pipe.config.audio, stems)
        if wav:
            write_wav(wav[0], result.mix, result.sample_rate)
    if not args.quiet:
        n = len(result.stems)
        master = f", mix lowered {-result.master_db:.1f} dB to stay under full scale" if result.master_db < 0 else ""
        print(
            f"wrote {args.output} ({result.duration:.2f} s, {n} layer{'s' * (n != 1)}, stereo{master}; stems, curves "
            f"and soundtrack.json in {stems}; {result.timings['total']:.1f} s)",
            file=sys.stderr,
        )
        from .tracking import FIXED_NOTE

        for i, track in enumerate(result.tracks):
            if track is not None and track.fixed:
                print(f"rewas: layer {i + 1}'s region: {FIXED_NOTE}", file=sys.stderr)
    if args.verbose:
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items() if k != "total")
        print(f"rewas: stages: {stages}", file=sys.stderr)


def _check_stems_folder(
    stems: Path, inputs: list[str], outputs: list[str | None], read: str | None, given: bool
) -> None:
    """The stems folder may be new, empty, or an earlier run's (`soundtrack.is_stems_folder`): it is replaced whole.
    Anything else there, or an input or output inside it, or the working folder, is refused before any work; but
    for `read`, its soundtrack.json, which was read already (`--soundtrack OUT.stems/soundtrack.json`: the same
    audio again). `given`: named by --stems (else the default beside the output, and the error says so)."""
    from .soundtrack import check_stems_folder

    named = f"--stems {stems}" if given else f"stems folder {stems}"
    check_stems_folder(stems, named)
    if not stems.resolve().parent.is_dir():
        raise UserError(f"{named}: folder {stems.parent} does not exist")
    if Path.cwd().resolve().is_relative_to(stems.resolve()):
        raise UserError(f"{named}: is the working folder or holds it; name a folder beside it")
    for path in [*inputs, *(o for o in outputs if o)]:
        if read is not None and path == read and Path(path).resolve() == (stems / "soundtrack.json").resolve():
            continue
        if Path(path).resolve().is_relative_to(stems.resolve()):
            raise UserError(f"{named}: holds {path}, which would be replaced with the stems")


def cmd_batch(args) -> None:
    from tqdm import tqdm

    from . import batch, validate

    _check_sampler_options(args)
    if args.prompt is not None:
        validate.prompt(args.prompt, "--prompt")
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise UserError(f"-o {outdir}: exists and is not a folder")
    items = batch.read_items(args.input, args.prompt)  # fails fast on a bad manifest, before the model loads
    batch.check_outputs(args.input, items, outdir, wav=args.wav, energy=args.energy_out)
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    state = None
    if world > 1:  # launched by `accelerate launch` (or torchrun): one model per rank, items split by position
        accelerate = require("accelerate", extra="train", for_="rewas batch on several ranks")
        # a CPU rank must say so: accelerate otherwise takes a GPU-less launch for a single process
        state = accelerate.PartialState(cpu=_device(args.device).type == "cpu")
        if (state.process_index, state.num_processes) != (rank, world):
            raise RuntimeError(
                f"rank {rank} of {world} in the environment, {state.process_index} of "
                f"{state.num_processes} in accelerate"
            )
        rank, world = state.process_index, state.num_processes
    device = state.device if state is not None and args.device is None else _device(args.device)
    dtype = _precision(args, device)
    outdir.mkdir(parents=True, exist_ok=True)
    if args.overwrite and rank == 0:
        for path in batch.results_files(outdir):
            path.unlink()
    if state is not None:
        state.wait_for_everyone()
    options = batch.Options(
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
        wav=args.wav,
        energy=args.energy_out,
        batch_size=args.batch_size,
    )
    pipe = _load(args, device, dtype)
    todo = batch.todo(items, outdir, rank=rank, world=world, overwrite=args.overwrite)
    prefetch = args.prefetch == "on" or (args.prefetch == "auto" and pipe.device.type != "cpu")
    with tqdm(total=len(todo), desc="batch", unit="item", file=sys.stderr, disable=args.quiet or rank != 0) as bar:

        def progress(item, row) -> None:
            _stop_if_swallowed()
            bar.update(1)
            if row["status"] != "ok":
                bar.write(f"rewas: {item.name}: {row['error']}", file=sys.stderr)

        # clips sampled together, at most; on a 2-core CPU grouping was no faster (38.9 vs 40.1 items/min)
        group = args.batch_size or (1 if pipe.device.type == "cpu" else 8)
        run = dict(rank=rank, world=world, progress=progress, prefetch=prefetch, group=group)
        batch.run(pipe, todo, outdir, options, **run)
    if state is not None:
        state.wait_for_everyone()
    if rank == 0:
        batch.merge_results(outdir)
        counts = batch.summary(items, outdir)
        print(
            f"rewas batch: {counts['ok']} done, {counts['failed']} failed, {counts['pending']} not done "
            f"({len(items)} items{f' on {world} ranks' if world > 1 else ''}; {outdir / 'results.jsonl'})",
            file=sys.stderr,
        )
        if counts["ok"] != len(items):
            raise BatchIncomplete()


class BatchIncomplete(Exception):
    """Some items failed (`batch`, `evaluate`): their errors are in the results or the report and were counted in
    the summary line; exit 1 without another message."""


def cmd_energy(args) -> None:
    from .audio import load_audio
    from .config import AudioConfig
    from .energy import waveform_energy, write_csv
    from .files import atomic_path

    _check_suffix(args.out, (".csv",), "--out")
    _check_suffix(args.plot, (".png",), "--plot")
    _check_outputs([args.input], [args.out, args.plot])
    if args.plot:
        require_extra("plot", for_="rewas energy --plot")
    cfg = AudioConfig()
    wav = load_audio(args.input, cfg.sample_rate)
    energy = waveform_energy(wav, cfg).numpy()
    with atomic_path(args.out) as tmp:
        write_csv(tmp, energy, cfg)
    if args.plot:
        matplotlib = require("matplotlib", extra="plot", for_="rewas energy --plot")
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(10, 3), dpi=100)
        ax.plot(range(len(energy)), energy, lw=1)
        ax.set_xticks(ax.get_xticks(), [f"{t / cfg.frame_rate:g}" for t in ax.get_xticks()])
        ax.set_xlim(0, max(1, len(energy) - 1))
        ax.set_xlabel("time (s)")
        ax.set_ylabel("energy (mean log-mel)")
        ax.set_title(Path(args.input).name)
        fig.tight_layout()
        with atomic_path(args.plot) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
    written = f"{args.out}" + (f" and {args.plot}" if args.plot else "")
    print(f"rewas energy: {len(energy)} frames ({len(energy) / cfg.frame_rate:.2f} s) -> {written}", file=sys.stderr)


def cmd_ui(args) -> None:
    require_extra("ui", for_="rewas ui")
    from .config import load_config
    from .studio import launch

    models = list(dict.fromkeys([args.model, *args.also]))
    for name in models:
        load_config(name)  # a bad model is a one-line error before gradio starts
    limits = (
        ("--max-upload-mb", args.max_upload_mb),
        ("--job-seconds", args.job_seconds),
        ("--max-video-seconds", args.max_video_seconds),
    )
    for flag, value in limits:
        if not (value > 0 and math.isfinite(value)):
            raise UserError(f"{flag} must be a number > 0")
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: must be 1-65535")
    if args.queue < 1:
        raise UserError("--queue must be at least 1")
    device = None if args.device is None else str(_device(args.device))
    _precision(args, device or str(_device(None)))  # a bad --dtype (fp16 on a CPU) fails here, in one line
    if args.runtime == "openvino":  # likewise: not at the first take, once the page is up
        from .runtime import resolve

        resolve("openvino", _device(device), 0)  # on a CPU, with the extra installed
    print(f"rewas studio: http://{args.host}:{args.port} (Ctrl+C stops it)", file=sys.stderr)
    launch(
        models,
        host=args.host,
        port=args.port,
        max_upload_mb=args.max_upload_mb,
        max_video_seconds=args.max_video_seconds,
        job_seconds=args.job_seconds,
        queue_size=args.queue,
        device=device,
        dtype=args.dtype,
        runtime=args.runtime,
    )


def cmd_info(args) -> None:
    from .pipeline import count_parameters, load_config

    config = load_config(args.model)
    counts = count_parameters(config)
    if args.json:
        print(
            json.dumps(
                {"model": str(args.model), "name": config.name, "parameters": counts, "config": config.to_dict()},
                indent=2,
            )
        )
        return
    print(f"model {args.model} ({config.name})")
    for name, n in counts.items():
        print(f"  {name:<14} {n / 1e6:10.3f} M  ({n:,})")
    c = config
    print(
        f"  audio: {c.audio.sample_rate} Hz, window {c.audio.window_seconds} s = {c.audio.window_frames} mel frames, "
        f"latent {c.latent_shape}"
    )
    print(
        f"  video: {c.video.fps:g} fps, {c.video.crop}x{c.video.crop}, segments {c.video.segment_frames}/"
        f"{c.video.segment_stride}; {c.diffusion.prediction} prediction, "
        f"sampler {c.sampler.scheduler} {c.sampler.steps} "
        f"steps, guidance {c.sampler.guidance}"
    )
    import torch

    from . import validate
    from .runtime import resolve

    dtype, why = validate.auto_dtype(torch.device("cpu"))
    print(f"  on this machine's CPU, --dtype auto runs it in {str(dtype).removeprefix('torch.')} ({why})")
    where, why = resolve("auto", torch.device("cpu"), counts["unet"] + counts["adapter"])
    print(f"  and --runtime auto its video encoder and denoiser on {where} ({why})")


def cmd_evaluate(args) -> None:
    from tqdm import tqdm

    from .evaluate.report import ITEM_METRICS, OPTIONAL_METRICS, evaluate, read_manifest, write_report

    _check_suffix(args.out, (".json",), "--out")
    _check_suffix(args.markdown, (".md",), "--markdown")
    _check_outputs([args.manifest], [args.out, args.markdown])
    require_extra("eval", for_="rewas evaluate")
    which = tuple(m.strip() for m in args.metrics.split(",")) if args.metrics else ITEM_METRICS
    unknown = set(which) - set(ITEM_METRICS) - set(OPTIONAL_METRICS)
    if unknown:
        known = ", ".join(ITEM_METRICS + OPTIONAL_METRICS)
        raise UserError(f"--metrics: unknown {sorted(unknown)}; choose from {known}")
    embedders = {}
    for spec in args.embedders or []:
        name, _, path = spec.partition("=")
        if not path:
            raise UserError(f"--embedders {spec}: expected NAME=PATH (e.g. panns=Cnn14_16k_mAP=0.438.pth)")
        if not os.path.exists(path):  # fail before hours of work, not after
            raise UserError(f"--embedders {spec}: {path} does not exist (see docs/evaluation.md for the files)")
        embedders[name] = path
    read_manifest(args.manifest)  # a malformed manifest fails now, not behind a progress bar
    with tqdm(total=None, desc="evaluating", unit="clip", file=sys.stderr, disable=args.quiet) as bar:
        progress = _updater(bar)
        report = evaluate(
            args.manifest, which=which, onset_seconds=args.onset_seconds, embedders=embedders, progress=progress
        )
    write_report(report, args.out, args.markdown)
    failed = sum(1 for r in report["items"] if "error" in r)
    summary = ", ".join(f"{k} {v:.4f}" for k, v in {**report["mean"], **report["set"]}.items() if v is not None)
    print(f"{len(report['items'])} clips ({failed} failed): {summary or 'no metric applied'}", file=sys.stderr)
    if failed:  # the report is written, with each clip's error; the run is not a success
        raise BatchIncomplete()


def cmd_convert(args) -> None:
    from .config import PRESETS
    from .convert import convert

    if args.preset not in PRESETS:
        raise UserError(f"--preset {args.preset}: choose one of {', '.join(PRESETS)}")
    out = Path(args.output)
    _require_empty(out)
    for flag, path in (
        ("--rewas-ckpt", args.rewas_ckpt),
        ("--phi-ckpt", args.phi_ckpt),
        ("--synchformer-ckpt", args.synchformer_ckpt),
        ("--roberta-dir", args.roberta_dir),
        ("--audioldm-dir", args.audioldm_dir),
        ("--vae-ckpt", args.vae_ckpt),
        ("--hifigan-ckpt", args.hifigan_ckpt),
        ("--clap-ckpt", args.clap_ckpt),
    ):
        if path is not None and not os.path.exists(path):
            raise UserError(f"{flag} {path}: no such file or folder")
    _, reports = convert(
        out,
        rewas_ckpt=args.rewas_ckpt,
        phi_ckpt=args.phi_ckpt,
        synchformer_ckpt=args.synchformer_ckpt,
        roberta_dir=args.roberta_dir,
        audioldm_dir=args.audioldm_dir,
        vae_ckpt=args.vae_ckpt,
        hifigan_ckpt=args.hifigan_ckpt,
        clap_ckpt=args.clap_ckpt,
        config=PRESETS[args.preset](),
        use_ema=not args.no_ema,
        allow_partial=args.allow_partial,
    )
    for r in reports:
        loaded = ", ".join(f"{c} {n}" for c, n in r.loaded.items())
        print(f"{r.source}: loaded {loaded or 'nothing'}", file=sys.stderr)
        for component, origins in r.origins.items():
            came = ", ".join(f"{n} from {Path(f).name}" for f, n in origins.items() if n)
            print(f"  {component}: {came or 'nothing'}", file=sys.stderr)
        for reason, n in r.skipped.items():
            print(f"  skipped {n} keys: {reason}", file=sys.stderr)
        if r.problems():
            print(f"  PARTIAL: {r.problems()}", file=sys.stderr)
    if args.roberta_dir is None and reports:
        print(
            "note: no --roberta-dir given; pass --tokenizer-dir to `rewas generate` (RoBERTa vocab.json + merges.txt)",
            file=sys.stderr,
        )
    print(f"wrote {out}", file=sys.stderr)


def cmd_check(args) -> None:
    from .check import check

    verdict = check(args.path)
    print(verdict.text())
    if not verdict.ok:
        raise BatchIncomplete()  # the verdict is printed: exit 1 without another line


def cmd_download(args) -> None:
    from .download import download

    require_extra("convert", for_="rewas download")
    download(
        args.folder,
        None if args.no_convert else Path(args.folder) / "model",
        progress=lambda m: print(m, file=sys.stderr),
    )


def _updater(bar):
    """progress(done, total) callback that drives a tqdm bar, a step where a swallowed interruption stops the work
    (`_stop_if_swallowed`)."""

    def update(done: int, total: int) -> None:
        _stop_if_swallowed()
        bar.total = total
        bar.update(done - bar.n)

    return update


def cmd_train(args) -> None:
    require_extra("train", for_="rewas train")
    from tqdm import tqdm

    from .pipeline import ReWaSPipeline
    from .train import CachedClips, TrainConfig, build_cache, refresh_latents, train

    if args.what != "classifier" and args.model is None:
        raise UserError(f"rewas train {args.what} needs --model (a preset or model folder)")
    if args.what != "latents" and args.output is None:
        raise UserError(f"rewas train {args.what} needs -o/--output")
    if args.what == "cache":
        from .train.cache import read_manifest

        read_manifest(args.data)  # a malformed manifest fails now, not after the model has loaded
        pipe = ReWaSPipeline.from_pretrained(args.model, tokenizer_dir=args.tokenizer_dir)
        with tqdm(total=None, desc="caching", unit="clip", file=sys.stderr) as bar:
            build_cache(pipe, args.data, args.output, progress=_updater(bar))
        print(f"wrote {args.output}", file=sys.stderr)
        return
    if args.what == "latents":
        if not os.path.isdir(args.data):
            raise UserError(f"{args.data}: no such cache folder")
        pipe = ReWaSPipeline.from_pretrained(args.model, tokenizer_dir=args.tokenizer_dir)
        with tqdm(total=None, desc="encoding latents", unit="clip", file=sys.stderr) as bar:
            refresh_latents(pipe, args.data, progress=_updater(bar))
        print(f"re-encoded the latents of {args.data} with {args.model}'s VAE", file=sys.stderr)
        return
    data = CachedClips(args.data)
    if args.what == "classifier":  # trained on its own, not as part of a pipeline
        from .evaluate.embedders import ClassifierBundle

        if not data.labels:
            raise UserError(f'{args.data}: the cache has no class labels (its manifest needs a "class" per line)')
        model = ClassifierBundle(data.classes)
    else:
        model = ReWaSPipeline.from_pretrained(args.model, tokenizer_dir=args.tokenizer_dir)
    cfg = TrainConfig(
        **{k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    )
    result = train(
        model,
        data,
        args.what,
        args.output,
        cfg,
        resume=not args.restart,
        log=lambda d: print(json.dumps(d), file=sys.stderr, flush=True),
    )
    print(f"trained {args.what} for {result['step']} steps; model in {Path(args.output) / 'model'}", file=sys.stderr)


def _require_empty(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: folder exists and is not empty")


def cmd_corpus(args) -> None:
    require_extra("train", for_="rewas corpus", modules=("scipy",))
    from tqdm import tqdm

    from .train.corpus import build_corpus, film_corpus, style_corpus

    out = Path(args.output)
    _require_empty(out)
    if args.clips_per_class < 1:
        raise UserError("--clips-per-class must be at least 1")
    with tqdm(total=None, desc="synthesising", unit="clip", file=sys.stderr) as bar:
        build_corpus(out, args.clips_per_class, seed=args.seed, debian=args.debian, progress=_updater(bar))
    if args.camera:
        with tqdm(total=None, desc="filming", unit="clip", file=sys.stderr) as bar:
            film_corpus(out, progress=_updater(bar))
    if args.styles:
        with tqdm(total=None, desc="restyling", unit="clip", file=sys.stderr) as bar:
            style_corpus(out, progress=_updater(bar))
            style_corpus(out, splits=("val", "test"), novel=True, progress=_updater(bar))
    also = "".join(
        f" and {name}_{'/'.join(splits)}.jsonl"
        for name, splits, wanted in (
            ("camera", ("train", "val", "test"), args.camera),
            ("styled", ("train", "val", "test"), args.styles),
            ("novel", ("val", "test"), args.styles),
        )
        if wanted
    )
    print(f"wrote {out / 'manifest.jsonl'} (+ train/val/test.jsonl{also})", file=sys.stderr)


RUNTIME_CHOICES = ["auto", "torch", "openvino"]  # rewas.runtime.RUNTIMES (not imported here: it imports torch)
RUNTIME_HELP = (
    "where the video encoder and the denoiser run (default auto: OpenVINO for a large model, such as the paper's, on "
    "a CPU when the [openvino] extra is installed, else PyTorch; -v says which)"
)
DTYPE_CHOICES = ["fp32", "bf16", "fp16", "auto"]
DTYPE_HELP = (
    "precision of the diffusion model (default auto: bf16 where the CPU computes it natively, AVX512-BF16 or AMX, "
    "fp32 elsewhere and on GPUs; `rewas info` says which; -v says what was used)"
)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .config import load_config

    parser = _Parser(prog="rewas", description="Give silent video a soundtrack (ReWaS: video + text -> audio).")
    parser.add_argument("--version", action="version", version=f"rewas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    # the help states the samplers the models really use: each model's config carries its own
    default, paper = load_config("default").sampler, load_config("paper").sampler

    def sampler_default(field: str) -> str:
        mine, theirs = getattr(default, field), getattr(paper, field)
        return f"default: the model's; {mine} for the default model, {theirs} for the paper"

    g = sub.add_parser("generate", help="generate audio for a video and mux it into a copy")
    g.add_argument("video", help="input video (any format FFmpeg reads)")
    g.add_argument(
        "--prompt", help="what should be heard, e.g. 'dog growling while biting a toy' (or give --layer/--soundtrack)"
    )
    g.add_argument("-o", "--output", required=True, help="output video (.mp4, .mov, .m4v, .mkv)")
    g.add_argument("--wav", help="also write the audio as a 16 kHz float WAV")
    g.add_argument("--energy-out", help="also write the energy curve used (CSV: time_s,energy)")
    g.add_argument("--negative-prompt", default="", help="what should not be heard (guidance steers away from it)")
    source = g.add_mutually_exclusive_group()
    source.add_argument(
        "--energy-in",
        help="steer with this energy curve instead of the video's (CSV time_s,energy: seconds of the video, not "
        "stretched; the end values hold past its ends)",
    )
    source.add_argument(
        "--energy-from",
        metavar="AUDIO_OR_VIDEO",
        help="steer with the energy of this recording, stretched to the video's length, instead of the video's",
    )
    add_edit_arguments(g)
    layers = g.add_argument_group("layers", "a stereo soundtrack of several sounds, each with its own energy and pan")
    layers.add_argument("--layer", action="append", default=[], metavar=LAYER_FORM, help=LAYER_HELP)
    layers.add_argument(
        "--soundtrack", metavar="FILE", help="the layers and settings of a soundtrack file (JSON or TOML; see docs)"
    )
    layers.add_argument(
        "--stems",
        metavar="DIR",
        help="where each layer's stem (WAV), curve (CSV) and the soundtrack file go (default: OUTPUT's name + .stems)",
    )
    g.add_argument(
        "--model",
        default="default",
        help="'default' (the small model embedded in the package, offline), a model folder (e.g. the paper "
        "model from `rewas convert`), or a random-weight preset (debug, small, paper)",
    )
    g.add_argument(
        "--control-scale",
        type=float,
        default=1.0,
        help="strength of the energy control, >= 0 (1: as trained, 0: none, the sound follows the text alone)",
    )
    g.add_argument("--tokenizer-dir", help="folder with RoBERTa vocab.json + merges.txt (paper-sized models)")
    g.add_argument("--steps", type=int, help=f"sampler steps ({sampler_default('steps')})")
    g.add_argument(
        "--guidance", type=float, help=f"classifier-free guidance scale, >= 0 ({sampler_default('guidance')})"
    )
    g.add_argument("--scheduler", choices=["ddim", "dpmsolver++"], help=f"sampler ({sampler_default('scheduler')})")
    g.add_argument("--eta", type=float, help=f"DDIM's eta, >= 0; ddim only ({sampler_default('eta')})")
    g.add_argument("--seed", type=int, help="random seed (default: a fresh one, printed at the end)")
    g.add_argument(
        "--batch-size",
        type=int,
        help="windows of a long video per denoiser call (default 4 on the CPU, 8 on other devices)",
    )
    g.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    g.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto", help=DTYPE_HELP)
    g.add_argument("--runtime", choices=RUNTIME_CHOICES, default="auto", help=RUNTIME_HELP)
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g.add_argument("-v", "--verbose", action="store_true", help="say the precision chosen and the stages' times")
    g.set_defaults(func=cmd_generate)

    b = sub.add_parser("batch", help="generate soundtracks for many videos with one loaded model; resumable")
    b.add_argument("input", help="JSONL or CSV (video, prompt, optional seed/energy_in/steps/guidance/name/"
                   "reference per item; or layers/soundtrack instead of a prompt: a stereo soundtrack of layers), "
                   "or a folder of videos (with --prompt or a NAME.txt beside each)")  # fmt: skip
    b.add_argument("-o", "--output", required=True, help="output folder: NAME.mp4 per item and results.jsonl")
    b.add_argument("--prompt", help="the prompt of items that have none")
    b.add_argument("--wav", action="store_true", help="also write NAME.wav")
    b.add_argument("--energy-out", action="store_true", help="also write NAME.csv, the energy curve used")
    b.add_argument("--overwrite", action="store_true", help="redo every item (default: skip the ones done)")
    b.add_argument(
        "--prefetch",
        choices=["auto", "on", "off"],
        default="auto",
        help="read the next video and run phi on it in a thread during sampling (auto: on a GPU only; on a 2-core "
        "CPU the two compete for the cores)",
    )
    b.add_argument("--model", default="default", help="as for generate")
    b.add_argument("--tokenizer-dir", help="folder with RoBERTa vocab.json + merges.txt (paper-sized models)")
    b.add_argument("--seed", type=int, default=0, help="run seed; an item's seed is its own or this + its name")
    b.add_argument("--steps", type=int, help=f"sampler steps ({sampler_default('steps')})")
    b.add_argument(
        "--guidance", type=float, help=f"classifier-free guidance scale, >= 0 ({sampler_default('guidance')})"
    )
    b.add_argument(
        "--batch-size",
        type=int,
        help="windows per denoiser call, from up to this many clips sampled together (default: 8 off the CPU; on "
        "the CPU one clip at a time and 4 windows of a long one)",
    )
    b.add_argument("--device", help="torch device (default: the rank's, else cuda if available, else cpu)")
    b.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto", help=DTYPE_HELP)
    b.add_argument("--runtime", choices=RUNTIME_CHOICES, default="auto", help=RUNTIME_HELP)
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    b.add_argument("-v", "--verbose", action="store_true", help="say the precision chosen")
    b.set_defaults(func=cmd_batch)

    e = sub.add_parser("energy", help="write the energy curve (training target) of an audio or video file")
    e.add_argument("input", help="audio or video file")
    e.add_argument("--out", required=True, help="CSV file: time_s,energy, one row per 10 ms mel frame")
    e.add_argument("--plot", help="also draw the curve to this PNG")
    e.set_defaults(func=cmd_energy)

    v = sub.add_parser("evaluate", help="metrics of generated audio (energy MAE, AV-Align, onsets, FD/KL/IS...)")
    v.add_argument("manifest", help='JSONL: {"video": ..., "audio": ..., "reference": ..., "prompt": ...} per line')
    v.add_argument("--out", required=True, help="report JSON: items, mean, set-level metrics, notes")
    v.add_argument("--markdown", help="also write the means as a Markdown table")
    v.add_argument(
        "--metrics",
        help="comma list of per-clip metrics (default: energy_mae,av_align,onset; also: defects, the dropout and "
        "click frames of steady material)",
    )
    v.add_argument("--onset-seconds", type=float, help="onset metrics on the first S seconds (CondFoleyGen: 2)")
    v.add_argument(
        "--embedders",
        nargs="*",
        metavar="NAME=PATH",
        help="embedder weights: panns, vggish, passt, msclap, laion_clap, synchformer, classifier (docs/evaluation.md)",
    )
    v.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("convert", help="import the released ReWaS, phi and Synchformer checkpoints into a model folder")
    c.add_argument("--rewas-ckpt", help="audioldm_m_rewas_vggsound.ckpt")
    c.add_argument("--phi-ckpt", help="phi_vggsound.ckpt")
    c.add_argument("--synchformer-ckpt", help="24-01-04T16-39-21.pt")
    c.add_argument("--vae-ckpt", help="vae_mel_16k_64bins.ckpt: the VAE, where the ReWaS file lacks it (AudioLDM's)")
    c.add_argument("--hifigan-ckpt", help="hifigan_16k_64bins.ckpt: the vocoder, where the ReWaS file lacks it")
    c.add_argument(
        "--clap-ckpt",
        help="clap_music_speech_audioset_epoch_15_esc_89.98.pt: the text tower, where the ReWaS file lacks it",
    )
    c.add_argument("--roberta-dir", help="folder with roberta-base vocab.json + merges.txt (copied into the model)")
    c.add_argument(
        "--audioldm-dir",
        help="a diffusers AudioLDM folder (e.g. cvssp/audioldm-m-full): its UNet, VAE, "
        "vocoder and text tower become the backbone; alone, a text-to-audio model without energy control",
    )
    c.add_argument("-o", "--output", required=True, help="model folder to write")
    c.add_argument("--preset", default="paper", help="architecture of the checkpoints (default: paper)")
    c.add_argument("--no-ema", action="store_true", help="use the raw UNet weights instead of the EMA copy")
    c.add_argument("--allow-partial", action="store_true", help="accept missing files/keys (those parts stay random)")
    c.set_defaults(func=cmd_convert)

    d = sub.add_parser("download", help="fetch the released weights (needs internet), then convert them into DIR/model")
    d.add_argument("folder", help="where the released files go")
    d.add_argument("--no-convert", action="store_true", help="only fetch the files")
    d.set_defaults(func=cmd_download)

    t = sub.add_parser(
        "train",
        help="build a training cache, or train a component (phi, adapter, unet, vae, vocoder, classifier) on one",
    )
    t.add_argument(
        "what",
        choices=["cache", "latents", "phi", "adapter", "unet", "vae", "vocoder", "classifier"],
        help="cache: encode a manifest; latents: re-encode a cache's latents with --model's (trained) VAE; "
        "otherwise the component to train",
    )
    t.add_argument("data", help="cache: JSONL manifest {video, audio, caption}; otherwise a cache folder")
    t.add_argument("--model", help="preset or model folder: frozen encoders / the model to train (not for classifier)")
    t.add_argument("--tokenizer-dir", help="RoBERTa vocab.json + merges.txt, if the model needs them")
    t.add_argument(
        "-o", "--output", help="cache folder, or training run folder (checkpoints/, model/); not for latents"
    )
    from .train.recipe import TrainConfig  # the defaults the help states are the trainer's own

    defaults = TrainConfig()
    for name, kind, what in (
        ("steps", int, "optimizer steps"),
        ("batch_size", int, "clips per step, per process"),
        ("lr", float, "peak learning rate (AdamW)"),
        ("warmup", int, "steps of linear warm-up"),
        ("grad_accum", int, "batches accumulated into one step"),
        ("checkpoint_every", int, "steps between checkpoints (and at the last)"),
        ("log_every", int, "steps between loss lines"),
        ("seed", int, "seed of the data order, the noise and every other draw"),
        ("num_workers", int, "data-loading processes"),
        ("crop_frames", int, "train on random crops of this many mel frames (0: the whole window)"),
    ):
        flag = f"--{name.replace('_', '-')}"
        t.add_argument(flag, dest=name, type=kind, help=f"{what} (default {getattr(defaults, name):g})")
    t.add_argument(
        "--mixed-precision",
        choices=["no", "fp16", "bf16"],
        dest="mixed_precision",
        help="autocast precision of the trained part's loss (fp16: CUDA only; default no)",
    )
    t.add_argument(
        "--text-dropout",
        type=float,
        dest="text_dropout",
        help="the share of clips trained with the empty prompt instead of their caption (UNet, adapter, a phi that "
        "reads the prompt; default 0.3)",
    )
    t.add_argument(
        "--lr-schedule", choices=["constant", "cosine"], dest="lr_schedule", help="after the warm-up (default constant)"
    )
    t.add_argument(
        "--ema-decay",
        type=float,
        dest="ema_decay",
        help="keep an exponential moving average of the weights with this decay (e.g. 0.999) and save it as the model",
    )
    t.add_argument(
        "--vocoder-input",
        choices=["mel", "vae"],
        dest="vocoder_input",
        help="vocoder: train on the true log-mel (default) or on --model's VAE decoding of the cache's latents",
    )
    t.add_argument(
        "--envelope-augment",
        type=float,
        dest="envelope_augment",
        help="adapter/unet: the share of clips (0-1) heard under a random smooth gain envelope, their energy and "
        "latent recomputed (default 0)",
    )
    t.add_argument(
        "--envelope-db", type=float, dest="envelope_db", help="the envelopes' largest swing in +-dB (default 12)"
    )
    t.add_argument(
        "--phi-target",
        choices=["tokens", "curve"],
        dest="phi_target",
        help="phi: regress each token's energy (MSE, the paper; default) or the curve the pipeline builds from the "
        "tokens (L1 to the adapter's control target)",
    )
    t.add_argument("--restart", action="store_true", help="ignore existing checkpoints instead of resuming")
    t.set_defaults(func=cmd_train)

    k = sub.add_parser("corpus", help="synthesise the demo training corpus (procedural sounds + matching videos)")
    k.add_argument("output", help="folder to create")
    k.add_argument("--clips-per-class", type=int, default=40, help="clips rendered per sound class (default 40)")
    k.add_argument("--seed", type=int, default=0, help="seed of every random choice of the corpus (default 0)")
    k.add_argument("--debian", action="store_true", help="also use the CC0 recordings of Debian's sonic-pi-samples")
    k.add_argument(
        "--camera",
        action="store_true",
        help="also film every clip again with a simulated real camera (pan, zoom, shake, textured background, a "
        "silent distractor, flicker, blur, noise) into camera/ and camera_train/val/test.jsonl",
    )
    k.add_argument(
        "--styles",
        action="store_true",
        help="also draw every clip again in a random style (shape, size, colours, background, floor, horizontal "
        "travel, heights, 40%% through the simulated camera) into styled/ and styled_train/val/test.jsonl (phi's "
        "training renders), and the val and test clips in held-out styles into novel/ and novel_val/test.jsonl",
    )
    k.set_defaults(func=cmd_corpus)

    u = sub.add_parser("ui", help="the studio: a web page to generate, see and edit the energy curve, keep takes")
    u.add_argument("--model", default="default", help="the model (as for generate), loaded at start")
    u.add_argument("--also", action="append", default=[], metavar="MODEL", help="another model to offer (repeatable)")
    u.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    u.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    u.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload (default 200 MB)")
    u.add_argument("--max-video-seconds", type=float, default=600.0, help="longest video (default 600 s)")
    u.add_argument("--job-seconds", type=float, default=900.0, help="time limit of one take (default 900 s)")
    u.add_argument("--queue", type=int, default=8, help="takes waiting at most; more are refused (default 8)")
    u.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    u.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto", help=DTYPE_HELP)
    u.add_argument("--runtime", choices=RUNTIME_CHOICES, default="auto", help=RUNTIME_HELP)
    u.set_defaults(func=cmd_ui)

    k2 = sub.add_parser(
        "check", help="what a checkpoint file or a model folder holds, against the released files (nothing is run)"
    )
    k2.add_argument("path", help="a released checkpoint (.ckpt, .pt), a component file, or a model folder")
    k2.set_defaults(func=cmd_check)

    i = sub.add_parser("info", help="components and parameter counts of a model")
    i.add_argument(
        "model", help="'default' (the embedded model), a random-weight preset (debug, small, paper) or a model folder"
    )
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_info)
    return parser


def _terminate(signum, frame):
    raise Terminated


_swallowed: list[KeyboardInterrupt] = []  # interruptions raised where Python could not pass them on


def _stop_if_swallowed() -> None:
    """A long command's step: an interruption a finaliser swallowed stops the work here, not at its end."""
    if _swallowed:
        raise _swallowed[-1]


def _quiet_unraisable(hook):
    """sys.unraisablehook that keeps, and says nothing of, an interruption raised where Python cannot pass it on (a
    finaliser, such as a progress bar's `__del__`, that Ctrl+C or SIGTERM landed in): `main` still ends as
    interrupted. Anything else goes to `hook`."""

    def unraisable(info):
        if isinstance(info.exc_value, KeyboardInterrupt):
            _swallowed.append(info.exc_value)
        else:
            hook(info)

    return unraisable


def _reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (`rewas info | head`): polled for an error, where the
    platform can. A broken pipe anywhere else (a socket, a subprocess) stays an error of ours."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poll.poll(0))  # a pipe; a socket
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no file behind stdout
        return False


def _discard_stdout() -> None:
    """What stdout still buffers goes nowhere: it could not be written, and would fail again at the exit."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # no file behind stdout
        pass


def _flush_stdout() -> int | None:
    """Write what was printed to a pipe or a file (Python buffers it) as part of the command: None when written (or
    no stdout), else the exit code of the failure: the reader gone (EXIT_PIPE, nothing said), or one line."""
    if sys.stdout is None:  # started with its descriptor closed
        return None
    try:
        sys.stdout.flush()
    except OSError as e:
        _discard_stdout()
        if isinstance(e, BrokenPipeError) or (os.name == "nt" and e.errno == errno.EINVAL):  # Windows' word for it
            return EXIT_PIPE
        print(f"rewas: error: {one_line(e)}", file=sys.stderr)
        return EXIT_INTERNAL
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main_thread else None
    hook, sys.unraisablehook = sys.unraisablehook, _quiet_unraisable(sys.unraisablehook)
    _swallowed.clear()
    try:
        args.func(args)
        _stop_if_swallowed()  # the outputs are whole, but the user asked to stop: the exit says so
        failed = _flush_stdout()
        if failed is not None:
            return failed
    except BatchIncomplete:
        return EXIT_INTERNAL
    except KeyboardInterrupt as e:  # Ctrl+C, or SIGTERM: everything was cleaned up on the way out
        terminated = isinstance(e, Terminated)
        print(f"rewas: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 128 + int(signal.SIGTERM if terminated else signal.SIGINT)
    except Exception as e:
        if isinstance(e, BrokenPipeError) and _reader_gone():  # while printing: nothing to say, no one to say it to
            _discard_stdout()
            return EXIT_PIPE
        if os.environ.get("REWAS_DEBUG"):
            raise
        if isinstance(e, UserError):  # bad input or options: the line says what to fix
            print(f"rewas: error: {one_line(e)}", file=sys.stderr)
            return EXIT_USER
        if isinstance(e, DownloadError) or is_environment(e):  # the network, a full disk: not a bug
            print(f"rewas: error: {one_line(e)}", file=sys.stderr)
            return EXIT_INTERNAL
        print(
            f"rewas: internal error: {e.__class__.__name__}: {one_line(e)} (run with REWAS_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    finally:
        sys.unraisablehook = hook
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    return 0


def run() -> None:
    """The `rewas` command, as a process (the console script and `python -m rewas`): `main`, then the exit.

    Once a command has imported torch, tearing the interpreter down takes 0.25-0.3 s on a 2-core CPU (its modules'
    and libraries' destructors), over a tenth of what `rewas generate` on the default model costs, and it writes
    nothing of ours: every output is closed before it is renamed into place, and `main` has flushed stdout. So, the
    command done, the atexit handlers run (logging's flush, temporary folders, multiprocessing's workers), the
    streams of Python and of C libraries are flushed, and the process ends there. Python's usual exit remains for a
    thread still running (a concurrent.futures pool), for a program that runs rewas inside itself or a profiler,
    tracer or debugger watching (cProfile, memray, coverage, pdb: they write their results after `main` returns),
    for `python -i`, and where atexit has no `_run_exitfuncs`."""
    code = main()
    flush = getattr(atexit, "_run_exitfuncs", None)
    if flush is None or not _outermost(sys._getframe(1)) or _watched() or sys.flags.inspect:
        sys.exit(code)
    flush()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # no stream where its descriptor was closed at start
                stream.flush()
        except (OSError, ValueError):  # stdout's failures are `main`'s; what is left cannot be told anywhere
            code = code or EXIT_INTERNAL
    try:  # what native libraries printf'd into C's own buffer of stdout
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (ImportError, OSError, AttributeError, TypeError):  # no ctypes, or no C library to ask (Windows)
        pass
    os._exit(code)


def _outermost(caller) -> bool:
    """Whether `run`'s caller is the program itself: the console script's module (or a `python -c`), or
    rewas/__main__.py run by `python -m rewas` (runpy's `_run_code` under `_run_module_as_main`, at the bottom of
    the stack). Anything that runs rewas inside itself (`python -m cProfile`, memray, pdb, coverage, a test) calls
    it through other frames, and reports after rewas returns: it keeps the usual exit."""
    if caller.f_code.co_name != "<module>":
        return False
    above = caller.f_back
    if above is None:
        return True
    below = above.f_back
    return (
        above.f_code.co_name == "_run_code"
        and below is not None
        and below.f_code.co_name == "_run_module_as_main"
        and below.f_back is None
    )


def _watched() -> bool:
    """Whether another thread runs, or a profiler, tracer or debugger watches: through sys.setprofile/settrace, or
    through sys.monitoring (Python 3.12+: cProfile and debuggers there register a tool instead)."""
    if any(t is not threading.current_thread() and not t.daemon for t in threading.enumerate()):
        return True
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return True
    monitoring = getattr(sys, "monitoring", None)
    return monitoring is not None and any(monitoring.get_tool(tool) is not None for tool in range(6))


if __name__ == "__main__":
    run()
