"""A dbt project (dbt-postgres) against Bowman: `dbt run` twice (the second run replaces the
tables through dbt's rename-and-drop) and `dbt test`."""
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

    assert "PASS=2" in dbt("run")
    assert "PASS=2" in dbt("run")
    assert "PASS=6" in dbt("test")
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT city, trips FROM dbt_demo.fares_by_city ORDER BY city").fetchall()
        # dbt's backups and temporaries are gone: only the two models remain.
        tables = sorted(r[1] for r in conn.execute("SHOW TABLES IN dbt_demo").fetchall())
    assert rows == [("Ann Arbor", 100), ("Detroit", 100), ("Lansing", 100)]
    assert tables == ["fares_by_city", "trips"]
