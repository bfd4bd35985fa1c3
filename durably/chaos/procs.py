"""The processes the battery starts (``durably worker``, ``durably server``): output in a log
file each, ended by PID (never by name), all of them at the end whatever happened."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class Procs:
    def __init__(self, logs: Path):
        self.logs = logs
        self.started: list[subprocess.Popen] = []
        self.killed_at: dict[int, float] = {}  # pid -> when it was killed with -9 (time.time())

    def start(self, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = self.logs / f"proc-{len(self.started)}.log"
        with open(log, "wb") as fh:
            p = subprocess.Popen([sys.executable, "-m", "durably", *args], env=env, stdout=fh,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.started.append(p)
        return p

    def log_tail(self, p: subprocess.Popen, lines: int = 5) -> str:
        path = self.logs / f"proc-{self.started.index(p)}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill9(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            self.killed_at[p.pid] = time.time()
        p.wait(10)

    def end_all(self) -> None:
        """SIGKILL every process still running that this battery started, by PID."""
        for p in self.started:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in self.started:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
