"""`rewas batch` against a loop of `rewas generate`, measured in the same run, and its memory over a long batch.

    python scripts/bench_batch.py                        # 20 clips of 5 s, the embedded model, then 100 items
    python scripts/bench_batch.py --clips 4 --memory-items 0 --steps 4

Both sides make the same soundtracks (same seeds): the loop starts one `python -m rewas generate` per clip (imports
and model loading every time), the batch one `python -m rewas batch` for all, then with --prefetch on and with
--batch-size 1 (one clip per denoiser call). Items per minute for each and the loop-to-batch ratio are printed.
Then one batch over --memory-items items (the clips repeated under new names) has its resident memory sampled
every 0.2 s; its RSS when the 10th, half and last item are recorded shows whether it grows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rewas import samples
from rewas.batch import item_seed


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=20)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--model", default="default")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.add_argument("--memory-items", type=int, default=100)
    args = p.parse_args()
    rewas = [sys.executable, "-m", "rewas"]
    common = ["--model", args.model, "-q"] + (["--steps", str(args.steps)] if args.steps else [])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = []
        for i in range(args.clips):
            clips.append(tmp / f"clip{i:03d}.mp4")
            samples.write_video(clips[-1], samples.bouncing_ball_frames(0.5 + 0.05 * i), args.seconds, 25)
        rows = [{"video": str(c), "prompt": "a ball bouncing on a wooden floor"} for c in clips]
        manifest = tmp / "items.jsonl"
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))

        loop = 0.0
        for clip in clips:  # the seeds batch would give, so both make the same audio
            seed = str(item_seed(0, clip.stem))
            out = tmp / "loop" / f"{clip.stem}.mp4"
            out.parent.mkdir(exist_ok=True)
            loop += timed(rewas + ["generate", str(clip), "--prompt", rows[0]["prompt"], "-o", str(out), "--seed", seed]
                          + common)  # fmt: skip
        batched = timed(rewas + ["batch", str(manifest), "-o", str(tmp / "batch")] + common)
        threaded = timed(rewas + ["batch", str(manifest), "-o", str(tmp / "threaded"), "--prefetch", "on"] + common)
        single = timed(rewas + ["batch", str(manifest), "-o", str(tmp / "single"), "--batch-size", "1"] + common)
        speed = {
            "clips": args.clips,
            "seconds_per_clip": args.seconds,
            "loop_items_per_min": round(60 * args.clips / loop, 2),
            "batch_items_per_min": round(60 * args.clips / batched, 2),
            "batch_prefetch_on_items_per_min": round(60 * args.clips / threaded, 2),
            "batch_one_clip_a_call_items_per_min": round(60 * args.clips / single, 2),
            "ratio": round(loop / batched, 2),
        }
        print(json.dumps(speed), flush=True)

        if args.memory_items:
            many = tmp / "many.jsonl"
            many.write_text(
                "".join(
                    json.dumps({**rows[i % len(rows)], "name": f"item{i:04d}"}) + "\n" for i in range(args.memory_items)
                )
            )
            out = tmp / "many"
            proc = subprocess.Popen(rewas + ["batch", str(many), "-o", str(out)] + common, stdout=subprocess.DEVNULL)
            marks, peak = {}, [0.0]
            wanted = {10, args.memory_items // 2, args.memory_items}

            def sample() -> None:
                while proc.poll() is None:
                    rss = rss_mib(proc.pid)
                    peak[0] = max(peak[0], rss)
                    results = out / "results.jsonl"
                    done = results.read_bytes().count(b"\n") if results.exists() else 0
                    if done in wanted and done not in marks:
                        marks[done] = round(peak[0])
                    time.sleep(0.2)

            watcher = threading.Thread(target=sample)
            watcher.start()
            proc.wait()
            watcher.join()
            print(json.dumps({"items": args.memory_items, "peak_rss_mib_when_done": marks}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
