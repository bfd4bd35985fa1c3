"""Operators' controls in headless Chromium against `durably dev` with an admin and a viewer
token: Pause then Resume on `/` with the paused badge on `/`, `/runs` and the run page (which
says the run waits because its function is paused), `/audit` listing the actions, and a viewer
who sees no state-changing button. Screenshots go to $DASH_SHOTS (default /tmp/dash-shots)."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from tests.e2e.test_dashboard import APP, _start, _stop, browser  # noqa: F401 - the browser fixture
from tests.helpers import wait_for

SHOTS = os.environ.get("DASH_SHOTS", "/tmp/dash-shots")
ADMIN, VIEWER = "adm-ops-1", "view-ops-1"


@pytest.fixture
def dev(tmp_path):
    env = dict(os.environ, DURABLY_ENV="dev", PYTHONUNBUFFERED="1", DURABLY_ADMIN_TOKEN=ADMIN,
               DURABLY_VIEWER_TOKEN=VIEWER)
    env.pop("DURABLY_DATABASE_URL", None)
    proc, url = _start(["dev", APP], env, str(tmp_path))
    os.makedirs(SHOTS, exist_ok=True)
    yield url
    _stop(proc)


def _api(url: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"content-type": "application/json", "authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _login(browser, url: str, token: str):
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.on("dialog", lambda d: d.accept())  # the confirm() of Pause
    page.goto(f"{url}/login")
    page.fill("input[name=token]", token)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{url}/")
    return page


def test_pause_resume_badges_audit_and_the_viewer(browser, dev):
    url = dev
    page = _login(browser, url, ADMIN)
    row = page.locator("tr[data-function=greet]")
    assert row.locator("[data-testid=paused-badge]").count() == 0
    row.locator("[data-testid=pause]").click()
    page.wait_for_url(f"{url}/")
    row = page.locator("tr[data-function=greet]")
    assert row.locator("[data-testid=paused-badge]").inner_text() == "paused"
    assert row.locator("[data-testid=resume]").is_visible()
    page.screenshot(path=f"{SHOTS}/ops-paused.png", full_page=True)

    (rid,) = _api(url, "/api/v1/events", {"name": "greet", "data": {"name": "Ada"}})["runs"]
    page.goto(f"{url}/runs")
    assert page.locator(f"tr[data-run='{rid}'] [data-testid=paused-badge]").is_visible()
    assert "paused" in page.locator(f"tr[data-run='{rid}'] [data-reason=paused]").inner_text()
    page.goto(f"{url}/runs/{rid}")
    assert page.locator("dl.facts [data-testid=paused-badge]").is_visible()
    assert "function greet is paused" in page.inner_text("[data-testid=why-waiting]")
    page.screenshot(path=f"{SHOTS}/ops-run-paused.png", full_page=True)
    assert _api(url, f"/api/v1/runs/{rid}")["status"] == "queued"

    page.goto(f"{url}/")
    page.locator("tr[data-function=greet] [data-testid=resume]").click()
    page.wait_for_url(f"{url}/")
    assert page.locator("tr[data-function=greet] [data-testid=paused-badge]").count() == 0
    wait_for(lambda: _api(url, f"/api/v1/runs/{rid}")["status"] == "completed", 30, interval=0.1,
             what="the released run to complete")

    page.click("nav a:has-text('Audit')")
    page.wait_for_url(f"{url}/audit")
    actions = page.locator("table[data-testid=audit] tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.action)")
    assert actions == ["resume", "pause"]
    assert page.locator("tr[data-action=pause] td").nth(1).inner_text() == "operator"
    assert "mode=queue" in page.locator("tr[data-action=pause]").inner_text()
    page.screenshot(path=f"{SHOTS}/ops-audit.png", full_page=True)

    viewer = _login(browser, url, VIEWER)
    assert viewer.locator("[data-testid=role-badge]").inner_text() == "viewer"
    for path in ("/", f"/runs/{rid}", "/failures", "/events"):
        viewer.goto(f"{url}{path}")
        assert viewer.locator("main form[method=post]").count() == 0, path
        buttons = viewer.locator("main button").all_inner_texts()
        assert set(buttons) <= {"Filter"}, (path, buttons)  # the GET filter forms only
    viewer.goto(f"{url}/")
    viewer.screenshot(path=f"{SHOTS}/ops-viewer.png", full_page=True)
    viewer.goto(f"{url}/audit")
    assert viewer.locator("table[data-testid=audit] tbody tr").count() == 2
