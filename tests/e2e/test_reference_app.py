"""The reference app under load: exact counts, fresh versions, no overlap, duplicates absorbed."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_inbox_load_check_passes(tmp_path):
    env = dict(os.environ, DURABLY_DATABASE_URL=f"sqlite:///{tmp_path}/durably.db", DURABLY_ENV="dev")
    proc = subprocess.run([sys.executable, "-m", "examples.inbox.load", "--clients", "10", "--writes", "4",
                           "--fail-rate", "0.25", "--timeout", "90"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout


def test_inbox_multi_process_load_check_passes():
    """The README's recipe: two API processes, a durably worker, a preview process; kill -9 of
    the worker and of an API process, a store outage; every invariant holds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLY_")}
    proc = subprocess.run([sys.executable, "-m", "examples.inbox.load", "--processes", "2", "--clients", "8",
                           "--writes", "3", "--spread", "6", "--outage", "4", "--timeout", "60"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout and "kills 2" in proc.stdout, proc.stdout
