"""The dashboard in headless Chromium (Debian's chromium through Playwright) against `durably dev`:
the run trace, Run now asking for data, live refresh of /failures, the favicon and the health
chart's axes. Screenshots go to $DASH_SHOTS (default /tmp/dash-shots)."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from tests.e2e.test_dashboard import APP, _start, _stop, browser  # noqa: F401 - the browser fixture
from tests.helpers import wait_for

SHOTS = os.environ.get("DASH_SHOTS", "/tmp/dash-shots")


@pytest.fixture
def dev(tmp_path):
    env = dict(os.environ, DURABLY_ENV="dev", PYTHONUNBUFFERED="1")
    env.pop("DURABLY_DATABASE_URL", None)
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


def _send(url: str, name: str, data: dict) -> str | None:
    runs = _api(url, "/api/v1/events", {"name": name, "data": data})["runs"]
    return runs[0] if runs else None


def _run(url: str, rid: str) -> dict:
    return _api(url, f"/api/v1/runs/{rid}")


def test_run_trace_draws_attempts_backoff_and_the_real_wait(browser, dev):
    url = dev
    rid = _send(url, "trace.start", {"ticket": "T-1"})
    wait_for(lambda: any(s["id"] == "approval" and s["status"] == "waiting" for s in _run(url, rid)["steps"]),
             30, interval=0.1, what="the run to wait for its approval")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{url}/runs/{rid}")
    # While it waits, the page says so.
    assert "waiting for an event in step approval" in page.inner_text("[data-testid=why-waiting]")
    page.screenshot(path=f"{SHOTS}/trace-waiting.png", full_page=True)
    event_page = browser.new_page()
    event_page.goto(f"{url}/events/{_run(url, rid)['event_id']}")
    assert "waiting" in event_page.inner_text("#live .badge")
    _send(url, "trace.approved", {"ticket": "T-1"})
    # The event page refreshes live too: its run turns completed without a reload.
    event_page.wait_for_function("document.querySelector('#live .badge').textContent.trim() === 'completed'",
                                 timeout=30_000)
    event_page.close()
    # The page refreshes itself (no reload) until the run is completed.
    page.wait_for_function("document.querySelector('h1 .badge').textContent.trim() === 'completed'",
                           timeout=30_000)
    run = _run(url, rid)
    trace = page.locator("[data-testid=trace]")
    span_ms = int(trace.get_attribute("data-span-ms"))
    assert span_ms == run["duration_ms"] or abs(span_ms - run["duration_ms"]) <= 2, (span_ms, run["duration_ms"])
    assert span_ms < 20_000  # the axis fits the run, not the wait's 60 s timeout
    # fetch: one bar per attempt, the two failed ones red with their error, backoff as gaps.
    fetch = page.locator("[data-lane=fetch]")
    work = fetch.locator(".seg.work")
    assert work.count() == 3
    assert fetch.locator(".seg.work.failed").count() == 2
    assert "upstream timeout on attempt 0" in fetch.locator(".seg.work.failed").first.get_attribute("title")
    assert fetch.locator(".seg.gap").count() == 2
    assert "backoff" in fetch.locator(".seg.gap").first.get_attribute("title")
    assert "3 attempts" in fetch.inner_text()
    boxes = [work.nth(i).bounding_box() for i in range(3)]
    gaps = [fetch.locator(".seg.gap").nth(i).bounding_box() for i in range(2)]
    # In order along the axis: attempt, backoff, attempt, backoff, attempt; a backoff of 300 ms
    # or more is a visible stretch, not a tick.
    xs = [boxes[0]["x"], gaps[0]["x"], boxes[1]["x"], gaps[1]["x"], boxes[2]["x"]]
    assert xs == sorted(xs), xs
    assert all(g["width"] > 10 for g in gaps), gaps
    # The wait is drawn to the moment it ended; the axis ends with the run.
    wait = page.locator("[data-lane=approval] .seg.idle")
    assert "ended early" in wait.get_attribute("title")
    track = page.locator("[data-lane=approval] .track").bounding_box()
    wb = wait.bounding_box()
    assert wb["x"] + wb["width"] <= track["x"] + track["width"] + 1
    nap = page.locator("[data-lane=nap] .seg.idle").bounding_box()
    assert nap["x"] >= boxes[2]["x"] and nap["width"] > 20  # the sleep (400 ms) follows the step
    ticks = page.locator("[data-testid=trace] .tick").all_inner_texts()
    assert ticks[0] in ("0 ms", "0 s") and len(ticks) >= 3 and all(t.endswith((" ms", " s")) for t in ticks)
    # "event · event" is gone: the trigger reads "event <name>".
    assert "event · event" not in page.inner_text("dl.facts")
    page.screenshot(path=f"{SHOTS}/trace-completed.png", full_page=True)
    # Without JavaScript the trace is the same HTML.
    ctx = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    nojs = ctx.new_page()
    nojs.goto(f"{url}/runs/{rid}")
    assert nojs.locator("[data-lane=fetch] .seg.work").count() == 3
    assert nojs.locator("[data-lane=approval] .seg.idle").count() == 1
    ctx.close()


def test_run_now_asks_for_data_prefilled_from_the_last_event(browser, dev):
    url = dev
    first = _send(url, "sync.requested", {"client": "c7"})
    wait_for(lambda: _run(url, first)["status"] == "completed", 30, interval=0.1, what="the first sync")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.on("dialog", lambda d: d.accept())
    page.goto(url + "/")
    page.click("tr[data-function=sync] [data-testid=run-now-data]")
    page.wait_for_url("**/functions/sync/run")
    area = page.locator("textarea[name=data]")
    assert json.loads(area.input_value()) == {"client": "c7"}
    assert "event.data.client" in page.inner_text("main")
    page.screenshot(path=f"{SHOTS}/run-now-form.png", full_page=True)
    # Data the keys cannot read: the form says why, keeps the text, and starts nothing.
    area.fill('{"customer": "c8"}')
    page.click("main button[type=submit]")
    assert "no such key" in page.inner_text("[data-testid=run-now-error]")
    assert json.loads(page.locator("textarea[name=data]").input_value()) == {"customer": "c8"}
    page.screenshot(path=f"{SHOTS}/run-now-error.png", full_page=True)
    page.locator("textarea[name=data]").fill('{"client": "c8"}')
    page.click("main button[type=submit]")
    link = page.locator("[data-testid=started-run]")
    link.wait_for()
    with page.expect_navigation():
        link.click()
    page.wait_for_function("document.querySelector('h1 .badge').textContent.trim() === 'completed'",
                           timeout=30_000)
    assert "synced c8" in page.inner_text("main")


def test_run_now_of_a_typed_function_starts_from_its_schema_and_shows_a_refusal(browser, dev):
    url = dev
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.on("dialog", lambda d: d.accept())
    page.goto(url + "/")
    page.click("tr[data-function=reindex] [data-testid=run-now-data]")
    page.wait_for_url("**/functions/reindex/run")
    area = page.locator("textarea[name=data]")
    assert json.loads(area.input_value()) == {"clientId": "", "folders": ["inbox"], "full": False}
    assert "reindex.requested" in page.inner_text("[data-testid=run-now-typed]")
    area.fill('{"clientId": "c3"}')
    page.click("main button[type=submit]")
    assert "data.full: Field required" in page.inner_text("[data-testid=run-now-error]")
    assert json.loads(page.locator("textarea[name=data]").input_value()) == {"clientId": "c3"}
    page.screenshot(path=f"{SHOTS}/run-now-typed-error.png", full_page=True)
    page.locator("textarea[name=data]").fill('{"clientId": "c3", "full": true}')
    page.click("main button[type=submit]")
    link = page.locator("[data-testid=started-run]")
    link.wait_for()
    with page.expect_navigation():
        link.click()
    page.wait_for_function("document.querySelector('h1 .badge').textContent.trim() === 'completed'",
                           timeout=30_000)
    assert "reindexed c3 (full)" in page.inner_text("main")


def test_failures_refresh_live_and_group_by_masked_message(browser, dev):
    url = dev
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(url + "/failures")
    assert "No failed runs" in page.inner_text("main")
    ids = [_send(url, "charge", {"order": n}) for n in (1234, 77, 90210)]
    # No reload: the live region fills in by itself.
    row = page.locator("tr[data-group=charge]")
    row.wait_for(timeout=30_000)
    wait_for(lambda: all(_run(url, i)["status"] == "failed" for i in ids), 30, interval=0.1, what="the failures")
    page.wait_for_function(
        "document.querySelector('tr[data-group=charge] [data-testid=count]').textContent.trim() === '3'",
        timeout=30_000)
    assert page.locator("tr[data-group=charge]").count() == 1
    assert "card declined for order <n>" in row.inner_text()
    # A ticked group stays ticked across a refresh.
    row.locator("input[type=checkbox]").check()
    page.locator("h1").click()  # focus leaves the region
    before = page.locator("#live").get_attribute("data-refreshed")
    page.wait_for_function(f"document.querySelector('#live').getAttribute('data-refreshed') !== {json.dumps(before)}",
                           timeout=30_000)
    assert page.locator("tr[data-group=charge] input[type=checkbox]").is_checked()
    page.screenshot(path=f"{SHOTS}/failures.png", full_page=True)
    page.click("button[name=dry_run]")
    assert "3 run(s) would be replayed" in page.inner_text("[data-testid=preview]")
    # Without JavaScript: the same groups, and the dry run works as a plain form.
    ctx = browser.new_context(java_script_enabled=False)
    nojs = ctx.new_page()
    nojs.goto(url + "/failures")
    assert nojs.locator("tr[data-group=charge] [data-testid=count]").inner_text().strip() == "3"
    nojs.check("tr[data-group=charge] input[type=checkbox]")
    nojs.click("button[name=dry_run]")
    assert "3 run(s) would be replayed" in nojs.inner_text("[data-testid=preview]")
    ctx.close()


def test_favicon_and_health_chart_axes(browser, dev):
    url = dev
    with urllib.request.urlopen(url + "/favicon.ico", timeout=5) as r:
        assert r.status == 200 and r.headers["content-type"].startswith(("image/x-icon", "image/vnd.microsoft.icon"))
        assert r.read(4) == b"\x00\x00\x01\x00"
    rid = _send(url, "sync.requested", {"client": "c1"})
    wait_for(lambda: _run(url, rid)["status"] == "completed", 30, interval=0.1, what="a finished run")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    bad = []
    page.on("response", lambda resp: bad.append(resp.url) if resp.status >= 400 else None)
    page.goto(url + "/health")
    chart = page.locator("svg.chart")
    assert chart.locator(".axis-y text").count() >= 3 and chart.locator(".axis-x text").count() >= 7
    labels = [t.strip() for t in chart.locator("text").all_text_contents()]
    assert "runs / min" in labels and "−60 min" in labels and "now" in labels
    assert chart.locator("rect.c-completed").count() >= 1
    assert page.locator("link[rel=icon]").count() == 1
    assert not bad, bad
    page.screenshot(path=f"{SHOTS}/health.png", full_page=True)


def test_a_queued_run_says_why_it_waits(browser, dev):
    url = dev
    rid = _send(url, "backoff", {})
    wait_for(lambda: any(s["status"] == "retrying" for s in _run(url, rid)["steps"]), 30, interval=0.1,
             what="the step to be in backoff")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{url}/runs/{rid}")
    why = page.inner_text("[data-testid=why-waiting]")
    assert "retry backoff: step call failed attempt 1" in why and "upstream refused the connection" in why
    assert "in 59m" in why or "in 1h" in why
    # The trace draws the pending backoff after the failed attempt, up to now.
    assert page.locator("[data-lane=call] .seg.work.failed").count() == 1
    assert "backoff until" in page.locator("[data-lane=call] .seg.gap.pending").get_attribute("title")
    page.screenshot(path=f"{SHOTS}/queued-backoff.png", full_page=True)
    page.goto(f"{url}/runs?status=queued")
    row = page.locator(f"tr[data-run='{rid}']")
    assert "retry backoff" in row.inner_text()
    page.screenshot(path=f"{SHOTS}/runs-queued.png", full_page=True)


def test_login_returns_to_the_deep_link_with_its_query(browser, tmp_path):
    from tests.apps import dash_app
    from tests.helpers import make_app

    db = f"sqlite:///{tmp_path}/durably.db"
    registrar = make_app(db, "dash", env="production")
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
        page.goto(url + "/runs?status=completed&function=greet")
        assert "/login?next=" in page.url and "status%3Dcompleted" in page.url
        page.fill("input[name=token]", "adm-secret")
        page.screenshot(path=f"{SHOTS}/login.png", full_page=True)
        page.click("main button[type=submit]")
        page.wait_for_url("**/runs?status=completed&function=greet")
        assert page.locator("select[name=status]").input_value() == "completed"
        assert page.locator("input[name=function]").input_value() == "greet"
        # A next that leaves the site is ignored.
        page.goto(url + "/login?next=//evil.example/")
        assert page.locator("input[name=next]").input_value() == "/"
    finally:
        _stop(proc)


def test_a_cancelled_runs_wait_is_drawn_cancelled_not_waiting(browser, dev):
    """DESIGN §3: a cancelled run's unfinished steps end as cancelled; the run page shows so."""
    url = dev
    rid = _send(url, "trace.start", {"ticket": "T-9"})
    wait_for(lambda: any(s["id"] == "approval" and s["status"] == "waiting" for s in _run(url, rid)["steps"]),
             30, interval=0.1, what="the run to wait for its approval")
    _api(url, f"/api/v1/runs/{rid}/cancel", {})
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{url}/runs/{rid}")
    assert page.inner_text("h1 .badge").strip() == "cancelled"
    assert page.inner_text("tr[data-step=approval] .badge").strip() == "cancelled"
    lane = page.locator("[data-lane=approval]")
    assert lane.locator(".meta").inner_text().startswith("cancelled")
    assert lane.locator(".seg.pending").count() == 0
    assert "cancelled with its run" in lane.locator(".seg.idle").get_attribute("title")
    assert "waiting" not in page.inner_text("[data-testid=trace]") + page.inner_text("table")
    page.screenshot(path=f"{SHOTS}/cancelled-wait.png", full_page=True)
    page.close()
