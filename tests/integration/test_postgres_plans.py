"""Plans of the dashboard's per-function reads on PostgreSQL, as a prepared statement runs them:
with a generic plan (psycopg prepares a statement after a few executions), on a ledger where
one function has every run. A function with no run must not cost a walk through the ledger."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import psycopg

from durably.store.queries import load
from tests.helpers import make_app


def test_the_last_run_of_a_function_is_read_through_its_index_by_a_generic_plan(pg_url):
    app = make_app(pg_url, "plans", env="plans")
    app.register()
    app.close()
    schema = parse_qs(urlsplit(pg_url).query)["schema"][0]
    with psycopg.connect(pg_url.split("?")[0], autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        now = time.time()
        conn.execute("INSERT INTO durably_runs (id, env, function_id, status, trigger, event, available_at, sort_at, "
                     "created_at) SELECT 'r' || i, 'plans', 'busy', 'completed', 'event', '{}', %s, %s, %s + i "
                     "FROM generate_series(1, 20000) AS i", (now, now, now))
        conn.execute("ANALYZE durably_runs")
        conn.execute("SET plan_cache_mode = force_generic_plan")
        sql = load("postgres", "pyformat")["last_run_of"]
        cur = conn.cursor()
        for function_id, expect in (("idle", None), ("busy", "r20000")):
            row = cur.execute(sql, {"env": "plans", "function_id": function_id}, prepare=True).fetchone()
            assert (row[0] if row else None) == expect
        # The generic plan itself: through the function's index, never filtering the ledger.
        params = ", ".join(["text", "text"])
        conn.execute(f"PREPARE last_run({params}) AS " + sql.replace("%(env)s", "$1").replace("%(function_id)s", "$2"))
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN (ANALYZE) EXECUTE last_run('plans', 'idle')"))
        assert "durably_runs_by_function" in plan and "Rows Removed by Filter" not in plan, plan
