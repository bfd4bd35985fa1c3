"""The SDKs' sync payload as registry entries: every option mapped or refused, never ignored."""

from __future__ import annotations

import hashlib

import pytest

from durably.core.options import FunctionConfig
from durably.inngest.wire import hashed, sdk_event, step_id
from durably.inngest.signing import bearer_ok, sign, verify
from durably.inngest.sync import SyncError, translate

URL = "http://127.0.0.1:8000/api/inngest"


def payload(*functions: dict, **top) -> dict:
    return {"appname": "demo-app", "deploy_type": "ping", "framework": "fast_api", "sdk": "py:v0.5.19",
            "url": URL, "v": "0.1", "capabilities": {"connect": "v1", "in_band_sync": "v1", "trust_probe": "v1"},
            "functions": list(functions), **top}


def fn(fid: str = "demo-app-f", **extra) -> dict:
    return {"id": fid, "name": fid, "triggers": [{"event": "app/x"}],
            "steps": {"step": {"id": "step", "name": "step", "runtime": {"type": "http", "url": f"{URL}?fnId={fid}&stepId=step"}}},
            **extra}


def test_the_captured_full_config_maps_onto_durably_options():
    full = fn("demo-app-full-config",
              cancel=[{"event": "app/user.deleted", "if": "event.data.user_id == async.data.user_id", "timeout": "1d"}],
              concurrency=[{"key": "event.data.user_id", "limit": 5, "scope": "fn"},
                           {"key": "\"openai\"", "limit": 50, "scope": "account"}],
              debounce={"key": "event.data.user_id", "period": "30s", "timeout": "5m"},
              idempotency="event.data.order_id", priority={"run": "event.data.plan == 'enterprise' ? 120 : 0"},
              rateLimit={"key": "event.data.user_id", "limit": 1, "period": "4h"},
              throttle={"key": "event.data.user_id", "limit": 10, "period": "1m", "burst": 2},
              timeouts={"start": "10m", "finish": "1h"}, singleton={"key": "event.data.user_id", "mode": "skip"},
              triggers=[{"event": "app/user.created", "expression": "event.data.plan == 'pro'"},
                        {"cron": "TZ=Europe/Paris 0 12 * * *"}])
    full["steps"]["step"]["retries"] = {"attempts": 2}
    sync = translate(payload(full))
    assert sync.app_id == "demo-app" and sync.url == URL
    [c] = sync.configs
    typed = FunctionConfig.from_json(c)
    assert typed.retry.attempts == 3  # Inngest's attempts are retries
    assert [t.to_dict() for t in typed.triggers] == [{"event": "app/user.created", "if": "event.data.plan == 'pro'"},
                                                     {"cron": "0 12 * * *", "tz": "Europe/Paris"}]
    assert [(x.limit, x.key, x.scope) for x in typed.concurrency] == [(5, "event.data.user_id", "fn"),
                                                                      (50, "\"openai\"", "env")]
    assert typed.throttle.burst == 2 and typed.throttle.period == 60
    assert typed.rate_limit.period == 4 * 3600 and typed.debounce.timeout == 300
    assert typed.idempotency == "event.data.order_id" and typed.singleton.mode == "skip"
    assert typed.timeouts.start == 600 and typed.timeouts.finish == 3600
    assert typed.cancel_on[0].if_ == "event.data.user_id == async.data.user_id"
    assert c["inngest"]["app_id"] == "demo-app" and c["inngest"]["url"].endswith("fnId=demo-app-full-config&stepId=step")


def test_default_retries_are_inngest_s():
    [c] = translate(payload(fn())).configs
    assert FunctionConfig.from_json(c).retry.attempts == 5


def test_the_failure_handler_listens_to_durably_s_failure_event():
    failure = fn("demo-app-f-failure", triggers=[{"event": "inngest/function.failed",
                                                  "expression": "event.data.function_id == 'demo-app-f'"}])
    [c] = translate(payload(failure)).configs
    assert c["triggers"] == [{"event": "durably/function.failed", "if": "event.data.function_id == 'demo-app-f'"}]


@pytest.mark.parametrize("extra, message", [
    ({"middleware": []}, "option 'middleware' is not supported"),
    ({"batchEvents": {"maxSize": 10, "timeout": "5s", "if": "event.data.x"}}, "batchEvents.if is not supported"),
    ({"triggers": [{"cron": "* * * * *", "jitter": "10s"}]}, "cron jitter is not supported"),
    ({"concurrency": [{"limit": 1, "scope": "galaxy", "key": "k"}]}, "concurrency scope 'galaxy'"),
    ({"priority": {"run": "event.data.("}}, "invalid CEL expression"),
    # a field of an option's object that durably does not read is refused, never dropped
    ({"throttle": {"limit": 1, "period": "1s", "burts": 2}}, "option throttle.burts is not supported"),
    ({"rateLimit": {"limit": 1, "period": "1m", "hash": "x"}}, "option rateLimit.hash is not supported"),
    ({"debounce": {"period": "5s", "max": "1m"}}, "option debounce.max is not supported"),
    ({"priority": {"run": "1", "boost": 2}}, "option priority.boost is not supported"),
    ({"singleton": {"key": "k", "mode": "skip", "ttl": "1m"}}, "option singleton.ttl is not supported"),
    ({"timeouts": {"start": "1m", "run": "1h"}}, "option timeouts.run is not supported"),
    ({"batchEvents": {"maxSize": 10, "timeout": "5s", "window": "1s"}}, "option batchEvents.window is not supported"),
    ({"concurrency": [{"limit": 1, "key": "k", "weight": 2}]}, "concurrency field 'weight' is not supported"),
    ({"throttle": 5}, "option 'throttle' must be an object"),
    ({"triggers": [{"cron": "* * * * *", "timezone": "UTC"}]}, "trigger fields ['timezone'] are not supported"),
    ({"steps": {"step": {"id": "step", "name": "step", "runtime": {"type": "ws", "url": "x"}}}},
     "runtime 'ws' is not supported"),
    ({"steps": {"step": {"id": "step", "name": "step", "retries": {"attempts": 1, "backoff": "2s"},
                         "runtime": {"type": "http", "url": "x"}}}}, "retries.backoff is not supported"),
    ({"steps": {"step": {"id": "step", "name": "step", "concurrency": 2, "runtime": {"type": "http", "url": "x"}}}},
     "step field 'concurrency' is not supported"),
])
def test_what_durably_cannot_run_refuses_the_sync(extra, message):
    with pytest.raises(SyncError, match="durably cannot run this app yet") as e:
        translate(payload(fn(**extra)))
    assert message in str(e.value)


def test_unknown_top_level_fields_and_bad_payloads_are_refused():
    with pytest.raises(SyncError, match="sync field 'teleport' is not supported"):
        translate(payload(fn(), teleport=True))
    with pytest.raises(SyncError, match="appname is required"):
        translate({"url": URL, "functions": []})
    with pytest.raises(SyncError, match="url must be"):
        translate({"appName": "a", "url": "ftp://x", "functions": []})


def test_step_ids_are_the_users_numbered_as_the_sdk_numbers_them():
    op = {"id": hashlib.sha1(b"add:1").hexdigest(), "userland": {"id": "add", "index": 1}, "displayName": "add"}
    assert step_id(op) == "add:1" and hashed("add:1") == op["id"]
    assert hashed("add") == "58d1bbce297de3c304a9fefc3b483181872a5c6b"
    odd = {"id": "f" * 40, "userland": {"id": "add", "index": None}}
    assert step_id(odd) == "#" + "f" * 40 and hashed(step_id(odd)) == "f" * 40


def test_signatures_as_the_sdks_check_them():
    key = "signkey-prod-" + "0123456789abcdef" * 4
    header = sign(b'{"a":1}', key, now=1795359377)
    assert header.startswith("t=1795359377&s=")
    assert verify(b'{"a":1}', header, key) and not verify(b'{"a":2}', header, key)
    assert not verify(b'{"a":1}', header, "signkey-prod-" + "f" * 64)
    digest = hashlib.sha256(bytes.fromhex("0123456789abcdef" * 4)).hexdigest()
    assert bearer_ok(f"Bearer {digest}", key) and bearer_ok(f"Bearer signkey-prod-{digest}", key)
    assert not bearer_ok("Bearer undefined", key) and not bearer_ok(None, key)


def test_internal_events_reach_the_sdk_under_inngest_s_names():
    cron = sdk_event({"name": "durably/cron", "id": "cron:f:2026", "ts": 1,
                      "data": {"cron": "* * * * *", "tz": "UTC", "tick": "2026-12-03T08:00:00Z"}})
    assert cron["name"] == "inngest/scheduled.timer" and cron["data"]["scheduledAt"] == "2026-12-03T08:00:00Z"
    assert sdk_event({"name": "durably/function.failed", "data": None})["name"] == "inngest/function.failed"
    assert sdk_event({"name": "app/x", "data": {"a": 1}}) == {"name": "app/x", "data": {"a": 1}, "id": "", "ts": 0,
                                                              "user": {}}
