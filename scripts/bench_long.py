"""Long videos: time, peak memory and output length of `rewas generate` at several lengths, each in its own process.

    python scripts/bench_long.py                          # 30 s, 1 min and 3 min with the embedded model on the CPU
    python scripts/bench_long.py --seconds 10 30 --steps 10

Each length gets a synthetic video (a bouncing ball, 320x240 at 25 fps) and one `python -m rewas generate` process;
its wall time and peak resident memory (the process's own, from wait4) are recorded. The output's length is
compared with the video's twice: the WAV that `--wav` writes (the pipeline's output) and the muxed AAC stream as
it decodes (AAC ends on a whole 1,024-sample frame). Prints one JSON line per length, then a Markdown table. Time
per second of video that stays flat across lengths means linear time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import soundfile as sf

from rewas import samples


def run(cmd: list[str]) -> tuple[float, float, int]:
    """-> (wall seconds, peak RSS in MiB, exit code) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.stderr.write(proc.stderr.read().decode(errors="replace"))
    return wall, usage.ru_maxrss / 1024, proc.returncode  # ru_maxrss is in KiB on Linux


def durations(path: Path) -> tuple[float, float, float]:
    """(video seconds, audio seconds, seconds per video frame) of a muxed file, from its streams' packets."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames, fps = sum(1 for p in c.demux(v) if p.size), float(v.average_rate)
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        samples_ = sum(f.samples for f in c.decode(a))
    return frames / fps, samples_ / a.rate, 1 / fps


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, nargs="+", default=[30.0, 60.0, 180.0])
    p.add_argument("--model", default="default")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.add_argument("--prompt", default="a ball bouncing on a wooden floor")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.seconds:
            video, out = Path(tmp) / f"in_{seconds:g}.mp4", Path(tmp) / f"out_{seconds:g}.mp4"
            wav = out.with_suffix(".wav")
            samples.write_video(video, samples.bouncing_ball_frames(), seconds, 25)
            cmd = [sys.executable, "-m", "rewas", "generate", str(video), "--prompt", args.prompt, "-o", str(out)]
            cmd += ["--wav", str(wav)]
            cmd += ["--model", args.model, "--seed", "0", "-q"] + (["--steps", str(args.steps)] if args.steps else [])
            wall, rss, code = run(cmd)
            if code:
                print(json.dumps({"seconds": seconds, "exit_code": code}))
                return 1
            video_s, audio_s, frame_s = durations(out)
            wav_s = sf.info(str(wav)).frames / sf.info(str(wav)).samplerate
            rows.append(
                {
                    "seconds": seconds,
                    "wall_s": round(wall, 1),
                    "wall_s_per_video_s": round(wall / seconds, 3),
                    "peak_rss_mib": round(rss),
                    "wav_minus_video_frames": round((wav_s - video_s) / frame_s, 3),
                    "aac_minus_video_frames": round((audio_s - video_s) / frame_s, 2),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    print("\n| video | wall time | per video second | peak RSS | WAV - video | AAC - video |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['seconds']:g} s | {r['wall_s']:.1f} s | {r['wall_s_per_video_s']:.3f} s | {r['peak_rss_mib']} MiB "
            f"| {r['wav_minus_video_frames']:+.3f} frames | {r['aac_minus_video_frames']:+.2f} frames |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
