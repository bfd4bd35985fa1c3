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
