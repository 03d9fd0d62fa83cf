import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_bench_script_runs_at_debug_size():
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_generate.py"),
            "--preset",
            "debug",
            "--device",
            "cpu",
            "--dtype",
            "fp32",
            "--runs",
            "2",
            "--steps",
            "1",
            "--seconds",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    *runs, summary = json_lines(res.stdout)
    assert [r["run"] for r in runs] == [0, 1, 2]  # run 0 warms up
    assert {k: summary[k] for k in ("model", "device", "dtype", "clip_s", "steps")} == {
        "model": "debug",
        "device": "cpu",
        "dtype": "fp32",
        "clip_s": 2.0,
        "steps": 1,
    }
    # the median is of the timed runs only, and each run's total holds its stages
    assert abs(summary["median_total_s"] - (runs[1]["total_s"] + runs[2]["total_s"]) / 2) <= 0.0015
    for r in runs:
        stages = sum(v for k, v in r.items() if k not in ("run", "total_s", "total"))
        assert {"diffusion", "decode"} <= set(r) and 0 < stages <= r["total"] + 0.01 <= r["total_s"] + 0.012, r


def test_default_model_recipe_and_its_evaluation_run_end_to_end(tmp_path):
    """scripts/train_default.py (every stage, a few steps each) then scripts/evaluate_default.py on its output."""
    from rewas.train.corpus import CLASSES, build_corpus, style_corpus

    work = tmp_path / "work"
    chosen = [c for c in CLASSES if c.name in ("drum_hit", "whistle")]
    build_corpus(work / "corpus", clips_per_class=10, duration=5.12, classes=chosen)
    style_corpus(work / "corpus", splits=("train",))
    env_steps = ["--scale", "0.001"]
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_default.py"), str(work), *env_steps],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    ran = [line[1 : line.index("]")] for line in res.stdout.splitlines() if "] rewas " in line]
    assert ran == ["cache"] * 3 + ["vae", "latents", "unet", "adapter", "vocoder", "vocoder", "phi", "classifier"]
    model = work / "default"
    assert (model / "config.json").is_file() and sum(p.stat().st_size for p in model.iterdir()) < 40e6
    # assembled from the last run of each part: the adapter run's backbone, phi's run, the VAE-tuned vocoder
    from safetensors.torch import load_file

    for name, run in [
        ("unet", "adapter"),
        ("adapter", "adapter"),
        ("vae", "adapter"),
        ("phi", "phi"),
        ("vocoder", "vocoder-vae"),
    ]:
        ours, theirs = load_file(model / f"{name}.safetensors"), load_file(work / run / "model" / f"{name}.safetensors")
        assert ours.keys() == theirs.keys(), name
        assert all(torch.equal(ours[k], theirs[k].to(ours[k].dtype)) for k in ours), (name, run)
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "evaluate_default.py"),
            "--model",
            str(model),
            "--corpus",
            str(work / "corpus"),
            "--classifier",
            str(work / "classifier" / "model"),
            "--out",
            str(tmp_path / "eval"),
            "--per-class",
            "1",
            "--steps",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads((tmp_path / "eval" / "summary.json").read_text())
    summary, rows = data["summary"], data["rows"]
    assert summary["items"] == 2 and set(summary["control_mae"]) == {"video_energy", "no_control"}
    assert sorted(r["class"] for r in rows) == ["drum_hit", "whistle"]  # --per-class 1
    # a classifier of a few steps may say anything; the accuracies must still be the share of right answers, and
    # the real column the classifier's answer on each real clip
    from rewas.audio import load_audio
    from rewas.evaluate.embedders import ClassifierBundle
    from rewas.train.cache import read_manifest

    classifier = ClassifierBundle.from_pretrained(work / "classifier" / "model")
    assert classifier.classes == ["drum_hit", "whistle"]
    real = {x["video"]: x["audio"] for x in read_manifest(work / "corpus" / "test.jsonl")}
    assert [r["real_predicted"] for r in rows] == [
        classifier.predict(load_audio(real[r["video"]], 16000)) for r in rows
    ]
    acc = summary["class_acc"]["all"]
    assert acc["real"] == pytest.approx(np.mean([r["real_predicted"] == r["class"] for r in rows]))
    for cond in ("video_energy", "no_control"):
        assert acc[cond] == pytest.approx(np.mean([r[cond]["predicted"] == r["class"] for r in rows]))
    assert summary["class_acc"]["procedural"] == summary["class_acc"]["all"]  # both classes are procedural
    mae = summary["control_mae"]
    assert summary["control_mae_ratio"] == pytest.approx(mae["video_energy"] / mae["no_control"])


def test_cpu_bench_script_puts_the_speed_paths_side_by_side():
    """Each path's stage table row, its peak memory and its ratio to the first path; and whole processes."""
    bench = [sys.executable, str(ROOT / "scripts" / "bench_cpu.py"), "--model", "debug", "--steps", "1"]
    res = subprocess.run([*bench, "--runs", "2", "--seconds", "2"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in res.stdout.splitlines() if "MiB" in line}
    assert list(rows) == ["fp32", "bf16"] and len(rows["fp32"]) == 12, res.stdout
    assert float(rows["fp32"][-2]) == 1.0 and float(rows["bf16"][-2]) > 0  # time vs fp32
    assert float(rows["fp32"][-1]) == 0 and 0 <= float(rows["bf16"][-1]) < 0.1  # latent error vs fp32
    stages = [float(x) for x in rows["fp32"][:8]]
    assert all(t >= 0 for t in stages) and stages[4] > 0  # the diffusion is timed
    assert float(rows["fp32"][8]) >= sum(stages) - 0.02  # the total holds the stages
    res = subprocess.run([*bench, "--process", "--runs", "1"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "`rewas generate` median" in res.stdout, res.stderr


def test_gpu_bench_script_runs_where_there_is_no_gpu():
    """scripts/bench_gpu.py (docs/speed.md's GPU table) runs on a CPU machine too, at debug size."""
    bench = [sys.executable, str(ROOT / "scripts" / "bench_gpu.py"), "--models", "debug", "--runs", "1"]
    res = subprocess.run([*bench, "--seconds", "1", "--dtypes", "fp32"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "debug fp32: load" in res.stdout and "'diffusion'" in res.stdout, res.stdout


def load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_default_model_recipe_runs_every_stage_in_order_with_its_arguments(tmp_path, monkeypatch):
    """The CPU recipe, every `rewas` call recorded instead of run: order, inputs, outputs and the recipes' arguments."""
    script = load_script("train_default")
    calls = []
    monkeypatch.setattr(script, "rewas", lambda args, log: calls.append((log.name, [str(a) for a in args])))
    monkeypatch.setattr(script, "assemble", lambda work: calls.append(("assemble", [str(work)])))
    monkeypatch.setattr(sys, "argv", ["train_default.py", str(tmp_path), "--scale", "0.01"])
    (tmp_path / "corpus").mkdir()  # what the recorded corpus call would write: phi's manifest joins two of them
    (tmp_path / "corpus" / "train.jsonl").write_text('{"video": "train/a.mp4"}\n')
    (tmp_path / "corpus" / "styled_train.jsonl").write_text('{"video": "styled/train/a.mp4"}\n')
    assert script.main() == 0
    assert (tmp_path / "corpus" / "phi_train.jsonl").read_text().splitlines() == [
        '{"video": "train/a.mp4"}',
        '{"video": "styled/train/a.mp4"}',
    ]

    import tomllib

    runs = tomllib.loads((ROOT / "recipes" / "default_model.toml").read_text())["runs"]

    def recipe(run):  # the recipe file's flags, in its order, the step count scaled
        flags = {k: v for k, v in runs[run].items() if k not in ("model", "stage")}
        flags["steps"] = max(1, round(flags["steps"] * 0.01))
        return [item for k, v in flags.items() for item in (f"--{k}", str(v))]

    w = {
        name: str(tmp_path / name)
        for name in (
            "corpus",
            "cache_train",
            "cache_test",
            "cache_phi_train",
            "vae",
            "unet",
            "adapter",
            "phi",
            "vocoder",
            "vocoder-vae",
            "classifier",
        )
    }
    model = {name: str(tmp_path / name / "model") for name in ("vae", "unet", "vocoder")}
    cache = w["cache_train"]
    assert calls[0][0] == "corpus.log" and calls[0][1][:2] == ["corpus", w["corpus"]] and "--styles" in calls[0][1]
    phi_manifest = str(tmp_path / "corpus" / "phi_train.jsonl")
    assert calls[1:] == [
        ("cache.log", ["train", "cache", str(tmp_path / "corpus" / "train.jsonl"), "--model", "small", "-o", cache]),
        (
            "cache.log",
            ["train", "cache", str(tmp_path / "corpus" / "test.jsonl"), "--model", "small", "-o", w["cache_test"]],
        ),
        ("cache.log", ["train", "cache", phi_manifest, "--model", "small", "-o", w["cache_phi_train"]]),
        ("vae.log", ["train", "vae", cache, "--model", "small", "-o", w["vae"], *recipe("vae")]),
        ("latents.log", ["train", "latents", cache, "--model", model["vae"]]),
        ("unet.log", ["train", "unet", cache, "--model", model["vae"], "-o", w["unet"], *recipe("unet")]),
        ("adapter.log", ["train", "adapter", cache, "--model", model["unet"], "-o", w["adapter"], *recipe("adapter")]),
        ("vocoder.log", ["train", "vocoder", cache, "--model", model["vae"], "-o", w["vocoder"], *recipe("vocoder")]),
        (
            "vocoder.log",
            ["train", "vocoder", cache, "--model", model["vocoder"], "-o", w["vocoder-vae"], *recipe("vocoder-vae")],
        ),
        ("phi.log", ["train", "phi", w["cache_phi_train"], "--model", "small", "-o", w["phi"], *recipe("phi")]),
        ("classifier.log", ["train", "classifier", cache, "-o", w["classifier"], *recipe("classifier")]),
        ("assemble", [str(tmp_path)]),
    ]


def test_default_model_gpu_recipe_chains_the_unet_runs(tmp_path, monkeypatch):
    """With --gpu the UNet stage is two runs (the second continues the first) and the adapter trains on the last."""
    script = load_script("train_default")
    calls = []
    monkeypatch.setattr(script, "rewas", lambda args, log: calls.append(args))
    for stage in ("unet", "adapter", "vocoder"):
        script.run_stage(stage, tmp_path, 1.0, gpu=True)
    runs = [(args[1], args[args.index("-o") + 1], args[args.index("--model") + 1]) for args in calls]
    assert runs == [
        ("unet", str(tmp_path / "unet"), str(tmp_path / "vae" / "model")),
        ("unet", str(tmp_path / "unet-ft"), str(tmp_path / "unet" / "model")),
        ("adapter", str(tmp_path / "adapter"), str(tmp_path / "unet-ft" / "model")),
        ("vocoder", str(tmp_path / "vocoder"), str(tmp_path / "vae" / "model")),
        ("vocoder", str(tmp_path / "vocoder-vae"), str(tmp_path / "vocoder" / "model")),
    ]
    assert "--ema-decay" in calls[1] and "--ema-decay" not in calls[0]
    calls.clear()
    script.run_stage("adapter", tmp_path, 1.0, gpu=False)  # the CPU recipe has one UNet run
    assert calls[0][calls[0].index("--model") + 1] == str(tmp_path / "unet" / "model")


def test_overlap_script_measures_agreement_and_seams(debug_pipe, monkeypatch):
    """The overlap agreement of a debug run is one correlation per pair of decoding windows, for the pipeline's
    sampler and for each alternative the script compares it with; the novelty curve of a sound whose timbre jumps
    once peaks far above its median, and that of a steady sound does not."""
    import rewas.pipeline
    from rewas.evaluate.continuity import novelty_peak_over_median

    script = load_script("measure_overlap")
    curve = np.where((np.arange(3000) // 100) % 2 == 0, -4.0, -10.0)  # 30 s: three 15.36 s decoding windows
    row = script.measure(debug_pipe, "rain", seed=0, seconds=30.0, curve=curve, steps=1)
    assert row["windows"] == 3 and len(row["overlap_r"]) == 2 and all(-1 <= r <= 1 for r in row["overlap_r"])
    assert -1 <= row["control_r"] <= 1
    for name, method in script.ALTERNATIVES.items():
        monkeypatch.setattr(rewas.pipeline, "sample_timelines", script.as_timelines(method))
        other = script.measure(debug_pipe, "rain", seed=0, seconds=30.0, curve=curve, steps=2)
        assert len(other["overlap_r"]) == 2, name
    rng = np.random.default_rng(0)
    steady = rng.normal(-6, 0.1, (1000, 64))
    jump = steady.copy()
    jump[500:, :32] += 2.0
    assert novelty_peak_over_median(jump, 100) > 2 * novelty_peak_over_median(steady, 100)
    assert novelty_peak_over_median(steady, 100) < 3


def test_real_footage_script_correlates_the_control_curve_with_the_generated_energy(tmp_path, monkeypatch):
    """A clip's first --seconds as the model sees it; one r per prompt and seed, the r of the curve that steered
    the generation (result.energy) with the generated audio's energy; the summary's means are the rows'."""
    from rewas import samples

    script = load_script("measure_real_footage")
    video = tmp_path / "ball.mp4"
    samples.write_video(video, samples.bouncing_ball_frames(), 3.0, 25)
    out = tmp_path / "r.json"
    argv = ["x", str(video), "--model", "debug", "--prompts", "a", "b", "--seeds", "0", "--seconds", "2", "--out"]
    monkeypatch.setattr(sys, "argv", [*argv, str(out)])
    script.main()
    data = json.loads(out.read_text())
    assert [(r["prompt"], r["seed"]) for r in data["rows"]] == [("a", 0), ("b", 0)]
    assert all(-1 <= r["r"] <= 1 for r in data["rows"])
    assert data["summary"]["r_mean"] == pytest.approx(np.mean([r["r"] for r in data["rows"]]), abs=1e-3)
    from rewas import ReWaSPipeline

    assert script.first_seconds(str(video), ReWaSPipeline.from_pretrained("debug"), 2.0).shape[0] == 50
