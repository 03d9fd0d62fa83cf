"""`rewas ui` started as a user starts it, in its own process and temporary folder (TMPDIR), for the tests that
meet it through a real client (test_studio_api, test_studio_load)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path
    tmp: Path  # the server's TMPDIR: the studio's folder and gradio's cache live in it

    def memory_mb(self, field: str = "VmRSS") -> float | None:
        """The server's resident memory now (VmRSS) or its peak so far (VmHWM), in MiB (Linux)."""
        status = Path(f"/proc/{self.proc.pid}/status")
        if not status.exists():
            return None
        line = next(x for x in status.read_text().splitlines() if x.startswith(f"{field}:"))
        return int(line.split()[1]) / 1024

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it: exit 0, and nothing of the server's left in its folder."""
        self.proc.terminate()
        try:
            assert self.proc.wait(timeout=30) == 0, self.log.read_text()[-3000:]
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        assert list(self.tmp.iterdir()) == []  # the studio's folder and gradio's cache (uploads, served takes)


def start(base: Path, *args: str) -> Server:
    """`rewas ui --model debug ARGS` on a free localhost port; -> once it answers."""
    tmp = base / "tmp"
    tmp.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(tmp)}
    env.pop("GRADIO_TEMP_DIR", None)
    log = base / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rewas", "ui", "--model", "debug", "--port", str(port), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return Server(url, proc, log, tmp)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"rewas ui did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
