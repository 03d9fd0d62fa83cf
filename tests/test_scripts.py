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
