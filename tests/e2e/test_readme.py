"""Every code block of README.md runs as pasted, in order, in a fresh project directory.

How a block is run:
- ``python``: written to the file its paragraph names ("Put this in `shop/jobs.py`"), else run
  with ``python`` and must exit 0.
- ``sh``/``bash``: line by line in ``bash``, each line must exit 0. A line that starts a process
  which keeps running (``durably dev``, ``durably server``) is started in the background, as in
  its own shell, and the test goes on once it prints its URL (each gets a free port through
  ``DURABLY_PORT``; nothing else of durably's environment is set). ``<run id>`` stands for the
  run the last ``durably send`` started, as a reader would paste it. ``pip install`` lines are
  skipped: the suite runs in the environment that line installs (``.ci/run`` runs it first).
- A block after ``<!-- readme-test: skip (why) -->`` is not run.

At the end every run that the blocks started has completed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"(?:<!--\s*readme-test:\s*(?P<mark>[^>]*?)\s*-->\s*\n)?```(?P<lang>\w*)\n(?P<body>.*?)```",
                   re.S)
LONG_RUNNING = re.compile(r"^durably\s+(dev|server)\b")


def blocks(text: str) -> list[dict]:
    out = []
    for m in FENCE.finditer(text):
        before = text[:m.start()].rstrip().rsplit("\n\n", 1)[-1]
        target = re.search(r"Put this in `([^`]+)`", before)
        out.append({"lang": m["lang"], "body": m["body"], "mark": m["mark"] or "",
                    "file": target.group(1) if target else None, "line": text[:m.start()].count("\n") + 1})
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLY_") and k != "CRON_SECRET"}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # this python's `durably`
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_the_readme_marks_few_blocks_as_not_run():
    found = blocks((ROOT / "README.md").read_text())
    assert len(found) >= 5
    skipped = [b for b in found if b["mark"].startswith("skip")]
    assert len(skipped) <= 2, [b["line"] for b in skipped]
    assert all(b["lang"] in ("python", "sh", "bash") for b in found), [b["lang"] for b in found]


def test_every_readme_code_block_runs_as_pasted(tmp_path, procs):
    work = tmp_path / "project"
    work.mkdir()
    shutil.copytree(ROOT / "examples", work / "examples")  # the README's commands run from a clone
    env = _env()
    last_run: list[str] = []
    for block in blocks((ROOT / "README.md").read_text()):
        where = f"README.md line {block['line']}"
        if block["mark"].startswith("skip"):
            continue
        if block["lang"] == "python":
            if block["file"]:
                path = work / block["file"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(block["body"])
                continue
            script = tmp_path / f"block-{block['line']}.py"
            script.write_text(block["body"])
            p = subprocess.run([sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True,
                               timeout=120)
            assert p.returncode == 0, f"{where}:\n{p.stdout}\n{p.stderr}"
            continue
        for line in block["body"].splitlines():
            command = line.strip()
            if not command or command.startswith("#") or command.startswith("pip install "):
                continue
            if "<run id>" in command:
                assert last_run, f"{where}: {command!r} needs a run, and no `durably send` started one"
                command = command.replace("<run id>", last_run[-1])
            if LONG_RUNNING.match(command):
                log = tmp_path / f"bg-{block['line']}-{len(procs.started)}.log"
                with open(log, "wb") as fh:
                    bg = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=work, stdout=fh,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env={**env, "DURABLY_PORT": str(_free_port())})
                procs.started.append(bg)
                procs.logs[bg.pid] = log
                wait_for(lambda: re.search(r"(dashboard|API) at http", procs.log(bg)) or bg.poll() is not None,
                         timeout=60, what=f"{command!r} to start")
                assert bg.poll() is None, f"{where}: {command!r} exited:\n{procs.log(bg)}"
                continue
            p = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True,
                               timeout=120)
            assert p.returncode == 0, f"{where}: {command!r} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
            if re.match(r"durably\s+send\b", command):
                last_run.extend(json.loads(p.stdout)["runs"])
    assert last_run, "no README block started a run"

    def all_finished():
        p = subprocess.run(["durably", "runs", "--json"], cwd=work, env=env, capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr
        runs = {r["id"]: r for r in json.loads(p.stdout)}
        if all(runs.get(rid, {}).get("status") in ("completed", "failed", "cancelled") for rid in last_run):
            return runs
        return None

    runs = wait_for(all_finished, timeout=60, interval=0.2, what="the README's runs to finish")
    for rid in last_run:
        assert runs[rid]["status"] == "completed", (runs[rid], [procs.log(p) for p in procs.started])
    for bg in list(procs.started):
        assert procs.stop(bg) == 0, procs.log(bg)
