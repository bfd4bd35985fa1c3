"""The dashboard in headless Chromium against a real server process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import urllib.request

import pytest

import durably
from tests.helpers import make_app, wait_for

APP = os.path.join(os.path.dirname(__file__), "..", "apps", "dash_app.py")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM) and os.environ.get("CI") != "true",
                                reason="Debian's chromium is not installed")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/api/v1/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _start(args: list[str], env: dict, cwd: str) -> tuple[subprocess.Popen, str]:
    port = _port()
    proc = subprocess.Popen([sys.executable, "-m", "durably", *args, "--port", str(port)], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _up(url) or proc.poll() is not None, 30, what="the server to answer")
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    return proc, url


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_dev_dashboard_run_now_runs_failures_events(browser, tmp_path):
    env = dict(os.environ, DURABLY_ENV="dev", PYTHONUNBUFFERED="1")
    env.pop("DURABLY_DATABASE_URL", None)
    env.pop("DURABLY_ADMIN_TOKEN", None)
    proc, url = _start(["dev", APP], env, str(tmp_path))
    try:
        page = browser.new_page()
        page.on("dialog", lambda d: d.accept())
        page.goto(url + "/")
        assert page.inner_text("[data-testid=env-badge]").strip().lower() == "dev"
        row = page.locator("tr[data-function=daily]")
        assert "Europe/Berlin" in row.inner_text() and "09:00" in row.inner_text()
        # Run now, with data, then follow the link to the new run.
        greet = page.locator("tr[data-function=greet]")
        greet.locator("summary").click()
        greet.locator("textarea").fill('{"name": "Ada"}')
        greet.locator("form.runnow button[type=submit]").click()
        link = page.locator("[data-testid=started-run]")
        link.wait_for()
        with page.expect_navigation():  # reloading while the click still navigates detaches the page
            link.click()
        wait_for(lambda: (page.reload() or True) and "completed" in page.inner_text("h1"), 15, interval=0.3,
                 what="the run page to show completed")
        assert "compose" in page.inner_text("table")
        assert "Hello, Ada!" in page.inner_text("main")
        page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
        # A failing run lands in /failures; a dry-run preview lists it and replays nothing.
        page.goto(url + "/")
        greet = page.locator("tr[data-function=greet]")
        greet.locator("summary").click()
        greet.locator("textarea").fill('{"name": "Mallory"}')
        greet.locator("form.runnow button[type=submit]").click()
        page.locator("[data-testid=started-run]").wait_for()
        wait_for(lambda: (page.goto(url + "/failures") or True) and "Mallory is refused" in page.inner_text("main"),
                 15, interval=0.3, what="the failure to be listed")
        page.check("input[name=group]")
        page.click("button[name=dry_run]")
        assert "1 run(s) would be replayed" in page.inner_text("[data-testid=preview]")
        # Runs: filter by status.
        page.goto(url + "/runs?status=failed")
        rows = page.locator("tbody tr")
        assert rows.count() == 1 and "failed" in rows.first.inner_text()
        # Events: the send form refuses bad JSON (server side, without JavaScript's help too).
        page.goto(url + "/events")
        page.click("details.send summary")
        page.fill("input[name=name]", "greet")
        page.fill("textarea[name=data]", '{"name": "Bob"}')
        page.click("details.send button[type=submit]")
        page.wait_for_url("**/events/*")
        assert "greet" in page.inner_text("main")
        page.goto(url + "/health")
        assert "Store: reachable" in page.inner_text("main")
        page.screenshot(path=str(tmp_path / "health.png"), full_page=True)
    finally:
        _stop(proc)


def test_send_event_form_rejects_bad_json_without_javascript(tmp_path):
    env = dict(os.environ, DURABLY_ENV="dev", PYTHONUNBUFFERED="1")
    env.pop("DURABLY_DATABASE_URL", None)
    env.pop("DURABLY_ADMIN_TOKEN", None)
    proc, url = _start(["dev", APP], env, str(tmp_path))
    try:
        import re

        import httpx

        with httpx.Client(base_url=url) as c:
            page = c.get("/events")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            r = c.post("/events/send", data={"csrf": csrf, "name": "greet", "data": "{not json"})
            assert r.status_code == 400 and "not valid JSON" in r.text
            r = c.post("/events/send", data={"csrf": "wrong", "name": "greet", "data": "{}"})
            assert r.status_code == 403
    finally:
        _stop(proc)


def test_production_dashboard_requires_login(browser, tmp_path):
    db = f"sqlite:///{tmp_path}/durably.db"
    registrar = make_app(db, "dash", env="production")
    from tests.apps import dash_app

    dash_app.app.configure(database_url=db, env="production")
    try:
        dash_app.app.register()
    finally:
        dash_app.app.close()
        registrar.close()
    env = dict(os.environ, DURABLY_ENV="production", DURABLY_DATABASE_URL=db, DURABLY_ADMIN_TOKEN="adm-secret",
               DURABLY_EVENT_KEY="evt-secret", CRON_SECRET="cron-secret", PYTHONUNBUFFERED="1")
    proc, url = _start(["server"], env, str(tmp_path))
    try:
        page = browser.new_page()
        page.goto(url + "/runs")
        assert "/login" in page.url
        assert page.inner_text("[data-testid=env-badge]").strip().lower() == "production"
        assert page.locator("header .logout").count() == 0
        page.fill("input[name=token]", "wrong")
        page.click("main button[type=submit]")
        assert "Wrong admin token" in page.inner_text("main")
        page.fill("input[name=token]", "adm-secret")
        page.click("main button[type=submit]")
        page.wait_for_url("**/runs")
        cookies = {c["name"]: c for c in page.context.cookies()}
        assert cookies["durably_session"]["httpOnly"] and cookies["durably_session"]["sameSite"] == "Strict"
        page.goto(url + "/")
        assert "greet" in page.inner_text("main")
        page.screenshot(path=str(tmp_path / "prod.png"), full_page=True)
        # A POST without the CSRF token is refused, even with the session cookie.
        status = page.evaluate("""async (u) => (await fetch(u + '/functions/greet/run', {method: 'POST',
            headers: {'content-type': 'application/x-www-form-urlencoded'}, body: 'x=1'})).status""", url)
        assert status == 403
        page.click("header .logout button")
        page.goto(url + "/")
        assert "/login" in page.url
    finally:
        _stop(proc)
