import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_script_runs_at_debug_size():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_generate.py"), "--preset", "debug", "--device", "cpu",
                          "--dtype", "fp32", "--runs", "1", "--steps", "1", "--seconds", "2"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["model"] == "debug" and summary["median_total_s"] > 0


def test_default_model_recipe_and_its_evaluation_run_end_to_end(tmp_path):
    """scripts/train_default.py (every stage, a few steps each) then scripts/evaluate_default.py on its output."""
    from rewas.train.corpus import CLASSES, build_corpus

    work = tmp_path / "work"
    chosen = [c for c in CLASSES if c.name in ("drum_hit", "whistle")]
    build_corpus(work / "corpus", clips_per_class=10, duration=5.12, classes=chosen)
    env_steps = ["--scale", "0.001"]
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_default.py"), str(work), *env_steps],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    model = work / "default"
    assert (model / "config.json").is_file() and sum(p.stat().st_size for p in model.iterdir()) < 40e6
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate_default.py"), "--model", str(model),
                          "--corpus", str(work / "corpus"), "--classifier", str(work / "classifier" / "model"),
                          "--out", str(tmp_path / "eval"), "--per-class", "1", "--steps", "2"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())["summary"]
    assert summary["items"] == 2 and set(summary["control_mae"]) == {"video_energy", "no_control"}
    assert 0 <= summary["class_acc"]["all"]["real"] <= 1


def test_cpu_bench_script_times_the_whole_command():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_cpu.py"), "--runs", "1", "--steps", "1", "--seconds", "2"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["model"] == "default" and summary["median_wall_s"] > 0


def test_default_model_gpu_recipe_chains_the_unet_runs(tmp_path, monkeypatch):
    """With --gpu the UNet stage is two runs (the second continues the first) and the adapter trains on the last."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_default", ROOT / "scripts" / "train_default.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    calls = []
    monkeypatch.setattr(script, "rewas", lambda args, log: calls.append(args))
    for stage in ("unet", "adapter", "vocoder"):
        script.run_stage(stage, tmp_path, 1.0, gpu=True)
    runs = [(args[1], args[args.index("-o") + 1], args[args.index("--model") + 1]) for args in calls]
    assert runs == [("unet", str(tmp_path / "unet"), str(tmp_path / "vae" / "model")),
                    ("unet", str(tmp_path / "unet-ft"), str(tmp_path / "unet" / "model")),
                    ("adapter", str(tmp_path / "adapter"), str(tmp_path / "unet-ft" / "model")),
                    ("vocoder", str(tmp_path / "vocoder"), str(tmp_path / "vae" / "model")),
                    ("vocoder", str(tmp_path / "vocoder-vae"), str(tmp_path / "vocoder" / "model"))]
    assert "--ema-decay" in calls[1] and "--ema-decay" not in calls[0]
    calls.clear()
    script.run_stage("adapter", tmp_path, 1.0, gpu=False)  # the CPU recipe has one UNet run
    assert calls[0][calls[0].index("--model") + 1] == str(tmp_path / "unet" / "model")
