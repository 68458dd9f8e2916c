"""A dbt project (dbt-postgres) against Bowman, with `schema: public` in its profile: a table model
and a view model (dbt's default materialization), `dbt run` and `dbt test` twice in a row (the
second run replaces both through dbt's create-as-__dbt_tmp, rename and drop)."""
import os
import pathlib
import shutil
import subprocess

import psycopg
import pytest

DBT = os.environ.get("BOWMAN_TEST_DBT")
PROJECT = pathlib.Path(__file__).resolve().parents[1] / "dbt" / "bowman_demo"


@pytest.mark.skipif(not DBT and not os.environ.get("BOWMAN_TEST_REQUIRE_SERVICES"), reason="set BOWMAN_TEST_DBT (scripts/test does)")
def test_dbt_run_and_test(bowman, dsn, tmp_path):
    assert DBT, "BOWMAN_TEST_DBT must name the dbt executable"
    host, port = bowman
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project)
    env = dict(os.environ, BOWMAN_PG_PORT=str(port), DBT_SEND_ANONYMOUS_USAGE_STATS="false")

    def dbt(*args):
        done = subprocess.run(
            [DBT, *args, "--profiles-dir", str(project), "--project-dir", str(project),
             "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")],
            env=env, capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    for _ in range(2):
        assert "PASS=2" in dbt("run")
        assert "PASS=6" in dbt("test")
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT city, trips FROM public.fares_by_city ORDER BY city").fetchall()
        # The same view under the default database's Spark name.
        assert conn.execute("SELECT sum(trips) FROM default.fares_by_city").fetchone() == (300,)
        views = [r[0] for r in conn.execute("SELECT viewname FROM pg_catalog.pg_views WHERE schemaname = 'public'").fetchall()]
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = 'public'").fetchall()]
        # The view reads the table as it is now: rows inserted since show through it.
        conn.execute("INSERT INTO public.trips VALUES (301, 'Detroit', 1.0)")
        (detroit,) = conn.execute("SELECT trips FROM fares_by_city WHERE city = 'Detroit'").fetchone()
    assert rows == [("Ann Arbor", 100), ("Detroit", 100), ("Lansing", 100)]
    assert "fares_by_city" in views and "fares_by_city" not in tables
    assert "trips" in tables and "trips" not in views
    # dbt's backups and temporaries are gone.
    assert not [n for n in views + tables if "__dbt" in n], views + tables
    assert detroit == 101
