"""Worker processes for the e2e tests: started with their output in a log file, ended by PID."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.helpers import durably_cmd


class Procs:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.started: list[subprocess.Popen] = []
        self.logs: dict[int, Path] = {}

    def start(self, args: list[str], env: dict[str, str], cwd: str | None = None) -> subprocess.Popen:
        log = self.tmp / f"proc-{len(self.started)}.log"
        fh = open(log, "wb")
        p = subprocess.Popen(durably_cmd(*args), env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        fh.close()
        self.started.append(p)
        self.logs[p.pid] = log
        return p

    def log(self, p: subprocess.Popen) -> str:
        return self.logs[p.pid].read_text(errors="replace")

    def stop(self, p: subprocess.Popen, timeout: float = 20) -> int:
        """SIGTERM, then wait: a graceful stop."""
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)
            raise AssertionError(f"process {p.pid} did not stop on SIGTERM:\n{self.log(p)[-3000:]}") from None

    def kill9(self, p: subprocess.Popen) -> None:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)

    def cleanup(self) -> None:
        for p in self.started:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(10)
