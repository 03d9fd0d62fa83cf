"""CPU speed of a model, stage by stage, for each speed path, side by side in one run.

    python scripts/bench_cpu.py                                   # the default model, fp32 and bf16, 5 runs each
    python scripts/bench_cpu.py --model paper --runs 1            # the paper model (random weights: same cost)
    python scripts/bench_cpu.py --paths fp32,bf16,fp32+compile    # torch.compile (inductor) on the UNet + adapter
    python scripts/bench_cpu.py --model paper --paths fp32,bf16,bf16+openvino  # OpenVINO (the [openvino] extra)
    python scripts/bench_cpu.py --process --runs 5                # whole `rewas generate` processes, timed outside

Each speed path runs in a worker process of its own, loaded and warmed up once; the workers then take turns, run by
run, so that a slow minute of a shared machine falls on every path alike. Per path it prints the median seconds of
each stage (video decode, video encoder, phi, text, diffusion, VAE, vocoder, mux), the median total, the worker's
peak resident memory, its time's ratio to the first path (fp32) and, the quality guard, the largest relative error of
its final latents against the first path's (same seeds). --process times what a user waits for instead: a fresh
`python -m rewas generate` per run (start-up, imports, loading, generation, muxing), and `rewas info` for start-up
and loading alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ["decode", "video_encoder", "phi", "text", "diffusion", "vae", "vocoder", "mux", "total"]
PROMPT = "a rubber ball bouncing on a wooden floor"


# ------------------------------------------------------------------------------------------------- the worker


def _timed(fn, clock: dict, key: str):
    def run(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            clock[key] = clock.get(key, 0.0) + time.perf_counter() - start

    return run


def worker(args) -> int:
    """Load the model on one speed path, warm it up, then answer each line of stdin ("run SEED") with a line of
    stage timings (JSON); at the end of stdin, a line with the peak resident memory."""
    import numpy as np
    import torch

    from rewas import ReWaSPipeline, pipeline, samples
    from rewas.config import PRESETS
    from rewas.frames import probe
    from rewas.mux import mux

    dtype, _, runtime = args.worker.partition("+")
    pipe = ReWaSPipeline.from_pretrained(args.model, device="cpu", dtype=dtype)
    if pipe.text_encoder.tokenizer is None:  # random weights of the paper's size: byte tokens cost the same
        from rewas.text_encoder import ByteTokenizer

        pipe.text_encoder.tokenizer = ByteTokenizer(getattr(pipe.config.text, "max_length", 77))
    if args.model in PRESETS:  # random weights
        _live_outputs(pipe)
    if runtime == "compile":
        pipe.unet = torch.compile(pipe.unet, dynamic=False)
        pipe.adapter = torch.compile(pipe.adapter, dynamic=False)
    elif runtime == "openvino":  # converted on first use (cached), compiled here: loading is not what is timed
        pipe.use_runtime("openvino")
    elif runtime:
        raise SystemExit(f"unknown runtime {runtime!r}")
    clock: dict[str, float] = {}
    pipe.video_encoder.forward = _timed(pipe.video_encoder.forward, clock, "video_encoder")
    pipe.phi.forward = _timed(pipe.phi.forward, clock, "phi")
    pipe.vae.decode = _timed(pipe.vae.decode, clock, "vae")
    pipeline.vocode = _timed(pipeline.vocode, clock, "vocoder")
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        samples.write_video(clip, samples.bouncing_ball_frames(), args.seconds, 25)
        info = probe(clip)

        def once(seed: int) -> dict:
            clock.clear()
            start = time.perf_counter()
            result = pipe(str(clip), prompt=PROMPT, steps=args.steps, seed=seed)
            t = time.perf_counter()
            mux(clip, result.waveform, result.sample_rate, Path(tmp) / f"out{seed}.mp4", info)
            clock["mux"] = time.perf_counter() - t
            clock["total"] = time.perf_counter() - start
            clock["decode"] = result.timings.get("frames", 0.0)
            clock["text"] = result.timings.get("text", 0.0)
            clock["diffusion"] = result.timings.get("diffusion", 0.0)
            if args.latents:  # for the driver's comparison of the paths' results
                np.save(Path(args.latents) / f"{args.worker}-{seed}.npy", result.latent.float().numpy())
            return {k: round(clock.get(k, 0.0), 4) for k in STAGES}

        once(0)  # warm-up: kernels, the allocator, compilation
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            print(json.dumps(once(int(line.split()[1]))), flush=True)
    print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
    return 0


def _live_outputs(pipe) -> None:
    """A preset's random weights start its UNet's output layer and the adapter's zero convs at zero, so every path
    would give the same (noise-only) latent and the quality guard would read 0. Give them the same small random
    values in every path: drawn in fp32 from one seed, then stored in the path's dtype."""
    import torch

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in (pipe.unet, pipe.adapter):
            for p in module.parameters():
                if p.dim() > 1 and not p.any():
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.02)


# ------------------------------------------------------------------------------------------------- the driver


def side_by_side(args) -> int:
    paths = args.paths.split(",")
    common = ["--model", args.model, "--seconds", str(args.seconds)]
    common += ["--steps", str(args.steps)] if args.steps else []
    latents = tempfile.TemporaryDirectory()
    common += ["--latents", latents.name]
    workers = {}
    for path in paths:  # loaded one after another: loading is not what is measured
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", path, *common],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if json.loads(proc.stdout.readline()).get("ready") is not True:
            raise SystemExit(f"{path}: the worker did not start")
        workers[path] = proc
    runs = {path: [] for path in paths}
    for run in range(args.runs):
        for path, proc in workers.items():
            proc.stdin.write(f"run {run + 1}\n")
            proc.stdin.flush()
            runs[path].append(json.loads(proc.stdout.readline()))
            print(json.dumps({"path": path, "run": run + 1, **runs[path][-1]}), file=sys.stderr, flush=True)
    peaks = {}
    for path, proc in workers.items():
        proc.stdin.close()
        peaks[path] = json.loads(proc.stdout.readline())["peak_rss_mib"]
        proc.wait()

    median = {path: {k: statistics.median(r[k] for r in rows) for k in STAGES} for path, rows in runs.items()}
    base = median[paths[0]]["total"]
    error = {path: _latent_error(Path(latents.name), path, paths[0], args.runs) for path in paths}
    latents.cleanup()
    print(f"{args.model}, {args.seconds:g} s clip, {args.runs} run(s) per path, medians in seconds ({_machine()})")
    print("| path | " + " | ".join(STAGES) + f" | peak RSS | time vs {paths[0]} | latent error vs {paths[0]} |")
    print("|---" * (len(STAGES) + 4) + "|")
    for path in paths:
        cells = " | ".join(f"{median[path][k]:.2f}" for k in STAGES)
        print(f"| {path} | {cells} | {peaks[path]:,.0f} MiB | {median[path]['total'] / base:.2f} | {error[path]:.4f} |")
    return 0


def _latent_error(folder: Path, path: str, base: str, runs: int) -> float:
    """The largest relative error (L2) of a path's final latents against the base path's, same seeds."""
    import numpy as np

    worst = 0.0
    for seed in range(1, runs + 1):
        a, b = np.load(folder / f"{path}-{seed}.npy"), np.load(folder / f"{base}-{seed}.npy")
        worst = max(worst, float(np.linalg.norm(a - b) / np.linalg.norm(b)))
    return worst


def whole_process(args) -> int:
    from rewas import samples

    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        samples.write_video(clip, samples.bouncing_ball_frames(), args.seconds, 25)
        rewas = [sys.executable, "-m", "rewas"]
        generate = [*rewas, "generate", str(clip), "--prompt", PROMPT, "--model", args.model, "--seed", "0", "-q"]
        generate += ["--steps", str(args.steps)] if args.steps else []
        times = {"generate": [], "info": []}
        # as a user's install runs: with its modules' bytecode (pip writes it; a shell with PYTHONDONTWRITEBYTECODE
        # compiles rewas's modules at every start, about 0.15 s), written by an untimed first run
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run([*generate, "-o", f"{tmp}/warm.mp4"], capture_output=True, env=env)
        for run in range(args.runs):  # taking turns, as the paths do
            for what, command in (
                ("generate", [*generate, "-o", f"{tmp}/out{run}.mp4"]),
                ("info", [*rewas, "info", args.model]),
            ):
                start = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True, env=env)
                times[what].append(time.perf_counter() - start)
                if done.returncode:
                    print(done.stderr, file=sys.stderr)
                    return 1
        print(json.dumps({k: [round(t, 3) for t in v] for k, v in times.items()}), file=sys.stderr)
        print(
            f"{args.model}, {args.seconds:g} s clip, {args.runs} run(s) ({_machine()}): `rewas generate` median "
            f"{statistics.median(times['generate']):.2f} s (min {min(times['generate']):.2f}); start-up and loading "
            f"(`rewas info`) median {statistics.median(times['info']):.2f} s"
        )
    return 0


def _machine() -> str:
    import platform

    import torch

    flags = [name for name in ("avx512_bf16", "amx_tile", "vnni") if getattr(torch.cpu, f"_is_{name}_supported")()]
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {', '.join(flags) or 'no bf16'}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="default, paper, small, debug or a model folder")
    p.add_argument("--paths", default="fp32,bf16", help="comma-separated: fp32, bf16, each optionally +compile")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--process", action="store_true", help="time whole `rewas generate` processes instead")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--latents", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    return whole_process(args) if args.process else side_by_side(args)


if __name__ == "__main__":
    sys.exit(main())
