"""Settings from the environment: names, types, defaults, secrets, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from durably.config import Settings
from durably.errors import ConfigError


def test_defaults_are_durable_and_local():
    s = Settings.load({})
    assert s.database_url == "sqlite:///.durably/durably.db" and s.env == "dev"
    assert s.sqlite_synchronous == "full" and s.lease_seconds == 30.0 and s.port == 8288
    assert s.redis_url is None and s.event_key is None and s.inline_fallback is False
    assert s.schema_ == "durably" and s.event_loop == "auto"


def test_variables_are_typed_and_their_names_not_case_sensitive():
    s = Settings.load({"durably_database_url": "sqlite:///x.db", "DURABLY_PORT": " 9000 ", "Durably_Env": "prod-2",
                       "DURABLY_INLINE_FALLBACK": "Yes", "DURABLY_LEASE_SECONDS": "2.5", "CRON_SECRET": "c",
                       "DURABLY_SCHEMA": "jobs", "DURABLY_SQLITE_SYNCHRONOUS": "NORMAL", "UNRELATED": "1",
                       "DURABLY_NOT_A_SETTING": "ignored"})
    assert (s.database_url, s.port, s.env, s.inline_fallback, s.lease_seconds) == ("sqlite:///x.db", 9000, "prod-2",
                                                                                     True, 2.5)
    assert s.cron_secret.get_secret_value() == "c" and s.schema_ == "jobs" and s.sqlite_synchronous == "normal"


def test_cron_secret_is_also_read_under_the_prefixed_name_but_the_plain_one_wins():
    assert Settings.load({"DURABLY_CRON_SECRET": "a"}).cron_secret.get_secret_value() == "a"
    both = Settings.load({"DURABLY_CRON_SECRET": "a", "CRON_SECRET": "b"})
    assert both.cron_secret.get_secret_value() == "b"


def test_overrides_win_over_the_environment_and_none_means_not_given():
    s = Settings.load({"DURABLY_ENV": "staging", "DURABLY_PORT": "1"}, env="dev", port=None)
    assert s.env == "dev" and s.port == 1
    r = s.replace(admin_token="tok", lease_seconds=5)
    assert r.admin_token.get_secret_value() == "tok" and r.lease_seconds == 5.0 and r.env == "dev"
    assert s.admin_token is None  # settings are values: replace() makes new ones
    assert r.replace(schema="jobs").schema_ == "jobs" == Settings.load({}, schema="jobs").schema_


def test_secrets_never_print_and_empty_counts_as_unset():
    s = Settings.load({"DURABLY_ADMIN_TOKEN": "hunter2", "DURABLY_EVENT_KEY": ""})
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.admin_token)
    assert s.admin_token.get_secret_value() == "hunter2" and not s.event_key


@pytest.mark.parametrize("var,value,says", [
    ("DURABLY_PORT", "http", "whole number"),
    ("DURABLY_LEASE_SECONDS", "0", "> 0"),
    ("DURABLY_BACKLOG_ALERT_SECONDS", "soon", "number"),
    ("DURABLY_ENV", "my env", "letters, digits"),
    ("DURABLY_SQLITE_SYNCHRONOUS", "sometimes", "'full' or 'normal'"),
    ("DURABLY_INLINE_FALLBACK", "maybe", "true or false"),
    ("DURABLY_PRUNE_AFTER", "-3d", "30s"),
    ("DURABLY_EVENT_LOOP", "tokio", "'auto', 'asyncio' or 'uvloop'"),
])
def test_a_bad_value_is_a_one_line_error_naming_the_variable(var, value, says):
    with pytest.raises(ConfigError) as exc:
        Settings.load({var: value})
    msg = str(exc.value)
    assert msg.startswith(f"invalid setting {var}: ") and says in msg and "\n" not in msg


def test_an_unknown_override_is_an_error_not_ignored():
    with pytest.raises(ConfigError, match="unknown setting 'databse_url'"):
        Settings.load({}, databse_url="sqlite:///typo.db")


def test_the_worker_and_the_cli_start_without_importing_pydantic(tmp_path):
    code = ("import sys, durably, durably.cli, durably.engine.worker, durably.store.sqlite\n"
            "sys.argv = ['durably', 'runs', '--json']\n"
            "try:\n"
            "    durably.cli.main()\n"
            "finally:\n"
            "    print('pydantic' in sys.modules, file=sys.stderr)\n")
    made = subprocess.run([sys.executable, "-m", "durably", "migrate"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)  # `durably runs` reads a store, it does not create one
    assert made.returncode == 0, made
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out
    assert out.stderr.strip() == "False", out.stderr


def test_long_running_commands_run_on_uvloop_unless_told_otherwise():
    import asyncio

    import uvloop

    from durably.lifecycle import loop_factory, run

    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert loop_factory("asyncio") is None
    assert run(loop_module(), "auto").startswith("uvloop") and run(loop_module(), "uvloop").startswith("uvloop")
    assert run(loop_module(), "asyncio").startswith("asyncio")
    loop = loop_factory()()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_asking_for_uvloop_where_it_is_missing_is_a_clear_error(monkeypatch):
    import asyncio
    import warnings

    from durably.lifecycle import run

    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the coroutine is closed, not left unawaited
        with pytest.raises(ConfigError, match="DURABLY_EVENT_LOOP=uvloop, but uvloop is not installed"):
            run(asyncio.sleep(0), "uvloop")
        assert run(asyncio.sleep(0, "fell back"), "auto") == "fell back"
