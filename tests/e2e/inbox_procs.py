"""The reference app (``python -m examples.inbox``) in a subprocess, for the e2e tests: its
tables in a fresh PostgreSQL schema, its keys in a test-only env and Redis database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psycopg

from tests.helpers import wait_for
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
PG_DSN = os.environ.get("DURABLY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("DURABLY_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
TOKEN, EVENT_KEY, SECRET = "admin-" + uuid.uuid4().hex, "event-" + uuid.uuid4().hex, "cron-" + uuid.uuid4().hex


def call(method: str, url: str, body: Any = None, headers: dict | None = None,
         timeout: float = 15) -> tuple[int, dict, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}"), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), dict(e.headers)


class AppSchema:
    """A fresh PostgreSQL schema for the app's own tables."""

    def __init__(self) -> None:
        self.name = f"inbox_t_{uuid.uuid4().hex[:10]}"
        self.admin = psycopg.connect(PG_DSN, autocommit=True)
        self.admin.execute(f'CREATE SCHEMA "{self.name}"')
        self.url = f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}options=-csearch_path%3D{self.name}"

    def conn(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)

    def drop(self) -> None:
        self.admin.execute(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')
        self.admin.close()


class InboxProc:
    def __init__(self, tmp: Path, store_url: str, schema: AppSchema, env: str, *, args: tuple[str, ...] = (),
                 **extra: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log_path = tmp / f"inbox-{self.port}.log"
        self.environ = {k: v for k, v in os.environ.items() if not k.startswith("DURABLY_")}
        self.environ.update(DURABLY_DATABASE_URL=store_url, DURABLY_ENV=env, DURABLY_ADMIN_TOKEN=TOKEN,
                            DURABLY_EVENT_KEY=EVENT_KEY, CRON_SECRET=SECRET, DURABLY_REDIS_URL=REDIS_URL,
                            REDIS_URL=REDIS_URL, INBOX_DATABASE_URL=schema.url, PYTHONUNBUFFERED="1",
                            PYTHONPATH=str(ROOT), DURABLY_LEASE_SECONDS="5")
        self.environ.update(extra)
        fh = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "examples.inbox", "--port", str(self.port), *args],
                                     cwd=ROOT, env=self.environ, stdout=fh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        fh.close()
        wait_for(lambda: self.proc.poll() is not None or "inbox (" in self.log(), timeout=30, what="the app's start")
        assert self.proc.poll() is None, self.log()
        wait_for(self._up, timeout=30, what="the app's port")

    def _up(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/docs", timeout=2):
                return True
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cron(self, timeout: float = 15) -> tuple[int, dict, dict]:
        return call("POST", self.base + "/api/cron/background-jobs", headers={"authorization": f"Bearer {SECRET}"},
                    timeout=timeout)

    def durably_cron(self, name: str, window: int) -> tuple[int, dict, dict]:
        return call("POST", f"{self.base}/durably/api/v1/cron/{name}?window={window}",
                    headers={"authorization": f"Bearer {SECRET}"})

    def admin(self, path: str) -> dict:
        status, body, _ = call("GET", self.base + "/durably/api/v1" + path, headers={"authorization": f"Bearer {TOKEN}"})
        assert status == 200, (status, body)
        return body

    def runs(self, function: str) -> list[dict]:
        return self.admin(f"/runs?function={function}&limit=200")["runs"]

    def wait_done(self, function: str, n: int = 1, timeout: float = 30) -> list[dict]:
        def done() -> list[dict] | None:
            runs = [r for r in self.runs(function) if r["status"] in ("completed", "failed", "cancelled")]
            return runs if len(runs) >= n else None
        return wait_for(done, timeout=timeout, interval=0.2, what=f"{n} ended run(s) of {function}")

    def flag(self, value: str) -> str:
        p = subprocess.run([sys.executable, "-m", "examples.inbox", "flag", "background-jobs-use-durably", value],
                           cwd=ROOT, env=self.environ, capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr
        return p.stdout

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def new_env() -> str:
    """A test-only env: its keys (status blobs, versions, inline claims) are this test's alone."""
    return f"t{uuid.uuid4().hex[:10]}"
