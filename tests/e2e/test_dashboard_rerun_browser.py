"""The dashboard's operator controls in headless Chromium against `durably dev`, on both
stores: "Rerun from here" on a step of /runs/{id} (with edited event data) and, on /runs,
Cancel selected and Cancel all matching (after a dry-run count). Screenshots go to
$DASH_SHOTS (default /tmp/dash-shots)."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from tests.e2e.test_dashboard import _start, _stop, browser  # noqa: F401 - the browser fixture
from tests.helpers import wait_for

SHOTS = os.environ.get("DASH_SHOTS", "/tmp/dash-shots")
APP = os.path.join(os.path.dirname(__file__), "..", "apps", "rerun_app.py")


@pytest.fixture
def dev(store_url, tmp_path):
    env = dict(os.environ, DURABLY_ENV="dev", PYTHONUNBUFFERED="1", DURABLY_DATABASE_URL=store_url)
    env.pop("DURABLY_ADMIN_TOKEN", None)
    proc, url = _start(["dev", APP], env, str(tmp_path))
    os.makedirs(SHOTS, exist_ok=True)
    yield url
    _stop(proc)


def _api(url: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _send(url: str, name: str, data: dict) -> str:
    return _api(url, "/api/v1/events", {"name": name, "data": data})["runs"][0]


def _run(url: str, rid: str) -> dict:
    return _api(url, f"/api/v1/runs/{rid}")


def _done(url: str, rid: str) -> dict:
    return wait_for(lambda: (lambda r: r if r["status"] in ("completed", "failed") else None)(_run(url, rid)),
                    30, interval=0.1, what=f"run {rid} to finish")


def test_rerun_from_here_with_edited_data(browser, dev, store_url):
    url = dev
    rid = _send(url, "steps3", {"n": 1})
    first = _done(url, rid)
    assert first["output"]["seen"] == 1
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.on("dialog", lambda d: d.accept())
    page.goto(f"{url}/runs/{rid}")
    row = page.locator("tr[data-step=read]")
    row.locator("summary").click()
    area = row.locator("textarea[name=data]")
    assert json.loads(area.input_value()) == {"n": 1}  # pre-filled with the run's event data
    area.fill('{"n": 42}')
    page.screenshot(path=f"{SHOTS}/rerun-form-{store_url.split(':')[0]}.png", full_page=True)
    row.locator("button[type=submit]").click()
    page.wait_for_url(lambda u: "/runs/" in u and not u.endswith(rid), timeout=15_000)
    new_id = page.url.rsplit("/", 1)[1]
    new = _done(url, new_id)
    assert new["status"] == "completed" and new["replay_of"] == rid and new["trigger"] == "replay"
    # "stamp" came from the original's memo (same value); "read" saw the new data; "finish" ran again.
    assert new["output"]["stamp"] == first["output"]["stamp"]
    assert new["output"]["seen"] == 42
    assert new["output"]["fresh"] != first["output"]["fresh"]
    page.reload()
    page.wait_for_function("document.querySelector('h1 .badge').textContent.trim() === 'completed'",
                           timeout=15_000)
    assert "from the original" in page.locator("tr[data-step=stamp]").inner_text()
    assert "from the original" not in page.locator("tr[data-step=read]").inner_text()
    assert "from the original's memo" in page.locator("[data-lane=stamp] .meta").inner_text()  # the trace says so
    assert "memo" not in page.locator("[data-lane=read] .meta").inner_text()
    assert rid in page.inner_text("dl.facts")  # "replay of <original>"
    page.screenshot(path=f"{SHOTS}/rerun-new-run-{store_url.split(':')[0]}.png", full_page=True)


def test_cancel_selected_and_cancel_all_matching(browser, dev, store_url):
    url = dev
    parked = [_send(url, "parked", {"i": i}) for i in range(3)]
    done = _send(url, "steps3", {"n": 0})
    _done(url, done)
    for rid in parked:
        wait_for(lambda: _run(url, rid)["status"] == "sleeping", 30, interval=0.1, what=f"run {rid} to sleep")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("dialog", lambda d: d.accept())
    page.goto(f"{url}/runs")
    assert page.locator(f"tr[data-run='{done}'] input[type=checkbox]").count() == 0  # finished: nothing to cancel
    page.check(f"tr[data-run='{parked[0]}'] input[name=run]")
    page.check(f"tr[data-run='{parked[1]}'] input[name=run]")
    page.screenshot(path=f"{SHOTS}/cancel-selected-{store_url.split(':')[0]}.png", full_page=True)
    page.click("button[value=selected]")
    notice = page.locator("[data-testid=cancelled]")
    notice.wait_for(timeout=15_000)
    assert "Cancelled 2 run(s)" in notice.inner_text()
    assert [_run(url, r)["status"] for r in parked] == ["cancelled", "cancelled", "sleeping"]
    assert _run(url, done)["status"] == "completed"

    # Cancel all matching the filter: a dry-run count first, then the cancel once confirmed.
    page.goto(f"{url}/runs?function=parked")
    page.click("button[value=matching]")
    preview = page.locator("[data-testid=cancel-preview]")
    preview.wait_for(timeout=15_000)
    assert "Dry run: 1 unfinished run(s) of parked" in preview.inner_text()
    assert parked[2] in preview.inner_text()
    assert _run(url, parked[2])["status"] == "sleeping"  # the dry run cancelled nothing
    page.screenshot(path=f"{SHOTS}/cancel-matching-preview-{store_url.split(':')[0]}.png", full_page=True)
    preview.locator("button[type=submit]").click()
    page.locator("[data-testid=cancelled]").wait_for(timeout=15_000)
    assert "Cancelled 1 run(s)" in page.inner_text("[data-testid=cancelled]")
    assert _run(url, parked[2])["status"] == "cancelled"
    page.screenshot(path=f"{SHOTS}/cancel-matching-done-{store_url.split(':')[0]}.png", full_page=True)
