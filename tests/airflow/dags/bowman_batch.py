"""The data team's batch job as an Airflow 3 DAG: SQL tasks run through Bowman over pgwire with
the common SQL provider's operators (tests/python/test_airflow.py runs it with `airflow dags
test` and checks what it wrote)."""
import datetime

from airflow.providers.common.sql.operators.sql import SQLCheckOperator, SQLExecuteQueryOperator
from airflow.sdk import DAG

with DAG(
    dag_id="bowman_batch",
    start_date=datetime.datetime(2018, 3, 5, tzinfo=datetime.timezone.utc),
    schedule=None,
    catchup=False,
) as dag:
    prepare = SQLExecuteQueryOperator(
        task_id="prepare",
        conn_id="bowman",
        sql=[
            "CREATE DATABASE IF NOT EXISTS airflow_lake",
            "CREATE TABLE IF NOT EXISTS airflow_lake.raw (user_id BIGINT, kind STRING, dt DATE)",
            "CREATE TABLE IF NOT EXISTS airflow_lake.daily (user_id BIGINT, kind STRING, dt DATE) PARTITIONED BY (dt)",
            "INSERT INTO airflow_lake.raw SELECT value, concat('k', CAST(value % 5 AS STRING)), "
            "DATE '{{ ds }}' FROM generate_series(1, 1000)",
            # dbt's and BI tools' way in: a view over the day's partition.
            "CREATE OR REPLACE VIEW airflow_lake.kinds AS "
            "SELECT kind, count(*) AS n FROM airflow_lake.daily GROUP BY kind",
        ],
    )
    overwrite = SQLExecuteQueryOperator(
        task_id="overwrite_partition",
        conn_id="bowman",
        sql="INSERT OVERWRITE TABLE airflow_lake.daily PARTITION (dt) "
        "SELECT user_id, kind, dt FROM airflow_lake.raw WHERE dt = %(day)s "
        "DISTRIBUTE BY dt SORT BY user_id",
        parameters={"day": "{{ ds }}"},
    )
    check = SQLCheckOperator(
        task_id="check",
        conn_id="bowman",
        sql="SELECT count(*) = 1000, (SELECT sum(n) FROM airflow_lake.kinds) = 1000 "
        "FROM airflow_lake.daily WHERE dt = DATE '{{ ds }}'",
    )
    prepare >> overwrite >> check
