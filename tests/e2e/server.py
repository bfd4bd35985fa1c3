"""Start `durably server` as a subprocess on 127.0.0.1 and a free port; wait until it answers."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass

import httpx

from tests.e2e.procs import Procs
from tests.helpers import cli_env, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    base: str
    proc: subprocess.Popen
    event_key: str
    admin_token: str
    cron_secret: str

    def headers(self, kind: str) -> dict[str, str]:
        token = {"event": self.event_key, "admin": self.admin_token, "cron": self.cron_secret}[kind]
        return {"Authorization": f"Bearer {token}"}

    def admin(self, method: str, path: str, **kw) -> httpx.Response:
        return httpx.request(method, self.base + path, headers=self.headers("admin"), timeout=10, **kw)


def env_for(db_url: str, env: str, keys: dict[str, str]) -> dict[str, str]:
    return cli_env(db_url, env=env, DURABLY_EVENT_KEY=keys["event"], DURABLY_ADMIN_TOKEN=keys["admin"],
                   CRON_SECRET=keys["cron"], DURABLY_LEASE_SECONDS="5")


def start_server(procs: Procs, db_url: str, env: str, keys: dict[str, str], timeout: float = 30) -> Server:
    port = free_port()
    proc = procs.start(["server", "--host", "127.0.0.1", "--port", str(port)], env_for(db_url, env, keys))
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"durably server exited with {proc.returncode}:\n{procs.log(proc)[-3000:]}")
        try:
            return httpx.get(base + "/api/v1/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, timeout, interval=0.05, what=f"durably server on port {port}")
    return Server(base, proc, keys["event"], keys["admin"], keys["cron"])
