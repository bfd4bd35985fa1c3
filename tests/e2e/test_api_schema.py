"""schemathesis against the live server's /openapi.json: generated requests (valid and invalid)
for every operation, with bounded examples, and never a 5xx; responses must match the document."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.e2e.procs import Procs
from tests.e2e.server import free_port, start_server

KEYS = {"event": "schema-event-key", "admin": "schema-admin-token", "cron": "schema-cron-secret"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api-schema")
    procs = Procs(tmp)
    db_url = f"sqlite:///{tmp}/durably.db"
    try:
        from tests.apps.api_app import app

        app.configure(database_url=db_url, env="production")
        try:
            app.register()  # a registry to read, as a worker would have written it
        finally:
            app.close()
        server = start_server(procs, db_url, "production", KEYS)
        yield server
        procs.stop(server.proc)
    finally:
        procs.cleanup()


@pytest.fixture(scope="module")
def api_schema(live):
    return schemathesis.openapi.from_url(live.base + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


def _credential(case) -> str:
    if case.method == "POST" and case.path == "/api/v1/events":
        return KEYS["event"]
    if case.path.startswith("/api/v1/cron/"):
        return KEYS["cron"]
    return KEYS["admin"]


def accepts_valid_data(ctx, response, case):
    """schemathesis' positive_data_acceptance, except for two kinds of string that a JSON Schema
    cannot describe: the opaque page cursor (only a next_cursor this API returned is one) and a
    CEL expression (bulk cancel's ``if``: only one that parses is); either is a 400 otherwise."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except Exception:
        error = response.json()["error"] if response.status_code == 400 else {}
        if error.get("message", "").startswith("cursor:") or error.get("code") == "expression_error":
            return None
        if response.status_code == 502 and response.json()["error"]["code"] == "app_sync_failed":
            return None  # a valid app URL nobody answers at (see _loopback)
        raise


CLOSED_PORT = free_port()  # nothing listens here


def _loopback(case) -> None:
    """A valid app URL for POST /api/v1/apps is sent to a closed loopback port instead: the
    server then tries the sync (and answers 502) without calling hosts the generator made up."""
    from durably.errors import InvalidInput
    from durably.inngest.apps import check_url

    if case.path == "/api/v1/apps" and isinstance(case.body, dict) and isinstance(case.body.get("url"), str):
        try:
            check_url(case.body["url"])
        except InvalidInput:
            return
        case.body = {**case.body, "url": f"http://127.0.0.1:{CLOSED_PORT}/api/inngest"}


def no_server_error_but_an_unreachable_app(ctx, response, case):
    """not_a_server_error, except the one 5xx an app URL may answer: 502, the app unreachable."""
    if response.status_code == 502 and case.path == "/api/v1/apps" and \
            response.json()["error"]["code"] == "app_sync_failed":
        return None
    return not_a_server_error(ctx, response, case)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_matches_its_document_and_never_fails(case, live):
    _loopback(case)
    case.call_and_validate(headers={"Authorization": f"Bearer {_credential(case)}"}, timeout=10,
                           excluded_checks=[positive_data_acceptance, not_a_server_error],
                           additional_checks=[accepts_valid_data, no_server_error_but_an_unreachable_app])
