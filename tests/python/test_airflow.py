"""An Airflow DAG of SQL tasks (SQLExecuteQueryOperator, SQLCheckOperator) run against Bowman
with `airflow dags test`."""
import os
import pathlib
import subprocess

import psycopg
import pytest

# The Python of Airflow's own virtualenv (runs `python -m airflow`).
AIRFLOW = os.environ.get("BOWMAN_TEST_AIRFLOW_PYTHON")
DAGS = pathlib.Path(__file__).resolve().parents[1] / "airflow" / "dags"


@pytest.mark.skipif(not AIRFLOW and not os.environ.get("BOWMAN_TEST_REQUIRE_SERVICES"), reason="set BOWMAN_TEST_AIRFLOW_PYTHON (scripts/test does)")
def test_airflow_dags_test(bowman, dsn, tmp_path):
    assert AIRFLOW, "BOWMAN_TEST_AIRFLOW_PYTHON must name the Python of an Airflow virtualenv"
    host, port = bowman
    env = dict(
        os.environ,
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path}/airflow.db",
        AIRFLOW_CONN_BOWMAN=f"postgres://bowman@{host}:{port}/bowman",
    )

    def airflow(*args):
        done = subprocess.run([AIRFLOW, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        return done.stdout + done.stderr

    airflow("db", "migrate")
    out = airflow("dags", "test", "bowman_batch", "2018-03-05")
    # `dags test` records its run and task states in Airflow's metadata database.
    import sqlite3

    with sqlite3.connect(tmp_path / "airflow.db") as db:
        runs = db.execute("SELECT state FROM dag_run WHERE dag_id = 'bowman_batch'").fetchall()
        tasks = dict(db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = 'bowman_batch'").fetchall())
    assert runs == [("success",)], out[-3000:]
    assert tasks == {"prepare": "success", "overwrite_partition": "success", "check": "success"}, out[-3000:]
    with psycopg.connect(dsn, autocommit=True) as conn:
        (n,) = conn.execute("SELECT count(*) FROM airflow_lake.daily WHERE dt = DATE '2018-03-05'").fetchone()
    assert n == 1000
